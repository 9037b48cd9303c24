"""factors_in_state: the same updates as the default, the factors as entry operands of the step.

The oracle is the default transform (an ``optax.adam`` state, factors through one
``lax.cond``), whose factors the rest of the suite checks against formulas by hand:
held in the state, every update must be the same up to float32 rounding (XLA may fuse
the two programs differently, one ulp apart).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import caadam_jax


def held(tx, params) -> caadam_jax.FactorsInStateState:
  """``tx.init(params)`` for a factors_in_state optimizer, typed as its state."""
  state = tx.init(params)
  assert isinstance(state, caadam_jax.FactorsInStateState)
  return state


def assert_close(actual, desired):
  np.testing.assert_allclose(actual, desired, rtol=1e-6, atol=1e-9)


WIDTHS = (3, 16, 8, 4, 1)


def mlp_params(widths=WIDTHS, dtype=jnp.float32):
  keys = jax.random.split(jax.random.key(0), len(widths) - 1)
  return {
      f"Dense_{i}": {
          "kernel": jax.random.normal(k, (a, b), dtype),
          "bias": jnp.full((b,), 0.1 * (i + 1), dtype),
      }
      for i, (k, a, b) in enumerate(zip(keys, widths[:-1], widths[1:], strict=True))
  }


def fan_in_depth(record, stats, g):
  del stats, g
  return 1.0 / math.sqrt(math.prod(record.shapes[0][:-1]) * (1 + record.depth))


def grads_at(params, step):
  return jax.tree.map(lambda p: jnp.cos(p * (step + 1)) + 0.01 * step, params)


OPTIMIZERS = {
    "additive": lambda **kw: caadam_jax.caadam(1e-2, strategy="additive", **kw),
    "multiplicative": lambda **kw: caadam_jax.caadam(1e-2, strategy="multiplicative", **kw),
    "depth": lambda **kw: caadam_jax.caadam(1e-2, strategy="depth", **kw),
    "formula": lambda **kw: caadam_jax.caadam(1e-2, strategy=fan_in_depth, **kw),
    "adamw-decay": lambda **kw: caadam_jax.caadam(1e-2, strategy="depth", weight_decay=1e-3, **kw),
    "layer-decay": lambda **kw: caadam_jax.adamw_layer_decay(1e-2, 0.8, **kw),
}


def run(tx, params, steps=4) -> tuple[list[Any], Any]:
  state: Any = tx.init(params)
  update = jax.jit(tx.update)
  trajectory = []
  for step in range(steps):
    updates, state = update(grads_at(params, step), state, params)
    params = optax.apply_updates(params, updates)
    trajectory.append(updates)
  return trajectory, state


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_updates_are_the_defaults(name):
  params = mlp_params()
  make = OPTIMIZERS[name]
  expected, plain_state = run(make(), params)
  got, held_state = run(make(factors_in_state=True), params)
  for e, g in zip(expected, got, strict=True):
    jax.tree.map(assert_close, g, e)
  # The wrapped state is the default's (optax.adam's or optax.adamw's), step for step.
  jax.tree.map(assert_close, held_state.inner_state, plain_state)


def test_state_holds_the_distinct_factors_sorted():
  params = mlp_params()
  structure = caadam_jax.infer_structure(params)
  by_path = structure.factors(fan_in_depth, None)
  # Each layer's fan-in and depth differ here, so every layer has its own factor.
  expected = sorted({float(np.float32(f)) for f in by_path.values() if f != 1.0})
  state = caadam_jax.caadam(1e-3, strategy=fan_in_depth, factors_in_state=True).init(params)
  assert isinstance(state, caadam_jax.FactorsInStateState)
  assert len(state.factors) == 1
  assert [float(f) for f in state.factors[0]] == expected
  assert all(f.shape == () and f.dtype == jnp.float32 for f in state.factors[0])
  assert len(expected) == len(WIDTHS) - 1


def test_factors_are_entry_operands_not_a_cond():
  # Deep enough that the default hands its factors over through the cond (literals
  # would make more than MAX_KERNELS_FROM_LITERALS kernels distinct); equal layers, so
  # the natural path order is declared to be the forward order.
  params = mlp_params((3,) + (4,) * 14)
  structure = caadam_jax.infer_structure(params)
  grads = grads_at(params, 0)

  def hlo(tx):
    return jax.jit(tx.update).lower(grads, tx.init(params), params).as_text()

  plain = hlo(caadam_jax.caadam(1e-3, strategy="depth", structure=structure))
  held = hlo(caadam_jax.caadam(1e-3, strategy="depth", structure=structure, factors_in_state=True))
  assert "stablehlo.case" in plain or "stablehlo.if" in plain
  assert "stablehlo.case" not in held and "stablehlo.if" not in held


def test_an_adam_checkpoint_restores_into_it():
  params = mlp_params()
  adam = optax.adam(1e-2)
  adam_state = adam.init(params)
  for step in range(3):  # a trained optax.adam state, as a checkpoint would hold
    _, adam_state = adam.update(grads_at(params, step), adam_state, params)
  leaves, treedef = jax.tree.flatten(adam_state)
  restored_adam = jax.tree.unflatten(treedef, [np.asarray(x) for x in leaves])

  plain = caadam_jax.caadam(1e-2, strategy="depth")
  tx = caadam_jax.caadam(1e-2, strategy="depth", factors_in_state=True)
  state = held(tx, params)._replace(inner_state=restored_adam)
  grads = grads_at(params, 3)
  got, new_state = jax.jit(tx.update)(grads, state, params)
  expected, expected_state = plain.update(grads, adam_state, params)
  jax.tree.map(assert_close, got, expected)
  assert jax.tree.structure(new_state.inner_state) == jax.tree.structure(expected_state)
  # ... and back: the inner state is an optax.adam state.
  optax.adam(1e-2).update(grads, new_state.inner_state, params)


def test_two_scaling_transforms_hold_one_tuple_each():
  params = mlp_params()
  inner = optax.chain(
      optax.scale_by_adam(),
      caadam_jax.scale_by_strategy("depth"),
      caadam_jax.scale_by_layer_decay(0.5),
  )
  tx = caadam_jax.factors_in_state(inner)
  state = held(tx, params)
  assert len(state.factors) == 2
  got, _ = jax.jit(tx.update)(grads_at(params, 0), state, params)
  expected, _ = inner.update(grads_at(params, 0), inner.init(params), params)
  jax.tree.map(assert_close, got, expected)


def test_a_state_for_another_tree_is_refused():
  tx = caadam_jax.caadam(1e-3, strategy="depth", factors_in_state=True)
  small = mlp_params((3, 4, 1))  # two layers: one factor other than 1
  big = mlp_params()
  state = held(tx, small)
  assert len(state.factors[0]) == 1
  mixed = held(tx, big)._replace(factors=state.factors)
  with pytest.raises(ValueError, match="distinct factors.*built for another optimizer"):
    tx.update(grads_at(big, 0), mixed, big)


def test_a_state_for_another_optimizer_is_refused():
  params = mlp_params()
  one = caadam_jax.caadam(1e-3, strategy="depth", factors_in_state=True)
  two = caadam_jax.factors_in_state(
      optax.chain(optax.scale_by_adam(), caadam_jax.scale_by_depth(), caadam_jax.scale_by_depth())
  )
  with pytest.raises(ValueError, match="runs more"):
    two.update(grads_at(params, 0), held(two, params)._replace(factors=held(one, params).factors))
  with pytest.raises(ValueError, match="the update ran 1"):
    one.update(
        grads_at(params, 0),
        held(one, params)._replace(factors=held(two, params).factors),
        params,
    )


def test_injected_scaling_factor_keeps_its_factors_in_the_step():
  params = mlp_params()
  injected = optax.inject_hyperparams(caadam_jax.caadam)(
      1e-2, strategy="multiplicative", scaling_factor=3.0, factors_in_state=True
  )
  state: Any = injected.init(params)  # an inject_hyperparams state
  # The factors depend on the injected (traced) g: none is concrete, none is held.
  assert state.inner_state.factors == ((),)
  plain = optax.inject_hyperparams(caadam_jax.caadam)(
      1e-2, strategy="multiplicative", scaling_factor=3.0
  )
  got, _ = jax.jit(injected.update)(grads_at(params, 0), state, params)
  expected, _ = jax.jit(plain.update)(grads_at(params, 0), plain.init(params), params)
  jax.tree.map(assert_close, got, expected)


def test_init_under_jit_and_eager_update():
  params = mlp_params()
  tx = caadam_jax.caadam(1e-2, strategy="depth", factors_in_state=True)
  state = jax.jit(tx.init)(params)
  got, _ = tx.update(grads_at(params, 0), state, params)  # eager: no compiled step
  plain = caadam_jax.caadam(1e-2, strategy="depth")
  expected, _ = plain.update(grads_at(params, 0), plain.init(params), params)
  jax.tree.map(assert_close, got, expected)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_factors_in_state_must_be_a_bool(bad):
  with pytest.raises(TypeError, match="factors_in_state must be a bool"):
    caadam_jax.caadam(1e-3, strategy="depth", factors_in_state=bad)
  with pytest.raises(TypeError, match="factors_in_state must be a bool"):
    caadam_jax.adamw_layer_decay(1e-3, factors_in_state=bad)


def test_an_update_that_needs_extra_arguments_is_explained():
  def needs_value(updates, state, params=None, *, value):
    del value
    return updates, state

  inner = optax.GradientTransformationExtraArgs(
      lambda params: optax.EmptyState(),
      needs_value,  # pyright: ignore[reportArgumentType]  (the point: it needs value=)
  )
  with pytest.raises(TypeError, match="init traces one update with params alone"):
    caadam_jax.factors_in_state(inner).init(mlp_params())
