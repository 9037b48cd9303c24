"""``scale_by_published_strategy``: the caadam 0.1.1 factors as a stateless transform.

Its own module so that the source viewer keeps one backlink anchor per documented object.
"""

from __future__ import annotations

import jax
import optax

from caadam_jax import _formulas
from caadam_jax import _transforms
from caadam_jax.published import _keras_records
from caadam_jax.published._keras_order import Order


def scale_by_published_strategy(
    strategy: _formulas.StrategyName | None = None,
    scaling_factor: jax.typing.ArrayLike | None = None,
    *,
    order: Order | None = None,
) -> optax.GradientTransformation:
  """Scales each leaf's update by its caadam 0.1.1 factor (stateless).

  See :func:`~caadam_jax.published.keras_caadam` for the rules. The factors are computed at trace time
  from the updates' paths and shapes; the state is ``optax.EmptyState``.

  Args:
    strategy: ``None`` (additive, 0.9), ``"additive"`` (0.95),
      ``"multiplicative"`` (5.0) or ``"depth"`` (1.0).
    scaling_factor: the strategy's ``g``; may be traced.
    order: the Keras variable order (see :func:`~caadam_jax.published.keras_caadam`).

  Returns:
    A stateless ``optax.GradientTransformation``.
  """
  resolver = _keras_records.Resolver(strategy, scaling_factor, order)

  def init_fn(params: optax.Params) -> optax.EmptyState:
    resolver.records(params)  # raises the reference's division by zero early
    return optax.EmptyState()

  def update_fn(
      updates: optax.Updates, state, params: optax.Params | None = None
  ) -> tuple[optax.Updates, optax.EmptyState]:
    del params
    factors = resolver.factors(updates)
    updates = _transforms.apply_factors(updates, factors)
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)
