"""Taking policies to devices: export formats (QONNX, JSON, C, FINN build folder) and the PTQ baseline."""
