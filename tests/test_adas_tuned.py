"""The ADAS-vs-tuned-Adam study's bookkeeping, on hand-made histories."""

from __future__ import annotations

import math

import caadam_test_helpers as helpers
import jax.numpy as jnp
import pytest

from benchmarks import adas_tuned

# Slow tier: tests of benchmarks/ (the fast tier tests the library).
pytestmark = [pytest.mark.slow, pytest.mark.external]


def test_first_epoch_at_and_staying():
  errors = [50, 5, 0, 2, 0, 0]  # 1-based epochs
  assert adas_tuned.first_epoch_within(errors, 0) == 3
  assert adas_tuned.first_epoch_staying_within(errors, 0) == 5  # epoch 4 fell back
  assert adas_tuned.first_epoch_within(errors, 5) == 2
  assert adas_tuned.first_epoch_staying_within(errors, 5) == 2
  assert adas_tuned.first_epoch_within([3, 2, 1], 0) is None
  assert adas_tuned.first_epoch_staying_within([0, 1], 0) is None


def test_summarize_counts_thresholds_and_accuracies():
  # 1000 training images: 99.9% allows 1 error, 100% allows 0.
  run = {
      "history": {
          "train_errors": [[10, 1, 0], [4, 3, 2]],
          "test_errors": [[30, 20, 25], [40, 35, 30]],
          "train_loss": [[0, 0, 0]] * 2,
          "test_loss": [[0, 0, 0]] * 2,
      }
  }
  s = adas_tuned.summarize(run, n_train=1000, n_test=100)
  assert s["first_epoch_train_acc_99.9"] == [2, None]
  assert s["first_epoch_train_acc_100"] == [3, None]
  assert s["final_test_accuracy"] == pytest.approx([0.75, 0.70])
  assert s["best_test_accuracy"] == pytest.approx([0.80, 0.70])
  assert s["final_train_accuracy"] == pytest.approx([1.0, 0.998])


@pytest.mark.standard_promotion  # optax's cosine schedule mixes the int32 count with floats
def test_optimizer_specs_names_and_schedules():
  specs = adas_tuned.optimizer_specs([1e-3], [3e-3])
  assert [s.name for s in specs] == ["adas", "adam_0.001", "adam_cosine_0.003"]
  # The cosine schedule decays over the run's total steps: the 10th of 10 steps uses
  # count 9, lr * (1 + cos(pi * 9 / 10)) / 2, times Adam's unit step for constant grads.
  tx = specs[2].build(10)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  grads = {"w": jnp.ones(3)}
  for _ in range(9):
    _, state = tx.update(grads, state, params)
  updates, _ = tx.update(grads, state, params)  # the 10th step
  updates = helpers.as_dict(updates)
  expected = 3e-3 * (1 + math.cos(math.pi * 9 / 10)) / 2
  assert float(jnp.max(jnp.abs(updates["w"]))) == pytest.approx(expected, rel=1e-5)


def test_report_tables_from_a_small_result():
  hist = {
      "train_errors": [[1, 0], [0, 0], [2, 1]],
      "test_errors": [[20, 18], [22, 19], [21, 20]],
      "train_loss": [[0, 0]] * 3,
      "test_loss": [[0, 0]] * 3,
  }
  worse = {k: [[e + 5 for e in seed] for seed in v] for k, v in hist.items()}
  results = {
      "protocol": {"n_train": 1000, "n_test": 1000, "seeds": 3, "epochs": 2, "batch_size": 32},
      "machine": {"processor": "cpu"},
      "runs": {
          "adas": {"history": hist, "epoch_seconds": [1.0, 1.0]},
          "adam_0.001": {"history": worse, "epoch_seconds": [2.0, 2.0]},
      },
  }
  text = adas_tuned.report(results)
  assert "| adas | median 2 (2, 1, never)" not in text  # a seed never reached 100%: no median
  assert "| adas | median 1 (1, 1, 2) | — (2, 1, never)" in text
  # ADAS has 5 fewer test errors per seed at the end: +0.5 points, 3 of 3 wins.
  assert "| adam_0.001 | 0.9810 / 0.9760 |" in text
  assert "3/3" in text


def test_best_adam_per_criterion_by_hand():
  # 1000 training images (100% = 0 errors), 100 test images, 2 seeds, 3 epochs.
  def run(train_errors, test_errors):
    return {"history": {"train_errors": train_errors, "test_errors": test_errors}}

  runs = {
      "adas": run([[0, 0, 0], [1, 0, 0]], [[5, 5, 5], [5, 5, 5]]),
      # Fits in 2 epochs on both seeds, final test accuracy 0.90.
      "adam_a": run([[5, 0, 0], [5, 0, 0]], [[10, 10, 10], [10, 10, 10]]),
      # Never fits one seed, but the best final test accuracy (0.97) and best epoch (0.99).
      "adam_b": run([[5, 5, 5], [5, 0, 0]], [[1, 2, 3], [3, 3, 3]]),
  }
  summaries = {name: adas_tuned.summarize(r, n_train=1000, n_test=100) for name, r in runs.items()}
  assert adas_tuned.best_adam(summaries, "epochs_100") == ("adam_a", 2.0)
  assert adas_tuned.best_adam(summaries, "final_test") == ("adam_b", pytest.approx(0.97))
  assert adas_tuned.best_adam(summaries, "best_test") == ("adam_b", pytest.approx(0.98))
  del summaries["adam_a"]
  assert adas_tuned.best_adam(summaries, "epochs_100") is None  # adam_b misses on seed 0
  text = "\n".join(adas_tuned._best_adam_lines(summaries))
  assert "| fewest epochs to 100% training accuracy | none reached it on every seed | — |" in text
  assert "| highest final test accuracy | adam_b | 0.9700 | 0.9500 |" in text
