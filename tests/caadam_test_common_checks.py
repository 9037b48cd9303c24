"""Reusable optimizer checks, ported from Optax's common tests and adapted.

Sources: ``optax/_src/alias_test.py`` (test_optimization,
test_optimizers_accept_extra_args,
test_optimizers_can_be_wrapped_in_inject_hyperparams, test_explicit_dtype,
test_preserve_dtype, test_state_shape_dtype_shard_stability,
test_gradient_accumulation) and ``optax/_src/transform_test.py``
(test_scalers). Every ``check_*`` function takes a ``registry.Entry`` (an
optimizer factory and what the checks need to know about it) and raises
``AssertionError`` on failure; this module collects no tests (see
``test_common.py``).

Besides Optax's bare-array targets, the checks use *layered* parameters, a dict
of three Dense-like layers with different connection counts, so that CaAdam's
per-layer factors are not all 1 (on a bare array every factor is 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from caadam_test_helpers import assert_same_state
from caadam_test_registry import ROSENBROCK_STEPS
from caadam_test_registry import Entry
from caadam_test_registry import Scaler

# ----------------------------------------------------------------------------
# Parameters and targets.

# Leaf shapes per layer. Connection counts 6, 12, 4: c_min = 4, c_med = 6,
# c_max = 12, so under the MinMaxMedian strategies Dense_0 (the median) gets 1
# and Dense_1, Dense_2 other factors; depth factors all differ. Three layers
# (with two, both multiplicative factors are g). Few leaves keep compiles short.
LAYER_SHAPES = {
    "Dense_0": {"kernel": (2, 3), "bias": (3,)},
    "Dense_1": {"kernel": (3, 4)},
    "Dense_2": {"kernel": (4, 1)},
}


def _layered(fn: Callable[[str, str, tuple[int, ...]], np.ndarray], dtype) -> dict[str, Any]:
  return {
      layer: {
          name: jnp.asarray(fn(layer, name, shape), dtype=dtype) for name, shape in leaves.items()
      }
      for layer, leaves in LAYER_SHAPES.items()
  }


def layered_params(dtype=jnp.float32) -> dict[str, Any]:
  """Deterministic, non-constant layered parameters."""

  def values(layer, name, shape):
    n = int(np.prod(shape))
    offset = 0.3 * int(layer[-1]) + (0.1 if name == "bias" else 0.0)
    v = np.linspace(-1.0, 2.0, n) + offset
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
      v = v + 0.5j * np.cos(np.arange(n))
    return v.reshape(shape)

  return _layered(values, dtype)


def layered_grads(params: Any) -> Any:
  """Gradients of a fixed quadratic at ``params`` (differ per leaf and per step)."""
  return jax.grad(lambda p: sum(jnp.sum(jnp.abs(x - 0.5) ** 2) for x in jax.tree.leaves(p)))(params)


def _abs_sq(x):
  return (x * jnp.conj(x)).real if jnp.iscomplexobj(x) else x**2


def setup_parabola(dtype):
  """Optax's quadratic target on a bare 1-D array."""
  initial_params = jnp.array([-1.0, 10.0, 1.0], dtype=dtype)
  final_params = jnp.array([1.0, -1.0, 1.0], dtype=dtype)
  if jnp.iscomplexobj(initial_params):
    final_params *= 1 + 1j

  def objective(params):
    return jnp.sum(_abs_sq(params - final_params))

  return initial_params, final_params, objective


def setup_rosenbrock(dtype):
  """Optax's Rosenbrock target on a bare 1-D array of two entries."""
  a, b = 1.0, 100.0
  if jnp.iscomplexobj(jnp.zeros((), dtype)):
    a *= 1 + 1j
  initial_params = jnp.array([0.0, 0.0], dtype=dtype)
  final_params = jnp.array([a, a**2], dtype=dtype)

  def objective(params):
    return _abs_sq(a - params[0]) + b * _abs_sq(params[1] - params[0] ** 2)

  return initial_params, final_params, objective


def setup_layered_parabola(dtype):
  """A quadratic target on layered parameters; the minimum differs per leaf."""
  complex_ = jnp.iscomplexobj(jnp.zeros((), dtype))
  initial_params = layered_params(dtype)

  def final(layer, name, shape):
    n = int(np.prod(shape))
    v = np.cos(np.arange(n) + int(layer[-1])) * (1.0 if name == "kernel" else -0.5)
    return (v * (1 + 1j) if complex_ else v).reshape(shape)

  final_params = _layered(final, dtype)

  def objective(params):
    diffs = jax.tree.map(lambda p, f: jnp.sum(_abs_sq(p - f)), params, final_params)
    return sum(jax.tree.leaves(diffs))

  return initial_params, final_params, objective


def setup_layered_rosenbrock(dtype):
  """Rosenbrock on layered parameters.

  Each kernel's entries are read as consecutive ``(x, y)`` pairs, each pair a
  Rosenbrock valley with its minimum at ``(a, a**2)``; biases have a quadratic
  target ``a``. Starts at zero, as Optax's Rosenbrock.
  """
  a, b = 1.0, 100.0
  complex_ = jnp.iscomplexobj(jnp.zeros((), dtype))
  if complex_:
    a *= 1 + 1j
  initial_params = _layered(lambda layer, name, shape: np.zeros(shape), dtype)

  def final(layer, name, shape):
    if name == "bias":
      return np.full(shape, a)
    flat = np.empty(int(np.prod(shape)), dtype=complex if complex_ else float)
    flat[0::2], flat[1::2] = a, a**2
    return flat.reshape(shape)

  final_params = _layered(final, dtype)

  def objective(params):
    total = 0.0
    for layer in params.values():
      k = layer["kernel"].reshape(-1)
      x, y = k[0::2], k[1::2]
      total += jnp.sum(_abs_sq(a - x) + b * _abs_sq(y - x**2))
      if "bias" in layer:
        total += jnp.sum(_abs_sq(layer["bias"] - a))
    return total

  return initial_params, final_params, objective


TARGETS = {
    "parabola": setup_parabola,
    "rosenbrock": setup_rosenbrock,
    "layered_parabola": setup_layered_parabola,
    "layered_rosenbrock": setup_layered_rosenbrock,
}


def _quadratic(params):
  return sum(jnp.sum(_abs_sq(x)) for x in jax.tree.leaves(params))


# ----------------------------------------------------------------------------
# Checks.


def check_optimization(entry: Entry, target: str, dtype) -> None:
  """alias_test.test_optimization: converges to the known minimum under jit.

  Also checks that ``tree_map_params`` works on the initial state (a no-op map),
  that the jitted step does not recompile on its second call, that the params
  keep their dtype and that the state keeps its shapes and dtypes over the run
  (``lax.fori_loop`` would reject a change).
  """
  if jnp.iscomplexobj(jnp.zeros((), dtype)) and not entry.supports_complex:
    pytest.skip("complex parameters are not supported by this entry")
  rosenbrock = "rosenbrock" in target
  steps = ROSENBROCK_STEPS if rosenbrock else entry.steps
  if rosenbrock and entry.rosenbrock_lr is not None:
    opt = entry.factory(learning_rate=entry.rosenbrock_lr)
  else:
    opt = entry.factory()
  initial_params, final_params, objective = TARGETS[target](dtype)

  def step(params, state):
    grads = jax.grad(objective)(params)
    # Complex gradients are conjugated before being added to the parameters.
    grads = jax.tree.map(jnp.conj, grads)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = opt.init(initial_params)
  state = optax.tree_utils.tree_map_params(opt, lambda v: v, state)

  # One compiled loop, called twice (half the steps each): the second call
  # must not recompile, so the state after updates has the initial types.
  traces = []

  @jax.jit
  def run(params, state):
    traces.append(None)  # once per trace: a second trace would mean a recompilation
    return jax.lax.fori_loop(0, steps // 2, lambda _, c: step(*c), (params, state))

  params, state = run(initial_params, state)
  params, state = run(params, state)
  assert len(traces) == 1, 'Optimizer recompiles on second call to "update".'
  chex.assert_trees_all_equal_shapes_and_dtypes(params, initial_params)
  chex.assert_tree_all_finite(params)
  chex.assert_trees_all_close(params, final_params, rtol=entry.rtol, atol=entry.atol)


def check_per_layer_step_sizes(entry: Entry) -> None:
  """The layered targets are not trivial: step sizes differ between layers.

  With every gradient entry equal to 1, an Adam-like first step has the same
  magnitude everywhere unless a per-layer factor scales it.
  """
  if not entry.per_layer:
    pytest.skip("this entry does not scale steps per layer")
  opt = entry.factory()
  params = layered_params()
  grads = jax.tree.map(jnp.ones_like, params)
  updates: Any  # the layered params' dict
  updates, _ = opt.update(grads, opt.init(params), params)
  sizes = {layer: float(jnp.mean(jnp.abs(u["kernel"]))) for layer, u in updates.items()}
  distinct = sorted(sizes.values())
  assert distinct[-1] > 1.01 * distinct[0], f"same step size in every layer: {sizes}"


def _injected(entry: Entry, values: Mapping[str, Any]) -> optax.GradientTransformation:
  """The entry's optimizer under ``optax.inject_hyperparams`` with ``values`` set."""
  factory = entry.factory
  assert isinstance(factory, functools.partial), "registry factories are functools.partial"
  inject = optax.inject_hyperparams(factory.func)
  return inject(*factory.args, **{**factory.keywords, **values})


def _plain_and_injected(entry: Entry):
  """The plain optimizer and its injected twin, both at ``entry.inject_values``."""
  injected = _injected(entry, entry.inject_values)
  plain = entry.factory(**entry.inject_values)
  return plain, injected


def check_inject_hyperparams(entry: Entry, steps: int = 4) -> None:
  """alias_test.test_optimizers_can_be_wrapped_in_inject_hyperparams, over steps.

  The optimizer built by ``optax.inject_hyperparams(constructor)`` with
  ``entry.inject_values`` gives the same updates and the same state leaves
  as the plain optimizer, step after step, under jit; the injected values are
  in ``state.hyperparams``. Tolerances are Optax's: hyperparameters injected as
  float32 arrays round differently from Python floats (``1 - 0.999``).
  """
  plain, injected = _plain_and_injected(entry)
  params = layered_params()
  state = plain.init(params)
  state_inj: Any = jax.jit(injected.init)(params)  # an inject_hyperparams state
  updates: Any = None
  for name, value in entry.inject_values.items():
    np.testing.assert_allclose(state_inj.hyperparams[name], value, rtol=1e-6)
  update = plain.update
  update_inj = jax.jit(injected.update)
  for _ in range(steps):
    # Both on the plain trajectory, so that rounding does not compound.
    grads = layered_grads(params)
    updates, state = update(grads, state, params)
    updates_inj, state_inj = update_inj(grads, state_inj, params)
    chex.assert_trees_all_close(updates_inj, updates, rtol=1e-3)
    assert jax.tree.structure(state_inj.inner_state) == jax.tree.structure(state)
    chex.assert_trees_all_close(
        jax.tree.leaves(state_inj.inner_state),
        jax.tree.leaves(state),
        rtol=1e-3,
        atol=1e-7,
    )
    params = optax.apply_updates(params, updates)
  # The comparison is not vacuous.
  assert all(not np.allclose(u, 0) for u in jax.tree.leaves(updates))


def check_inject_inner_state_structure(entry: Entry) -> None:
  """Optax's own form of the check: ``inner_state`` has the plain state's tree structure."""
  plain, injected = _plain_and_injected(entry)
  params = layered_params()
  injected_state: Any = injected.init(params)  # an inject_hyperparams state
  assert jax.tree.structure(injected_state.inner_state) == jax.tree.structure(plain.init(params))


def check_scheduled_hyperparam(entry: Entry, steps: int = 6) -> None:
  """A hyperparameter following a schedule through inject_hyperparams.

  At step ``t`` the injected optimizer's update equals the plain optimizer's
  built with the schedule's value at ``t``, applied to the same inner state.
  The schedules start where every factor is 1, so the first update equals the
  reference's (Adam's), and the later ones differ from those of the constant
  initial value.
  """
  if entry.schedule is None:
    pytest.skip("this entry has no schedule")
  name, schedule, plain_value = entry.schedule
  injected = _injected(entry, {name: schedule})
  params = layered_params()
  state: Any = injected.init(params)  # an inject_hyperparams state
  new_state: Any
  update = jax.jit(injected.update)

  def constant(value):
    # The same optimizer with a constant value, injected too: caadam's injected
    # inner chain differs from the plain one (see test_common), so the inner
    # state is run through an injected constant.
    tx = _injected(entry, {name: value})

    def step(g, s, p):
      state: Any = tx.init(p)  # an inject_hyperparams state
      return tx.update(g, state._replace(inner_state=s), p)

    return step

  first = constant(plain_value(0))
  changed = False
  for t in range(steps):
    grads = layered_grads(params)
    updates, new_state = update(grads, state, params)
    np.testing.assert_allclose(new_state.hyperparams[name], plain_value(t), rtol=1e-6, atol=1e-7)
    expected, _ = constant(plain_value(t))(grads, state.inner_state, params)
    chex.assert_trees_all_close(updates, expected, rtol=1e-5)
    with_first, _ = first(grads, state.inner_state, params)
    if t == 0:
      chex.assert_trees_all_close(updates, with_first, rtol=1e-6)
      if entry.reference is not None:
        ref = entry.reference()
        ref_updates, _ = ref.update(grads, ref.init(params), params)
        # Injected float32 b1/b2/eps round differently from Python floats.
        chex.assert_trees_all_close(updates, ref_updates, rtol=1e-4)  # first step
    elif plain_value(t) != plain_value(0):
      changed = changed or not all(
          np.allclose(a, b, rtol=1e-3)
          for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(with_first), strict=False)
      )
    params, state = optax.apply_updates(params, updates), new_state
  assert changed, f"the schedule of {name} did not change the updates"


def check_preserve_dtype(entry: Entry, dtype, layered: bool) -> None:
  """alias_test.test_preserve_dtype: updates have the gradients' dtype.

  Also: the state's leaves keep their dtypes through the update.
  """
  dtype = jnp.dtype(dtype)
  opt = entry.factory()
  params = layered_params(dtype) if layered else jnp.array([1.0, 2.0], dtype=dtype)
  grads = jax.grad(_quadratic)(params)
  state = opt.init(params)
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads), strict=False):
    assert u.dtype == g.dtype == dtype, (u.dtype, g.dtype)
  # The updates are usable in that dtype: finite and not all zero.
  chex.assert_tree_all_finite(updates)
  for u in jax.tree.leaves(updates):
    assert np.any(np.asarray(u, np.float32) != 0), f"all-zero {dtype} update"
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


def check_state_stability(entry: Entry, dtype, execute: bool = True) -> None:
  """alias_test.test_state_shape_dtype_shard_stability, on layered parameters.

  The state after ``update`` has exactly the structure, shapes and dtypes of
  the state from ``init``, so the optimizer works with ``jax.lax.cond`` choosing
  between an update and no update, and between the old and the new state.
  ``lax.cond`` checks its branches agree when traced (``jax.eval_shape``); with
  ``execute`` the jitted step also runs twice, as in Optax.
  """
  if jnp.iscomplexobj(jnp.zeros((), dtype)) and not entry.supports_complex:
    pytest.skip("complex parameters are not supported by this entry")
  opt = entry.factory()
  initial_params, _, objective = setup_layered_parabola(dtype)
  init_abstract = jax.eval_shape(opt.init, initial_params)
  grads_abstract = jax.eval_shape(jax.grad(objective), initial_params)
  _, updated_abstract = jax.eval_shape(opt.update, grads_abstract, init_abstract, initial_params)
  chex.assert_trees_all_equal_shapes_and_dtypes(updated_abstract, init_abstract)

  @jax.jit
  def step(params, state):
    updates = jax.tree.map(jnp.conj, jax.grad(objective)(params))
    # Defeat compiler optimization: lax.cond checks the two branches agree.
    cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
    updates, state = jax.lax.cond(
        cond, lambda: opt.update(updates, state, params), lambda: (params, state)
    )
    return optax.apply_updates(params, updates), state

  params, state = initial_params, opt.init(initial_params)
  _, traced_state = jax.eval_shape(step, params, state)
  chex.assert_trees_all_equal_shapes_and_dtypes(traced_state, init_abstract)
  if not execute:
    return
  for _ in range(2):
    params, new_state = step(params, state)
    assert jax.tree.leaves(params)[0].dtype == dtype
    cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
    state = jax.lax.cond(cond, lambda: state, lambda: new_state)  # noqa: B023
  chex.assert_trees_all_equal_shapes_and_dtypes(state, init_abstract)


def check_gradient_accumulation(entry: Entry, dtype, k: int = 4) -> None:
  """alias_test.test_gradient_accumulation, with ``optax.MultiSteps``.

  The first ``k - 1`` updates are exactly zero; the ``k``-th equals the base
  optimizer's update on the mean of the ``k`` gradients.
  """
  dtype = jnp.dtype(dtype)
  base = entry.factory()
  opt = optax.MultiSteps(base, every_k_schedule=k)
  params = layered_params(dtype)
  grads = [jax.tree.map(lambda g, i=i: g * (i + 1), layered_grads(params)) for i in range(k)]
  update = jax.jit(opt.update)
  state = opt.init(params)
  updates: Any = None
  for i in range(k):
    updates, state = update(grads[i], state, params)
    if i < k - 1:
      # chex compares bfloat16 as float32: the dtypes are checked separately.
      zeros = jax.tree.map(jnp.zeros_like, params)
      chex.assert_trees_all_equal_shapes_and_dtypes(updates, zeros)
      chex.assert_trees_all_equal(updates, zeros, strict=True)
  mean = jax.tree.map(lambda *g: sum(x.astype(jnp.float32) for x in g) / k, *grads)
  mean = jax.tree.map(lambda m, p: m.astype(p.dtype), mean, params)
  expected, _ = jax.jit(base.update)(mean, base.init(params), params)
  tol = 1e-5 if dtype == jnp.float32 else 3e-2
  chex.assert_trees_all_close(updates, expected, rtol=tol, atol=tol * 1e-2)
  assert any(np.any(np.asarray(u, np.float32) != 0) for u in jax.tree.leaves(updates))


ONE_D_PARAMS = (jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0]))
ONE_D_UPDATES = (jnp.array([500.0, 5.0]), jnp.array([300.0, 3.0]))


def check_scaler_no_arguments(scaler_entry: Scaler) -> None:
  """transform_test.test_scalers: built with no arguments, on a tuple of 1-D params, under jit.

  With ``identity_on_1d``: no leaf has two or more dimensions, so no layer is
  counted and every structure factor is 1: the updates pass through unchanged.
  """
  scaler = scaler_entry.constructor()
  state = jax.jit(scaler.init)(ONE_D_PARAMS)
  chex.assert_tree_all_finite(state)
  updates, state = jax.jit(scaler.update)(ONE_D_UPDATES, state, ONE_D_PARAMS)
  chex.assert_tree_all_finite((ONE_D_PARAMS, updates, state))
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, ONE_D_PARAMS)
  if scaler_entry.identity_on_1d:
    chex.assert_trees_all_equal(updates, ONE_D_UPDATES, strict=True)
  else:
    assert any(np.any(np.asarray(u) != 0) for u in jax.tree.leaves(updates))


def check_state_matches_reference(entry: Entry) -> None:
  """The state holds exactly the reference's (Adam's) leaves and bytes.

  Checked after ``init`` and after an update with the same gradients (the
  structure scaling comes after the moments, so the moments are Adam's).
  """
  if entry.reference is None:
    pytest.skip("this entry has no reference optimizer")
  opt, ref = entry.factory(), entry.reference()
  params = layered_params()
  state, ref_state = opt.init(params), ref.init(params)
  assert_same_state(state, ref_state)
  grads = layered_grads(params)
  _, state = opt.update(grads, state, params)
  _, ref_state = ref.update(grads, ref_state, params)
  assert_same_state(state, ref_state)


def check_tree_map_params(entry: Entry) -> None:
  """``optax.tree_utils.tree_map_params`` (which inits with a tree with no leaves).

  Mapping ``v -> 2 v`` over the param-shaped parts of a state (after one
  update, so they are not zero) doubles exactly those leaves and keeps the
  others; with a reference, the param-shaped leaves are the reference's.
  """
  opt = entry.factory()
  params = layered_params()
  state = opt.init(params)
  _, state = opt.update(layered_grads(params), state, params)
  mapped = optax.tree_utils.tree_map_params(opt, lambda v: 2 * v, state)
  assert jax.tree.structure(mapped) == jax.tree.structure(state)
  # transform_non_params gets each non-parameter part whole: a leaf, or a subtree where
  # the probe state has one leaf for it (factors_in_state's factors).
  kinds = jax.tree.leaves(
      optax.tree_utils.tree_map_params(
          opt,
          lambda _: "param",
          state,
          transform_non_params=lambda part: jax.tree.map(lambda _: "other", part),
      )
  )
  assert len(kinds) == len(jax.tree.leaves(state))
  for kind, new, old in zip(kinds, jax.tree.leaves(mapped), jax.tree.leaves(state), strict=False):
    expected = 2 * old if kind == "param" else old
    np.testing.assert_array_equal(new, expected)
  if entry.reference is not None:
    ref = entry.reference()
    ref_kinds = jax.tree.leaves(
        optax.tree_utils.tree_map_params(
            ref, lambda _: "param", ref.init(params), transform_non_params=lambda _: "other"
        )
    )
    assert kinds == ref_kinds
    assert kinds.count("param") > 0


def check_bare_array(entry: Entry, shape: tuple[int, ...]) -> None:
  """A bare array as params: one layer at most, so every factor is 1.

  The updates equal the reference's (Adam's) exactly over a few steps.
  """
  opt = entry.factory()
  params = jnp.linspace(-1.0, 2.0, int(np.prod(shape)), dtype=jnp.float32).reshape(shape)

  def objective(p):
    return jnp.sum((p - 0.5) ** 2)

  update = opt.update
  state = opt.init(params)
  ref = entry.reference() if entry.reference is not None else None
  ref_state = ref.init(params) if ref is not None else optax.EmptyState()
  updates: Any  # a bare array, as the params
  for _ in range(3):
    grads = jax.grad(objective)(params)
    updates, state = update(grads, state, params)
    assert updates.shape == params.shape and updates.dtype == params.dtype
    chex.assert_tree_all_finite(updates)
    if ref is not None:
      ref_updates, ref_state = ref.update(grads, ref_state, params)
      chex.assert_trees_all_equal_shapes_and_dtypes(updates, ref_updates)
      chex.assert_trees_all_equal(updates, ref_updates, strict=True)
    params = optax.apply_updates(params, updates)
    assert isinstance(params, jax.Array)  # still a bare array


def check_init_shape_dtype_struct(entry: Entry) -> None:
  """``init`` with ``jax.ShapeDtypeStruct`` leaves, via ``jax.eval_shape`` and directly."""
  opt = entry.factory()
  for params in (layered_params(), jnp.ones((3, 2)), layered_params(jnp.bfloat16)):
    concrete = opt.init(params)
    abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    chex.assert_trees_all_equal_shapes_and_dtypes(jax.eval_shape(opt.init, params), concrete)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        jax.eval_shape(opt.init, abstract_params), concrete
    )
    direct = opt.init(abstract_params)
    chex.assert_trees_all_equal_shapes_and_dtypes(direct, concrete)
    chex.assert_trees_all_equal(direct, concrete, strict=True)


def check_extra_args(entry: Entry) -> None:
  """alias_test.test_optimizers_accept_extra_args (GradientTransformationExtraArgs).

  Unknown keyword arguments to ``update`` are accepted, directly and through
  ``optax.chain``, under jit, and change nothing.
  """
  opt = entry.factory()
  params = layered_params()
  value, grads = jax.value_and_grad(_quadratic)(params)
  extra = {"value": value}
  for tx, jit in ((opt, False), (optax.chain(optax.clip_by_global_norm(1e6), opt), True)):
    state = tx.init(params)
    expected, expected_state = tx.update(grads, state, params)
    update = functools.partial(tx.update, unexpected_extra_args_your_optimizer_doesnt_expect=1)
    updates, new_state = (jax.jit(update) if jit else update)(grads, state, params, **extra)
    chex.assert_trees_all_close(updates, expected, rtol=1e-6)
    chex.assert_trees_all_close(new_state, expected_state, rtol=1e-6)
    # Two more steps, with another unknown argument.
    for _ in range(2):
      updates, state = functools.partial(tx.update, foo="bar")(grads, state, params, **extra)
      chex.assert_tree_all_finite(updates)
