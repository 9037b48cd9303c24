"""The tables of the evidence page, written from a sweep's stored analysis.

``docs/benchmarks_evidence.md`` shows a few columns of the generated sweep report's
tables (every comparison against tuned Adam, with g tuned too where it ran, every
placebo, the permutation ranks, convergence speed). This module writes those tables from the analysis stored in the
sweep's JSON, so that the page is never copied by hand, and checks or rewrites them in
the page::

  python -m benchmarks.evidence            # print the tables
  python -m benchmarks.evidence --apply    # rewrite them in docs/benchmarks_evidence.md

The main sweep's tables come first; each other sweep with its own protocol
(:data:`OTHER_SWEEPS`: the finer grids, the 20-permutation test, Fashion-MNIST) adds its
tables (against tuned Adam, the permutation ranks, convergence speed) once its file is
there.

A table in the page is found by its header line and replaced up to its last row; the
prose around it (counts, quoted values) is still written by hand.
``tests/test_sweep.py`` checks that the committed page holds exactly these tables.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
from collections.abc import Callable

from ._shared import RESULTS_DIR
from ._shared import read_json
from .report import format_p
from .report import format_pct as _pct

PAGE = RESULTS_DIR.parent.parent / "docs" / "benchmarks_evidence.md"
METRIC_LABELS = {"rmse": "RMSE", "accuracy": "accuracy"}


def _comparison_cells(r: dict) -> str:
  """Selection-aware difference, interval, re-pick rate, verdict, MDE; fixed-rate columns."""
  s = r["selection"]
  mde = f"±{100 * r['mde']:.1f}%" if math.isfinite(r["mde"]) else "–"
  return (
      f"{_pct(s['rel'])} | [{_pct(s['low'])}, {_pct(s['high'])}] | "
      f"{100 * s['changed_any']:.0f}% | **{s['verdict']}** | {mde} | "
      f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}], {r['wins']}/{r['n']} | {r['verdict']} |"
  )


_COMPARISON_COLUMNS = (
    "| rel. diff | 95% CI, rates re-selected | rate re-picked | verdict | MDE | "
    "fixed-rate 95% CI, wins | fixed-rate verdict |"
)


def vs_adam_table(analysis: dict, config_label: str = "config") -> list[str]:
  """Every optimizer against tuned Adam (``config_label`` heads the first column)."""
  lines = [
      f"| {config_label} | optimizer " + _COMPARISON_COLUMNS,
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in analysis["best_vs_adam"]:
    lines.append(f"| {r['config']} | {r['optimizer']} | {_comparison_cells(r)}")
  return lines


def tuned_g_table(analysis: dict) -> list[str]:
  """Each as-described strategy with g tuned with the learning rate, against tuned Adam."""
  lines = [
      "| config | optimizer | g, rate picked | rel. diff | 95% CI, g and rates re-selected | "
      "g or rate re-picked | verdict | MDE | fixed-rate 95% CI, wins | fixed-rate verdict |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in analysis.get("tuned_g", []):
    edge = ", at the grid's edge" if r["at_edge"] else ""
    lines.append(
        f"| {r['config']} | {r['optimizer']} | {r['g']:g}, {r['lr']:.3g}{edge} | "
        f"{_comparison_cells(r)}"
    )
  return lines


def placebo_table(analysis: dict) -> list[str]:
  """Every as-described strategy against each of its placebos."""
  lines = [
      "| config | real vs placebo " + _COMPARISON_COLUMNS,
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in analysis["placebo"]:
    strategy = r["optimizer"].removeprefix("caadam_")
    placebo = r["reference"].removeprefix(f"placebo_{strategy}_")
    lines.append(f"| {r['config']} | {strategy} vs {placebo} | {_comparison_cells(r)}")
  return lines


def permutation_table(analysis: dict, metric: str, config_label: str = "config") -> list[str]:
  """The real assignment's rank among its permutations (``config_label`` heads column one)."""
  label = METRIC_LABELS.get(metric, metric)
  lines = [
      f"| {config_label} | strategy | real: mean test {label} | permutations: min / median / max | "
      "rank of the real one | p (better than random) | p (worse than random) |",
      "|---|---|---|---|---|---|---|",
  ]
  for r in analysis["permutation"]:
    lines.append(
        f"| {r['config']} | {r['strategy']} | {r['real']:.4f} | {r['permuted_min']:.4f} / "
        f"{r['permuted_median']:.4f} / {r['permuted_max']:.4f} | {r['rank']} of {r['of']} | "
        f"{r['p_better']:.2f} | {r['p_worse']:.2f} |"
    )
  return lines


def speed_table(analysis: dict, max_epochs: int, config_label: str = "config") -> list[str]:
  """Epochs to tuned Adam's target and the area under the validation curve."""

  def epochs(x: float) -> str:  # a run that never reached the target counts max_epochs + 1
    return f">{max_epochs}" if x > max_epochs else f"{x:g}"

  lines = [
      f"| {config_label} | optimizer | reached target (a / Adam) | "
      "median epochs to target (a / Adam) | "
      "faster / slower seeds | p (Wilcoxon) | area, epochs 1-50: rel. diff [95% CI] | "
      "verdict (area) |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in analysis["speed"]:
    lines.append(
        f"| {r['config']} | {r['optimizer']} | {r['reached_a']} / {r['reached_b']} of {r['n']} | "
        f"{epochs(r['median_epochs_a'])} / {epochs(r['median_epochs_b'])} | "
        f"{r['faster']} / {r['slower']} | {format_p(r['p_epochs'])} | "
        f"{_pct(r['area_rel'])} [{_pct(r['area_ci_low'])}, {_pct(r['area_ci_high'])}] | "
        f"{r['area_verdict']} |"
    )
  return lines


def tables(results: dict, metric: str = "rmse") -> list[list[str]]:
  """The page's tables, in page order, from a sweep's stored results."""
  a = results["analysis"]
  return [
      vs_adam_table(a),
      *([tuned_g_table(a)] if a.get("tuned_g") else []),  # once the g cells have run
      placebo_table(a),
      permutation_table(a, metric),
      speed_table(a, results["protocol"]["max_epochs"]),
  ]


def _vs_adam_and_speed(results: dict, what: str) -> list[list[str]]:
  """Against tuned Adam, and convergence speed, labelled ``config (<what>, <n> seeds)``."""
  label = f"config ({what}, {results['protocol']['seeds']} seeds)"
  a = results["analysis"]
  return [vs_adam_table(a, label), speed_table(a, results["protocol"]["max_epochs"], label)]


def _fashion_tables(results: dict) -> list[list[str]]:
  return _vs_adam_and_speed(results, f"Fashion-MNIST {_images(results)}")


def _grid_tables(results: dict) -> list[list[str]]:
  """A finer learning-rate grid, labelled with its step: (high / low) ** (1 / (n - 1))."""
  grid = results["protocol"]["lr_grid"]
  step = (grid["high"] / grid["low"]) ** (1 / (grid["n"] - 1))
  return _vs_adam_and_speed(results, f"grid ×{step:.2f}")


def _images(results: dict) -> str:
  """The training subsample in the label (``10k images``), so a new protocol gets new tables."""
  n = results["protocol"].get("train_subsample")
  return f"{n // 1000}k images" if n and n % 1000 == 0 else f"{n or 'all'} images"


# Sweeps with their own protocol, shown in the page when their file is there: the file
# (under benchmarks/results) -> the tables the page shows of it, whose first column's
# label tells them from the main sweep's tables.
OTHER_SWEEPS: dict[str, Callable[[dict], list[list[str]]]] = {
    "refined/sweep_california.json.gz": _grid_tables,
    "refined139/sweep_california.json.gz": _grid_tables,
    "refined1024/sweep_california.json.gz": _grid_tables,
    "permutation20/sweep_california.json.gz": lambda results: [
        permutation_table(results["analysis"], "rmse", "config (20 permutations each)")
    ],
    "sweep_fashion.json.gz": _fashion_tables,
}


def page_tables(results_dir: pathlib.Path = RESULTS_DIR) -> list[list[str]]:
  """Every table of the page: the main sweep's, then each other sweep's that has run."""
  out = tables(read_json(results_dir / "sweep_california.json.gz"))
  for name, tables_of in OTHER_SWEEPS.items():
    path = results_dir / name
    if path.exists():
      out += tables_of(read_json(path))
  return out


def apply(page: str, new_tables: list[list[str]]) -> str:
  """``page`` with each table (found by its header line) replaced by its new rows.

  Raises:
    ValueError: a table's header is not in the page exactly once.
  """
  lines = page.splitlines()
  for table in new_tables:
    starts = [i for i, line in enumerate(lines) if line == table[0]]
    if len(starts) != 1:
      raise ValueError(f"the page has {len(starts)} tables headed {table[0]!r}; expected one")
    end = starts[0]
    while end < len(lines) and lines[end].startswith("|"):
      end += 1
    lines[starts[0] : end] = table
  return "\n".join(lines) + ("\n" if page.endswith("\n") else "")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
  parser.add_argument("--results-dir", default=str(RESULTS_DIR))
  parser.add_argument("--page", default=str(PAGE))
  parser.add_argument("--apply", action="store_true", help="rewrite the tables in --page")
  args = parser.parse_args(argv)
  new_tables = page_tables(pathlib.Path(args.results_dir))
  if not args.apply:
    print("\n\n".join("\n".join(t) for t in new_tables))
    return 0
  page = pathlib.Path(args.page)
  text = page.read_text()
  updated = apply(text, new_tables)
  page.write_text(updated)
  print(f"{page}: {'rewritten' if updated != text else 'already up to date'}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
