"""Tests for benchmarks/callbacks.py: Keras 3 EarlyStopping / ReduceLROnPlateau semantics."""

from __future__ import annotations

import importlib
import math
import os

import numpy as np
import pytest

from benchmarks import callbacks

# Slow tier: tests of benchmarks/ (the fast tier tests the library).
pytestmark = [pytest.mark.slow, pytest.mark.external]


def run_es(values, **kw):
  """Feeds values; returns (snapshot epochs, stop epoch or None, callback)."""
  es = callbacks.EarlyStopping(**kw)
  snaps, stop_at = [], None
  for epoch, v in enumerate(values):
    snap, stop = es.on_epoch_end(epoch, v)
    if snap:
      snaps.append(epoch)
    if stop:
      stop_at = epoch
      break
  return snaps, stop_at, es


def run_plateau(values, lr=1e-3, **kw):
  cb = callbacks.ReduceLROnPlateau(**kw)
  lrs = []
  for epoch, v in enumerate(values):
    lr = cb.on_epoch_end(epoch, v, lr)
    lrs.append(lr)
  return lrs, cb


# ----------------------------------------------------------------------------
# EarlyStopping, hand-worked
# ----------------------------------------------------------------------------


def test_early_stopping_basic_patience():
  # e0 first value: best 1.0; e1 improves (0.9); e2 wait 1; e3 wait 2 >= 2: stop.
  snaps, stop, es = run_es([1.0, 0.9, 0.95, 0.91, 0.5], patience=2, restore_best_weights=True)
  assert snaps == [0, 1]
  assert stop == 3
  assert es.best == 0.9 and es.best_epoch == 1 and es.should_restore
  assert es.stopped_epoch == 3


def test_early_stopping_min_delta_is_absolute_and_strict():
  # 1.0 - 5e-6 does not beat 1.0 by min_delta 1e-5; 1.0 - 2e-5 does.
  snaps, stop, es = run_es(
      [1.0, 1.0 - 5e-6, 1.0 - 2e-5, 1.0 - 2.5e-5],
      min_delta=1e-5,
      patience=5,
      restore_best_weights=True,
  )
  assert snaps == [0, 2]
  assert stop is None
  assert es.best == pytest.approx(1.0 - 2e-5)
  assert es.wait == 1


def test_early_stopping_start_from_epoch():
  # Epochs 0-2 are ignored entirely (even the very low value at epoch 2); epoch 3 is the
  # first monitored epoch and its weights are the first best weights.
  snaps, stop, es = run_es(
      [5.0, 4.0, 0.1, 10.0, 10.0, 10.0, 10.0],
      patience=2,
      start_from_epoch=3,
      restore_best_weights=True,
  )
  assert snaps == [3]
  assert stop == 5
  assert es.best == 10.0 and es.best_epoch == 3


def test_early_stopping_no_restore_if_never_monitored():
  snaps, stop, es = run_es([1.0, 0.5], patience=1, start_from_epoch=12, restore_best_weights=True)
  assert snaps == [] and stop is None and not es.should_restore


def test_early_stopping_restores_without_early_stop():
  # Keras 3 restores the best weights at the end of training even when the epoch cap
  # ended it (tf.keras 2 only restored after an early stop).
  snaps, stop, es = run_es([1.0, 0.5, 0.7], patience=10, restore_best_weights=True)
  assert stop is None and es.should_restore and es.best_epoch == 1


def test_early_stopping_without_restore_never_snapshots():
  snaps, stop, es = run_es([1.0, 0.5, 0.7, 0.8], patience=2)
  assert snaps == [] and stop == 3 and not es.should_restore


def test_early_stopping_patience_zero():
  snaps, stop, _ = run_es([1.0, 0.9, 0.8, 0.85], patience=0)
  assert stop == 3
  snaps, stop, _ = run_es([1.0, 1.0], patience=0)
  assert stop == 1


def test_early_stopping_nan():
  # NaN is never an improvement, so training stops after `patience` epochs ...
  snaps, stop, es = run_es([1.0, float("nan"), float("nan")], patience=2, restore_best_weights=True)
  assert stop == 2 and es.best == 1.0 and snaps == [0]
  # ... but a NaN first value is the first "best" (reference None), as in Keras.
  snaps, stop, es = run_es([float("nan"), 0.5, 0.4], patience=2, restore_best_weights=True)
  assert stop == 2 and es.best is not None and math.isnan(es.best) and snaps == [0]


def test_early_stopping_mode_max():
  snaps, stop, es = run_es([0.5, 0.6, 0.6, 0.55], mode="max", patience=2, min_delta=0.01)
  assert stop == 3 and es.best == 0.6


def test_early_stopping_baseline():
  # Improvements that do not beat the baseline do not reset `wait` (but an improving
  # epoch never stops training).
  snaps, stop, es = run_es([1.0, 0.9, 0.9, 0.9], patience=3, baseline=0.5)
  assert stop == 2 and es.best == 0.9
  snaps, stop, es = run_es([1.0, 0.9, 0.8, 0.7], patience=3, baseline=0.5)
  assert stop is None and es.wait == 4


# ----------------------------------------------------------------------------
# ReduceLROnPlateau, hand-worked
# ----------------------------------------------------------------------------


def test_plateau_reductions_floor_and_threshold():
  v = [1.0, 1.0 - 5e-5, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99]
  lrs, cb = run_plateau(v, factor=0.25, patience=2, min_lr=2.5e-5)
  # e0 best 1.0; e1 not an improvement (5e-5 < min_delta 1e-4): wait 1; e2 improves;
  # e3 wait 1; e4 wait 2 -> 2.5e-4; e5, e6 -> 6.25e-5; e7, e8 -> max(1.5625e-5, floor);
  # then the floor: nothing more happens.
  expected = [
      1e-3,
      1e-3,
      1e-3,
      1e-3,
      2.5e-4,
      2.5e-4,
      6.25e-5,
      6.25e-5,
      2.5e-5,
      2.5e-5,
      2.5e-5,
      2.5e-5,
  ]
  np.testing.assert_allclose(lrs, expected, rtol=1e-6)
  assert cb.num_reductions == 3
  assert cb.wait == 3  # keeps counting at the floor, as Keras


def test_plateau_float32_floor_comparison():
  # A learning rate equal to the floor in float32 is not reduced again.
  lr = float(np.float32(2.5e-5))
  lrs, cb = run_plateau([1.0, 1.0, 1.0], lr=lr, factor=0.25, patience=1, min_lr=2.5e-5)
  assert lrs == [lr, lr, lr] and cb.num_reductions == 0


def test_plateau_cooldown():
  lrs, cb = run_plateau([1.0] * 6, lr=1.0, factor=0.5, patience=1, cooldown=2)
  # e1: wait 1 -> reduce, cooldown 2. e2: counter 2 -> 1, still in cooldown. e3: counter
  # 1 -> 0 (wait reset), no longer in cooldown, so wait 1 -> reduce. e4, e5 likewise.
  assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_plateau_rejects_factor_one():
  with pytest.raises(ValueError):
    callbacks.ReduceLROnPlateau(factor=1.0)


# ----------------------------------------------------------------------------
# Against Keras 3's own callbacks (when keras is importable)
# ----------------------------------------------------------------------------


def _import_keras():
  os.environ.setdefault("KERAS_BACKEND", "jax")
  try:
    return importlib.import_module("keras")
  except Exception as e:  # noqa: BLE001
    pytest.skip(
        f"keras is not importable in this environment ({type(e).__name__}: {e}); "
        "the hand-worked sequences above cover the semantics"
    )


class _FakeModel:
  """What the two Keras callbacks touch: weights, stop_training, optimizer.learning_rate."""

  def __init__(self, keras, lr):
    self.stop_training = False
    self.optimizer = keras.optimizers.Adam(learning_rate=lr)
    self.weights_value = -1

  def get_weights(self):
    return [self.weights_value]

  def set_weights(self, weights):
    self.weights_value = weights[0]


def _sequences(n, rng):
  out = []
  for _ in range(n):
    length = int(rng.integers(5, 60))
    kind = rng.integers(0, 3)
    steps = rng.normal(-0.01, 0.02, size=length)
    if kind == 1:
      steps = rng.choice([0.0, -1e-5, -5e-6, 2e-5, -2e-4], size=length)
    seq = 1.0 + np.cumsum(steps)
    if kind == 2:
      seq = np.round(seq, 3)
    out.append([float(x) for x in seq])
  return out


@pytest.mark.parametrize(
    "params",
    [
        dict(min_delta=1e-5, patience=25, start_from_epoch=12),
        dict(min_delta=1e-5, patience=3, start_from_epoch=2),
        dict(min_delta=0.0, patience=1, start_from_epoch=0),
        dict(min_delta=1e-3, patience=4, start_from_epoch=5),
    ],
)
def test_early_stopping_matches_keras(params):
  keras = _import_keras()
  rng = np.random.default_rng(0)
  for seq in _sequences(40, rng):
    model = _FakeModel(keras, 1e-3)
    ref = keras.callbacks.EarlyStopping(
        monitor="val_loss", mode="min", restore_best_weights=True, **params
    )
    ref.set_model(model)
    ref.on_train_begin()
    ours = callbacks.EarlyStopping(restore_best_weights=True, **params)
    kept, ours_stop = None, None
    for epoch, v in enumerate(seq):
      model.weights_value = epoch
      ref.on_epoch_end(epoch, {"val_loss": v})
      snap, stop = ours.on_epoch_end(epoch, v)
      if snap:
        kept = epoch
      assert bool(model.stop_training) == stop, (seq, epoch)
      if stop:
        ours_stop = epoch
        break
    ref.on_train_end()
    final_ours = (
        kept if ours.should_restore else (ours_stop if ours_stop is not None else len(seq) - 1)
    )
    assert model.weights_value == final_ours, (seq, params)
    assert ref.best_epoch == ours.best_epoch


@pytest.mark.parametrize(
    "params",
    [
        dict(factor=0.25, patience=8, min_lr=2.5e-5),
        dict(factor=0.25, patience=2, min_lr=2.5e-5),
        dict(factor=0.5, patience=1, min_lr=1e-4, cooldown=2),
        dict(factor=0.25, patience=3, min_lr=5e-5, min_delta=1e-3),
    ],
)
def test_plateau_matches_keras(params):
  keras = _import_keras()
  rng = np.random.default_rng(1)
  for seq in _sequences(30, rng):
    model = _FakeModel(keras, 1e-3)
    ref = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min", **params)
    ref.set_model(model)
    ref.on_train_begin()
    ours = callbacks.ReduceLROnPlateau(**params)
    lr = 1e-3
    for epoch, v in enumerate(seq):
      ref.on_epoch_end(epoch, {"val_loss": v})
      lr = ours.on_epoch_end(epoch, v, lr)
      keras_lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
      assert np.float32(lr) == np.float32(keras_lr), (seq, epoch, lr, keras_lr)
