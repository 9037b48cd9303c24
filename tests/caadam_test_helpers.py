"""Helpers shared by the test modules: parameter trees, state comparisons, a training setup.

* :func:`mlp_params`: Dense-layer params of given widths (the factor and transform tests).
* :func:`nbytes` and :func:`assert_same_state`: an optimizer state holds exactly the
  reference's (Adam's) leaves and bytes.
* :func:`as_dict` and :func:`as_tuple`: an update or state, checked to be the container it
  is, typed as that for pyright.
* A tiny linen model, its data, every optimizer of the library and a training step:
  ``test_checkpoint.py`` (Orbax save and resume), ``test_multiprocess.py`` (several JAX
  processes) and the child processes they start use these, so that every test trains the
  same model the same way. ``max_abs_diff`` is the one comparison of two trees of arrays
  (``test_multidevice.py``'s child process uses it too).

pytest finds this module through ``pythonpath`` in ``pyproject.toml``; a test file run as
a script (the multi-process workers) finds it beside itself.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state

import caadam_jax

# ----------------------------------------------------------------------------
# Parameter trees and states.


def mlp_params(widths: Sequence[int], *, seed: int | None = None, use_bias: bool = True) -> dict:
  """Dense layers ``Dense_{i}: {"kernel": (a, b), "bias": (b,)}`` for consecutive widths.

  Factors depend on shapes only: by default kernels are ones and biases zeros. With a
  ``seed``, kernels are standard normal and layer ``i``'s bias is ``0.1 * i`` (values
  for tests that train or compare against Adam).
  """
  keys = jax.random.split(jax.random.key(0 if seed is None else seed), len(widths))
  params = {}
  for i, (a, b) in enumerate(itertools.pairwise(widths)):
    if seed is None:
      layer = {"kernel": jnp.ones((a, b)), "bias": jnp.zeros((b,))}
    else:
      layer = {"kernel": jax.random.normal(keys[i], (a, b)), "bias": jnp.full((b,), 0.1 * i)}
    if not use_bias:
      del layer["bias"]
    params[f"Dense_{i}"] = layer
  return params


def nbytes(tree) -> int:
  """The bytes of a tree's leaves (arrays or ``jax.ShapeDtypeStruct``)."""
  return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def assert_same_state(state, reference_state) -> None:
  """``state`` holds exactly the reference's leaves: shapes, dtypes, values and bytes.

  The tree structures may differ (CaAdam's chain adds empty states); the leaves may not.
  """
  assert nbytes(state) == nbytes(reference_state) > 0, (nbytes(state), nbytes(reference_state))
  leaves, reference_leaves = jax.tree.leaves(state), jax.tree.leaves(reference_state)
  chex.assert_trees_all_equal_shapes_and_dtypes(leaves, reference_leaves)
  chex.assert_trees_all_equal(leaves, reference_leaves, strict=True)


# Optax types updates and states as any ``ArrayTree`` (an array, an iterable or a mapping),
# so a type checker refuses ``updates["Dense_0"]`` or ``state[0]``: these check at run time
# which container a tree is and return it typed as that.


def as_dict(tree: object) -> dict[Any, Any]:
  """``tree``, checked to be a dict (updates, or a state field, of a dict of params)."""
  assert isinstance(tree, dict), type(tree)
  return tree


def as_tuple(tree: object) -> tuple[Any, ...]:
  """``tree``, checked to be a tuple (the state of an ``optax.chain``)."""
  assert isinstance(tree, tuple), type(tree)
  return tree


# ----------------------------------------------------------------------------
# A training setup.

IN_FEATURES = 8


class MLP(nn.Module):
  """``8 -> 32 -> 16 -> 1`` with ReLU: kernels of 256, 512 and 16 connections.

  Not ``benchmarks.model_zoo.LinenMLP`` (``4 -> 8 -> 8 -> 2``): the multi-process tests
  need widths that 2 and 4 devices divide, with one 1-unit output that no device count
  divides (its replicated bias is part of the held-fraction bound there), and
  docs/multihost.md reports figures of this model.
  """

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
    **{
        f"caadam_{strategy}": functools.partial(caadam_jax.caadam, 1e-2, strategy=strategy)
        for strategy in caadam_jax.STRATEGY_NAMES
    },
    "keras_caadam": functools.partial(caadam_jax.published.keras_caadam, 1e-2),
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
