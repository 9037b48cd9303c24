"""Flax NNX + nnx.Optimizer: a small CNN trained with ``caadam_jax.caadam``, checkpointed with Orbax.

The NNX counterpart of ``linen_trainstate.py``: an ``nnx.Module`` CNN,
``nnx.Optimizer(model, caadam_jax.caadam(...), wrt=nnx.Param)``, an ``nnx.jit``
train step, and at the end an Orbax checkpoint of the NNX state (model parameters
and optimizer state) restored into an abstract model built with ``nnx.eval_shape``,
checked leaf by leaf and by re-evaluating the test accuracy.

    python examples/nnx_optimizer.py --data-dir ../shared/data                   # MNIST, 2 epochs
    python examples/nnx_optimizer.py --dataset fashion-mnist --subset 10000 --epochs 3
    python examples/nnx_optimizer.py --strategy multiplicative --ckpt-dir /tmp/ckpt
    python examples/nnx_optimizer.py                                              # no data dir: digits

MNIST and Fashion-MNIST IDX files are read from ``--data-dir`` (or
``$CAADAM_JAX_DATA``). Without a data directory the example falls back to
scikit-learn's bundled 8x8 digits (no download). ``--subset`` keeps only the first N
training images. Needs the ``examples`` extra (``orbax-checkpoint``, scikit-learn).
"""

from __future__ import annotations

import argparse
import functools
import pathlib

import _common  # examples/_common.py: helpers shared by the examples
import jax
import jax.numpy as jnp
import optax
from flax import nnx

import caadam_jax


class CNN(nnx.Module):
  """Two 3x3 conv blocks (average pooling) and a two-layer head, for ``size x size`` images."""

  def __init__(self, size: int, *, rngs: nnx.Rngs, features=(16, 32), hidden=64, num_classes=10):
    self.convs = nnx.List(
        [
            nnx.Conv(c_in, c_out, (3, 3), rngs=rngs)
            for c_in, c_out in zip((1, *features[:-1]), features, strict=False)
        ]
    )
    flat = (size // 2 ** len(features)) ** 2 * features[-1]
    self.hidden = nnx.Linear(flat, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    for conv in self.convs:
      x = nnx.avg_pool(nnx.relu(conv(x)), (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    return self.head(nnx.relu(self.hidden(x)))


def loss_fn(model: CNN, images, labels):
  logits = model(images)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, images, labels):
  loss, grads = nnx.value_and_grad(loss_fn)(model, images, labels)
  optimizer.update(model, grads)  # in place: model parameters and optimizer state
  return loss


@nnx.jit
def accuracy_of(model: CNN, images, labels):
  return jnp.mean(jnp.argmax(model(images), -1) == labels)


def evaluate(model, images, labels) -> float:
  return _common.batched_accuracy(functools.partial(accuracy_of, model), images, labels)


def save_and_restore(model, optimizer, make_model, make_tx, ckpt_dir: pathlib.Path):
  """Saves model and optimizer state with Orbax; restores them into fresh abstract objects."""
  import orbax.checkpoint as ocp

  path = ckpt_dir.resolve() / f"step_{int(optimizer.step[...])}"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(
      path, {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}, force=True
  )
  checkpointer.wait_until_finished()

  # Abstract model and optimizer (shapes only), then restore into their states and merge.
  def fresh():
    new_model = make_model()
    return new_model, nnx.Optimizer(new_model, make_tx(), wrt=nnx.Param)

  abstract_model, abstract_optimizer = nnx.eval_shape(fresh)
  model_def, model_state = nnx.split(abstract_model)
  optimizer_def, optimizer_state = nnx.split(abstract_optimizer)
  restored = checkpointer.restore(path, {"model": model_state, "optimizer": optimizer_state})
  checkpointer.close()
  new_model = nnx.merge(model_def, restored["model"])
  new_optimizer = nnx.merge(optimizer_def, restored["optimizer"])
  return path, new_model, new_optimizer


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  _common.add_image_arguments(parser)  # --dataset, --data-dir, --subset, --test-subset
  # --epochs, --learning-rate, --batch-size, --seed, --ckpt-dir
  _common.add_training_arguments(parser, ckpt_dir="checkpoints/nnx_optimizer")
  parser.add_argument("--strategy", choices=caadam_jax.STRATEGY_NAMES, default="additive")
  args = parser.parse_args(argv)

  name, x_train, y_train, x_test, y_test = _common.load_images(
      args.dataset, args.data_dir, args.subset, args.test_subset, args.seed
  )
  size = x_train.shape[1]

  def make_model():
    return CNN(size, rngs=nnx.Rngs(args.seed))

  model = make_model()
  # NNX modules trace directly: the structure holds the forward order of the layers.
  structure = caadam_jax.trace_structure(model, jnp.asarray(x_train[:1]))

  def make_tx():
    return caadam_jax.caadam(args.learning_rate, strategy=args.strategy, structure=structure)

  optimizer = nnx.Optimizer(model, make_tx(), wrt=nnx.Param)
  caadam_jax.describe(structure, strategy=args.strategy)

  losses, wall = _common.train_minibatches(
      lambda x, y: train_step(model, optimizer, x, y),
      x_train,
      y_train,
      seed=args.seed,
      batch_size=args.batch_size,
      epochs=args.epochs,
  )
  test_accuracy = evaluate(model, x_test, y_test)
  print(
      f"{name}: {len(x_train)} training images, nnx CNN, caadam {args.strategy}, lr {args.learning_rate}: "
      f"test accuracy {test_accuracy:.4f} ({wall:.1f} s training, jax {jax.__version__} on "
      f"{jax.devices()[0].platform})"
  )

  path, new_model, new_optimizer = save_and_restore(
      model, optimizer, make_model, make_tx, pathlib.Path(args.ckpt_dir)
  )
  same = all(
      _common.trees_equal(nnx.state(new), nnx.state(old))
      for new, old in ((new_model, model), (new_optimizer, optimizer))
  )
  restored_accuracy = evaluate(new_model, x_test, y_test)
  step = int(new_optimizer.step[...])
  _common.check_restored("model and optimizer", path, step, same, test_accuracy, restored_accuracy)
  # Training continues from the restored objects.
  train_step(new_model, new_optimizer, x_train[: args.batch_size], y_train[: args.batch_size])
  return {
      "dataset": name,
      "losses": losses,
      "test_accuracy": test_accuracy,
      "restored_accuracy": restored_accuracy,
      "restored_identical": same,
      "checkpoint": str(path),
      "step": int(new_optimizer.step[...]),
  }


if __name__ == "__main__":
  main()
