"""Tests for benchmarks/stats.py against scipy and hand-computed values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as st

from benchmarks import stats

# Slow tier: tests of benchmarks/ (the fast tier tests the library).
pytestmark = [pytest.mark.slow, pytest.mark.external]

# Two arms over 8 paired seeds (RMSE-like values).
A = np.array([0.451, 0.462, 0.447, 0.470, 0.455, 0.449, 0.466, 0.458])
B = np.array([0.456, 0.460, 0.452, 0.478, 0.459, 0.455, 0.465, 0.463])


def _pvalue(result: Any) -> float:
  """A scipy test result's p-value (scipy does not declare the field for type checkers)."""
  return float(result.pvalue)


def test_holm_on_a_hand_computed_list():
  # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04).
  assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  # Capped at 1; nan entries are kept and not counted in m (m = 2 here).
  out = stats.holm([0.6, float("nan"), 0.2])
  assert out[0] == pytest.approx(0.6) and out[2] == pytest.approx(0.4) and math.isnan(out[1])
  assert stats.holm([0.5, 0.7, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
  assert stats.holm([]) == []


def test_t_test_and_interval_match_scipy_and_the_formula():
  c = stats.paired_comparison(A, B)
  r = A / B - 1
  assert c.n == 8 and c.rel == pytest.approx(r.mean())
  t = r.mean() / (r.std(ddof=1) / math.sqrt(8))
  assert c.p_t == pytest.approx(2 * st.t.sf(abs(t), 7), rel=1e-10)
  assert c.p_t == pytest.approx(_pvalue(st.ttest_1samp(r, 0.0)), rel=1e-10)
  half = st.t.ppf(0.975, 7) * r.std(ddof=1) / math.sqrt(8)
  assert (c.ci_low, c.ci_high) == pytest.approx((r.mean() - half, r.mean() + half))
  assert c.p_wilcoxon == pytest.approx(_pvalue(st.wilcoxon(r)))
  assert c.mean_diff == pytest.approx(np.mean(A - B))
  assert c.ratio == pytest.approx(A.mean() / B.mean() - 1)
  assert c.wins == int(np.sum(A < B)) == 6
  assert stats.paired_comparison(A, B, lower_is_better=False).wins == 2


def test_t_interval_hand_value():
  # mean 2, sd 1, n 3: 2 +/- t(0.975, 2) / sqrt(3) with t(0.975, 2) = 4.30265 (tables).
  low, high = stats.t_interval([1.0, 2.0, 3.0])
  half = 4.30265 / math.sqrt(3)
  assert (low, high) == pytest.approx((2 - half, 2 + half), rel=1e-5)


def test_wilcoxon_exact_hand_value():
  # Five positive differences: the exact two-sided p is 2 / 2**5.
  c = stats.paired_comparison([1.1, 1.2, 1.3, 1.4, 1.5], [1.0] * 5)
  assert c.p_wilcoxon == pytest.approx(2 / 32)


def test_tost_is_two_one_sided_scipy_t_tests():
  r = A / B - 1
  for margin in (0.005, 0.01, 0.02):
    lower = _pvalue(st.ttest_1samp(r, -margin, alternative="greater"))
    upper = _pvalue(st.ttest_1samp(r, margin, alternative="less"))
    assert stats.tost(r, margin) == pytest.approx(max(lower, upper), rel=1e-10)
    # Hand form: the binding side is the margin nearer the mean.
    se = r.std(ddof=1) / math.sqrt(len(r))
    t_near = (margin - abs(r.mean())) / se
    assert stats.tost(r, margin) == pytest.approx(st.t.sf(t_near, len(r) - 1), rel=1e-10)
  assert stats.paired_comparison(A, B, margin=0.02).p_tost == pytest.approx(stats.tost(r, 0.02))


def test_tost_agrees_with_the_90_percent_interval():
  rng = np.random.default_rng(3)
  for _ in range(50):
    r = rng.normal(rng.uniform(-0.01, 0.01), rng.uniform(0.001, 0.01), size=10)
    low, high = stats.t_interval(r, confidence=0.90)
    inside = low > -0.01 and high < 0.01
    assert (stats.tost(r, 0.01) < 0.05) == inside


def test_bootstrap_interval():
  # A constant ratio: every resample gives it exactly.
  low, high = stats.bootstrap_ratio_interval(B * 1.02, B)
  assert low == pytest.approx(0.02) and high == pytest.approx(0.02)
  # Many seeds: the percentile bootstrap of the ratio is close to the t interval.
  rng = np.random.default_rng(0)
  b = rng.normal(0.46, 0.01, 400)
  a = b * (1 + rng.normal(-0.003, 0.004, 400))
  c = stats.paired_comparison(a, b)
  assert c.boot_low == pytest.approx(c.ci_low, abs=5e-4)
  assert c.boot_high == pytest.approx(c.ci_high, abs=5e-4)
  assert c.ci_high < 0  # the simulated -0.3% is detected with 400 seeds
  assert stats.bootstrap_ratio_interval(a, b, seed=1) == stats.bootstrap_ratio_interval(
      a, b, seed=1
  )


def test_identical_arms_are_exactly_equivalent():
  c = stats.paired_comparison(B, B)
  assert c.p_t == 1.0 and c.p_wilcoxon == 1.0 and c.p_tost == 0.0
  assert (c.ci_low, c.ci_high) == (0.0, 0.0) and c.wins == 0
  assert stats.verdict(c, 1.0) == "equivalent (±1%)"
  # A constant 3% difference is certain, and not within a 1% margin.
  c = stats.paired_comparison(B * 1.03, B)
  assert c.p_t == 0.0 and c.p_tost == 1.0


def test_non_finite_pairs_are_dropped():
  a = np.append(A, [np.nan, 0.5])
  b = np.append(B, [0.5, np.inf])
  assert stats.paired_comparison(a, b) == stats.paired_comparison(A, B)
  c = stats.paired_comparison([np.nan], [1.0])
  assert c.n == 0 and math.isnan(c.p_t) and math.isnan(c.rel)


def test_verdicts():
  c = stats.paired_comparison(A, B)  # A is lower (better for RMSE)
  assert stats.verdict(c, 0.01) == "better"
  assert stats.verdict(c, 0.01, lower_is_better=False) == "worse"
  assert stats.verdict(c, 0.2) in ("inconclusive", "equivalent (±1%)")
  assert stats.verdict(c, 0.2) == ("equivalent (±1%)" if c.p_tost < 0.05 else "inconclusive")


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="same length"):
    stats.paired_comparison([1.0, 2.0], [1.0])
  with pytest.raises(ValueError, match="margin must be a positive"):
    stats.tost([0.1, 0.2], margin=0.0)
