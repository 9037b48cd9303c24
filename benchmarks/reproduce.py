"""Does connection awareness beat Adam once the learning rate is controlled?

A controlled reproduction of the published CaAdam experiments (docs/published.md
says what the published code ran). The published gains were measured against Adam
at one learning rate, while the published code (Keras package ``caadam`` 0.1.1)
effectively multiplied the learning rate of every kernel by about 2 (additive) or 5
(multiplicative). This script trains every optimizer ("cell") on the published protocol and adds
the missing controls: Adam at 2x and 5x the learning rate, AdamW and ADAS.

Tasks:

* ``california``: California Housing, the six published MLPs ``8 -> hidden -> 1``
  (ReLU), X and y standardized on the training split (RMSE in standard
  deviations of y), batch 128; split as Keras's ``california_housing.load_data``
  (``RandomState(113)`` shuffle, first 80% train).
* ``fashion``: Fashion-MNIST, a small CNN (conv 16 s2 -> conv 32 s2 -> dense 10)
  on a training subsample that trains in minutes on CPU; ``--resnet20`` selects
  the published ResNet-20 on 56x56 3-channel inputs instead (for GPU machines).
* ``mnist``: MNIST, ``784 -> 256 ReLU -> 10`` (ADAS vs Adam).

Protocol (published): lr 1e-3; the last 20% of the training split is the
validation set (Keras ``validation_split``); early stopping on the validation
loss (min_delta 1e-5, patience 25 from epoch 12 for California, 15 for images,
restoring the best weights) and reduce-on-plateau of the learning rate (factor
0.25, patience 8 / 6, floor 2.5e-5), with Keras 3 semantics
(``benchmarks/callbacks.py``); an epoch cap (``--max-epochs``).

Speed: all seeds of one cell train together: one jitted, ``vmap``-ed epoch
function with a ``lax.scan`` over the batches; learning rates are per-seed
state through ``optax.inject_hyperparams``; a stopped seed is frozen (its
updates are masked) while the others go on, and every seed keeps its own best
weights. A cell therefore costs about one run of its longest seed.

Usage::

  python benchmarks/reproduce.py --task california --data-dir ../shared/data
  python benchmarks/reproduce.py --task fashion --seeds 5
  python benchmarks/reproduce.py --task california --quick      # < 3 min smoke run

Results go to ``benchmarks/results/<task>.json`` (every run, versions and
machine), ``<task>.md`` (tables) and ``<task>_box.png`` / ``<task>_curves.png``.
The sweep is resumable: cells already in the JSON are skipped. ``--quick``
writes to a temporary directory unless ``--out-dir`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import caadam_jax
from caadam_jax import datasets

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import contextlib

import callbacks  # benchmarks/callbacks.py

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
JSON_FORMAT = 1

# ----------------------------------------------------------------------------
# Published numbers
# ----------------------------------------------------------------------------

# Adam test RMSE (standardized y) in the reference's California results notebook.
PUBLISHED_ADAM_RMSE = {
    "[1024,256,64,16]": 0.4418,
    "[128,128,128,128,128]": 0.4546,
    "[128,128,64]": 0.4562,
    "[128,64,32]": 0.4595,
    "[256,128,64,32]": 0.4525,
    "[64,32]": 0.4660,
}

CALIFORNIA_CONFIGS = (
    (64, 32),
    (128, 64, 32),
    (128, 128, 64),
    (256, 128, 64, 32),
    (128, 128, 128, 128, 128),
    (1024, 256, 64, 16),
)

# ----------------------------------------------------------------------------
# Models (Keras defaults: glorot-uniform kernels, zero biases)
# ----------------------------------------------------------------------------

GLOROT = nn.initializers.glorot_uniform()


class MLP(nn.Module):
  """``in -> hidden (ReLU) -> out``; layers ``Dense_0 .. Dense_k`` in forward order."""

  hidden: tuple[int, ...]
  out: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x.reshape(x.shape[0], -1)
    for i, h in enumerate(self.hidden):
      x = nn.relu(nn.Dense(h, kernel_init=GLOROT, name=f"Dense_{i}")(x))
    return nn.Dense(self.out, kernel_init=GLOROT, name=f"Dense_{len(self.hidden)}")(x)


class PatchConv(nn.Module):
  """A 3x3 convolution with stride 2 and SAME padding computed as patches @ kernel.

  Same parameters (``kernel`` of shape ``(3, 3, in, out)``, ``bias``), same
  initialization and same outputs as ``nn.Conv(out, (3, 3), strides=2,
  padding="SAME")``, but built from slices and one matmul: under ``vmap`` over
  seeds a convolution with batched kernels becomes a grouped convolution, which
  XLA's CPU backend runs about 10x slower than the equivalent batched matmul.
  """

  features: int
  kernel_init: Any = GLOROT

  @nn.compact
  def __call__(self, x):
    k, s = 3, 2
    cin = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, cin, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    h, w = x.shape[1], x.shape[2]
    oh, ow = -(-h // s), -(-w // s)
    pad_h, pad_w = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
    x = jnp.pad(
        x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    patches = jnp.concatenate(
        [
            x[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ],
        axis=-1,
    )
    return patches @ kernel.reshape(k * k * cin, self.features) + bias


class SmallCNN(nn.Module):
  """28x28x1 -> conv 3x3/2 16 -> conv 3x3/2 32 -> dense 10 (ReLU)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = x[..., None] if x.ndim == 3 else x
    x = nn.relu(PatchConv(16, name="L0_conv")(x))
    x = nn.relu(PatchConv(32, name="L1_conv")(x))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(10, kernel_init=GLOROT, name="L2_dense")(x)


class ResNet20(nn.Module):
  """ResNet-20 (He et al. 2016, CIFAR variant, v1) on 56x56x3 upscaled inputs.

  28x28 grey images are resized bilinearly to 56x56 and repeated to 3 channels
  inside the model (as the published Fashion-MNIST experiment fed ResNet-20).
  conv 3x3 16 -> 3 stages x 3 basic blocks (16, 32, 64 filters; stride 2 at the
  start of stages 2 and 3, 1x1 projection shortcuts there) -> global average
  pool -> dense. BatchNorm with Keras defaults (momentum 0.99, epsilon 1e-3),
  He-normal kernels (as the Keras ResNet example). Modules are named
  ``L00_conv``, ``L01_bn``, ... in creation (forward) order so that the natural
  path order used by ``caadam_jax`` for depths and by ``keras_caadam`` for the
  Keras variable order is the forward order.
  """

  num_classes: int = 10
  size: int = 56

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x[..., None] if x.ndim == 3 else x
    if x.shape[1] != self.size:
      x = jax.image.resize(x, (x.shape[0], self.size, self.size, x.shape[-1]), "bilinear")
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    counter = [0]

    def name(kind):
      n = f"L{counter[0]:02d}_{kind}"
      counter[0] += 1
      return n

    def conv(y, filters, kernel=3, strides=1):
      return nn.Conv(
          filters,
          (kernel, kernel),
          strides=strides,
          padding="SAME",
          kernel_init=nn.initializers.he_normal(),
          name=name("conv"),
      )(y)

    def bn(y):
      return nn.BatchNorm(
          use_running_average=not train, momentum=0.99, epsilon=1e-3, name=name("bn")
      )(y)

    x = nn.relu(bn(conv(x, 16)))
    for stage, filters in enumerate((16, 32, 64)):
      for block in range(3):
        strides = 2 if stage > 0 and block == 0 else 1
        y = nn.relu(bn(conv(x, filters, strides=strides)))
        y = bn(conv(y, filters))
        if strides != 1 or x.shape[-1] != filters:
          x = conv(x, filters, kernel=1, strides=strides)
        x = nn.relu(x + y)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=GLOROT, name=name("dense"))(x)


class ModelSpec:
  """A flax module with the (params, extra) interface the trainer uses."""

  def __init__(self, name: str, module: nn.Module, input_shape: tuple[int, ...]):
    self.name = name
    self.module = module
    self.input_shape = input_shape

  def init(self, key):
    variables = self.module.init(key, jnp.zeros((2,) + self.input_shape, jnp.float32), train=False)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    return params, extra

  def apply(self, params, extra, x, train: bool):
    variables = {"params": params, **extra}
    if train and extra:
      out, mutated = self.module.apply(variables, x, train=True, mutable=list(extra))
      return out, dict(mutated)
    return self.module.apply(variables, x, train=train), extra


def count_params(tree) -> int:
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------
# Optimizers (cells)
# ----------------------------------------------------------------------------


def _keras_adam(learning_rate):
  # Keras-form Adam (eps 1e-7 on the uncorrected sqrt(v)) through the public API:
  # the published mode with the depth strategy and g = 0 has every factor (1+0)**x = 1.
  return caadam_jax.keras_caadam(learning_rate, strategy="depth", scaling_factor=0.0)


def _published(strategy):
  def make(learning_rate):
    return caadam_jax.keras_caadam(learning_rate, strategy=strategy)

  return make


def _described(strategy):
  def make(learning_rate):
    return caadam_jax.caadam(learning_rate, strategy=strategy)

  return make


def _adamw(learning_rate):
  return optax.adamw(learning_rate, weight_decay=1e-4)


class OptSpec:

  def __init__(
      self,
      name,
      factory,
      lr_mult=1.0,
      requires=None,
      has_lr=True,
      label=None,
      matched=None,
      description="",
  ):
    self.name = name
    self.factory = factory
    self.lr_mult = lr_mult
    self.requires = requires
    self.has_lr = has_lr
    self.label = label or name
    self.matched = matched  # the learning-rate-matched Adam control
    self.description = description

  def available(self) -> tuple[bool, str]:
    for attr in self.requires or ():
      if not hasattr(caadam_jax, attr):
        return False, f"caadam_jax.{attr} does not exist (yet)"
    return True, ""

  def make(self, base_lr):
    if not self.has_lr:
      return self.factory()
    return optax.inject_hyperparams(self.factory)(learning_rate=base_lr * self.lr_mult)


OPTIMIZERS = {
    s.name: s
    for s in [
        OptSpec(
            "adam",
            _keras_adam,
            requires=("keras_caadam",),
            description="Keras-form Adam (eps 1e-7 on the uncorrected sqrt(v)), lr 1e-3: "
            "the published baseline",
        ),
        OptSpec(
            "adam_x2",
            _keras_adam,
            2.0,
            requires=("keras_caadam",),
            description="the same Adam at 2x the learning rate (schedule and floor x2)",
        ),
        OptSpec(
            "adam_x5",
            _keras_adam,
            5.0,
            requires=("keras_caadam",),
            description="the same Adam at 5x the learning rate (schedule and floor x5)",
        ),
        OptSpec(
            "keras_caadam_additive",
            _published("additive"),
            requires=("keras_caadam",),
            matched="adam_x2",
            description="published mode (caadam 0.1.1), additive g=0.95",
        ),
        OptSpec(
            "keras_caadam_multiplicative",
            _published("multiplicative"),
            requires=("keras_caadam",),
            matched="adam_x5",
            description="published mode (caadam 0.1.1), multiplicative g=5",
        ),
        OptSpec(
            "keras_caadam_depth",
            _published("depth"),
            requires=("keras_caadam",),
            matched="adam_x2",
            description="published mode (caadam 0.1.1), depth g=1",
        ),
        OptSpec(
            "caadam_additive",
            _described("additive"),
            matched="adam_x2",
            description="as described (per layer), additive g=0.95, optax Adam eps 1e-8",
        ),
        OptSpec(
            "caadam_multiplicative",
            _described("multiplicative"),
            matched="adam_x5",
            description="as described (per layer), multiplicative g=5, optax Adam eps 1e-8",
        ),
        OptSpec(
            "caadam_depth",
            _described("depth"),
            matched="adam_x2",
            description="as described (per layer), depth g=1, optax Adam eps 1e-8",
        ),
        OptSpec(
            "adamw",
            _adamw,
            description="optax.adamw(lr, weight_decay=1e-4) (eps 1e-8, decay scaled by lr)",
        ),
        OptSpec(
            "adas",
            lambda: caadam_jax.adas(),
            requires=("adas",),
            has_lr=False,
            description="ADAS defaults (lr=1e-3 initial step sizes); no global learning "
            "rate, so reduce-on-plateau has nothing to scale (not applied)",
        ),
    ]
}
REFERENCES = ("adam", "adam_x2", "adam_x5")


def set_learning_rate(opt_state, lr: np.ndarray):
  hp = opt_state.hyperparams
  new = jnp.asarray(lr, dtype=hp["learning_rate"].dtype).reshape(hp["learning_rate"].shape)
  return opt_state._replace(hyperparams={**hp, "learning_rate": new})


# ----------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------


class Task:
  """Data, models and protocol of one benchmark task."""

  def __init__(
      self,
      name,
      *,
      kind,
      batch_size,
      es_patience,
      es_start,
      plateau_patience,
      max_epochs,
      configs,
      optimizers,
  ):
    self.name = name
    self.kind = kind  # "regression" or "classification"
    self.batch_size = batch_size
    self.es_patience = es_patience
    self.es_start = es_start
    self.plateau_patience = plateau_patience
    self.max_epochs = max_epochs
    self.configs = configs  # name -> ModelSpec factory
    self.optimizers = optimizers
    self.notes: list[str] = []

  @property
  def metric(self):
    return "rmse" if self.kind == "regression" else "accuracy"


def california_data(data_dir, variant="statlib"):
  x, y = datasets.load_california_housing(data_dir, variant=variant)
  idx = np.arange(len(x))
  np.random.RandomState(113).shuffle(idx)  # keras.datasets.california_housing.load_data
  x, y = x[idx], y[idx]
  n_train = int(len(x) * (1 - 0.2))
  x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
  mx, sx = x_train.mean(0), x_train.std(0)
  my, sy = y_train.mean(), y_train.std()

  def norm(a, m, s):
    return ((a - m) / s).astype(np.float32)

  return norm(x_train, mx, sx), norm(y_train, my, sy), norm(x_test, mx, sx), norm(y_test, my, sy)


def image_data(data_dir, variant, subsample=None):
  x_train, y_train, x_test, y_test = datasets.load_mnist(data_dir, variant=variant)
  if subsample:
    x_train, y_train = x_train[:subsample], y_train[:subsample]
  return x_train, y_train, x_test, y_test


def keras_validation_split(x, y, validation_split=0.2):
  split_at = math.floor(len(x) * (1.0 - validation_split))
  return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


def config_name(hidden: Sequence[int]) -> str:
  return "[" + ",".join(str(h) for h in hidden) + "]"


def build_task(args) -> tuple[Task, tuple[np.ndarray, ...]]:
  name = args.task
  if name == "california":
    configs = {
        config_name(h): (lambda h=h: ModelSpec(config_name(h), MLP(tuple(h), 1), (8,)))
        for h in CALIFORNIA_CONFIGS
    }
    task = Task(
        name,
        kind="regression",
        batch_size=128,
        es_patience=25,
        es_start=12,
        plateau_patience=8,
        max_epochs=300,
        configs=configs,
        optimizers=list(OPTIMIZERS),
    )
    data = california_data(args.data_dir, args.california_variant)
  elif name == "fashion":
    if args.resnet20:
      configs = {"resnet20": lambda: ModelSpec("resnet20", ResNet20(10), (28, 28))}
    else:
      configs = {"small_cnn": lambda: ModelSpec("small_cnn", SmallCNN(), (28, 28))}
    task = Task(
        name,
        kind="classification",
        batch_size=64,
        es_patience=15,
        es_start=0,
        plateau_patience=6,
        max_epochs=50,
        configs=configs,
        optimizers=list(OPTIMIZERS),
    )
    sub = (
        args.train_subsample
        if args.train_subsample is not None
        else (None if args.resnet20 else 6000)
    )
    args.train_subsample = sub
    data = image_data(args.data_dir, "fashion-mnist", sub)
  elif name == "mnist":
    configs = {"[256]": lambda: ModelSpec("[256]", MLP((256,), 10), (28, 28))}
    task = Task(
        name,
        kind="classification",
        batch_size=64,
        es_patience=15,
        es_start=0,
        plateau_patience=6,
        max_epochs=50,
        configs=configs,
        optimizers=[
            "adam",
            "adam_x2",
            "adam_x5",
            "keras_caadam_additive",
            "caadam_additive",
            "adamw",
            "adas",
        ],
    )
    sub = args.train_subsample
    data = image_data(args.data_dir, "mnist", sub)
  else:
    raise ValueError(f"unknown task {name!r}")
  if args.max_epochs is not None:
    task.max_epochs = args.max_epochs
  if args.quick:
    task.max_epochs = min(task.max_epochs, 4 if name == "california" else 2)
    task.es_start, task.es_patience, task.plateau_patience = 1, 2, 1
    if name == "california":
      task.configs = {k: v for k, v in task.configs.items() if k == "[64,32]"}
      task.optimizers = [
          "adam",
          "adam_x2",
          "keras_caadam_additive",
          "caadam_multiplicative",
          "adamw",
          "adas",
      ]
    else:
      task.optimizers = ["adam", "keras_caadam_depth", "adas"]
  if args.configs:
    task.configs = {k: v for k, v in task.configs.items() if k in args.configs}
  if args.optimizers:
    unknown = [o for o in args.optimizers if o not in OPTIMIZERS]
    if unknown:
      raise ValueError(f"unknown optimizers {unknown}; known: {list(OPTIMIZERS)}")
    task.optimizers = list(args.optimizers)
  return task, data


# ----------------------------------------------------------------------------
# Training one cell: all seeds at once
# ----------------------------------------------------------------------------


def _per_example_loss(kind):
  if kind == "regression":
    return lambda out, y: jnp.square(out[:, 0] - y), lambda out, y: jnp.square(out[:, 0] - y)

  def loss(out, y):
    return optax.softmax_cross_entropy_with_integer_labels(out, y)

  def correct(out, y):
    return (jnp.argmax(out, -1) == y).astype(jnp.float32)

  return loss, correct


def _chunks(x, y, size):
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


def _round(values, digits=6):
  out = []
  for v in values:
    v = float(v)
    out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
  return out


def run_cell(
    task: Task,
    model: ModelSpec,
    opt: OptSpec,
    data,
    args,
    progress=None,
    lrs: Sequence[float] | None = None,
) -> dict:
  """Trains ``args.seeds`` runs of one cell together; returns the cell record.

  With ``lrs`` (a learning-rate sweep) the cell trains every seed at every base
  learning rate in one vmapped batch (``len(lrs) * args.seeds`` runs); seed
  ``s`` has the same initial weights and batch order at every learning rate,
  and each run's plateau floor is ``args.min_lr / args.lr`` times its own
  learning rate. Each run record then carries its ``"lr"``.
  """
  x_train, y_train, x_val, y_val, x_test, y_test = data
  n_seeds = args.seeds
  base_lr = args.lr
  run_lrs = np.repeat(np.asarray(lrs if lrs is not None else [base_lr], np.float64), n_seeds)
  run_seed = np.tile(np.arange(n_seeds), len(run_lrs) // n_seeds)
  n_runs = len(run_lrs)
  t_start = time.perf_counter()
  tx = opt.make(base_lr)
  trainer = CellTrainer(model, tx, task.kind, args.eval_chunk)

  # Initial weights: one shared set (published protocol) or one per seed; the
  # same for every optimizer (and learning rate) of a config.
  if args.init == "shared":
    p0, e0 = model.init(jax.random.key(args.init_seed))
    params = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_runs,) + a.shape), p0)
    extra = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_runs,) + a.shape), e0)
  else:
    keys = jax.random.split(jax.random.key(args.init_seed), n_seeds)
    params, extra = jax.vmap(model.init)(keys[jnp.asarray(run_seed)])
  opt_state = trainer.init_opt(params)

  lr = run_lrs * opt.lr_mult
  if opt.has_lr:
    opt_state = set_learning_rate(opt_state, lr)
  es = [
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
          min_lr=args.min_lr * opt.lr_mult * (run_lr / base_lr),
      )
      for run_lr in run_lrs
  ]
  # Same shuffles for every optimizer (paired design); seeds differ in their shuffles.
  rngs = [np.random.default_rng([args.shuffle_seed, int(s)]) for s in run_seed]

  xv, yv, wv = (jnp.asarray(a) for a in _chunks(x_val, y_val, args.eval_chunk))
  xtr, ytr = jnp.asarray(x_train), jnp.asarray(y_train)
  active = np.ones(n_runs, bool)
  epochs_run = np.zeros(n_runs, int)
  curves = {k: [[] for _ in range(n_runs)] for k in ("train_loss", "val_loss", "val_metric")}
  lr_events = [[] for _ in range(n_runs)]
  best_params, best_extra = params, extra
  epoch_times, widths = [], []
  # ``slots``: the seed trained at each vmapped position. When at most half of
  # them are still active, the stopped ones are taken out (one retrace for the
  # smaller width), so a cell costs about the mean, not the max, of its runs.
  slots = np.arange(n_runs)
  finished = {}  # seed -> (params, extra) it ends with (best weights if restored)

  def take(tree, j):
    return jax.tree.map(lambda a: a[j], tree)

  def retire(positions):
    for j in positions:
      s = slots[j]
      src = (best_params, best_extra) if es[s].should_restore else (params, extra)
      finished[int(s)] = (take(src[0], j), take(src[1], j))

  for epoch in range(task.max_epochs):
    t0 = time.perf_counter()
    idx, w = epoch_batches([rngs[s] for s in slots], len(x_train), task.batch_size)
    params, extra, opt_state, tl, vl, vm = trainer.epoch(
        params,
        extra,
        opt_state,
        jnp.asarray(active[slots]),
        jnp.asarray(idx),
        jnp.asarray(w),
        xtr,
        ytr,
        xv,
        yv,
        wv,
    )
    tl, vl, vm = (np.asarray(a, np.float64) for a in (tl, vl, vm))
    epoch_times.append(time.perf_counter() - t0)
    widths.append(len(slots))
    snapshot = np.zeros(len(slots), bool)
    for j, s in enumerate(slots):
      if not active[s]:
        continue
      epochs_run[s] = epoch + 1
      curves["train_loss"][s].append(tl[j])
      curves["val_loss"][s].append(vl[j])
      curves["val_metric"][s].append(vm[j])
      current = vl[j] if math.isfinite(vl[j]) else float("nan")
      snap, stop = es[s].on_epoch_end(epoch, current)
      snapshot[j] = snap
      new_lr = plateau[s].on_epoch_end(epoch, current, lr[s])
      if new_lr != lr[s] and opt.has_lr:
        lr[s] = new_lr
        lr_events[s].append([epoch + 1, float(np.float32(new_lr))])
      if stop:
        active[s] = False
    if snapshot.any():
      m = jnp.asarray(snapshot)
      best_params = trainer.select(m, params, best_params)
      best_extra = trainer.select(m, extra, best_extra)
    if progress is not None:
      progress(
          epoch + 1,
          int(active.sum()),
          float(np.nanmedian(np.where(active[slots], vl, np.nan)))
          if active.any()
          else float("nan"),
      )
    if not active.any():
      break
    n_active = int(active[slots].sum())
    if args.compact and n_active <= len(slots) // 2:
      keep = np.array([j for j, s in enumerate(slots) if active[s]])
      retire([j for j, s in enumerate(slots) if not active[s]])

      def gather(tree, keep=keep):
        return jax.tree.map(lambda leaf: leaf[keep], tree)

      params, extra, opt_state = gather(params), gather(extra), gather(opt_state)
      best_params, best_extra = gather(best_params), gather(best_extra)
      slots = slots[keep]
    if opt.has_lr:
      opt_state = set_learning_rate(opt_state, lr[slots])
  retire(range(len(slots)))

  restore = np.array([e.should_restore for e in es])

  def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

  final_params = stack([finished[s][0] for s in range(n_runs)])
  final_extra = stack([finished[s][1] for s in range(n_runs)])
  tel, tem = trainer.evaluate(
      final_params, final_extra, *(jnp.asarray(a) for a in _chunks(x_test, y_test, args.eval_chunk))
  )
  fvl, fvm = trainer.evaluate(final_params, final_extra, xv, yv, wv)
  tel, tem, fvl, fvm = (np.asarray(a, np.float64) for a in (tel, tem, fvl, fvm))
  wall = time.perf_counter() - t_start

  runs = []
  for s in range(n_runs):
    test_metric = math.sqrt(tel[s]) if task.kind == "regression" else tem[s]
    val_metric = math.sqrt(fvl[s]) if task.kind == "regression" else fvm[s]
    runs.append(
        {
            "seed": int(run_seed[s]),
            **({"lr": float(run_lrs[s])} if lrs is not None else {}),
            "epochs": int(epochs_run[s]),
            "best_epoch": int(es[s].best_epoch) + 1 if restore[s] else int(epochs_run[s]),
            "stopped_early": bool(es[s].stop_training),
            "restored_best": bool(restore[s]),
            "lr_reductions": lr_events[s],
            "test_loss": _round([tel[s]])[0],
            f"test_{task.metric}": _round([test_metric])[0],
            "final_val_loss": _round([fvl[s]])[0],
            f"final_val_{task.metric}": _round([val_metric])[0],
            "train_loss": _round(curves["train_loss"][s], 6),
            # Full float32 precision: the early-stopping decisions can be replayed from it.
            "val_loss": _round(curves["val_loss"][s], 9),
            **(
                {"val_accuracy": _round(curves["val_metric"][s], 5)}
                if task.kind == "classification"
                else {}
            ),
        }
    )
  # The first epoch includes compilation; report the median of the other
  # full-width epochs (the per-epoch cost of the cell with all seeds).
  steady = [
      t for t, wd in zip(epoch_times[1:], widths[1:], strict=False) if wd == n_runs
  ] or epoch_times
  return {
      "config": model.name,
      "optimizer": opt.name,
      "description": opt.description,
      "lr_mult": opt.lr_mult,
      "num_params": count_params(jax.tree.map(lambda a: a[0], params)),
      "n_seeds": n_seeds,
      "cell_epochs": len(epoch_times),
      "wall_s": round(wall, 3),
      "first_epoch_s": round(epoch_times[0], 3),
      "epoch_s_median": round(float(np.median(steady)), 4),
      "seed_epochs_computed": int(sum(widths)),
      "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "runs": runs,
  }


# ----------------------------------------------------------------------------
# Factors actually applied (measured from one update, public API only)
# ----------------------------------------------------------------------------


def measured_factors(model: ModelSpec, opt_name: str) -> dict[str, float]:
  """Per-leaf step multiplier of a CaAdam cell relative to its Adam form, at step 1."""
  params, _ = model.init(jax.random.key(0))
  grads = jax.tree.map(lambda a: jnp.full_like(a, 0.5), params)
  spec = OPTIMIZERS[opt_name]
  if opt_name.startswith("keras_caadam"):
    ref = _keras_adam(1.0)
  elif opt_name.startswith("caadam"):
    ref = optax.adam(1.0)
  else:
    return {}
  tx = spec.factory(1.0)
  u, _ = tx.update(grads, tx.init(params), params)
  r, _ = ref.update(grads, ref.init(params), params)
  out = {}
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(u), jax.tree.leaves(r), strict=False):
    key = "/".join(str(getattr(k, "key", k)) for k in path)
    out[key] = float(np.mean(np.asarray(a) / np.asarray(b)))
  return out


# ----------------------------------------------------------------------------
# Results I/O, statistics, tables, plots
# ----------------------------------------------------------------------------


def machine_info() -> dict:
  info = {
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "processor": platform.processor(),
      "cpu_count": os.cpu_count(),
      "jax_devices": [str(d) for d in jax.devices()],
      "versions": {
          "jax": jax.__version__,
          "jaxlib": getattr(jax.lib, "__version__", None) or __import__("jaxlib").__version__,
          "optax": optax.__version__,
          "flax": flax.__version__,
          "numpy": np.__version__,
          "caadam_jax": caadam_jax.__version__,
      },
  }
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          info["cpu_model"] = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  with contextlib.suppress(OSError):
    info["loadavg_at_start"] = os.getloadavg()
  try:
    root = pathlib.Path(__file__).resolve().parent.parent
    info["git_commit"] = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):  # no git here: the commit stays unrecorded
    info["git_commit"] = None
  return info


def protocol_of(task: Task, args) -> dict:
  return {
      "task": task.name,
      "lr": args.lr,
      "batch_size": task.batch_size,
      "validation_split": 0.2,
      "early_stopping": {
          "monitor": "val_loss",
          "min_delta": 1e-5,
          "patience": task.es_patience,
          "start_from_epoch": task.es_start,
          "restore_best_weights": True,
      },
      "reduce_lr_on_plateau": {
          "monitor": "val_loss",
          "factor": 0.25,
          "patience": task.plateau_patience,
          "min_delta": args.plateau_min_delta,
          "cooldown": 0,
          "min_lr": args.min_lr,
          "min_lr_scaled_by_lr_mult": True,
      },
      "max_epochs": task.max_epochs,
      "seeds": args.seeds,
      "init": args.init,
      "init_seed": args.init_seed,
      "shuffle_seed": args.shuffle_seed,
      "california_variant": args.california_variant if task.name == "california" else None,
      "train_subsample": args.train_subsample if task.name != "california" else None,
      "resnet20": bool(args.resnet20) if task.name == "fashion" else None,
      "quick": bool(args.quick),
  }


def load_results(path: pathlib.Path, protocol: dict) -> dict:
  if path.exists():
    with open(path) as f:
      results = json.load(f)
    if results.get("protocol") != protocol:
      raise SystemExit(
          f"{path} holds results for a different protocol:\n  stored {results.get('protocol')}\n"
          f"  asked  {protocol}\nUse another --out-dir or move the file away."
      )
    return results
  return {"format": JSON_FORMAT, "protocol": protocol, "cells": {}}


def save_results(path: pathlib.Path, results: dict) -> None:
  tmp = path.with_suffix(".json.tmp")
  with open(tmp, "w") as f:
    json.dump(results, f, indent=1)
  os.replace(tmp, path)


def cell_key(config: str, optimizer: str) -> str:
  return f"{config}|{optimizer}"


def _metric_values(cell, metric):
  return np.array(
      [r[f"test_{metric}"] if r[f"test_{metric}"] is not None else np.nan for r in cell["runs"]],
      np.float64,
  )


def welch(a, b):
  a, b = a[np.isfinite(a)], b[np.isfinite(b)]
  if len(a) < 2 or len(b) < 2:
    return float("nan")
  try:
    from scipy import stats
  except ImportError:
    return float("nan")
  if np.std(a) == 0 and np.std(b) == 0:
    return 0.0 if np.mean(a) != np.mean(b) else 1.0
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarize(results: dict, task_name: str) -> dict:
  """Per-cell statistics (means, comparisons, time to Adam's validation loss)."""
  metric = "rmse" if task_name == "california" else "accuracy"
  cells = results["cells"]
  configs = list(dict.fromkeys(c["config"] for c in cells.values()))
  summary = {}
  for config in configs:
    refs = {r: cells.get(cell_key(config, r)) for r in REFERENCES}
    adam = refs["adam"]
    target = None
    if adam is not None:
      target = float(
          np.nanmedian(
              [
                  r["final_val_loss"] if r["final_val_loss"] is not None else np.nan
                  for r in adam["runs"]
              ]
          )
      )
    for key, cell in cells.items():
      if cell["config"] != config:
        continue
      vals = _metric_values(cell, metric)
      finite = vals[np.isfinite(vals)]
      row = {
          "n": len(vals),
          "n_finite": len(finite),
          "mean": float(np.mean(finite)) if len(finite) else float("nan"),
          "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
          "median": float(np.median(finite)) if len(finite) else float("nan"),
          "test_loss": float(
              np.nanmean(
                  [r["test_loss"] if r["test_loss"] is not None else np.nan for r in cell["runs"]]
              )
          ),
          "epochs": float(np.mean([r["epochs"] for r in cell["runs"]])),
          "wall_s": cell["wall_s"],
          "epoch_s": cell["epoch_s_median"],
          "cell_epochs": cell["cell_epochs"],
      }
      for ref_name, ref in refs.items():
        if ref is None:
          continue
        rv = _metric_values(ref, metric)
        rm = float(np.nanmean(rv))
        row[f"vs_{ref_name}"] = {"rel_pct": 100.0 * (row["mean"] - rm) / rm, "p": welch(vals, rv)}
      if target is not None:
        reach = []
        for r in cell["runs"]:
          vl = [v if v is not None else np.inf for v in r["val_loss"]]
          hit = next((i + 1 for i, v in enumerate(vl) if v <= target), None)
          reach.append(hit)
        hits = [h for h in reach if h is not None]
        row["to_adam_val"] = {
            "target_val_loss": target,
            "reached": len(hits),
            "of": len(reach),
            "median_epochs": float(np.median(hits)) if hits else None,
            "median_seconds": float(np.median(hits)) * cell["epoch_s_median"] if hits else None,
        }
      summary[key] = row
  return summary


def _fmt_p(p):
  if p is None or not math.isfinite(p):
    return "–"
  return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _fmt_cmp(row, ref):
  c = row.get(f"vs_{ref}")
  if c is None:
    return "–"
  return f"{c['rel_pct']:+.2f}% (p={_fmt_p(c['p'])})"


def ordered_configs(results: dict, task: Task) -> list[str]:
  present = list(dict.fromkeys(c["config"] for c in results["cells"].values()))
  return [c for c in task.configs if c in present] + [c for c in present if c not in task.configs]


def write_markdown(
    results: dict, task: Task, path: pathlib.Path, summary: dict, factor_notes: dict | None = None
) -> None:
  metric = task.metric
  better = "lower" if metric == "rmse" else "higher"
  proto = results["protocol"]
  lines = [f"# `{task.name}`: CaAdam vs Adam with the learning rate controlled", ""]
  lines.append(
      f"Generated by `benchmarks/reproduce.py` on {results.get('updated', '?')} "
      f"({results.get('machine', {}).get('cpu_model', '?')}, "
      f"{results.get('machine', {}).get('cpu_count', '?')} CPUs, "
      f"jax {results.get('machine', {}).get('versions', {}).get('jax', '?')}). "
      f"Every run is in `{task.name}.json`."
  )
  lines.append("")
  lines.append(
      f"Test {metric} ({better} is better): mean ± std over {proto['seeds']} runs "
      f"({proto['init']} initialization). Relative change of the mean and Welch "
      "t-test p-value against Adam (lr 1e-3), Adam ×2 and Adam ×5; **bold** marks "
      "the learning-rate-matched control of each CaAdam cell (additive and depth → "
      '×2, multiplicative → ×5). "to Adam val": median epochs (and seconds) to '
      "reach the median final validation loss of Adam, with how many runs reached it."
  )
  lines.append("")
  lines.append("Protocol: " + json.dumps({k: v for k, v in proto.items() if v is not None}))
  lines.append("")
  for note in task.notes:
    lines.append(f"- {note}")
  if task.notes:
    lines.append("")

  configs = ordered_configs(results, task)
  if task.name == "california":
    lines += [
        "## Adam vs the published Adam",
        "",
        "| config | published Adam RMSE | this Adam RMSE (mean ± std) | difference |",
        "|---|---|---|---|",
    ]
    for config in configs:
      row = summary.get(cell_key(config, "adam"))
      pub = PUBLISHED_ADAM_RMSE.get(config)
      if row is None or pub is None:
        continue
      lines.append(
          f"| {config} | {pub:.4f} | {row['mean']:.4f} ± {row['std']:.4f} | "
          f"{100 * (row['mean'] - pub) / pub:+.1f}% |"
      )
    lines.append("")

  lines += [
      "## Summary: CaAdam relative to Adam and to its learning-rate-matched control",
      "",
      "| config | optimizer | vs Adam | vs matched control |",
      "|---|---|---|---|",
  ]
  for config in configs:
    for name in task.optimizers:
      spec = OPTIMIZERS[name]
      row = summary.get(cell_key(config, name))
      if row is None or spec.matched is None:
        continue
      lines.append(
          f"| {config} | {name} | {_fmt_cmp(row, 'adam')} | "
          f"{spec.matched}: {_fmt_cmp(row, spec.matched)} |"
      )
  lines.append("")

  for config in configs:
    lines += [f"## {config}", ""]
    if factor_notes and config in factor_notes:
      lines.append(factor_notes[config])
      lines.append("")
    lines.append(
        f"| optimizer | test {metric} | vs Adam | vs Adam ×2 | vs Adam ×5 | test loss | "
        "epochs | cell wall s (s/epoch) | to Adam val: epochs (s), reached |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name in task.optimizers:
      row = summary.get(cell_key(config, name))
      if row is None:
        continue
      spec = OPTIMIZERS[name]
      cmp = {}
      for ref in REFERENCES:
        text = _fmt_cmp(row, ref) if ref != name else "–"
        cmp[ref] = f"**{text}**" if spec.matched == ref else text
      t = row.get("to_adam_val")
      if t is None:
        reach = "–"
      elif t["median_epochs"] is None:
        reach = f"never, 0/{t['of']}"
      else:
        reach = f"{t['median_epochs']:.0f} ({t['median_seconds']:.1f}), {t['reached']}/{t['of']}"
      nf = "" if row["n_finite"] == row["n"] else f" ({row['n'] - row['n_finite']} non-finite)"
      lines.append(
          f"| {name} | {row['mean']:.4f} ± {row['std']:.4f}{nf} | {cmp['adam']} | "
          f"{cmp['adam_x2']} | {cmp['adam_x5']} | {row['test_loss']:.4f} | {row['epochs']:.1f} | "
          f"{row['wall_s']:.0f} ({row['epoch_s']:.3f}) | {reach} |"
      )
    lines.append("")
  lines += ["## Optimizers", ""]
  for name in task.optimizers:
    lines.append(f"- `{name}`: {OPTIMIZERS[name].description}")
  lines.append("")
  lines += [
      (
          f"Plots: `{task.name}_box.png` (test {metric} per optimizer and config), "
          f"`{task.name}_curves.png` (mean validation loss per epoch; a stopped run keeps "
          "its last value)."
      ),
      "",
  ]
  path.write_text("\n".join(lines))


def write_plots(results: dict, task: Task, out_dir: pathlib.Path) -> list[str]:
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return []
  cells = results["cells"]
  metric = task.metric
  configs = ordered_configs(results, task)
  if not configs:
    return []
  ncol = min(3, len(configs))
  nrow = -(-len(configs) // ncol)
  written = []

  def finish(fig, axes, name: str) -> str:
    for ax in list(axes.flat)[len(configs) :]:  # unused panels of the grid
      ax.axis("off")
    fig.tight_layout()
    path = out_dir / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)

  fig, axes = plt.subplots(nrow, ncol, figsize=(6 * ncol, 4.2 * nrow), squeeze=False)
  for ax, config in zip(axes.flat, configs, strict=False):
    names = [n for n in task.optimizers if cell_key(config, n) in cells]
    data = [_metric_values(cells[cell_key(config, n)], metric) for n in names]
    data = [d[np.isfinite(d)] for d in data]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=60, ha="right", fontsize=7)
    if "adam" in names:
      ax.axhline(np.median(data[names.index("adam")]), ls="--", c="grey", lw=0.8)
    if task.name == "california" and config in PUBLISHED_ADAM_RMSE:
      ax.axhline(PUBLISHED_ADAM_RMSE[config], ls=":", c="red", lw=0.8, label="published Adam")
      ax.legend(fontsize=7)
    ax.set_title(config)
    ax.set_ylabel(f"test {metric}")
  written.append(finish(fig, axes, f"{task.name}_box.png"))

  fig, axes = plt.subplots(nrow, ncol, figsize=(6 * ncol, 4.2 * nrow), squeeze=False)
  for ax, config in zip(axes.flat, configs, strict=False):
    for n in task.optimizers:
      cell = cells.get(cell_key(config, n))
      if cell is None:
        continue
      length = max(len(r["val_loss"]) for r in cell["runs"])
      mat = np.full((len(cell["runs"]), length), np.nan)
      for i, r in enumerate(cell["runs"]):
        v = np.array([x if x is not None else np.nan for x in r["val_loss"]])
        mat[i, : len(v)] = v
        if len(v):
          mat[i, len(v) :] = v[-1]
      style = "-" if n.startswith(("adam", "keras")) else "--"
      ax.plot(np.arange(1, length + 1), np.nanmean(mat, 0), style, lw=1, label=n)
    ax.set_yscale("log")
    ax.set_title(config)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean validation loss")
    ax.legend(fontsize=6)
  written.append(finish(fig, axes, f"{task.name}_curves.png"))
  return written


def factor_notes_for(task: Task) -> dict[str, str]:
  notes = {}
  for config, make in task.configs.items():
    model = make()
    parts = []
    for name in task.optimizers:
      if not name.startswith(("caadam", "keras_caadam")):
        continue
      if not OPTIMIZERS[name].available()[0]:
        continue
      try:
        f = measured_factors(model, name)
      except Exception as e:  # noqa: BLE001
        parts.append(f"`{name}`: factors not measurable ({type(e).__name__}: {e})")
        continue
      kern = [v for k, v in f.items() if k.endswith("kernel")]
      other = [v for k, v in f.items() if not k.endswith("kernel")]
      txt = f"`{name}`: kernels {min(kern):.3g}–{max(kern):.3g}" if kern else f"`{name}`:"
      if other:
        txt += f", biases/other {min(other):.3g}–{max(other):.3g}"
      parts.append(txt)
    if parts:
      notes[config] = (
          "Step multipliers actually applied (measured from one update against the "
          "same Adam form): " + "; ".join(parts) + "."
      )
  return notes


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--task", default="california", choices=["california", "fashion", "mnist"])
  p.add_argument(
      "--data-dir", default=None, help=f"data directory (default ${datasets.DATA_ENV_VAR})"
  )
  p.add_argument("--california-variant", default="statlib", choices=["statlib", "sklearn"])
  p.add_argument(
      "--resnet20",
      action="store_true",
      help="fashion: the published ResNet-20 on 56x56x3 (for GPU machines)",
  )
  p.add_argument(
      "--train-subsample",
      type=int,
      default=None,
      help="images: use the first N training images (fashion default with the "
      "small CNN: 6000; 0 or a negative value for all)",
  )
  p.add_argument("--seeds", type=int, default=10)
  p.add_argument(
      "--init",
      default="shared",
      choices=["shared", "fresh"],
      help="shared: one initial weight set for all runs (published protocol); "
      "fresh: one per seed",
  )
  p.add_argument("--init-seed", type=int, default=0)
  p.add_argument("--shuffle-seed", type=int, default=1234)
  p.add_argument(
      "--max-epochs", type=int, default=None, help="epoch cap (default 300 California, 50 images)"
  )
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--min-lr", type=float, default=2.5e-5)
  p.add_argument(
      "--plateau-min-delta",
      type=float,
      default=1e-4,
      help="reduce-on-plateau min_delta (default 1e-4, the Keras default the committed "
      "results used; the published California notebook used 1e-5)",
  )
  p.add_argument("--configs", nargs="*", default=None, help="subset of configs, e.g. '[64,32]'")
  p.add_argument("--optimizers", nargs="*", default=None, help=f"subset of {list(OPTIMIZERS)}")
  p.add_argument("--eval-chunk", type=int, default=None)
  p.add_argument(
      "--out-dir",
      default=None,
      help=f"output directory (default {RESULTS_DIR}; a temporary one with --quick)",
  )
  p.add_argument("--quick", action="store_true", help="a tiny sweep (< 3 minutes), for tests")
  p.add_argument(
      "--merge-from",
      nargs="*",
      default=None,
      metavar="DIR",
      help="first copy into this sweep the cells of <DIR>/<task>.json files run with "
      "the same protocol (e.g. parts of one sweep run in parallel processes)",
  )
  p.add_argument(
      "--report-only",
      action="store_true",
      help="train nothing: (merge and) rewrite the markdown and plots from the JSON",
  )
  p.add_argument("--no-progress", action="store_true")
  p.add_argument(
      "--no-compact",
      dest="compact",
      action="store_false",
      help="keep stopped seeds in the vmapped batch (frozen) until the cell ends",
  )
  args = p.parse_args(argv)
  if args.train_subsample is not None and args.train_subsample <= 0:
    args.train_subsample = 0
  if args.quick:
    args.seeds = min(args.seeds, 2)
    if args.train_subsample is None and args.task != "california":
      args.train_subsample = 1024
  if args.eval_chunk is None:
    args.eval_chunk = 128 if args.resnet20 else 1024
  if args.out_dir is None:
    args.out_dir = tempfile.mkdtemp(prefix="caadam_reproduce_") if args.quick else str(RESULTS_DIR)
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  out_dir = pathlib.Path(args.out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  if datasets.data_dir(args.data_dir) is None:
    raise SystemExit(f"No data directory: pass --data-dir or set ${datasets.DATA_ENV_VAR}.")
  task, (x_train_full, y_train_full, x_test, y_test) = build_task(args)
  if task.name != "california" and args.train_subsample == 0:
    args.train_subsample = None
  x_train, y_train, x_val, y_val = keras_validation_split(x_train_full, y_train_full)
  data = (x_train, y_train, x_val, y_val, x_test, y_test)
  if task.name == "california":
    task.notes += [
        (
            f"Data: `{args.california_variant}` variant of California Housing "
            "(`cal_housing.data.gz`: the 8 raw StatLib features Keras's loader also serves; "
            "`sklearn`: the derived features of `fetch_california_housing`), Keras split "
            "(RandomState(113) shuffle, first 80% train), X and y standardized with the mean/std "
            "of the 80% training split (validation part included), RMSE in std units of y."
        ),
        (
            f"Sizes: train {len(x_train)}, validation {len(x_val)} (last 20% of the training "
            f"split, Keras `validation_split`), test {len(x_test)}."
        ),
        (
            "Remaining differences from the published setup: JAX/Flax instead of Keras 3 "
            "(same Glorot-uniform kernels and zero biases, same float32 Keras-form Adam in the "
            "published-mode cells), our own shuffling RNG; the StatLib row order may differ from "
            "the `california_housing.npz` Keras downloads, so the split is the same procedure but "
            "not necessarily the same rows; the published runs shared one initial weight set per "
            "optimizer notebook, ours share one per config across all optimizers "
            f"(`--init {args.init}`); {args.seeds} runs per cell instead of 30; epoch cap "
            f"{task.max_epochs}."
        ),
    ]
  else:
    task.notes += [
        f"Data: {task.name} training images "
        + (
            f"subsampled to the first {args.train_subsample} (for CPU speed)"
            if args.train_subsample
            else "(all 60000)"
        )
        + f"; train {len(x_train)}, validation {len(x_val)} (last 20%), test {len(x_test)} "
        "(full test set). Pixels in [0, 1], no augmentation.",
        "Model: "
        + (
            "the published ResNet-20 on 56x56x3 upscaled inputs"
            if args.resnet20
            else "a small CNN (conv 3x3/2 16 -> conv 3x3/2 32 -> dense 10, ReLU), not the "
            "published ResNet-20 (use `--resnet20` on a GPU machine)"
        )
        + f"; batch {task.batch_size}; epoch cap {task.max_epochs}.",
    ]
  task.notes.append(
      "Reduce-on-plateau scales the base learning rate of every optimizer that has one "
      "(Adam ×2/×5: their floor is scaled too, so they are exactly Adam with the whole "
      "schedule multiplied); ADAS has no global learning rate and gets no plateau scaling. "
      "Early stopping (with restoring the best weights) applies to every optimizer."
  )
  task.notes.append(
      'Times: all runs of a cell train together (vmapped over seeds); "cell wall s" includes '
      'compilation, "s/epoch" is one epoch of all seeds. On a shared, loaded machine the '
      "seconds are noisy (cells ran in parallel processes): compare epochs, not seconds."
  )

  protocol = protocol_of(task, args)
  json_path = out_dir / f"{task.name}.json"
  results = load_results(json_path, protocol)
  results["machine"] = machine_info()
  for other_dir in args.merge_from or ():
    other = load_results(pathlib.Path(other_dir) / f"{task.name}.json", protocol)
    new = {k: v for k, v in other["cells"].items() if k not in results["cells"]}
    results["cells"].update(new)
    if new:
      results.setdefault("merged_from", []).append(
          {"dir": str(other_dir), "cells": sorted(new), "machine": other.get("machine")}
      )
      save_results(json_path, results)
    print(f"merged {len(new)} cells from {other_dir}", file=sys.stderr)

  todo = [] if args.report_only else [(c, o) for c in task.configs for o in task.optimizers]
  try:
    from tqdm import tqdm
  except ImportError:  # pragma: no cover
    tqdm = None
  bar = (
      tqdm(
          total=len(todo),
          desc=f"{task.name} cells",
          disable=args.no_progress or tqdm is None,
          file=sys.stderr,
      )
      if tqdm
      else None
  )
  ran, skipped, unavailable = [], [], []
  for config, opt_name in todo:
    key = cell_key(config, opt_name)
    spec = OPTIMIZERS[opt_name]
    if key in results["cells"]:
      skipped.append(key)
      if bar:
        bar.update(1)
      continue
    ok, why = spec.available()
    if not ok:
      unavailable.append(f"{key}: {why}")
      print(f"skipping {key}: {why}", file=sys.stderr, flush=True)
      if bar:
        bar.update(1)
      continue
    model = task.configs[config]()
    if bar:
      bar.set_description(f"{task.name} {key}")

    def progress(epoch, n_active, med_val, _key=key):
      if bar:
        bar.set_postfix_str(f"epoch {epoch}, {n_active} active, val {med_val:.4g}")

    cell = run_cell(task, model, spec, data, args, progress)
    results["cells"][key] = cell
    results["updated"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    save_results(json_path, results)
    ran.append(key)
    print(
        f"[{task.name}] {key}: {task.metric} "
        f"{np.nanmean(_metric_values(cell, task.metric)):.4f}, "
        f"epochs {np.mean([r['epochs'] for r in cell['runs']]):.1f}, {cell['wall_s']:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    if bar:
      bar.update(1)
  if bar:
    bar.close()

  summary = summarize(results, task.name)
  results["summary"] = summary
  results.setdefault("updated", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
  save_results(json_path, results)
  try:
    notes = factor_notes_for(task)
  except Exception as e:  # noqa: BLE001
    notes = {}
    print(f"factor notes failed: {e!r}", file=sys.stderr)
  write_markdown(results, task, out_dir / f"{task.name}.md", summary, notes)
  plots = write_plots(results, task, out_dir)
  print(f"wrote {json_path}, {out_dir / (task.name + '.md')}, {plots}", file=sys.stderr)
  if unavailable:
    print(
        "not run (resume later with the same command): " + "; ".join(unavailable), file=sys.stderr
    )
  return {
      "ran": ran,
      "skipped": skipped,
      "unavailable": unavailable,
      "out_dir": str(out_dir),
      "json": str(json_path),
      "summary": summary,
  }


if __name__ == "__main__":
  main()
