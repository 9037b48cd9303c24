"""The ``caadam`` alias: Adam followed by a CaAdam structure scaling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from caadam_jax import _formulas
from caadam_jax import _structure
from caadam_jax import _transforms


def caadam(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    *,
    strategy: _formulas.StrategyName = "additive",
    scaling_factor: jax.typing.ArrayLike | None = None,
    mu_dtype: Any | None = None,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    structure: _structure.Structure | None = None,
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

  Decoupled weight decay (AdamW-style) is applied after the structure factor,
  so it is not scaled by it. The state is exactly ``optax.adam``'s (the
  structure transform is stateless). Works with ``optax.inject_hyperparams``
  (``learning_rate`` and ``scaling_factor`` may follow schedules there).

  Example:
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
    strategy: ``"additive"`` (default ``g = 0.95``), ``"multiplicative"``
      (``g = 5.0``) or ``"depth"`` (``g = 1.0``).
    scaling_factor: the strategy's ``g``; None for its default.
    mu_dtype: dtype of the first moment (as in ``optax.adam``).
    weight_decay: decoupled weight decay rate; 0 adds no transform.
    mask: a pytree or callable selecting the leaves weight decay applies to (as
      in ``optax.adamw``).
    structure: a :class:`~caadam_jax.Structure`; None infers it from the
      updates' paths and shapes.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  References:
    Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
    methods", arXiv:2410.24216, 2024.
  """
  parts = [
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
      _transforms.scale_by_strategy(strategy, scaling_factor, structure=structure),
  ]
  # A Python zero adds nothing: identity keeps the step as cheap as Adam's and the
  # state tree the same as with decay (both EmptyState), which inject_hyperparams
  # relies on (it turns the default 0.0 into an array).
  no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0 and mask is None
  parts.append(optax.identity() if no_decay else optax.add_decayed_weights(weight_decay, mask))
  parts.append(optax.scale_by_learning_rate(learning_rate))
  return optax.chain(*parts)
