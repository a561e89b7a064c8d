"""Hardware: QONNX export, FINN estimate flow, folding sweeps on Ray, power, reports, build folders."""
