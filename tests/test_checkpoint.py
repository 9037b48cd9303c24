"""Checkpoint and resume with Orbax: a resumed run equals an uninterrupted one exactly.

A linen MLP is trained with ``flax.training.train_state.TrainState`` for K
steps (with ``caadam``, ``adas`` and ``keras_caadam``), saved with Orbax,
restored into a state built from NEW objects (a new model, a new optimizer
from the same arguments, a new ``TrainState.create`` from other initial
params, whose ``jax.eval_shape`` is the abstract restore target), and
trained K more steps. The params must be bitwise equal to 2K uninterrupted
steps. The CaAdam structure transforms are stateless, so nothing
about the structure is (or needs to be) stored: it is recomputed from the
params' paths and shapes at trace time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax.training import train_state

import caadam_jax

ocp = pytest.importorskip(
    "orbax.checkpoint", reason="orbax-checkpoint is not installed (pip install -e '.[test]')"
)

K = 4
BATCH = 16


class MLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(32)(x))
    x = nn.relu(nn.Dense(16)(x))
    return nn.Dense(1)(x)


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2 * K, BATCH, 8)).astype(np.float32)
  y = rng.normal(size=(2 * K, BATCH, 1)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def _optimizers():
  return {
      "caadam": lambda: caadam_jax.caadam(1e-2, strategy="multiplicative"),
      "adas": caadam_jax.adas,
      "keras_caadam": lambda: caadam_jax.keras_caadam(1e-2),
  }


OPTIMIZERS = _optimizers()


def _create_state(make_tx, seed):
  """A new model, a new optimizer and a new TrainState (nothing shared)."""
  model = MLP()
  params = model.init(jax.random.key(seed), jnp.ones((1, 8)))["params"]
  return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=make_tx())


def _make_train_step():
  @jax.jit
  def train_step(state, x, y):
    def loss_fn(params):
      return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)

    grads = jax.grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads)

  return train_step


def _train(state, steps, x, y, train_step):
  for i in steps:
    state = train_step(state, x[i], y[i])
  return state


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_from_orbax_checkpoint_is_exact(tmp_path, name):
  make_tx = OPTIMIZERS[name]
  x, y = _data()

  # Uninterrupted: 2K steps, with a checkpoint written after K (saving does not
  # change the state, so this run is the uninterrupted reference).
  state = _create_state(make_tx, 0)
  init_params = state.params
  train_step = _make_train_step()
  state = _train(state, range(K), x, y, train_step)
  path = tmp_path / f"ckpt_{name}"
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, state)
    checkpointer.wait_until_finished()
  straight = _train(state, range(K, 2 * K), x, y, train_step)
  del state, train_step

  # Restore into a state built from new objects and other initial params.
  fresh = _create_state(make_tx, 123)
  abstract = jax.eval_shape(lambda: fresh)
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(path, abstract)
  assert isinstance(restored, train_state.TrainState)
  assert int(restored.step) == K
  assert jax.tree.structure(restored.opt_state) == jax.tree.structure(fresh.opt_state)
  for a, b in zip(
      jax.tree.leaves(restored.opt_state), jax.tree.leaves(fresh.opt_state), strict=False
  ):
    assert a.shape == b.shape and a.dtype == b.dtype

  resumed = _train(restored, range(K, 2 * K), x, y, _make_train_step())

  assert int(resumed.step) == int(straight.step) == 2 * K
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params), strict=False):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(
      jax.tree.leaves(resumed.opt_state), jax.tree.leaves(straight.opt_state), strict=False
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The run actually moved away from the initial params.
  assert any(
      not np.array_equal(np.asarray(a), np.asarray(b))
      for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(init_params), strict=False)
  )
