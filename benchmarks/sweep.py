"""Best against best: learning-rate sweeps, fresh initializations, paired tests, a placebo.

The controlled benchmark (``benchmarks.reproduce``) compares optimizers at
fixed learning rates. This script tunes everybody's learning rate instead and
compares the best against the best (results: docs/benchmarks_evidence.md):

* every optimizer (Adam, the three published-mode and the three as-described
  CaAdam variants, the placebos, ADAS) is trained at ``--n-lrs`` log-spaced
  base learning rates over ``[--lr-low, --lr-high]`` (default 7 over
  1e-4..1e-2); when the best one (lowest mean validation loss) is at an edge,
  the grid is extended by one step on that side, up to ``--widen`` times;
* every run starts from its own initialization (``--init fresh``): seed ``s``
  gives every optimizer and learning rate the same initial weights and the
  same batch order, so comparisons are paired;
* the learning rate is chosen on the validation loss (mean over seeds of the
  loss at the restored best weights) and reported on the test set;
* best-vs-best comparisons with Adam use ``benchmarks/stats.py``: paired t-test
  and Wilcoxon on per-seed relative differences, 95% intervals, Holm across
  the table, TOST at +/-1%;
* placebo control (``benchmarks/placebo.py``): for each as-described strategy, the same per-layer factor
  values randomly permuted across layers (``--permutations`` distinct ones)
  and one uniform factor with the same mean step (the parameter-weighted mean
  of the factors), each swept like the others;
* all learning rates of one optimizer train in one vmapped batch with its
  seeds (ADAS, whose ``learning_rate`` only sets its initial step sizes, runs one cell
  per learning rate); the JSON is written after every cell group and a rerun
  skips what is there, so the sweep can be run in pieces (``--configs``,
  ``--optimizers``) and resumed; a group in training is saved every
  ``--checkpoint-every`` seconds to ``<out-dir>/sweep_<task>.partial/``, so a
  stopped sweep resumes it from its last save, with the same results (the cell
  records the epochs it resumed at; its ``wall_s`` leaves out the time lost after
  the last save).

Usage::

  python -m benchmarks.sweep --task california --configs '[64,32]'
  python -m benchmarks.sweep --task california --report-only
  python -m benchmarks.sweep --quick --out-dir /tmp/sweep   # seconds, for tests

Results: ``<out-dir>/sweep_<task>.json`` (every run), ``sweep_<task>.md``
(verdicts) and ``sweep_<task>_<config>.png`` (sensitivity curves).
"""

from __future__ import annotations

import argparse
import datetime
import math
import pathlib
import re
import sys
import tempfile
import time
from collections.abc import Sequence

import jax
import numpy as np

import caadam_jax
from examples import cli_types

from . import convergence
from . import stats
from ._shared import RESULTS_DIR
from ._shared import load_results
from ._shared import machine_info
from ._shared import read_json
from ._shared import require_data_dir
from ._shared import require_results
from ._shared import save_results
from .optimizers import G_GRID
from .optimizers import G_VARIANTS
from .optimizers import OPTIMIZERS
from .optimizers import OptSpec
from .optimizers import g_variant_name
from .optimizers import g_variant_spec
from .placebo import placebo_spec
from .placebo import placebo_tables
from .report import format_p
from .report import format_pct as _pct
from .tasks import build_task
from .tasks import keras_validation_split
from .tasks import protocol_of
from .training import Checkpoint
from .training import run_cell

SWEPT = (
    "adam",
    "caadam_additive",
    "caadam_multiplicative",
    "caadam_depth",
    "keras_caadam_additive",
    "keras_caadam_multiplicative",
    "keras_caadam_depth",
)
STRATEGIES = caadam_jax.STRATEGY_NAMES
REFERENCE = "adam"
N_RESAMPLES = 4000  # seed-bootstrap resamples of the selection-aware intervals
MDE_ALPHA = 0.05  # family-wise level of the minimum detectable effects (power 0.8)
SPEED_TARGET = 1.01  # convergence target: tuned Adam's mean best validation loss x this
SPEED_HORIZON = 50  # epochs of the area under the best-so-far validation curve


def adas_spec(lr: float) -> OptSpec:
  return OptSpec(
      "adas",
      lambda: caadam_jax.adas(learning_rate=lr),
      has_lr=False,
      description="ADAS defaults except lr (its initial per-input step size), swept",
  )


# ----------------------------------------------------------------------------
# The grid and the selection (pure functions)
# ----------------------------------------------------------------------------


def grid_lr(index: int, low: float, high: float, n: int) -> float:
  """The base learning rate at grid index ``index`` (0 = ``low``, ``n - 1`` = ``high``)."""
  step = (math.log10(high) - math.log10(low)) / (n - 1)
  return float(f"{10 ** (math.log10(low) + index * step):.6g}")


def mean_val_loss(cell: dict) -> float:
  """Mean over seeds of the validation loss at the restored weights (inf if any diverged)."""
  vals = [r["final_val_loss"] for r in cell["runs"]]
  if any(v is None or not math.isfinite(v) for v in vals):
    return float("inf")
  return float(np.mean(vals))


def select(indices: Sequence[int], losses: Sequence[float]) -> int:
  """The grid index with the lowest loss (the smaller learning rate on ties)."""
  pairs = sorted(zip(indices, losses, strict=True))
  return min(pairs, key=lambda p: (p[1], p[0]))[0]


def next_indices(indices: Sequence[int], losses: Sequence[float], n: int, widen: int) -> list[int]:
  """Grid indices to add: one step beyond an edge holding the best, within ``widen`` steps.

  Args:
    indices: the indices trained so far.
    losses: their selection losses.
    n: the size of the base grid (indices 0..n-1).
    widen: how many steps the grid may grow on each side.

  Returns:
    ``[]`` when the best is inside the grid or the widening budget is spent.
  """
  best = select(indices, losses)
  lo, hi = min(indices), max(indices)
  if best == lo and lo > -widen:
    return [lo - 1]
  if best == hi and hi < n - 1 + widen:
    return [hi + 1]
  return []


# ----------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------


def cell_key(config: str, optimizer: str, lr: float) -> str:
  return f"{config}|{optimizer}|{lr:.6g}"


def cells_of(results: dict, config: str, optimizer: str) -> dict[int, dict]:
  return {
      c["grid_index"]: c
      for c in results["cells"].values()
      if c["config"] == config and c["optimizer"] == optimizer
  }


def _split_group(group: dict, indices: Sequence[int], lrs: Sequence[float]) -> list[dict]:
  out = []
  for k, lr in zip(indices, lrs, strict=True):
    cell = {key: v for key, v in group.items() if key != "runs"}
    cell["runs"] = [r for r in group["runs"] if r["lr"] == lr]
    cell.update(lr=lr, grid_index=k, group_lrs=list(lrs))
    out.append(cell)
  return out


def _progress(label: str, every: int = 25):
  start = time.perf_counter()

  def report(epoch, n_active, median_val):
    if epoch % every == 0:
      print(
          f"[sweep]   {label}: epoch {epoch}, {n_active} runs active, median val loss "
          f"{median_val:.4g}, {time.perf_counter() - start:.0f}s",
          file=sys.stderr,
          flush=True,
      )

  return report


def _one_cell_per_rate(name: str) -> bool:
  """ADAS trains one cell per learning rate (it only sets ADAS's initial step sizes)."""
  return name.startswith("adas")


def group_checkpoints(json_path, results, config, name, indices, args) -> list[Checkpoint | None]:
  """One checkpoint per cell :func:`run_group` trains (ADAS trains one cell per rate).

  They live beside the results, in ``<results>.partial/``; None each with
  ``--checkpoint-every`` < 0.
  """
  parts = [[k] for k in indices] if _one_cell_per_rate(name) else [list(indices)]
  if args.checkpoint_every < 0:
    return [None] * len(parts)
  folder = json_path.with_name(json_path.name.split(".")[0] + ".partial")
  return [
      Checkpoint(
          folder / re.sub(r"[^\w.-]+", "_", f"{config}_{name}_{'-'.join(map(str, part))}.pkl"),
          {"protocol": results["protocol"], "config": config, "optimizer": name, "grid": part},
          args.checkpoint_every,
      )
      for part in parts
  ]


def run_group(task, model, name, spec_for, indices, args, data, checkpoints) -> list[dict]:
  """Trains the missing grid points of one (config, optimizer); returns one cell per point."""
  lrs = [grid_lr(k, args.lr_low, args.lr_high, args.n_lrs) for k in indices]
  label = f"{model.name} {name}"
  if _one_cell_per_rate(name):
    cells = []
    for k, lr, checkpoint in zip(indices, lrs, checkpoints, strict=True):
      cell = run_cell(
          task, model, adas_spec(lr), data, args, _progress(label), checkpoint=checkpoint
      )
      for r in cell["runs"]:
        r["lr"] = lr
      cells += _split_group(cell, [k], [lr])
    return cells
  (checkpoint,) = checkpoints
  group = run_cell(
      task, model, spec_for(name), data, args, _progress(label), lrs=lrs, checkpoint=checkpoint
  )
  return _split_group(group, indices, lrs)


def optimizer_names(args) -> list[str]:
  names: list[str] = list(SWEPT)
  for s in STRATEGIES:
    names += [f"placebo_{s}_perm{k}" for k in range(args.permutations)]
    names.append(f"placebo_{s}_uniform")
  names.append("adas")
  names += list(G_VARIANTS)  # g tuned with the learning rate (last: the others come first)
  if args.optimizers:
    unknown = [o for o in args.optimizers if o not in names]
    if unknown:
      raise SystemExit(f"--optimizers: unknown {unknown}; known: {names}")
    names = list(dict.fromkeys(args.optimizers))  # run in the order given
  return names


def sweep_protocol(task, args) -> dict:
  proto = protocol_of(task, args)
  proto.pop("lr")
  proto["reduce_lr_on_plateau"]["min_lr"] = f"{args.min_lr / args.lr:g} x the base lr"
  proto.update(
      lr_grid={"low": args.lr_low, "high": args.lr_high, "n": args.n_lrs, "widen": args.widen},
      selection="mean over seeds of the validation loss at the restored weights",
      permutations=args.permutations,
      permutation_seed=args.permutation_seed,
  )
  return proto


def _sweep_config(config, model, names, task, args, data, results, json_path) -> list[str]:
  """Trains every missing grid point of every optimizer of one config, widening at the edges."""
  params, _ = model.init(jax.random.key(0))
  tables = {}
  for s in STRATEGIES:
    tables.update(placebo_tables(params, s, args.permutations, args.permutation_seed))
  results["placebo"][config] = {k: v["layers"] for k, v in tables.items()}

  def spec_for(name):
    if name.startswith("placebo_"):
      return placebo_spec(name, name.split("_")[1], tables[name])
    if name in G_VARIANTS:
      return g_variant_spec(name)
    return OPTIMIZERS[name]

  ran = []
  for name in names:
    if name.startswith("placebo_") and name not in tables:
      continue  # fewer distinct permutations exist than asked for
    while True:
      done = cells_of(results, config, name)
      wanted = set(range(args.n_lrs)) | set(done)
      if done:
        losses = [mean_val_loss(c) for c in done.values()]
        wanted |= set(next_indices(list(done), losses, args.n_lrs, args.widen))
      missing = [k for k in sorted(wanted) if k not in done]
      if not missing:
        break
      t0 = time.perf_counter()
      checkpoints = group_checkpoints(json_path, results, config, name, missing, args)
      for cell in run_group(task, model, name, spec_for, missing, args, data, checkpoints):
        results["cells"][cell_key(config, name, cell["lr"])] = cell
      results["updated"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
      save_results(json_path, results)
      for checkpoint in checkpoints:
        if checkpoint is not None:
          checkpoint.path.unlink(missing_ok=True)
      ran.append(f"{config}|{name}|{missing}")
      print(
          f"[sweep] {config} {name} grid {missing}: {time.perf_counter() - t0:.1f}s",
          file=sys.stderr,
          flush=True,
      )
  return ran


def args_from_protocol(args, stored: dict) -> None:
  """``--report-only``: take the protocol options from the stored runs.

  So a report rebuilds with ``--task``, ``--report-only`` and ``--out-dir`` alone,
  whatever grid, seeds, permutations or subsample the runs were made with.
  """
  grid = stored["lr_grid"]
  args.lr_low, args.lr_high, args.n_lrs, args.widen = (
      grid["low"],
      grid["high"],
      grid["n"],
      grid["widen"],
  )
  args.seeds, args.init_seed, args.shuffle_seed = (
      stored["seeds"],
      stored["init_seed"],
      stored["shuffle_seed"],
  )
  args.permutations, args.permutation_seed = stored["permutations"], stored["permutation_seed"]
  args.max_epochs, args.quick = stored["max_epochs"], stored["quick"]
  args.plateau_min_delta = stored["reduce_lr_on_plateau"]["min_delta"]
  for name in ("california_variant", "train_subsample", "resnet20"):
    if stored[name] is not None:  # None: not an option of this task
      setattr(args, name, stored[name])


def rebuild_command(task_name: str, out_dir: str | None) -> str:
  """The command that rebuilds a sweep's report from its JSON (in ``out_dir``; None: default)."""
  command = f"python -m benchmarks.sweep --task {task_name} --report-only"
  if out_dir is None:
    return command
  where = pathlib.Path(out_dir).resolve()
  if where == RESULTS_DIR:
    return command
  root = RESULTS_DIR.parent.parent
  shown = where.relative_to(root) if where.is_relative_to(root) else where
  return f"{command} --out-dir {shown}"


def run(args) -> dict:
  out_dir = pathlib.Path(args.out_dir)
  if args.report_only:  # a typo'd --out-dir must not give an empty report
    require_results(out_dir / f"sweep_{args.task}.json.gz", "--report-only")
    args_from_protocol(args, read_json(out_dir / f"sweep_{args.task}.json.gz")["protocol"])
  out_dir.mkdir(parents=True, exist_ok=True)
  require_data_dir(args.data_dir)
  requested = args.optimizers
  args.optimizers = None  # build_task only knows the reproduction's optimizers
  task, (x_full, y_full, x_test, y_test) = build_task(args)
  args.optimizers = requested
  x_train, y_train, x_val, y_val = keras_validation_split(x_full, y_full)
  if args.quick:  # a smoke run: a few batches per epoch, a short test pass
    x_train, y_train = x_train[:1024], y_train[:1024]
    x_test, y_test = x_test[:1024], y_test[:1024]
  data = (x_train, y_train, x_val, y_val, x_test, y_test)
  names = optimizer_names(args)
  json_path = out_dir / f"sweep_{task.name}.json.gz"  # gzipped: every run's loss curves
  results = load_results(json_path, sweep_protocol(task, args))
  results.setdefault("placebo", {})
  results["kind"] = "sweep"
  if not args.report_only:  # a rebuilt report still names the machine that ran the cells
    results["machine"] = machine_info()
  ran = []
  for config, make_model in task.configs.items() if not args.report_only else ():
    ran += _sweep_config(config, make_model(), names, task, args, data, results, json_path)
  results["analysis"] = analyze(results, task, names)
  save_results(json_path, results)
  md = out_dir / f"sweep_{task.name}.md"
  md.write_text(report(results, task, args))
  plots = write_plots(results, task, out_dir)
  print(f"wrote {json_path}, {md}, {plots}", file=sys.stderr)
  return {"ran": ran, "json": str(json_path), "md": str(md), "plots": plots}


# ----------------------------------------------------------------------------
# Analysis and report
# ----------------------------------------------------------------------------


def _test_values(cell: dict, metric: str) -> np.ndarray:
  runs = sorted(cell["runs"], key=lambda r: r["seed"])
  return np.array(
      [np.nan if r[f"test_{metric}"] is None else r[f"test_{metric}"] for r in runs], np.float64
  )


def best_cells(results: dict) -> dict[tuple[str, str], dict]:
  """The selected (lowest mean validation loss) cell of every (config, optimizer)."""
  groups: dict[tuple[str, str], dict[int, dict]] = {}
  for c in results["cells"].values():
    groups.setdefault((c["config"], c["optimizer"]), {})[c["grid_index"]] = c
  out = {}
  for key, by_index in groups.items():
    k = select(list(by_index), [mean_val_loss(c) for c in by_index.values()])
    out[key] = {**by_index[k], "at_edge": k in (min(by_index), max(by_index))}
  return out


def grid_arrays(
    results: dict, config: str, name: str, metric: str
) -> tuple[np.ndarray, np.ndarray]:
  """``(validation loss, test metric)`` of every grid point of one optimizer: ``(rates, seeds)``.

  Rows in grid order (smallest learning rate first); a diverged run's validation loss is inf.
  """
  cells = [c for _, c in sorted(cells_of(results, config, name).items())]
  val = np.array(
      [
          [
              math.inf if r["final_val_loss"] is None else r["final_val_loss"]
              for r in sorted(c["runs"], key=lambda r: r["seed"])
          ]
          for c in cells
      ],
      np.float64,
  )
  return val, np.stack([_test_values(c, metric) for c in cells])


def _comparison_row(results, config, name, ref_name, best, metric, margin):
  return _comparison_of(
      config,
      name,
      ref_name,
      (_test_values(best[(config, name)], metric), grid_arrays(results, config, name, metric)),
      (
          _test_values(best[(config, ref_name)], metric),
          grid_arrays(results, config, ref_name, metric),
      ),
      metric,
      margin,
  )


def _comparison_of(config, name, ref_name, side_a, side_b, metric, margin):
  """One comparison row from each side's ``(test values at its pick, (val grid, test grid))``."""
  (a, grid_a), (b, grid_b) = side_a, side_b
  c = stats.paired_comparison(a, b, margin=margin, lower_is_better=metric == "rmse")
  sel = stats.selection_aware_bootstrap(*grid_a, *grid_b, n_resamples=N_RESAMPLES)
  r = stats.relative_differences(a, b)
  return {
      "config": config,
      "optimizer": name,
      "reference": ref_name,
      **c._asdict(),
      "sd_rel": float(np.std(r, ddof=1)) if len(r) > 1 else math.nan,
      "selection": sel._asdict(),
  }


def _family(rows: list[dict], metric: str) -> list[dict]:
  """Holm's adjustment, verdicts and minimum detectable effects across one table."""
  lower = metric == "rmse"
  adjusted = stats.holm([r["p_t"] for r in rows])
  adjusted_sel = stats.holm([r["selection"]["p_boot"] for r in rows])
  m = sum(math.isfinite(r["p_t"]) for r in rows)
  for r, p, p_sel in zip(rows, adjusted, adjusted_sel, strict=True):
    r["p_holm"] = p
    c = stats.PairedComparison(**{k: r[k] for k in stats.PairedComparison._fields})
    r["verdict"] = stats.verdict(c, p, lower_is_better=lower)
    sel = stats.SelectionAwareComparison(**r["selection"])
    r["selection"]["p_holm"] = p_sel
    r["selection"]["verdict"] = stats.selection_aware_verdict(
        sel, p_sel, r["margin"], lower_is_better=lower
    )
    # The per-seed spread the selection-aware test sees (its standard error times sqrt(n)), at
    # Holm's strictest step (alpha / m): the effect the family-wise test detects with 80% power.
    n = r["selection"]["n"]
    r["mde"] = stats.minimum_detectable_effect(
        r["selection"]["se"] * math.sqrt(n), n, MDE_ALPHA / max(m, 1)
    )
  return rows


def speed_rows(results: dict, best: dict, names: Sequence[str], metric: str) -> list[dict]:
  """Convergence speed of every optimizer at its selected rate against tuned Adam, paired.

  The target is tuned Adam's mean best validation loss times ``SPEED_TARGET``; the area is
  the mean best-so-far validation loss over the first ``SPEED_HORIZON`` epochs.
  """
  rows = []
  max_epochs = results["protocol"]["max_epochs"]
  configs = list(dict.fromkeys(c for c, _ in best))
  for config in configs:
    if (config, REFERENCE) not in best:
      continue
    ref_runs = sorted(best[(config, REFERENCE)]["runs"], key=lambda r: r["seed"])
    target = SPEED_TARGET * float(np.mean([r["final_val_loss"] for r in ref_runs]))

    def per_seed(runs, target=target):
      hit = [convergence.epochs_to_target(r["val_loss"], target) for r in runs]
      epochs = np.array([max_epochs + 1 if h is None else h for h in hit], np.float64)
      area = np.array([convergence.best_so_far_area(r["val_loss"], SPEED_HORIZON) for r in runs])
      return hit, epochs, area

    hit_b, epochs_b, area_b = per_seed(ref_runs)
    for name in names:
      if name == REFERENCE or name.startswith("placebo_") or (config, name) not in best:
        continue
      runs = sorted(best[(config, name)]["runs"], key=lambda r: r["seed"])
      hit_a, epochs_a, area_a = per_seed(runs)
      c = stats.paired_comparison(area_a, area_b, lower_is_better=True)
      rows.append(
          {
              "config": config,
              "optimizer": name,
              "reference": REFERENCE,
              "target": target,
              "n": len(runs),
              "reached_a": sum(h is not None for h in hit_a),
              "reached_b": sum(h is not None for h in hit_b),
              # Not reached counts as max_epochs + 1: medians and ranks stay defined.
              "median_epochs_a": float(np.median(epochs_a)),
              "median_epochs_b": float(np.median(epochs_b)),
              "faster": int(np.sum(epochs_a < epochs_b)),
              "slower": int(np.sum(epochs_a > epochs_b)),
              "p_epochs": stats.wilcoxon_p(epochs_a - epochs_b),
              **{f"area_{k}": v for k, v in c._asdict().items()},
          }
      )
  adjusted = stats.holm([r["area_p_t"] for r in rows])
  for r, p in zip(rows, adjusted, strict=True):
    r["area_p_holm"] = p
    c = stats.PairedComparison(**{k: r[f"area_{k}"] for k in stats.PairedComparison._fields})
    r["area_verdict"] = stats.verdict(c, p, lower_is_better=True)
  return rows


def permutation_rows(best: dict, metric: str) -> list[dict]:
  """The real assignment's rank among its permutations (mean test value at each best rate)."""
  rows = []
  configs = list(dict.fromkeys(c for c, _ in best))
  for config in configs:
    for s in STRATEGIES:
      real = (config, f"caadam_{s}")
      perms = sorted(n for c, n in best if c == config and n.startswith(f"placebo_{s}_perm"))
      if real not in best or not perms:
        continue
      value = float(np.nanmean(_test_values(best[real], metric)))
      values = [float(np.nanmean(_test_values(best[(config, n)], metric))) for n in perms]
      rank, total, p_better, p_worse = stats.permutation_rank(value, values, metric == "rmse")
      rows.append(
          {
              "config": config,
              "strategy": s,
              "real": value,
              "permuted_min": min(values),
              "permuted_median": float(np.median(values)),
              "permuted_max": max(values),
              "rank": rank,
              "of": total,
              "p_better": p_better,
              "p_worse": p_worse,
          }
      )
  return rows


def _tuned_g_rows(results, config, best, metric, margin) -> list[dict]:
  """Each as-described strategy with g and the learning rate selected together, vs tuned Adam.

  The grid points of every g of :data:`G_GRID` (the default's cell included) are one grid:
  the pick is the lowest mean validation loss over all of them (the smaller g on ties), and
  the selection-aware bootstrap re-selects among all of them. A strategy is left out until
  every g of its grid has run on ``config``.
  """
  rows = []
  for s, grid in G_GRID.items():
    names = [g_variant_name(s, g) for g in grid]
    if any((config, n) not in best for n in names):
      continue
    grids = [grid_arrays(results, config, n, metric) for n in names]
    picks = [best[(config, n)] for n in names]
    k = min(range(len(names)), key=lambda i: (mean_val_loss(picks[i]), i))
    row = _comparison_of(
        config,
        f"caadam_{s}, g tuned",
        REFERENCE,
        (
            _test_values(picks[k], metric),
            (np.concatenate([v for v, _ in grids]), np.concatenate([t for _, t in grids])),
        ),
        (
            _test_values(best[(config, REFERENCE)], metric),
            grid_arrays(results, config, REFERENCE, metric),
        ),
        metric,
        margin,
    )
    rows.append(
        {
            **row,
            "g": grid[k],
            "lr": picks[k]["lr"],
            "at_edge": picks[k]["at_edge"],  # of its g's (widened) grid: the optimum may lie beyond
            "g_grid": list(grid),
        }
    )
  return rows


def analyze(results: dict, task, names: Sequence[str]) -> dict:
  metric = task.metric
  best = best_cells(results)
  configs = list(dict.fromkeys(c for c, _ in best))
  margin = stats.DEFAULT_MARGIN
  vs_adam, placebo, tuned_g = [], [], []
  for config in configs:
    if (config, REFERENCE) not in best:
      continue
    for name in names:
      if (
          name == REFERENCE
          or name.startswith("placebo_")
          or name in G_VARIANTS
          or (config, name) not in best
      ):
        continue
      vs_adam.append(_comparison_row(results, config, name, REFERENCE, best, metric, margin))
    tuned_g += _tuned_g_rows(results, config, best, metric, margin)
    for s in STRATEGIES:
      real = f"caadam_{s}"
      if (config, real) not in best:
        continue
      for name in names:
        if name.startswith(f"placebo_{s}_") and (config, name) in best:
          placebo.append(_comparison_row(results, config, real, name, best, metric, margin))
  return {
      "best": {
          f"{c}|{n}": {
              "lr": cell["lr"],
              "at_edge": cell["at_edge"],
              "mean_val_loss": mean_val_loss(cell),
              f"test_{metric}_mean": float(np.nanmean(_test_values(cell, metric))),
              f"test_{metric}_std": float(np.nanstd(_test_values(cell, metric), ddof=1)),
              "n": len(cell["runs"]),
          }
          for (c, n), cell in best.items()
      },
      "best_vs_adam": _family(vs_adam, metric),
      "placebo": _family(placebo, metric),
      "tuned_g": _family(tuned_g, metric),
      "speed": speed_rows(results, best, [n for n in names if n not in G_VARIANTS], metric),
      "permutation": permutation_rows(best, metric),
      "margin": margin,
  }


def _p(x):
  return format_p(x)


def _table(rows: list[dict], metric: str, left: str) -> list[str]:
  lines = [
      f"| config | {left} | vs | mean {metric} (a / b) | rel. diff [95% CI] | bootstrap CI of "
      "ratio | wins | p (t) | p (Wilcoxon) | p Holm | p TOST ±1% | verdict |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['config']} | {r['optimizer']} | {r['reference']} | {r['mean_a']:.4f} / "
        f"{r['mean_b']:.4f} | {_pct(r['rel'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}] | "
        f"[{_pct(r['boot_low'])}, {_pct(r['boot_high'])}] | {r['wins']}/{r['n']} | "
        f"{_p(r['p_t'])} | {_p(r['p_wilcoxon'])} | {_p(r['p_holm'])} | {_p(r['p_tost'])} | "
        f"{r['verdict']} |"
    )
  return lines


def _selection_table(rows: list[dict], left: str) -> list[str]:
  """The primary table: selection-aware intervals, verdicts and minimum detectable effects."""
  lines = [
      f"| config | {left} | vs | rel. diff | 95% interval, rates re-selected | 90% interval | "
      "selection changed (a / b / either) | p Holm | verdict | fixed-rate verdict | "
      "MDE (80% power) |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    s = r["selection"]
    mde = f"±{100 * r['mde']:.2f}%" if math.isfinite(r["mde"]) else "–"
    lines.append(
        f"| {r['config']} | {r['optimizer']} | {r['reference']} | {_pct(s['rel'])} | "
        f"[{_pct(s['low'])}, {_pct(s['high'])}] | [{_pct(s['low90'])}, {_pct(s['high90'])}] | "
        f"{100 * s['changed_a']:.0f}% / {100 * s['changed_b']:.0f}% / "
        f"{100 * s['changed_any']:.0f}% | {_p(s['p_holm'])} | {s['verdict']} | {r['verdict']} | "
        f"{mde} |"
    )
  return lines


def _speed_table(rows: list[dict], max_epochs: int) -> list[str]:
  lines = [
      "| config | optimizer (a) | target val loss | reached (a / Adam) | median epochs to target "
      "(a / Adam) | faster / slower seeds | p (Wilcoxon) | area, epochs 1-"
      f"{SPEED_HORIZON} (a / Adam) | rel. diff of area [95% CI] | p Holm | verdict |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]

  def med(x):
    return f">{max_epochs}" if x > max_epochs else f"{x:g}"

  for r in rows:
    lines.append(
        f"| {r['config']} | {r['optimizer']} | {r['target']:.5f} | {r['reached_a']}/{r['n']} / "
        f"{r['reached_b']}/{r['n']} | {med(r['median_epochs_a'])} / {med(r['median_epochs_b'])} | "
        f"{r['faster']} / {r['slower']} | {_p(r['p_epochs'])} | {r['area_mean_a']:.5f} / "
        f"{r['area_mean_b']:.5f} | {_pct(r['area_rel'])} [{_pct(r['area_ci_low'])}, "
        f"{_pct(r['area_ci_high'])}] | {_p(r['area_p_holm'])} | {r['area_verdict']} |"
    )
  return lines


def _tuned_g_section(rows: list[dict]) -> list[str]:
  """The as-described strategies with g tuned with the learning rate; nothing until they ran."""
  if not rows:
    return []
  grids = "; ".join(f"{s} {', '.join(f'{g:g}' for g in grid)}" for s, grid in G_GRID.items())
  return [
      "## Selection-aware: g tuned with the learning rate, vs Adam",
      "",
      f"Each as-described strategy with its scaling factor g selected together with the "
      f"learning rate (g: {grids}; the default's cells are the plain strategy's): the grid "
      "points of every g are one grid, selected on the mean validation loss and re-selected "
      "per resample; Adam tunes its learning rate only. Holm across this table.",
      "",
      *_selection_table(rows, "optimizer (a)"),
      "",
      "| config | optimizer (a) | g picked | learning rate picked | at the edge of its grid |",
      "|---|---|---|---|---|",
      *(
          f"| {r['config']} | {r['optimizer']} | {r['g']:g} | {r['lr']:.3g} | "
          f"{'yes' if r['at_edge'] else 'no'} |"
          for r in rows
      ),
      "",
  ]


def _permutation_table(rows: list[dict], metric: str) -> list[str]:
  lines = [
      f"| config | strategy | real: mean test {metric} | permutations: min / median / max | "
      "rank of the real one | p (better than random) | p (worse than random) |",
      "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['config']} | {r['strategy']} | {r['real']:.4f} | {r['permuted_min']:.4f} / "
        f"{r['permuted_median']:.4f} / {r['permuted_max']:.4f} | {r['rank']} of {r['of']} | "
        f"{r['p_better']:.2f} | {r['p_worse']:.2f} |"
    )
  return lines


def deviations(results: dict, task, args) -> list[str]:
  proto = results["protocol"]
  out = [
      f"Initialization: fresh per seed (`--init {proto['init']}`, seed i uses key i of "
      f"`jax.random.split(key({proto['init_seed']}), seeds)`), the same for every optimizer and "
      "learning rate; the published runs shared one initial weight set.",
      f"Seeds: {proto['seeds']} per cell (the paper: 30).",
      "Learning rate: swept (the published protocol used 1e-3 only); the reduce-on-plateau "
      f"floor is {proto['reduce_lr_on_plateau']['min_lr']} (published: 2.5e-5 at lr 1e-3).",
      f"Reduce-on-plateau min_delta: {proto['reduce_lr_on_plateau']['min_delta']:g} "
      "(the published California notebook: 1e-5; the earlier committed `california.json` used "
      "the Keras default 1e-4).",
      f"Epoch cap: {proto['max_epochs']}, meant never to bind (early stopping decides); the "
      "table of selected learning rates counts the runs that reached it.",
      "Framework: JAX/Flax, not Keras 3; our own shuffling RNG.",
  ]
  if task.name == "california":
    out.append(
        f"Data: `{proto['california_variant']}` variant of California Housing, the Keras split "
        "procedure (RandomState(113) shuffle, first 80% train, last 20% of it validation); X, y "
        "standardized on the training split; the rows may differ from Keras's npz."
    )
  else:
    sub = proto.get("train_subsample")
    out.append(
        f"Data: {task.name}, "
        + (f"first {sub} training images" if sub else "all 60000 training images")
        + " (last 20% validation), full test set; model "
        + ("ResNet-20 56x56x3" if proto.get("resnet20") else "a small CNN, not ResNet-20")
        + "."
    )
  out.append(
      "ADAS: its `learning_rate` (initial per-input step size) is swept; it has no global learning rate, "
      "so reduce-on-plateau does nothing for it."
  )
  if proto.get("quick"):
    out.append("`--quick`: a tiny smoke sweep; its numbers mean nothing.")
  return out


def _placebo_factor_lines(results: dict) -> list[str]:
  """One line per config: the factors each placebo gives its layers."""
  lines = []
  for config, tables in results.get("placebo", {}).items():
    lines.append(
        f"- {config} placebo factors: "
        + "; ".join(
            f"`{n}`: " + ", ".join(f"{lay}={v:.3g}" for lay, v in t.items())
            for n, t in tables.items()
        )
    )
  return lines


def _selected_lr_table(results: dict, metric: str) -> list[str]:
  """The table of each (config, optimizer)'s selected learning rate."""
  proto = results["protocol"]
  lines = [
      "",
      "## Selected learning rates",
      "",
      f"| config | optimizer | best lr | at grid edge | mean val loss | test {metric} (mean ± "
      "std) | seeds | runs at the epoch cap |",
      "|---|---|---|---|---|---|---|---|",
  ]
  best = best_cells(results)
  for key, b in results["analysis"]["best"].items():
    config, name = key.split("|")
    capped = sum(r["epochs"] >= proto["max_epochs"] for r in best[(config, name)]["runs"])
    lines.append(
        f"| {config} | {name} | {b['lr']:.3g} | {'yes' if b['at_edge'] else 'no'} | "
        f"{b['mean_val_loss']:.5f} | {b[f'test_{metric}_mean']:.4f} ± "
        f"{b[f'test_{metric}_std']:.4f} | {b['n']} | {capped} |"
    )
  return lines


def report(results: dict, task, args) -> str:
  """The markdown page of a sweep: verdicts, placebo control, selected rates, deviations."""
  a = results["analysis"]
  metric = task.metric
  proto = results["protocol"]
  m = results.get("machine", {})
  lines = [
      f"# `{task.name}`: best against best over a learning-rate sweep",
      "",
      f"Generated by `benchmarks/sweep.py` on {results.get('updated', '?')} "
      f"({m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} CPUs, jax "
      f"{m.get('versions', {}).get('jax', '?')}); every run is in `sweep_{task.name}.json.gz`. "
      f"Rebuild this page with `{rebuild_command(task.name, getattr(args, 'out_dir', None))}`.",
      "",
      f"Test {metric} ({'lower' if metric == 'rmse' else 'higher'} is better). Every optimizer "
      f"is trained at {proto['lr_grid']['n']} log-spaced base learning rates over "
      f"[{proto['lr_grid']['low']:g}, {proto['lr_grid']['high']:g}] (widened by up to "
      f"{proto['lr_grid']['widen']} steps when the best is at an edge); its learning rate is "
      "chosen by the mean validation loss over seeds and reported on the test set. "
      "Comparisons are paired by seed: relative difference `a_i / b_i - 1` per seed, its mean "
      "with a t-based 95% interval, a paired bootstrap interval of the ratio of means, paired "
      "t-test and Wilcoxon p-values, Holm's adjustment across each table (one family per "
      "table), and TOST against a ±1% margin. Verdict: *better*/*worse* if the Holm-adjusted "
      "t-test rejects at 0.05, *equivalent (±1%)* if TOST does, otherwise *inconclusive* "
      "(not significant is not equal).",
      "",
      "## Selection-aware: every optimizer vs Adam, learning rates re-selected per resample",
      "",
      f"The primary verdict. Seeds are resampled with replacement ({N_RESAMPLES} resamples, "
      "pairs kept together); in each resample both learning rates are selected again on the "
      "resampled validation losses and the mean relative test difference is taken at the new "
      "picks. The intervals and p-values are t-based (n - 1 degrees of freedom) on the "
      "standard error of that bootstrap statistic, so they include the selection's variance. "
      "*selection changed*: how often a resample picks another rate than all seeds do. "
      "Verdict: *better*/*worse* if the Holm-adjusted p is below 0.05, *equivalent "
      "(±1%)* if the 90% interval lies within ±1%, else *inconclusive*. *fixed-rate verdict*: "
      "the verdict of the table below, which treats the selected rates as fixed. MDE: the "
      "smallest true mean difference this test detects with 80% power at n seeds, two-sided "
      "at 0.05/m (m comparisons in the table, Holm's strictest step), from the spread it "
      "measured (standard error x sqrt(n)).",
      "",
      *_selection_table(a["best_vs_adam"], "optimizer (a)"),
      "",
      *_tuned_g_section(a.get("tuned_g", [])),
      "## Selection-aware placebo control",
      "",
      "a = the as-described CaAdam strategy, b = its placebo (the same factors permuted across "
      "layers, or one uniform factor with the same parameter-weighted mean step), each at its "
      "own best learning rate, re-selected per resample as above. *worse* means the real "
      "assignment is worse than that placebo; a real assignment no better than a permuted "
      "one can be worse or within the power of the test (MDE).",
      "",
      *_selection_table(a["placebo"], "real (a)"),
      "",
      "## Permutation rank of the real assignment",
      "",
      f"Mean test {metric} of each placebo permutation at its own best rate against the real "
      "assignment's. p (better than random) = (1 + permutations at least as good) / "
      "(permutations + 1); p (worse than random) likewise with at least as bad. With N "
      "permutations neither p can be below 1/(N + 1).",
      "",
      *_permutation_table(a.get("permutation", []), metric),
      "",
      "## Convergence speed: every optimizer vs Adam, each at its own best learning rate",
      "",
      f"From the stored validation curves, paired by seed. Target: tuned Adam's mean best "
      f"validation loss x {SPEED_TARGET:g} (one per config); epochs to target: the first epoch "
      f"at or below it (not reached: counted as more than the {proto['max_epochs']}-epoch cap "
      "in the medians and the Wilcoxon test on per-seed differences). Area: mean best-so-far "
      f"validation loss over epochs 1-{SPEED_HORIZON} (smaller: lower sooner), compared as "
      "above (t-test, Holm, TOST ±1%). Epochs, not seconds: the runs train in vmapped "
      "batches, so a run has no wall time of its own.",
      "",
      *_speed_table(a.get("speed", []), proto["max_epochs"]),
      "",
      "## Fixed-rate: every optimizer vs Adam, each at its own best learning rate",
      "",
      "The selected learning rates taken as fixed (the intervals omit the selection's "
      "variance; see the selection-aware table above).",
      "",
      *_table(a["best_vs_adam"], metric, "optimizer (a)"),
      "",
      "## Fixed-rate placebo control: connection-aware factors vs the same factors permuted "
      "across layers",
      "",
      "a = the as-described CaAdam strategy, b = its placebo, each at its own best learning "
      "rate taken as fixed.",
      "",
      *_table(a["placebo"], metric, "real (a)"),
      "",
  ]
  lines += _placebo_factor_lines(results)
  lines += _selected_lr_table(results, metric)
  # A cell group's wall time is stored in each of its cells: count it once.
  wall = sum(c["wall_s"] for c in results["cells"].values() if c["lr"] == c["group_lrs"][0])
  lines += [
      "",
      f"Compute: {wall / 3600:.2f} h of cell wall time over {len(results['cells'])} cells "
      "(sum over cell groups; the machine was shared, so this is an upper bound).",
      "",
      "## Deviations from the published protocol",
      "",
      *[f"- {d}" for d in deviations(results, task, args)],
      "",
      f"Plots: `sweep_{task.name}_<config>.png`: test {metric} against the base learning rate, "
      "mean over seeds with a band from the minimum to the maximum seed (left Adam and the "
      "as-described strategies, right Adam, the published mode and ADAS); "
      f"`sweep_{task.name}_<config>_placebo.png` (where placebos ran): each as-described "
      f"strategy with its placebos; `sweep_{task.name}_speed.png`: median best-so-far "
      "validation loss per epoch of Adam and the as-described strategies at their selected "
      "rates, with the speed target.",
      "",
  ]
  return "\n".join(lines)


def _lr_panel(ax, by_opt: dict, names: Sequence[str], metric: str, title: str) -> None:
  """Test metric against the base learning rate: mean over seeds, band from the min to the max."""
  ax.set_title(title, fontsize=11)
  shown = []
  for name in names:
    if name not in by_opt:
      continue
    cells = sorted(by_opt[name], key=lambda c: c["lr"])
    lrs = np.array([c["lr"] for c in cells])
    vals = np.stack([_test_values(c, metric) for c in cells])
    many_perms = name.startswith("placebo_") and "_perm" in name and len(names) > 6
    ls = ":" if name.startswith("placebo_") else ("--" if name.startswith("keras_") else "-")
    if many_perms:  # many permutations: thin grey lines, one legend entry
      first = not any(n.startswith("placebo_") and "_perm" in n for n in shown)
      ax.plot(
          lrs,
          np.nanmean(vals, 1),
          "-",
          color="0.6",
          lw=0.8,
          label="permutations" if first else None,
      )
    else:
      (line,) = ax.plot(lrs, np.nanmean(vals, 1), ls, marker="o", ms=3, lw=1.6, label=name)
      ax.fill_between(
          lrs, np.nanmin(vals, 1), np.nanmax(vals, 1), color=line.get_color(), alpha=0.10
      )
    shown.append(name)
  finite = np.concatenate(
      [_test_values(c, metric) for n in shown for c in by_opt[n]] or [np.zeros(1)]
  )
  finite = finite[np.isfinite(finite)]
  if len(finite):
    lo, hi = np.percentile(finite, [0, 80])
    pad = 0.05 * (hi - lo + 1e-9)
    ax.set_ylim(lo - pad, hi + pad)
  ax.set_xscale("log")
  ax.set_xlabel("base learning rate", fontsize=10)
  ax.set_ylabel(f"test {metric}", fontsize=10)
  ax.tick_params(labelsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=9)


def _speed_panel(ax, best: dict, config: str, names: Sequence[str], target: float) -> None:
  """Median over seeds of the best-so-far validation loss per epoch, each at its best rate."""
  for name in names:
    if (config, name) not in best:
      continue
    runs = best[(config, name)]["runs"]
    horizon = max(len(r["val_loss"]) for r in runs)
    curves = []
    for r in runs:
      curve = np.minimum.accumulate(
          np.array([np.inf if v is None else v for v in r["val_loss"]], np.float64)
      )
      curves.append(np.concatenate([curve, np.full(horizon - len(curve), curve[-1])]))
    ls = "--" if name.startswith("keras_") else "-"
    ax.plot(np.arange(1, horizon + 1), np.median(curves, 0), ls, lw=1.6, label=name)
  ax.axhline(target, color="k", lw=0.8, ls=":", label=f"target {target:.4f}")
  ax.set_ylim(target * 0.97, target * 1.25)
  ax.set_xlim(0, 2.5 * SPEED_HORIZON)
  ax.set_title(f"{config}", fontsize=11)
  ax.set_xlabel("epoch", fontsize=10)
  ax.set_ylabel("best-so-far val loss (median)", fontsize=10)
  ax.tick_params(labelsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=9)


def _permutation_panel(ax, best: dict, config: str, rows: list[dict], metric: str) -> None:
  """Each strategy's permutations, uniform placebo and real assignment, each at its best rate."""
  labels = []
  for y, row in enumerate(rows):
    s = row["strategy"]
    perms = sorted(n for c, n in best if c == config and n.startswith(f"placebo_{s}_perm"))
    values = [float(np.nanmean(_test_values(best[(config, n)], metric))) for n in perms]
    ax.plot(values, np.full(len(values), y), "|", color="0.45", ms=14, mew=1.4)
    uniform = (config, f"placebo_{s}_uniform")
    if uniform in best:
      value = float(np.nanmean(_test_values(best[uniform], metric)))
      ax.plot([value], [y], "^", color="tab:blue", ms=8)
    ax.plot([row["real"]], [y], "D", color="tab:red", ms=8)
    labels.append(f"{s}\nrank {row['rank']} of {row['of']}")
  if (config, REFERENCE) in best:
    adam = float(np.nanmean(_test_values(best[(config, REFERENCE)], metric)))
    ax.axvline(adam, color="k", ls="--", lw=1.0)
  # Legend entries without data: the markers' meaning once.
  for marker, color, label in (
      ("|", "0.45", "permuted assignment"),
      ("^", "tab:blue", "uniform (same mean step)"),
      ("D", "tab:red", "real assignment"),
  ):
    ax.plot([], [], marker, color=color, ls="", label=label)
  ax.plot([], [], "k--", lw=1.0, label="Adam, tuned")
  ax.set_yticks(range(len(rows)), labels, fontsize=9)
  ax.set_ylim(-0.6, len(rows) - 0.4)
  ax.invert_yaxis()
  ax.set_title(f"{config}: mean test {metric} at each one's best rate", fontsize=11)
  ax.set_xlabel(f"test {metric} ({'lower' if metric == 'rmse' else 'higher'} is better)")
  ax.tick_params(labelsize=9)
  ax.grid(alpha=0.3, axis="x")
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: no marker hidden


def _file_part(config: str) -> str:
  """A config's name in file names: ``[64,32]`` -> ``64-32``."""
  return config.strip("[]").replace(",", "-")


def _grid(plt, n: int):
  """``n`` panels, two per row (readable at page width); unused axes hidden."""
  rows = (n + 1) // 2
  cols = min(n, 2)
  fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.6 * rows), squeeze=False)
  flat = list(axes.flat)
  for ax in flat[n:]:
    ax.set_visible(False)
  return fig, flat[:n]


def write_plots(results: dict, task, out_dir: pathlib.Path) -> list[str]:
  """Sensitivity plots (optimizers; placebos where they ran) per config and one speed plot.

  At most five series per panel, so each reads at page width.
  """
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return []
  metric = task.metric
  groups: dict[str, dict[str, list[dict]]] = {}
  for c in results["cells"].values():
    groups.setdefault(c["config"], {}).setdefault(c["optimizer"], []).append(c)
  written = []

  def save(fig, name):
    fig.tight_layout()
    path = out_dir / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))

  for config, by_opt in groups.items():
    safe = _file_part(config)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), squeeze=False)
    described = [REFERENCE, *(f"caadam_{s}" for s in STRATEGIES)]
    published = [REFERENCE, *(f"keras_caadam_{s}" for s in STRATEGIES), "adas"]
    _lr_panel(axes[0][0], by_opt, described, metric, f"{config}: Adam and CaAdam as described")
    _lr_panel(axes[0][1], by_opt, published, metric, f"{config}: Adam, published mode, ADAS")
    save(fig, f"sweep_{task.name}_{safe}.png")
    with_placebo = [s for s in STRATEGIES if any(n.startswith(f"placebo_{s}_") for n in by_opt)]
    if with_placebo:
      fig, axes = _grid(plt, len(with_placebo))
      for ax, s in zip(axes, with_placebo, strict=False):
        names = [f"caadam_{s}", *sorted(n for n in by_opt if n.startswith(f"placebo_{s}_"))]
        _lr_panel(ax, by_opt, names, metric, f"{config}: {s}, real vs placebos")
      save(fig, f"sweep_{task.name}_{safe}_placebo.png")
    ran_g = {G_VARIANTS[n][0] for n in by_opt if n in G_VARIANTS}
    with_g: list[caadam_jax.StrategyName] = [t for t in G_GRID if t in ran_g]
    if with_g:
      fig, axes = _grid(plt, len(with_g))
      for ax, strategy in zip(axes, with_g, strict=False):
        names = [g_variant_name(strategy, g) for g in G_GRID[strategy]]
        _lr_panel(ax, by_opt, [REFERENCE, *names], metric, f"{config}: {strategy}, g tuned")
      save(fig, f"sweep_{task.name}_{safe}_g.png")
  best = best_cells(results)
  permutation = results.get("analysis", {}).get("permutation", [])
  for config in dict.fromkeys(r["config"] for r in permutation):
    rows = [r for r in permutation if r["config"] == config]
    fig, ax = plt.subplots(figsize=(10, 1.6 + 1.0 * len(rows)))
    _permutation_panel(ax, best, config, rows, metric)
    save(fig, f"sweep_{task.name}_{_file_part(config)}_permutation.png")
  speed = results.get("analysis", {}).get("speed", [])
  configs = list(dict.fromkeys(r["config"] for r in speed))
  if configs:
    fig, axes = _grid(plt, len(configs))
    for ax, config in zip(axes, configs, strict=False):
      target = next(r["target"] for r in speed if r["config"] == config)
      names = [REFERENCE, *(f"caadam_{s}" for s in STRATEGIES)]
      _speed_panel(ax, best, config, names, target)
    save(fig, f"sweep_{task.name}_speed.png")
  return written


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
  p.add_argument("--task", default="california", choices=["california", "fashion"])
  p.add_argument("--data-dir", default=None)
  p.add_argument("--california-variant", default="statlib", choices=["statlib", "sklearn"])
  p.add_argument("--resnet20", action="store_true")
  p.add_argument("--train-subsample", type=int, default=None)
  p.add_argument("--seeds", type=cli_types.positive_int, default=10)
  p.add_argument("--init-seed", type=cli_types.non_negative_int, default=0)
  p.add_argument("--shuffle-seed", type=cli_types.non_negative_int, default=1234)
  p.add_argument("--max-epochs", type=cli_types.positive_int, default=None)
  p.add_argument("--lr-low", type=cli_types.positive_float, default=1e-4)
  p.add_argument("--lr-high", type=cli_types.positive_float, default=1e-2)
  p.add_argument("--n-lrs", type=cli_types.positive_int, default=7)
  p.add_argument(
      "--widen",
      type=cli_types.non_negative_int,
      default=2,
      help="grid steps the sweep may add per side",
  )
  p.add_argument(
      "--permutations",
      type=cli_types.non_negative_int,
      default=3,
      help="placebo permutations per strategy",
  )
  p.add_argument("--permutation-seed", type=cli_types.non_negative_int, default=0)
  p.add_argument(
      "--plateau-min-delta",
      type=cli_types.non_negative_float,
      default=None,
      help="reduce-on-plateau min_delta (default: 1e-5 for California as its published "
      "notebook, the Keras default 1e-4 otherwise)",
  )
  p.add_argument("--configs", nargs="*", default=None)
  p.add_argument(
      "--optimizers",
      nargs="*",
      default=None,
      help="subset to train, in this order (default: all; see optimizer_names)",
  )
  p.add_argument("--out-dir", default=None)
  p.add_argument(
      "--checkpoint-every",
      type=cli_types.finite_float,
      default=600.0,
      help="seconds between saves of a group in training, so a stopped sweep resumes it "
      "mid-way (0: after every epoch; negative: never)",
  )
  p.add_argument("--quick", action="store_true", help="a tiny sweep (seconds), for tests")
  p.add_argument("--report-only", action="store_true")
  args = p.parse_args(argv)
  if args.n_lrs < 2:
    raise SystemExit(f"--n-lrs must be at least 2, got {args.n_lrs}.")
  if not args.lr_low < args.lr_high:  # each is > 0 (cli_types.positive_float)
    raise SystemExit(f"--lr-low must be below --lr-high, got {args.lr_low}, {args.lr_high}.")
  # Fixed parts of the protocol that build_task/run_cell read.
  args.init, args.lr, args.min_lr, args.compact = "fresh", 1e-3, 2.5e-5, True
  args.eval_chunk = 128 if args.resnet20 else 1024
  if args.plateau_min_delta is None:
    args.plateau_min_delta = 1e-5 if args.task == "california" else 1e-4
  if args.quick:
    args.seeds = min(args.seeds, 2)
    # Few compilations: two grid points, no widening, no compaction retraces.
    args.n_lrs, args.widen, args.permutations, args.compact = 2, 0, 1, False
    args.lr_low, args.lr_high = 1e-3, 1e-2
    if args.optimizers is None:
      args.optimizers = ["adam", "caadam_additive", "placebo_additive_uniform", "adas"]
    if args.train_subsample is None and args.task != "california":
      args.train_subsample = 1024
  if args.train_subsample is not None and args.train_subsample <= 0:
    args.train_subsample = 0
  if args.out_dir is None:
    args.out_dir = tempfile.mkdtemp(prefix="caadam_sweep_") if args.quick else str(RESULTS_DIR)
  return args


def main(argv=None) -> dict:
  return run(parse_args(argv))


if __name__ == "__main__":
  main()
