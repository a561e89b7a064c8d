"""A bundle's actor as QONNX, exported by brevitas and checked against the integer engine.

What the exported graph holds, and how the two floating-point ends are represented:
  input   the graph input `x` is the *normalized* observation (float32). Observation normalization
          ((obs - mean) / std) stays outside the graph, on the host, as in the integer engine. The
          float input scale is the first Quant node (scale s_in, bits_in, signed, round half to even):
          it maps x to x_int * s_in. FINN turns it into a MultiThreshold on float values that stays
          outside the hardware dataflow partition, so FINN's estimates leave it out (as the paper did).
  core    Quant nodes on the weights (per-tensor scale, bits_weight), Gemm, Relu, Quant on the
          activations (unsigned, bits_act). Biases are Quant nodes at the accumulator scale (32 bit).
  output  the last Quant node gives o * s_out, the dequantized pre-tanh integer (signed, bits_out).
          tanh is NOT in the graph: on the device it is the integer engine's lookup table indexed by
          o (qsearch/quant/integer.py), applied after the dataflow, like the float output scale.
So the graph's output divided by s_out is the output integer o that the integer engine computes.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from qsearch.errors import QsearchError
from qsearch.quant.actor import QuantActor
from qsearch.quant.integer import IntegerModel
from qsearch.quant.lut_actor import LUTActor

CHECK_OBSERVATIONS = 1000


class _PreTanh(torch.nn.Module):
    """brevitas' own quantized forward (not the fused training path), ending at the output quantizer."""

    def __init__(self, actor: QuantActor):
        super().__init__()
        self.actor = actor

    def forward(self, x):
        return self.actor.quant_forward(x)[-1]


def export_actor(actor: QuantActor, path: Path) -> Path:
    """Export a quantized actor to a QONNX file at `path` (written to a temporary name, then renamed).
    Every FINN path (hw sweeps, build folders) and `export --format qonnx` start here."""
    if isinstance(actor, LUTActor):
        raise QsearchError("a logic-circuit (LUT) policy has no FINN form (no QONNX graph); use --flow open")
    if not actor.quantized:
        raise QsearchError("an FP32 policy cannot be exported to QONNX; it has no quantized layers")
    with warnings.catch_warnings():  # brevitas says at import that an optional kernel package is missing
        warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
        from brevitas.export import export_qonnx as brevitas_export_qonnx

    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        actor = actor.eval()
        # torch's exporter narrates each of its passes on stdout and warns about torchvision
        # operators it cannot register; neither concerns the user, so both are kept off the output.
        quiet = logging.getLogger("torch.onnx")
        level, quiet.level = quiet.level, logging.ERROR
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                brevitas_export_qonnx(_PreTanh(actor), input_t=torch.zeros(1, actor.obs_dim),
                                      export_path=str(tmp / "export.onnx"))
        finally:
            quiet.setLevel(level)
        # torch's exporter may put the weights in a side file (.onnx.data) named after the export
        # path; one self-contained file is what FINN and the other tools expect.
        onnx.save(onnx.load(str(tmp / "export.onnx")), str(tmp / "model.onnx"))
        os.replace(tmp / "model.onnx", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def export_qonnx(bundle, path: Path, check: bool = True) -> Path:
    """Export `bundle`'s actor to QONNX at `path`; with `check`, verify it against the integer engine."""
    path = export_actor(bundle.actor, path)
    if check:
        check_against_integer(path, bundle.integer)
    return path


def qonnx_output_ints(path: Path, model: IntegerModel, x_norm: np.ndarray) -> np.ndarray:
    """Run the QONNX graph with qonnx' executor; its outputs as integers (output / s_out)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    x = np.asarray(x_norm, np.float32)
    graph = _with_batch(ModelWrapper(str(path)), len(x))
    inp, out = graph.graph.input[0].name, graph.graph.output[0].name
    y = execute_onnx(graph, {inp: x})[out].astype(np.float64) / model.output_scale
    o = np.rint(y)
    if np.max(np.abs(y - o)) > 1e-3:  # the output is a multiple of s_out up to float32 rounding
        raise QsearchError(f"{path}: the QONNX output is not on the output quantizer's integer grid")
    return o.astype(np.int64)


def _with_batch(graph, n: int):
    """The exported graph is for batch 1; re-infer its shapes for batch n, so qonnx' node-by-node
    executor runs all observations in one call (one call per observation took 12 s for 1,000)."""
    from qonnx.transformation.infer_shapes import InferShapes

    for t in (graph.graph.input[0], graph.graph.output[0]):
        graph.set_tensor_shape(t.name, [n, *graph.get_tensor_shape(t.name)[1:]])
    del graph.graph.value_info[:]
    return graph.transform(InferShapes())


def check_against_integer(path: Path, model: IntegerModel | None, observations: int = CHECK_OBSERVATIONS,
                          seed: int = 0) -> int:
    """Compare the QONNX graph with the integer engine on `observations` normalized observations.

    Returns the number compared; any output integer that differs raises QsearchError."""
    if model is None:
        raise QsearchError("this bundle holds an FP32 policy: there is no integer model to check against")
    from qsearch.hw.policies import observations as draw

    x = draw(model.obs_dim, observations, seed)
    got = qonnx_output_ints(path, model, x)
    want = model.run_int(model.quantize_normalized(x))[-1]
    bad = np.any(got != want, axis=1)
    if bad.any():
        raise QsearchError(f"{path}: QONNX and the integer engine disagree on {int(bad.sum())} of "
                           f"{observations} observations (largest step {int(np.abs(got - want).max())})")
    return observations
