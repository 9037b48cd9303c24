"""caadam 0.1.1's per-variable records and statistics, and their resolution for a tree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from caadam_jax import _formulas
from caadam_jax import _paths
from caadam_jax.published import _keras_order

# The strategies of caadam 0.1.1 and their class defaults (its own list: a strategy
# added to caadam_jax has no published behaviour). ``strategy=None`` is what
# ``caadam.CaAdam()`` does without a strategy: AdditiveMinMaxMedianConnectionScaling
# with scaling_factor=0.9 (not the class default 0.95).
# The names are typed StrategyName, so each is one of caadam_jax.STRATEGIES.
PUBLISHED_STRATEGIES: tuple[_formulas.StrategyName, ...] = ("additive", "multiplicative", "depth")
DEFAULT_STRATEGY: _formulas.StrategyName = "additive"
DEFAULT_STRATEGY_SCALING_FACTOR = 0.9


def _resolve(
    strategy: _formulas.StrategyName | None, scaling_factor: _formulas.Factor | None
) -> tuple[str, _formulas.Strategy, _formulas.Factor]:
  if strategy is None:
    name = DEFAULT_STRATEGY
    if scaling_factor is None:
      scaling_factor = DEFAULT_STRATEGY_SCALING_FACTOR
  else:
    name = strategy
  if name not in PUBLISHED_STRATEGIES:
    raise ValueError(
        f"Unknown strategy {name!r} for the published-results mode: caadam 0.1.1 has "
        f"{list(PUBLISHED_STRATEGIES)} (or None for CaAdam()'s default, additive 0.9)."
    )
  resolved, g = _formulas.resolve_strategy(name, scaling_factor)
  return name, resolved, g


def records_in_order(
    leaves: dict[_paths.Path, tuple[int, ...]], ordered: Sequence[_paths.Path]
) -> tuple[dict[_paths.Path, _formulas.LayerRecord], _formulas.Statistics]:
  """Per-variable records and statistics exactly as caadam 0.1.1 computes them."""
  table: dict[str, int] = {}
  sizes = []
  for path in ordered:
    shape = leaves[path]
    if len(shape) > 1:
      size = int(np.prod(shape))
      table[_keras_order.leaf_name(path)] = size  # keyed by the short name: the last one wins
      sizes.append(size)
  num_variables = len(ordered)
  if sizes:
    stats = _formulas.statistics_of(sizes, num_variables)
  else:  # The reference's fallback: every connection factor is then 1.
    stats = _formulas.Statistics(1.0, 1.0, 1.0, num_variables)
  records = {
      path: _formulas.LayerRecord(table.get(_keras_order.leaf_name(path), 0), depth)
      for depth, path in enumerate(ordered)
  }
  return records, stats


def _check_finite(
    name: str,
    strategy: _formulas.Strategy,
    records: dict[_paths.Path, _formulas.LayerRecord],
    stats: _formulas.Statistics,
) -> None:
  if not strategy.minmaxmedian or not stats.c_min == stats.c_med < stats.c_max:
    return
  lower = [p for p, r in records.items() if r.connections <= stats.c_med]
  if not lower:
    return
  below = [p for p in lower if records[p].connections < stats.c_med]
  at = [p for p in lower if records[p].connections == stats.c_med]
  what = []
  if below:
    what.append(
        "+inf (x/0) for "
        + ", ".join(_paths.path_to_str(p) for p in below[:6])
        + (" ..." if len(below) > 6 else "")
    )
  if at:
    what.append(
        "NaN (0/0) for "
        + ", ".join(_paths.path_to_str(p) for p in at[:6])
        + (" ..." if len(at) > 6 else "")
    )
  raise ValueError(
      f"keras_caadam(strategy={name!r}): c_med == c_min == {stats.c_min:g} < c_max == "
      f"{stats.c_max:g} (more than half of the tensors with 2+ dimensions share the "
      "smallest size, as in transformer blocks). The reference caadam 0.1.1 divides "
      "by c_med - c_min == 0 here and its factor is "
      + "; ".join(what)
      + "; training then silently produces inf/NaN parameters, so there is no "
      "published behaviour to reproduce. Use caadam_jax.caadam(...) (the method as "
      "described, whose factors stay finite), strategy='depth', or a different "
      "variable order."
  )


class Resolver:
  """Maps a params/updates tree to its published-mode factors (trace time, static)."""

  def __init__(
      self,
      strategy: _formulas.StrategyName | None,
      scaling_factor: _formulas.Factor | None,
      order: _keras_order.Order | None,
  ):
    self.name, self.strategy, self.g = _resolve(strategy, scaling_factor)
    self.order = _keras_order.KerasOrder(order)
    if self.order.structure is not None:
      # Shapes are known: check the reference's division by zero now.
      self.records({})

  def records(
      self, tree: Any
  ) -> tuple[dict[_paths.Path, _formulas.LayerRecord], _formulas.Statistics, list[_paths.Path]]:
    """``(records, stats, ordered paths)`` for the real leaves of ``tree``."""
    leaves, ordered = self.order.of(tree)
    records, stats = records_in_order(leaves, ordered)
    _check_finite(self.name, self.strategy, records, stats)
    return records, stats, ordered

  def factors(self, tree: Any) -> dict[_paths.Path, Any]:
    records, stats, ordered = self.records(tree)
    return {p: self.strategy.formula(records[p], stats, self.g) for p in ordered}
