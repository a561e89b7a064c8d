"""qsearch's own RTL for its integer policies, simulated with verilator and synthesized with yosys.

  arch.py        the architectures (an MLP's fully parallel or folded PE x SIMD; a LUT policy's pipelined),
                 their cycle counts, the choosers
  generate.py    Verilog-2001 for a whole policy from the IntegerModel (or, through lut_generate.py,
                 the IntLUTModel)
  lut_generate.py  Verilog-2001 for a logic-circuit (LUT) policy: thermometer levels in
  design.py      what both generators produce: the design record, the valid-only handshake
  vectors.py     test inputs (edges and extremes) and the integer engine's expected outputs
  testbench.py   a self-checking Verilog testbench reading those vectors
  tools.py       running verilator and yosys (the registry builds) in a design folder
  simulate.py    the testbench in verilator: the RTL, or the netlist with yosys' Xilinx cell models
  yosys.py       yosys' synth_xilinx: resources, fit, latency, throughput, logic depth (`synthesize`)
  export.py      `qsearch export --format verilog`: RTL, testbench, vectors, README
"""
