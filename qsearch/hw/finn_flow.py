"""FINN's estimate flow on a QONNX actor, with the real finn-plus compiler (no Vivado needed).

The steps are those of FINN's builder (finn.builder.build_dataflow_steps, estimate_only_dataflow_steps),
called as transformations: the builder itself cannot be imported without Vivado (it loads the XSI
simulator binding and the mip solver), see ../shared/notes/stack-facts.md. Differences from the
builder, on purpose:
  - the float input Quant (a MultiThreshold on float values after conversion) and the float output
    scale stay outside the dataflow partition instead of becoming Requant/elementwise layers, as in
    the paper's hardware figures; the builder's step_convert_to_hw would turn them into hardware.
  - the front end runs once per policy (`prepare`); only the folding and the estimates run per
    target (`estimate`), 10-50 ms each instead of ~0.7 s for a builder run.

All figures are FINN's analytical estimates (finn.analysis.fpgadataflow.res_estimation,
exp_cycles_per_layer, dataflow_performance), not post-synthesis results. FINN gives no flip-flop
estimate.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from qsearch.errors import QsearchError
from qsearch.hw.config import HwConfig

HW_OPS = ("MVAU", "Thresholding")  # op types (before specialization) that make up the dataflow
_FOLDING_ATTRS = ["PE", "SIMD", "ram_style", "ram_style_thresholds", "resType", "mem_mode"]


@dataclass
class LayerEstimate:
    name: str
    op: str
    pe: int | None
    simd: int | None
    cycles: int
    lut: float
    bram18: float
    dsp: float


@dataclass
class Estimate:
    """FINN's estimates for one folding target."""

    target_fps: float
    target_cycles: int
    layers: list[LayerEstimate]
    max_cycles: int
    critical_path_cycles: int
    clock_ns: float
    folding: dict = field(default_factory=dict)  # FINN folding config (node name -> attributes)

    @property
    def lut(self) -> float:
        return sum(l.lut for l in self.layers)

    @property
    def bram18(self) -> float:
        return sum(l.bram18 for l in self.layers)

    @property
    def dsp(self) -> float:
        return sum(l.dsp for l in self.layers)

    @property
    def throughput(self) -> float:
        """Actions per second: one action per max_cycles (the slowest layer) at the clock."""
        return 1e9 / self.clock_ns / self.max_cycles

    @property
    def latency_ns(self) -> float:
        """FINN's pessimistic latency: the sum of the layers' cycles along the pipeline."""
        return self.critical_path_cycles * self.clock_ns


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


def prepare(qonnx_path: Path, work_dir: Path):
    """QONNX -> FINN -> streamline -> HW layers -> dataflow partition, integer in and out.

    Returns the dataflow partition (a qonnx ModelWrapper) of generic HW layers, which FINN can execute
    in Python; `specialize` makes it ready for folding. Partition files are written under work_dir."""
    setup()
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames, GiveUniqueNodeNames, RemoveStaticGraphInputs, RemoveUnusedTensors,
    )
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(ModelWrapper(str(qonnx_path)))
    model = model.transform(ConvertQONNXtoFINN())
    # step_tidy_up
    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
              InferDataTypes(), RemoveStaticGraphInputs()):
        model = model.transform(t)
    # step_streamline
    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(Streamline()).transform(InferDataLayouts()).transform(RemoveUnusedTensors())
    # step_convert_to_hw, limited to the layers the paper put on the device
    model = model.transform(InferQuantizedMatrixVectorActivation())
    model = model.transform(InferThresholdingLayer())
    model = model.transform(GiveUniqueNodeNames()).transform(InferDataTypes())
    model = _minimize_bit_width(model)
    # step_create_dataflow_partition: the HW layers go into one partition, the float ends stay out
    # a fresh folder per call: FINN names partition files partition_0.onnx, and parallel workers that
    # prepare different policies in one work_dir would otherwise overwrite each other's
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    parts_dir = tempfile.mkdtemp(prefix="partitions.", dir=work_dir)
    model = model.transform(CreateDataflowPartition(partition_model_dir=parts_dir))
    parts = model.get_nodes_by_op_type("StreamingDataflowPartition")
    if len(parts) != 1:
        raise QsearchError(f"{qonnx_path}: FINN made {len(parts)} dataflow partitions, expected one "
                           "(a layer it could not convert to hardware splits the network)")
    dataflow = ModelWrapper(getCustomOp(parts[0]).get_nodeattr("model"))
    ops = [n.op_type for n in dataflow.graph.node]
    if not ops or any(op not in HW_OPS for op in ops):
        raise QsearchError(f"{qonnx_path}: unexpected layers in FINN's dataflow partition: {ops}")
    return _without_float_input(dataflow).transform(RemoveUnusedTensors())


def specialize(dataflow, cfg: HwConfig):
    """FINN builder's step_specialize_layers: HLS or RTL variants of each layer for the part."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.transformation.general import GiveUniqueNodeNames

    return dataflow.transform(SpecializeLayers(cfg.device.part)).transform(GiveUniqueNodeNames())


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


def _minimize_bit_width(model):
    """FINN builder's step_minimize_bit_width: tighten weight and accumulator widths, round thresholds."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
    from finn.transformation.fpgadataflow.minimize_weight_bit_width import MinimizeWeightBitWidth
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.transformation.infer_datatypes import InferDataTypes

    model = model.transform(MinimizeWeightBitWidth()).transform(MinimizeAccumulatorWidth())
    model = model.transform(InferDataTypes()).transform(RoundAndClipThresholds()).transform(InferDataTypes())
    return model.transform(MinimizeWeightBitWidth()).transform(InferDataTypes())


def fold(dataflow, target_fps: float, cfg: HwConfig):
    """A copy of the prepared dataflow folded by FINN's SetFolding for `target_fps` actions/s."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding
    from qonnx.core.modelwrapper import ModelWrapper

    m = ModelWrapper(copy.deepcopy(dataflow.model))
    m = m.transform(SetFolding(target_cycles(target_fps, cfg.clock_ns), mvau_wwidth_max=cfg.mvau_wwidth_max))
    return _minimize_bit_width(m)


def estimate(dataflow, target_fps: float, cfg: HwConfig) -> Estimate:
    """Fold for `target_fps` and read FINN's per-layer cycle and resource estimates."""
    return _estimates(fold(dataflow, target_fps, cfg), float(target_fps), cfg)


def apply_folding(dataflow, folding: dict, cfg: HwConfig) -> Estimate:
    """FINN's estimates for a given folding config (node name -> attributes), applied by FINN's ApplyConfig."""
    from qonnx.core.modelwrapper import ModelWrapper
    from finn.transformation.general import ApplyConfig

    m = ModelWrapper(copy.deepcopy(dataflow.model))
    m = _minimize_bit_width(m.transform(ApplyConfig({"Defaults": {}, **folding})))
    return _estimates(m, float("nan"), cfg)


def _estimates(m, target_fps: float, cfg: HwConfig) -> Estimate:
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles
    from qonnx.custom_op.registry import getCustomOp

    cycles = m.analysis(exp_cycles_per_layer)
    res = m.analysis(lambda mm: res_estimation(mm, fpgapart=cfg.device.part))
    perf = m.transform(AnnotateCycles()).analysis(dataflow_performance)
    layers, folding = [], {}
    for node in m.graph.node:
        inst = getCustomOp(node)
        attrs = inst.get_nodeattr_types()
        folding[node.name] = {a: inst.get_nodeattr(a) for a in _FOLDING_ATTRS if a in attrs}
        r = res[node.name]
        layers.append(LayerEstimate(
            node.name, node.op_type, folding[node.name].get("PE"), folding[node.name].get("SIMD"),
            int(cycles[node.name]), float(r.get("LUT", 0)), float(r.get("BRAM_18K", 0)), float(r.get("DSP", 0))))
    tc = target_cycles(target_fps, cfg.clock_ns) if target_fps == target_fps else 0
    return Estimate(target_fps, tc, layers, int(perf["max_cycles"]), int(perf["critical_path_cycles"]),
                    cfg.clock_ns, folding)
