"""Portable C for microcontrollers: the integer model as generated headers beside a fixed C99 engine.

Output folder:
  qpolicy.h, qpolicy.c   the engine and its API, copied from deploy/c/ (the same for every model)
  qpolicy_config.h       generated: dimensions, bit widths, accumulator width
  qpolicy_model.h        generated: weights, biases, thresholds, tanh table, normalization

Two weight layouts (LAYOUTS), both in the engine's reading order (interleave_rows): `packed` as one
bit stream (smallest flash), `int8` one int8_t per weight, which a 32-bit core reads without
unpacking (qsearch/deploy/mcu.py measures both on emulated cores).

The engine reproduces qsearch/quant/integer.py's NumPy engine bit for bit (tests/test_deploy_c.py
checks it on >= 10,000 observations per configuration). Sizes are counted for a 32-bit
microcontroller: pointers of 4 bytes, const data in flash.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsearch.errors import QsearchError
from qsearch.quant.layers import int_range
from qsearch.quant.integer import LUT_ONE, IntegerModel

TEMPLATES = Path(__file__).resolve().parents[2] / "deploy" / "c"
ENGINE_FILES = ("qpolicy.h", "qpolicy.c")
HARNESS = TEMPLATES / "harness.c"
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
LAYER_STRUCT_BYTES = 20  # qp_layer on a 32-bit target: 2 + 2 + 4 + 4 + 4 + 2 + 2
ACTIVATION_BYTES = 2  # activations are int16_t: signed 8-bit inputs and unsigned 8-bit hidden values both fit
LAYOUTS = ("packed", "int8")
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
    ram: int  # qpolicy_act_q15 + qpolicy_run: two activation buffers and the output integers

    @property
    def flash(self) -> int:
        return self.weights + self.biases + self.thresholds + self.tanh_lut + self.floats + self.layer_table

    def describe(self) -> list[str]:
        return [
            f"flash: {self.flash} bytes of model data (weights {self.weights}, biases {self.biases}, "
            f"thresholds {self.thresholds}, tanh table {self.tanh_lut}, floats {self.floats}, "
            f"layer table {self.layer_table}), plus the engine's code",
            f"RAM: {self.ram} bytes of stack for activations (plus a few words of locals); "
            "no static RAM, no heap",
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


def acc_bits(model: IntegerModel) -> int:
    """32 when every accumulator, bias and threshold fits int32_t, else 64."""
    widest = max(layer.acc_bits for layer in model.layers)
    extreme = max(int(np.abs(layer.thresholds).max(initial=0)) for layer in model.layers)
    return 32 if widest <= 32 and extreme <= 2**31 - 1 else 64


def write_c(model: IntegerModel, action_scale: np.ndarray, action_bias: np.ndarray, out: Path,
            layout: str = "packed") -> CSize:
    """Write the C sources for `model` into the existing folder `out`; return its flash and RAM needs."""
    if layout not in LAYOUTS:
        raise QsearchError(f"unknown weight layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    out = Path(out)
    for name in ENGINE_FILES:
        shutil.copyfile(TEMPLATES / name, out / name)
    acc = acc_bits(model)
    max_dim = max([model.obs_dim] + [layer.weight.shape[0] for layer in model.layers])
    # the engine writes whole row blocks, so its activation buffers are rounded up to them
    buf_dim = max_dim + -max_dim % ROW_BLOCK
    (out / "qpolicy_config.h").write_text(_config_header(model, acc, max_dim, buf_dim, layout))
    size = _model_header(model, action_scale, action_bias, acc, layout, out / "qpolicy_model.h")
    return CSize(**size, ram=2 * buf_dim * ACTIVATION_BYTES + model.act_dim)


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
    lines = ["/* Generated by qsearch export --format c: the model's dimensions and bit widths. */",
             "#ifndef QPOLICY_CONFIG_H", "#define QPOLICY_CONFIG_H", ""]
    lines += [f"#define {k} {v}" for k, v in defines.items()]
    return "\n".join(lines + ["", "#endif", ""])


def _model_header(model, action_scale, action_bias, acc, layout, path: Path) -> dict:
    acc_bytes = acc // 8
    lines = ["/* Generated by qsearch export --format c: the integer model. Included by qpolicy.c only. */", ""]
    size = dict(weights=0, biases=0, thresholds=0, tanh_lut=0, floats=0, layer_table=0)
    for i, layer in enumerate(model.layers):
        if layer.weight_bits != model.layers[0].weight_bits:
            raise QsearchError("the C engine needs one weight bit width for every layer")
        if layer.thresholds.size != 2**layer.out_bits - 1:  # the engine's binary search takes out_bits steps
            raise QsearchError(f"layer {i} has {layer.thresholds.size} thresholds for {layer.out_bits} output bits")
        if _bytes_per_weight(model, layout):
            stored = interleave_rows(layer.weight).tolist()
            lines.append(_array("int8_t", f"qp_weights_{i}", stored, per_line=16))
        else:
            stored = list(pack_weights(interleave_rows(layer.weight), layer.weight_bits))
            lines.append(_array("uint8_t", f"qp_weights_{i}", stored, per_line=16, hexa=True))
        bias = layer.bias.tolist()
        bias += [0] * (-len(bias) % ROW_BLOCK)  # a whole number of row blocks, as the weights
        lines.append(_array("qp_acc_t", f"qp_bias_{i}", [_c_int(v, acc) for v in bias]))
        # a leading unused entry: the engine's binary search then loads t[pos + step] without an offset
        thresholds = ["0"] + [_c_int(v, acc) for v in layer.thresholds.tolist()]
        lines.append(_array("qp_acc_t", f"qp_thresholds_{i}", thresholds))
        size["weights"] += len(stored)
        size["biases"] += len(bias) * acc_bytes
        size["thresholds"] += len(thresholds) * acc_bytes
    rows = [f"    {{{l.weight.shape[1]}, {l.weight.shape[0]}, qp_weights_{i}, qp_bias_{i}, qp_thresholds_{i}, "
            f"{l.thresholds.size}, {l.out_min}}}," for i, l in enumerate(model.layers)]
    lines += ["static const qp_layer qp_layers[QP_N_LAYERS] = {", *rows, "};", ""]
    size["layer_table"] = LAYER_STRUCT_BYTES * len(model.layers)
    lines.append(_array("int16_t", "qp_tanh_lut", model.tanh_lut.tolist(), per_line=12))
    size["tanh_lut"] = 2 * model.tanh_lut.size
    floats = {"qp_obs_mean": model.obs_norm.mean, "qp_obs_std": model.obs_norm.std,
              "qp_action_scale": action_scale, "qp_action_bias": action_bias}
    for name, values in floats.items():
        lines.append(_array("float", name, [_c_float(v) for v in np.asarray(values, np.float32)], per_line=4))
        size["floats"] += 4 * np.asarray(values).size
    lines += [f"static const float qp_input_scale = {_c_float(model.input_scale)};", ""]
    size["floats"] += 4
    path.write_text("\n".join(lines))
    return size


def _bytes_per_weight(model: IntegerModel, layout: str) -> bool:
    """One int8_t per weight: the int8 layout, and the packed one of 8-bit weights (the same bytes,
    read without the bit reader)."""
    return layout == "int8" or model.layers[0].weight_bits == 8


def _c_int(v: int, acc: int) -> str:
    """A literal of the accumulator type; INT_MIN is written as (-MAX - 1) as C requires."""
    if acc == 64:
        return f"(INT64_C({v + 1}) - 1)" if v == -(2**63) else f"INT64_C({v})"
    return f"({v + 1} - 1)" if v == -(2**31) else str(v)


def _c_float(v) -> str:
    """The float32 value as an exact C99 hexadecimal literal (no decimal round trip to get wrong)."""
    return float(np.float32(v)).hex() + "f"


def _array(ctype: str, name: str, values: list, per_line: int = 8, hexa: bool = False) -> str:
    items = [f"0x{v:02x}" if hexa else str(v) for v in values]
    rows = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return f"static const {ctype} {name}[{len(items)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


# ---- host compilation, for the tests and the latency benchmark ----

def compile_harness(src: Path, exe: Path, extra_flags: tuple[str, ...] = ("-O2",)) -> Path:
    """Build deploy/c/harness.c against the exported sources in `src` with gcc (strict C99 flags)."""
    cmd = ["gcc", *CFLAGS, *extra_flags, f"-I{src}", str(src / "qpolicy.c"), str(HARNESS), "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"gcc failed: {' '.join(cmd)}\n{result.stderr}")
    return exe
