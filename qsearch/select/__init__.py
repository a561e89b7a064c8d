"""Selection and analysis: FP32 parity, the paper's three-stage minimal-configuration selection,
noise robustness, and the report (figures and tables)."""
