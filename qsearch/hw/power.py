"""A power and energy estimate for a FINN design on an Artix-7. These are ESTIMATES, not measurements.

Model: P = P_static + (c_lut * kLUT + c_bram * BRAM18 + c_dsp * DSP) * f / 100 MHz.

Coefficients: a non-negative least-squares fit to the paper's Table 3 (Kresse & Lampert 2025: five
designs on the XC7A15T-1 at 100 MHz, power from AMD's Xilinx Power Estimator (XPE) on post-synthesis
resource counts), using the resources FINN estimates (LUT, BRAM18, DSP; FINN has no FF estimate).
Fit: static 0.126 W, 5.3 mW per BRAM18, 4.5 mW per DSP48E1; the LUT term fits to 0 over the table's
1.9k-4.3k LUT (the other terms explain the spread), and the residual is 0.038 W (L2 over the five
designs, each 0.17-0.39 W). Outside that range (many more LUT, other parts) the figure is an
extrapolation. Dynamic power scales with the clock; the static term is the device's at 25 C.

Inputs are FINN's resource estimates, so the power is an estimate of an estimate; energy per action is
that power divided by FINN's estimated throughput.
"""
from __future__ import annotations

STATIC_W = 0.126
W_PER_KLUT = 0.0
W_PER_BRAM18 = 0.00534
W_PER_DSP = 0.00446
REFERENCE_MHZ = 100.0
SOURCE = "fit to the paper's Table 3 (XPE, XC7A15T-1, 100 MHz); see qsearch/hw/power.py"


def power_w(lut: float, bram18: float, dsp: float, clock_ns: float) -> float:
    """Estimated total power [W] of a design at the clock."""
    mhz = 1e3 / clock_ns
    dynamic = W_PER_KLUT * lut / 1e3 + W_PER_BRAM18 * bram18 + W_PER_DSP * dsp
    return STATIC_W + dynamic * mhz / REFERENCE_MHZ


def energy_per_action_j(power: float, actions_per_s: float) -> float:
    return power / actions_per_s
