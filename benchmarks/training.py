"""Training one benchmark cell: every seed (and learning rate) of it at once.

All runs of a cell train together: one jitted, ``vmap``-ed epoch function with a
``lax.scan`` over the batches; learning rates are per-run state through
``optax.inject_hyperparams``; a stopped run is frozen (its updates are masked) while
the others go on, and every run keeps its own best weights. When at most half of the
runs are still active the stopped ones are taken out of the batch (one retrace for the
smaller width), so a cell costs about the mean, not the max, of its runs. Early stopping
and reduce-on-plateau follow Keras 3 (:mod:`benchmarks.callbacks`). With a
:class:`Checkpoint` the state of every run is saved between epochs, so a cell stopped
part way (a sweep's session ending) resumes where it was and gives the same records.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import pathlib
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import callbacks
from .models import ModelSpec
from .models import count_params
from .optimizers import OptSpec
from .optimizers import set_learning_rate
from .tasks import Task


def _per_example_loss(kind):
  if kind == "regression":
    return lambda out, y: jnp.square(out[:, 0] - y), lambda out, y: jnp.square(out[:, 0] - y)

  def loss(out, y):
    return optax.softmax_cross_entropy_with_integer_labels(out, y)

  def correct(out, y):
    return (jnp.argmax(out, -1) == y).astype(jnp.float32)

  return loss, correct


def chunks(x, y, size):
  """Pads (x, y) to a multiple of ``size`` and reshapes to chunks, with weights."""
  n = len(x)
  nc = max(1, -(-n // size))
  pad = nc * size - n
  w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  xp = np.concatenate([x, np.repeat(x[:1], pad, 0)]) if pad else x
  yp = np.concatenate([y, np.repeat(y[:1], pad, 0)]) if pad else y
  return (
      xp.reshape((nc, size) + x.shape[1:]),
      yp.reshape((nc, size) + y.shape[1:]),
      w.reshape(nc, size),
  )


def epoch_batches(rngs, n, batch_size):
  """Per-seed shuffled batch indices (Keras shuffles every epoch, keeps the partial batch)."""
  nb = -(-n // batch_size)
  pad = nb * batch_size - n
  idx = np.stack([np.concatenate([r.permutation(n), np.zeros(pad, np.int64)]) for r in rngs])
  w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  w = np.broadcast_to(w, idx.shape)
  return (
      idx.reshape(len(rngs), nb, batch_size).astype(np.int32),
      np.ascontiguousarray(w.reshape(len(rngs), nb, batch_size)),
  )


class CellTrainer:
  """Jitted, seed-vmapped epoch and evaluation functions for one (model, optimizer)."""

  def __init__(self, model: ModelSpec, tx, kind: str, eval_chunk: int):
    self.model = model
    self.tx = tx
    loss_fn, metric_fn = _per_example_loss(kind)
    self.eval_chunk = eval_chunk

    def evaluate(params, extra, xs, ys, ws):
      def body(carry, inp):
        x, y, w = inp
        out, _ = model.apply(params, extra, x, False)
        return carry, (jnp.sum(loss_fn(out, y) * w), jnp.sum(metric_fn(out, y) * w))

      _, (ls, ms) = jax.lax.scan(body, None, (xs, ys, ws))
      n = jnp.sum(ws)
      return jnp.sum(ls) / n, jnp.sum(ms) / n

    def epoch(params, extra, opt_state, active, idx, w, x_train, y_train, xv, yv, wv):
      def step(carry, inp):
        p, e, s = carry
        bi, bw = inp
        xb, yb = x_train[bi], y_train[bi]

        def objective(p_):
          out, new_e = model.apply(p_, e, xb, True)
          lsum = jnp.sum(loss_fn(out, yb) * bw)
          return lsum / jnp.sum(bw), (new_e, lsum)

        (_, (new_e, lsum)), grads = jax.value_and_grad(objective, has_aux=True)(p)
        updates, s = tx.update(grads, s, p)
        p = optax.apply_updates(p, updates)
        return (p, new_e, s), lsum

      (p, e, s), lsums = jax.lax.scan(step, (params, extra, opt_state), (idx, w))
      train_loss = jnp.sum(lsums) / jnp.sum(w)

      def keep(new, old):
        return jnp.where(active, new, old)

      p = jax.tree.map(keep, p, params)
      e = jax.tree.map(keep, e, extra)
      s = jax.tree.map(keep, s, opt_state)
      val_loss, val_metric = evaluate(p, e, xv, yv, wv)
      return p, e, s, train_loss, val_loss, val_metric

    none = None
    self.epoch = jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, 0, 0, 0, none, none, none, none, none)))
    self.evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, none, none, none)))
    self.init_opt = jax.jit(jax.vmap(tx.init))

    def select(mask, new, old):
      return jax.tree.map(
          lambda n_, o_: jnp.where(mask.reshape((-1,) + (1,) * (n_.ndim - 1)), n_, o_), new, old
      )

    self.select = jax.jit(select)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """Where a cell's training is saved between epochs, and what it must have been started as.

  ``fingerprint`` describes the cell (protocol, config, optimizer, learning rates): a
  saved state with another fingerprint is not resumed. The state is written at the end
  of an epoch once ``every_s`` seconds have passed since the last write (0: every epoch),
  atomically, so a process killed at any moment leaves the previous state or the new one.
  """

  path: pathlib.Path
  fingerprint: dict
  every_s: float

  def load(self) -> dict | None:
    """The saved state, or None (no file, an unreadable one, or another fingerprint)."""
    if not self.path.exists():
      return None
    try:
      with open(self.path, "rb") as f:
        state = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError) as e:
      print(f"[checkpoint] {self.path} unreadable ({e}); starting the cell afresh", file=sys.stderr)
      return None
    if state.get("fingerprint") != self.fingerprint:
      print(f"[checkpoint] {self.path} is of another cell; starting afresh", file=sys.stderr)
      return None
    return state

  def save(self, state: dict) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = self.path.with_name(self.path.name + ".tmp")
    with open(tmp, "wb") as f:
      pickle.dump({"fingerprint": self.fingerprint, **state}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, self.path)


def _round(values, digits=6):
  out = []
  for v in values:
    v = float(v)
    out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
  return out


@dataclasses.dataclass
class _Runs:
  """The state of every run of a cell during training, and what is recorded of it.

  Arrays indexed by run have one entry per run; the trees (``params`` ...) have one
  row per vmapped position, and ``slots[j]`` is the run trained at position ``j``.
  """

  params: Any
  extra: Any
  opt_state: Any
  early_stopping: list[callbacks.EarlyStopping]
  plateau: list[callbacks.ReduceLROnPlateau]
  lr: np.ndarray
  slots: np.ndarray
  active: np.ndarray
  epochs_run: np.ndarray
  curves: dict[str, list[list[float]]]
  lr_events: list[list[list[float]]]
  best_params: Any = None
  best_extra: Any = None
  finished: dict[int, tuple[Any, Any]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.best_params, self.best_extra = self.params, self.extra

  def record_epoch(self, epoch: int, losses, has_lr: bool) -> np.ndarray:
    """Feeds one epoch's values of the active runs to their callbacks; returns the snapshot mask."""
    train_loss, val_loss, val_metric = losses
    snapshot = np.zeros(len(self.slots), bool)
    for j, run in enumerate(self.slots):
      if not self.active[run]:
        continue
      self.epochs_run[run] = epoch + 1
      self.curves["train_loss"][run].append(train_loss[j])
      self.curves["val_loss"][run].append(val_loss[j])
      self.curves["val_metric"][run].append(val_metric[j])
      current = val_loss[j] if math.isfinite(val_loss[j]) else float("nan")
      snapshot[j], stop = self.early_stopping[run].on_epoch_end(epoch, current)
      new_lr = self.plateau[run].on_epoch_end(epoch, current, self.lr[run])
      if new_lr != self.lr[run] and has_lr:
        self.lr[run] = new_lr
        self.lr_events[run].append([epoch + 1, float(np.float32(new_lr))])
      if stop:
        self.active[run] = False
    return snapshot

  def keep_best(self, trainer: CellTrainer, snapshot: np.ndarray) -> None:
    if snapshot.any():
      mask = jnp.asarray(snapshot)
      self.best_params = trainer.select(mask, self.params, self.best_params)
      self.best_extra = trainer.select(mask, self.extra, self.best_extra)

  def retire(self, positions) -> None:
    """Keeps the final weights of the runs at ``positions`` (their best ones if restored)."""

    def take(tree, j):
      return jax.tree.map(lambda a: a[j], tree)

    for j in positions:
      run = self.slots[j]
      restore = self.early_stopping[run].should_restore
      params, extra = (self.best_params, self.best_extra) if restore else (self.params, self.extra)
      self.finished[int(run)] = (take(params, j), take(extra, j))

  def compact(self) -> None:
    """Takes the stopped runs out of the vmapped batch."""
    keep = np.array([j for j, run in enumerate(self.slots) if self.active[run]])
    self.retire([j for j, run in enumerate(self.slots) if not self.active[run]])

    def gather(tree):
      return jax.tree.map(lambda leaf: leaf[keep], tree)

    self.params, self.extra, self.opt_state = (
        gather(self.params),
        gather(self.extra),
        gather(self.opt_state),
    )
    self.best_params, self.best_extra = gather(self.best_params), gather(self.best_extra)
    self.slots = self.slots[keep]

  def final_weights(self) -> tuple[Any, Any]:
    """Every run's final weights, stacked in run order."""

    def stack(trees):
      return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

    runs = range(len(self.lr))
    return (
        stack([self.finished[run][0] for run in runs]),
        stack([self.finished[run][1] for run in runs]),
    )

  # Trees are saved as their leaves (host arrays) and rebuilt on the structure of a
  # freshly started cell, so no JAX or Optax class needs to be pickled.
  _TREES = ("params", "extra", "opt_state", "best_params", "best_extra")
  _PLAIN = (
      "early_stopping",
      "plateau",
      "lr",
      "slots",
      "active",
      "epochs_run",
      "curves",
      "lr_events",
  )

  def state(self) -> dict:
    """Everything that training reads or records, on the host."""

    def leaves(tree):
      return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]

    return {
        **{name: leaves(getattr(self, name)) for name in self._TREES},
        **{name: getattr(self, name) for name in self._PLAIN},
        "finished": {run: (leaves(p), leaves(e)) for run, (p, e) in self.finished.items()},
    }

  def restore(self, state: dict) -> None:
    """Sets this (freshly started) cell to a saved :meth:`state`."""
    params_def, extra_def = jax.tree.structure(self.params), jax.tree.structure(self.extra)
    tree_defs = {
        "params": params_def,
        "extra": extra_def,
        "opt_state": jax.tree.structure(self.opt_state),
        "best_params": params_def,
        "best_extra": extra_def,
    }

    def rebuild(tree_def, leaves):
      return jax.tree.unflatten(tree_def, [jnp.asarray(leaf) for leaf in leaves])

    for name in self._TREES:
      setattr(self, name, rebuild(tree_defs[name], state[name]))
    for name in self._PLAIN:
      setattr(self, name, state[name])
    self.finished = {
        run: (rebuild(params_def, p), rebuild(extra_def, e))
        for run, (p, e) in state["finished"].items()
    }


def _start_runs(task: Task, model: ModelSpec, opt: OptSpec, args, trainer, run_lrs, run_seed):
  """Initial weights, optimizer states, learning rates and callbacks of every run."""
  n_runs = len(run_lrs)
  # Initial weights: one shared set (published protocol) or one per seed; the
  # same for every optimizer (and learning rate) of a config.
  if args.init == "shared":
    params0, extra0 = model.init(jax.random.key(args.init_seed))
    params = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_runs,) + a.shape), params0)
    extra = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_runs,) + a.shape), extra0)
  else:
    keys = jax.random.split(jax.random.key(args.init_seed), args.seeds)
    params, extra = jax.vmap(model.init)(keys[jnp.asarray(run_seed)])
  opt_state = trainer.init_opt(params)
  lr = run_lrs * opt.lr_mult
  if opt.has_lr:
    opt_state = set_learning_rate(opt_state, lr)
  early_stopping = [
      callbacks.EarlyStopping(
          min_delta=1e-5,
          patience=task.es_patience,
          restore_best_weights=True,
          start_from_epoch=task.es_start,
      )
      for _ in range(n_runs)
  ]
  plateau = [
      callbacks.ReduceLROnPlateau(
          factor=0.25,
          patience=task.plateau_patience,
          min_delta=args.plateau_min_delta,
          min_lr=args.min_lr * opt.lr_mult * (run_lr / args.lr),
      )
      for run_lr in run_lrs
  ]
  return _Runs(
      params=params,
      extra=extra,
      opt_state=opt_state,
      early_stopping=early_stopping,
      plateau=plateau,
      lr=lr,
      slots=np.arange(n_runs),
      active=np.ones(n_runs, bool),
      epochs_run=np.zeros(n_runs, int),
      curves={k: [[] for _ in range(n_runs)] for k in ("train_loss", "val_loss", "val_metric")},
      lr_events=[[] for _ in range(n_runs)],
  )


@dataclasses.dataclass
class _Progress:
  """Where the epoch loop is: what a checkpoint holds besides the runs."""

  epoch: int = 0  # the next epoch to train
  epoch_times: list[float] = dataclasses.field(default_factory=list)
  widths: list[int] = dataclasses.field(default_factory=list)
  resumed_at: list[int] = dataclasses.field(default_factory=list)  # epochs that compiled, too
  wall_s: float = 0.0  # spent before this process


def _train(task, opt, args, trainer, runs: _Runs, rngs, train_xy, val_chunks, progress, at, save):
  """The epoch loop from ``at.epoch`` on; ``save(at)`` is offered the state after each epoch."""
  for epoch in range(at.epoch, task.max_epochs):
    t0 = time.perf_counter()
    idx, w = epoch_batches([rngs[s] for s in runs.slots], len(train_xy[0]), task.batch_size)
    runs.params, runs.extra, runs.opt_state, *losses = trainer.epoch(
        runs.params,
        runs.extra,
        runs.opt_state,
        jnp.asarray(runs.active[runs.slots]),
        jnp.asarray(idx),
        jnp.asarray(w),
        *train_xy,
        *val_chunks,
    )
    losses = [np.asarray(a, np.float64) for a in losses]
    at.epoch_times.append(time.perf_counter() - t0)
    at.widths.append(len(runs.slots))
    runs.keep_best(trainer, runs.record_epoch(epoch, losses, opt.has_lr))
    if progress is not None:
      progress(
          epoch + 1,
          int(runs.active.sum()),
          float(np.nanmedian(np.where(runs.active[runs.slots], losses[1], np.nan)))
          if runs.active.any()
          else float("nan"),
      )
    if not runs.active.any():
      break
    if args.compact and int(runs.active[runs.slots].sum()) <= len(runs.slots) // 2:
      runs.compact()
    if opt.has_lr:
      runs.opt_state = set_learning_rate(runs.opt_state, runs.lr[runs.slots])
    at.epoch = epoch + 1
    save(at)
  runs.retire(range(len(runs.slots)))


def _run_records(task: Task, runs: _Runs, run_seed, run_lrs, lrs, test_eval, val_eval):
  """One record per run: its stopping, learning-rate events, final metrics and curves."""
  test_loss, test_metric_raw = test_eval
  val_loss, val_metric_raw = val_eval
  records = []
  for s in range(len(run_lrs)):
    early_stopping = runs.early_stopping[s]
    restored = early_stopping.should_restore
    regression = task.kind == "regression"
    test_metric = math.sqrt(test_loss[s]) if regression else test_metric_raw[s]
    val_metric = math.sqrt(val_loss[s]) if regression else val_metric_raw[s]
    records.append(
        {
            "seed": int(run_seed[s]),
            **({"lr": float(run_lrs[s])} if lrs is not None else {}),
            "epochs": int(runs.epochs_run[s]),
            "best_epoch": int(early_stopping.best_epoch) + 1
            if restored
            else int(runs.epochs_run[s]),
            "stopped_early": bool(early_stopping.stop_training),
            "restored_best": bool(restored),
            "lr_reductions": runs.lr_events[s],
            "test_loss": _round([test_loss[s]])[0],
            f"test_{task.metric}": _round([test_metric])[0],
            "final_val_loss": _round([val_loss[s]])[0],
            f"final_val_{task.metric}": _round([val_metric])[0],
            "train_loss": _round(runs.curves["train_loss"][s], 6),
            # Full float32 precision: the early-stopping decisions can be replayed from it.
            "val_loss": _round(runs.curves["val_loss"][s], 9),
            **(
                {"val_accuracy": _round(runs.curves["val_metric"][s], 5)}
                if task.kind == "classification"
                else {}
            ),
        }
    )
  return records


def run_cell(
    task: Task,
    model: ModelSpec,
    opt: OptSpec,
    data,
    args,
    progress: Callable[[int, int, float], None] | None = None,
    lrs: Sequence[float] | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict:
  """Trains ``args.seeds`` runs of one cell together; returns the cell record.

  With ``lrs`` (a learning-rate sweep) the cell trains every seed at every base
  learning rate in one vmapped batch (``len(lrs) * args.seeds`` runs); seed
  ``s`` has the same initial weights and batch order at every learning rate,
  and each run's plateau floor is ``args.min_lr / args.lr`` times its own
  learning rate. Each run record then carries its ``"lr"``. With ``checkpoint``
  the training resumes from a saved state of the same cell and saves its own; the
  caller removes the file once the record is stored.
  """
  x_train, y_train, x_val, y_val, x_test, y_test = data
  run_lrs = np.repeat(np.asarray(lrs if lrs is not None else [args.lr], np.float64), args.seeds)
  run_seed = np.tile(np.arange(args.seeds), len(run_lrs) // args.seeds)
  t_start = time.perf_counter()
  trainer = CellTrainer(model, opt.make(args.lr, model.structure()), task.kind, args.eval_chunk)
  runs = _start_runs(task, model, opt, args, trainer, run_lrs, run_seed)
  # Same shuffles for every optimizer (paired design); seeds differ in their shuffles.
  rngs = [np.random.default_rng([args.shuffle_seed, int(s)]) for s in run_seed]
  at = _Progress()
  if checkpoint is not None and (saved := checkpoint.load()) is not None:
    runs.restore(saved["runs"])
    for rng, rng_state in zip(rngs, saved["rngs"], strict=True):
      rng.bit_generator.state = rng_state
    at = dataclasses.replace(saved["at"])
    at.resumed_at.append(at.epoch)  # epoch_times[e] is epoch e's: it compiles again
    print(f"[checkpoint] {checkpoint.path.name}: resumed at epoch {at.epoch}", file=sys.stderr)
  last_save = time.perf_counter()

  def save(at: _Progress) -> None:
    nonlocal last_save
    if checkpoint is None or time.perf_counter() - last_save < checkpoint.every_s:
      return
    wall = at.wall_s + time.perf_counter() - t_start
    state = {"runs": runs.state(), "rngs": [r.bit_generator.state for r in rngs]}
    checkpoint.save({**state, "at": dataclasses.replace(at, wall_s=wall)})
    last_save = time.perf_counter()

  val_chunks = tuple(jnp.asarray(a) for a in chunks(x_val, y_val, args.eval_chunk))
  train_xy = (jnp.asarray(x_train), jnp.asarray(y_train))
  _train(task, opt, args, trainer, runs, rngs, train_xy, val_chunks, progress, at, save)

  final_params, final_extra = runs.final_weights()
  test_chunks = (jnp.asarray(a) for a in chunks(x_test, y_test, args.eval_chunk))
  test_eval = trainer.evaluate(final_params, final_extra, *test_chunks)
  val_eval = trainer.evaluate(final_params, final_extra, *val_chunks)
  test_eval, val_eval = ([np.asarray(a, np.float64) for a in e] for e in (test_eval, val_eval))
  wall = at.wall_s + time.perf_counter() - t_start
  # The first epoch (and the first after resuming) includes compilation; report the
  # median of the other full-width epochs (the per-epoch cost of the cell with all seeds).
  n_runs = len(run_lrs)
  steady = [
      t
      for i, (t, width) in enumerate(zip(at.epoch_times, at.widths, strict=True))
      if i not in (0, *at.resumed_at) and width == n_runs
  ] or at.epoch_times
  return {
      "config": model.name,
      "optimizer": opt.name,
      "description": opt.description,
      "lr_mult": opt.lr_mult,
      "num_params": count_params(jax.tree.map(lambda a: a[0], runs.params)),
      "n_seeds": args.seeds,
      "cell_epochs": len(at.epoch_times),
      "wall_s": round(wall, 3),
      "first_epoch_s": round(at.epoch_times[0], 3),
      "epoch_s_median": round(float(np.median(steady)), 4),
      "seed_epochs_computed": int(sum(at.widths)),
      **({"resumed_at_epochs": at.resumed_at} if at.resumed_at else {}),
      "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "runs": _run_records(task, runs, run_seed, run_lrs, lrs, test_eval, val_eval),
  }
