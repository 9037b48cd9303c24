"""A tiny linen model, its data, optimizers and training step, shared by the training tests.

``test_checkpoint.py`` (Orbax save and resume), ``test_multiprocess.py`` (several JAX
processes) and the child processes they start use these, so that every test trains the
same model the same way. ``max_abs_diff`` is the one comparison of two trees of arrays
(``test_multidevice.py`` uses it too).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state

import caadam_jax

IN_FEATURES = 8


class MLP(nn.Module):
  """``8 -> 32 -> 16 -> 1`` with ReLU: kernels of 256, 512 and 16 connections."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(32)(x))
    x = nn.relu(nn.Dense(16)(x))
    return nn.Dense(1)(x)


def data(steps: int, batch: int, seed: int = 0):
  """``steps`` batches of ``batch`` rows: float32 numpy ``x (steps, batch, 8)``, ``y (steps, batch, 1)``."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(steps, batch, IN_FEATURES)).astype(np.float32)
  y = rng.normal(size=(steps, batch, 1)).astype(np.float32)
  return x, y


# Every optimizer of the library, with a learning rate at which a few steps move the params.
OPTIMIZERS = {
    "caadam_additive": lambda: caadam_jax.caadam(1e-2, strategy="additive"),
    "caadam_multiplicative": lambda: caadam_jax.caadam(1e-2, strategy="multiplicative"),
    "caadam_depth": lambda: caadam_jax.caadam(1e-2, strategy="depth"),
    "keras_caadam": lambda: caadam_jax.keras_caadam(1e-2),
    "adas": caadam_jax.adas,
}


def init_params(seed: int = 0):
  """The MLP's params (a fresh model each call)."""
  return MLP().init(jax.random.key(seed), jnp.ones((1, IN_FEATURES)))["params"]


def create_state(
    name: str, seed: int = 0, params=None, tx: optax.GradientTransformation | None = None
) -> train_state.TrainState:
  """A new model, optimizer ``OPTIMIZERS[name]()`` (unless ``tx`` is given) and TrainState.

  Pass one ``tx`` to calls whose results must have the same tree structure (the optimizer
  is a static field of the state), e.g. ``jax.eval_shape`` and a jitted creation.
  """
  if params is None:
    params = init_params(seed)
  if tx is None:
    tx = OPTIMIZERS[name]()
  return train_state.TrainState.create(apply_fn=MLP().apply, params=params, tx=tx)


def make_train_step():
  """A new jitted ``train_step(state, x, y)``: one mean-squared-error gradient step."""

  @jax.jit
  def train_step(state, x, y):
    def loss_fn(params):
      return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)

    grads = jax.grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads)

  return train_step


def train(state, steps, x, y, train_step):
  """``train_step`` on the batches ``x[i], y[i]`` for ``i`` in ``steps``."""
  for i in steps:
    state = train_step(state, x[i], y[i])
  return state


def max_abs_diff(a, b) -> float:
  """The largest absolute elementwise difference between two trees of the same structure."""
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  return max(
      float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
      for u, v in zip(leaves_a, leaves_b, strict=True)
  )
