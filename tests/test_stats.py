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


# ----------------------------------------------------------------------------
# Selection-aware intervals, minimum detectable effect, permutation rank
# ----------------------------------------------------------------------------


def _loop_selection_bootstrap(val_a, test_a, val_b, test_b, idx):
  """The documented procedure written as a plain loop: re-select both rates per resample."""

  def pick(val, seeds):
    means = [np.mean(row[seeds]) if np.all(np.isfinite(row[seeds])) else np.inf for row in val]
    return min(range(len(means)), key=lambda k: (means[k], k))

  out = []
  for seeds in idx:
    ka, kb = pick(val_a, seeds), pick(val_b, seeds)
    out.append(np.mean([test_a[ka, s] / test_b[kb, s] - 1 for s in seeds]))
  return np.array(out)


def test_selection_aware_without_a_choice_is_the_paired_t_test():
  """One learning rate each: nothing to re-select, so the t-based bootstrap is the paired t."""
  val = np.full((1, len(A)), 0.2)
  c = stats.selection_aware_bootstrap(val, A[None], val, B[None], n_resamples=40_000)
  r = A / B - 1
  assert c.changed_a == c.changed_b == c.changed_any == 0.0
  assert c.rel == pytest.approx(np.mean(r))
  # The rescaled bootstrap standard error is s / sqrt(n) up to Monte Carlo error.
  assert c.se == pytest.approx(np.std(r, ddof=1) / math.sqrt(len(r)), rel=0.02)
  # scipy builds TtestResult's fields at run time: its type has no pvalue attribute.
  p_value = st.ttest_1samp(r, 0).pvalue  # pyright: ignore[reportAttributeAccessIssue]
  assert c.p_boot == pytest.approx(p_value, rel=0.1)
  low, high = stats.t_interval(r)
  assert (c.low, c.high) == pytest.approx((low, high), abs=0.02 * (high - low))


def test_selection_changes_as_often_as_the_binomial_says():
  """Rate 1 of ``a`` wins only when seed 0 is drawn at least twice: P = 1 - P(0) - P(1)."""
  n = 5
  val_a = np.array([[0.20] * n, [0.10] + [0.24] * (n - 1)])  # all seeds: row 0 (0.2 < 0.212)
  test_a = np.array([[0.50] * n, [0.40] * n])
  val_b, test_b = np.full((1, n), 0.2), np.full((1, n), 0.5)
  c = stats.selection_aware_bootstrap(val_a, test_a, val_b, test_b, n_resamples=20_000)
  p_change = 1 - 0.8**5 - 5 * 0.2 * 0.8**4  # seed 0 drawn k >= 2 times: 0.26272
  assert c.changed_a == pytest.approx(p_change, abs=0.01)
  assert c.changed_b == 0.0 and c.changed_any == c.changed_a
  assert c.rel == 0.0  # selected on all seeds: row 0, equal to b
  # The statistic is -20% when the selection changes and 0 otherwise: a Bernoulli's spread.
  sd = 0.2 * math.sqrt(p_change * (1 - p_change))
  assert c.se == pytest.approx(sd * math.sqrt(n / (n - 1)), rel=0.03)


def test_selection_aware_matches_a_plain_loop():
  rng = np.random.default_rng(3)
  n = 6
  val_a, val_b = 0.2 + 0.01 * rng.random((4, n)), 0.2 + 0.01 * rng.random((3, n))
  val_a[2, 1] = np.inf  # a diverged run: that rate is never picked when seed 1 is drawn
  test_a, test_b = 0.45 + 0.02 * rng.random((4, n)), 0.45 + 0.02 * rng.random((3, n))
  c = stats.selection_aware_bootstrap(val_a, test_a, val_b, test_b, n_resamples=500, seed=7)
  idx = np.random.default_rng(7).integers(0, n, size=(500, n))
  loop = _loop_selection_bootstrap(val_a, test_a, val_b, test_b, idx)
  assert c.se == pytest.approx(np.std(loop) * math.sqrt(n / (n - 1)))
  full = _loop_selection_bootstrap(val_a, test_a, val_b, test_b, [np.arange(n)])[0]
  assert c.rel == pytest.approx(full)
  t = st.t.ppf(0.975, n - 1)
  assert (c.low, c.high) == pytest.approx((full - t * c.se, full + t * c.se))


def test_selection_aware_verdicts():
  def make(rel, se, p):
    h95, h90 = st.t.ppf(0.975, 9) * se, st.t.ppf(0.95, 9) * se
    return stats.SelectionAwareComparison(
        10, rel, se, rel - h95, rel + h95, rel - h90, rel + h90, p, 0.0, 0.0, 0.0, 100
    )

  assert stats.selection_aware_verdict(make(0.02, 0.004, 1e-3), 0.01) == "worse"
  assert stats.selection_aware_verdict(make(-0.02, 0.004, 1e-3), 0.01) == "better"
  assert stats.selection_aware_verdict(make(0.001, 0.003, 0.7), 1.0) == "equivalent (±1%)"
  assert stats.selection_aware_verdict(make(0.001, 0.008, 0.9), 1.0) == "inconclusive"
  # Significant before the adjustment is not enough.
  assert stats.selection_aware_verdict(make(0.02, 0.008, 0.03), 0.3) == "inconclusive"
  with pytest.raises(ValueError, match="same number of seeds"):
    stats.selection_aware_bootstrap(
        np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 4))
    )


def test_minimum_detectable_effect_has_the_power_it_claims():
  # Monte Carlo: at the MDE the two-sided t-test rejects in 80% of samples.
  n, sd, alpha = 10, 0.012, 0.05 / 19
  mde = stats.minimum_detectable_effect(sd, n, alpha)
  rng = np.random.default_rng(0)
  samples = mde + sd * rng.standard_normal((40_000, n))
  t_test = st.ttest_1samp(samples, 0, axis=1)
  power = np.mean(t_test.pvalue < alpha)  # pyright: ignore[reportAttributeAccessIssue]
  assert power == pytest.approx(0.8, abs=0.01)
  # Large n: the normal formula (z_{1-alpha/2} + z_{power}) sd / sqrt(n).
  big = stats.minimum_detectable_effect(1.0, 5000, 0.05, 0.8)
  assert big == pytest.approx((st.norm.ppf(0.975) + st.norm.ppf(0.8)) / math.sqrt(5000), rel=1e-3)
  # Scales with sd, grows as alpha shrinks, undefined without spread or pairs.
  assert stats.minimum_detectable_effect(2.0, 10) == pytest.approx(
      2 * stats.minimum_detectable_effect(1.0, 10)
  )
  assert stats.minimum_detectable_effect(1.0, 10, 0.001) > stats.minimum_detectable_effect(1.0, 10)
  assert math.isnan(stats.minimum_detectable_effect(0.0, 10))
  assert math.isnan(stats.minimum_detectable_effect(1.0, 1))


def test_permutation_rank_by_hand():
  # RMSE: 0.44 beats the real 0.45, two permutations are worse: rank 2 of 4.
  assert stats.permutation_rank(0.45, [0.44, 0.46, 0.47]) == (2, 4, 0.5, 0.75)
  # The real one worst of 20 permutations: p (worse) = 1/21, the smallest possible.
  rank, total, p_better, p_worse = stats.permutation_rank(0.5, np.linspace(0.40, 0.49, 20))
  assert (rank, total) == (21, 21) and p_better == 1.0 and p_worse == pytest.approx(1 / 21)
  # Accuracy: higher is better.
  assert stats.permutation_rank(0.9, [0.8, 0.95], lower_is_better=False) == (2, 3, 2 / 3, 2 / 3)
