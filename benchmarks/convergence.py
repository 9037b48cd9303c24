"""Convergence speed from stored validation curves: epochs to a target loss and the area.

The paper's second claim is speed. The sweeps store every run's validation
loss per epoch (``val_loss``), so speed is measured from the committed runs,
each optimizer at its selected learning rate (best against best), paired by
seed:

* :func:`epochs_to_target`: the first epoch whose validation loss is at most a
  target (``None`` if the run never got there before it stopped);
* :func:`best_so_far_area`: the mean over epochs ``1..horizon`` of the
  best-so-far validation loss (a run that stopped early keeps its restored
  best value), i.e. the normalized area under the validation curve: smaller
  means lower sooner.

Wall time is not derived here: the runs of one optimizer train together in one
vmapped batch, so a run has no wall time of its own (the per-step cost of each
optimizer is measured by ``benchmarks/step_cost.py``).

Reference: Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection
aware methods", arXiv:2410.24216, 2024 (the speed claim).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _curve(val_loss: Sequence[float | None]) -> np.ndarray:
  return np.array([np.inf if v is None else v for v in val_loss], np.float64)


def epochs_to_target(val_loss: Sequence[float | None], target: float) -> int | None:
  """The first epoch (1-based) whose validation loss is at most ``target``.

  Args:
    val_loss: one validation loss per epoch (``None`` or non-finite: diverged).
    target: the loss to reach.

  Returns:
    The epoch, or ``None`` if no epoch reached the target.

  Examples:
    >>> epochs_to_target([0.5, 0.3, 0.25, 0.2], 0.26)
    3
    >>> epochs_to_target([0.5, None], 0.1) is None
    True
  """
  curve = _curve(val_loss)
  hit = np.flatnonzero(curve <= target)
  return int(hit[0]) + 1 if len(hit) else None


def best_so_far_area(val_loss: Sequence[float | None], horizon: int) -> float:
  """Mean over epochs ``1..horizon`` of the best-so-far validation loss.

  A run that stopped before ``horizon`` keeps its best value (the restored
  weights) for the remaining epochs.

  Args:
    val_loss: one validation loss per epoch.
    horizon: number of epochs to average over (positive).

  Returns:
    The mean best-so-far loss (``inf`` if the run has no finite loss).

  Raises:
    ValueError: if ``horizon`` is not positive.

  Examples:
    >>> round(best_so_far_area([0.5, 0.3, 0.4], horizon=4), 6)  # (0.5 + 0.3 + 0.3 + 0.3) / 4
    0.35
  """
  if horizon < 1:
    raise ValueError(f"horizon must be a positive number of epochs, got {horizon}.")
  curve = _curve(val_loss)
  if not len(curve) or not np.isfinite(curve).any():
    return math.inf
  best = np.minimum.accumulate(curve)[:horizon]
  best = np.concatenate([best, np.full(horizon - len(best), best[-1])])
  return float(np.mean(best))
