"""Flax linen + TrainState: a small CNN trained with ``caadam_jax.caadam``, checkpointed with Orbax.

The usual Flax training loop: a linen CNN, ``flax.training.train_state.TrainState``
holding the parameters and the optimizer (``caadam_jax.caadam`` is a drop-in
replacement for ``optax.adam``), a jitted train step, and at the end an Orbax
checkpoint of the whole TrainState (parameters, CaAdam/Adam moments, step) that is
restored into an abstract TrainState and checked leaf by leaf and by re-evaluating
the test accuracy.

    python examples/linen_trainstate.py --data-dir ../shared/data                # MNIST, 2 epochs
    python examples/linen_trainstate.py --dataset fashion-mnist --subset 10000 --epochs 3
    python examples/linen_trainstate.py --strategy depth --ckpt-dir /tmp/ckpt
    python examples/linen_trainstate.py                                           # no data dir: digits

MNIST and Fashion-MNIST IDX files are read from ``--data-dir`` (or
``$CAADAM_JAX_DATA``, e.g. the project's ``shared/data``). Without a data directory
the example falls back to scikit-learn's bundled 8x8 digits (no download).
``--subset`` keeps only the first N training images to stay fast on a CPU.
Needs the ``examples`` extra (``orbax-checkpoint``, scikit-learn).
"""

from __future__ import annotations

import argparse
import functools
import pathlib
from typing import Literal

import _common  # examples/_common.py: helpers shared by the examples
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax.training import train_state

import caadam_jax


class CNN(nn.Module):
  """Two 3x3 conv blocks (average pooling) and a two-layer head; any square input size."""

  features: tuple[int, int] = (16, 32)
  hidden: int = 64
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    for width in self.features:
      x = nn.relu(nn.Conv(width, (3, 3))(x))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)


def make_optimizer(
    strategy: caadam_jax.StrategyName | Literal["adam"], learning_rate: float, structure=None
) -> optax.GradientTransformation:
  if strategy == "adam":
    return optax.adam(learning_rate)
  return caadam_jax.caadam(learning_rate, strategy=strategy, structure=structure)


@jax.jit
def train_step(state: train_state.TrainState, images, labels):
  def loss_fn(params):
    logits = state.apply_fn({"params": params}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


@jax.jit
def accuracy_of(state: train_state.TrainState, images, labels):
  logits = state.apply_fn({"params": state.params}, images)
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def evaluate(state, images, labels) -> float:
  return _common.batched_accuracy(functools.partial(accuracy_of, state), images, labels)


def save_and_restore(state: train_state.TrainState, ckpt_dir: pathlib.Path):
  """Saves the TrainState with Orbax; returns the path and the state restored into an abstract one."""
  import orbax.checkpoint as ocp

  path = ckpt_dir.resolve() / f"step_{int(state.step)}"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, state, force=True)  # params, optimizer moments, step
  checkpointer.wait_until_finished()
  # Restoring needs only shapes and dtypes: build the target without touching the values.
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = checkpointer.restore(path, abstract)
  checkpointer.close()
  return path, restored


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  _common.add_image_arguments(parser)  # --dataset, --data-dir, --subset, --test-subset
  # --epochs, --learning-rate, --batch-size, --seed, --ckpt-dir
  _common.add_training_arguments(parser, ckpt_dir="checkpoints/linen_trainstate")
  parser.add_argument(
      "--strategy",
      choices=[*caadam_jax.STRATEGY_NAMES, "adam"],
      default="additive",
      help="CaAdam strategy, or plain optax.adam for comparison",
  )
  args = parser.parse_args(argv)

  name, x_train, y_train, x_test, y_test = _common.load_images(
      args.dataset, args.data_dir, args.subset, args.test_subset, args.seed
  )
  model = CNN()
  variables = model.init(jax.random.key(args.seed), jnp.asarray(x_train[:1]))
  # The forward order of the layers, traced from the model (shapes only, no compute):
  # the params dict itself is sorted by name, which is not forward order in general.
  structure = caadam_jax.trace_structure(model.apply, variables, jnp.asarray(x_train[:1]))
  tx = make_optimizer(args.strategy, args.learning_rate, structure)
  state = train_state.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx)
  if args.strategy != "adam":
    caadam_jax.describe(structure, strategy=args.strategy)  # the per-layer factors CaAdam applies

  def step(x, y):
    nonlocal state  # a TrainState is immutable: train_step returns the next one
    state, loss = train_step(state, x, y)
    return loss

  losses, wall = _common.train_minibatches(
      step, x_train, y_train, seed=args.seed, batch_size=args.batch_size, epochs=args.epochs
  )
  test_accuracy = evaluate(state, x_test, y_test)
  print(
      f"{name}: {len(x_train)} training images, CNN {model.features}+{model.hidden}, "
      f"{args.strategy}, lr {args.learning_rate}: test accuracy {test_accuracy:.4f} "
      f"({wall:.1f} s training, jax {jax.__version__} on {jax.devices()[0].platform})"
  )

  path, restored = save_and_restore(state, pathlib.Path(args.ckpt_dir))
  same = _common.trees_equal(restored, state)
  restored_accuracy = evaluate(restored, x_test, y_test)
  _common.check_restored(
      "TrainState", path, int(restored.step), same, test_accuracy, restored_accuracy
  )
  # Training continues from the restored state exactly as from the original one.
  state, _ = train_step(restored, x_train[: args.batch_size], y_train[: args.batch_size])
  return {
      "dataset": name,
      "losses": losses,
      "test_accuracy": test_accuracy,
      "restored_accuracy": restored_accuracy,
      "restored_identical": same,
      "checkpoint": str(path),
      "step": int(state.step),
  }


if __name__ == "__main__":
  main()
