"""FINN's estimate flow on a QONNX actor as named steps, with the real finn-plus compiler (no Vivado needed).

Each step is FINN's builder step of the same name (finn.builder.build_dataflow_steps) written out as
its transformations: the builder cannot be imported here, because finn.builder.build_dataflow_config
imports the `mip` solver, which only qsearch's [vivado] extra installs. Every step takes the model and
the HwConfig (qsearch/hw/config.py); the flow lists that order them are in qsearch/hw/flows.py.
Differences from the builder, on purpose:
  - step_convert_to_hw converts the matrix-vector and threshold layers only: the float input Quant
    (a MultiThreshold on float values after conversion) and the float output scale stay outside the
    dataflow partition instead of becoming Requant/elementwise layers, as in the paper's hardware figures.
  - step_generate_estimate_reports returns the figures (an Estimate) instead of writing report files.

All figures are FINN's analytical estimates (finn.analysis.fpgadataflow.res_estimation,
exp_cycles_per_layer, dataflow_performance), not post-synthesis results. FINN gives no flip-flop
estimate.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.hw.config import HwConfig
from qsearch.hw.estimate import Estimate, LayerEstimate
from qsearch.hw.step_registry import step

HW_OPS = ("MVAU", "Thresholding")  # op types (before specialization) that make up the dataflow
_FOLDING_ATTRS = ["PE", "SIMD", "ram_style", "ram_style_thresholds", "resType", "mem_mode"]


def setup(build_dir: Path | None = None) -> None:
    """Point FINN's settings at a build folder (never the home folder) before FINN is imported.

    With FINN_BUILD_DIR set, every process (Ray workers included) rebuilds the settings by itself."""
    if "FINN_BUILD_DIR" not in os.environ:
        d = Path(build_dir) if build_dir else Path(tempfile.gettempdir()) / f"qsearch-finn-{os.getuid()}"
        d.mkdir(parents=True, exist_ok=True)
        os.environ["FINN_BUILD_DIR"] = str(d.resolve())
    # SetFolding logs a warning for every target a layer cannot reach (the report shows it anyway)
    logging.getLogger("finn_logger").setLevel(logging.ERROR)


def target_cycles(target_fps: float, clock_ns: float) -> int:
    """FINN's target_cycles_per_frame for a throughput target (as DataflowBuildConfig computes it)."""
    return max(1, int(1e9 / clock_ns / target_fps))


@step()
def step_qonnx_to_finn(model, cfg: HwConfig):
    """Clean up brevitas' QONNX graph and convert its Quant nodes to FINN's MultiThreshold and scalings."""
    setup()  # the first step to import FINN
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.util.cleanup import cleanup_model

    return cleanup_model(model).transform(ConvertQONNXtoFINN())


@step()
def step_tidy_up(model, cfg: HwConfig):
    """Shapes, constant folding, readable names and datatypes."""
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames, RemoveStaticGraphInputs
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
              InferDataTypes(), RemoveStaticGraphInputs()):
        model = model.transform(t)
    return model


@step()
def step_streamline(model, cfg: HwConfig):
    """Move scales and biases into the thresholds, so the layers compute on integers."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    model = model.transform(RoundAndClipThresholds())
    return model.transform(Streamline()).transform(InferDataLayouts()).transform(RemoveUnusedTensors())


@step()
def step_convert_to_hw(model, cfg: HwConfig):
    """Matrix-vector and threshold layers to FINN's HW layers, the layers the paper put on the device."""
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from qonnx.transformation.general import GiveUniqueNodeNames
    from qonnx.transformation.infer_datatypes import InferDataTypes

    model = model.transform(InferQuantizedMatrixVectorActivation())
    model = model.transform(InferThresholdingLayer())
    return model.transform(GiveUniqueNodeNames()).transform(InferDataTypes())


@step()
def step_minimize_bit_width_initial(model, cfg: HwConfig):
    """The first bit width minimization, before the partition and the layers' specialization."""
    return _minimize_bit_width(model)


@step()
def step_create_dataflow_partition(model, cfg: HwConfig):
    """The HW layers as one dataflow partition, integer in and out: the float ends stay on the host."""
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.general import RemoveUnusedTensors

    # a folder of its own per call: FINN names the files partition_0.onnx, and parallel workers would
    # otherwise overwrite each other's; the partition is read back before the folder goes
    with tempfile.TemporaryDirectory(prefix="partitions.", dir=os.environ.get("FINN_BUILD_DIR")) as parts_dir:
        model = model.transform(CreateDataflowPartition(partition_model_dir=parts_dir))
        parts = model.get_nodes_by_op_type("StreamingDataflowPartition")
        if len(parts) != 1:
            raise QsearchError(f"FINN made {len(parts)} dataflow partitions of the policy, expected one "
                               "(a layer it could not convert to hardware splits the network)")
        dataflow = ModelWrapper(getCustomOp(parts[0]).get_nodeattr("model"))
    ops = [n.op_type for n in dataflow.graph.node]
    if not ops or any(op not in HW_OPS for op in ops):
        raise QsearchError(f"unexpected layers in FINN's dataflow partition of the policy: {ops}")
    return _without_float_input(dataflow).transform(RemoveUnusedTensors())


@step()
def step_specialize_layers(model, cfg: HwConfig):
    """HLS or RTL variants of each layer for the part."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.transformation.general import GiveUniqueNodeNames

    return model.transform(SpecializeLayers(cfg.device.part)).transform(GiveUniqueNodeNames())


@step(per_target=True)
def step_target_fps_parallelization(model, cfg: HwConfig):
    """FINN's SetFolding: PE and SIMD for cfg.target_fps at the clock; nothing without a target."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    if cfg.target_fps is None:
        return model
    return model.transform(SetFolding(target_cycles(cfg.target_fps, cfg.clock_ns), mvau_wwidth_max=cfg.mvau_wwidth_max))


@step(per_target=True)
def step_apply_folding_config(model, cfg: HwConfig):
    """FINN's ApplyConfig with cfg.folding (a sweep row's folding), which must cover every layer."""
    from finn.transformation.general import ApplyConfig

    if cfg.folding is None:
        return model
    missing = {n.name for n in model.graph.node} - set(cfg.folding)
    if missing:
        raise QsearchError(f"the folding config does not cover FINN's layers {sorted(missing)}")
    return model.transform(ApplyConfig({"Defaults": {}, **cfg.folding}))


@step()
def step_minimize_bit_width(model, cfg: HwConfig):
    """The bit width minimization again, for the widths the folding chose."""
    return _minimize_bit_width(model)


@step()
def step_generate_estimate_reports(model, cfg: HwConfig) -> Estimate:
    """FINN's per-layer cycle and resource estimates, and the pipeline's, as an Estimate."""
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles
    from qonnx.custom_op.registry import getCustomOp

    cycles = model.analysis(exp_cycles_per_layer)
    res = model.analysis(lambda m: res_estimation(m, fpgapart=cfg.device.part))
    perf = model.transform(AnnotateCycles()).analysis(dataflow_performance)
    layers, folding = [], {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        attrs = inst.get_nodeattr_types()
        folding[node.name] = {a: inst.get_nodeattr(a) for a in _FOLDING_ATTRS if a in attrs}
        r = res[node.name]
        layers.append(LayerEstimate(
            node.name, node.op_type, folding[node.name].get("PE"), folding[node.name].get("SIMD"),
            int(cycles[node.name]), float(r.get("LUT", 0)), float(r.get("BRAM_18K", 0)), float(r.get("DSP", 0))))
    target = float("nan") if cfg.target_fps is None else cfg.target_fps
    tc = 0 if cfg.target_fps is None else target_cycles(cfg.target_fps, cfg.clock_ns)
    return Estimate(target, tc, layers, int(perf["max_cycles"]), int(perf["critical_path_cycles"]), cfg.clock_ns,
                    folding)


def _minimize_bit_width(model):
    """Tighten weight and accumulator widths, round the thresholds, then the threshold widths."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
    from finn.transformation.fpgadataflow.minimize_weight_bit_width import MinimizeWeightBitWidth
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.infer_datatypes import InferDataTypes

    model = model.transform(MinimizeWeightBitWidth()).transform(MinimizeAccumulatorWidth())
    model = model.transform(InferDataTypes()).transform(RoundAndClipThresholds()).transform(InferDataTypes())
    return model.transform(MinimizeWeightBitWidth()).transform(InferDataTypes())


def _without_float_input(dataflow):
    """Cut the input quantizer off the dataflow: the host sends the input integers x_int.

    FINN converts the float input Quant into a Thresholding layer on FLOAT32 values inside the
    partition. The integer engine and the paper quantize observations on the host (float32 division
    and rounding), so the device's input is x_int, annotated with its integer type."""
    from qonnx.util.basic import get_by_name

    first = dataflow.graph.node[0]
    if dataflow.get_tensor_datatype(first.input[0]).is_integer():
        return dataflow
    if first.op_type != "Thresholding":
        raise QsearchError(f"FINN's dataflow starts with {first.op_type} on float input, expected Thresholding")
    new_in = copy.deepcopy(get_by_name(dataflow.graph.value_info, first.output[0]))
    dataflow.graph.value_info.remove(get_by_name(dataflow.graph.value_info, first.output[0]))
    dataflow.graph.input.remove(dataflow.graph.input[0])
    dataflow.graph.input.insert(0, new_in)
    dataflow.graph.node.remove(first)
    return dataflow
