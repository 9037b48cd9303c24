"""Quickstart: Adam vs the three CaAdam strategies on a Flax MLP.

Trains a small Flax linen MLP on scikit-learn's bundled 8x8 digits (no download)
with ``optax.adam`` and ``caadam_jax.caadam`` (additive, multiplicative, depth;
plus the published-results mode ``keras_caadam`` when available), every optimizer
starting from the same initial weights for a given seed. Prints a table of final
training loss, test accuracy and wall time (mean and standard deviation over
seeds) and writes a PNG of the training-loss curves.

    python examples/quickstart.py                 # digits, about a minute on 2 cores
    python examples/quickstart.py --epochs 5 --seeds 1
    python examples/quickstart.py --dataset mnist --data-dir ../shared/data

With ``--dataset mnist`` or ``fashion-mnist`` the IDX files are read from
``--data-dir`` (or ``$CAADAM_JAX_DATA``).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import _common  # examples/_common.py: helpers shared by the examples
import data_files  # examples/data_files.py: the offline dataset loaders
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import caadam_jax


class MLP(nn.Module):
  hidden: tuple[int, ...] = (256, 128, 64)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


def optimizers(learning_rate: float) -> dict[str, optax.GradientTransformation]:
  return {
      "adam": optax.adam(learning_rate),
      "caadam additive": caadam_jax.caadam(learning_rate, strategy="additive"),
      "caadam multiplicative": caadam_jax.caadam(learning_rate, strategy="multiplicative"),
      "caadam depth": caadam_jax.caadam(learning_rate, strategy="depth"),
      "keras_caadam (published)": caadam_jax.published.keras_caadam(learning_rate),
  }


def load(dataset: str, data_dir: str | None, seed: int = 0):
  if dataset == "digits":
    return _common.digits_split(seed)
  x_train, y_train, x_test, y_test = data_files.load_mnist(data_dir, variant=dataset)

  def flat(a):
    return a.reshape(len(a), -1)

  return flat(x_train), y_train, flat(x_test), y_test


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument("--epochs", type=int, default=30, help="epochs per run (default 30)")
  parser.add_argument("--seeds", type=int, default=3, help="seeds per optimizer (default 3)")
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"], default="digits")
  parser.add_argument(
      "--data-dir",
      default=None,
      help=f"directory with mnist/ and fashion-mnist/ IDX files (default ${data_files.DATA_ENV_VAR})",
  )
  parser.add_argument("--out", default="quickstart_losses.png", help="PNG of the loss curves")
  args = parser.parse_args(argv)

  from tqdm import tqdm

  data = tuple(jnp.asarray(a) for a in load(args.dataset, args.data_dir))
  model = MLP()
  results: dict[str, list[tuple[list[float], float, float]]] = {}
  for seed in range(args.seeds):
    # One shared initialization per seed: every optimizer starts from the same weights.
    params = model.init(jax.random.key(seed), data[0][:1])["params"]
    for name, tx in optimizers(args.learning_rate).items():
      start = time.perf_counter()
      with tqdm(total=args.epochs, desc=f"{name} seed {seed}", leave=False) as bar:

        def on_epoch(loss, bar=bar):
          bar.set_postfix(loss=f"{loss:.4f}")
          bar.update()

        losses, accuracy, _ = _common.train_classifier(
            tx, params, model, data, args.epochs, args.batch_size, seed, on_epoch
        )
      results.setdefault(name, []).append((losses, accuracy, time.perf_counter() - start))

  print(
      f"\n{args.dataset}: MLP {model.hidden}, {args.epochs} epochs, lr {args.learning_rate}, "
      f"{args.seeds} seed(s), jax {jax.__version__} on {jax.devices()[0].platform}"
  )
  header = f"{'optimizer':<26} {'final train loss':>20} {'test accuracy':>18} {'wall s':>8}"
  print(header + "\n" + "-" * len(header))
  for name, runs in results.items():
    final = np.array([r[0][-1] for r in runs])
    accuracy = np.array([r[1] for r in runs])
    wall = np.array([r[2] for r in runs])
    print(
        f"{name:<26} {final.mean():>11.4f} ± {final.std():<6.4f} "
        f"{accuracy.mean():>9.4f} ± {accuracy.std():<6.4f} {np.median(wall):>8.2f}"
    )
  print("(mean ± standard deviation over seeds; wall time is the median and includes compilation)")

  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for index, (name, runs) in enumerate(results.items()):
    curves = np.array([r[0] for r in runs])
    epochs = np.arange(1, curves.shape[1] + 1)
    ax.plot(epochs, curves.mean(0), color=f"C{index}", label=name)
    ax.fill_between(epochs, curves.min(0), curves.max(0), color=f"C{index}", alpha=0.2)
  ax.set_yscale("log")
  ax.set_xlabel("epoch")
  ax.set_ylabel("training loss (mean over seeds, band = min..max)")
  ax.set_title(f"{args.dataset}: Adam vs CaAdam")
  ax.legend()
  fig.tight_layout()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=120)
  print(f"loss curves written to {out.resolve()}")
  return results


if __name__ == "__main__":
  main()
