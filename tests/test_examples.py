"""The examples run end to end with tiny settings."""

import numpy as np
import pytest

# Slow tier: whole example scripts. Standard promotion: the examples use Flax and Optax pieces
# that are not strict-clean (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.external, pytest.mark.standard_promotion]

# examples/ is on sys.path (pythonpath in pyproject.toml): the examples import as modules.


@pytest.mark.slow
def test_quickstart_compares_with_tuned_adam(tmp_path, capsys):
  pytest.importorskip("sklearn", reason="the quickstart needs the 'examples' extra")
  import quickstart

  out = tmp_path / "losses.png"
  grid = [1e-3, 1e-2]
  report = quickstart.main(
      ["--epochs", "3", "--seeds", "2", "--learning-rates", *map(str, grid), "--out", str(out)]
  )
  results, rows = report["results"], report["rows"]
  assert set(results) == set(quickstart.optimizers())
  assert {"adam", "caadam additive", "caadam multiplicative", "caadam depth"} <= set(results)
  for res in results.values():
    assert res["val_loss"].shape == (2, 2, 3) and res["test_accuracy"].shape == (2, 2)
    assert np.all(res["test_accuracy"] > 0.5)  # 10 classes: chance is 0.1
    assert np.all(res["train_loss"][..., -1] < res["train_loss"][..., 0])
  # Every optimizer has its base-rate row and its tuned row; the tuned rate is the grid's
  # lowest mean final validation loss (recomputed here from the curves).
  for name, res in results.items():
    kinds = {r["kind"]: r for r in rows if r["optimizer"] == name}
    assert kinds["same"]["learning_rate"] == 1e-3
    final = res["val_loss"][..., -1].mean(-1)
    assert kinds["tuned"]["learning_rate"] == grid[int(np.argmin(final))]
    np.testing.assert_array_equal(
        kinds["tuned"]["val_loss"], res["val_loss"][np.argmin(final), :, -1]
    )
  printed = capsys.readouterr().out
  adam_lines = [line for line in printed.splitlines() if line.startswith("adam ")]
  assert any("(base)" in line for line in adam_lines)
  assert any("(tuned)" in line for line in adam_lines)  # the tuned-Adam row
  assert "What this means:" in printed and "docs/benchmarks_evidence.md" in printed
  assert out.stat().st_size > 10_000


def _has_data():
  import os

  import data_files

  return bool(os.environ.get(data_files.DATA_ENV_VAR))


def _require_data():
  import data_files

  if not _has_data():
    pytest.skip(
        f"${data_files.DATA_ENV_VAR} is unset: no California Housing file "
        "(set it to the project's shared/data)"
    )


def _check_restored(results, steps):
  assert results["restored_identical"]
  assert results["restored_accuracy"] == results["test_accuracy"]
  assert results["step"] == steps + 1  # one more step after the restore
  assert all(loss == loss for loss in results["losses"])  # finite, not NaN


def _tiny_image_args(tmp_path):
  # 32 steps of 32 images; evaluation on 500 test images (all of the digits test split).
  return [
      "--epochs",
      "1",
      "--subset",
      "1024",
      "--batch-size",
      "32",
      "--test-subset",
      "500",
      "--ckpt-dir",
      str(tmp_path / "ckpt"),
  ]


def test_linen_trainstate_tiny(tmp_path, capsys):
  """MNIST from $CAADAM_JAX_DATA when set; otherwise the example's fallback to digits."""
  pytest.importorskip("sklearn", reason="the example needs the 'examples' extra")
  pytest.importorskip(
      "orbax.checkpoint", reason="the example needs orbax-checkpoint ('examples' extra)"
  )
  import linen_trainstate

  results = linen_trainstate.main(
      ["--dataset", "mnist", "--strategy", "depth", *_tiny_image_args(tmp_path)]
  )
  assert results["dataset"] == ("mnist" if _has_data() else "digits")
  _check_restored(results, 1024 // 32)
  assert results["test_accuracy"] > 0.2  # 10 classes: chance is 0.1
  assert (tmp_path / "ckpt" / "step_32").is_dir()
  assert "identical: True" in capsys.readouterr().out


def test_nnx_optimizer_tiny(tmp_path, capsys):
  """Fashion-MNIST from $CAADAM_JAX_DATA when set; otherwise the example's fallback to digits."""
  pytest.importorskip("sklearn", reason="the example needs the 'examples' extra")
  pytest.importorskip(
      "orbax.checkpoint", reason="the example needs orbax-checkpoint ('examples' extra)"
  )
  import nnx_optimizer

  results = nnx_optimizer.main(
      ["--dataset", "fashion-mnist", "--strategy", "multiplicative", *_tiny_image_args(tmp_path)]
  )
  assert results["dataset"] == ("fashion-mnist" if _has_data() else "digits")
  _check_restored(results, 1024 // 32)
  assert results["test_accuracy"] > 0.2
  assert "identical: True" in capsys.readouterr().out


def test_optax_chain_tiny(capsys):
  pytest.importorskip("sklearn", reason="the example needs the 'examples' extra")
  import optax_chain

  results = optax_chain.main(["--epochs", "1"])
  assert results["chain"]["equals_caadam_depth"]
  assert abs(results["scheduled_scaling_factor"]["final_g"] - 0.95) < 1e-6
  per_group, global_ = results["factors"]["per_group"], results["factors"]["global"]
  # The classifier is alone in its group: per-group statistics give it 1, global ones 1 + g.
  assert per_group["Dense_3/kernel"] == 1.0
  assert abs(global_["Dense_3/kernel"] - 1.95) < 1e-6
  assert per_group["Dense_0/bias"] == per_group["Dense_0/kernel"]
  for name in ("partition per-group statistics", "partition global statistics"):
    assert results[name]["accuracy"] > 0.1
  assert "per-group factor" in capsys.readouterr().out


@pytest.mark.slow
def test_layer_decay_example(capsys):
  import layer_decay

  results = layer_decay.main([])
  assert results["max_error"] < 1e-7
  assert results["same_state"]
  assert abs(results["final_decay"] - 0.75) < 1e-6
  # Hand rule: 4 blocks, so the stem gets 0.75 ** 5, block 0 0.75 ** 4, the head 1.
  assert abs(results["factors"]["cls_token"] - 0.75**5) < 1e-12
  assert abs(results["factors"]["blocks_0/mlp/kernel"] - 0.75**4) < 1e-12
  assert results["factors"]["norm/scale"] == 1.0
  assert "blocks_3" in capsys.readouterr().out


def test_california_housing_tiny(capsys):
  _require_data()
  import california_housing

  results = california_housing.main(
      [
          "--epochs",
          "2",
          "--hidden",
          "16,8",
          "--optimizers",
          "adam,caadam-multiplicative,keras-caadam",
      ]
  )
  assert set(results) == {"adam", "caadam-multiplicative", "keras-caadam"}
  for runs in results.values():
    assert 0.3 < runs[0]["test_rmse"] < 1.2  # std units: predicting the mean gives about 1
  assert "test RMSE (std units of y)" in capsys.readouterr().out


def test_adam_basics_tiny(tmp_path, capsys):
  pytest.importorskip("sklearn", reason="the example needs the 'examples' extra")
  import adam_basics

  out = tmp_path / "basics.png"
  results = adam_basics.main(["--epochs", "30", "--iterations", "50", "--out", str(out)])
  assert results["numpy_vs_optax"] < 1e-6
  assert results["linear_regression"][-1] < results["linear_regression"][0]
  assert set(results["rosenbrock"]) >= {
      "sgd lr 1e-3",
      "rmsprop lr 1e-3",
      "adam lr 1e-3",
      "adas (defaults)",
  }
  for losses in results["rosenbrock"].values():
    assert len(losses) == 50 and np.isfinite(losses).all()
  assert out.stat().st_size > 10_000
  assert "Rosenbrock" in capsys.readouterr().out


def test_multihost_two_processes_tiny(capsys):
  """Launcher mode: 2 local processes x 2 CPU devices, fully sharded, 3 steps."""
  import multihost

  results = multihost.main(
      ["--launch", "2", "--local-devices", "2", "--layout", "fsdp", "--steps", "3"]
      + ["--batch-size", "16", "--timeout", "240", "--heartbeat-timeout", "30"]
  )
  assert results["returncodes"] == [0, 0]
  first, second = results["reports"]
  assert (first["process_index"], second["process_index"]) == (0, 1)
  for r in results["reports"]:
    assert r["process_count"] == 2 and r["global_device_count"] == 4
    assert len(r["local_devices"]) == 2
    assert r["kernel_held_fraction"] == 0.5  # each process holds half of the sharded kernel
    assert len(r["losses"]) == 3 and r["losses"][-1] < r["losses"][0]
  assert set(first["local_devices"]).isdisjoint(second["local_devices"])
  # One global computation: both processes see the same loss and the same params.
  assert first["losses"] == second["losses"]
  assert first["params_checksum"] == second["params_checksum"]
  out = capsys.readouterr().out
  assert "[process 1/2] local devices" in out and "[process 0/2] step 2 loss" in out


def test_multihost_process_group_from_arguments_and_environment():
  import argparse

  import multihost

  parser = argparse.ArgumentParser()
  multihost.add_distributed_arguments(parser)
  none = parser.parse_args([])
  assert multihost.process_group(none, {}) == (None, None, None)  # left to jax's detection
  jax_env = {"JAX_COORDINATOR_ADDRESS": "h0:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert multihost.process_group(none, jax_env) == ("h0:1234", 4, 3)
  torchrun = {"MASTER_ADDR": "h1", "MASTER_PORT": "29500", "WORLD_SIZE": "8", "RANK": "5"}
  assert multihost.process_group(none, torchrun) == ("h1:29500", 8, 5)
  given = parser.parse_args(["--coordinator", "h2:1", "--num-processes", "2", "--process-id", "1"])
  assert multihost.process_group(given, {**jax_env, **torchrun}) == ("h2:1", 2, 1)
  with pytest.raises(ValueError, match=r"\$RANK must be an integer, got 'x'"):
    multihost.process_group(none, {**torchrun, "RANK": "x"})
