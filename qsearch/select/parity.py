"""FP32 parity: does a quantized configuration match the full-precision baseline?

Rules (the output always names the rule it used):
  sigma      the paper's criterion (Section 3.1): the configuration's mean return over seeds is at
             least the FP32 mean minus one FP32 standard deviation. The paper says "within the FP32
             band"; a mean above the band is better than FP32, so it counts as a match too.
  welch      one-sided Welch t-test (scipy) of "the configuration's mean is below FP32's": a match
             unless that is significant at level alpha. Needs 2+ seeds on both sides.
  bootstrap  one-sided bootstrap interval on (configuration mean - FP32 mean), 10,000 resamples
             with a fixed seed: a match if its upper (1 - alpha) bound reaches 0.
The two tests ask "is it significantly worse?", so with few seeds they are more lenient than sigma.

Band floor (sigma only): when every FP32 seed reaches a task's ceiling, FP32's std is near zero and
sigma rejects anything not exactly as good (measured: InvertedDoublePendulum-v5, FP32 9,359.2 +- 0.7,
a 2-bit core at 9,356.5, 99.97% of FP32, fails). `min_band` floors the band's half-width at that
fraction of |FP32 mean|. The paper's rule has no floor (min_band 0), and the tables say which applies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qsearch.errors import QsearchError
from qsearch.select.results import Stats

RULES = ("sigma", "welch", "bootstrap")
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Rule:
    """The FP32-parity rule a selection applies (the `selection:` section's rule and alpha)."""

    name: str = "sigma"
    """sigma (the paper's), welch or bootstrap"""
    alpha: float = 0.05
    """significance level of welch and bootstrap"""
    min_band: float = 0.0
    """sigma only: the band's half-width is at least this fraction of |FP32 mean| (0: the paper's rule)"""

    def __post_init__(self):
        if self.name not in RULES:
            raise QsearchError(f"unknown parity rule {self.name!r}; choose one of {', '.join(RULES)}")
        if not 0 < self.alpha < 1:
            raise QsearchError(f"parity alpha must lie strictly between 0 and 1, got {self.alpha}")
        if not 0 <= self.min_band < 1:
            raise QsearchError(f"parity min_band must lie in [0, 1), got {self.min_band}")
        if self.min_band and self.name != "sigma":
            raise QsearchError(f"parity min_band floors the sigma rule's band; the {self.name} rule has no band")

    def half_width(self, fp32: Stats) -> float:
        """The sigma band's half-width: FP32's std, floored at min_band x |FP32 mean|."""
        return max(fp32.std, self.min_band * abs(fp32.mean))

    def describe(self) -> str:
        if self.name == "sigma" and self.min_band:
            return (f"sigma: mean return >= FP32 mean - max(1 std, {self.min_band:g} x |FP32 mean|) "
                    f"(paper Section 3.1, with a band floor of {self.min_band:.1%})")
        if self.name == "sigma":
            return "sigma: mean return >= FP32 mean - 1 std (paper Section 3.1; no band floor)"
        if self.name == "welch":
            return f"welch: one-sided Welch t-test, not significantly below FP32 at alpha={self.alpha}"
        return f"bootstrap: upper {1 - self.alpha:.0%} bootstrap bound of (mean - FP32 mean) >= 0"


@dataclass(frozen=True)
class Verdict:
    """A rule's answer for one configuration."""

    match: bool
    """the configuration matches FP32"""
    detail: str
    """the figure the decision rests on, for the stage tables"""
    margin: float | None = None
    """that figure against the rule's threshold, >= 0 exactly when it matches: sigma, mean - bound;
    welch, p - alpha; bootstrap, the upper bound of (mean - FP32 mean). None: no test was made"""


def verdict(candidate: Stats, fp32: Stats, rule: Rule) -> Verdict:
    if candidate.n == 0 or fp32.n == 0:
        return Verdict(False, "no results")
    if rule.name == "sigma":
        bound = fp32.mean - rule.half_width(fp32)
        return Verdict(candidate.mean >= bound, f"bound {bound:.1f}", candidate.mean - bound)
    if candidate.n < 2 or fp32.n < 2:
        return Verdict(False, f"{rule.name} needs 2+ seeds on both sides")
    if rule.name == "welch":
        return _welch(candidate, fp32, rule.alpha)
    return _bootstrap(candidate, fp32, rule.alpha)


def _welch(candidate: Stats, fp32: Stats, alpha: float) -> Verdict:
    from scipy import stats

    if candidate.std == 0 and fp32.std == 0:  # no spread on either side: no test, the means decide
        return Verdict(candidate.mean >= fp32.mean, "p n/a (no spread)", candidate.mean - fp32.mean)
    p = stats.ttest_ind(candidate.returns, fp32.returns, equal_var=False, alternative="less").pvalue
    return Verdict(bool(p >= alpha), f"p={p:.3f}", float(p - alpha))


def _bootstrap(candidate: Stats, fp32: Stats, alpha: float) -> Verdict:
    rng = np.random.default_rng(0)
    a, b = np.asarray(candidate.returns), np.asarray(fp32.returns)
    diff = (rng.choice(a, (BOOTSTRAP_RESAMPLES, a.size)).mean(1)
            - rng.choice(b, (BOOTSTRAP_RESAMPLES, b.size)).mean(1))
    upper = float(np.quantile(diff, 1 - alpha))
    return Verdict(upper >= 0, f"upper bound {upper:.1f}", upper)
