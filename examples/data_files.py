"""Offline loaders for the datasets used by the examples, benchmarks and tests.

Nothing here downloads: files are read from a data directory given as an
argument or through the ``CAADAM_JAX_DATA`` environment variable (the layout of
the project's ``shared/data``: ``mnist/``, ``fashion-mnist/``,
``california-housing/``).

The one home of these loaders (not part of the ``caadam_jax`` package): the examples
import it as ``data_files`` (``python examples/<name>.py`` puts ``examples/`` on
``sys.path``), the benchmarks as ``examples.data_files`` (``python -m benchmarks.<study>``
runs from the repository root), the tests either way (``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

DATA_ENV_VAR = "CAADAM_JAX_DATA"


def data_dir(path: str | os.PathLike[str] | None = None) -> pathlib.Path | None:
  """Returns the data directory: ``path`` if given, else ``$CAADAM_JAX_DATA``, else None."""
  chosen = path if path is not None else os.environ.get(DATA_ENV_VAR)
  return pathlib.Path(chosen) if chosen else None


def _require_dir(path: str | os.PathLike[str] | None, what: str) -> pathlib.Path:
  root = data_dir(path)
  if root is None:
    raise FileNotFoundError(
        f"No data directory for {what}: pass one or set ${DATA_ENV_VAR} "
        "(e.g. to the project's shared/data)."
    )
  return root


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
  """Reads a (gzipped) IDX file of unsigned bytes into a numpy array."""
  path = pathlib.Path(path)
  with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
    data = f.read()
  if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"{path} is not an IDX file of unsigned bytes.")
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(
    path: str | os.PathLike[str] | None = None, *, variant: str = "mnist"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Loads MNIST or Fashion-MNIST from IDX files.

  Args:
    path: the data directory (containing ``mnist/`` or ``fashion-mnist/``), or
      None for ``$CAADAM_JAX_DATA``.
    variant: ``"mnist"`` or ``"fashion-mnist"``.

  Returns:
    ``(x_train, y_train, x_test, y_test)``: images as float32 in [0, 1] of shape
    ``(n, 28, 28)``, labels as int32.
  """
  if variant not in ("mnist", "fashion-mnist"):
    raise ValueError(f"variant must be 'mnist' or 'fashion-mnist', got {variant!r}.")
  root = _require_dir(path, variant) / variant
  arrays = []
  for split in ("train", "t10k"):
    images = load_idx(root / f"{split}-images-idx3-ubyte.gz")
    labels = load_idx(root / f"{split}-labels-idx1-ubyte.gz")
    arrays += [images.astype(np.float32) / 255.0, labels.astype(np.int32)]
  return tuple(arrays)


def load_california_housing(
    path: str | os.PathLike[str] | None = None, *, variant: str = "statlib"
) -> tuple[np.ndarray, np.ndarray]:
  """Loads California Housing as ``(X, y)`` in float64, 20640 rows, 8 features.

  Args:
    path: the data directory (containing ``california-housing/``), or None for
      ``$CAADAM_JAX_DATA``.
    variant: ``"statlib"`` (the raw table Keras's loader uses: 8 raw features,
      target the median house value) or ``"sklearn"`` (what
      ``sklearn.datasets.fetch_california_housing`` returns: derived features,
      target in units of $100k).

  Returns:
    ``(X, y)``.
  """
  root = _require_dir(path, "California Housing") / "california-housing"
  if variant == "statlib":
    raw = np.loadtxt(root / "cal_housing.data.gz", delimiter=",")
    return raw[:, :8], raw[:, 8]
  if variant == "sklearn":
    with np.load(root / "california_housing_sklearn.npz") as z:
      return z["X"], z["y"]
  raise ValueError(f"variant must be 'statlib' or 'sklearn', got {variant!r}.")
