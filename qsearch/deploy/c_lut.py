"""The portable C of a logic-circuit policy (an IntLUTModel, qsearch/quant/lut_integer.py), behind the
same public API as an MLP's export, so that firmware swaps one model for the other without changing code.

Output folder, the same four files as c_export's:
  qpolicy.h              the MLP engine's header, unchanged: the same functions and signatures
  qpolicy.c              deploy/c/qpolicy_lut.c: thermometer levels, bit-packed LUT layers, group
                         popcounts, the head and tanh tables
  qpolicy_config.h       generated: dimensions, thermometer bits, LUT inputs, buffer words
  qpolicy_model.h        generated: thresholds, connections, truth tables (2^k bits per node), head,
                         tanh table, normalization

The integer observation x is each feature's thermometer level (0 to QP_THERMOMETER_BITS), and o is
the head's output integer: qpolicy_quantize_obs, qpolicy_run, qpolicy_act_q15 and qpolicy_action_float
mean what they mean for an MLP. c_export.write_c and the mcu.py entry points dispatch here by model
type; the engine equals IntLUTModel.run_int bit for bit (tests/test_lut_c.py: on the host, on emulated
Cortex-M4 and RV32IMC, >= 10,000 observations with the thresholds' edges and NaN).

Bits are packed 32 to a uint32_t (two stack buffers: RAM stays at a few dozen bytes); the cost is the
unpacking, about 6 instructions per address bit on Cortex-M4, ~52 per 6-input node. Measured on the
emulated cores (zig 0.17 clang -O2; means over 32 random observations, float observation in, i.e.
qpolicy_quantize_obs then qpolicy_run; random truth tables, whose contents do not change the work),
each build first verified on its core against the NumPy engine (10,000 random observations and
the special rows):

  11 features, 3 actions          Cortex-M4 instructions     flash, bytes           RAM, bytes
                                  per action (from levels)   (model data)           (stack)
  B = 16, luts (256, 256), k = 6  27,468 (26,956)            13,458 (11,274)        124
  B = 8, luts (64, 64), k = 4      5,501 (5,041)              3,876 (2,058)          88

  The larger model's data: truth tables 4,096, connections 6,144, head 258, thresholds 128, tanh
  table 512, floats 112, layer table 24. The same two on Cortex-M7: 28,258 and 5,541 instructions;
  Cortex-M0: 47,314 and 15,220; RV32IMC: 38,690 and 11,087 (software float: the 11 features'
  normalization and threshold search cost 4,200-7,700 of them).

    PYTHONPATH=. .venv/bin/python bench/lut_mcu.py --targets cortex-m4 cortex-m7 cortex-m0 rv32imc
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsearch.deploy.c_source import LAYOUTS, TEMPLATES, c_array, c_float, define_header, float_arrays
from qsearch.errors import QsearchError
from qsearch.quant.integer import LUT_ONE
from qsearch.quant.layers import int_range
from qsearch.quant.lut_integer import IntLUTModel

ENGINE = TEMPLATES / "qpolicy_lut.c"
LAYER_STRUCT_BYTES = 12  # qp_lut_layer on a 32-bit target: 2 (+ 2 padding) + 4 + 4
WORD_BITS = 32  # the engine packs bits into uint32_t words


@dataclass(frozen=True)
class LUTCSize:
    """What the exported LUT model needs on a 32-bit microcontroller, in bytes (code not included)."""

    tables: int  # truth tables, 2^k bits per node
    connections: int  # uint16_t per address bit
    head: int  # int8_t per action and count
    thresholds: int  # float32 thermometer thresholds (padded for the binary search)
    tanh_lut: int
    floats: int  # normalization, action scaling
    layer_table: int
    ram: int  # qpolicy_act_q15 + qpolicy_run: two bit buffers and the output integers

    @property
    def flash(self) -> int:
        return (self.tables + self.connections + self.head + self.thresholds + self.tanh_lut + self.floats
                + self.layer_table)

    def describe(self) -> list[str]:
        return [
            f"flash: {self.flash} bytes of model data (truth tables {self.tables}, connections {self.connections}, "
            f"head {self.head}, thermometer thresholds {self.thresholds}, tanh table {self.tanh_lut}, floats "
            f"{self.floats}, layer table {self.layer_table}), plus the engine's code",
            f"RAM: {self.ram} bytes of stack for bit buffers (plus a few words of locals); no static RAM, no heap",
        ]


def write_c(model: IntLUTModel, action_scale: np.ndarray, action_bias: np.ndarray, out: Path,
            layout: str = "packed") -> LUTCSize:
    """Write the C sources for `model` into the existing folder `out`; return its flash and RAM needs.
    `layout` is accepted for c_export.write_c's callers and changes nothing: truth tables are always bits."""
    if layout not in LAYOUTS:
        raise QsearchError(f"unknown weight layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    k = _check(model)
    out = Path(out)
    shutil.copyfile(TEMPLATES / "qpolicy.h", out / "qpolicy.h")
    shutil.copyfile(ENGINE, out / "qpolicy.c")
    bits = model.thermometer_bits
    widths = model.layer_inputs() + [len(model.layers[-1].tables)]  # every bit buffer's bits
    buf_words = max(-(-w // WORD_BITS) for w in widths)
    step = 1 << (bits.bit_length() - 1)  # the search's first step: the least power of two s with 2 s - 1 >= bits
    lo = int_range(model.out_bits, True)[0]
    defines = {
        "QP_LUT": 1, "QP_OBS_DIM": model.obs_dim, "QP_ACT_DIM": model.act_dim,
        # x: the thermometer level 0..B, as a signed integer of QP_IN_BITS bits (qpolicy.h's terms)
        "QP_IN_BITS": bits.bit_length() + 1, "QP_IN_MIN": 0, "QP_IN_MAX": bits,
        "QP_THERMOMETER_BITS": bits, "QP_THRESHOLD_STEP": step, "QP_N_LAYERS": len(model.layers),
        "QP_LUT_INPUTS": k, "QP_GROUP": model.group, "QP_IN_WORDS": -(-widths[0] // WORD_BITS),
        "QP_BUF_WORDS": buf_words, "QP_OUT_BITS": model.out_bits, "QP_OUT_MIN": f"({lo})", "QP_LUT_ONE": LUT_ONE,
    }
    (out / "qpolicy_config.h").write_text(define_header(defines, "the LUT model's dimensions and bit widths"))
    size = _model_header(model, action_scale, action_bias, step, out / "qpolicy_model.h")
    return LUTCSize(**size, ram=2 * buf_words * 4 + model.act_dim)


def _check(model: IntLUTModel) -> int:
    """One clear line for what the engine cannot hold; returns the LUT inputs k."""
    t = model.thresholds
    if not 1 <= len(t) <= 127 or not model.layers:  # levels are int8_t
        raise QsearchError(f"the C engine takes 1 to 127 thermometer thresholds and at least one layer, not "
                           f"{len(t)} and {len(model.layers)}")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0):
        raise QsearchError("the thermometer thresholds must be finite and non-decreasing for the C engine's search")
    if model.out_bits > 8:  # o is int8_t in qpolicy.h
        raise QsearchError(f"the C engine's output integers are int8_t; the head has {model.out_bits} bits")
    lo, hi = int_range(model.out_bits, True)
    if model.head.size and (model.head.min() < lo or model.head.max() > hi) or len(model.tanh_lut) != 2**model.out_bits:
        raise QsearchError(f"the head's table or the tanh table does not fit {model.out_bits} output bits")
    ks = {layer.connections.shape[1] for layer in model.layers}
    if len(ks) != 1:
        raise QsearchError(f"the C engine needs one LUT input count for every layer, not {sorted(ks)}")
    for i, (n_in, layer) in enumerate(zip(model.layer_inputs(), model.layers)):
        c = layer.connections
        if layer.tables.shape != (len(c), 2 ** c.shape[1]):
            raise QsearchError(f"LUT layer {i} has truth tables of shape {layer.tables.shape} for {c.shape} connections")
        if c.size and (c.min() < 0 or c.max() >= n_in):
            raise QsearchError(f"LUT layer {i} reads inputs outside its {n_in} input bits")
        if n_in > 2**16 or len(c) >= 2**16:  # uint16_t connections and node counts
            raise QsearchError(f"LUT layer {i} has {n_in} inputs and {len(c)} nodes; the C engine takes fewer than 65,536")
    last = len(model.layers[-1].tables)
    if model.head.shape != (model.act_dim, model.group + 1) or model.group * model.act_dim > last:
        raise QsearchError(f"the head's table {model.head.shape} does not fit {model.act_dim} groups of {model.group} "
                           f"nodes of the last layer's {last}")
    return ks.pop()


def _model_header(model, action_scale, action_bias, step: int, path: Path) -> dict:
    lines = ["/* Generated by qsearch export --format c: the LUT model. Included by qpolicy.c only. */", ""]
    t = np.asarray(model.thresholds, np.float32)
    # an unused entry, the thresholds, then copies of the last up to 2 * step entries (qpolicy_lut.c's level)
    padded = np.concatenate([[0], t, np.full(2 * step - 1 - len(t), t[-1])]).astype(np.float32)
    lines.append(c_array("float", "qp_thresholds", [c_float(v) for v in padded], per_line=4))
    size = dict(tables=0, connections=0, head=0, thresholds=4 * len(padded), tanh_lut=0, floats=0, layer_table=0)
    rows = []
    for i, layer in enumerate(model.layers):
        lines.append(c_array("uint16_t", f"qp_connections_{i}", layer.connections.ravel().tolist(), per_line=12))
        # bit n * 2^k + a of the stream is node n's output at address a; little-endian words
        stream = np.packbits(np.asarray(layer.tables, np.uint8).ravel(), bitorder="little")
        words = np.frombuffer(np.pad(stream, (0, -len(stream) % 4)).tobytes(), "<u4")
        lines.append(c_array("uint32_t", f"qp_tables_{i}", [f"0x{w:08x}u" for w in words.tolist()], per_line=6))
        rows.append(f"    {{{len(layer.tables)}, qp_connections_{i}, qp_tables_{i}}},")
        size["connections"] += 2 * layer.connections.size
        size["tables"] += 4 * len(words)
    lines += ["static const qp_lut_layer qp_layers[QP_N_LAYERS] = {", *rows, "};", ""]
    size["layer_table"] = LAYER_STRUCT_BYTES * len(model.layers)
    head = ",\n    ".join("{" + ", ".join(map(str, row)) + "}" for row in model.head.tolist())
    lines += [f"static const int8_t qp_head[QP_ACT_DIM][QP_GROUP + 1] = {{\n    {head}\n}};", ""]
    size["head"] = model.head.size
    lines.append(c_array("int16_t", "qp_tanh_lut", model.tanh_lut.tolist(), per_line=12))
    size["tanh_lut"] = 2 * model.tanh_lut.size
    size["floats"] = float_arrays(model.obs_norm, action_scale, action_bias, lines)
    path.write_text("\n".join(lines))
    return size
