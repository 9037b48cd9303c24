"""Published-results mode: a numerical reproduction of the Keras package ``caadam`` 0.1.1.

The numbers published for CaAdam (arXiv:2410.24216 and the reference README) were
produced by the Keras 3 package ``caadam`` 0.1.1, which does not implement the
per-layer method as described (see :func:`~caadam_jax.caadam` for that). Reading
its source (``caadam/caadam.py``) and running it shows:

* its table of connection counts is keyed by the *short* variable name
  (``"kernel"``), so every kernel is looked up with the size of the LAST kernel in
  the optimizer's variable order, while ``c_min``, ``c_med`` and ``c_max`` come from
  the true sizes of all tensors with 2+ dimensions;
* tensors with fewer than 2 dimensions (biases, norm scales) are not in the table
  and get ``c = 0``, below ``c_min``: the MinMaxMedian formulas extrapolate and give
  them the largest factor in the network;
* "depth" is the index of the variable in the optimizer's variable list (a layer's
  kernel and bias have different depths) and ``D`` counts every trainable variable;
* Adam is the Keras form, ``alpha = lr*sqrt(1-b2^t)/(1-b1^t)*S``,
  ``theta -= alpha*m/(sqrt(v) + eps)`` with ``eps`` added to the *uncorrected*
  ``sqrt(v)``, and AMSGrad (if enabled) takes the running maximum of the
  uncorrected ``v``, as ``keras.optimizers.Adam`` does.

This module reproduces that behaviour step by step. It reuses the shared path
normalization (:mod:`caadam_jax._paths`) and the shared formula functions
(:mod:`caadam_jax._formulas`); only the per-leaf connection lookup, the
per-variable depth, the variable order and the Keras-form Adam are specific here.
Where the reference divides by zero (``c_med == c_min < c_max`` with some variable
on the lower branch of the formula: it silently produces inf/NaN), this mode raises
a ``ValueError`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from caadam_jax import _dtypes
from caadam_jax import _formulas
from caadam_jax import _leaves
from caadam_jax import _paths
from caadam_jax import _structure
from caadam_jax import _validation

# The strategies of caadam 0.1.1 and their class defaults. ``strategy=None`` is what
# ``caadam.CaAdam()`` does without a strategy: AdditiveMinMaxMedianConnectionScaling
# with scaling_factor=0.9 (not the class default 0.95).
PUBLISHED_STRATEGIES = ("additive", "multiplicative", "depth")
DEFAULT_STRATEGY = "additive"
DEFAULT_STRATEGY_SCALING_FACTOR = 0.9
# The strategies whose formula divides by ``c_med - c_min``.
_MINMAXMEDIAN = frozenset({"additive", "multiplicative"})
# Within a layer, Keras creates a norm's scale (``gamma``) before its offset
# (``beta``) and a kernel before its bias.
_OFFSET_NAMES = frozenset({"bias", "beta"})

Order = Sequence[str | Sequence[_paths.PathKey]] | _structure.Structure


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


def _leaf_name(path: _paths.Path) -> str:
  """The Keras short name of a leaf: the last key of its path (``'kernel'``)."""
  return str(path[-1]) if path else ""


def _within_layer_key(path: _paths.Path, shape: tuple[int, ...]) -> tuple[Any, ...]:
  name = _leaf_name(path)
  is_offset = name in _OFFSET_NAMES
  return (0 if len(shape) >= 2 else 1, 1 if is_offset else 0, _paths.natural_key(path[-1:]))


def _order_leaves(
    leaves: dict[_paths.Path, tuple[int, ...]], layer_order: Sequence[_paths.Path]
) -> list[_paths.Path]:
  """Leaves layer by layer in ``layer_order``, kernel before bias within a layer."""
  by_layer: dict[_paths.Path, list[_paths.Path]] = {layer: [] for layer in layer_order}
  for path in leaves:
    by_layer[path[:-1]].append(path)
  ordered = []
  for layer in layer_order:
    ordered.extend(sorted(by_layer[layer], key=lambda p: _within_layer_key(p, leaves[p])))
  return ordered


def _default_order(leaves: dict[_paths.Path, tuple[int, ...]]) -> list[_paths.Path]:
  layers = sorted({path[:-1] for path in leaves}, key=_paths.natural_key)
  return _order_leaves(leaves, layers)


def _structure_order(structure: _structure.Structure) -> list[_paths.Path]:
  """Keras order from a Structure: its counted layers in depth order.

  Layers the structure does not count (no tensor of 2+ dimensions: norms) keep
  their natural-order slot among all layers; the counted layers fill the other
  slots in depth order.
  """
  leaves = {path: info.shape for path, info in structure.leaves.items()}
  counted = list(structure.layers)
  counted_set = set(counted)
  layer_ids = {info.layer for info in structure.leaves.values() if info.layer is not None}
  natural = sorted(layer_ids, key=_paths.natural_key)
  depth_order = iter(counted)
  layers = [next(depth_order) if layer in counted_set else layer for layer in natural]
  return _order_leaves(leaves, layers)


_ORDER_HELP = (
    "order must be a sequence of parameter paths (e.g. ['Dense_0/kernel', "
    "'Dense_0/bias', ...] or key tuples like ('Dense_0', 'kernel')) or a "
    "caadam_jax.Structure"
)


# Key-path entries as jax.tree_util.tree_flatten_with_path gives them.
_KEY_TYPES = (
    jax.tree_util.DictKey,
    jax.tree_util.GetAttrKey,
    jax.tree_util.SequenceKey,
    jax.tree_util.FlattenedIndexKey,
)


def _parse_order(order: Sequence[Any]) -> list[_paths.Path]:
  if isinstance(order, (str, bytes)):
    raise TypeError(f"{_ORDER_HELP}, not a single string.")
  if not isinstance(order, Sequence):
    raise TypeError(f"{_ORDER_HELP}; got {type(order).__name__} {order!r}.")
  parsed = []
  for i, p in enumerate(order):
    is_keys = isinstance(p, Sequence) and all(
        isinstance(k, (str, int, *_KEY_TYPES)) and not isinstance(k, bool) for k in p
    )
    if not (isinstance(p, str) or is_keys):
      raise TypeError(
          f"order[{i}] = {p!r} is not a parameter path: {_ORDER_HELP} (each path a "
          "'/'-separated string or a tuple of str/int keys)."
      )
    parsed.append(_paths.parse_path(p))
  seen, duplicates = set(), []
  for p in parsed:
    if p in seen:
      duplicates.append(_paths.path_to_str(p))
    seen.add(p)
  if duplicates:
    raise ValueError(f"order lists these parameter paths more than once: {duplicates[:10]}.")
  return parsed


def _keras_records(
    leaves: dict[_paths.Path, tuple[int, ...]], ordered: Sequence[_paths.Path]
) -> tuple[dict[_paths.Path, _formulas.LayerRecord], _formulas.Statistics]:
  """Per-variable records and statistics exactly as caadam 0.1.1 computes them."""
  table: dict[str, int] = {}
  sizes = []
  for path in ordered:
    shape = leaves[path]
    if len(shape) > 1:
      size = int(np.prod(shape))
      table[_leaf_name(path)] = size  # keyed by the short name: the last one wins
      sizes.append(size)
  num_variables = len(ordered)
  if sizes:
    stats = _formulas.Statistics(
        c_min=float(min(sizes)),
        c_med=float(np.median(np.asarray(sizes, dtype=np.float64))),
        c_max=float(max(sizes)),
        num_layers=num_variables,
    )
  else:  # The reference's fallback: every connection factor is then 1.
    stats = _formulas.Statistics(1.0, 1.0, 1.0, num_variables)
  records = {
      path: _formulas.LayerRecord(table.get(_leaf_name(path), 0), depth)
      for depth, path in enumerate(ordered)
  }
  return records, stats


def _check_finite(
    name: str,
    records: dict[_paths.Path, _formulas.LayerRecord],
    stats: _formulas.Statistics,
) -> None:
  if name not in _MINMAXMEDIAN or not stats.c_min == stats.c_med < stats.c_max:
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


class _Resolver:
  """Maps a params/updates tree to its published-mode factors (trace time, static)."""

  def __init__(self, strategy, scaling_factor, order):
    self.name, self.strategy, self.g = _resolve(strategy, scaling_factor)
    self.structure = order if isinstance(order, _structure.Structure) else None
    self.order = (
        None if order is None or isinstance(order, _structure.Structure) else _parse_order(order)
    )
    if self.structure is not None:
      # Shapes are known: check the reference's division by zero now.
      leaves = {p: info.shape for p, info in self.structure.leaves.items()}
      records, stats = _keras_records(leaves, _structure_order(self.structure))
      _check_finite(self.name, records, stats)

  def records(self, tree: Any):
    """``(records, stats, ordered paths)`` for the real leaves of ``tree``."""
    pairs, masked = _paths.leaves_with_paths(tree)
    present = {path: _leaves.shape_of(leaf) for path, leaf in pairs}
    if self.structure is not None:
      self.structure.check_matches(tree, check_shapes=False)
      # Global statistics over the whole structure, as Keras builds over all variables.
      leaves = {p: info.shape for p, info in self.structure.leaves.items()}
      ordered = _structure_order(self.structure)
    elif self.order is not None:
      missing, extra = _paths.path_mismatches(list(present), masked, self.order)
      if missing or extra:
        problems = []
        if missing:
          problems.append("parameters not in order: " + _paths.paths_to_str(missing))
        if extra:
          problems.append("paths in order but not in the parameters: " + _paths.paths_to_str(extra))
        raise ValueError(
            "order must list every parameter leaf exactly once, as paths like "
            "'Dense_0/kernel'; " + "; ".join(problems) + "."
        )
      leaves = present
      ordered = [p for p in self.order if p in present]
    else:
      leaves = present
      ordered = _default_order(present)
    records, stats = _keras_records(leaves, ordered)
    _check_finite(self.name, records, stats)
    return records, stats, ordered

  def factors(self, tree: Any, g: _formulas.Factor | None = None) -> dict[_paths.Path, Any]:
    records, stats, ordered = self.records(tree)
    g = self.g if g is None else g
    return {p: self.strategy.formula(records[p], stats, g) for p in ordered}


class ScaleByKerasAdamState(NamedTuple):
  """State of :func:`scale_by_keras_adam`.

  Attributes:
    count: number of updates applied so far (int32).
    mu: first moments.
    nu: second moments (uncorrected).
    nu_max: running maximum of ``nu`` (AMSGrad), or None when AMSGrad is off.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  # Any, not Updates | None: a None leaf is not an optax.OptState for type checkers.
  nu_max: Any


def scale_by_keras_adam(
    beta_1: jax.typing.ArrayLike = 0.9,
    beta_2: jax.typing.ArrayLike = 0.999,
    epsilon: jax.typing.ArrayLike = 1e-7,
    amsgrad: bool = False,
) -> optax.GradientTransformation:
  """Rescales updates with Adam in the form Keras (and caadam 0.1.1) computes it.

  With step ``t`` (1-based), ``m <- b1*m + (1-b1)*g``, ``v <- b2*v + (1-b2)*g**2``
  and the update is ``sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + epsilon)``: epsilon
  is added to the root of the UNCORRECTED second moment, which equals
  ``m_hat / (sqrt(v_hat) + epsilon/sqrt(1-b2^t))`` and differs from
  ``optax.scale_by_adam``. With ``amsgrad=True``, ``v`` in the denominator is
  replaced by the running maximum of the uncorrected ``v`` (as in
  ``keras.optimizers.Adam``).

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from caadam_jax._published import scale_by_keras_adam
    >>> tx = optax.chain(scale_by_keras_adam(), optax.scale_by_learning_rate(1e-3))
    >>> params = {'w': jnp.ones(3)}
    >>> updates, state = tx.update(params, tx.init(params), params)

  Args:
    beta_1: decay rate of the first moment.
    beta_2: decay rate of the second moment.
    epsilon: added to ``sqrt(v)`` (Keras default 1e-7).
    amsgrad: use the running maximum of ``v`` (AMSGrad).

  Returns:
    An ``optax.GradientTransformation``.

  Raises:
    TypeError: a hyperparameter is not a real scalar, or ``amsgrad`` not a bool.
    ValueError: a concrete hyperparameter is not finite or out of range
      (``0 <= beta_1, beta_2 < 1``, ``epsilon > 0``).
  """
  owner = "caadam_jax.keras_caadam"
  for name, value, allowed, ok in (
      ("beta_1", beta_1, "0 <= beta_1 < 1", lambda x: 0 <= x < 1),
      ("beta_2", beta_2, "0 <= beta_2 < 1", lambda x: 0 <= x < 1),
      ("epsilon", epsilon, "epsilon > 0", lambda x: x > 0),
  ):
    _validation.check_real_scalar(name, value, allowed, ok, owner=owner)
  amsgrad = _validation.check_bool("amsgrad", amsgrad)

  def init_fn(params: optax.Params) -> ScaleByKerasAdamState:
    def zeros():
      return optax.tree.zeros_like(params)

    return ScaleByKerasAdamState(
        count=jnp.zeros([], jnp.int32),
        mu=zeros(),
        nu=zeros(),
        nu_max=zeros() if amsgrad else None,
    )

  def update_fn(
      updates: optax.Updates,
      state,  # ScaleByKerasAdamState (unannotated, as in Optax: the protocol takes any OptState)
      params: optax.Params | None = None,
  ) -> tuple[optax.Updates, ScaleByKerasAdamState]:
    del params
    mu = jax.tree.map(lambda g, m: beta_1 * m + (1 - beta_1) * g, updates, state.mu)

    # |g|^2 for complex parameters; the same bits as g*g for real ones.
    def square(g):
      return jnp.square(jnp.abs(g)) if jnp.iscomplexobj(g) else jnp.square(g)

    nu = jax.tree.map(lambda g, v: beta_2 * v + (1 - beta_2) * square(g), updates, state.nu)
    count = jnp.asarray(optax.safe_increment(state.count))
    nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else None
    denominator_nu = nu_max if amsgrad else nu

    def direction(m, v):
      # Bias corrections in at least float32: in bf16, 0.999 rounds to 1 and
      # sqrt(1 - b2^t) to 0 (Keras casts to the variable dtype and stalls).
      dtype = _dtypes.at_least_float32(jnp.finfo(m.dtype).dtype)
      t = count.astype(dtype)
      b1_power = jnp.power(jnp.asarray(beta_1, dtype), t)
      b2_power = jnp.power(jnp.asarray(beta_2, dtype), t)
      correction = (jnp.sqrt(1 - b2_power) / (1 - b1_power)).astype(m.dtype)
      return correction * m / (jnp.sqrt(v) + epsilon)

    updates = jax.tree.map(direction, mu, denominator_nu)
    return updates, ScaleByKerasAdamState(count=count, mu=mu, nu=nu, nu_max=nu_max)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_published_strategy(
    strategy: _formulas.StrategyName | None = None,
    scaling_factor: jax.typing.ArrayLike | None = None,
    *,
    order: Order | None = None,
) -> optax.GradientTransformation:
  """Scales each leaf's update by its caadam 0.1.1 factor (stateless).

  See :func:`keras_caadam` for the rules. The factors are computed at trace time
  from the updates' paths and shapes; the state is ``optax.EmptyState``.

  Args:
    strategy: ``None`` (additive, 0.9), ``"additive"`` (0.95),
      ``"multiplicative"`` (5.0) or ``"depth"`` (1.0).
    scaling_factor: the strategy's ``g``; may be traced.
    order: the Keras variable order (see :func:`keras_caadam`).

  Returns:
    A stateless ``optax.GradientTransformation``.
  """
  resolver = _Resolver(strategy, scaling_factor, order)

  def init_fn(params: optax.Params) -> optax.EmptyState:
    resolver.records(params)  # raises the reference's division by zero early
    return optax.EmptyState()

  def update_fn(
      updates: optax.Updates, state, params: optax.Params | None = None
  ) -> tuple[optax.Updates, optax.EmptyState]:
    del params
    factors = resolver.factors(updates)
    updates = _paths.map_with_normalized_path(
        lambda path, u: _leaves.scale_leaf(u, factors[path]), updates
    )
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


def keras_caadam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    *,
    strategy: _formulas.StrategyName | None = None,
    scaling_factor: jax.typing.ArrayLike | None = None,
    beta_1: jax.typing.ArrayLike = 0.9,
    beta_2: jax.typing.ArrayLike = 0.999,
    epsilon: jax.typing.ArrayLike = 1e-7,
    amsgrad: bool = False,
    order: Order | None = None,
) -> optax.GradientTransformation:
  """CaAdam exactly as the Keras package ``caadam`` 0.1.1 ran it (published results).

  Use this to reproduce or examine the published CaAdam numbers; for the method
  as described (per-layer factors) use :func:`~caadam_jax.caadam`. Step by step
  it gives the parameters ``caadam.CaAdam`` gives in Keras 3, including what that
  package does differently from the description:

  * Every leaf is looked up in a table of connection counts keyed by its short
    name (the last key of its path, ``'kernel'``) that holds, for each name, the
    size of the LAST tensor of 2+ dimensions with that name in the variable
    order. So every kernel gets the last kernel's size; ``c_min``, ``c_med`` and
    ``c_max`` come from the true sizes.
  * Leaves with fewer than 2 dimensions whose name is not in the table (biases,
    norm scales) get ``c = 0``; the shared MinMaxMedian formulas extrapolate and
    give them the largest factor (``1 + g*c_med/(c_med - c_min)`` additive,
    ``g**(c_med/(c_med - c_min))`` multiplicative).
  * Depth is the leaf's index ``d`` in the variable order and ``D`` the number of
    leaves: ``S = (1 + g)**((D - 1 - d)/D)``.
  * Adam is the Keras form (the private ``scale_by_keras_adam``):
    ``theta -= lr*sqrt(1-b2^t)/(1-b1^t)*S * m/(sqrt(v) + epsilon)``.

  The variable order ("Keras order") is part of the algorithm. Default: layers
  (a leaf's path without its last key) in natural path order
  (``Dense_2`` before ``Dense_10``); within a layer, tensors of 2+ dimensions
  first, then the other leaves with ``bias``/``beta`` last (kernel before bias,
  norm ``scale`` before ``bias``), as Keras creates them. This matches Keras's
  ``model.trainable_variables`` for sequential models whose layers are numbered in
  forward order with one naming pattern (``Dense_0``, ``Dense_1``; ``layers_0``,
  ...). For anything else (``Conv_0``/``BatchNorm_0``/``Dense_0`` mixes, named
  submodules) pass ``order``: either the leaf paths in Keras order
  (``['Conv_0/kernel', 'Conv_0/bias', 'BatchNorm_0/scale', ...]``, strings or key
  tuples), or a :class:`~caadam_jax.Structure` (its counted layers in depth
  order; layers it does not count keep their natural slot).
  ``list(keras_caadam_factors(params))`` shows the order used.

  ``strategy=None`` is ``caadam.CaAdam()``'s default: additive with ``g = 0.9``.
  ``"additive"``, ``"multiplicative"`` and ``"depth"`` default to the strategy
  classes' defaults 0.95, 5.0 and 1.0.

  Where the reference divides by zero (``c_med == c_min < c_max`` and some leaf
  on the lower branch, e.g. transformer blocks; the reference then produces
  inf/NaN parameters) a ``ValueError`` is raised at ``init`` (at construction
  when ``order`` is a Structure).

  The factors are static (computed at trace time from paths and shapes); the
  state is the Adam moments only. ``scaling_factor`` is used arithmetically, so
  it works with ``optax.inject_hyperparams``; ``learning_rate`` may be a
  schedule (evaluated at the pre-increment step count, like Keras's
  ``iterations``).

  Example:
    >>> import jax, jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.ones((2, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.ones((8, 1)), 'bias': jnp.zeros(1)}}
    >>> tx = caadam_jax.keras_caadam(1e-3, strategy='depth',
    ...     order=['Dense_0/kernel', 'Dense_0/bias', 'Dense_1/kernel', 'Dense_1/bias'])
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)
    >>> caadam_jax.keras_caadam_factors(params, strategy='depth')['Dense_0/bias']
    1.4142135623730951

  Args:
    learning_rate: a scalar or an Optax schedule.
    strategy: ``None``, ``"additive"``, ``"multiplicative"`` or ``"depth"``.
    scaling_factor: the strategy's ``g``; None for its default.
    beta_1: decay rate of the first moment.
    beta_2: decay rate of the second moment.
    epsilon: added to the root of the uncorrected second moment (Keras 1e-7).
    amsgrad: AMSGrad as in Keras (running maximum of the uncorrected ``v``).
    order: the Keras variable order: a sequence of leaf paths or a
      :class:`~caadam_jax.Structure`; None for the default rule above.

  Returns:
    An ``optax.GradientTransformation``.

  Validation: concrete hyperparameters are checked at construction (real,
  finite scalars; ``learning_rate >= 0`` or a schedule, ``0 <= beta_1, beta_2 <
  1``, ``epsilon > 0``, ``scaling_factor`` in the strategy's range; ``amsgrad``
  a bool). JAX arrays (traced or injected by ``optax.inject_hyperparams``) are
  checked for shape and dtype only; an injected ``scaling_factor`` outside the
  range becomes NaN, so the step is NaN rather than silently zeroed or flipped
  (see :func:`~caadam_jax.caadam` for skipping such steps).

  Raises:
    ValueError: for an unknown strategy or out-of-range scaling factor or other
      hyperparameter, an ``order`` that does not list every leaf once, or the
      reference's division by zero.
    TypeError: a hyperparameter that is not a real scalar, a non-bool
      ``amsgrad``, or an ``order`` that is not a sequence of paths.

  References:
    Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
    methods", arXiv:2410.24216, 2024; the ``caadam`` 0.1.1 package on PyPI.
  """
  _validation.check_real_scalar(
      "learning_rate",
      learning_rate,
      "learning_rate >= 0",
      lambda x: x >= 0,
      schedule=True,
      owner="caadam_jax.keras_caadam",
  )
  return optax.chain(
      scale_by_keras_adam(beta_1, beta_2, epsilon, amsgrad),
      scale_by_published_strategy(strategy, scaling_factor, order=order),
      optax.scale_by_learning_rate(learning_rate),
  )


def keras_caadam_factors(
    params: optax.Params,
    *,
    strategy: _formulas.StrategyName | None = None,
    scaling_factor: float | None = None,
    order: Order | None = None,
) -> dict[str, float]:
  """Per-leaf factors of :func:`keras_caadam` (caadam 0.1.1), in Keras order.

  Only paths and shapes are read (``jax.ShapeDtypeStruct`` leaves work). The
  keys are ``'Dense_0/kernel'``-style path strings in the variable order used,
  so ``list(keras_caadam_factors(params))`` is the order. The factors of the
  method as described are ``caadam_jax.infer_structure(params).factors(...)``.

  Example:
    >>> import jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.ones((4, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.ones((8, 16)), 'bias': jnp.zeros(16)},
    ...           'Dense_2': {'kernel': jnp.ones((16, 1)), 'bias': jnp.zeros(1)}}
    >>> f = caadam_jax.keras_caadam_factors(params)  # CaAdam(): additive, g = 0.9
    >>> round(f['Dense_0/kernel'], 4), round(f['Dense_1/kernel'], 4), round(f['Dense_0/bias'], 4)
    (1.9, 1.9, 2.8)

  Args:
    params: a parameter pytree.
    strategy: as in :func:`keras_caadam`.
    scaling_factor: as in :func:`keras_caadam`.
    order: as in :func:`keras_caadam`.

  Returns:
    ``{path string: factor}`` in Keras variable order.

  Raises:
    ValueError: as :func:`keras_caadam`'s ``init``.
  """
  resolver = _Resolver(strategy, scaling_factor, order)
  return {_paths.path_to_str(p): float(f) for p, f in resolver.factors(params).items()}
