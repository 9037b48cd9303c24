"""Shared helpers of the examples: data splits, options, the minibatch loops, evaluation.

The dataset files themselves are read by ``data_files.py`` beside it (shared with the
benchmarks).

Plumbing only: each example keeps its model, its optimizers and its ``caadam_jax``
and Optax calls; what several of them would otherwise each write again lives here,
once. The examples import it as ``_common`` (``examples/`` is on ``sys.path`` both
when an example runs as ``python examples/<name>.py`` and in the tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cli_types  # examples/cli_types.py: checked argparse types
import data_files  # examples/data_files.py: the offline dataset loaders
import jax
import jax.numpy as jnp
import numpy as np
import optax

# Data.


def digits_split(seed: int = 0):
  """scikit-learn's bundled 8x8 digits (no download), split 75/25 stratified by class.

  Returns numpy ``(x_train, y_train, x_test, y_test)``: float32 pixels in [0, 1]
  flattened to 64 features, int32 labels. ``seed`` is the split's ``random_state``.
  """
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  x_train, x_test, y_train, y_test = train_test_split(
      x, y.astype(np.int32), test_size=0.25, random_state=seed, stratify=y
  )
  return x_train, y_train, x_test, y_test


def load_images(
    dataset: str, data_dir: str | None, subset: int | None, test_subset: int | None, seed: int = 0
):
  """MNIST or Fashion-MNIST IDX files, or the digits when asked for or when there is no data directory.

  Returns ``(name, x_train, y_train, x_test, y_test)`` with images as ``(n, h, w, 1)``
  float32; ``name`` is the dataset actually loaded. ``subset`` and ``test_subset``
  keep only the first N training and test images.
  """
  if dataset != "digits" and data_files.data_dir(data_dir) is None:
    print(
        f"no --data-dir and ${data_files.DATA_ENV_VAR} unset: falling back to scikit-learn digits (8x8)"
    )
    dataset = "digits"
  if dataset == "digits":
    x_train, y_train, x_test, y_test = digits_split(seed)
    x_train, x_test = np.reshape(x_train, (-1, 8, 8)), np.reshape(x_test, (-1, 8, 8))
  else:
    x_train, y_train, x_test, y_test = data_files.load_mnist(data_dir, variant=dataset)
  if subset is not None:
    x_train, y_train = x_train[:subset], y_train[:subset]
  if test_subset is not None:
    x_test, y_test = x_test[:test_subset], y_test[:test_subset]
  return dataset, x_train[..., None], y_train, x_test[..., None], y_test


def add_training_arguments(parser, ckpt_dir: str) -> None:
  """--epochs, --learning-rate, --batch-size, --seed, and --ckpt-dir (default ``ckpt_dir``)."""
  parser.add_argument("--epochs", type=cli_types.positive_int, default=2)
  parser.add_argument("--learning-rate", type=cli_types.positive_float, default=1e-3)
  parser.add_argument("--batch-size", type=cli_types.positive_int, default=64)
  parser.add_argument("--seed", type=cli_types.non_negative_int, default=0)
  parser.add_argument(
      "--ckpt-dir", default=ckpt_dir, help="Orbax checkpoint directory (overwritten)"
  )


def add_image_arguments(parser) -> None:
  """The command-line options of ``load_images``: --dataset, --data-dir, --subset, --test-subset."""
  parser.add_argument("--dataset", choices=["mnist", "fashion-mnist", "digits"], default="mnist")
  parser.add_argument(
      "--data-dir",
      default=None,
      help=f"directory with mnist/ and fashion-mnist/ IDX files (default ${data_files.DATA_ENV_VAR}; "
      "without one: scikit-learn digits)",
  )
  parser.add_argument(
      "--subset",
      type=cli_types.positive_int,
      default=None,
      help="number of training images (default all)",
  )
  parser.add_argument(
      "--test-subset",
      type=cli_types.positive_int,
      default=None,
      help="number of test images (default all)",
  )


# Training.


def train_epochs(
    tx: optax.GradientTransformation,
    params,
    loss_fn,
    x_train,
    y_train,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    on_epoch: Callable[[float], None] | None = None,
):
  """Minibatch training with one jitted ``lax.scan`` over the batches per epoch.

  ``loss_fn(params, x, y)`` is the mean loss of a batch. Each epoch shuffles the
  training set with a key split from ``jax.random.key(seed)`` and drops the last
  incomplete batch; ``on_epoch(loss)``, if given, is called after each epoch with
  its mean training loss. Returns ``(params, opt_state, losses)``: the final
  parameters and optimizer state and the per-epoch mean losses (floats).
  """
  steps = len(x_train) // batch_size

  @jax.jit
  def epoch(params, opt_state, key):
    order = jax.random.permutation(key, len(x_train))[: steps * batch_size]
    batches = (
        x_train[order].reshape(steps, batch_size, -1),
        y_train[order].reshape(steps, batch_size),
    )

    def step(carry, batch):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
    return params, opt_state, losses.mean()

  opt_state = tx.init(params)
  key = jax.random.key(seed)
  losses = []
  for _ in range(epochs):
    key, sub = jax.random.split(key)
    params, opt_state, loss = epoch(params, opt_state, sub)
    losses.append(float(loss))
    if on_epoch is not None:
      on_epoch(losses[-1])
  return params, opt_state, losses


def train_classifier(
    tx: optax.GradientTransformation,
    params,
    model,
    data,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    on_epoch: Callable[[float], None] | None = None,
):
  """``train_epochs`` of a linen classifier on ``data = (x_train, y_train, x_test, y_test)``.

  Softmax cross-entropy on integer labels. Returns ``(losses, test accuracy, opt_state)``.
  """
  x_train, y_train, x_test, y_test = data

  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  params, opt_state, losses = train_epochs(
      tx, params, loss_fn, x_train, y_train, epochs, batch_size, seed, on_epoch
  )
  logits = model.apply({"params": params}, x_test)
  accuracy = float((jnp.argmax(logits, -1) == y_test).mean())
  return losses, accuracy, opt_state


def shuffled_epochs(seed: int, n: int, batch_size: int, epochs: int):
  """Yields, for each of ``epochs`` epochs, the minibatch indices ``(n // batch_size, batch_size)``.

  Each is a permutation of ``range(n)`` drawn from one ``np.random.default_rng(seed)``,
  the last incomplete batch dropped.
  """
  rng = np.random.default_rng(seed)
  steps = n // batch_size
  for _ in range(epochs):
    yield rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)


def train_minibatches(step: Callable, x_train, y_train, *, seed: int, batch_size: int, epochs: int):
  """Calls ``step(x, y) -> loss`` on every minibatch of ``shuffled_epochs``, printing each epoch.

  Returns ``(losses, seconds)``: the mean training loss of each epoch and the wall time.
  """
  losses = []
  start = time.perf_counter()
  for epoch, order in enumerate(shuffled_epochs(seed, len(x_train), batch_size, epochs)):
    batch_losses = [step(x_train[batch], y_train[batch]) for batch in order]
    losses.append(float(np.mean(jax.device_get(batch_losses))))
    print(f"epoch {epoch + 1}/{epochs}: train loss {losses[-1]:.4f}")
  return losses, time.perf_counter() - start


# Evaluation.


def check_restored(what: str, path, step: int, same: bool, accuracy: float, restored_accuracy):
  """Reports an Orbax round trip of ``what``; raises if the restored state is not the saved one."""
  print(
      f"Orbax checkpoint {path}: restored {what} (step {step}) identical: {same}; "
      f"test accuracy after restore {restored_accuracy:.4f}"
  )
  if not same or restored_accuracy != accuracy:
    raise RuntimeError(f"the restored {what} is not the saved one")


def trees_equal(a, b) -> bool:
  """Whether two pytrees have the same structure and bitwise equal leaves."""
  return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))


def batched_accuracy(accuracy_of: Callable, images, labels, batch_size: int = 1000) -> float:
  """The accuracy over all ``images``, evaluated ``batch_size`` at a time.

  ``accuracy_of(images, labels)`` returns the mean accuracy of one batch.
  """
  hits = 0.0
  for start in range(0, len(images), batch_size):
    batch = slice(start, start + batch_size)
    hits += float(accuracy_of(images[batch], labels[batch])) * len(images[batch])
  return hits / len(images)
