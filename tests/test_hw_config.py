"""The hardware configuration: its defaults documented once, the device resolved once, refusals, the fit check."""
import dataclasses

import pytest

from qsearch.cli import _parser
from qsearch.config import field_doc
from qsearch.errors import QsearchError
from qsearch.hw.config import HwConfig
from qsearch.hw.device import device

A15T = HwConfig().device


def test_every_field_has_a_one_line_docstring():
    for f in dataclasses.fields(HwConfig):
        doc = field_doc(HwConfig, f.name)
        assert doc.strip() and "\n" not in doc, f.name


def test_the_paper_defaults_and_the_cli_reads_them():
    cfg = HwConfig()
    assert (cfg.part, cfg.clock_ns, cfg.pad, cfg.mvau_wwidth_max) == ("xc7a15tfgg484-1", 10.0, None, 36)
    assert cfg.targets == (1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8) and cfg.device.part == cfg.part
    a = _parser().parse_args(["hw", "--paper"])
    assert (a.part, a.clock_ns, a.pad, a.mvau_wwidth_max) == (cfg.part, cfg.clock_ns, cfg.pad, cfg.mvau_wwidth_max)
    hw = _parser()._subparsers._group_actions[0].choices["hw"]
    helps = {o: a.help for a in hw._actions for o in a.option_strings}
    assert helps["--clock-ns"] == f"{field_doc(HwConfig, 'clock_ns')} (default 10)"
    assert helps["--targets"].endswith("(default 1e2 1e3 1e4 1e5 1e6 1e7 1e8)")


def test_a_target_keeps_the_resolved_configuration():
    cfg = HwConfig(part="XC7A35Tcpg236-1", clock_ns=5.0, pad=32)
    t = cfg.for_target(1e5)
    assert (t.target_fps, t.folding, t.device, t.clock_ns, t.pad) == (1e5, None, cfg.device, 5.0, 32)
    assert cfg.device.part == "xc7a35tcpg236-1" and cfg.device.lut == 20_800
    f = t.with_folding({"MVAU_hls_0": {"PE": 2}})
    assert f.target_fps is None and f.folding == {"MVAU_hls_0": {"PE": 2}}
    assert cfg.record() == {"targets": cfg.targets, "part": "XC7A35Tcpg236-1", "clock_ns": 5.0, "pad": 32,
                              "mvau_wwidth_max": 36, "check_netlist": False}


@pytest.mark.parametrize("kwargs, message", [
    ({"part": "xc9zz-1"}, "unknown FPGA part"),
    ({"part": "xc7a15t"}, "unknown FPGA part"),
    ({"part": "xcvu9p-flga2104-2L-e"}, "unknown FPGA part"),
    ({"clock_ns": 0}, "clock period must be positive"),
    ({"mvau_wwidth_max": 0}, "mvau_wwidth_max must be a positive integer"),
    ({"pad": 0}, "--pad must be a positive integer"),
    ({"targets": ()}, "targets must be positive"),
    ({"targets": (1e3, -1)}, "targets must be positive"),
    ({"target_fps": 0}, "the target must be positive"),
    ({"target_fps": 1e3, "folding": {}}, "not both"),
    ({"check_netlist": 1}, "check_netlist must be true or false"),
])
def test_bad_values_are_refused(kwargs, message):
    with pytest.raises(QsearchError, match=message):
        HwConfig(**kwargs)


def test_fit_check_at_the_device_edges():
    assert (A15T.lut, A15T.ff, A15T.bram18, A15T.dsp) == (10_400, 20_800, 50, 45)
    assert A15T.fits(10_400, 50, 45, ff=20_800)
    assert not A15T.fits(10_401, 50, 45) and A15T.over(10_401, 50, 45) == ["LUT"]
    assert not A15T.fits(10_400, 51, 45) and A15T.over(10_400, 51, 45) == ["BRAM18"]
    assert not A15T.fits(10_400, 50, 46) and A15T.over(10_400, 50, 46) == ["DSP"]
    assert not A15T.fits(0, 0, 0, ff=20_801) and A15T.fits(0, 0, 0, ff=None)
    assert device("xc7a100tcsg324-1").lut == 63_400  # not read as another xc7a1.. part
