"""Adam in the form Keras (and caadam 0.1.1) computes it: eps added to the uncorrected root."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from caadam_jax import _dtypes
from caadam_jax import _validation


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
  ``keras.optimizers.Adam``). The arguments keep Keras's names, as in
  :func:`~caadam_jax.published.keras_caadam`.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from caadam_jax.published import scale_by_keras_adam
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
  owner = "caadam_jax.published.keras_caadam"
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
