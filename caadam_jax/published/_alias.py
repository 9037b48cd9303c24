"""The published-mode transforms and the ``keras_caadam`` alias."""

from __future__ import annotations

import jax
import optax

from caadam_jax import _formulas
from caadam_jax import _paths
from caadam_jax import _validation
from caadam_jax.published import _keras_records
from caadam_jax.published._keras_adam import scale_by_keras_adam
from caadam_jax.published._keras_order import KerasOrder
from caadam_jax.published._keras_order import Order
from caadam_jax.published._strategy import scale_by_published_strategy


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
  * Adam is the Keras form (:func:`~caadam_jax.published.scale_by_keras_adam`):
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

  The Adam hyperparameters keep Keras's names (``beta_1``, ``beta_2``,
  ``epsilon``, ``amsgrad``) rather than Optax's (``b1``, ``b2``, ``eps``), so that
  code ported from ``keras.optimizers.Adam``/``caadam.CaAdam`` keeps its keywords.

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

  Examples:
    >>> import jax, jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.ones((2, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.ones((8, 1)), 'bias': jnp.zeros(1)}}
    >>> tx = caadam_jax.published.keras_caadam(1e-3, strategy='depth',
    ...     order=['Dense_0/kernel', 'Dense_0/bias', 'Dense_1/kernel', 'Dense_1/bias'])
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)
    >>> caadam_jax.published.keras_caadam_factors(params, strategy='depth')['Dense_0/bias']
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
      owner="caadam_jax.published.keras_caadam",
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

  Examples:
    >>> import jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.ones((4, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.ones((8, 16)), 'bias': jnp.zeros(16)},
    ...           'Dense_2': {'kernel': jnp.ones((16, 1)), 'bias': jnp.zeros(1)}}
    >>> f = caadam_jax.published.keras_caadam_factors(params)  # CaAdam(): additive, g = 0.9
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
    ValueError: as :func:`keras_caadam`'s ``init``; or two leaves have the same
      path string (``{'a/b': x, 'a': {'b': y}}``), which a dict keyed by path
      strings would merge.
  """
  by_path = factors_by_path(params, strategy=strategy, scaling_factor=scaling_factor, order=order)
  by_name: dict[str, float] = {}
  for path, factor in by_path.items():
    name = _paths.path_to_str(path)
    if name in by_name:
      first = next(p for p in by_path if _paths.path_to_str(p) == name)
      raise ValueError(
          f"keras_caadam_factors: the leaves {first!r} and {path!r} have the same path string "
          f"{name!r} (a key contains '/'), so a dict keyed by path strings would merge them. "
          "Rename the key, or read the factors by key tuple: "
          "caadam_jax.describe(params, published=True, show=False) lists every leaf."
      )
    by_name[name] = float(factor)
  return by_name


def factors_by_path(
    params: optax.Params,
    *,
    strategy: _formulas.StrategyName | None = None,
    scaling_factor: float | None = None,
    order: Order | None = None,
) -> dict[_paths.Path, float]:
  """:func:`keras_caadam_factors` keyed by normalized key tuples (never ambiguous)."""
  resolver = _keras_records.Resolver(strategy, scaling_factor, order)
  return {p: float(f) for p, f in resolver.factors(params).items()}


def keras_caadam_records(
    params: optax.Params, *, order: Order | None = None
) -> tuple[dict[str, _formulas.LayerRecord], _formulas.Statistics]:
  """What caadam 0.1.1 knows about each leaf: its connection count, depth and statistics.

  The inputs of :func:`keras_caadam`'s factors, to examine them: per leaf (not per
  layer), the connection count the reference looks up by the leaf's short name (every
  kernel gets the last kernel's size, a leaf with fewer than 2 dimensions 0), its
  depth (the index in the variable order) and the statistics (``c_min``, ``c_med``,
  ``c_max`` from the true sizes; ``D`` the number of leaves). Only paths and shapes
  are read. The method as described has ``caadam_jax.infer_structure(params).layers``.

  Args:
    params: a parameter pytree.
    order: as in :func:`keras_caadam`.

  Returns:
    ``({path string: LayerRecord}, Statistics)``, the records in Keras variable order.

  Raises:
    ValueError: an ``order`` that does not list every leaf once.
    TypeError: an ``order`` that is not a sequence of paths.

  Examples:
    >>> import jax.numpy as jnp
    >>> from caadam_jax.published import keras_caadam_records
    >>> params = {'Dense_0': {'kernel': jnp.ones((4, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.ones((8, 1)), 'bias': jnp.zeros(1)}}
    >>> records, stats = keras_caadam_records(params)
    >>> [(path, r.connections, r.depth) for path, r in records.items()]
    [('Dense_0/kernel', 8, 0), ('Dense_0/bias', 0, 1), ('Dense_1/kernel', 8, 2), ('Dense_1/bias', 0, 3)]
    >>> stats
    Statistics(c_min=8.0, c_med=20.0, c_max=32.0, num_layers=4)
  """
  leaves, ordered = KerasOrder(order).of(params)
  records, stats = _keras_records.records_in_order(leaves, ordered)
  return {_paths.path_to_str(p): records[p] for p in ordered}, stats
