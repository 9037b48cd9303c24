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
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
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


def _wilcoxon(r: np.ndarray) -> float:
  nonzero = r[r != 0]
  if len(nonzero) == 0:
    return 1.0
  if len(r) < 2:
    return float("nan")
  return _pvalue(_st.wilcoxon(r))


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
      p_wilcoxon=_wilcoxon(r) if n else nan,
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
