"""FP32 parity rules on synthetic returns."""
import pytest

from qsearch.errors import QsearchError
from qsearch.select.parity import Rule, verdict
from qsearch.select.results import Stats

FP32 = Stats((900.0, 1000.0, 1100.0))  # mean 1000, population std 81.65


def test_sigma_band_is_inclusive_and_above_the_band_matches():
    bound = FP32.mean - FP32.std
    assert verdict(Stats((bound, bound)), FP32, Rule("sigma")).match  # exactly on the edge: a tie matches
    assert not verdict(Stats((bound - 0.01, bound - 0.01)), FP32, Rule("sigma")).match
    assert verdict(Stats((1500.0, 1600.0)), FP32, Rule("sigma")).match  # better than FP32 is not a failure
    assert "bound 918.4" in verdict(Stats((950.0,)), FP32, Rule("sigma")).detail


def test_sigma_uses_the_mean_over_seeds():
    # One bad seed drags the mean below the band although two seeds lie inside it.
    assert not verdict(Stats((1000.0, 1000.0, 500.0)), FP32, Rule("sigma")).match


def test_welch_rejects_only_a_significant_shortfall():
    worse = Stats((500.0, 510.0, 490.0))
    slightly = Stats((980.0, 960.0, 1010.0))
    assert not verdict(worse, FP32, Rule("welch")).match
    assert verdict(slightly, FP32, Rule("welch")).match
    v = verdict(worse, FP32, Rule("welch", alpha=0.05))
    assert v.detail.startswith("p=") and float(v.detail[2:]) < 0.05


def test_welch_without_spread_compares_means():
    flat = Stats((1000.0, 1000.0))
    assert verdict(Stats((1000.0, 1000.0)), flat, Rule("welch")).match
    assert not verdict(Stats((999.0, 999.0)), flat, Rule("welch")).match


def test_bootstrap_is_deterministic_and_agrees_on_clear_cases():
    worse = Stats((500.0, 510.0, 490.0))
    assert not verdict(worse, FP32, Rule("bootstrap")).match
    assert verdict(Stats((1000.0, 1050.0, 990.0)), FP32, Rule("bootstrap")).match
    assert verdict(worse, FP32, Rule("bootstrap")).detail == verdict(worse, FP32, Rule("bootstrap")).detail


def test_tests_need_two_seeds_and_nothing_matches_without_results():
    assert not verdict(Stats((1000.0,)), FP32, Rule("welch")).match
    assert "2+ seeds" in verdict(Stats((1000.0,)), FP32, Rule("bootstrap")).detail
    assert not verdict(Stats(()), FP32, Rule("sigma")).match


def test_rule_is_validated_and_describes_itself():
    with pytest.raises(QsearchError, match="unknown parity rule"):
        Rule("median")
    with pytest.raises(QsearchError, match="alpha"):
        Rule("welch", alpha=1.5)
    assert "paper Section 3.1" in Rule().describe()
    assert "alpha=0.01" in Rule("welch", 0.01).describe()
