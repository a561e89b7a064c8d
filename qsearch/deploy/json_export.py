"""The integer model as one self-contained JSON file (fields documented in deploy/README.md).

Everything a re-implementation needs is in the file: the float32 normalization and input scale (as
JSON numbers that round-trip to the same float32), integer weights, biases and thresholds per layer,
and the tanh table; for a recurrent policy the GRU encoder (`encoder`: its two products, its sigmoid
and tanh thresholds, the gate and state bits). `read_json` loads it back into the NumPy engine, so
the file is checked against the engine it came from.

Version 2 added the encoder. A file states the lowest version that reads it: a stateless policy's is
a version 1 file, field for field, so version 1 readers read it as before; a recurrent policy's is
version 2, which a version 1 reader that checks the version refuses (one that ignores the encoder
would act without the state). Version 3 added logic-circuit policies (`kind` "lut": thermometer
thresholds, each layer's connections and truth tables, the head's table; quant/lut_integer.py), which
a version 1 or 2 reader refuses by their version.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant.layers import int_range
from qsearch.quant.integer import LUT_ONE, IntegerModel, IntGRU, IntLayer
from qsearch.quant.lut_integer import IntLUTModel, LUTLayerInts

_NUMBER_LIST = re.compile(r"\[\s*([-+\d.eE,\s]+?)\s*\]")
FORMAT = "qsearch-integer-policy"
VERSION = 3  # the highest this qsearch writes and reads


def to_dict(model: IntegerModel | IntLUTModel, action_scale: np.ndarray, action_bias: np.ndarray, env_id: str,
            observe: str = "all") -> dict:
    from qsearch.rl.envs import observed

    indices = observed(env_id, observe)
    d = {
        "format": FORMAT, "version": 3 if isinstance(model, IntLUTModel) else 2 if model.recurrent else 1,
        "env_id": env_id, "obs_dim": model.obs_dim, "act_dim": model.act_dim,
        # which entries of the environment's observation the policy takes, in order (None: all of them)
        "observe": observe, "observation_indices": None if indices is None else list(indices),
    }
    if isinstance(model, IntLUTModel):
        return d | _lut_dict(model, action_scale, action_bias)
    in_lo, in_hi = int_range(model.input_bits, True)
    d |= {
        "input": {
            "bits": model.input_bits, "signed": True, "min": in_lo, "max": in_hi,
            "scale": float(model.input_scale),
            "obs_mean": _floats(model.obs_norm.mean), "obs_std": _floats(model.obs_norm.std),
        },
    }
    if model.recurrent:  # absent otherwise: a stateless policy's file is the version 1 file it always was
        d["encoder"] = _encoder_dict(model.encoder)
    return d | {"layers": [_layer_dict(l) for l in model.layers],
                "output": _output_dict(model.layers[-1].out_bits, model, action_scale, action_bias)}


def _output_dict(bits: int, model, action_scale, action_bias) -> dict:
    return {"bits": bits, "scale": model.output_scale, "lut_one": LUT_ONE,
            "tanh_lut": model.tanh_lut.astype(int).tolist(),
            "action_scale": _floats(action_scale), "action_bias": _floats(action_bias)}


def _lut_dict(model: IntLUTModel, action_scale, action_bias) -> dict:
    return {
        "kind": "lut",
        "input": {"thermometer_bits": model.thermometer_bits, "thresholds": _floats(model.thresholds),
                  "obs_mean": _floats(model.obs_norm.mean), "obs_std": _floats(model.obs_norm.std)},
        "layers": [{"in": n_in, "out": len(l.tables), "lut_inputs": int(l.connections.shape[1]),
                    "connections": l.connections.astype(int).tolist(), "tables": l.tables.astype(int).tolist()}
                   for n_in, l in zip(model.layer_inputs(), model.layers)],
        "head": {"group": model.group, "table": model.head.astype(int).tolist()},
        "output": _output_dict(model.out_bits, model, action_scale, action_bias),
    }


def _layer_dict(l: IntLayer) -> dict:
    return {"in": int(l.weight.shape[1]), "out": int(l.weight.shape[0]),
            "weight_bits": l.weight_bits, "in_bits": l.in_bits, "in_signed": l.in_signed,
            "out_bits": l.out_bits, "out_signed": l.out_signed, "out_min": l.out_min, "acc_bits": l.acc_bits,
            "weights": l.weight.astype(int).tolist(), "bias": l.bias.astype(int).tolist(),
            "thresholds": l.thresholds.astype(int).tolist()}


def _encoder_dict(e: IntGRU) -> dict:
    state_lo, state_hi = int_range(e.bits, True)
    gate_lo, gate_hi = int_range(e.bits, False)
    return {
        "kind": "gru", "width": e.width, "rows": "r, z, n",
        "gate_bits": e.bits, "gate_min": gate_lo, "gate_max": gate_hi,
        "state_bits": e.bits, "state_min": state_lo, "state_max": state_hi, "initial_state": 0,
        "x": _layer_dict(e.x), "h": _layer_dict(e.h),
        "sigmoid_thresholds": e.sigmoid.astype(int).tolist(), "tanh_thresholds": e.tanh.astype(int).tolist(),
    }


def write_json(model: IntegerModel | IntLUTModel, action_scale, action_bias, env_id: str, path: Path, observe: str = "all") -> Path:
    path = Path(path)
    text = json.dumps(to_dict(model, action_scale, action_bias, env_id, observe), indent=1)
    # one line per list of numbers (a weight row, a threshold table) instead of one line per number
    text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.write_text(text + "\n")
    return path


def read_json(path: Path) -> IntegerModel | IntLUTModel:
    """The NumPy engine for an exported JSON file."""
    try:
        d = json.loads(Path(path).read_text())
        if d.get("format") != FORMAT:
            raise QsearchError(f"{path} is not a qsearch integer policy JSON file")
        if d.get("version", 1) > VERSION:
            raise QsearchError(f"{path} is a version {d['version']} policy file; this qsearch reads up to version "
                               f"{VERSION}")
        inp = d["input"]
        norm = ObsNorm(np.array(inp["obs_mean"], np.float32), np.array(inp["obs_std"], np.float32))
        if d.get("kind") == "lut":
            layers = [LUTLayerInts(np.array(l["connections"], np.int64), np.array(l["tables"], np.uint8))
                      for l in d["layers"]]
            out = d["output"]
            return IntLUTModel(norm, np.array(inp["thresholds"], np.float32), layers, d["head"]["group"],
                               np.array(d["head"]["table"], np.int64), out["bits"], np.array(out["tanh_lut"], np.int16),
                               out["scale"])
        layers = [_layer(l) for l in d["layers"]]
        encoder = None
        if (e := d.get("encoder")) is not None:
            if e["kind"] != "gru" or e["state_bits"] != e["gate_bits"]:
                raise QsearchError(f"{path}: the engine runs a GRU whose state has its gates' bits")
            encoder = IntGRU(_layer(e["x"]), _layer(e["h"]), np.array(e["sigmoid_thresholds"], np.int64),
                             np.array(e["tanh_thresholds"], np.int64), e["gate_bits"])
        return IntegerModel(norm, np.float32(inp["scale"]), inp["bits"], layers,
                            np.array(d["output"]["tanh_lut"], np.int16), d["output"]["scale"], encoder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise QsearchError(f"cannot read {path}: {e}") from None


def _layer(l: dict) -> IntLayer:
    return IntLayer(np.array(l["weights"], np.int8), np.array(l["bias"], np.int64), np.array(l["thresholds"], np.int64),
                    l["out_bits"], l["out_signed"], l["in_bits"], l["in_signed"], l["weight_bits"], l["acc_bits"])


def _floats(values) -> list[float]:
    """float32 values as the doubles they are exactly: JSON's shortest repr round-trips through float32."""
    return [float(v) for v in np.asarray(values, np.float32)]
