"""The integer model as one self-contained JSON file (fields documented in deploy/README.md).

Everything a re-implementation needs is in the file: the float32 normalization and input scale (as
JSON numbers that round-trip to the same float32), integer weights, biases and thresholds per layer,
and the tanh table. `read_json` loads it back into the NumPy engine, so the file is checked against
the engine it came from.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from qsearch.errors import QsearchError
from qsearch.obs_norm import ObsNorm
from qsearch.quant.layers import int_range
from qsearch.quant.integer import LUT_ONE, IntegerModel, IntLayer

_NUMBER_LIST = re.compile(r"\[\s*([-+\d.eE,\s]+?)\s*\]")
FORMAT = "qsearch-integer-policy"
VERSION = 1


def to_dict(model: IntegerModel, action_scale: np.ndarray, action_bias: np.ndarray, env_id: str,
            observe: str = "all") -> dict:
    from qsearch.rl.envs import observed

    in_lo, in_hi = int_range(model.input_bits, True)
    indices = observed(env_id, observe)
    return {
        "format": FORMAT, "version": VERSION, "env_id": env_id,
        "obs_dim": model.obs_dim, "act_dim": model.act_dim,
        # which entries of the environment's observation the policy takes, in order (None: all of them)
        "observe": observe, "observation_indices": None if indices is None else list(indices),
        "input": {
            "bits": model.input_bits, "signed": True, "min": in_lo, "max": in_hi,
            "scale": float(model.input_scale),
            "obs_mean": _floats(model.obs_norm.mean), "obs_std": _floats(model.obs_norm.std),
        },
        "layers": [
            {"in": int(l.weight.shape[1]), "out": int(l.weight.shape[0]),
             "weight_bits": l.weight_bits, "in_bits": l.in_bits, "in_signed": l.in_signed,
             "out_bits": l.out_bits, "out_signed": l.out_signed, "out_min": l.out_min, "acc_bits": l.acc_bits,
             "weights": l.weight.astype(int).tolist(), "bias": l.bias.astype(int).tolist(),
             "thresholds": l.thresholds.astype(int).tolist()}
            for l in model.layers
        ],
        "output": {
            "bits": model.layers[-1].out_bits, "scale": model.output_scale, "lut_one": LUT_ONE,
            "tanh_lut": model.tanh_lut.astype(int).tolist(),
            "action_scale": _floats(action_scale), "action_bias": _floats(action_bias),
        },
    }


def write_json(model: IntegerModel, action_scale, action_bias, env_id: str, path: Path, observe: str = "all") -> Path:
    path = Path(path)
    text = json.dumps(to_dict(model, action_scale, action_bias, env_id, observe), indent=1)
    # one line per list of numbers (a weight row, a threshold table) instead of one line per number
    text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.write_text(text + "\n")
    return path


def read_json(path: Path) -> IntegerModel:
    """The NumPy engine for an exported JSON file."""
    try:
        d = json.loads(Path(path).read_text())
        if d.get("format") != FORMAT:
            raise QsearchError(f"{path} is not a qsearch integer policy JSON file")
        layers = [IntLayer(np.array(l["weights"], np.int8), np.array(l["bias"], np.int64),
                           np.array(l["thresholds"], np.int64), l["out_bits"], l["out_signed"],
                           l["in_bits"], l["in_signed"], l["weight_bits"], l["acc_bits"]) for l in d["layers"]]
        inp = d["input"]
        norm = ObsNorm(np.array(inp["obs_mean"], np.float32), np.array(inp["obs_std"], np.float32))
        return IntegerModel(norm, np.float32(inp["scale"]), inp["bits"], layers,
                            np.array(d["output"]["tanh_lut"], np.int16), d["output"]["scale"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise QsearchError(f"cannot read {path}: {e}") from None


def _floats(values) -> list[float]:
    """float32 values as the doubles they are exactly: JSON's shortest repr round-trips through float32."""
    return [float(v) for v in np.asarray(values, np.float32)]
