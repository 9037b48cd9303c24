"""Tests for benchmarks/convergence.py: epochs to a target and the best-so-far area, by hand."""

from __future__ import annotations

import math

import pytest

from benchmarks import convergence


def test_epochs_to_target_by_hand():
  curve = [0.40, 0.31, 0.35, 0.29, 0.30]
  assert convergence.epochs_to_target(curve, 0.30) == 4  # first epoch at or below
  assert convergence.epochs_to_target(curve, 0.31) == 2  # "at" counts
  assert convergence.epochs_to_target(curve, 0.40) == 1
  assert convergence.epochs_to_target(curve, 0.28) is None
  assert convergence.epochs_to_target([None, 0.2], 0.25) == 2  # a missing value never counts


def test_best_so_far_area_by_hand():
  curve = [0.40, 0.30, 0.35, 0.20]
  # Best so far: 0.40, 0.30, 0.30, 0.20; cut at 3 epochs, or extended with 0.20 to 6.
  assert convergence.best_so_far_area(curve, 3) == pytest.approx((0.40 + 0.30 + 0.30) / 3)
  assert convergence.best_so_far_area(curve, 6) == pytest.approx((0.40 + 0.30 + 0.30 + 0.6) / 6)
  assert math.isinf(convergence.best_so_far_area([None, None], 2))
  with pytest.raises(ValueError, match="horizon"):
    convergence.best_so_far_area(curve, 0)
