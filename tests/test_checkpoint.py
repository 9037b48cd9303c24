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
import numpy as np
import pytest
from caadam_test_helpers import create_state
from caadam_test_helpers import data
from caadam_test_helpers import make_train_step
from caadam_test_helpers import train
from flax.training import train_state

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
