"""The tasks of the training benchmarks: data, models and the published protocol.

* ``california``: California Housing, the six published MLPs ``8 -> hidden -> 1``
  (ReLU), X and y standardized on the training split, batch 128; split as Keras's
  ``california_housing.load_data`` (``RandomState(113)`` shuffle, first 80% train).
* ``fashion``: Fashion-MNIST, a small CNN on a training subsample (``--resnet20``: the
  published ResNet-20 on 56x56 3-channel inputs).
* ``mnist``: MNIST, ``784 -> 256 ReLU -> 10`` (ADAS vs Adam).

:func:`build_task` turns the command-line arguments of ``benchmarks.reproduce`` (and
``benchmarks.sweep``) into a :class:`Task` and its arrays; :func:`protocol_of` is the
protocol stored with the results (a results file is only extended under the same one).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from examples import data_files

from ._shared import check_names
from .models import MLP
from .models import ModelSpec
from .models import ResNet20
from .models import SmallCNN
from .optimizers import OPTIMIZERS

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
# Trained only when named in --configs (not the reference's): the sweep's permutation
# test. Six Dense layers of distinct sizes, so that every strategy gives every layer
# its own factor (multiplicative: two alike) and 720 assignments exist (360).
EXTRA_CALIFORNIA_CONFIGS = ((64, 48, 32, 24, 16),)

# The cells of the smaller runs: the MNIST task and the --quick smoke runs.
MNIST_OPTIMIZERS = (
    "adam",
    "adam_x2",
    "adam_x5",
    "keras_caadam_additive",
    "caadam_additive",
    "adamw",
    "adas",
)
QUICK_CALIFORNIA_OPTIMIZERS = (
    "adam",
    "adam_x2",
    "keras_caadam_additive",
    "caadam_multiplicative",
    "adamw",
    "adas",
)
QUICK_IMAGE_OPTIMIZERS = ("adam", "keras_caadam_depth", "adas")


@dataclasses.dataclass
class Task:
  """Data, models and protocol of one benchmark task.

  Attributes:
    name: ``"california"``, ``"fashion"`` or ``"mnist"``.
    kind: ``"regression"`` or ``"classification"``.
    batch_size: the training batch size.
    es_patience: early-stopping patience (epochs).
    es_start: early stopping ignores the epochs before this one.
    plateau_patience: reduce-on-plateau patience (epochs).
    max_epochs: the epoch cap.
    configs: config name -> a factory of its :class:`ModelSpec`.
    optimizers: the names of the cells to train (keys of ``OPTIMIZERS``).
    notes: lines for the report about the data and the protocol.
  """

  name: str
  _: dataclasses.KW_ONLY
  kind: str
  batch_size: int
  es_patience: int
  es_start: int
  plateau_patience: int
  max_epochs: int
  configs: dict[str, Callable[[], ModelSpec]]
  optimizers: list[str]
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def metric(self):
    return "rmse" if self.kind == "regression" else "accuracy"


def california_data(data_dir, variant="statlib"):
  x, y = data_files.load_california_housing(data_dir, variant=variant)
  idx = np.arange(len(x))
  np.random.RandomState(113).shuffle(idx)  # keras.datasets.california_housing.load_data
  x, y = x[idx], y[idx]
  n_train = int(len(x) * (1 - 0.2))
  x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
  mean_x, std_x = x_train.mean(0), x_train.std(0)
  mean_y, std_y = y_train.mean(), y_train.std()

  def standardize(a, mean, std):
    return ((a - mean) / std).astype(np.float32)

  return (
      standardize(x_train, mean_x, std_x),
      standardize(y_train, mean_y, std_y),
      standardize(x_test, mean_x, std_x),
      standardize(y_test, mean_y, std_y),
  )


def image_data(data_dir, variant, subsample=None):
  x_train, y_train, x_test, y_test = data_files.load_mnist(data_dir, variant=variant)
  if subsample:
    x_train, y_train = x_train[:subsample], y_train[:subsample]
  return x_train, y_train, x_test, y_test


def keras_validation_split(x, y, validation_split=0.2):
  split_at = math.floor(len(x) * (1.0 - validation_split))
  return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


def config_name(hidden: Sequence[int]) -> str:
  return "[" + ",".join(str(h) for h in hidden) + "]"


# The published protocol of each kind of task (batch size, patiences, epoch cap).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "regression": {
        "batch_size": 128,
        "es_patience": 25,
        "es_start": 12,
        "plateau_patience": 8,
        "max_epochs": 300,
    },
    "classification": {
        "batch_size": 64,
        "es_patience": 15,
        "es_start": 0,
        "plateau_patience": 6,
        "max_epochs": 50,
    },
}


def _task(name: str, kind: str, configs: dict, optimizers: Iterable[str]) -> Task:
  return Task(name, kind=kind, configs=configs, optimizers=list(optimizers), **PROTOCOLS[kind])


def _california_task(args) -> tuple[Task, tuple[np.ndarray, ...]]:
  configs = {
      config_name(h): (lambda h=h: ModelSpec(config_name(h), MLP(tuple(h), 1), (8,)))
      for h in CALIFORNIA_CONFIGS + EXTRA_CALIFORNIA_CONFIGS
  }
  task = _task("california", "regression", configs, OPTIMIZERS)
  return task, california_data(args.data_dir, args.california_variant)


def _fashion_task(args) -> tuple[Task, tuple[np.ndarray, ...]]:
  if args.resnet20:
    configs = {"resnet20": lambda: ModelSpec("resnet20", ResNet20(10), (28, 28))}
  else:
    configs = {"small_cnn": lambda: ModelSpec("small_cnn", SmallCNN(), (28, 28))}
  if args.train_subsample is None:  # the small CNN trains on 6000 images by default
    args.train_subsample = None if args.resnet20 else 6000
  task = _task("fashion", "classification", configs, OPTIMIZERS)
  return task, image_data(args.data_dir, "fashion-mnist", args.train_subsample)


def _mnist_task(args) -> tuple[Task, tuple[np.ndarray, ...]]:
  configs = {"[256]": lambda: ModelSpec("[256]", MLP((256,), 10), (28, 28))}
  task = _task("mnist", "classification", configs, MNIST_OPTIMIZERS)
  return task, image_data(args.data_dir, "mnist", args.train_subsample)


def _shrink_for_quick(task: Task) -> None:
  """``--quick``: a few epochs, short patiences, one config and a few cells."""
  task.max_epochs = min(task.max_epochs, 4 if task.name == "california" else 2)
  task.es_start, task.es_patience, task.plateau_patience = 1, 2, 1
  if task.name == "california":
    task.configs = {k: v for k, v in task.configs.items() if k == "[64,32]"}
    task.optimizers = list(QUICK_CALIFORNIA_OPTIMIZERS)
  else:
    task.optimizers = list(QUICK_IMAGE_OPTIMIZERS)


def build_task(args) -> tuple[Task, tuple[np.ndarray, ...]]:
  """The task ``args.task`` with its ``(x_train, y_train, x_test, y_test)``.

  ``args`` are the options of ``benchmarks.reproduce`` (``--max-epochs``,
  ``--quick``, ``--configs``, ``--optimizers``, the data options); for the
  fashion task the default training subsample is written back to
  ``args.train_subsample``.
  """
  builders = {"california": _california_task, "fashion": _fashion_task, "mnist": _mnist_task}
  if args.task not in builders:
    raise ValueError(f"unknown task {args.task!r}")
  task, data = builders[args.task](args)
  check_names("--configs", args.configs, task.configs)  # '[bad' must not train nothing
  if args.max_epochs is not None:
    task.max_epochs = args.max_epochs
  if args.quick:
    _shrink_for_quick(task)
  if args.configs:
    task.configs = {k: v for k, v in task.configs.items() if k in args.configs}
  else:
    extra = {config_name(h) for h in EXTRA_CALIFORNIA_CONFIGS}
    task.configs = {k: v for k, v in task.configs.items() if k not in extra}
  if args.optimizers:
    unknown = [o for o in args.optimizers if o not in OPTIMIZERS]
    if unknown:
      raise ValueError(f"unknown optimizers {unknown}; known: {list(OPTIMIZERS)}")
    task.optimizers = list(args.optimizers)
  return task, data


def protocol_of(task: Task, args) -> dict:
  """The protocol stored with the results: a results file only grows under the same one."""
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
