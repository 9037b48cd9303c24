"""Early stopping and reduce-on-plateau with Keras 3 semantics, framework-free.

Pure Python state machines that mirror ``keras.callbacks.EarlyStopping`` and
``keras.callbacks.ReduceLROnPlateau`` (Keras 3.x source) decision for decision,
so the benchmark's training protocol is the published one without depending on
Keras. They hold no weights and no optimizer: the caller feeds them the
monitored value once per epoch and acts on what they return (snapshot the
weights, stop, change the learning rate). One instance per training run; the
benchmark keeps one per seed.

Keras semantics reproduced here (mode ``"min"``, the only mode the benchmark
uses; ``"max"`` is supported for completeness):

* improvement: ``current - min_delta' < best`` where Keras stores
  ``min_delta' = -abs(min_delta)`` for mode min, i.e. ``current + min_delta <
  best`` (an absolute threshold, not relative), compared in float32 as
  ``keras.ops.less`` does; the first value seen is always
  an improvement (``best`` starts as None). NaN is never an improvement
  (except as the very first value).
* EarlyStopping: epochs ``< start_from_epoch`` are ignored entirely (no best,
  no wait). At the first monitored epoch the current weights become the best
  weights. Every monitored epoch increments ``wait`` first and resets it to 0 on
  an improvement; training stops when ``wait >= patience`` (and ``epoch > 0``).
  With ``restore_best_weights`` the best weights are restored at the end of
  training whenever any epoch was monitored, also when training ran to the
  epoch cap without stopping early (Keras 3 behaviour; tf.keras 2 restored only
  after an early stop).
* ReduceLROnPlateau: ``wait`` counts non-improving epochs (outside cooldown);
  when ``wait >= patience`` the learning rate becomes
  ``max(lr * factor, min_lr)`` provided ``lr > float32(min_lr)``; after a
  reduction ``wait`` is reset and the cooldown starts. If the learning rate is
  already at the floor nothing happens and ``wait`` keeps growing (as in Keras).
"""

from __future__ import annotations

import numpy as np


class _Monitor:
  """Keras ``MonitorCallback``'s improvement test."""

  def __init__(self, mode: str, min_delta: float):
    if mode not in ("min", "max"):
      raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
    self.mode = mode
    # Keras multiplies min_delta by -1 in mode min, then tests
    # monitor_op(current - min_delta, best).
    self._min_delta = -abs(min_delta) if mode == "min" else abs(min_delta)

  def is_improvement(self, current: float, reference: float | None) -> bool:
    if reference is None:
      return True
    # Keras computes ``current - min_delta`` in Python floats and compares with
    # ``keras.ops.less`` / ``greater``, i.e. in float32 (the backend's floatx).
    shifted = np.float32(current - self._min_delta)
    reference32 = np.float32(reference)
    if self.mode == "min":
      return bool(shifted < reference32)  # False for NaN on either side.
    return bool(shifted > reference32)


class EarlyStopping(_Monitor):
  """``keras.callbacks.EarlyStopping`` without Keras.

  Call :meth:`on_epoch_end` with the 0-based epoch index and the monitored value
  after every epoch. It returns ``(snapshot, stop)``: ``snapshot`` means "the
  current weights are the new best weights, keep a copy" (only meaningful with
  ``restore_best_weights``), ``stop`` means "stop training after this epoch".
  After training, :attr:`should_restore` says whether the kept best weights
  replace the final ones.

  Attributes:
    best: the best monitored value so far (None before the first monitored epoch).
    best_epoch: the epoch of ``best`` (0 before any monitored epoch, as Keras).
    wait: epochs since the last improvement (Keras counting).
    stopped_epoch: the epoch at which stopping was requested (0 if never).
    stop_training: whether stopping was requested.
    has_best_weights: whether a snapshot was requested at least once.
  """

  def __init__(
      self,
      *,
      min_delta: float = 0.0,
      patience: int = 0,
      mode: str = "min",
      baseline: float | None = None,
      restore_best_weights: bool = False,
      start_from_epoch: int = 0,
  ):
    super().__init__(mode, min_delta)
    self.patience = patience
    self.baseline = baseline
    self.restore_best_weights = restore_best_weights
    self.start_from_epoch = start_from_epoch
    self.wait = 0
    self.stopped_epoch = 0
    self.best: float | None = None
    self.best_epoch = 0
    self.stop_training = False
    self.has_best_weights = False

  def on_epoch_end(self, epoch: int, current: float | None) -> tuple[bool, bool]:
    if current is None or epoch < self.start_from_epoch:
      return False, False
    current = float(current)
    snapshot = False
    if self.restore_best_weights and not self.has_best_weights:
      # "If best weights were never set, then the current weights are the best."
      self.has_best_weights = True
      self.best_epoch = epoch
      snapshot = True
    self.wait += 1
    if self.is_improvement(current, self.best):
      self.best = current
      self.best_epoch = epoch
      if self.restore_best_weights:
        snapshot = True
      if self.baseline is None or self.is_improvement(current, self.baseline):
        self.wait = 0
      return snapshot, False
    if self.wait >= self.patience and epoch > 0:
      self.stopped_epoch = epoch
      self.stop_training = True
      return snapshot, True
    return snapshot, False

  @property
  def should_restore(self) -> bool:
    """Whether ``on_train_end`` restores the kept best weights (Keras 3)."""
    return self.restore_best_weights and self.has_best_weights


class ReduceLROnPlateau(_Monitor):
  """``keras.callbacks.ReduceLROnPlateau`` without Keras.

  Call :meth:`on_epoch_end` with the epoch, the monitored value and the current
  learning rate; it returns the learning rate for the next epoch (the same
  value when nothing changes).
  """

  def __init__(
      self,
      *,
      factor: float = 0.1,
      patience: int = 10,
      mode: str = "min",
      min_delta: float = 1e-4,
      cooldown: int = 0,
      min_lr: float = 0.0,
  ):
    if factor >= 1.0:
      raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0, got {factor}.")
    super().__init__(mode, min_delta)
    self.factor = factor
    self.patience = patience
    self.cooldown = cooldown
    self.min_lr = min_lr
    self.best: float | None = None
    self.wait = 0
    self.cooldown_counter = 0
    self.num_reductions = 0

  def in_cooldown(self) -> bool:
    return self.cooldown_counter > 0

  def on_epoch_end(self, epoch: int, current: float | None, lr: float) -> float:
    del epoch
    if current is None:
      return lr
    current = float(current)
    if self.in_cooldown():
      self.cooldown_counter -= 1
      self.wait = 0
    if self.is_improvement(current, self.best):
      self.best = current
      self.wait = 0
    elif not self.in_cooldown():
      self.wait += 1
      if self.wait >= self.patience:
        # Keras reads the optimizer's float32 variable back as a Python float.
        old_lr = float(np.float32(lr))
        if old_lr > np.float32(self.min_lr):
          new_lr = max(old_lr * self.factor, self.min_lr)
          self.cooldown_counter = self.cooldown
          self.wait = 0
          self.num_reductions += 1
          return new_lr
    return lr
