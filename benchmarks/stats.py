"""Paired statistics for benchmark comparisons (one place, tested against scipy).

The benchmark's runs are paired: seed ``i`` gives every optimizer the same
initial weights and the same batch order, so two optimizers are compared on
their per-seed differences, not as independent samples. Everything here works
on the per-seed relative differences ``r_i = a_i / b_i - 1`` (``a``: the
optimizer, ``b``: the reference, e.g. Adam), so the test, the interval and the
equivalence statement all speak about the same quantity:

* :func:`paired_comparison`: paired t-test (``r`` against 0), Wilcoxon
  signed-rank test, the t-based 95% confidence interval of the mean relative
  difference, a paired bootstrap interval of the ratio of means, and TOST
  equivalence against a stated relative margin.
* :func:`holm`: Holm's step-down adjustment of a family of p-values.
* :func:`tost`: two one-sided t-tests of ``|mean(r)| < margin``.
* :func:`verdict`: the sentence a table prints for one comparison.

Reference for the comparisons being made: Genet & Inzirillo, "CaAdam: Improving
Adam optimizer using connection aware methods", arXiv:2410.24216, 2024.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
from scipy import optimize as _optimize
from scipy import stats as _st

DEFAULT_MARGIN = 0.01  # +/-1% relative: the equivalence margin of the reports


class PairedComparison(NamedTuple):
  """One paired comparison of ``a`` (optimizer) against ``b`` (reference).

  Relative quantities are fractions (0.01 = 1%). Intervals are 95% unless
  another ``confidence`` was asked for.

  Attributes:
    n: number of complete pairs (pairs with a non-finite value are dropped).
    mean_a: mean of ``a`` over the pairs.
    mean_b: mean of ``b`` over the pairs.
    mean_diff: mean of ``a_i - b_i``.
    rel: mean of the per-seed relative differences ``a_i / b_i - 1``.
    ci_low: lower end of the t-based interval of ``rel``.
    ci_high: upper end of the t-based interval of ``rel``.
    ratio: ``mean(a) / mean(b) - 1``.
    boot_low: lower end of the paired percentile bootstrap interval of ``ratio``.
    boot_high: upper end of that interval.
    p_t: two-sided p-value of the paired t-test (``rel`` against 0).
    p_wilcoxon: two-sided p-value of the Wilcoxon signed-rank test on ``r``.
    margin: the equivalence margin (relative).
    p_tost: TOST p-value of ``|rel| < margin`` (small: equivalent).
    wins: pairs where ``a`` beat ``b`` (by the ``lower_is_better`` convention).
  """

  n: int
  mean_a: float
  mean_b: float
  mean_diff: float
  rel: float
  ci_low: float
  ci_high: float
  ratio: float
  boot_low: float
  boot_high: float
  p_t: float
  p_wilcoxon: float
  margin: float
  p_tost: float
  wins: int


def _clean_pairs(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(
        f"a and b must be 1-D sequences of the same length (one value per seed), got shapes "
        f"{a.shape} and {b.shape}."
    )
  keep = np.isfinite(a) & np.isfinite(b) & (b != 0)
  return a[keep], b[keep]


def relative_differences(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
  """Per-seed relative differences ``a_i / b_i - 1`` of the complete pairs.

  Args:
    a: one value per seed (the optimizer).
    b: one value per seed (the reference), the same seeds in the same order.

  Returns:
    The relative differences of the pairs where both values are finite and
    ``b_i != 0``.

  Raises:
    ValueError: if ``a`` and ``b`` are not 1-D of the same length.

  Examples:
    >>> relative_differences([1.1, 2.0], [1.0, 2.5]).round(3).tolist()
    [0.1, -0.2]
  """
  a, b = _clean_pairs(a, b)
  return a / b - 1.0


def _pvalue(result: Any) -> float:
  """A scipy test result's p-value (its result classes do not declare the field for typing)."""
  return float(result.pvalue)


def _t_test(r: np.ndarray, popmean: float, alternative: str) -> float:
  """One-sample t-test p-value, with the zero-variance cases made explicit."""
  if len(r) < 2:
    return float("nan")
  if np.ptp(r) == 0:  # all differences equal: scipy returns nan; the answer is exact
    m = float(r[0])
    if alternative == "two-sided":
      return 1.0 if m == popmean else 0.0
    if alternative == "greater":
      return 0.0 if m > popmean else 1.0
    return 0.0 if m < popmean else 1.0
  return _pvalue(_st.ttest_1samp(r, popmean, alternative=alternative))


def tost(r: npt.ArrayLike, margin: float = DEFAULT_MARGIN) -> float:
  """TOST (two one-sided t-tests) p-value for equivalence ``-margin < mean(r) < margin``.

  The larger p-value of the one-sided tests of ``H0: mean <= -margin`` and
  ``H0: mean >= margin``. Below 0.05 it means the 90% t interval lies within
  ``(-margin, margin)``: the difference is shown to be smaller than the margin.

  Args:
    r: per-seed (relative) differences.
    margin: the equivalence margin, positive, in the units of ``r``.

  Returns:
    The TOST p-value (nan with fewer than 2 values).

  Raises:
    ValueError: if ``margin`` is not positive.

  Examples:
    >>> round(tost([0.001, -0.002, 0.0015, 0.0, -0.001], margin=0.01), 6) < 0.05
    True
  """
  if not margin > 0:
    raise ValueError(f"margin must be a positive number (e.g. 0.01 for 1%), got {margin!r}.")
  r = np.asarray(r, np.float64)
  lower = _t_test(r, -margin, "greater")
  upper = _t_test(r, margin, "less")
  return max(lower, upper)


def t_interval(r: npt.ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
  """The t-based confidence interval of ``mean(r)``.

  Args:
    r: per-seed differences.
    confidence: the interval's coverage, in (0, 1).

  Returns:
    ``(low, high)``; ``(nan, nan)`` with fewer than 2 values.

  Examples:
    >>> [round(x, 4) for x in t_interval([1.0, 2.0, 3.0])]
    [-0.4841, 4.4841]
  """
  r = np.asarray(r, np.float64)
  if len(r) < 2:
    return float("nan"), float("nan")
  m = float(np.mean(r))
  half = float(_st.t.ppf(0.5 + confidence / 2, len(r) - 1) * np.std(r, ddof=1) / math.sqrt(len(r)))
  return m - half, m + half


def bootstrap_ratio_interval(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
  """Paired percentile bootstrap interval of ``mean(a) / mean(b) - 1``.

  Seeds are resampled with replacement, keeping each pair together.

  Args:
    a: one value per seed.
    b: one value per seed, the same seeds.
    confidence: the interval's coverage, in (0, 1).
    n_resamples: number of bootstrap resamples.
    seed: seed of the resampling (the interval is deterministic for a seed).

  Returns:
    ``(low, high)``; ``(nan, nan)`` with fewer than 2 complete pairs.

  Examples:
    >>> [round(x, 6) for x in bootstrap_ratio_interval([1.1, 2.2, 3.3], [1.0, 2.0, 3.0])]
    [0.1, 0.1]
  """
  a, b = _clean_pairs(a, b)
  if len(a) < 2:
    return float("nan"), float("nan")
  idx = np.random.default_rng(seed).integers(0, len(a), size=(n_resamples, len(a)))
  ratios = a[idx].mean(1) / b[idx].mean(1) - 1.0
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(ratios, [tail, 100 - tail])
  return float(low), float(high)


def wilcoxon_p(r: npt.ArrayLike) -> float:
  """Two-sided Wilcoxon signed-rank p-value of ``r`` (1.0 when every value is 0).

  Examples:
    >>> wilcoxon_p([0.0, 0.0])
    1.0
  """
  values = np.asarray(r, np.float64)
  nonzero = values[values != 0]
  if len(nonzero) == 0:
    return 1.0
  if len(values) < 2:
    return float("nan")
  return _pvalue(_st.wilcoxon(values))


def paired_comparison(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    margin: float = DEFAULT_MARGIN,
    confidence: float = 0.95,
    lower_is_better: bool = True,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
  """Compares ``a`` with ``b`` over paired seeds (see the module docstring).

  Args:
    a: the optimizer's value per seed (e.g. test RMSE).
    b: the reference's value per seed, the same seeds in the same order.
    margin: equivalence margin for TOST, relative (0.01 = 1%).
    confidence: coverage of the intervals.
    lower_is_better: whether smaller values are better (RMSE, loss) or larger
      (accuracy); only used to count wins.
    n_resamples: bootstrap resamples.
    seed: bootstrap seed.

  Returns:
    A :class:`PairedComparison`.

  Raises:
    ValueError: if ``a`` and ``b`` differ in length or ``margin`` is not positive.

  Examples:
    >>> c = paired_comparison([0.45, 0.46, 0.44, 0.47], [0.46, 0.46, 0.45, 0.48])
    >>> c.n, round(100 * c.rel, 2), c.wins
    (4, -1.62, 3)
  """
  a, b = _clean_pairs(a, b)
  r = a / b - 1.0
  nan = float("nan")
  low, high = t_interval(r, confidence)
  boot = bootstrap_ratio_interval(a, b, confidence, n_resamples, seed)
  n = len(r)
  better = (a < b) if lower_is_better else (a > b)
  return PairedComparison(
      n=n,
      mean_a=float(np.mean(a)) if n else nan,
      mean_b=float(np.mean(b)) if n else nan,
      mean_diff=float(np.mean(a - b)) if n else nan,
      rel=float(np.mean(r)) if n else nan,
      ci_low=low,
      ci_high=high,
      ratio=float(np.mean(a) / np.mean(b) - 1.0) if n else nan,
      boot_low=boot[0],
      boot_high=boot[1],
      p_t=_t_test(r, 0.0, "two-sided"),
      p_wilcoxon=wilcoxon_p(r) if n else nan,
      margin=float(margin),
      p_tost=tost(r, margin),
      wins=int(np.sum(better)),
  )


def holm(pvalues: npt.ArrayLike) -> list[float]:
  """Holm's step-down adjusted p-values of one family of tests.

  Sort the ``m`` finite p-values ascending; the ``k``-th smallest (``k`` from
  1) becomes ``max_{j <= k} min(1, (m - j + 1) p_(j))``. Rejecting where the
  adjusted value is below ``alpha`` controls the family-wise error rate at
  ``alpha``. Non-finite entries stay nan and do not count in ``m``.

  Args:
    pvalues: the family's p-values, in any order.

  Returns:
    The adjusted p-values in the input order.

  Examples:
    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
  """
  p = np.asarray(pvalues, np.float64)
  out = np.full(p.shape, np.nan)
  finite = np.flatnonzero(np.isfinite(p))
  m = len(finite)
  order = finite[np.argsort(p[finite], kind="stable")]
  running = 0.0
  for k, i in enumerate(order):
    running = max(running, min(1.0, (m - k) * p[i]))
    out[i] = running
  return [float(round(x, 15)) if math.isfinite(x) else float("nan") for x in out]


def verdict(
    c: PairedComparison, p_adjusted: float, lower_is_better: bool = True, alpha: float = 0.05
) -> str:
  """A short verdict for a table: better / worse / equivalent / inconclusive.

  ``better`` or ``worse`` when the Holm-adjusted paired t-test rejects "no
  difference" at ``alpha``; otherwise ``equivalent (±m%)`` when TOST shows the
  difference lies within the margin, else ``inconclusive`` ("not significant"
  is not "equal").

  Args:
    c: the comparison.
    p_adjusted: its Holm-adjusted p-value within the table's family.
    lower_is_better: the metric's direction.
    alpha: the significance level.

  Returns:
    The verdict text.

  Examples:
    >>> c = paired_comparison([0.45, 0.46, 0.44, 0.47], [0.46, 0.46, 0.45, 0.48])
    >>> verdict(c, p_adjusted=0.5)
    'inconclusive'
  """
  if math.isfinite(p_adjusted) and p_adjusted < alpha:
    improved = (c.rel < 0) if lower_is_better else (c.rel > 0)
    return "better" if improved else "worse"
  if math.isfinite(c.p_tost) and c.p_tost < alpha:
    return f"equivalent (±{100 * c.margin:g}%)"
  return "inconclusive"


# ----------------------------------------------------------------------------
# Selection-aware intervals, power, permutation rank
# ----------------------------------------------------------------------------


class SelectionAwareComparison(NamedTuple):
  """A paired comparison whose learning rates are re-selected inside every resample.

  Relative quantities are fractions (0.01 = 1%).

  Attributes:
    n: number of seeds.
    rel: mean of ``a_i / b_i - 1`` at the learning rates selected on all seeds.
    se: its standard error from the bootstrap with re-selection (see
      :func:`selection_aware_bootstrap`).
    low: lower end of the 95% interval ``rel - t se`` (selection included).
    high: upper end of that interval.
    low90: lower end of the 90% interval (the equivalence interval).
    high90: upper end of that interval.
    p_boot: two-sided t p-value of ``rel = 0`` with that standard error.
    changed_a: fraction of resamples where ``a``'s selected learning rate differs
      from its selection on all seeds.
    changed_b: the same for ``b``.
    changed_any: fraction of resamples where either selection differs.
    n_resamples: number of resamples.
  """

  n: int
  rel: float
  se: float
  low: float
  high: float
  low90: float
  high90: float
  p_boot: float
  changed_a: float
  changed_b: float
  changed_any: float
  n_resamples: int


def _select_rows(val: np.ndarray, idx: np.ndarray) -> np.ndarray:
  """The selected row (learning rate) per resample.

  The lowest mean validation loss over the drawn seeds; a row with a non-finite loss among
  them is never selected; ties go to the lower row (the smaller learning rate).
  """
  v = val[:, idx]  # (rows, resamples, n)
  mean = np.where(np.isfinite(v).all(-1), v.mean(-1), np.inf)
  return np.argmin(mean, axis=0)


def selection_aware_bootstrap(
    val_a: np.ndarray,
    test_a: np.ndarray,
    val_b: np.ndarray,
    test_b: np.ndarray,
    *,
    n_resamples: int = 4000,
    seed: int = 0,
) -> SelectionAwareComparison:
  """Seed bootstrap of the best-against-best relative difference, re-selecting each resample.

  The sweeps pick each optimizer's learning rate by the mean validation loss over
  seeds and then compare test values at the picked rates. Treating the pick as
  fixed ignores that other seeds would have picked other rates. Here the seeds
  are resampled with replacement (pairs kept together); in every resample both
  learning rates are picked again from the resampled validation losses, and the
  statistic is the mean over the resampled seeds of ``test_a / test_b - 1`` at
  the new picks. The intervals and the p-value are t-based on the bootstrap
  standard error of that statistic (rescaled by ``sqrt(n / (n - 1))``, so that
  without any change of selection they are the paired t-test's up to Monte
  Carlo error): ``rel +- t_{n-1} se``. Percentile intervals are avoided on
  purpose: with 10 seeds they undercover (a nominal 95% one is about an 88% t
  interval) and cannot resolve the small p-values a Holm correction needs.

  Args:
    val_a: ``(learning rates, seeds)`` validation losses of ``a``, rows in grid
      order (smallest rate first: ties go to it); non-finite means diverged.
    test_a: ``(learning rates, seeds)`` test values of ``a``, the same layout.
    val_b: the same for the reference ``b`` (its own grid).
    test_b: the same for ``b``.
    n_resamples: number of resamples.
    seed: seed of the resampling (the result is deterministic for a seed).

  Returns:
    A :class:`SelectionAwareComparison`.

  Raises:
    ValueError: if the arrays disagree in shape or number of seeds.

  Examples:
    >>> val = np.array([[0.2, 0.2, 0.2]])  # one learning rate: nothing to re-select
    >>> c = selection_aware_bootstrap(val, np.array([[1.1, 2.2, 3.3]]), val,
    ...                               np.array([[1.0, 2.0, 3.0]]))
    >>> round(c.rel, 6), round(c.se, 6), c.changed_any
    (0.1, 0.0, 0.0)
  """
  arrays = [np.asarray(x, np.float64) for x in (val_a, test_a, val_b, test_b)]
  val_a, test_a, val_b, test_b = arrays
  if (
      any(x.ndim != 2 for x in arrays)
      or val_a.shape != test_a.shape
      or val_b.shape != test_b.shape
      or val_a.shape[1] != val_b.shape[1]
  ):
    raise ValueError(
        "val_a/test_a and val_b/test_b must be 2-D (learning rates, seeds) arrays of matching "
        f"shapes with the same number of seeds, got {[x.shape for x in arrays]}."
    )
  n = val_a.shape[1]
  full = np.arange(n)[None]
  ka0, kb0 = _select_rows(val_a, full)[0], _select_rows(val_b, full)[0]
  rel = float(np.nanmean(test_a[ka0] / test_b[kb0] - 1.0))
  idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
  ka, kb = _select_rows(val_a, idx), _select_rows(val_b, idx)
  with np.errstate(invalid="ignore"):
    r = test_a[ka[:, None], idx] / test_b[kb[:, None], idx] - 1.0
  stat = np.nanmean(r, axis=1)
  stat = stat[np.isfinite(stat)]
  # The bootstrap standard error of a mean is s * sqrt((n - 1) / n) / sqrt(n): rescaled, it is
  # the paired t-test's s / sqrt(n) when no selection changes, plus the selection's variance.
  se = float(np.std(stat)) * math.sqrt(n / (n - 1))
  half95 = float(_st.t.ppf(0.975, n - 1)) * se
  half90 = float(_st.t.ppf(0.95, n - 1)) * se
  p = float(2 * _st.t.sf(abs(rel) / se, n - 1)) if se > 0 else float(rel == 0)
  return SelectionAwareComparison(
      n=n,
      rel=rel,
      se=se,
      low=rel - half95,
      high=rel + half95,
      low90=rel - half90,
      high90=rel + half90,
      p_boot=p,
      changed_a=float(np.mean(ka != ka0)),
      changed_b=float(np.mean(kb != kb0)),
      changed_any=float(np.mean((ka != ka0) | (kb != kb0))),
      n_resamples=n_resamples,
  )


def selection_aware_verdict(
    c: SelectionAwareComparison,
    p_adjusted: float,
    margin: float = DEFAULT_MARGIN,
    lower_is_better: bool = True,
    alpha: float = 0.05,
) -> str:
  """The verdict of a selection-aware comparison.

  ``better``/``worse`` when the Holm-adjusted bootstrap p-value is below
  ``alpha``; ``equivalent (±m%)`` when the 90% selection-aware interval lies
  within ``±margin`` (the bootstrap form of TOST at 0.05); else ``inconclusive``.

  Args:
    c: the comparison.
    p_adjusted: its Holm-adjusted ``p_boot`` within the table's family.
    margin: the equivalence margin (relative).
    lower_is_better: the metric's direction.
    alpha: the significance level.

  Returns:
    The verdict text.

  Examples:
    >>> c = SelectionAwareComparison(10, 0.002, 0.004, -0.007, 0.011, -0.005, 0.009, 0.6,
    ...                              0.2, 0.1, 0.3, 4000)
    >>> selection_aware_verdict(c, p_adjusted=1.0)
    'equivalent (±1%)'
  """
  if math.isfinite(p_adjusted) and p_adjusted < alpha:
    improved = (c.rel < 0) if lower_is_better else (c.rel > 0)
    return "better" if improved else "worse"
  if -margin < c.low90 and c.high90 < margin:
    return f"equivalent (±{100 * margin:g}%)"
  return "inconclusive"


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
  """The smallest mean difference a two-sided paired t-test detects with the given power.

  Solves ``P(|T| > t_{1-alpha/2, n-1}) = power`` for the mean ``delta``, where
  ``T`` follows the noncentral t distribution with ``n - 1`` degrees of freedom
  and noncentrality ``delta * sqrt(n) / sd``. Pass a Holm/Bonferroni-adjusted
  ``alpha`` (``0.05 / m`` for ``m`` tests: Holm's strictest step) to get the
  effect a family-wise test would detect.

  Args:
    sd: standard deviation of the per-seed differences (in their units).
    n: number of pairs.
    alpha: the two-sided significance level of the test.
    power: the probability of rejecting at that effect.

  Returns:
    The minimum detectable effect, in the units of ``sd`` (nan if ``sd`` is
    not positive and finite or ``n < 2``).

  Examples:
    >>> round(minimum_detectable_effect(1.0, 10), 3)  # Cohen's d for n = 10
    0.996
  """
  if n < 2 or not (math.isfinite(sd) and sd > 0):
    return float("nan")
  df = n - 1
  crit = float(_st.t.ppf(1 - alpha / 2, df))

  def shortfall(delta: float) -> float:
    nc = delta * math.sqrt(n) / sd
    # P(T < -crit) written as the upper tail at -nc: scipy's nct.cdf is nan far in the tail.
    return float(_st.nct.sf(crit, df, nc) + _st.nct.sf(crit, df, -nc)) - power

  high = sd
  while shortfall(high) < 0:
    high *= 2
  root = _optimize.brentq(shortfall, 0.0, high, xtol=1e-12 * sd)  # full_output=False: a float
  return float(cast(float, root))


def permutation_rank(
    real: float, permuted: Sequence[float] | np.ndarray, lower_is_better: bool = True
):
  """Rank of the real assignment among random permutations, and one-sided p-values.

  With ``N`` random permutations, ``p_better = (1 + #{perm at least as good as
  real}) / (N + 1)`` tests "the real assignment is better than a random one"
  and ``p_worse = (1 + #{perm at least as bad}) / (N + 1)`` tests "it is worse"
  (harmful structure). With 3 permutations neither can go below 0.25.

  Args:
    real: the real assignment's value (e.g. mean test RMSE at its best rate).
    permuted: the permutations' values.
    lower_is_better: the metric's direction.

  Returns:
    ``(rank, n_total, p_better, p_worse)``: ``rank`` 1 is the best of the
    ``n_total = N + 1`` assignments (ties counted against the real one).

  Examples:
    >>> permutation_rank(0.45, [0.46, 0.47, 0.44, 0.48])
    (2, 5, 0.4, 0.8)
  """
  perm = np.asarray(permuted, np.float64)
  sign = 1.0 if lower_is_better else -1.0
  at_least_as_good = int(np.sum(sign * perm <= sign * real))
  at_least_as_bad = int(np.sum(sign * perm >= sign * real))
  total = len(perm) + 1
  return (
      1 + at_least_as_good,
      total,
      (1 + at_least_as_good) / total,
      (1 + at_least_as_bad) / total,
  )
