"""ADAS vs Adam on MNIST with a 784 -> 256 ReLU -> 10 MLP (the ADAS README's experiment).

The reported behaviour (the AdasOptimizer README,
https://github.com/YanaiEliyahu/AdasOptimizer): with batch 32 and all ADAS
defaults, training accuracy reaches 0.9998 by epoch 10-11 and 1.0000 at epoch
12, while Adam is at about 0.999 after 50 epochs.

Both optimizers start from the same initial weights and see the same sequence
of shuffled batches. Accuracies are measured on the FULL training and test sets
after every epoch (Keras's progress bar in the reference shows the running mean
over the epoch instead, which lags behind). An epoch is one jitted
``jax.lax.scan`` over its batches.

Usage::

  python -m benchmarks.adas_mnist --data-dir /path/to/shared/data
  CAADAM_JAX_DATA=/path/to/shared/data python -m benchmarks.adas_mnist --quick

Writes a JSON file with every per-epoch number, the versions and the machine
(``--out``, default ``benchmarks/results/adas_mnist.json``; ``--quick`` writes
only when ``--out`` is given).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import caadam_jax
from examples import cli_types
from examples import data_files

from ._shared import RESULTS_DIR
from ._shared import machine_info

DEFAULT_OUT = RESULTS_DIR / "adas_mnist.json"


class MLP(nn.Module):
  """784 -> 256 ReLU -> 10 (logits)."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(256)(x))
    return nn.Dense(10)(x)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
  parser.add_argument(
      "--data-dir",
      default=None,
      help=f"data directory containing mnist/ (default ${data_files.DATA_ENV_VAR})",
  )
  parser.add_argument(
      "--epochs",
      type=cli_types.positive_int,
      default=None,
      help="Adam epochs (default 50; 2 with --quick)",
  )
  parser.add_argument(
      "--epochs-adas",
      type=cli_types.positive_int,
      default=None,
      help="ADAS epochs (default 20; 2 with --quick)",
  )
  parser.add_argument("--batch-size", type=cli_types.positive_int, default=32)
  parser.add_argument("--seed", type=cli_types.non_negative_int, default=0)
  parser.add_argument(
      "--out", default=None, help=f"JSON output (default {DEFAULT_OUT}; none with --quick)"
  )
  parser.add_argument(
      "--quick", action="store_true", help="a tiny subset and 2 epochs each (a smoke test)"
  )
  args = parser.parse_args(argv)
  if args.epochs is None:
    args.epochs = 2 if args.quick else 50
  if args.epochs_adas is None:
    args.epochs_adas = 2 if args.quick else 20
  if args.out is None and not args.quick:
    args.out = str(DEFAULT_OUT)
  return args


def load_data(args):
  x_train, y_train, x_test, y_test = data_files.load_mnist(args.data_dir)
  x_train = x_train.reshape(len(x_train), -1)
  x_test = x_test.reshape(len(x_test), -1)
  if args.quick:
    x_train, y_train = x_train[:2048], y_train[:2048]
    x_test, y_test = x_test[:1000], y_test[:1000]
  return x_train, y_train, x_test, y_test


def make_functions(model, tx, batch_size, num_batches):
  """Returns jitted ``run_epoch(params, opt_state, x, y, key)`` and ``evaluate``."""

  def loss_fn(params, xb, yb):
    logits = model.apply({"params": params}, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  def train_step(carry, batch):
    params, opt_state = carry
    xb, yb = batch
    loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  @jax.jit
  def run_epoch(params, opt_state, x, y, key):
    perm = jax.random.permutation(key, x.shape[0])[: num_batches * batch_size]
    xb = x[perm].reshape(num_batches, batch_size, -1)
    yb = y[perm].reshape(num_batches, batch_size)
    (params, opt_state), losses = jax.lax.scan(train_step, (params, opt_state), (xb, yb))
    return params, opt_state, losses.mean()

  @jax.jit
  def evaluate(params, x, y):
    logits = model.apply({"params": params}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return jnp.mean(jnp.argmax(logits, -1) == y), loss

  return run_epoch, evaluate


def train(name, tx, init_params, data, epochs, args):
  x_train, y_train, x_test, y_test = data
  model = MLP()
  num_batches = x_train.shape[0] // args.batch_size
  run_epoch, evaluate = make_functions(model, tx, args.batch_size, num_batches)
  params = init_params
  opt_state = tx.init(params)
  # The same shuffles for every optimizer: keys depend only on the seed and epoch.
  shuffle_key = jax.random.key(args.seed + 1)
  history = []
  start = time.perf_counter()
  for epoch in range(1, epochs + 1):
    t0 = time.perf_counter()
    params, opt_state, batch_loss = run_epoch(
        params, opt_state, x_train, y_train, jax.random.fold_in(shuffle_key, epoch)
    )
    jax.block_until_ready(params)
    epoch_time = time.perf_counter() - t0
    train_acc, train_loss = evaluate(params, x_train, y_train)
    test_acc, test_loss = evaluate(params, x_test, y_test)
    record = {
        "epoch": epoch,
        "train_accuracy": float(train_acc),
        "train_errors": int(round((1 - float(train_acc)) * x_train.shape[0])),
        "train_loss": float(train_loss),
        "test_accuracy": float(test_acc),
        "test_loss": float(test_loss),
        "mean_batch_loss": float(batch_loss),
        "epoch_seconds": epoch_time,
    }
    history.append(record)
    print(
        f"{name:>4} epoch {epoch:3d}/{epochs}  train_acc {record['train_accuracy']:.5f} "
        f"({record['train_errors']:5d} wrong)  test_acc {record['test_accuracy']:.4f}  "
        f"train_loss {record['train_loss']:.2e}  {epoch_time:6.1f}s",
        flush=True,
    )
  total = time.perf_counter() - start
  return history, total


def first_epoch_within(errors: list[int], allowed: int) -> int | None:
  """The first 1-based epoch with at most ``allowed`` training errors (None: never)."""
  return next((i + 1 for i, e in enumerate(errors) if e <= allowed), None)


def first_epoch_staying_within(errors: list[int], allowed: int) -> int | None:
  """The first epoch from which every later epoch has at most ``allowed`` errors."""
  epoch = None
  for i, e in enumerate(errors):
    epoch = (i + 1 if epoch is None else epoch) if e <= allowed else None
  return epoch


def first_epoch_at(history, threshold, n_train):
  errors = [record["train_errors"] for record in history]
  return first_epoch_within(errors, round((1 - threshold) * n_train))


def first_epoch_staying_at(history, threshold, n_train):
  """The first epoch from which every later epoch stays at or above ``threshold``."""
  errors = [record["train_errors"] for record in history]
  return first_epoch_staying_within(errors, round((1 - threshold) * n_train))


def summarize(history, epochs, seconds, n_train) -> dict:
  """One optimizer's record: its history and when it reached (and kept) 99.9% and 100%."""
  return {
      "epochs": epochs,
      "history": history,
      "wall_seconds": seconds,
      "first_epoch_train_acc_999": first_epoch_at(history, 0.999, n_train),
      "first_epoch_train_acc_100": first_epoch_at(history, 1.0, n_train),
      "first_epoch_staying_train_acc_999": first_epoch_staying_at(history, 0.999, n_train),
      "first_epoch_staying_train_acc_100": first_epoch_staying_at(history, 1.0, n_train),
      "epochs_at_train_acc_100": sum(r["train_errors"] == 0 for r in history),
      "final_train_accuracy": history[-1]["train_accuracy"] if history else None,
      "final_test_accuracy": history[-1]["test_accuracy"] if history else None,
      "best_train_accuracy": max((r["train_accuracy"] for r in history), default=None),
  }


def main(argv=None):
  args = parse_args(argv)
  data = load_data(args)
  n_train = data[0].shape[0]
  print(
      f"MNIST: {n_train} train, {data[2].shape[0]} test, batch {args.batch_size}, "
      f"seed {args.seed}, devices {jax.devices()}",
      flush=True,
  )
  init_params = MLP().init(jax.random.key(args.seed), jnp.zeros((1, 784)))["params"]
  runs = {
      "adas": (caadam_jax.adas(), args.epochs_adas),
      "adam": (optax.adam(1e-3), args.epochs),
  }
  results = {}
  for name, (tx, epochs) in runs.items():
    history, seconds = train(name, tx, init_params, data, epochs, args)
    results[name] = summarize(history, epochs, seconds, n_train)

  print("\nSummary (accuracies on the full training set after each epoch):")
  for name, r in results.items():
    print(
        f"  {name}: first epoch >= 99.9%: {r['first_epoch_train_acc_999']}, "
        f"= 100%: {r['first_epoch_train_acc_100']} (of {r['epochs']}); stays >= 99.9% from "
        f"{r['first_epoch_staying_train_acc_999']}, stays at 100% from "
        f"{r['first_epoch_staying_train_acc_100']}; "
        f"final train {r['final_train_accuracy']:.5f}, final test "
        f"{r['final_test_accuracy']:.4f}; {r['wall_seconds']:.0f}s"
    )

  if args.out:
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "adas_mnist",
        "description": "MNIST 784-256(ReLU)-10 MLP, batch 32, shuffled per epoch; "
        "caadam_jax.adas() defaults vs optax.adam(1e-3); same init and "
        "same batch order; accuracy on the full train/test sets after "
        "each epoch.",
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "args": vars(args),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "n_train": n_train,
        "n_test": int(data[2].shape[0]),
        "machine": machine_info(),
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
  return results


if __name__ == "__main__":
  main()
