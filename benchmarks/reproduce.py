"""Does connection awareness beat Adam once the learning rate is controlled?

A controlled reproduction of the published CaAdam experiments (docs/published.md
says what the published code ran). The published gains were measured against Adam
at one learning rate, while the published code (Keras package ``caadam`` 0.1.1)
effectively multiplied the learning rate of every kernel by about 2 (additive) or 5
(multiplicative). This script trains every optimizer ("cell") on the published protocol and adds
the missing controls: Adam at 2x and 5x the learning rate, AdamW and ADAS.

Tasks:

* ``california``: California Housing, the six published MLPs ``8 -> hidden -> 1``
  (ReLU), X and y standardized on the training split (RMSE in standard
  deviations of y), batch 128; split as Keras's ``california_housing.load_data``
  (``RandomState(113)`` shuffle, first 80% train).
* ``fashion``: Fashion-MNIST, a small CNN (conv 16 s2 -> conv 32 s2 -> dense 10)
  on a training subsample that trains in minutes on CPU; ``--resnet20`` selects
  the published ResNet-20 on 56x56 3-channel inputs instead (for GPU machines).
* ``mnist``: MNIST, ``784 -> 256 ReLU -> 10`` (ADAS vs Adam).

Protocol (published): lr 1e-3; the last 20% of the training split is the
validation set (Keras ``validation_split``); early stopping on the validation
loss (min_delta 1e-5, patience 25 from epoch 12 for California, 15 for images,
restoring the best weights) and reduce-on-plateau of the learning rate (factor
0.25, patience 8 / 6, floor 2.5e-5), with Keras 3 semantics
(``benchmarks/callbacks.py``); an epoch cap (``--max-epochs``).

Speed: all seeds of one cell train together (``benchmarks/training.py``): one
jitted, ``vmap``-ed epoch function with a ``lax.scan`` over the batches; a stopped
seed is frozen while the others go on, and stopped seeds leave the batch once at
most half are active.

The pieces: ``benchmarks/models.py``, ``optimizers.py`` (the cells), ``tasks.py``
(data and protocol), ``training.py``, ``report.py`` (tables and plots).

Usage::

  python -m benchmarks.reproduce --task california --data-dir ../shared/data
  python -m benchmarks.reproduce --task fashion --seeds 5
  python -m benchmarks.reproduce --task california --quick      # < 3 min smoke run

Results go to ``benchmarks/results/<task>.json`` (every run, versions and
machine), ``<task>.md`` (tables) and ``<task>_box.png`` / ``<task>_curves.png``.
The sweep is resumable: cells already in the JSON are skipped. ``--quick``
writes to a temporary directory unless ``--out-dir`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys
import tempfile

import numpy as np

from examples import cli_types
from examples import data_files

from ._shared import RESULTS_DIR
from ._shared import load_results
from ._shared import machine_info
from ._shared import require_data_dir
from ._shared import require_results
from ._shared import save_results
from .optimizers import OPTIMIZERS
from .report import cell_key
from .report import factor_notes_for
from .report import metric_values
from .report import summarize
from .report import write_markdown
from .report import write_plots
from .tasks import Task
from .tasks import build_task
from .tasks import keras_validation_split
from .tasks import protocol_of
from .training import run_cell


def _parser() -> argparse.ArgumentParser:
  """The options, one ``add_argument`` each (a flat list: long, but read at a glance)."""
  p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
  p.add_argument("--task", default="california", choices=["california", "fashion", "mnist"])
  p.add_argument(
      "--data-dir", default=None, help=f"data directory (default ${data_files.DATA_ENV_VAR})"
  )
  p.add_argument("--california-variant", default="statlib", choices=["statlib", "sklearn"])
  p.add_argument(
      "--resnet20",
      action="store_true",
      help="fashion: the published ResNet-20 on 56x56x3 (for GPU machines)",
  )
  p.add_argument(
      "--train-subsample",
      type=int,
      default=None,
      help="images: use the first N training images (fashion default with the "
      "small CNN: 6000; 0 or a negative value for all)",
  )
  p.add_argument("--seeds", type=cli_types.positive_int, default=10)
  p.add_argument(
      "--init",
      default="shared",
      choices=["shared", "fresh"],
      help="shared: one initial weight set for all runs (published protocol); "
      "fresh: one per seed",
  )
  p.add_argument("--init-seed", type=cli_types.non_negative_int, default=0)
  p.add_argument("--shuffle-seed", type=cli_types.non_negative_int, default=1234)
  p.add_argument(
      "--max-epochs",
      type=cli_types.positive_int,
      default=None,
      help="epoch cap (default 300 California, 50 images)",
  )
  p.add_argument("--lr", type=cli_types.positive_float, default=1e-3)
  p.add_argument("--min-lr", type=cli_types.positive_float, default=2.5e-5)
  p.add_argument(
      "--plateau-min-delta",
      type=cli_types.non_negative_float,
      default=1e-4,
      help="reduce-on-plateau min_delta (default 1e-4, the Keras default the committed "
      "results used; the published California notebook used 1e-5)",
  )
  p.add_argument("--configs", nargs="*", default=None, help="subset of configs, e.g. '[64,32]'")
  p.add_argument("--optimizers", nargs="*", default=None, help=f"subset of {list(OPTIMIZERS)}")
  p.add_argument("--eval-chunk", type=cli_types.positive_int, default=None)
  p.add_argument(
      "--out-dir",
      default=None,
      help=f"output directory (default {RESULTS_DIR}; a temporary one with --quick)",
  )
  p.add_argument("--quick", action="store_true", help="a tiny sweep (< 3 minutes), for tests")
  p.add_argument(
      "--merge-from",
      nargs="*",
      default=None,
      metavar="DIR",
      help="first copy into this sweep the cells of <DIR>/<task>.json files run with "
      "the same protocol (e.g. parts of one sweep run in parallel processes)",
  )
  p.add_argument(
      "--report-only",
      action="store_true",
      help="train nothing: (merge and) rewrite the markdown and plots from the JSON",
  )
  p.add_argument("--no-progress", action="store_true")
  p.add_argument(
      "--no-compact",
      dest="compact",
      action="store_false",
      help="keep stopped seeds in the vmapped batch (frozen) until the cell ends",
  )
  return p


def parse_args(argv=None):
  args = _parser().parse_args(argv)
  if args.train_subsample is not None and args.train_subsample <= 0:
    args.train_subsample = 0
  if args.quick:
    args.seeds = min(args.seeds, 2)
    if args.train_subsample is None and args.task != "california":
      args.train_subsample = 1024
  if args.eval_chunk is None:
    args.eval_chunk = 128 if args.resnet20 else 1024
  if args.out_dir is None:
    args.out_dir = tempfile.mkdtemp(prefix="caadam_reproduce_") if args.quick else str(RESULTS_DIR)
  return args


def _add_notes(task: Task, args, sizes: tuple[int, int, int]) -> None:
  """The report's notes on the data and the protocol; ``sizes``: train, validation, test."""
  if task.name == "california":
    task.notes += [
        (
            f"Data: `{args.california_variant}` variant of California Housing "
            "(`cal_housing.data.gz`: the 8 raw StatLib features Keras's loader also serves; "
            "`sklearn`: the derived features of `fetch_california_housing`), Keras split "
            "(RandomState(113) shuffle, first 80% train), X and y standardized with the mean/std "
            "of the 80% training split (validation part included), RMSE in std units of y."
        ),
        (
            f"Sizes: train {sizes[0]}, validation {sizes[1]} (last 20% of the training "
            f"split, Keras `validation_split`), test {sizes[2]}."
        ),
        (
            "Remaining differences from the published setup: JAX/Flax instead of Keras 3 "
            "(same Glorot-uniform kernels and zero biases, same float32 Keras-form Adam in the "
            "published-mode cells), our own shuffling RNG; the StatLib row order may differ from "
            "the `california_housing.npz` Keras downloads, so the split is the same procedure but "
            "not necessarily the same rows; the published runs shared one initial weight set per "
            "optimizer notebook, ours share one per config across all optimizers "
            f"(`--init {args.init}`); {args.seeds} runs per cell instead of 30; epoch cap "
            f"{task.max_epochs}."
        ),
    ]
  else:
    task.notes += [
        f"Data: {task.name} training images "
        + (
            f"subsampled to the first {args.train_subsample} (for CPU speed)"
            if args.train_subsample
            else "(all 60000)"
        )
        + f"; train {sizes[0]}, validation {sizes[1]} (last 20%), test {sizes[2]} "
        "(full test set). Pixels in [0, 1], no augmentation.",
        "Model: "
        + (
            "the published ResNet-20 on 56x56x3 upscaled inputs"
            if args.resnet20
            else "a small CNN (conv 3x3/2 16 -> conv 3x3/2 32 -> dense 10, ReLU), not the "
            "published ResNet-20 (use `--resnet20` on a GPU machine)"
        )
        + f"; batch {task.batch_size}; epoch cap {task.max_epochs}.",
    ]
  task.notes.append(
      "Reduce-on-plateau scales the base learning rate of every optimizer that has one "
      "(Adam ×2/×5: their floor is scaled too, so they are exactly Adam with the whole "
      "schedule multiplied); ADAS has no global learning rate and gets no plateau scaling. "
      "Early stopping (with restoring the best weights) applies to every optimizer."
  )
  task.notes.append(
      'Times: all runs of a cell train together (vmapped over seeds); "cell wall s" includes '
      'compilation, "s/epoch" is one epoch of all seeds. On a shared, loaded machine the '
      "seconds are noisy (cells ran in parallel processes): compare epochs, not seconds."
  )


def _merge(results: dict, json_path: pathlib.Path, task: Task, protocol: dict, merge_from) -> None:
  """Copies in the cells of other results files of the same protocol (``--merge-from``)."""
  for other_dir in merge_from or ():
    other = load_results(
        pathlib.Path(other_dir) / f"{task.name}.json", protocol, required="--merge-from"
    )
    new = {k: v for k, v in other["cells"].items() if k not in results["cells"]}
    results["cells"].update(new)
    if new:
      results.setdefault("merged_from", []).append(
          {"dir": str(other_dir), "cells": sorted(new), "machine": other.get("machine")}
      )
      save_results(json_path, results)
    print(f"merged {len(new)} cells from {other_dir}", file=sys.stderr)


def _progress_bar(total: int, task: Task, args):
  try:
    from tqdm import tqdm
  except ImportError:  # pragma: no cover
    return None
  return tqdm(total=total, desc=f"{task.name} cells", disable=args.no_progress, file=sys.stderr)


def _train_missing(task: Task, data, args, results: dict, json_path: pathlib.Path):
  """Trains every cell not in ``results`` yet, saving after each; returns (ran, skipped)."""
  todo = [] if args.report_only else [(c, o) for c in task.configs for o in task.optimizers]
  bar = _progress_bar(len(todo), task, args)
  ran, skipped = [], []
  for config, opt_name in todo:
    key = cell_key(config, opt_name)
    if key in results["cells"]:
      skipped.append(key)
      if bar:
        bar.update(1)
      continue
    model = task.configs[config]()
    if bar:
      bar.set_description(f"{task.name} {key}")

    def progress(epoch, n_active, median_val):
      if bar:
        bar.set_postfix_str(f"epoch {epoch}, {n_active} active, val {median_val:.4g}")

    cell = run_cell(task, model, OPTIMIZERS[opt_name], data, args, progress)
    results["cells"][key] = cell
    results["updated"] = _now()
    save_results(json_path, results)
    ran.append(key)
    print(
        f"[{task.name}] {key}: {task.metric} "
        f"{np.nanmean(metric_values(cell, task.metric)):.4f}, "
        f"epochs {np.mean([r['epochs'] for r in cell['runs']]):.1f}, {cell['wall_s']:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    if bar:
      bar.update(1)
  if bar:
    bar.close()
  return ran, skipped


def _now() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _write_report(results: dict, task: Task, out_dir: pathlib.Path, json_path: pathlib.Path):
  summary = summarize(results, task.name)
  results["summary"] = summary
  results.setdefault("updated", _now())
  save_results(json_path, results)
  try:
    notes = factor_notes_for(task)
  except Exception as e:  # noqa: BLE001
    notes = {}
    print(f"factor notes failed: {e!r}", file=sys.stderr)
  write_markdown(results, task, out_dir / f"{task.name}.md", summary, notes)
  plots = write_plots(results, task, out_dir)
  print(f"wrote {json_path}, {out_dir / (task.name + '.md')}, {plots}", file=sys.stderr)
  return summary


def main(argv=None) -> dict:
  args = parse_args(argv)
  out_dir = pathlib.Path(args.out_dir)
  if args.report_only:  # a typo'd --out-dir must not give an empty report
    require_results(out_dir / f"{args.task}.json", "--report-only")
  for other_dir in args.merge_from or ():  # fail before training, not after
    require_results(pathlib.Path(other_dir) / f"{args.task}.json", "--merge-from")
  out_dir.mkdir(parents=True, exist_ok=True)
  require_data_dir(args.data_dir)
  task, (x_train_full, y_train_full, x_test, y_test) = build_task(args)
  if task.name != "california" and args.train_subsample == 0:
    args.train_subsample = None
  x_train, y_train, x_val, y_val = keras_validation_split(x_train_full, y_train_full)
  data = (x_train, y_train, x_val, y_val, x_test, y_test)
  _add_notes(task, args, (len(x_train), len(x_val), len(x_test)))
  protocol = protocol_of(task, args)
  json_path = out_dir / f"{task.name}.json"
  results = load_results(json_path, protocol)
  if not args.report_only:  # a rebuilt report still names the machine that ran the cells
    results["machine"] = machine_info()
  _merge(results, json_path, task, protocol, args.merge_from)
  ran, skipped = _train_missing(task, data, args, results, json_path)
  summary = _write_report(results, task, out_dir, json_path)
  return {
      "ran": ran,
      "skipped": skipped,
      "out_dir": str(out_dir),
      "json": str(json_path),
      "summary": summary,
  }


if __name__ == "__main__":
  main()
