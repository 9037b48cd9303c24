"""Flax integration: linen TrainState, NNX Optimizer, and identical factors in both."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import caadam_jax

WIDTHS = [6, 32, 16, 64, 3]


class LinenMLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    for width in WIDTHS[1:-1]:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(WIDTHS[-1])(x)


class NnxMLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.layers = nnx.List(
        [nnx.Linear(a, b, rngs=rngs) for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=False)]
    )

  def __call__(self, x):
    for layer in self.layers[:-1]:
      x = nnx.relu(layer(x))
    return self.layers[-1](x)


def regression_data():
  x = jax.random.normal(jax.random.key(1), (64, WIDTHS[0]))
  w = jax.random.normal(jax.random.key(2), (WIDTHS[0], WIDTHS[-1]))
  return x, jnp.tanh(x @ w)


def linen_state(strategy):
  params = LinenMLP().init(jax.random.key(0), jnp.ones((1, WIDTHS[0])))["params"]
  return train_state.TrainState.create(
      apply_fn=LinenMLP().apply, params=params, tx=caadam_jax.caadam(1e-2, strategy=strategy)
  )


@jax.jit
def linen_step(state, x, y):
  def loss_fn(params):
    return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


@pytest.mark.slow  # trains a Flax model
@pytest.mark.parametrize("strategy", ["additive", "multiplicative", "depth"])
def test_linen_trainstate_trains(strategy):
  state = linen_state(strategy)
  x, y = regression_data()
  losses = []
  for _ in range(60):
    state, loss = linen_step(state, x, y)
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.3 * losses[0]


@pytest.mark.slow  # trains a Flax model
@pytest.mark.parametrize("with_structure", [False, True])
def test_nnx_optimizer_trains(with_structure):
  model = NnxMLP(nnx.Rngs(0))
  structure = caadam_jax.infer_structure(nnx.state(model, nnx.Param)) if with_structure else None
  optimizer = nnx.Optimizer(
      model, caadam_jax.caadam(1e-2, structure=structure, strategy="additive"), wrt=nnx.Param
  )
  x, y = regression_data()

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(60)]
  assert losses[-1] < 0.3 * losses[0]


@pytest.mark.slow  # trains two Flax models
def test_linen_and_nnx_give_identical_factors_and_steps():
  linen_params = LinenMLP().init(jax.random.key(0), jnp.ones((1, WIDTHS[0])))["params"]
  model = NnxMLP(nnx.Rngs(0))
  # Same weights in both frameworks.
  for i, layer in enumerate(model.layers):
    assert layer.bias is not None
    layer.kernel[...] = linen_params[f"Dense_{i}"]["kernel"]
    layer.bias[...] = linen_params[f"Dense_{i}"]["bias"]

  for strategy in ("additive", "multiplicative", "depth"):
    linen_factors = caadam_jax.infer_structure(linen_params).factors(strategy)
    nnx_factors = caadam_jax.infer_structure(nnx.state(model, nnx.Param)).factors(strategy)
    for i in range(len(WIDTHS) - 1):
      for name in ("kernel", "bias"):
        assert linen_factors[(f"Dense_{i}", name)] == nnx_factors[("layers", i, name)]
    assert len(set(linen_factors.values())) > 1

  # One optimizer step in each framework, from the same gradients, lands on the same weights.
  x, y = regression_data()
  tx = caadam_jax.caadam(1e-2, strategy="multiplicative")
  grads = jax.grad(lambda p: jnp.mean((jnp.asarray(LinenMLP().apply({"params": p}, x)) - y) ** 2))(
      linen_params
  )
  updates, _ = tx.update(grads, tx.init(linen_params), linen_params)
  linen_new: Any = optax.apply_updates(linen_params, updates)  # the params dict
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  optimizer.update(model, nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model))
  for i, layer in enumerate(model.layers):
    assert layer.bias is not None
    np.testing.assert_allclose(layer.kernel[...], linen_new[f"Dense_{i}"]["kernel"], atol=1e-6)
    np.testing.assert_allclose(layer.bias[...], linen_new[f"Dense_{i}"]["bias"], atol=1e-6)


def test_nnx_sequential_skips_parameterless_indices():
  model = nnx.Sequential(
      nnx.Linear(4, 8, rngs=nnx.Rngs(0)),
      nnx.relu,
      nnx.Linear(8, 16, rngs=nnx.Rngs(1)),
      nnx.relu,
      nnx.Linear(16, 2, rngs=nnx.Rngs(2)),
  )
  structure = caadam_jax.infer_structure(nnx.state(model, nnx.Param))
  depths = {layer: record.depth for layer, record in structure.layers.items()}
  assert depths == {("layers", 0): 0, ("layers", 2): 1, ("layers", 4): 2}
  assert structure.statistics is not None
  assert structure.statistics.c_med == 32.0
