"""Portable C for microcontrollers: the integer model as generated headers beside a fixed C99 engine.

Output folder:
  qpolicy.h, qpolicy.c   the engine and its API, copied from deploy/c/ (the same for every model)
  qpolicy_config.h       generated: dimensions, bit widths, accumulator width
  qpolicy_model.h        generated: weights, biases, thresholds, tanh table, normalization

Two weight layouts (LAYOUTS), both in the engine's reading order (interleave_rows): `packed` as one
bit stream (smallest flash), `int8` one int8_t per weight, which a 32-bit core reads without
unpacking (qsearch/deploy/mcu.py measures both on emulated cores).

A recurrent model (a GRU encoder) adds the encoder's two products as layers, its sigmoid and tanh
threshold tables and the state's dimensions (QP_RECURRENT): the engine then has the stateful API
(qpolicy_state, qpolicy_reset, qpolicy_step*) instead of qpolicy_run and qpolicy_act_q15. A stateless
model's generated headers are what they were before recurrent exports existed.

The engine reproduces qsearch/quant/integer.py's NumPy engine bit for bit (tests/test_deploy_c.py
checks it on >= 10,000 observations per configuration, tests/test_deploy_gru.py at every step of
whole sequences). Sizes are counted for a 32-bit microcontroller: pointers of 4 bytes, const data in
flash.

A logic-circuit policy (an IntLUTModel) has its own engine behind the same API, deploy/c/qpolicy_lut.c,
and its own generated headers: write_c hands it to qsearch/deploy/c_lut.py.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsearch.deploy import c_lut
from qsearch.deploy.c_source import LAYOUTS, TEMPLATES, c_array, c_float, define_header, float_arrays
from qsearch.errors import QsearchError
from qsearch.quant.layers import int_range
from qsearch.quant.integer import LUT_ONE, IntegerModel
from qsearch.quant.lut_integer import IntLUTModel

ENGINE_FILES = ("qpolicy.h", "qpolicy.c")
HARNESS = TEMPLATES / "harness.c"
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
LAYER_STRUCT_BYTES = 20  # qp_layer on a 32-bit target: 2 + 2 + 4 + 4 + 4 + 2 + 2
ACTIVATION_BYTES = 2  # activations are int16_t: signed 8-bit inputs and unsigned 8-bit hidden values both fit
ROW_BLOCK = 4  # rows per block in both layouts: qpolicy.c computes four rows in one pass


@dataclass(frozen=True)
class CSize:
    """What the exported model needs on a 32-bit microcontroller, in bytes (code not included)."""

    weights: int
    biases: int
    thresholds: int
    tanh_lut: int
    floats: int  # normalization, input scale, action scaling
    layer_table: int
    # qpolicy_act_q15 + qpolicy_run: two activation buffers and the output integers; a recurrent model's
    # qpolicy_step_q15 + qpolicy_step_run: three (the input, the two products) and the output integers
    ram: int
    gate_tables: int = 0  # a recurrent model's sigmoid and tanh thresholds
    state: int = 0  # a recurrent model's qpolicy_state, which the caller keeps between steps

    @property
    def flash(self) -> int:
        return (self.weights + self.biases + self.thresholds + self.tanh_lut + self.floats + self.layer_table
                + self.gate_tables)

    def describe(self) -> list[str]:
        if not self.state:
            return [
                f"flash: {self.flash} bytes of model data (weights {self.weights}, biases {self.biases}, "
                f"thresholds {self.thresholds}, tanh table {self.tanh_lut}, floats {self.floats}, "
                f"layer table {self.layer_table}), plus the engine's code",
                f"RAM: {self.ram} bytes of stack for activations (plus a few words of locals); "
                "no static RAM, no heap",
            ]
        return [
            f"flash: {self.flash} bytes of model data, the GRU encoder's included (weights {self.weights}, "
            f"biases {self.biases}, thresholds {self.thresholds}, gate tables {self.gate_tables}, tanh table "
            f"{self.tanh_lut}, floats {self.floats}, layer table {self.layer_table}), plus the engine's code",
            f"RAM: {self.state} bytes of state (qpolicy_state, kept by the caller between steps) and {self.ram} "
            "bytes of stack for activations (plus a few words of locals); no static RAM, no heap",
        ]


def pack_weights(w: np.ndarray, bits: int) -> bytes:
    """Signed `bits`-bit integers, row-major, as one little-endian bit stream: value i at bit i * bits,
    in two's complement, rows not byte-aligned (the engine reads the stream with a running bit reader)."""
    lo, hi = int_range(bits, True)
    flat = np.asarray(w, np.int64).ravel()
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise ValueError(f"weights outside the signed {bits}-bit range")
    stream = 0
    for i, v in enumerate(flat.tolist()):
        stream |= (v & ((1 << bits) - 1)) << (i * bits)
    n_bytes = (flat.size * bits + 7) // 8
    return stream.to_bytes(n_bytes, "little")


def interleave_rows(w: np.ndarray, block: int = ROW_BLOCK) -> np.ndarray:
    """The weights in the engine's reading order: rows in blocks of `block` (zero rows pad the last
    one), each block column by column, so weight (r, c) is at (r // block) * block * n_in + c * block
    + r % block. The int8 layout stores this as bytes, the packed one as a bit stream."""
    rows, cols = w.shape
    padded = np.zeros((-(-rows // block) * block, cols), np.int8)
    padded[:rows] = w
    return padded.reshape(-1, block, cols).transpose(0, 2, 1).ravel()


def all_layers(model: IntegerModel) -> list:
    """Every matrix product the engine computes: a recurrent model's two encoder products, then the MLP."""
    return ([model.encoder.x, model.encoder.h] if model.recurrent else []) + list(model.layers)


def acc_bits(model: IntegerModel) -> int:
    """32 when every accumulator, bias and threshold fits int32_t, else 64."""
    widest = max(layer.acc_bits for layer in all_layers(model))
    extreme = max(int(np.abs(layer.thresholds).max(initial=0)) for layer in all_layers(model))
    return 32 if widest <= 32 and extreme <= 2**31 - 1 else 64


def gate_table_bits(model: IntegerModel) -> int:
    """16 when both gate tables fit int16_t (the engine then reads half the bytes), else 32: the tanh
    table's arguments reach +-2^(2g) (g = 8: +-65,408), but its thresholds mostly lie within +-2^15."""
    e = model.encoder
    extreme = max(int(np.abs(t).max(initial=0)) for t in (e.sigmoid, e.tanh))
    return 16 if extreme <= 2**15 - 1 else 32


def _padded(n: int) -> int:
    return n + -n % ROW_BLOCK


def write_c(model: IntegerModel, action_scale: np.ndarray, action_bias: np.ndarray, out: Path,
            layout: str = "packed") -> CSize:
    """Write the C sources for `model` into the existing folder `out`; return its flash and RAM needs."""
    if isinstance(model, IntLUTModel):  # a logic-circuit policy: its own engine behind the same API
        return c_lut.write_c(model, action_scale, action_bias, out, layout)
    if layout not in LAYOUTS:
        raise QsearchError(f"unknown weight layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    out = Path(out)
    for name in ENGINE_FILES:
        shutil.copyfile(TEMPLATES / name, out / name)
    acc = acc_bits(model)
    widths = [model.obs_dim] + ([model.encoder.width] if model.recurrent else [])
    max_dim = max(widths + [layer.weight.shape[0] for layer in model.layers])
    # the engine writes whole row blocks, so its activation buffers are rounded up to them
    buf_dim = _padded(max_dim)
    (out / "qpolicy_config.h").write_text(_config_header(model, acc, max_dim, buf_dim, layout))
    size = _model_header(model, action_scale, action_bias, acc, layout, out / "qpolicy_model.h")
    if not model.recurrent:
        return CSize(**size, ram=2 * buf_dim * ACTIVATION_BYTES + model.act_dim)
    gate_buf = max(_padded(model.encoder.x.weight.shape[0]), buf_dim)
    return CSize(**size, ram=(buf_dim + 2 * gate_buf) * ACTIVATION_BYTES + model.act_dim,
                 state=model.encoder.width)  # int8_t per unit


def _config_header(model: IntegerModel, acc: int, max_dim: int, buf_dim: int, layout: str) -> str:
    in_lo, in_hi = int_range(model.input_bits, True)
    last = model.layers[-1]
    defines = {
        "QP_OBS_DIM": model.obs_dim, "QP_ACT_DIM": model.act_dim, "QP_N_LAYERS": len(model.layers),
        "QP_MAX_DIM": max_dim, "QP_BUF_DIM": buf_dim, "QP_IN_BITS": model.input_bits, "QP_IN_MIN": f"({in_lo})", "QP_IN_MAX": in_hi,
        "QP_WEIGHT_BITS": model.layers[0].weight_bits, "QP_OUT_BITS": last.out_bits,
        "QP_OUT_MIN": f"({last.out_min})", "QP_ACC_BITS": acc, "QP_LUT_ONE": LUT_ONE,
        "QP_LAYOUT_INT8": int(_bytes_per_weight(model, layout)),
    }
    if model.recurrent:  # only then: a stateless model's header stays as it was
        e = model.encoder
        defines |= {
            "QP_RECURRENT": 1, "QP_STATE_DIM": e.width, "QP_STATE_BITS": e.bits,
            "QP_STATE_MIN": f"({e.state_min})", "QP_GATE_BITS": e.bits,
            # the two products' buffers, which the MLP then takes as its own
            "QP_GATE_BUF": max(_padded(e.x.weight.shape[0]), buf_dim), "QP_GATE_TABLE_BITS": gate_table_bits(model),
        }
    return define_header(defines, "the model's dimensions and bit widths")


def _model_header(model, action_scale, action_bias, acc, layout, path: Path) -> dict:
    lines = ["/* Generated by qsearch export --format c: the integer model. Included by qpolicy.c only. */", ""]
    size = dict(weights=0, biases=0, thresholds=0, tanh_lut=0, floats=0, layer_table=0)
    if model.recurrent:
        size["gate_tables"] = _encoder(model, acc, layout, lines, size)
    for i, layer in enumerate(model.layers):
        _layer_arrays(model, str(i), f"layer {i}", layer, acc, layout, lines, size)
    lines += ["static const qp_layer qp_layers[QP_N_LAYERS] = {", *(_layer_row(str(i), l) for i, l in enumerate(model.layers)),
              "};", ""]
    size["layer_table"] = LAYER_STRUCT_BYTES * len(all_layers(model))
    lines.append(c_array("int16_t", "qp_tanh_lut", model.tanh_lut.tolist(), per_line=12))
    size["tanh_lut"] = 2 * model.tanh_lut.size
    size["floats"] = float_arrays(model.obs_norm, action_scale, action_bias, lines)
    lines += [f"static const float qp_input_scale = {c_float(model.input_scale)};", ""]
    size["floats"] += 4
    path.write_text("\n".join(lines))
    return size


def _layer_arrays(model, tag: str, name: str, layer, acc: int, layout: str, lines: list, size: dict) -> None:
    """A layer's weights (in the engine's reading order), biases and thresholds as C arrays."""
    if layer.weight_bits != model.layers[0].weight_bits:
        raise QsearchError("the C engine needs one weight bit width for every layer")
    if layer.thresholds.size != 2**layer.out_bits - 1:  # the engine's binary search takes out_bits steps
        raise QsearchError(f"{name} has {layer.thresholds.size} thresholds for {layer.out_bits} output bits")
    if _bytes_per_weight(model, layout):
        stored = interleave_rows(layer.weight).tolist()
        lines.append(c_array("int8_t", f"qp_weights_{tag}", stored, per_line=16))
    else:
        stored = list(pack_weights(interleave_rows(layer.weight), layer.weight_bits))
        lines.append(c_array("uint8_t", f"qp_weights_{tag}", stored, per_line=16, hexa=True))
    bias = layer.bias.tolist()
    bias += [0] * (-len(bias) % ROW_BLOCK)  # a whole number of row blocks, as the weights
    lines.append(c_array("qp_acc_t", f"qp_bias_{tag}", [_c_int(v, acc) for v in bias]))
    # a leading unused entry: the engine's binary search then loads t[pos + step] without an offset
    thresholds = ["0"] + [_c_int(v, acc) for v in layer.thresholds.tolist()]
    lines.append(c_array("qp_acc_t", f"qp_thresholds_{tag}", thresholds))
    size["weights"] += len(stored)
    size["biases"] += len(bias) * (acc // 8)
    size["thresholds"] += len(thresholds) * (acc // 8)


def _layer_row(tag: str, l) -> str:
    return (f"    {{{l.weight.shape[1]}, {l.weight.shape[0]}, qp_weights_{tag}, qp_bias_{tag}, qp_thresholds_{tag}, "
            f"{l.thresholds.size}, {l.out_min}}},")


def _encoder(model, acc: int, layout: str, lines: list, size: dict) -> int:
    """The GRU encoder's two products (qp_encoder: x, then h) and its gate tables; returns the tables' bytes."""
    e = model.encoder
    if e.bits > 8:  # the state is int8_t, and the gate arithmetic's bounds (qpolicy.c) hold up to 8 bits
        raise QsearchError(f"the C engine's GRU takes gates and a state of at most 8 bits, not {e.bits}")
    for tag, layer in (("enc_x", e.x), ("enc_h", e.h)):
        _layer_arrays(model, tag, f"the encoder's {tag[-1]} product", layer, acc, layout, lines, size)
    lines += ["static const qp_layer qp_encoder[2] = {", _layer_row("enc_x", e.x), _layer_row("enc_h", e.h), "};", ""]
    table_bytes = gate_table_bits(model) // 8
    for name, table in (("qp_sigmoid_thresholds", e.sigmoid), ("qp_tanh_thresholds", e.tanh)):
        if table.size != 2**e.bits - 1:  # the engine's search takes QP_GATE_BITS steps
            raise QsearchError(f"the encoder's {name[3:]} has {table.size} entries for {e.bits}-bit gates")
        # a leading unused entry, as the layers' thresholds
        lines.append(c_array("qp_gate_t", name, [0] + table.astype(int).tolist(), per_line=12))
    return 2 * (1 + e.sigmoid.size) * table_bytes


def _bytes_per_weight(model: IntegerModel, layout: str) -> bool:
    """One int8_t per weight: the int8 layout, and the packed one of 8-bit weights (the same bytes,
    read without the bit reader)."""
    return layout == "int8" or model.layers[0].weight_bits == 8


def _c_int(v: int, acc: int) -> str:
    """A literal of the accumulator type; INT_MIN is written as (-MAX - 1) as C requires."""
    if acc == 64:
        return f"(INT64_C({v + 1}) - 1)" if v == -(2**63) else f"INT64_C({v})"
    return f"({v + 1} - 1)" if v == -(2**31) else str(v)


# ---- host compilation, for the tests and the latency benchmark ----

def compile_harness(src: Path, exe: Path, extra_flags: tuple[str, ...] = ("-O2",)) -> Path:
    """Build deploy/c/harness.c against the exported sources in `src` with gcc (strict C99 flags)."""
    cmd = ["gcc", *CFLAGS, *extra_flags, f"-I{src}", str(src / "qpolicy.c"), str(HARNESS), "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"gcc failed: {' '.join(cmd)}\n{result.stderr}")
    return exe
