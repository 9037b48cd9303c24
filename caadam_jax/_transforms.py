"""Stateless structure transforms: multiply each leaf's update by its CaAdam factor.

The factors depend only on the static paths and shapes of the updates, so they
are computed in Python at trace time and enter the compiled step as constants
(or as one traced scalar expression when the scaling factor is injected). The
transforms keep no state (``optax.EmptyState``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import optax

from caadam_jax import _deprecation
from caadam_jax import _factor_state
from caadam_jax import _formulas
from caadam_jax import _guards
from caadam_jax import _leaves
from caadam_jax import _paths
from caadam_jax import _structure
from caadam_jax import _validation

ScaleByStructureState = optax.EmptyState


@_formulas.binds_formula("formula", "caadam_jax.scale_by_structure")
def scale_by_structure(
    formula: _formulas.Formula,
    scaling_factor: Any = None,
    *,
    structure: _structure.Structure | None = None,
    uses_depth: bool = True,
) -> optax.GradientTransformationExtraArgs:
  """Scales each leaf's update by the factor a formula gives its layer.

  The extension point for strategies: ``formula(record, stats, g)`` is called once
  per counted layer at trace time, with the layer's
  :class:`~caadam_jax.LayerRecord` (connection count, depth, weight shapes), the
  network's :class:`~caadam_jax.Statistics` and ``g = scaling_factor``; leaves of
  uncounted layers get 1. The named strategies are such formulas
  (:func:`scale_by_strategy` looks them up). ``g`` is given to the formula
  unchanged and never range-checked: its range (and None, when the formula needs
  no ``g``) is the formula's business. Use ``g`` only arithmetically: it may be a
  traced value (``optax.inject_hyperparams``).

  Examples:
    A fan-in based factor, ``(1 / sqrt(fan_in))`` normalized so the median layer
    gets 1 (fan-in is the first dimension of a Flax kernel):

    >>> import math, jax.numpy as jnp, optax, caadam_jax
    >>> def fan_in(record, stats, g):
    ...   return 1.0 / math.sqrt(math.prod(record.shapes[0][:-1]))
    >>> params = {'Dense_0': {'kernel': jnp.ones((4, 8))},
    ...           'Dense_1': {'kernel': jnp.ones((16, 2))}}
    >>> tx = caadam_jax.scale_by_structure(fan_in, uses_depth=False)
    >>> updates, _ = tx.update(params, tx.init(params))
    >>> float(updates['Dense_0']['kernel'][0, 0]), float(updates['Dense_1']['kernel'][0, 0])
    (0.5, 0.25)

  Args:
    formula: a :data:`~caadam_jax.Formula`, ``(record, stats, g) -> factor``
      returning a Python number or a scalar array.
    scaling_factor: ``g``, passed to ``formula`` unchanged (default None).
    structure: a :class:`~caadam_jax.Structure`; None infers one from the
      updates at every trace (per group inside ``optax.masked``). ``init`` then
      raises a ValueError naming the fix where paths alone would be silently
      wrong: a leaf that looks like an undeclared ``nn.scan``/``nnx.vmap`` stack,
      or, with ``uses_depth``, layer paths whose sorted order need not be the
      forward order (named submodules, several naming patterns). A structure
      built from a linen variables dict or from its ``params`` serves both trees.
    uses_depth: whether ``formula`` reads ``record.depth`` (only used with
      ``structure=None``). The default, True, is the conservative choice: a
      formula that reads only connections or shapes may say False to skip the
      forward-order check.

  Returns:
    A stateless ``optax.GradientTransformationExtraArgs``.

  Raises:
    TypeError: ``formula`` is not callable, ``structure`` is not a
      :class:`~caadam_jax.Structure` or None, or ``uses_depth`` is not a bool.
    ValueError: from ``init``, as described for ``structure=None``.

  References:
    Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
    methods", arXiv:2410.24216, 2024.
  """
  formula = _formulas.unwrap(formula)
  if isinstance(formula, str) or not callable(formula):
    raise TypeError(
        "formula must be a callable (record: caadam_jax.LayerRecord, stats: "
        f"caadam_jax.Statistics, g) -> factor, got {type(formula).__name__} {formula!r}. "
        "For a named strategy use caadam_jax.scale_by_strategy(name)."
    )
  if structure is not None and not isinstance(structure, _structure.Structure):
    raise TypeError(
        "structure must be a caadam_jax.Structure or None (None infers it from the "
        f"updates), got {type(structure).__name__}. Build one with "
        "caadam_jax.infer_structure(params) or caadam_jax.trace_structure(...)."
    )
  uses_depth = _validation.check_bool("uses_depth", uses_depth)
  # The shapes init saw (global ones: init runs outside shard_map), so that update can
  # tell local shard shapes inside shard_map from them (structure=None only).
  init_shapes: dict[_paths.Path, tuple[int, ...]] = {}

  def init_fn(params: optax.Params) -> ScaleByStructureState:
    if structure is None:
      # Paths alone must not give a silently wrong structure: refuse undeclared
      # stacks, and path orders that cannot be the forward order where depth counts.
      current = _structure.infer_structure(params)
      _guards.check_default(params, current, uses_depth=uses_depth)
      if current.leaves:  # optax.tree_utils.tree_map_params inits with a leafless tree
        init_shapes.clear()
        init_shapes.update({path: info.shape for path, info in current.leaves.items()})
    else:
      current = structure.for_tree(params)
      current.check_matches(params)
    if not _formulas.is_named(formula):
      current.factors(formula, scaling_factor)  # a bad factor fails here, not at the first step
    return ScaleByStructureState()

  def update_fn(
      updates: optax.Updates,
      state,  # ScaleByStructureState (unannotated, as in Optax: the protocol takes any OptState)
      params: optax.Params | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, ScaleByStructureState]:
    del params, extra_args
    if structure is None:
      current = _structure.infer_structure(updates)
      _guards.check_not_local_shards(current, init_shapes)
    else:
      # Shapes may be local shards under shard_map; the structure carries global ones.
      current = structure.for_tree(updates)
      current.check_matches(updates, check_shapes=False)
    return apply_factors(updates, current.factors(formula, scaling_factor)), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_formulas.binds_formula("strategy", "caadam_jax.scale_by_strategy")
def scale_by_strategy(
    strategy: _formulas.StrategyName | _formulas.Formula,
    scaling_factor: jax.typing.ArrayLike | None = None,
    *,
    structure: _structure.Structure | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Scales each leaf's update by the factor of a named CaAdam strategy.

  A name lookup on top of :func:`scale_by_structure`: the name gives the formula,
  the default and allowed range of ``g``, and whether the formula reads depths.

  Examples:
    >>> import jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.ones((4, 8))},
    ...           'Dense_1': {'kernel': jnp.ones((8, 2))}}
    >>> tx = caadam_jax.scale_by_strategy("depth")
    >>> updates, _ = tx.update(params, tx.init(params))
    >>> round(float(updates['Dense_0']['kernel'][0, 0]), 4)  # (1 + 1) ** (1/2)
    1.4142

  Args:
    strategy: ``"additive"``, ``"multiplicative"`` or ``"depth"``; or a
      :data:`~caadam_jax.Formula`, which is ``scale_by_structure(strategy,
      scaling_factor, structure=structure)`` (counted as reading depths).
    scaling_factor: the strategy's ``g``; None for its default (0.95, 5.0, 1.0).
      A JAX array (traced, or injected by ``optax.inject_hyperparams``) is not
      range-checked: outside the range it is NaN, so the factors that depend on
      it, and the step, are NaN instead of silently zeroed or flipped (see
      :func:`~caadam_jax.caadam` for skipping such steps).
    structure: a :class:`~caadam_jax.Structure`; None infers one from the
      updates at every trace, with the guards of :func:`scale_by_structure`
      (the forward-order check for ``"depth"`` only).

  Returns:
    A stateless ``optax.GradientTransformationExtraArgs``.

  Raises:
    ValueError: an unknown strategy or a concrete ``scaling_factor`` out of the
      strategy's range; from ``init``, as described for ``structure=None``.
    TypeError: ``strategy`` is neither a name nor a callable, ``scaling_factor``
      is not a real scalar, or ``structure`` is not a
      :class:`~caadam_jax.Structure` or None.
  """
  formula, g, uses_depth = _formulas.resolve(strategy, scaling_factor)
  return scale_by_structure(formula, g, structure=structure, uses_depth=uses_depth)


def apply_factors(updates: optax.Updates, factors: Mapping[_paths.Path, Any]) -> optax.Updates:
  """Multiplies each leaf of ``updates`` by ``factors[its normalized path]``.

  The one place where per-leaf factors meet the updates (every strategy, user
  formulas, layer decay and the published mode's structure go through it), so its
  compile-time behaviour is everyone's. A factor of Python 1.0 adds no multiply.
  Several distinct concrete factors enter the compiled step as runtime values, not
  literals: they are the outputs of one ``jax.lax.cond`` on an opaque constant (see
  ``_runtime_int``) whose branches both return the same literal tuple (exactly the
  factors), which XLA cannot fold into its consumers. As literals, each distinct factor makes its leaf's
  fused Adam kernel distinct, and XLA compiles every distinct kernel anew (a train
  step of n equal layers then compiles about 2x slower than ``optax.adam``'s); as
  runtime scalars, the kernels of equal leaves stay identical and are compiled once.
  The branches compute nothing: a branch that derived each factor at run time (say
  ``c * 2**b / 2**b``) would itself be one distinct scalar kernel per factor, which
  cost as much compile time as the literals saved. ``benchmarks/compile_constants.py``
  measures it. Where literals would make few kernels distinct (at most
  ``MAX_KERNELS_FROM_LITERALS``, as on the model zoo's ResNet and Transformer) they stay
  literals: a few kernels compile in a fraction of a second, once, and the cond's scalar
  outputs slowed the zoo Transformer's 0.5 ms step under layer decay by 6-10%. Eagerly
  (no leaf traced) the factors stay literals: there is no whole step to compile. Under
  :func:`~caadam_jax.factors_in_state` the values come from the optimizer state instead
  (entry operands of the step): with about 1000 distinct factors the cond's outputs
  slow XLA:CPU's thunk scheduling (its ``ExecutionGraph`` transitive reduction), and
  operands do not.

  Args:
    updates: a tree of updates (``optax.MaskedNode`` leaves are kept).
    factors: normalized path -> factor (a Python number or a scalar array).

  Returns:
    The scaled updates, each in its own dtype.
  """
  dtypes: dict[_paths.Path, Any] = {}
  _paths.map_with_normalized_path(lambda path, u: dtypes.setdefault(path, u.dtype), updates)
  # (value, dtype) of each concrete factor other than 1, in the update's dtype (as
  # scale_leaf casts it: one rounding, from the Python number).
  concrete = {
      path: (float(f), jnp.dtype(dtypes[path]))
      for path, f in factors.items()
      if path in dtypes and isinstance(f, (int, float, np.number)) and float(f) != 1.0
  }
  distinct = sorted(set(concrete.values()), key=lambda vd: (vd[0], str(vd[1])))
  values = tuple(np.asarray(v, dtype=d) for v, d in distinct)
  # Inside factors_in_state: the state's copies of the factors (entry operands).
  runtime = _factor_state.held_factors(values)
  few = _kernels_literals_add(updates, concrete) <= MAX_KERNELS_FROM_LITERALS
  operand = _runtime_int(updates) if runtime is None and not few else None
  if operand is not None:
    # Literals in one branch, the same literals as the cond's operands in the other:
    # neither branch has a kernel, and the outputs are unknown to XLA until run time.
    runtime = jax.lax.cond(
        operand >= 0, lambda c: values, lambda c: c, tuple(map(jnp.asarray, values))
    )
  if runtime is not None:
    by_value = dict(zip(distinct, runtime, strict=True))
    factors = {**factors, **{path: by_value[vd] for path, vd in concrete.items()}}
  return _paths.map_with_normalized_path(
      lambda path, u: _leaves.scale_leaf(u, factors[path]), updates
  )


# Literal factors that would make at most this many fused kernels distinct stay
# literals: each costs its compile once (248 of them, on 125 equal layers, doubled a
# 3 s compile), while the cond's outputs can cost a small model's step on every call
# (6-10% of the zoo Transformer's 0.5 ms step under layer decay: XLA:CPU orders the
# kernels that share their buffers). benchmarks/compile_constants.py measures both.
MAX_KERNELS_FROM_LITERALS = 16


def _kernels_literals_add(
    updates: optax.Updates, concrete: Mapping[_paths.Path, tuple[float, Any]]
) -> int:
  """How many more distinct kernels literal factors would make than runtime ones.

  Leaves of one shape and dtype share a fused kernel when their factors are runtime
  values; as literals, each distinct factor among them makes its own.
  """
  shapes: dict[_paths.Path, tuple[int, ...]] = {}
  _paths.map_with_normalized_path(lambda path, u: shapes.setdefault(path, u.shape), updates)
  with_value = {(shapes[path], vd) for path, vd in concrete.items()}
  without = {(shapes[path], vd[1]) for path, vd in concrete.items()}
  return len(with_value) - len(without)


def _runtime_int(updates: optax.Updates) -> jax.Array | None:
  """An int32 scalar XLA cannot know at compile time, that depends on nothing.

  ``optimization_barrier`` on a literal zero: XLA does not fold through it, and it has
  no operand that is computed, so the cond it decides runs at the start of the step.
  A value of the updates (as before) made every scaled update wait for the whole
  backward pass: the gradient a leaf's value came from is often the last one computed,
  which cost a 125-layer train step 7-10% against ``optax.adam``
  (``benchmarks/compile_constants.py``). Being constant, it is also the same on every
  device and does not vary over ``shard_map``'s manual axes.

  None when no leaf is traced: an eager update compiles no whole step, so literal
  factors cost nothing there, while an eager ``lax.cond`` is compiled anew on every
  call (about 10x the rest of an eager step).
  """
  if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(updates)):
    return None
  return jax.lax.optimization_barrier(jnp.int32(0))


def with_stateless(
    inner: optax.GradientTransformation,
    *,
    before: optax.GradientTransformation | None = None,
    after: optax.GradientTransformation | None = None,
) -> optax.GradientTransformationExtraArgs:
  """``optax.chain(before, inner, after)`` whose state is ``inner``'s alone.

  ``before`` and ``after`` must keep no state (their ``init`` returns
  ``optax.EmptyState``; it still runs, so their checks do). The aliases use it to
  keep Optax's state trees: ``with_stateless(optax.scale_by_adam(),
  after=scale_by_strategy(...))`` has the state of ``optax.scale_by_adam()``
  (``caadam``), and ``with_stateless(optax.scale_by_learning_rate(lr),
  before=scale_by_layer_decay(...))`` that of ``optax.scale_by_learning_rate``
  (``adamw_layer_decay``).

  Examples:
    >>> import jax.numpy as jnp, optax, caadam_jax
    >>> from caadam_jax._transforms import with_stateless
    >>> tx = with_stateless(optax.scale_by_adam(), after=caadam_jax.scale_by_depth())
    >>> params = {'w': jnp.ones((2, 3))}
    >>> type(tx.init(params)).__name__
    'ScaleByAdamState'

  Args:
    inner: any transform.
    before: a transform whose state is ``optax.EmptyState``, run before ``inner``.
    after: a transform whose state is ``optax.EmptyState``, run after ``inner``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with ``inner``'s state.
  """
  inner = optax.with_extra_args_support(inner)
  stateless = [optax.with_extra_args_support(t) if t is not None else None for t in (before, after)]
  first, last = stateless

  def init_fn(params: optax.Params) -> optax.OptState:
    for transform in stateless:
      if transform is not None:
        transform.init(params)
    return inner.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    if first is not None:
      updates, _ = first.update(updates, optax.EmptyState(), params, **extra_args)
    updates, state = inner.update(updates, state, params, **extra_args)
    if last is not None:
      updates, _ = last.update(updates, optax.EmptyState(), params, **extra_args)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_deprecation.renamed_keywords(mode="strategy")
def scale_by_connection_minmaxmedian(
    scaling_factor: jax.typing.ArrayLike | None = None,
    *,
    strategy: _formulas.StrategyName = "additive",
    structure: _structure.Structure | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Scales each layer's update by its connection-count MinMaxMedian factor.

  With ``c`` the layer's connection count, ``c_min``, ``c_med``, ``c_max`` the
  minimum, median and maximum over counted layers and ``g`` the scaling factor,
  let ``n = (c_med - c)/(c_med - c_min)`` if ``c <= c_med``, else
  ``n = (c - c_med)/(c_max - c_med)``. Then

  * ``strategy="additive"``: ``S = 1 + g*n`` below the median, ``1 - g*n`` above;
    small layers speed up and large ones slow down (default ``g = 0.95``, valid
    range ``0 <= g < 1``);
  * ``strategy="multiplicative"``: ``S = g**n`` on both sides (default ``g = 5.0``,
    ``g > 0``); with ``g > 1`` the smallest AND the largest layers are boosted,
    as in the paper's formula and the reference code.

  Degenerate statistics give finite factors: ``c_min == c_max`` gives 1
  everywhere; ``c_med == c_min`` gives ``n = 0`` on the lower branch. Leaves of
  uncounted layers (norms, anything without a 2+-dimensional tensor) get 1.

  Chain it after ``optax.scale_by_adam`` and before the learning rate.

  Examples:
    >>> import jax.numpy as jnp, optax, caadam_jax
    >>> tx = optax.chain(optax.scale_by_adam(),
    ...                  caadam_jax.scale_by_connection_minmaxmedian(strategy="additive"),
    ...                  optax.scale_by_learning_rate(1e-3))
    >>> params = {'Dense_0': {'kernel': jnp.ones((4, 8))},
    ...           'Dense_1': {'kernel': jnp.ones((8, 16))}}
    >>> state = tx.init(params)
    >>> updates, state = tx.update(params, state, params)

  Args:
    scaling_factor: ``g``; None for the strategy's default. A JAX array (traced,
      or injected by ``optax.inject_hyperparams``) is not range-checked: outside
      the range it is NaN, so the factors that depend on it, and the step, are
      NaN instead of silently zeroed or flipped (see :func:`~caadam_jax.caadam`
      for skipping such steps).
    strategy: ``"additive"`` or ``"multiplicative"`` (the same name as in
      :func:`~caadam_jax.caadam`; the former keyword ``mode`` still works for one
      release, with a ``DeprecationWarning``).
    structure: a :class:`~caadam_jax.Structure` (e.g. from the full params for
      global statistics inside ``optax.masked``); None infers it from the
      updates.

  Returns:
    A stateless ``optax.GradientTransformationExtraArgs``.

  References:
    Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
    methods", arXiv:2410.24216, 2024.
  """
  minmaxmedian = [name for name, entry in _formulas.STRATEGIES.items() if entry.minmaxmedian]
  if strategy not in minmaxmedian:
    raise ValueError(f"Unknown strategy {strategy!r}: expected one of {minmaxmedian}.")
  return scale_by_strategy(strategy, scaling_factor, structure=structure)


def scale_by_depth(
    scaling_factor: jax.typing.ArrayLike = 1.0,
    *,
    structure: _structure.Structure | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Scales each layer's update by ``(1 + g) ** ((D - (1 + d)) / D)``.

  ``d`` is the layer's 0-based forward depth and ``D`` the number of counted
  layers: the first layer gets nearly ``1 + g``, the last exactly 1. Leaves of
  uncounted layers get 1. ``g >= 0``.

  Examples:
    >>> import jax.numpy as jnp, optax, caadam_jax
    >>> tx = optax.chain(optax.scale_by_adam(), caadam_jax.scale_by_depth(),
    ...                  optax.scale_by_learning_rate(1e-3))
    >>> params = {'layers': [{'kernel': jnp.ones((3, 4))}, {'kernel': jnp.ones((4, 2))}]}
    >>> updates, _ = tx.update(params, tx.init(params), params)

  Args:
    scaling_factor: ``g`` (default 1.0). A JAX array (traced, or injected
      by ``optax.inject_hyperparams``) is not range-checked: below 0 it is NaN,
      so the factors that depend on it, and the step, are NaN instead of
      silently shrunk or zeroed (see :func:`~caadam_jax.caadam` for skipping
      such steps).
    structure: a :class:`~caadam_jax.Structure`; None infers it from the
      updates, with depth in natural path order.

  Returns:
    A stateless ``optax.GradientTransformationExtraArgs``.

  References:
    Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
    methods", arXiv:2410.24216, 2024.
  """
  return scale_by_strategy("depth", scaling_factor, structure=structure)
