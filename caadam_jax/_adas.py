"""ADAS (adaptive step size): a hypergradient optimizer as an Optax transformation.

ADAS learns its own step sizes. Every parameter tensor ``W`` has one step size
per input (``eta``, the shape of ``W`` without its output axis) and a master
step size ``mu`` that drives the updates of ``eta``; ``mu`` itself is driven by
the constant ``meta_learning_rate`` (``lr3`` in the reference). Each level is a
hypergradient step: the derivative of the loss with respect to a step size is approximated by the product of the current
raw derivative and a running average of the previous normalized updates.

Reference: Y. Eliyahu, "AdasOptimizer: ADAS is short for Adaptive Step Size",
https://github.com/YanaiEliyahu/AdasOptimizer (2020), TensorFlow version
``adasopt.py``. The algorithm implemented here is written out step by step in
:func:`scale_by_adas`'s docstring (and docs/adas.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, TypeVar, cast

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
import optax

from caadam_jax import _deprecation
from caadam_jax import _dtypes
from caadam_jax import _validation

_P = ParamSpec("_P")
_R = TypeVar("_R")


class ScaleByAdasState(NamedTuple):
  """State of :func:`scale_by_adas`.

  Every field but ``count`` is a tree with the structure of the params
  (``optax.MaskedNode`` where ``optax.masked`` hides a leaf). Floating fields
  are kept in at least float32 (``promote_types(param dtype, float32)``): the
  decay rates (0.999 rounds to 1.0 in bfloat16) and the small multiplicative
  step-size updates would be lost in 16-bit formats.

  Attributes:
    count: number of steps taken so far (int32 scalar).
    eta: per-input step sizes, the shape of each leaf without its output axis
      (a scalar for 0-D and 1-D leaves).
    mu: master step size of each leaf (a scalar per leaf).
    v_w: second moment of the weight normalizer (shape of the leaf).
    u_w: running average of the normalized weight updates (shape of the leaf).
    v_eta: second moment of the step-size normalizer (shape of ``eta``).
    u_eta: running average of the normalized step-size updates (shape of
      ``eta``).
    v_mu: second moment of the master-step-size normalizer (a scalar per leaf).
      Its running average has decay 0 and is never read, so it is not stored.
  """

  count: jax.Array
  eta: optax.Updates
  mu: optax.Updates
  v_w: optax.Updates
  u_w: optax.Updates
  v_eta: optax.Updates
  u_eta: optax.Updates
  v_mu: optax.Updates


def _validate(hyper: dict[str, Any]) -> None:
  def positive(x):
    return x > 0

  def non_negative(x):
    return x >= 0

  def decay(x):
    return 0 <= x < 1

  for name, allowed, ok in (
      ("learning_rate", "learning_rate > 0", positive),
      ("hyper_learning_rate", "hyper_learning_rate >= 0", non_negative),
      ("meta_learning_rate", "meta_learning_rate >= 0", non_negative),
      ("second_moment_decay", "0 <= second_moment_decay < 1", decay),
      ("step_size_average_decay", "0 <= step_size_average_decay < 1", decay),
      ("update_average_decay", "0 <= update_average_decay < 1", decay),
      ("eps", "eps > 0", positive),
  ):
    _validation.check_real_scalar(name, hyper[name], allowed, ok, owner="caadam_jax.adas")


def _resolve_output_axis(output_axis: Any) -> int:
  if output_axis is None:
    return -1
  if _validation.is_jax_array(output_axis):
    raise TypeError(
        "output_axis must be a static Python int (it decides the shapes of the "
        f"state), got {output_axis!r}. With optax.inject_hyperparams, pass "
        "static_args=('output_axis',)."
    )
  if isinstance(output_axis, (int, np.integer)) and not isinstance(output_axis, (bool, np.bool_)):
    return int(output_axis)
  raise TypeError(
      "output_axis must be an int (-1: Flax (in, out) layouts, 0: PyTorch/Equinox "
      f"(out, in)) or None, got {type(output_axis).__name__} {output_axis!r}."
  )


def _leaf_axis(ndim: int, output_axis: int) -> int | None:
  """The non-negative output axis of a leaf of rank ``ndim``; None for 0-D leaves."""
  if ndim == 0:
    return None
  if not -ndim <= output_axis < ndim:
    raise ValueError(f"output_axis={output_axis} is out of range for a parameter of rank {ndim}.")
  return output_axis % ndim


def _state_dtype(dtype: Any) -> jnp.dtype:
  return _dtypes.at_least_float32(dtype)


def _normalize(x, v, decay, eps, correction):
  """The normalizer's second-moment update and normalized value (``N`` in scale_by_adas)."""
  v = decay * v + (1 - decay) * jnp.square(x)
  return v, x * correction / (jnp.sqrt(v) + eps)


# Former names of the hyperparameters, accepted for one release: the reference
# implementation's (adasopt.py's ``lr``, ``lr2``, ``lr3``, ``beta_1``, ``beta_2``,
# ``beta_3``) and the Optax-style ``b1``, ``b2``, ``b3`` (Optax's names for other decays:
# ``b1=0.999`` here is a second-moment decay). ``eps`` keeps its name.
_FORMER_NAMES = dict(
    lr="learning_rate",
    lr2="hyper_learning_rate",
    lr3="meta_learning_rate",
    beta_1="second_moment_decay",
    beta_2="step_size_average_decay",
    beta_3="update_average_decay",
    b1="second_moment_decay",
    b2="step_size_average_decay",
    b3="update_average_decay",
)


def _init_leaf(p: Any, learning_rate, hyper_learning_rate, axis_arg: int) -> tuple[jax.Array, ...]:
  """One leaf's initial state, in ``ScaleByAdasState`` field order after ``count``."""
  # Shapes and dtypes only: jax.ShapeDtypeStruct leaves work too.
  p = p if hasattr(p, "shape") and hasattr(p, "dtype") else jnp.asarray(p)
  if jnp.issubdtype(p.dtype, jnp.complexfloating):
    raise ValueError(
        f"scale_by_adas got a complex parameter of shape {p.shape}: ADAS is defined "
        "for real parameters only. Optimize the real and imaginary parts as two "
        "real leaves."
    )
  dtype = _state_dtype(p.dtype)
  axis = _leaf_axis(p.ndim, axis_arg)
  eta_shape = () if axis is None else p.shape[:axis] + p.shape[axis + 1 :]
  return (
      jnp.full(eta_shape, learning_rate, dtype=dtype),  # eta
      jnp.asarray(hyper_learning_rate, dtype=dtype),  # mu
      # zeros_like keeps the leaf's sharding for the full-size moments.
      jnp.zeros_like(p, dtype=dtype),  # v_w
      jnp.zeros_like(p, dtype=dtype),  # u_w
      jnp.zeros(eta_shape, dtype),  # v_eta
      jnp.zeros(eta_shape, dtype),  # u_eta
      jnp.zeros((), dtype),  # v_mu
  )


def _update_leaf(g, eta, mu, v_w, u_w, v_eta, u_eta, v_mu, *, count, hyper, axis_arg):
  """One leaf's ADAS step: ``(update, *new state)``, the eight steps of scale_by_adas."""
  meta_learning_rate, second_moment_decay, step_size_average_decay, update_average_decay, eps = (
      hyper
  )
  g = jnp.asarray(g)  # Python-float leaves, as optax.adam accepts them
  dtype = v_w.dtype
  axis = _leaf_axis(g.ndim, axis_arg)
  gs = g.astype(dtype)
  correction = jnp.sqrt(1 - second_moment_decay ** count.astype(dtype))
  # 1. Normalize the raw gradient; u_w is still the previous average.
  new_v_w, gn = _normalize(gs, v_w, second_moment_decay, eps, correction)
  # 2. The weight update, with the step sizes from before this step.
  eta_b = eta if axis is None else jnp.expand_dims(eta, axis)
  update = (-(eta_b * gn)).astype(g.dtype)
  # 3. Hypergradient of eta: previous average times the raw gradient.
  h = u_w * gs if axis is None else jnp.sum(u_w * gs, axis=axis)
  new_u_w = update_average_decay * u_w + (1 - update_average_decay) * gn
  # 4.-5. Normalize h and update eta with the previous mu.
  new_v_eta, hn = _normalize(h, v_eta, second_moment_decay, eps, correction)
  new_eta = eta + mu * eta * hn
  # 6. Hypergradient of mu, from the previous average of eta's updates.
  k = jnp.sum(u_eta * h)
  new_u_eta = step_size_average_decay * u_eta + (1 - step_size_average_decay) * hn
  # 7.-8. Normalize k (its average has decay 0 and is unused) and update mu.
  new_v_mu, kn = _normalize(k, v_mu, second_moment_decay, eps, correction)
  new_mu = mu + meta_learning_rate * mu * kn
  new_state = (new_eta, new_mu, new_v_w, new_u_w, new_v_eta, new_u_eta, new_v_mu)
  # Keep the state's dtypes fixed (e.g. a float64 injected hyperparameter
  # must not promote a float32 state), so that init and update agree.
  old_state = (eta, mu, v_w, u_w, v_eta, u_eta, v_mu)
  return (update, *(n.astype(o.dtype) for n, o in zip(new_state, old_state, strict=True)))


def _transpose(tree: Any, fields: int, like: Any) -> tuple[Any, ...]:
  """A tree (structured like ``like``) of ``fields``-tuples as a tuple of trees."""
  outer = jax.tree.structure(like)
  if outer.num_leaves == 0:
    # A tree without leaves: older JAX (0.7) cannot transpose it (it unflattens the
    # inner tuple from zero leaves), so build the empty trees directly.
    return (jax.tree.unflatten(outer, []),) * fields
  inner = jax.tree.structure((0,) * fields)
  return jax.tree.transpose(outer, inner, tree)


@_deprecation.renamed_keywords(**_FORMER_NAMES)
def scale_by_adas(
    learning_rate: jax.typing.ArrayLike = 1e-3,
    hyper_learning_rate: jax.typing.ArrayLike = 5e-3,
    meta_learning_rate: jax.typing.ArrayLike = 5e-4,
    second_moment_decay: jax.typing.ArrayLike = 0.999,
    step_size_average_decay: jax.typing.ArrayLike = 0.999,
    update_average_decay: jax.typing.ArrayLike = 0.9999,
    eps: jax.typing.ArrayLike = 1e-7,
    *,
    output_axis: int | None = None,
) -> optax.GradientTransformationExtraArgs:
  """ADAS: normalized gradients scaled by learned per-input step sizes.

  The output is the final update to ADD to the params (already negative, as
  ``optax.apply_updates`` expects): ADAS has no global learning rate, so do not
  chain it with ``optax.scale_by_learning_rate``.

  The hyperparameters are named for what they are; the TensorFlow reference
  (``adasopt.py``) calls them ``lr`` (``learning_rate``), ``lr2``
  (``hyper_learning_rate``), ``lr3`` (``meta_learning_rate``), ``beta_1``
  (``second_moment_decay``), ``beta_2`` (``step_size_average_decay``), ``beta_3``
  (``update_average_decay``) and ``epsilon`` (``eps``). The reference names and the
  former ``b1``, ``b2``, ``b3`` are accepted as keywords for one release, with a
  ``DeprecationWarning``.

  For a leaf ``W`` with output axis ``a`` and step count ``t`` (from 1), with
  ``beta2 = second_moment_decay``, a normalizer ``N(x; beta)`` keeps ``v`` and
  ``u``: it sets ``v = beta2*v + (1-beta2)*x**2``,
  ``xn = x*sqrt(1-beta2**t)/(sqrt(v)+eps)``, returns the previous ``u`` and ``xn``
  and then sets ``u = beta*u + (1-beta)*xn``. One step with gradient ``g`` is:

  1. ``(u_w_old, gn) = N_w(g; update_average_decay)``
  2. ``update = -eta * gn`` (``eta`` broadcast along ``a``, from before the step)
  3. ``h = sum over a of (u_w_old * g)``
  4. ``(u_eta_old, hn) = N_eta(h; step_size_average_decay)``
  5. ``eta = eta + mu * eta * hn`` (``mu`` from before the step)
  6. ``k = sum of (u_eta_old * h)``
  7. ``(_, kn) = N_mu(k; 0)``
  8. ``mu = mu + meta_learning_rate * mu * kn``

  ``eta`` starts at ``learning_rate`` and ``mu`` at ``hyper_learning_rate``;
  neither is clamped. A 1-D leaf (a bias) has one step size; a 0-D leaf has one
  too (``h = u_w_old*g``).

  Composition: gradient clipping goes before ADAS (it changes the raw
  gradients the hypergradients are computed from). ``optax.add_decayed_weights``
  placed before ADAS is an L2 penalty normalized with the gradient. For
  decoupled weight decay add it after ADAS with a NEGATIVE coefficient that
  includes its own step size, since there is no global learning rate to scale
  it (``-decay_lr * decay``). ``learning_rate`` and ``hyper_learning_rate`` are
  only initial values: under ``optax.inject_hyperparams`` changing them after
  ``init`` has no effect, while ``meta_learning_rate``, the decay rates and
  ``eps`` act at every step.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, caadam_jax
    >>> params = {'kernel': jnp.ones((4, 3)), 'bias': jnp.zeros(3)}
    >>> tx = optax.chain(optax.clip_by_global_norm(1.0),
    ...                  caadam_jax.scale_by_adas(),
    ...                  optax.add_decayed_weights(-1e-3 * 1e-4))
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> state[1].eta['kernel'].shape, state[1].eta['bias'].shape
    ((4,), ())

  Args:
    learning_rate: initial per-input step size (``eta``), > 0 (reference:
      ``lr``).
    hyper_learning_rate: initial master step size (``mu``), the step size of
      ``eta``; >= 0, 0 keeps ``eta`` fixed (reference: ``lr2``).
    meta_learning_rate: constant step size of ``mu``; >= 0, 0 keeps ``mu``
      fixed (reference: ``lr3``).
    second_moment_decay: decay of the normalizers' second moments and their bias
      correction, in [0, 1) (reference: ``beta_1``; formerly ``b1``).
    step_size_average_decay: decay of the running average of the normalized
      step-size (``eta``) updates, in [0, 1) (reference: ``beta_2``; formerly
      ``b2``).
    update_average_decay: decay of the running average of the normalized weight
      updates, in [0, 1) (reference: ``beta_3``; formerly ``b3``).
    eps: added to the square root of the second moments, > 0 (reference:
      ``epsilon``; the TensorFlow reference uses 1e-7, the PyTorch one 1e-8).
    output_axis: the output axis of every leaf, keyword-only and static. None
      (the default) means -1, the last axis, as in Flax (Dense ``(in, out)``,
      Conv ``(kh, kw, in, out)``); use 0 for PyTorch/Equinox ``(out, in)``
      layouts. The default is None rather than -1 so that
      ``optax.inject_hyperparams`` does not turn it into a traced array; if you
      pass it through ``inject_hyperparams`` add
      ``static_args=('output_axis',)``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`ScaleByAdasState`.

  Raises:
    ValueError: a concrete hyperparameter is not finite or out of range, or an
      array that is not 0-d (JAX arrays, traced or injected by
      ``optax.inject_hyperparams``, are not range-checked), or ``output_axis``
      does not fit a leaf's rank (at ``init``).
    TypeError: a hyperparameter is not a real scalar (a string, None, a list, a
      bool, a callable), ``output_axis`` is not a static int, or a hyperparameter
      is given under both its name and a deprecated former name.

  References:
    Y. Eliyahu, AdasOptimizer, https://github.com/YanaiEliyahu/AdasOptimizer.
  """
  _validate(
      dict(
          learning_rate=learning_rate,
          hyper_learning_rate=hyper_learning_rate,
          meta_learning_rate=meta_learning_rate,
          second_moment_decay=second_moment_decay,
          step_size_average_decay=step_size_average_decay,
          update_average_decay=update_average_decay,
          eps=eps,
      )
  )
  axis_arg = _resolve_output_axis(output_axis)
  fields = len(ScaleByAdasState._fields) - 1  # every field but count

  def init_fn(params: optax.Params) -> ScaleByAdasState:
    per_leaf = jax.tree.map(
        lambda p: _init_leaf(p, learning_rate, hyper_learning_rate, axis_arg), params
    )
    return ScaleByAdasState(jnp.zeros([], jnp.int32), *_transpose(per_leaf, fields, params))

  def update_fn(
      updates: optax.Updates,
      state,  # ScaleByAdasState (unannotated, as in Optax: the protocol takes any OptState)
      params: optax.Params | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, ScaleByAdasState]:
    del params, extra_args
    count = jnp.asarray(optax.safe_increment(state.count))
    hyper = (
        meta_learning_rate,
        second_moment_decay,
        step_size_average_decay,
        update_average_decay,
        eps,
    )
    per_leaf = jax.tree.map(
        lambda g, *leaf_state: _update_leaf(
            g, *leaf_state, count=count, hyper=hyper, axis_arg=axis_arg
        ),
        updates,
        *state[1:],
    )
    new_updates, *new_fields = _transpose(per_leaf, fields + 1, updates)
    return new_updates, ScaleByAdasState(count, *new_fields)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _alias_of(transform: Callable[_P, _R]) -> Callable[[Callable[..., _R]], Callable[_P, _R]]:
  """Gives an alias ``transform``'s signature, for type checkers, ``inspect`` and Sphinx.

  ``inspect.signature`` follows ``__wrapped__``, so ``optax.inject_hyperparams`` sees
  the transform's arguments; the alias keeps its own name and docstring.
  """

  def decorate(alias: Callable[..., _R]) -> Callable[_P, _R]:
    # Only ``__wrapped__``: the alias keeps its name and docstring.
    return cast(Callable[_P, _R], functools.update_wrapper(alias, transform, (), ()))

  return decorate


@_deprecation.renamed_keywords(**_FORMER_NAMES)
@_alias_of(scale_by_adas)
def adas(*args: Any, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
  """The ADAS optimizer: :func:`scale_by_adas`, with the same arguments.

  ADAS has no separate global learning rate: the alias is the transformation
  itself, whose output is the final (negative) update for ``optax.apply_updates``.
  See :func:`scale_by_adas` for the algorithm, the arguments and the errors. Clip
  gradients before it (``optax.chain(optax.clip_by_global_norm(1.0),
  caadam_jax.adas())``); for decoupled weight decay chain
  ``optax.add_decayed_weights(-decay_lr * decay)`` after it.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, caadam_jax
    >>> params = {'w': jnp.array([1.0, -2.0])}
    >>> loss = lambda p: jnp.sum(p['w'] ** 2)
    >>> tx = caadam_jax.adas(learning_rate=1e-3, second_moment_decay=0.999)
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> bool(loss(params) < 5.0)
    True

  References:
    Y. Eliyahu, AdasOptimizer, https://github.com/YanaiEliyahu/AdasOptimizer.
  """
  return scale_by_adas(*args, **kwargs)
