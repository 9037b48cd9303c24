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

import flax.serialization
import jax
import numpy as np
import optax
import pytest
from caadam_test_helpers import as_tuple
from caadam_test_helpers import create_state
from caadam_test_helpers import data
from caadam_test_helpers import make_train_step
from caadam_test_helpers import train
from flax.training import train_state

import caadam_jax

# Slow tier (in-process, run by every CI leg): Orbax writes and restores checkpoints.
pytestmark = pytest.mark.slow

ocp = pytest.importorskip(
    "orbax.checkpoint", reason="orbax-checkpoint is not installed (pip install -e '.[test]')"
)

K = 4
BATCH = 16
# One CaAdam strategy here; tests/test_multiprocess.py checkpoints every optimizer.
NAMES = ("caadam_multiplicative", "adas", "keras_caadam")


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_orbax_checkpoint_is_exact(tmp_path, name):
  x, y = data(2 * K, BATCH)

  # Uninterrupted: 2K steps, with a checkpoint written after K (saving does not
  # change the state, so this run is the uninterrupted reference).
  state = create_state(name, 0)
  init_params = state.params
  train_step = make_train_step()
  state = train(state, range(K), x, y, train_step)
  path = tmp_path / f"ckpt_{name}"
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, state)
    checkpointer.wait_until_finished()
  straight = train(state, range(K, 2 * K), x, y, train_step)
  del state, train_step

  # Restore into a state built from new objects and other initial params.
  fresh = create_state(name, 123)
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

  resumed = train(restored, range(K, 2 * K), x, y, make_train_step())

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


# ----------------------------------------------------------------------------
# A drop-in for a running Adam job: caadam's state tree is optax.adam's (optax.adamw's
# with weight decay), so a checkpoint of either restores into the other, with Orbax and
# with flax.serialization, and the restored moments are the saved ones.

_DROP_IN = {
    "adam": (lambda: optax.adam(1e-3), {}),
    "adamw": (lambda: optax.adamw(1e-3, weight_decay=1e-4), {"weight_decay": 1e-4}),
}


def _stepped(tx, params, steps=3):
  state = tx.init(params)
  for i in range(steps):
    grads = jax.tree.map(lambda p, i=i: jax.numpy.full_like(p, 0.1 * (i + 1)), params)
    _, state = tx.update(grads, state, params)
  return state


@pytest.mark.parametrize("reference", list(_DROP_IN))
@pytest.mark.parametrize("strategy", ["additive", "multiplicative", "depth"])
def test_adam_checkpoint_restores_into_caadam_and_back(tmp_path, reference, strategy):
  make_reference, kwargs = _DROP_IN[reference]
  params = {
      "Dense_0": {"kernel": np.ones((3, 8), np.float32), "bias": np.zeros(8, np.float32)},
      "Dense_1": {"kernel": np.ones((8, 2), np.float32), "bias": np.zeros(2, np.float32)},
  }
  adam = make_reference()
  caadam = caadam_jax.caadam(1e-3, strategy=strategy, **kwargs)
  assert jax.tree.structure(caadam.init(params)) == jax.tree.structure(adam.init(params))

  for source, target in ((adam, caadam), (caadam, adam)):
    saved = _stepped(source, params)
    # The moments are those of the saved run (three steps), not a fresh init.
    assert int(as_tuple(saved)[0].count) == 3
    fresh = target.init(params)

    path = tmp_path / f"{reference}_{strategy}_{id(source)}"
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(path, saved)
      checkpointer.wait_until_finished()
    with ocp.StandardCheckpointer() as checkpointer:
      restored = checkpointer.restore(path, jax.eval_shape(lambda fresh=fresh: fresh))
    assert jax.tree.structure(restored) == jax.tree.structure(fresh)
    jax.tree.map(np.testing.assert_array_equal, restored, saved)

    from_bytes = flax.serialization.from_bytes(fresh, flax.serialization.to_bytes(saved))
    assert jax.tree.structure(from_bytes) == jax.tree.structure(fresh)
    jax.tree.map(np.testing.assert_array_equal, from_bytes, saved)
    # The restored state steps on with the target optimizer.
    target.update(jax.tree.map(np.ones_like, params), restored, params)
    assert isinstance(restored[0], optax.ScaleByAdamState)
