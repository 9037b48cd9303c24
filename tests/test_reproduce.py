"""Tests for benchmarks/reproduce.py (the controlled CaAdam-vs-Adam benchmark)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks import callbacks
from benchmarks import models
from benchmarks import optimizers
from benchmarks import reproduce
from benchmarks import tasks
from benchmarks import training

# Slow tier: tests of benchmarks/ (the fast tier tests the library).
pytestmark = [pytest.mark.slow, pytest.mark.external]

ROOT = pathlib.Path(__file__).resolve().parent.parent


def results_dir() -> pathlib.Path:
  """benchmarks/results/; skips when the folder is absent (an unpacked sdist does not ship it)."""
  path = ROOT / "benchmarks" / "results"
  if not path.is_dir():
    pytest.skip("benchmarks/results/ is absent (the sdist does not ship the stored results)")
  return path


def test_keras_adam_is_the_published_keras_form_adam():
  """The Adam baseline (keras_caadam, depth, g=0) is exactly Keras-form Adam."""
  from caadam_jax import published

  params = {
      "Dense_0": {"kernel": jnp.linspace(-1, 1, 12).reshape(3, 4), "bias": jnp.zeros(4)},
      "Dense_1": {"kernel": jnp.ones((4, 1)), "bias": jnp.zeros(1)},
  }
  ours = optimizers.keras_adam(1e-3)
  ref = optax.chain(published.scale_by_keras_adam(), optax.scale_by_learning_rate(1e-3))
  s1, s2 = ours.init(params), ref.init(params)
  p1 = p2 = params
  for i in range(5):
    g = jax.tree.map(lambda a, i=i: jnp.sin(a + i) + 0.1 * i, p1)
    u1, s1 = ours.update(g, s1, p1)
    u2, s2 = ref.update(g, s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=False):
    np.testing.assert_array_equal(a, b)


def test_optimizers_inject_learning_rate():
  params = {
      "Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)},
      "Dense_1": {"kernel": jnp.ones((4, 1)), "bias": jnp.zeros(1)},
  }
  for name, spec in optimizers.OPTIMIZERS.items():
    tx = spec.make(1e-3)
    state = tx.init(params)
    if spec.has_lr:
      assert isinstance(state, optax.InjectStatefulHyperparamsState)
      np.testing.assert_allclose(state.hyperparams["learning_rate"], 1e-3 * spec.lr_mult, rtol=1e-6)
      state = optimizers.set_learning_rate(state, np.array(2.5e-4))
      assert float(np.asarray(state.hyperparams["learning_rate"])) == pytest.approx(2.5e-4)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), name


def test_as_described_cells_step_on_the_small_cnn():
  """The cells that take the structure build with the model's and step, on named layers.

  The small CNN's layers are named ``L0_conv``, ``L1_conv``, ``L2_dense``: ``caadam``'s
  default refuses to read a depth order from such names, so the cells pass
  ``model.structure()`` (the MLP's ``Dense_i``: test_optimizers_inject_learning_rate).
  The depth factors are then (1 + g)^((L - d) / L) with g = 1, L = 3 layers at depths
  d = 1, 2, 3 (by hand: 2^(2/3), 2^(1/3), 1).
  """
  model = models.ModelSpec("small_cnn", models.SmallCNN(), (28, 28))
  params, _ = model.init(jax.random.key(0))
  structure = model.structure()
  takers = [name for name, spec in optimizers.OPTIMIZERS.items() if spec.takes_structure]
  assert takers == ["caadam_additive", "caadam_multiplicative", "caadam_depth"]
  for name in takers:
    tx = optimizers.OPTIMIZERS[name].make(1e-3, structure)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), name
  depth = optimizers.measured_factors(model, "caadam_depth")
  layers = sorted(params)
  for layer, expected in zip(layers, [2 ** (2 / 3), 2 ** (1 / 3), 1.0], strict=True):
    np.testing.assert_allclose(depth[f"{layer}/kernel"], expected, rtol=1e-5)


def test_measured_factors_published_mode():
  """Published mode: every kernel gets the last kernel's factor (here c = c_min)."""
  model = models.ModelSpec("[64,32]", models.MLP((64, 32), 1), (8,))
  f = optimizers.measured_factors(model, "keras_caadam_additive")
  kernels = [v for k, v in f.items() if k.endswith("kernel")]
  np.testing.assert_allclose(kernels, 1.95, rtol=1e-4)
  f = optimizers.measured_factors(model, "keras_caadam_multiplicative")
  np.testing.assert_allclose([v for k, v in f.items() if k.endswith("kernel")], 5.0, rtol=1e-4)


def test_patch_conv_matches_flax_conv():
  import flax.linen as nn

  for size in (28, 14, 7):
    x = jax.random.normal(jax.random.key(1), (3, size, size, 2))
    pc = models.PatchConv(5)
    variables = pc.init(jax.random.key(0), x)
    # Full float32 products: GPUs default to TF32 convolutions and matmuls (~1e-3 error).
    with jax.default_matmul_precision("highest"):
      ref = nn.Conv(5, (3, 3), strides=2, padding="SAME").apply(variables, x)
      np.testing.assert_allclose(jnp.asarray(pc.apply(variables, x)), jnp.asarray(ref), atol=2e-6)


def _synthetic():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 8)).astype(np.float32)
  y = (0.5 * x[:, 0] + np.sin(x[:, 1]) + 0.3 * rng.normal(size=500)).astype(np.float32)
  return x[:320], y[:320], x[320:400], y[320:400], x[400:], y[400:]


def _tiny_task(max_epochs=30):
  return tasks.Task(
      "california",
      kind="regression",
      batch_size=32,
      es_patience=3,
      es_start=2,
      plateau_patience=2,
      max_epochs=max_epochs,
      configs={},
      optimizers=[],
  )


def test_compaction_is_exact_and_matches_the_callbacks():
  """Taking stopped seeds out of the vmapped batch changes no result.

  Every run's epochs, learning-rate reductions and best epoch replay from its validation curve.
  """
  data = _synthetic()
  model = models.ModelSpec("[16]", models.MLP((16,), 1), (8,))
  args = {
      "seeds": 4,
      "lr": 1e-2,
      "init": "shared",
      "init_seed": 0,
      "shuffle_seed": 3,
      "min_lr": 2.5e-5,
      "plateau_min_delta": 1e-4,
      "eval_chunk": 64,
  }
  task = _tiny_task()
  a = training.run_cell(
      task, model, optimizers.OPTIMIZERS["adam"], data, types.SimpleNamespace(compact=True, **args)
  )
  b = training.run_cell(
      task, model, optimizers.OPTIMIZERS["adam"], data, types.SimpleNamespace(compact=False, **args)
  )
  # Different vmapped widths compile to different kernels, so float rounding may differ
  # in the last bits; the protocol decisions and the numbers must agree.
  for ra, rb in zip(a["runs"], b["runs"], strict=False):
    for k in ("epochs", "best_epoch", "stopped_early", "restored_best", "lr_reductions"):
      assert ra[k] == rb[k], (k, ra[k], rb[k])
    for k in ("test_loss", "test_rmse", "final_val_loss"):
      np.testing.assert_allclose(ra[k], rb[k], rtol=1e-4, err_msg=k)
    np.testing.assert_allclose(ra["val_loss"], rb["val_loss"], rtol=1e-4)
  assert a["seed_epochs_computed"] <= b["seed_epochs_computed"]
  assert len({r["epochs"] for r in a["runs"]}) > 1  # the seeds stopped at different epochs
  for run in a["runs"]:
    assert replay(run, task, args["lr"], args["min_lr"]) == []


def replay(
    run: dict, task, lr: float, min_lr: float, lr_mult: float = 1.0, min_delta: float = 1e-4
) -> list[str]:
  """Re-derives a stored run's protocol decisions from its validation curve."""
  es = callbacks.EarlyStopping(
      min_delta=1e-5,
      patience=task.es_patience,
      restore_best_weights=True,
      start_from_epoch=task.es_start,
  )
  pl = callbacks.ReduceLROnPlateau(
      factor=0.25, patience=task.plateau_patience, min_lr=min_lr * lr_mult, min_delta=min_delta
  )
  lr = lr * lr_mult
  events, problems = [], []
  vals = [v if v is not None else float("nan") for v in run["val_loss"]]
  for epoch, v in enumerate(vals):
    _, stop = es.on_epoch_end(epoch, v)
    new = pl.on_epoch_end(epoch, v, lr)
    if new != lr:
      lr = new
      events.append([epoch + 1, float(np.float32(new))])
    if stop and epoch != len(vals) - 1:
      problems.append(f"stops at epoch {epoch + 1} but ran {len(vals)}")
  if es.stop_training != run["stopped_early"]:
    problems.append("stopped_early differs")
  if es.should_restore and es.best_epoch + 1 != run["best_epoch"]:
    problems.append(f"best epoch {es.best_epoch + 1} != {run['best_epoch']}")
  if lr_mult and events != run["lr_reductions"]:
    problems.append(f"lr reductions {events} != {run['lr_reductions']}")
  return problems


def test_stored_results_replay():
  """Every run in benchmarks/results/[<variant>/]<task>.json replays through the callbacks."""
  checked = 0
  stored = results_dir()
  for task_name in ("california", "fashion", "mnist"):
    paths = [stored / f"{task_name}.json", *sorted(stored.glob(f"*/{task_name}.json"))]
    for path in paths:
      if path.exists():
        checked += _replay_file(path)
  assert checked, f"no results JSON with runs in {stored} to replay"


def _replay_file(path) -> int:
  """Replays every run of one results file; returns how many."""
  checked = 0
  results = json.loads(path.read_text())
  proto = results["protocol"]
  task = types.SimpleNamespace(
      es_patience=proto["early_stopping"]["patience"],
      es_start=proto["early_stopping"]["start_from_epoch"],
      plateau_patience=proto["reduce_lr_on_plateau"]["patience"],
  )
  for key, cell in results["cells"].items():
    spec = optimizers.OPTIMIZERS[cell["optimizer"]]
    for run in cell["runs"]:
      problems = replay(
          run,
          task,
          proto["lr"],
          proto["reduce_lr_on_plateau"]["min_lr"],
          spec.lr_mult if spec.has_lr else 0.0,
          proto["reduce_lr_on_plateau"]["min_delta"],
      )
      assert problems == [], (str(path), key, run["seed"], problems)
      checked += 1
  return checked


def test_resnet20_builds_and_steps_once():
  """The published ResNet-20 (for GPU machines) builds and steps.

  It has ~0.27M parameters, and one seed-vmapped training step with a published-mode optimizer runs and changes it.
  """
  model = models.ModelSpec("resnet20", models.ResNet20(10), (28, 28))
  params, extra = model.init(jax.random.key(0))
  n = models.count_params(params)
  assert 260_000 < n < 280_000, n
  assert "batch_stats" in extra
  tx = optimizers.OPTIMIZERS["keras_caadam_multiplicative"].make(1e-3)
  trainer = training.CellTrainer(model, tx, "classification", eval_chunk=4)
  seeds = 2

  def stack(t):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (seeds,) + a.shape), t)

  p, e = stack(params), stack(extra)
  s = trainer.init_opt(p)
  rng = np.random.default_rng(0)
  x = rng.random((8, 28, 28), dtype=np.float32)
  y = rng.integers(0, 10, 8).astype(np.int32)
  idx = np.tile(np.arange(4, dtype=np.int32), (seeds, 1, 1))
  w = np.ones((seeds, 1, 4), np.float32)
  xv, yv, wv = training.chunks(x[4:], y[4:], 4)
  p2, e2, _, tl, vl, _ = trainer.epoch(
      p, e, s, jnp.ones(seeds, bool), idx, w, jnp.asarray(x), jnp.asarray(y), xv, yv, wv
  )
  assert np.all(np.isfinite(np.asarray(tl))) and np.all(np.isfinite(np.asarray(vl)))
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p2, p)
  assert min(jax.tree.leaves(moved)) > 0
  assert jax.tree.leaves(e2)[0].shape[0] == seeds


@pytest.mark.data
def test_quick_sweep_and_resume(tmp_path):
  """`--quick` trains a tiny California sweep, writes JSON/markdown/plots, and resumes."""
  argv = ["--task", "california", "--quick", "--out-dir", str(tmp_path), "--no-progress"]
  out = reproduce.main(argv)
  assert out["ran"] and not out["skipped"]
  results = json.loads((tmp_path / "california.json").read_text())
  assert set(results["cells"]) == set(out["ran"])
  assert results["machine"]["versions"]["jax"] == jax.__version__
  for cell in results["cells"].values():
    assert len(cell["runs"]) == 2
    assert all(np.isfinite(r["test_rmse"]) for r in cell["runs"])
  md = (tmp_path / "california.md").read_text()
  assert "vs Adam" in md and "published Adam" in md
  plots = [tmp_path / "california_box.png", tmp_path / "california_curves.png"]
  # The plots need matplotlib (the 'examples' extra); without it the sweep still reports.
  has_matplotlib = importlib.util.find_spec("matplotlib") is not None
  assert [p.exists() for p in plots] == [has_matplotlib] * 2
  again = reproduce.main(argv)
  assert again["ran"] == [] and sorted(again["skipped"]) == sorted(out["ran"])
  # Rebuilding the report keeps the runs' machine; it does not stamp the one that rebuilt it.
  results["machine"] = {"cpu_model": "the machine that ran the cells"}
  (tmp_path / "california.json").write_text(json.dumps(results))
  reproduce.main([*argv, "--report-only"])
  rebuilt = json.loads((tmp_path / "california.json").read_text())
  assert rebuilt["machine"] == {"cpu_model": "the machine that ran the cells"}


@pytest.mark.data
def test_quick_fashion_sweep(tmp_path):
  out = reproduce.main(
      ["--task", "fashion", "--quick", "--out-dir", str(tmp_path), "--no-progress"]
  )
  results = json.loads((tmp_path / "fashion.json").read_text())
  accs = [r["test_accuracy"] for c in results["cells"].values() for r in c["runs"]]
  assert out["ran"] and all(0.1 < a <= 1.0 for a in accs)
  assert (tmp_path / "fashion.md").exists()
