"""Tests for benchmarks/sweep.py (learning-rate sweeps, placebo control, report)."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import math
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_reproduce import ROOT  # tests/ is on sys.path under pytest
from test_reproduce import _synthetic
from test_reproduce import _tiny_task
from test_reproduce import results_dir

import caadam_jax
from benchmarks import models
from benchmarks import optimizers
from benchmarks import placebo
from benchmarks import stats
from benchmarks import sweep
from benchmarks import tasks
from benchmarks import training
from benchmarks._shared import load_results
from benchmarks._shared import read_json
from benchmarks._shared import save_results

# Slow tier: tests of benchmarks/ (the fast tier tests the library).
pytestmark = [pytest.mark.slow, pytest.mark.external]


def _mlp_params(hidden=(64, 32)):
  model = models.ModelSpec("m", models.MLP(hidden, 1), (8,))
  return model.init(jax.random.key(0))[0]


def test_pieces_saved_to_one_file_keep_each_others_cells(tmp_path):
  """Two runs of a study in pieces, loaded before either saved, lose no cell."""
  path = tmp_path / "sweep_t.json.gz"
  protocol = {"task": "t", "seeds": 2}
  first, second = load_results(path, protocol), load_results(path, protocol)
  first["cells"]["a|adam|0.001"] = {"v": 1}
  save_results(path, first)
  second["cells"]["a|adas|0.001"] = {"v": 2}
  second["cells"]["a|adam|0.001"] = {"v": 3}  # a cell in both: the saver's copy wins
  save_results(path, second)
  first["cells"]["b|adam|0.001"] = {"v": 4}
  save_results(path, first)
  with gzip.open(path, "rt") as f:
    stored = json.load(f)
  assert stored["cells"] == {
      "a|adam|0.001": {"v": 1},
      "a|adas|0.001": {"v": 2},
      "b|adam|0.001": {"v": 4},
  }
  assert load_results(path, protocol)["cells"] == stored["cells"]
  with pytest.raises(SystemExit, match="different protocol"):
    load_results(path, {"task": "t", "seeds": 3})
  other = {"format": 1, "protocol": {"task": "t", "seeds": 3}, "cells": {}}
  with pytest.raises(SystemExit, match="another protocol"):
    save_results(path, other)


def test_grid_is_log_spaced():
  assert [sweep.grid_lr(k, 1e-4, 1e-2, 7) for k in (0, 3, 6)] == [1e-4, 1e-3, 1e-2]
  assert sweep.grid_lr(1, 1e-4, 1e-2, 7) == pytest.approx(10 ** (-4 + 1 / 3), rel=1e-5)
  # Widening continues the same geometric step beyond the edges.
  assert sweep.grid_lr(-1, 1e-4, 1e-2, 7) == pytest.approx(1e-4 / 10 ** (1 / 3), rel=1e-5)
  assert sweep.grid_lr(7, 1e-4, 1e-2, 7) == pytest.approx(1e-2 * 10 ** (1 / 3), rel=1e-5)


def test_selection_and_widening():
  idx = list(range(7))
  interior = [5, 4, 3, 2, 3, 4, 5]
  assert sweep.select(idx, interior) == 3 and sweep.next_indices(idx, interior, 7, 2) == []
  low = [1, 2, 3, 4, 5, 6, 7]
  assert sweep.next_indices(idx, low, 7, 2) == [-1]
  assert sweep.next_indices([-2, *idx], [0.5, *low], 7, 2) == []  # budget spent
  assert sweep.next_indices([-1, *idx], [0.5, *low], 7, 2) == [-2]
  high = low[::-1]
  assert sweep.next_indices(idx, high, 7, 2) == [7]
  assert sweep.next_indices(idx, high, 7, 0) == []
  # A diverged learning rate (inf) is never selected; ties go to the smaller one.
  assert sweep.select([0, 1, 2], [math.inf, 2.0, 2.0]) == 1
  cell = {"runs": [{"final_val_loss": 0.2}, {"final_val_loss": None}]}
  assert sweep.mean_val_loss(cell) == math.inf


def test_placebo_factors_by_hand():
  """[64,32]: c = 512, 2048, 32 -> additive factors 1, 0.05, 1.95 (med, max, min)."""
  params = _mlp_params()
  layers, factor, size = placebo.layer_factors(params, "additive")
  assert layers == ["Dense_0", "Dense_1", "Dense_2"]
  assert [factor[k] for k in layers] == pytest.approx([1.0, 1 - 0.95, 1 + 0.95])
  assert [size[k] for k in layers] == [8 * 64 + 64, 64 * 32 + 32, 32 + 1]
  tables = placebo.placebo_tables(params, "additive", n_permutations=3, seed=0)
  perms = [tables[f"placebo_additive_perm{k}"]["layers"] for k in range(3)]
  real = (1.0, 0.05, 1.95)
  seen = set()
  for p in perms:
    values = tuple(p[k] for k in layers)
    assert sorted(values) == pytest.approx(sorted(real)) and values != pytest.approx(real)
    seen.add(values)
  assert len(seen) == 3
  uniform = tables["placebo_additive_uniform"]["layers"]
  mean = (576 * 1.0 + 2080 * 0.05 + 33 * 1.95) / (576 + 2080 + 33)
  assert list(uniform.values()) == pytest.approx([mean] * 3)
  assert tables["placebo_additive_perm0"]["leaves"]["Dense_1/bias"] == perms[0]["Dense_1"]
  # Multiplicative factors 1, 5, 5 have only two other arrangements.
  mult = placebo.placebo_tables(params, "multiplicative", n_permutations=3, seed=0)
  assert sorted(mult) == [
      "placebo_multiplicative_perm0",
      "placebo_multiplicative_perm1",
      "placebo_multiplicative_uniform",
  ]


@pytest.mark.parametrize(
    "hidden,distinct",
    [
        # Connection counts 1024, 16384 (x4), 128: the additive and multiplicative factors
        # repeat on the four middle layers, leaving 6!/4! - 1 = 29 other arrangements;
        # depth has 6! - 1 = 719.
        ((128,) * 5, {"additive": 3, "multiplicative": 3, "depth": 6}),
        # The permutation test's model: counts 512, 3072, 1536, 768, 384, 16 all differ;
        # multiplicative clips two of them to g = 5 (6!/2! - 1 = 359 others).
        ((64, 48, 32, 24, 16), {"additive": 6, "multiplicative": 5, "depth": 6}),
    ],
)
def test_twenty_permutations_of_a_six_layer_mlp(hidden, distinct):
  """The permutation test's placebos: 6 Dense layers, so 20 distinct assignments.

  The first permutations do not depend on how many are asked for, so a longer run extends a
  shorter one.
  """
  params = _mlp_params(hidden)
  for strategy in ("additive", "multiplicative", "depth"):
    layers, factor, _ = placebo.layer_factors(params, strategy)
    assert len(layers) == 6
    real = tuple(factor[k] for k in layers)
    assert len(set(real)) == distinct[strategy]
    tables = placebo.placebo_tables(params, strategy, n_permutations=20, seed=0)
    perms = [tables[f"placebo_{strategy}_perm{k}"]["layers"] for k in range(20)]
    values = {tuple(p[k] for k in layers) for p in perms}
    assert len(values) == 20 and real not in values
    assert all(sorted(v) == pytest.approx(sorted(real)) for v in values)
    three = placebo.placebo_tables(params, strategy, n_permutations=3, seed=0)
    for k in range(3):
      name = f"placebo_{strategy}_perm{k}"
      assert three[name]["layers"] == tables[name]["layers"]
  args = sweep.parse_args(["--permutations", "20"])
  names = sweep.optimizer_names(args)
  assert sum(n.startswith("placebo_depth_perm") for n in names) == 20


def test_permutation_config_trains_only_when_named(monkeypatch):
  """[64,48,32,24,16] is not the reference's: a sweep without --configs leaves it out."""
  from benchmarks import tasks

  monkeypatch.setattr(tasks, "california_data", lambda *a: None)  # no data needed
  default = tasks.build_task(sweep.parse_args(["--task", "california"]))[0]
  assert set(default.configs) == {tasks.config_name(h) for h in tasks.CALIFORNIA_CONFIGS}
  named = sweep.parse_args(["--task", "california", "--configs", "[64,48,32,24,16]", "[64,32]"])
  assert set(tasks.build_task(named)[0].configs) == {"[64,48,32,24,16]", "[64,32]"}


def test_fixed_factors_with_the_real_table_are_caadam():
  """The placebo machinery with the unpermuted factors is exactly as-described CaAdam."""
  params = _mlp_params((16, 8))
  for strategy in ("additive", "multiplicative", "depth"):
    rows = caadam_jax.describe(params, strategy=strategy, show=False)
    table = {"layers": {}, "leaves": {r.leaf: r.factor for r in rows}}
    ours = placebo.placebo_spec("placebo_x", strategy, table).factory(1e-2)
    ref = caadam_jax.caadam(1e-2, strategy=strategy)
    s1, s2, p1, p2 = ours.init(params), ref.init(params), params, params
    for i in range(3):
      g = jax.tree.map(lambda a, i=i: jnp.cos(a * (i + 1)) + 0.1, p1)
      u1, s1 = ours.update(g, s1, p1)
      u2, s2 = ref.update(g, s2, p2)
      p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_learning_rates_in_one_batch_equal_separate_cells():
  """All learning rates of one optimizer vmapped together = one cell per learning rate.

  Seed s also gets the same (fresh) initial weights and batches at every learning rate.
  """
  data = _synthetic()
  model = models.ModelSpec("[16]", models.MLP((16,), 1), (8,))
  task = _tiny_task(max_epochs=12)
  base = {
      "seeds": 2,
      "init": "fresh",
      "init_seed": 0,
      "shuffle_seed": 3,
      "plateau_min_delta": 1e-5,
      "eval_chunk": 64,
      "compact": False,
  }
  spec = optimizers.OPTIMIZERS["caadam_additive"]
  lrs = [3e-3, 3e-2]
  batch = training.run_cell(
      task, model, spec, data, types.SimpleNamespace(lr=1e-3, min_lr=2.5e-5, **base), lrs=lrs
  )
  assert [(r["lr"], r["seed"]) for r in batch["runs"]] == [(lr, s) for lr in lrs for s in (0, 1)]
  for lr in lrs:
    alone = training.run_cell(
        task, model, spec, data, types.SimpleNamespace(lr=lr, min_lr=lr / 40, **base)
    )
    mine = [r for r in batch["runs"] if r["lr"] == lr]
    for ra, rb in zip(mine, alone["runs"], strict=True):
      for k in ("seed", "epochs", "best_epoch", "lr_reductions"):
        assert ra[k] == rb[k], (lr, k)
      np.testing.assert_allclose(ra["val_loss"], rb["val_loss"], rtol=1e-4)
      np.testing.assert_allclose(ra["test_rmse"], rb["test_rmse"], rtol=1e-4)
  # Fresh initialization: the two seeds start differently.
  assert batch["runs"][0]["val_loss"][0] != batch["runs"][1]["val_loss"][0]


class _Interrupt(Exception):
  pass


def test_a_cell_stopped_mid_way_resumes_to_the_same_records(tmp_path, capsys):
  """Stopped twice (once after the stopped runs left the batch), resumed: the same cell.

  The reference trains without a checkpoint; every record (curves, stopping, rate
  reductions, test values) and the epochs computed must be equal to it.
  """
  data = _synthetic()
  model = models.ModelSpec("[16]", models.MLP((16,), 1), (8,))
  task = _tiny_task(max_epochs=30)
  args = types.SimpleNamespace(
      seeds=3,
      init="fresh",
      init_seed=0,
      shuffle_seed=3,
      plateau_min_delta=1e-5,
      eval_chunk=64,
      compact=True,
      lr=1e-3,
      min_lr=2.5e-5,
  )
  spec = optimizers.OPTIMIZERS["caadam_depth"]
  lrs = [3e-3, 3e-1]  # the high rate stops early: the batch is compacted part way
  reference = training.run_cell(task, model, spec, data, args, lrs=lrs)
  widths_change = reference["seed_epochs_computed"] < 6 * reference["cell_epochs"]
  assert widths_change, "the runs must not all stop together, or compaction is not exercised"

  checkpoint = training.Checkpoint(tmp_path / "cell.pkl", {"cell": "test"}, every_s=0)

  def stop_at(epoch):
    def progress(done, n_active, median):
      if done == epoch:
        raise _Interrupt

    return progress

  last_epoch = max(r["epochs"] for r in reference["runs"])
  stops = [4, last_epoch - 1]
  for epoch in stops:
    with pytest.raises(_Interrupt):
      training.run_cell(task, model, spec, data, args, stop_at(epoch), lrs, checkpoint)
    assert checkpoint.path.exists()
  resumed = training.run_cell(task, model, spec, data, args, lrs=lrs, checkpoint=checkpoint)
  # Stopped in epoch e (1-based), the last save was after epoch e - 1.
  assert resumed["resumed_at_epochs"] == [stops[0] - 1, stops[1] - 1]
  assert capsys.readouterr().err.count("resumed at epoch") == 2  # the second and third runs
  assert resumed["runs"] == reference["runs"]
  for key in ("cell_epochs", "seed_epochs_computed", "num_params"):
    assert resumed[key] == reference[key], key

  # A state saved for another cell is not resumed.
  other = training.Checkpoint(checkpoint.path, {"cell": "another"}, every_s=0)
  assert other.load() is None
  assert "of another cell" in capsys.readouterr().err


@pytest.mark.data
def test_quick_sweep_end_to_end(tmp_path):
  """`--quick` runs a tiny sweep; the JSON, the statistics and the report are consistent."""
  argv = ["--quick", "--out-dir", str(tmp_path), "--checkpoint-every", "0"]
  out = sweep.main(argv)
  # Every group saved a checkpoint after each epoch, removed once its cells were stored.
  assert (tmp_path / "sweep_california.partial").is_dir()
  assert not list((tmp_path / "sweep_california.partial").iterdir())
  with gzip.open(tmp_path / "sweep_california.json.gz", "rt") as f:
    results = json.load(f)
  names = ["adam", "caadam_additive", "placebo_additive_uniform", "adas"]
  expected = {
      sweep.cell_key("[64,32]", n, sweep.grid_lr(k, 1e-3, 1e-2, 2)) for n in names for k in (0, 1)
  }
  assert set(results["cells"]) == expected
  for cell in results["cells"].values():
    assert sorted(r["seed"] for r in cell["runs"]) == [0, 1]
    assert all(r["lr"] == cell["lr"] for r in cell["runs"])
  assert results["protocol"]["init"] == "fresh"
  assert results["protocol"]["reduce_lr_on_plateau"]["min_delta"] == 1e-5

  # The statistics replay from the stored runs, independently of the report code.
  a = results["analysis"]

  def best(name):
    cells = [c for c in results["cells"].values() if c["optimizer"] == name]
    cell = min(cells, key=lambda c: (np.mean([r["final_val_loss"] for r in c["runs"]]), c["lr"]))
    return np.array([r["test_rmse"] for r in sorted(cell["runs"], key=lambda r: r["seed"])])

  rows = {r["optimizer"]: r for r in a["best_vs_adam"]}
  assert sorted(rows) == ["adas", "caadam_additive"]
  for name, row in rows.items():
    c = stats.paired_comparison(best(name), best("adam"))
    assert row["rel"] == pytest.approx(c.rel) and row["p_t"] == pytest.approx(c.p_t, nan_ok=True)
    assert row["p_tost"] == pytest.approx(c.p_tost, nan_ok=True)
    assert row["verdict"] in ("better", "worse", "inconclusive", "equivalent (±1%)")
  ps = [r["p_t"] for r in a["best_vs_adam"]]
  assert [r["p_holm"] for r in a["best_vs_adam"]] == pytest.approx(stats.holm(ps), nan_ok=True)
  (placebo,) = a["placebo"]
  assert (placebo["optimizer"], placebo["reference"]) == (
      "caadam_additive",
      "placebo_additive_uniform",
  )

  md = (tmp_path / "sweep_california.md").read_text()
  for text in (
      "Selection-aware",
      "placebo control",
      "Convergence speed",
      "Fixed-rate",
      "p Holm",
      "Deviations",
      "min_delta",
  ):
    assert text in md
  assert all(pathlib.Path(p).exists() for p in out["plots"])
  again = sweep.main(argv)  # resumable: nothing left to train
  assert again["ran"] == []
  # The report rebuilds from the JSON alone: the quick grid, seeds and epochs are read
  # from its protocol, not repeated; the command to do so is on the page.
  rebuild = ["--task", "california", "--report-only", "--out-dir", str(tmp_path)]
  assert f"`python -m benchmarks.sweep {' '.join(rebuild)}`" in md
  stored = read_json(tmp_path / "sweep_california.json.gz")
  stored["machine"] = {"cpu_model": "the machine that ran the cells"}
  save_results(tmp_path / "sweep_california.json.gz", stored)
  sweep.main(rebuild)
  assert (tmp_path / "sweep_california.md").read_text().splitlines()[3:] == md.splitlines()[3:]
  # Rebuilding keeps the runs' machine; it does not stamp the one that rebuilt the report.
  rebuilt = read_json(tmp_path / "sweep_california.json.gz")
  assert rebuilt["machine"] == {"cpu_model": "the machine that ran the cells"}


def _fake_results():
  """Three optimizers at three learning rates, five seeds, with a known best and a known effect."""
  rng = np.random.default_rng(0)
  base = 0.46 + 0.01 * rng.standard_normal(5)  # per-seed difficulty, shared (paired design)
  cells = {}
  effect = {"adam": 1.0, "caadam_additive": 0.98, "placebo_additive_uniform": 0.98}
  for name, scale in effect.items():
    for k, lr in enumerate((1e-3, 3e-3, 1e-2)):
      # Validation loss is lowest at k = 1 for everybody; off-best learning rates are 5% worse.
      penalty = 1.0 if k == 1 else 1.05
      jitter = 1 + 1e-4 * rng.standard_normal(5)
      test = base * scale * penalty * jitter
      cells[sweep.cell_key("[64,32]", name, lr)] = {
          "config": "[64,32]",
          "optimizer": name,
          "lr": lr,
          "grid_index": k,
          "group_lrs": [1e-3, 3e-3, 1e-2],
          "wall_s": 1.0,
          "runs": [
              {
                  "seed": s,
                  "lr": lr,
                  "epochs": 4,
                  "final_val_loss": 0.2 * penalty,
                  "test_rmse": t,
                  # Adam reaches its best (0.2) at epoch 4, the CaAdams at epoch 2.
                  "val_loss": [0.3, 0.25, 0.21, 0.2] if name == "adam" else [0.3, 0.2, 0.2, 0.2],
              }
              for s, t in enumerate(test)
          ],
      }
  proto = {
      "init": "fresh",
      "init_seed": 0,
      "seeds": 5,
      "max_epochs": 300,
      "california_variant": "statlib",
      "quick": False,
      "reduce_lr_on_plateau": {"min_lr": "0.025 x the base lr", "min_delta": 1e-5},
      "lr_grid": {"low": 1e-3, "high": 1e-2, "n": 3, "widen": 0},
  }
  return {"protocol": proto, "cells": cells, "placebo": {}}


def test_analysis_and_report_on_known_results():
  results = _fake_results()
  task = types.SimpleNamespace(name="california", metric="rmse")
  names = ["adam", "caadam_additive", "placebo_additive_uniform"]
  results["analysis"] = a = sweep.analyze(results, task, names)
  assert {k: v["lr"] for k, v in a["best"].items()} == {f"[64,32]|{n}": 3e-3 for n in names}
  assert not any(v["at_edge"] for v in a["best"].values())
  (row,) = a["best_vs_adam"]  # -2% on every seed, tiny noise: certain, and not within 1%
  assert row["optimizer"] == "caadam_additive" and row["rel"] == pytest.approx(-0.02, abs=1e-3)
  assert row["p_holm"] < 1e-6 and row["verdict"] == "better" and row["wins"] == 5
  (pl,) = a["placebo"]  # identical effect: equivalent within 1%
  assert (pl["optimizer"], pl["reference"]) == ("caadam_additive", "placebo_additive_uniform")
  assert abs(pl["rel"]) < 1e-3 and pl["p_tost"] < 0.05 and pl["verdict"] == "equivalent (±1%)"
  # Selection-aware: one clear optimum, so no resample changes the selection.
  assert row["selection"]["changed_any"] == 0.0 and row["selection"]["verdict"] == "better"
  assert row["selection"]["rel"] == pytest.approx(row["rel"])
  # Speed: target 0.2 x 1.01; Adam gets there at epoch 4 (0.2), caadam_additive at 2.
  (speed,) = a["speed"]
  assert speed["target"] == pytest.approx(0.202)
  assert (speed["median_epochs_a"], speed["median_epochs_b"]) == (2, 4)
  assert (speed["faster"], speed["slower"], speed["reached_a"]) == (5, 0, 5)
  area_adam = (0.3 + 0.25 + 0.21 + 0.2 * 47) / 50  # best so far over 50 epochs
  area_caadam = (0.3 + 0.2 * 49) / 50
  assert speed["area_mean_b"] == pytest.approx(area_adam)
  assert speed["area_rel"] == pytest.approx(area_caadam / area_adam - 1)
  assert speed["area_verdict"] == "better"
  assert a["permutation"] == []  # a uniform placebo only: nothing to rank
  md = sweep.report(results, task, types.SimpleNamespace())
  assert "| [64,32] | caadam_additive | adam |" in md and "better" in md
  assert "Selection-aware" in md and "Convergence speed" in md
  assert "equivalent (±1%)" in md and "min_delta: 1e-05" in md


def test_g_tuned_with_the_learning_rate_selects_over_every_g():
  """The g and learning-rate grids are one grid: the pick is the best validation loss of all.

  caadam_additive (g 0.95, the default) is 2% better than Adam; g 0.5 is 5% better on the
  test set but worse on validation; g 0.8 is 3% better and best on validation: the pick is
  g 0.8 at its best rate, and the g cells stay out of the other tables.
  """
  import copy

  results = _fake_results()
  default = {k: c for k, c in results["cells"].items() if c["optimizer"] == "caadam_additive"}
  for name, scale, val_scale in (
      ("caadam_additive_g0.5", 0.95, 1.01),
      ("caadam_additive_g0.8", 0.97, 0.99),
  ):
    for cell in copy.deepcopy(list(default.values())):
      cell["optimizer"] = name
      for r in cell["runs"]:
        r["test_rmse"] *= scale / 0.98
        r["final_val_loss"] *= val_scale
      results["cells"][sweep.cell_key("[64,32]", name, cell["lr"])] = cell
  task = types.SimpleNamespace(name="california", metric="rmse")
  names = sweep.optimizer_names(sweep.parse_args(["--optimizers", "adam", "caadam_additive"]))
  names += ["caadam_additive_g0.5", "caadam_additive_g0.8"]
  results["analysis"] = a = sweep.analyze(results, task, names)
  (row,) = a["tuned_g"]
  assert (row["optimizer"], row["g"], row["lr"]) == ("caadam_additive, g tuned", 0.8, 3e-3)
  assert row["g_grid"] == [0.5, 0.8, 0.95] and not row["at_edge"]
  assert row["rel"] == pytest.approx(-0.03, abs=1e-3) and row["selection"]["verdict"] == "better"
  assert row["selection"]["changed_any"] == 0.0  # one clear optimum over 9 grid points
  assert [r["optimizer"] for r in a["best_vs_adam"]] == ["caadam_additive"]
  assert [r["optimizer"] for r in a["speed"]] == ["caadam_additive"]
  md = sweep.report(results, task, types.SimpleNamespace())
  assert (
      "g tuned with the learning rate" in md
      and "| [64,32] | caadam_additive, g tuned | 0.8 | 0.003 | no |" in md
  )
  # Until every g of a strategy's grid has run, there is no tuned-g row.
  del results["cells"][sweep.cell_key("[64,32]", "caadam_additive_g0.5", 1e-3)]
  partial = {k: c for k, c in results["cells"].items() if c["optimizer"] != "caadam_additive_g0.5"}
  assert sweep.analyze({**results, "cells": partial}, task, names)["tuned_g"] == []


def test_g_variant_cells_are_caadam_at_that_g():
  """caadam_<strategy>_g<g> is caadam_jax.caadam with scaling_factor=g, the default excluded."""
  assert optimizers.g_variant_name("additive", 0.95) == "caadam_additive"
  assert set(optimizers.G_VARIANTS) == {
      "caadam_additive_g0.5",
      "caadam_additive_g0.8",
      "caadam_multiplicative_g2",
      "caadam_multiplicative_g10",
      "caadam_depth_g0.5",
      "caadam_depth_g2",
  }
  params = _mlp_params((8, 4))
  structure = caadam_jax.infer_structure(params)
  grads = jax.tree.map(jnp.ones_like, params)
  for name, (strategy, g) in optimizers.G_VARIANTS.items():
    tx = optimizers.g_variant_spec(name).make(1e-2, structure)
    want = caadam_jax.caadam(1e-2, strategy=strategy, scaling_factor=g, structure=structure)
    got, _ = tx.update(grads, tx.init(params), params)
    expected, _ = want.update(grads, want.init(params), params)
    jax.tree.map(np.testing.assert_allclose, got, expected)
    default = caadam_jax.caadam(1e-2, strategy=strategy, structure=structure)
    other, _ = default.update(grads, default.init(params), params)
    assert any(
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(other), strict=True)
    )
  assert "caadam_depth_g2" in sweep.optimizer_names(sweep.parse_args([]))


# Every committed sweep: the main one and those with their own protocol in a subfolder
# (a refined grid, a permutation test, a second task).
COMMITTED_SWEEPS = sorted(
    str(p.relative_to(ROOT / "benchmarks" / "results"))
    for p in (ROOT / "benchmarks" / "results").rglob("sweep_*.json.gz")
)


@pytest.mark.data
@pytest.mark.parametrize("stored_name", COMMITTED_SWEEPS or ["sweep_california.json.gz"])
def test_committed_sweep_report_rebuilds_from_its_json(tmp_path, stored_name):
  """Each committed sweep report is what `--report-only` writes from the committed runs.

  So every table of the evidence page recomputes from the JSON; only the header line, which
  names the machine that wrote the report and the folder to rebuild it in, may differ. The
  protocol (grid, seeds, permutations, subsample) comes from the JSON itself.
  """
  stored = results_dir() / stored_name
  (tmp_path / stored.name).write_bytes(stored.read_bytes())
  task = stored.name.removeprefix("sweep_").removesuffix(".json.gz")
  sweep.main(["--task", task, "--report-only", "--out-dir", str(tmp_path)])
  committed = stored.with_name(f"sweep_{task}.md").read_text().splitlines()
  rebuilt = (tmp_path / f"sweep_{task}.md").read_text().splitlines()
  assert len(rebuilt) == len(committed)
  differing = [i for i, (a, b) in enumerate(zip(committed, rebuilt, strict=True)) if a != b]
  assert all(committed[i].startswith("Generated by") for i in differing), [
      (committed[i], rebuilt[i]) for i in differing
  ]
  # Every config with permutation rows gets its rank plot (where matplotlib is installed).
  configs = {r["config"] for r in read_json(stored)["analysis"]["permutation"]}
  plots = {p.name for p in tmp_path.glob(f"sweep_{task}_*_permutation.png")}
  expected = {f"sweep_{task}_{c.strip('[]').replace(',', '-')}_permutation.png" for c in configs}
  assert plots == (expected if importlib.util.find_spec("matplotlib") else set())


def test_evidence_page_tables_are_the_committed_analysis():
  """docs/benchmarks_evidence.md shows the stored analysis, not a hand copy of it."""
  from benchmarks import evidence

  with gzip.open(results_dir() / "sweep_california.json.gz", "rt") as f:
    results = json.load(f)
  page = evidence.PAGE.read_text()
  assert evidence.apply(page, evidence.page_tables(results_dir())) == page
  new_tables = evidence.tables(results)
  analysis = results["analysis"]
  kinds = ["best_vs_adam", "placebo", "permutation", "speed"]
  if analysis.get("tuned_g"):
    kinds.insert(1, "tuned_g")
  assert [len(t) - 2 for t in new_tables] == [len(analysis[k]) for k in kinds]
  # A changed row is rewritten in place; a page without the table is refused.
  stale = page.replace(new_tables[0][2], new_tables[0][2].replace(", 0/10 |", ", 9/10 |"), 1)
  assert stale != page and evidence.apply(stale, new_tables) == page
  with pytest.raises(ValueError, match="0 tables headed"):
    evidence.apply("no tables here\n", new_tables)


def test_evidence_page_shows_every_other_committed_sweep():
  """The finer grids, the 20 permutations and Fashion-MNIST each have their tables in the page."""
  from benchmarks import evidence

  page = evidence.PAGE.read_text().splitlines()
  main = evidence.tables(read_json(results_dir() / "sweep_california.json.gz"))
  other = evidence.page_tables(results_dir())[len(main) :]
  # The grid step in a label is the protocol's: (high / low) ** (1 / (n - 1)).
  assert [t[0].split(" | ")[0] for t in other] == [
      "| config (grid ×1.47, 20 seeds)",  # 7 rates over 1e-3..1e-2
      "| config (grid ×1.47, 20 seeds)",
      "| config (grid ×1.39, 20 seeds)",  # 8 rates over 1e-3..1e-2
      "| config (grid ×1.39, 20 seeds)",
      "| config (grid ×1.39, 10 seeds)",  # 8 rates over 4.64e-4..4.64e-3
      "| config (grid ×1.39, 10 seeds)",
      "| config (20 permutations each)",
      "| config (Fashion-MNIST 10k images, 5 seeds)",
      "| config (Fashion-MNIST 10k images, 5 seeds)",
  ]
  # One row per stored comparison, in each file's order of OTHER_SWEEPS.
  row_counts = []
  for name, kinds in [
      ("refined/sweep_california.json.gz", ["best_vs_adam", "speed"]),
      ("refined139/sweep_california.json.gz", ["best_vs_adam", "speed"]),
      ("refined1024/sweep_california.json.gz", ["best_vs_adam", "speed"]),
      ("permutation20/sweep_california.json.gz", ["permutation"]),
      ("sweep_fashion.json.gz", ["best_vs_adam", "speed"]),
  ]:
    analysis = read_json(results_dir() / name)["analysis"]
    row_counts += [len(analysis[kind]) for kind in kinds]
  assert [len(t) - 2 for t in other] == row_counts
  assert all(page.count(t[0]) == 1 for t in other)


@pytest.mark.slow
def test_committed_speed_and_permutation_rows_replay_by_hand():
  """The speed and permutation-rank rows of the committed analysis, recomputed by plain loops.

  Independent of benchmarks/convergence.py and stats.permutation_rank: the selection is redone
  from the stored runs, the target and epochs counted by hand.
  """
  with gzip.open(results_dir() / "sweep_california.json.gz", "rt") as f:
    results = json.load(f)
  cells = results["cells"].values()

  def chosen(config, name):
    mine = [c for c in cells if c["config"] == config and c["optimizer"] == name]
    best = min(mine, key=lambda c: (np.mean([r["final_val_loss"] for r in c["runs"]]), c["lr"]))
    return sorted(best["runs"], key=lambda r: r["seed"])

  speed = results["analysis"]["speed"]
  assert {r["config"] for r in speed} == {c["config"] for c in cells}
  for row in speed:
    adam = chosen(row["config"], "adam")
    target = 1.01 * np.mean([r["final_val_loss"] for r in adam])
    assert row["target"] == pytest.approx(target)

    def first_hit(run, target=target):
      for epoch, v in enumerate(run["val_loss"], start=1):
        if v is not None and v <= target:
          return epoch
      return None

    hits = [first_hit(r) for r in chosen(row["config"], row["optimizer"])]
    assert row["reached_a"] == sum(h is not None for h in hits)
    assert row["reached_b"] == sum(first_hit(r) is not None for r in adam)
    cap = results["protocol"]["max_epochs"] + 1
    assert row["median_epochs_a"] == np.median([cap if h is None else h for h in hits])
  for row in results["analysis"]["permutation"]:
    real = np.mean([r["test_rmse"] for r in chosen(row["config"], f"caadam_{row['strategy']}")])
    names = {c["optimizer"] for c in cells if c["config"] == row["config"]}
    perms = [n for n in names if n.startswith(f"placebo_{row['strategy']}_perm")]
    values = [np.mean([r["test_rmse"] for r in chosen(row["config"], n)]) for n in perms]
    assert row["real"] == pytest.approx(real) and row["of"] == len(perms) + 1
    assert row["rank"] == 1 + sum(v <= real for v in values)
    assert row["p_worse"] == pytest.approx((1 + sum(v >= real for v in values)) / (len(perms) + 1))


@pytest.mark.data
def test_quick_fashion_sweep_end_to_end(tmp_path):
  """The second task's sweep (small CNN on a Fashion-MNIST subsample) runs end to end.

  Without the placebo (the California quick sweep runs it): one compiled training less.
  """
  optimizers = ["adam", "caadam_additive", "adas"]
  out = sweep.main(
      ["--task", "fashion", "--quick", "--out-dir", str(tmp_path), "--optimizers", *optimizers]
  )
  with gzip.open(tmp_path / "sweep_fashion.json.gz", "rt") as f:
    results = json.load(f)
  assert results["protocol"]["train_subsample"] == 1024
  assert {c["config"] for c in results["cells"].values()} == {"small_cnn"}
  a = results["analysis"]
  assert sorted(r["optimizer"] for r in a["best_vs_adam"]) == ["adas", "caadam_additive"]
  for row in a["best_vs_adam"]:
    assert 0.0 <= row["selection"]["changed_any"] <= 1.0 and row["wins"] <= 2
  assert {r["optimizer"] for r in a["speed"]} == {"adas", "caadam_additive"}
  md = (tmp_path / "sweep_fashion.md").read_text()
  assert "test accuracy" in md and "Selection-aware" in md
  assert all(pathlib.Path(p).exists() for p in out["plots"])


@pytest.mark.data
def test_quick_resnet20_sweep_end_to_end(tmp_path, monkeypatch):
  """The paper's setting's command (`--task fashion --resnet20 --quick`) runs end to end.

  At 8x8 inputs (the model's ``size``) instead of 56x56: on XLA:CPU the vmapped ResNet-20
  at 56x56 takes minutes per epoch (one quick group: 908 s on the project's 2-core
  machine), so the full-size command is a GPU job; everything else is the command's path
  (data, the task, the ResNet-20 with BatchNorm state, published-mode factors, report).
  """
  monkeypatch.setattr(tasks, "ResNet20", functools.partial(models.ResNet20, size=8))
  optimizers = ["adam", "keras_caadam_depth"]
  argv = ["--task", "fashion", "--resnet20", "--quick", "--train-subsample", "256"]
  out = sweep.main([*argv, "--out-dir", str(tmp_path), "--optimizers", *optimizers])
  results = read_json(tmp_path / "sweep_fashion.json.gz")
  assert results["protocol"]["resnet20"] is True
  assert results["protocol"]["train_subsample"] == 256
  lrs = [sweep.grid_lr(k, 1e-3, 1e-2, 2) for k in (0, 1)]
  assert set(results["cells"]) == {
      sweep.cell_key("resnet20", n, lr) for n in optimizers for lr in lrs
  }
  for cell in results["cells"].values():
    assert sorted(r["seed"] for r in cell["runs"]) == [0, 1]
    assert all(r["epochs"] == 2 and 0.0 <= r["test_accuracy"] <= 1.0 for r in cell["runs"])
  (row,) = results["analysis"]["best_vs_adam"]
  assert row["config"] == "resnet20" and row["optimizer"] == "keras_caadam_depth"
  assert "resnet20" in (tmp_path / "sweep_fashion.md").read_text()
  assert all(pathlib.Path(p).exists() for p in out["plots"])
