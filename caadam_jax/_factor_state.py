"""Per-layer factors held in the optimizer state, so XLA sees them as runtime operands.

By default the concrete factors of a jitted step are the outputs of one
``jax.lax.cond`` (``_transforms.apply_factors``): the optimizer state stays
``optax.adam``'s. XLA:CPU's thunk scheduler handles a node with one output per
distinct factor poorly when the factors are many (about 1000 distinct ones: the
train step then compiled up to 1.7x slower than Adam's, scattering from run to run,
the extra in ``ExecutionGraph`` transitive reduction). Held in the state, the factors are entry
parameters of the step, which no thunk writes. :func:`factors_in_state` does this
for any transform built from this package's scaling transforms.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class FactorsInStateState(NamedTuple):
  """State of :func:`factors_in_state`.

  Attributes:
    inner_state: the wrapped transform's state (``optax.adam``'s for ``caadam``).
    factors: one tuple per scaling transform inside, in the order they run, of its
      distinct per-layer factors (scalars, sorted by value).
  """

  inner_state: optax.OptState
  factors: tuple[tuple[jax.Array, ...], ...]


# The factors' place in a state built from a tree without leaves (a leaf, so that it is a
# prefix of any factors tuple for optax.tree_utils.tree_map_params).
_FACTORS_PROBE: Any = 0


class _Recorder:
  """What ``apply_factors`` reports to (init) or takes its factors from (update)."""

  def __init__(self, held: tuple[tuple[jax.Array, ...], ...] | None):
    self.held = held  # None while recording
    self.recorded: list[tuple[np.ndarray, ...]] = []
    self.position = 0


_ACTIVE: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "caadam_jax_factor_state", default=None
)


@contextlib.contextmanager
def _active(recorder: _Recorder) -> Iterator[_Recorder]:
  token = _ACTIVE.set(recorder)
  try:
    yield recorder
  finally:
    _ACTIVE.reset(token)


def held_factors(values: tuple[np.ndarray, ...]) -> tuple[jax.Array, ...] | None:
  """The state's copies of ``values``, or None outside :func:`factors_in_state`.

  Called by ``apply_factors`` once per call, in the order the transforms run, with
  its distinct concrete factors (sorted NumPy scalars in the updates' dtypes).
  """
  recorder = _ACTIVE.get()
  if recorder is None:
    return None
  if recorder.held is None:  # init: record, and scale by the literals
    recorder.recorded.append(values)
    return tuple(map(jnp.asarray, values))
  if recorder.position >= len(recorder.held):
    raise ValueError(
        f"factors_in_state: the state holds factors for {len(recorder.held)} scaling "
        "transform(s), but the update runs more. The state was built for another "
        "optimizer or tree: build it with tx.init(params) for this one."
    )
  held = recorder.held[recorder.position]
  recorder.position += 1
  if len(held) != len(values) or any(
      jnp.shape(h) != () or jnp.asarray(h).dtype != v.dtype
      for h, v in zip(held, values, strict=False)
  ):
    raise ValueError(
        f"factors_in_state: scaling transform {recorder.position} has "
        f"{len(values)} distinct factors ({sorted({str(v.dtype) for v in values})}), "
        f"but the state holds {len(held)}: it was built for another optimizer or tree. "
        "Build it with tx.init(params), or restore an optax.adam state into it with "
        "tx.init(params)._replace(inner_state=adam_state)."
    )
  return held


def factors_in_state(
    inner: optax.GradientTransformation,
) -> optax.GradientTransformationExtraArgs:
  """Holds the per-layer factors of ``inner`` in the optimizer state.

  Same updates as ``inner``; the state is ``FactorsInStateState(inner_state,
  factors)``. The factors then reach the compiled step as runtime operands, which
  keeps its compile time near ``optax.adam``'s when the distinct factors are many
  (depth, a user formula or layer decay on ~1000 layers: up to 1.7x Adam's compile
  time on CPU with the default, an ``optax.adam`` state tree, against at most 1.18x
  held in the state; see ``benchmarks/compile_constants.py``). Each held factor is
  one more input and output of the compiled step: on an MLP of 125 small layers the
  step took 1.13-1.16x Adam's against 1.00-1.04x with the default (what Adam's own
  step costs with as many extra scalars in its state). With few distinct factors
  the default is as fast and keeps ``optax.adam``'s state tree; prefer it there.

  ``init`` traces one abstract update (``jax.eval_shape``, no computation) to find
  the factors, so ``inner.update`` must run with ``params`` alone (no extra
  arguments). Factors that depend on a traced hyperparameter
  (``optax.inject_hyperparams``) are computed in the step as before; only concrete
  ones are held (with an injected ``scaling_factor`` that transform's tuple is empty,
  so the state's tree differs from the plain optimizer's). For
  ``optax.tree_utils.tree_map_params``, ``factors`` is one non-parameter part:
  ``transform_non_params`` gets it whole. An ``optax.adam`` state (for example from
  a checkpoint) restores into ``caadam(..., factors_in_state=True)`` with
  ``tx.init(params)._replace(inner_state=adam_state)``.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.ones((4, 8))},
    ...           'Dense_1': {'kernel': jnp.ones((8, 2))}}
    >>> plain = caadam_jax.caadam(1e-3, strategy='depth')
    >>> tx = caadam_jax.factors_in_state(plain)
    >>> state = tx.init(params)
    >>> len(state.factors[0])  # one distinct factor other than 1 (Dense_1's)
    1
    >>> adam_state = optax.adam(1e-3).init(params)  # e.g. from a checkpoint
    >>> restored = tx.init(params)._replace(inner_state=adam_state)
    >>> updates, _ = jax.jit(tx.update)(params, restored)
    >>> expected, _ = plain.update(params, adam_state)
    >>> bool(jnp.allclose(updates['Dense_1']['kernel'], expected['Dense_1']['kernel']))
    True

  Args:
    inner: a transform that scales by per-layer factors through this package
      (``caadam``, ``adamw_layer_decay``, ``scale_by_structure`` and the transforms
      built on it, in any chain).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  References:
    Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
    methods", arXiv:2410.24216, 2024.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params: optax.Params) -> FactorsInStateState:
    inner_state = inner.init(params)
    if not jax.tree.leaves(params):
      # optax.tree_utils.tree_map_params probes init with a tree without leaves, to find
      # the parameter-shaped parts of the state: one leaf stands for all factors there
      # (and such a tree has nothing to scale: update then runs the inner transform).
      return FactorsInStateState(inner_state=inner_state, factors=_FACTORS_PROBE)
    with _active(_Recorder(held=None)) as recorder:
      try:
        jax.eval_shape(lambda p, s: inner.update(p, s, p), params, inner_state)
      except TypeError as e:
        raise TypeError(
            "factors_in_state: init traces one update with params alone to find the "
            f"factors, and the wrapped transform's update failed: {e}"
        ) from e
    factors = tuple(tuple(map(jnp.asarray, values)) for values in recorder.recorded)
    return FactorsInStateState(inner_state=inner_state, factors=factors)

  def update_fn(
      updates: optax.Updates,
      state,  # FactorsInStateState (unannotated, as in Optax: the protocol takes any OptState)
      params: optax.Params | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, FactorsInStateState]:
    if not isinstance(state.factors, tuple):  # built from a tree without leaves
      updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
      return updates, state._replace(inner_state=inner_state)
    with _active(_Recorder(held=state.factors)) as recorder:
      updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    if recorder.position != len(state.factors):
      raise ValueError(
          f"factors_in_state: the state holds factors for {len(state.factors)} scaling "
          f"transform(s), but the update ran {recorder.position}. The state was built "
          "for another optimizer or tree: build it with tx.init(params) for this one."
      )
    return updates, state._replace(inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
