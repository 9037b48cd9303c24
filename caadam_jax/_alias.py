"""The ``caadam`` alias: Adam followed by a CaAdam structure scaling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from caadam_jax import _factor_state
from caadam_jax import _formulas
from caadam_jax import _structure
from caadam_jax import _transforms
from caadam_jax import _validation


@_formulas.binds_formula("strategy", "caadam_jax.caadam")
def caadam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    *,
    strategy: _formulas.StrategyName | _formulas.Formula | None = None,
    scaling_factor: jax.typing.ArrayLike | None = None,
    mu_dtype: Any | None = None,
    weight_decay: optax.ScalarOrSchedule | None = None,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    structure: _structure.Structure | None = None,
    factors_in_state: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Connection-aware Adam: Adam whose step is scaled per layer by its structure.

  ``theta <- theta - lr * S * m_hat / (sqrt(v_hat) + eps)``, where ``S`` is the
  layer's factor under ``strategy`` (see
  :func:`~caadam_jax.scale_by_connection_minmaxmedian` and
  :func:`~caadam_jax.scale_by_depth`). Equal to::

    optax.chain(
        optax.scale_by_adam(b1, b2, eps, eps_root, mu_dtype=mu_dtype),
        <the strategy's scale_by_*>,
        optax.add_decayed_weights(weight_decay, mask),  # only if weight_decay != 0
        optax.scale_by_learning_rate(learning_rate),
    )

  ``strategy`` has no default: name it. Measured in this project (:doc:`/benchmarks`),
  no strategy beat Adam with a tuned learning rate in test error: best against best on
  MLPs for California Housing and a small CNN for Fashion-MNIST, ``"multiplicative"`` and
  ``"depth"`` came within about 1% of tuned Adam and ``"additive"`` was 1.0 to 2.1%
  worse, so there is no choice to make silently for a user. ``"multiplicative"`` or ``"depth"`` are the better-supported
  starting points; compare with Adam at more than one learning rate on your task.
  (:func:`~caadam_jax.published.keras_caadam` keeps the published package's default.)

  Decoupled weight decay (AdamW-style) is applied after the structure factor,
  so it is not scaled by it. The state is exactly ``optax.adam``'s (the
  structure transform is stateless). Works with ``optax.inject_hyperparams``
  (``learning_rate`` and ``scaling_factor`` may follow schedules there); a
  formula ``strategy`` is declared static there,
  ``optax.inject_hyperparams(caadam_jax.caadam, static_args=("strategy",))``, or
  ``init`` raises a ``TypeError`` that says so (optax would call it as a
  schedule).

  Validation: concrete hyperparameters (Python numbers, NumPy scalars) are
  checked here, at construction: real, finite scalars with ``learning_rate >= 0``
  (or a schedule, as ``weight_decay`` may be), ``0 <= b1, b2 < 1``, ``eps > 0``,
  ``eps_root >= 0``, ``weight_decay >= 0`` and ``scaling_factor`` in the
  strategy's range. JAX arrays (traced, or what ``optax.inject_hyperparams``
  passes) are checked for shape and dtype only. An injected or traced
  ``scaling_factor`` outside the strategy's range becomes NaN, so the factors
  that depend on it, and the step, are NaN: never a silently zeroed or
  sign-flipped step. To skip such steps instead, check the optimizer's output:
  ``optax.chain(tx, optax.apply_if_finite(optax.identity(), max_consecutive_errors))``
  (``optax.apply_if_finite(tx, ...)`` checks the incoming gradients only).

  Examples:
    >>> import jax, jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.ones((2, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.ones((8, 1)), 'bias': jnp.zeros(1)}}
    >>> tx = caadam_jax.caadam(1e-3, strategy="multiplicative")
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)

  Args:
    learning_rate: a scalar or an Optax schedule.
    b1: exponential decay rate of the first moment.
    b2: exponential decay rate of the second moment.
    eps: added to the root of the bias-corrected second moment.
    eps_root: added to the second moment inside the root.
    strategy: required. ``"additive"`` (default ``g = 0.95``),
      ``"multiplicative"`` (``g = 5.0``) or ``"depth"`` (``g = 1.0``); or a
      :data:`~caadam_jax.Formula` ``(record, stats, g) -> factor`` (see
      :func:`~caadam_jax.scale_by_structure`: ``scaling_factor`` is given to it
      unchanged and not range-checked; with ``structure=None`` it counts as
      reading depths).
    scaling_factor: the strategy's ``g``; None for its default. Injected or
      traced values outside the range give a NaN step (see above).
    mu_dtype: dtype of the first moment (as in ``optax.adam``).
    weight_decay: decoupled weight decay rate (a number or a schedule); None (the
      default) or 0 adds no transform, so the state is ``optax.adam``'s.
    mask: a pytree or callable selecting the leaves weight decay applies to (as
      in ``optax.adamw``).
    structure: a :class:`~caadam_jax.Structure`; None infers it from the
      updates' paths and shapes (``init`` then refuses trees whose paths cannot
      give the right structure: undeclared stacks, and for ``"depth"`` layer
      paths that need not be in forward order; see :doc:`/your_model`).
    factors_in_state: hold the per-layer factors in the state
      (:func:`~caadam_jax.factors_in_state`): a state that is not ``optax.adam``'s,
      for a compile time near Adam's with many distinct factors (``"depth"`` or a
      formula on ~1000 layers). False (the default) keeps ``optax.adam``'s state.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Raises:
    TypeError: a hyperparameter is not a real scalar (a string, None, a list, a
      bool; a callable other than a ``learning_rate`` or ``weight_decay``
      schedule), ``strategy`` is omitted (None) or neither a name nor a callable,
      or (from ``init``) a formula given to ``optax.inject_hyperparams`` without
      ``static_args=("strategy",)``, or ``structure`` is not a
      :class:`~caadam_jax.Structure` or None.
    ValueError: a hyperparameter is an array that is not 0-d, or a concrete one
      is not finite or out of its range; or ``strategy`` is an unknown name.

  References:
    Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
    methods", arXiv:2410.24216, 2024.
  """
  owner = "caadam_jax.caadam"
  if strategy is None:
    raise TypeError(
        f"{owner} needs strategy=: one of {list(_formulas.STRATEGY_NAMES)} or a formula "
        "(record, stats, g) -> factor. There is no default: no strategy beat Adam with a "
        "tuned learning rate in this project's benchmarks; 'multiplicative' and 'depth' "
        "were the better-supported ones, 'additive' was worse. See docs/benchmarks.md "
        '("Choosing a strategy").'
    )
  _validation.check_adam_hyperparameters(
      owner,
      learning_rate=learning_rate,
      b1=b1,
      b2=b2,
      eps=eps,
      eps_root=eps_root,
      weight_decay=weight_decay,
      weight_decay_may_be_none=True,
  )
  factors_in_state = _validation.check_bool("factors_in_state", factors_in_state)
  adam_and_structure = _transforms.with_stateless(
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
      after=_transforms.scale_by_strategy(strategy, scaling_factor, structure=structure),
  )
  # None or a Python zero adds nothing, so the chain (and its state) is optax.adam's;
  # any other weight decay (a number, an array, a schedule) or a mask gives
  # optax.adamw's. The default is None, not 0.0: inject_hyperparams would turn a numeric
  # default into an array, and the injected state would then differ from the plain one.
  no_decay = (
      weight_decay is None or (isinstance(weight_decay, (int, float)) and weight_decay == 0)
  ) and mask is None
  if no_decay:
    tx = optax.chain(adam_and_structure, optax.scale_by_learning_rate(learning_rate))
  else:
    tx = optax.chain(
        adam_and_structure,
        optax.add_decayed_weights(0.0 if weight_decay is None else weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )
  return _factor_state.factors_in_state(tx) if factors_in_state else tx
