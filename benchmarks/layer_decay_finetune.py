"""Does layer-wise learning-rate decay help fine-tuning here? MNIST -> Fashion-MNIST.

A small CNN (stem conv, three numbered conv blocks, head) is pretrained once on
MNIST, then fine-tuned on a subsample of Fashion-MNIST with a fresh head, by
``caadam_jax.adamw_layer_decay`` under ``optax.inject_hyperparams``: ``decay = 1``
is exactly AdamW (every factor 1), ``decay < 1`` is layer decay. Every
(learning rate, decay, seed) run is one slice of ONE vmapped training step (the
hyperparameters are injected arrays), so the grid costs one compilation.

Protocol:

* pretraining: MNIST train, ``--pretrain-steps`` steps of AdamW 1e-3, batch 128,
  seed 0 (one backbone shared by every fine-tuning run);
* images downsampled to 14x14 (2x2 means) so that the grid fits a shared CPU;
* fine-tuning data: the first ``--train`` Fashion-MNIST training images; validation
  the next ``--val`` ones; test the 10,000 test images;
* grid: learning rates ``--lrs`` for both; decays ``--decays`` (1 = AdamW);
  ``--seeds`` seeds (head initialization and batch order; the same per seed for
  every configuration: paired); ``--steps`` steps of batch 32, weight decay 1e-4;
* selection on validation: per method (AdamW: decay 1; layer decay: any decay
  < 1) the configuration with the best mean validation accuracy over seeds
  (the last step's); each decay < 1 at its own best learning rate too;
* statistics (``benchmarks/stats.py``): per seed test error of the selected
  configurations, paired t-test, Holm over the family (each decay and the
  selected layer-decay configuration against tuned AdamW), TOST at ±1% relative.

Usage::

  nice -n 10 python -m benchmarks.layer_decay_finetune             # the committed run
  python -m benchmarks.layer_decay_finetune --quick --out /tmp/x    # seconds, a smoke test

Writes ``<out>.json``, ``<out>.md`` and ``<out>.png`` (default
``benchmarks/results/layer_decay_finetune``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import caadam_jax
from examples import cli_types
from examples import data_files

from . import stats
from ._shared import RESULTS_DIR
from ._shared import machine_info


class FineTuneCNN(nn.Module):
  """stem -> blocks_0 (7x7) -> blocks_1 (4x4) -> blocks_2 -> mean -> head: L = 3 (14x14 inputs)."""

  width: int = 8

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(self.width, (3, 3), name="stem")(x[..., None]))
    for i, (features, pool) in enumerate(
        [(self.width, True), (2 * self.width, True), (2 * self.width, False)]
    ):
      x = nn.relu(nn.Conv(features, (3, 3), name=f"blocks_{i}")(x))
      if pool:
        x = nn.avg_pool(x, (2, 2), (2, 2))
    return nn.Dense(10, name="head")(jnp.mean(x, axis=(1, 2)))


def downsample(a: np.ndarray) -> np.ndarray:
  """28x28 images -> 14x14 (2x2 means), to fit a loaded CPU; labels unchanged."""
  if a.ndim != 3:
    return a
  return a.reshape(len(a), 14, 2, 14, 2).mean(axis=(2, 4))


def _loss(model, params, x, y):
  logits = model.apply({"params": params}, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def pretrain(model, x, y, steps: int, seed: int = 0) -> Any:
  params = model.init(jax.random.key(seed), x[:1])["params"]
  tx = optax.adamw(1e-3)
  state = tx.init(params)

  @jax.jit  # data passed as arguments: a closed-over dataset would be compiled in as a constant
  def step(params, state, xb, yb):
    grads = jax.grad(lambda p: _loss(model, p, xb, yb))(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.integers(0, len(x), 128)
    params, state = step(params, state, x[idx], y[idx])
  return params


def accuracy(model, params, x, y, *, batched: bool = False, batch: int = 1000) -> Any:
  """Accuracy of one model, or of each model along axis 0 of ``params`` (``batched``)."""

  def count(p, xb, yb):
    return jnp.sum(jnp.argmax(model.apply({"params": p}, xb), -1) == yb)

  counter = jax.jit(jax.vmap(count, in_axes=(0, None, None)) if batched else count)
  correct = 0
  for i in range(0, len(x), batch):
    correct = correct + np.asarray(counter(params, x[i : i + batch], y[i : i + batch]))
  return correct / len(x)


def finetune_grid(model, backbone, data, lrs, decays, seeds, steps, batch=32):
  """Validation and test accuracy of every (lr, decay, seed): arrays of shape (lr, decay, seed)."""
  x_tr, y_tr, x_val, y_val, x_te, y_te = data
  grid = list(itertools.product(lrs, decays, seeds))
  lr = jnp.asarray([g[0] for g in grid], jnp.float32)
  decay = jnp.asarray([g[1] for g in grid], jnp.float32)
  seed = np.asarray([g[2] for g in grid])
  opt = optax.inject_hyperparams(caadam_jax.adamw_layer_decay)(
      learning_rate=1e-3, decay=0.75, weight_decay=1e-4
  )

  def init(key, lr, decay):
    head = model.init(key, x_tr[:1])["params"]["head"]  # a fresh head per seed
    params = {**backbone, "head": head}
    state = opt.init(params)
    assert isinstance(state, optax.InjectStatefulHyperparamsState)
    state.hyperparams["learning_rate"] = lr
    state.hyperparams["decay"] = decay
    return params, state

  keys = jax.vmap(jax.random.key)(jnp.asarray(seed))
  params, state = jax.vmap(init)(keys, lr, decay)

  def one_step(params, state, xb, yb):
    grads = jax.grad(lambda p: _loss(model, p, xb, yb))(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(jax.vmap(one_step))
  # Batch order per seed, the same for every configuration with that seed.
  orders = {s: np.random.default_rng(1000 + s) for s in seeds}
  for _ in range(steps):
    per_seed = {s: orders[s].integers(0, len(x_tr), batch) for s in seeds}
    idx = np.stack([per_seed[s] for s in seed])
    params, state = step(params, state, x_tr[idx], y_tr[idx])
  val = accuracy(model, params, x_val, y_val, batched=True)
  test = accuracy(model, params, x_te, y_te, batched=True)
  shape = (len(lrs), len(decays), len(seeds))
  return np.asarray(val).reshape(shape), np.asarray(test).reshape(shape)


def analyse(val, test, lrs, decays) -> dict[str, Any]:
  """Selection on validation, paired statistics on test error against tuned AdamW."""
  mean_val = val.mean(-1)
  base_d = decays.index(1.0)
  base_lr = int(np.argmax(mean_val[:, base_d]))
  adamw_err = 1.0 - test[base_lr, base_d]
  rows = []
  ld = [j for j, d in enumerate(decays) if d != 1.0]
  best_flat = max(((i, j) for i in range(len(lrs)) for j in ld), key=lambda t: mean_val[t])
  candidates = [(f"decay {decays[j]:g}", int(np.argmax(mean_val[:, j])), j) for j in ld]
  candidates.append(("layer decay (decay and lr selected)", best_flat[0], best_flat[1]))
  comparisons = [
      stats.paired_comparison(1.0 - test[i, j], adamw_err, lower_is_better=True)
      for _, i, j in candidates
  ]
  adjusted = stats.holm([c.p_t for c in comparisons])
  for (name, i, j), c, p in zip(candidates, comparisons, adjusted, strict=True):
    rows.append(
        {
            "name": name,
            "lr": lrs[i],
            "decay": decays[j],
            "val_acc_mean": float(mean_val[i, j]),
            "test_err_mean": c.mean_a,
            "adamw_test_err_mean": c.mean_b,
            "rel": c.rel,
            "ci": [c.ci_low, c.ci_high],
            "p_t": c.p_t,
            "p_holm": p,
            "p_tost": c.p_tost,
            "wins": c.wins,
            "n": c.n,
            "verdict": stats.verdict(c, p),
        }
    )
  return {
      "adamw": {
          "lr": lrs[base_lr],
          "val_acc_mean": float(mean_val[base_lr, base_d]),
          "test_err_mean": float(adamw_err.mean()),
      },
      "comparisons": rows,
  }


def report(result: dict[str, Any]) -> str:
  a = result["analysis"]
  lines = [
      "# Layer decay: MNIST -> Fashion-MNIST fine-tuning",
      "",
      f"Command: `{result['command']}`  ",
      f"Machine: {result['machine'].get('cpu_model')}, {result['machine']['cpu_count']} CPUs, "
      f"jax {result['machine']['versions'].get('jax')}; {result['total_s']:.0f} s.",
      "",
      f"Pretrained on MNIST: test accuracy {result['pretrain_mnist_test_acc']:.4f}. "
      f"Fine-tuning: {result['args']['train']} Fashion-MNIST images, {result['args']['steps']} "
      f"steps, {len(result['args']['seeds'])} seeds; learning rates {result['args']['lrs']}, "
      f"decays {result['args']['decays']} (1 = AdamW).",
      "",
      f"Tuned AdamW: lr {a['adamw']['lr']:g}, validation accuracy "
      f"{a['adamw']['val_acc_mean']:.4f}, test error {a['adamw']['test_err_mean']:.4f}.",
      "",
      "| layer decay (selected on validation) | lr | val acc | test err | vs AdamW (rel) | 95% CI "
      "| p (t) | p (Holm) | p (TOST ±1%) | wins | verdict |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for r in a["comparisons"]:
    lines.append(
        f"| {r['name']} | {r['lr']:g} | {r['val_acc_mean']:.4f} | {r['test_err_mean']:.4f} | "
        f"{100 * r['rel']:+.2f}% | [{100 * r['ci'][0]:+.2f}, {100 * r['ci'][1]:+.2f}]% | "
        f"{r['p_t']:.3g} | {r['p_holm']:.3g} | {r['p_tost']:.3g} | {r['wins']}/{r['n']} | "
        f"{r['verdict']} |"
    )
  lines += [
      "",
      "Test error is 1 - accuracy; `rel` is the mean per-seed relative difference of test "
      "error against tuned AdamW (negative: layer decay better). Holm over the rows.",
      "",
      "Mean validation accuracy (rows: learning rate; columns: decay):",
      "",
      "| lr | " + " | ".join(f"{d:g}" for d in result["args"]["decays"]) + " |",
      "| --- | " + " | ".join("---" for _ in result["args"]["decays"]) + " |",
  ]
  val = np.asarray(result["val_acc"])
  for i, lr in enumerate(result["args"]["lrs"]):
    lines.append(f"| {lr:g} | " + " | ".join(f"{v:.4f}" for v in val[i].mean(-1)) + " |")
  return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  lrs, decays = result["args"]["lrs"], result["args"]["decays"]
  val, test = np.asarray(result["val_acc"]), np.asarray(result["test_acc"])
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for j, d in enumerate(decays):
    m, s = val[:, j].mean(-1), val[:, j].std(-1)
    axes[0].errorbar(lrs, m, s, marker="o", capsize=3, label="AdamW" if d == 1 else f"decay {d:g}")
  axes[0].set_xscale("log")
  axes[0].set_xlabel("learning rate")
  axes[0].set_ylabel("validation accuracy (mean ± sd over seeds)")
  axes[0].legend()
  a = result["analysis"]
  base_i = lrs.index(a["adamw"]["lr"])
  base = 1 - test[base_i, decays.index(1.0)]
  sel = a["comparisons"][-1]
  mine = 1 - test[lrs.index(sel["lr"]), decays.index(sel["decay"])]
  for b, m in zip(base, mine, strict=True):
    axes[1].plot([0, 1], [b, m], color="gray", alpha=0.6)
  axes[1].scatter(np.zeros_like(base), base, label="AdamW (tuned)")
  axes[1].scatter(np.ones_like(mine), mine, label=f"layer decay {sel['decay']:g}, lr {sel['lr']:g}")
  axes[1].set_xticks([0, 1], ["AdamW", "layer decay"])
  axes[1].set_ylabel("test error per seed (paired)")
  axes[1].legend()
  fig.suptitle("MNIST -> Fashion-MNIST fine-tuning, selected on validation")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  arg_list = sys.argv[1:] if argv is None else list(argv)
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
  parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke test)")
  parser.add_argument("--pretrain-steps", type=cli_types.non_negative_int, default=400)
  parser.add_argument("--train", type=cli_types.positive_int, default=1000)
  parser.add_argument("--val", type=cli_types.positive_int, default=2000)
  parser.add_argument("--steps", type=cli_types.positive_int, default=200)
  parser.add_argument(
      "--lrs",
      type=cli_types.comma_separated(
          cli_types.positive_float, "comma-separated numbers > 0 such as 1e-4,3e-4"
      ),
      default="1e-4,3e-4,1e-3,3e-3",
  )
  parser.add_argument(
      "--decays",
      type=cli_types.comma_separated(
          cli_types.decay_fraction, "comma-separated numbers in (0, 1] such as 1,0.8"
      ),
      default="1,0.8,0.65,0.5",
  )
  parser.add_argument("--seeds", type=cli_types.positive_int, default=5)
  parser.add_argument(
      "--test",
      type=cli_types.positive_int,
      default=None,
      help="test images (default: all 10000; --quick: 1000)",
  )
  parser.add_argument("--data", default=None, help="data directory (default $CAADAM_JAX_DATA)")
  parser.add_argument("--out", default=str(RESULTS_DIR / "layer_decay_finetune"))
  parser.add_argument(
      "--report-only", action="store_true", help="recompute the report from <out>.json"
  )
  args = parser.parse_args(arg_list)
  if args.report_only:
    return write_report(pathlib.Path(args.out))
  if args.quick:
    args.pretrain_steps, args.train, args.val, args.steps, args.seeds = 20, 256, 256, 10, 2
    args.lrs, args.decays = [1e-3, 3e-3], [1.0, 0.65]
    args.test = args.test or 1000
  lrs, decays = args.lrs, args.decays
  if 1.0 not in decays:
    raise SystemExit("--decays must include 1 (AdamW, the baseline).")
  seeds = list(range(args.seeds))
  t0 = time.perf_counter()
  model = FineTuneCNN()
  mx, my, mxt, myt = map(downsample, data_files.load_mnist(args.data, variant="mnist"))
  mxt, myt = mxt[: args.test], myt[: args.test]
  print(f"data loaded ({time.perf_counter() - t0:.0f} s)", flush=True)
  backbone = pretrain(model, mx, my, args.pretrain_steps)
  mnist_acc = float(accuracy(model, backbone, mxt, myt))
  print(
      f"pretrained on MNIST: test accuracy {mnist_acc:.4f} ({time.perf_counter() - t0:.0f} s)",
      flush=True,
  )
  print(caadam_jax.describe_layer_decay(backbone, 0.65, as_string=True))
  fx, fy, fxt, fyt = map(downsample, data_files.load_mnist(args.data, variant="fashion-mnist"))
  fxt, fyt = fxt[: args.test], fyt[: args.test]
  n, v = args.train, args.val
  data = (fx[:n], fy[:n], fx[n : n + v], fy[n : n + v], fxt, fyt)  # NumPy: sliced on the host
  backbone = {k: w for k, w in backbone.items() if k != "head"}
  val, test = finetune_grid(model, backbone, data, lrs, decays, seeds, args.steps)
  print(f"fine-tuned ({time.perf_counter() - t0:.0f} s)", flush=True)
  result = {
      "benchmark": "layer_decay_finetune",
      "command": " ".join(["python", "-m", "benchmarks.layer_decay_finetune", *arg_list]),
      "machine": machine_info(),
      "args": {**vars(args), "lrs": lrs, "decays": decays, "seeds": seeds},
      "pretrain_mnist_test_acc": mnist_acc,
      "val_acc": val.tolist(),
      "test_acc": test.tolist(),
      "total_s": time.perf_counter() - t0,
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(result, indent=1))  # the runs, before analysis
  return write_report(out)


def write_report(out: pathlib.Path) -> int:
  """Selection, statistics, the Markdown report and the plot from ``<out>.json``."""
  result = json.loads(out.with_suffix(".json").read_text())
  args = result["args"]
  val, test = np.asarray(result["val_acc"]), np.asarray(result["test_acc"])
  result["analysis"] = analyse(val, test, args["lrs"], args["decays"])
  out.with_suffix(".json").write_text(json.dumps(result, indent=1))
  text = report(result)
  out.with_suffix(".md").write_text(text)
  plot(result, out.with_suffix(".png"))
  print(text)
  print("wrote", out.with_suffix(".json"), out.with_suffix(".md"), out.with_suffix(".png"))
  assert all(math.isfinite(x) for x in val.ravel())
  return 0


if __name__ == "__main__":
  sys.exit(main())
