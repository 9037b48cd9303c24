"""Quickstart: CaAdam against Adam at the same learning rate AND against tuned Adam.

Trains a small Flax linen MLP on scikit-learn's bundled 8x8 digits (no download)
with ``optax.adam``, ``caadam_jax.caadam`` (each strategy: additive,
multiplicative, depth) and the published-results mode ``keras_caadam``, every one
at every learning rate of a small grid and several seeds. All runs of one
optimizer train together, ``vmap``-ed over (learning rate, seed), with the
learning rate injected by ``optax.inject_hyperparams``. Seed ``i`` gives the same
initial weights and batch order to every optimizer, so the runs are paired.

Each optimizer's learning rate is picked on a validation split (the lowest mean
validation loss over seeds at the last epoch); the test split is only reported.
The table shows every optimizer at the base learning rate (what the paper
compared) and at its own best learning rate (best against best), then one line
saying what the comparison means. A PNG shows the validation-loss curves of both
comparisons.

    python examples/quickstart.py                 # digits, about a minute on 2 cores
    python examples/quickstart.py --epochs 5 --seeds 2 --learning-rates 1e-3 3e-3
    python examples/quickstart.py --dataset mnist --data-dir ../shared/data

With ``--dataset mnist`` or ``fashion-mnist`` the IDX files are read from
``--data-dir`` (or ``$CAADAM_JAX_DATA``).
"""

from __future__ import annotations

import argparse
import pathlib
import textwrap
import time
from collections.abc import Callable

import _common  # examples/_common.py: helpers shared by the examples
import cli_types  # examples/cli_types.py: checked argparse types
import data_files  # examples/data_files.py: the offline dataset loaders
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import caadam_jax

EVIDENCE = "docs/benchmarks_evidence.md"


class MLP(nn.Module):
  hidden: tuple[int, ...] = (256, 128, 64)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


def optimizers() -> dict[str, Callable[..., optax.GradientTransformation]]:
  """Name -> ``learning_rate -> optimizer`` with the learning rate injected (vmappable)."""
  inject = optax.inject_hyperparams
  return {
      "adam": lambda lr: inject(optax.adam)(learning_rate=lr),
      "caadam additive": lambda lr: inject(caadam_jax.caadam)(
          learning_rate=lr, strategy="additive"
      ),
      "caadam multiplicative": lambda lr: inject(caadam_jax.caadam)(
          learning_rate=lr, strategy="multiplicative"
      ),
      "caadam depth": lambda lr: inject(caadam_jax.caadam)(learning_rate=lr, strategy="depth"),
      "keras_caadam (published)": lambda lr: inject(caadam_jax.published.keras_caadam)(
          learning_rate=lr
      ),
  }


def load(dataset: str, data_dir: str | None, seed: int = 0):
  """``(x_train, y_train, x_val, y_val, x_test, y_test)``: 20% of the training split is validation."""
  from sklearn.model_selection import train_test_split

  if dataset == "digits":
    x_train, y_train, x_test, y_test = _common.digits_split(seed)
  else:
    x_train, y_train, x_test, y_test = data_files.load_mnist(data_dir, variant=dataset)
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
  x_train, x_val, y_train, y_val = train_test_split(
      x_train, y_train, test_size=0.2, random_state=seed, stratify=y_train
  )
  return x_train, y_train, x_val, y_val, x_test, y_test


def train_grid(make_tx, model, data, learning_rates, seeds: int, epochs: int, batch_size: int):
  """Trains one optimizer at every (learning rate, seed) in one jitted, vmapped epoch function.

  Returns a dict of arrays shaped ``(len(learning_rates), seeds, ...)``: ``train_loss``
  and ``val_loss`` per epoch, ``test_accuracy`` after the last epoch.
  """
  x_train, y_train, x_val, y_val, x_test, y_test = (jnp.asarray(a) for a in data)
  n_lr = len(learning_rates)
  seed_of_run = jnp.tile(jnp.arange(seeds), n_lr)
  lr_of_run = jnp.repeat(jnp.asarray(learning_rates, jnp.float32), seeds)
  # Seed i: the same initial weights and batch order for every optimizer and learning rate.
  params = jax.vmap(lambda s: model.init(jax.random.key(s), x_train[:1])["params"])(seed_of_run)
  tx = make_tx(float(learning_rates[0]))
  opt_state = jax.vmap(tx.init)(params)
  opt_state.hyperparams["learning_rate"] = lr_of_run
  shuffle_keys = jax.vmap(lambda s: jax.random.key(1000 + s))(seed_of_run)
  steps = len(x_train) // batch_size

  def mean_loss(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def one_epoch(params, opt_state, key, epoch):
    order = jax.random.permutation(jax.random.fold_in(key, epoch), len(x_train))
    order = order[: steps * batch_size].reshape(steps, batch_size)

    def step(carry, batch):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(mean_loss)(params, x_train[batch], y_train[batch])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), order)
    return params, opt_state, losses.mean(), mean_loss(params, x_val, y_val)

  epoch_fn = jax.jit(jax.vmap(one_epoch, in_axes=(0, 0, 0, None)))
  train_loss, val_loss = [], []
  for epoch in range(epochs):
    params, opt_state, train, val = epoch_fn(params, opt_state, shuffle_keys, epoch)
    train_loss.append(train)
    val_loss.append(val)
  logits = jax.vmap(lambda p: model.apply({"params": p}, x_test))(params)
  accuracy = (jnp.argmax(logits, -1) == y_test).mean(-1)

  def per_lr_seed(a):  # (runs, ...) -> (n_lr, seeds, ...)
    return np.asarray(a).reshape(n_lr, seeds, *np.shape(a)[1:])

  return {
      "train_loss": per_lr_seed(jnp.stack(train_loss, -1)),
      "val_loss": per_lr_seed(jnp.stack(val_loss, -1)),
      "test_accuracy": per_lr_seed(accuracy),
  }


def best_index(val_loss: np.ndarray) -> int:
  """The learning rate with the lowest mean final validation loss; diverged rates never win."""
  final = val_loss[..., -1].mean(-1)
  return int(np.argmin(np.where(np.isfinite(final), final, np.inf)))


def compare(
    results: dict[str, dict[str, np.ndarray]],
    grid: list[float],
    base_rate: float,
    wrap: int | None = None,
):
  """Prints the table (each optimizer at the base rate and at its tuned rate) and what it means.

  The sentence is one line, or wrapped at ``wrap`` characters (for a notebook page).

  Returns ``(rows, meaning)``: one dict per printed row (``optimizer``, ``kind`` "same" or
  "tuned", ``learning_rate`` and the per-seed final ``val_loss``, ``test_accuracy``,
  ``train_loss``) and the printed sentence.
  """
  header = (
      f"{'optimizer':<26} {'learning rate':<17} {'validation loss':>17} "
      f"{'test accuracy':>17} {'train loss':>17}"
  )
  print(header + "\n" + "-" * len(header))
  rows = []
  for name, res in results.items():
    for kind, index in (("same", grid.index(base_rate)), ("tuned", best_index(res["val_loss"]))):
      row = {
          "optimizer": name,
          "kind": kind,
          "learning_rate": grid[index],
          "val_loss": res["val_loss"][index, :, -1],
          "test_accuracy": res["test_accuracy"][index],
          "train_loss": res["train_loss"][index, :, -1],
      }
      rows.append(row)
      rate = f"{grid[index]:g} ({'base' if kind == 'same' else 'tuned'})"
      print(
          f"{name:<26} {rate:<17} "
          + " ".join(
              f"{row[k].mean():>8.4f} ± {row[k].std():<6.4f}"
              for k in ("val_loss", "test_accuracy", "train_loss")
          )
      )
  print(
      "(mean ± standard deviation over seeds, at the last epoch; 'tuned': the grid's best on validation)"
  )

  def row_of(name, kind):
    return next(r for r in rows if r["optimizer"] == name and r["kind"] == kind)

  caadams = [name for name in results if name != "adam"]
  same_best = min(caadams, key=lambda n: row_of(n, "same")["val_loss"].mean())
  tuned_best = min(caadams, key=lambda n: row_of(n, "tuned")["val_loss"].mean())
  adam_same, adam_tuned = row_of("adam", "same"), row_of("adam", "tuned")
  same_gain = row_of(same_best, "same")["val_loss"].mean() / adam_same["val_loss"].mean() - 1
  train_ratio = adam_same["train_loss"].mean() / row_of(same_best, "same")["train_loss"].mean()
  tuned_gain = row_of(tuned_best, "tuned")["val_loss"].mean() / adam_tuned["val_loss"].mean() - 1
  spread = adam_tuned["val_loss"].std() / adam_tuned["val_loss"].mean()
  seeds = len(adam_same["val_loss"])
  meaning = (
      f"What this means: at the same learning rate ({base_rate:g}) the best CaAdam "
      f"({same_best}) reaches {train_ratio:.1f}x lower training loss and {same_gain:+.1%} "
      f"validation loss against Adam, largely because its factors enlarge Adam's step; with "
      f"every rate tuned on validation the best CaAdam ({tuned_best}) is at {tuned_gain:+.1%} "
      f"against tuned Adam, whose seed-to-seed spread is ±{spread:.0%} ({seeds} seeds, a toy). "
      f"Measured best against best, no strategy beat tuned Adam in test error: see {EVIDENCE}"
  )
  print(meaning if wrap is None else textwrap.fill(meaning, wrap))
  return rows, meaning


def plot(results, rows, grid: list[float], base_rate: float, title: str):
  """Validation-loss curves: every optimizer at the base rate, and each at its tuned rate."""
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for ax, kind, panel in (
      (axes[0], "same", f"same learning rate ({base_rate:g})"),
      (axes[1], "tuned", "each at its best rate on validation"),
  ):
    for index, (name, res) in enumerate(results.items()):
      row = next(r for r in rows if r["optimizer"] == name and r["kind"] == kind)
      curves = res["val_loss"][grid.index(row["learning_rate"])]
      epochs = np.arange(1, curves.shape[-1] + 1)
      label = name if kind == "same" else f"{name} ({row['learning_rate']:g})"
      ax.plot(epochs, curves.mean(0), color=f"C{index}", label=label)
      ax.fill_between(epochs, curves.min(0), curves.max(0), color=f"C{index}", alpha=0.15)
    ax.set(yscale="log", xlabel="epoch", title=panel)
    ax.legend(fontsize=8)
  axes[0].set_ylabel("validation loss (mean over seeds, band = min..max)")
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument(
      "--epochs", type=cli_types.positive_int, default=30, help="epochs per run (default 30)"
  )
  parser.add_argument(
      "--seeds", type=cli_types.positive_int, default=5, help="seeds per cell (default 5)"
  )
  parser.add_argument(
      "--learning-rate",
      type=cli_types.positive_float,
      default=1e-3,
      help="the base rate compared first (1e-3)",
  )
  parser.add_argument(
      "--learning-rates",
      type=cli_types.positive_float,
      nargs="+",
      default=[3e-4, 1e-3, 3e-3, 1e-2],
      help="the grid each optimizer's rate is picked from on validation (includes the base rate)",
  )
  parser.add_argument("--batch-size", type=cli_types.positive_int, default=64)
  parser.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"], default="digits")
  parser.add_argument(
      "--data-dir",
      default=None,
      help=f"directory with mnist/ and fashion-mnist/ IDX files (default ${data_files.DATA_ENV_VAR})",
  )
  parser.add_argument("--out", default="quickstart_losses.png", help="PNG of the loss curves")
  args = parser.parse_args(argv)
  grid = sorted(set(args.learning_rates) | {args.learning_rate})

  data = load(args.dataset, args.data_dir)
  model = MLP()
  results: dict[str, dict[str, np.ndarray]] = {}
  start = time.perf_counter()
  for name, make_tx in optimizers().items():
    began = time.perf_counter()
    results[name] = train_grid(make_tx, model, data, grid, args.seeds, args.epochs, args.batch_size)
    # One line per optimizer (no progress bar: it would flood a log that is not a terminal).
    print(
        f"trained {name}: {len(grid)} learning rates x {args.seeds} seeds "
        f"in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
  seconds = time.perf_counter() - start

  print(
      f"\n{args.dataset}: MLP {model.hidden}, {args.epochs} epochs, batch {args.batch_size}, "
      f"{args.seeds} seeds (each its own initialization, shared by every optimizer), "
      f"learning-rate grid {' '.join(f'{lr:g}' for lr in grid)}; "
      f"jax {jax.__version__} on {jax.devices()[0].platform}, {seconds:.0f} s"
  )
  rows, meaning = compare(results, grid, args.learning_rate)

  import matplotlib

  matplotlib.use("Agg")
  fig = plot(
      results,
      rows,
      grid,
      args.learning_rate,
      f"{args.dataset}: Adam vs CaAdam at one learning rate, and best against best",
  )
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=120)
  print(f"validation-loss curves written to {out.resolve()}")
  return {"grid": grid, "results": results, "rows": rows, "meaning": meaning}


if __name__ == "__main__":
  main()
