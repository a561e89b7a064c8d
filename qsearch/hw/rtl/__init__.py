"""qsearch's own RTL for its integer policies, simulated with verilator and synthesized with yosys.

  arch.py        the two architectures (fully parallel, folded PE x SIMD), their cycle counts, the chooser
  generate.py    Verilog-2001 for a whole policy from the IntegerModel
  vectors.py     test observations (edges and extremes) and the integer engine's expected outputs
  testbench.py   a self-checking Verilog testbench reading those vectors
  tools.py       running verilator and yosys (the registry builds) in a design folder
  simulate.py    the testbench in verilator: the RTL, or the netlist with yosys' Xilinx cell models
  yosys.py       yosys' synth_xilinx: resources, fit, latency, throughput, logic depth (`synthesize`)
  export.py      `qsearch export --format verilog`: RTL, testbench, vectors, README
"""
