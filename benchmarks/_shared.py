"""What several benchmark studies share: the results files and the machine description.

(Not named ``_common``: ``examples/_common.py`` is imported by that top-level name, and a
test that puts ``benchmarks/`` on ``sys.path`` would shadow it.)
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pathlib
import platform
import subprocess
import sys
from collections.abc import Iterable
from typing import IO, cast

import flax
import jax
import numpy as np
import optax

import caadam_jax
from examples import data_files

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
JSON_FORMAT = 1


def require_data_dir(path: str | None) -> None:
  """Exits with the fix when there is neither ``--data-dir`` nor ``$CAADAM_JAX_DATA``."""
  if data_files.data_dir(path) is None:
    raise SystemExit(f"No data directory: pass --data-dir or set ${data_files.DATA_ENV_VAR}.")


def check_names(argument: str, given: Iterable[str] | None, known: Iterable[str]) -> None:
  """Exits naming ``argument`` if it selects names that do not exist (``--configs '[bad'``)."""
  known = list(known)
  unknown = [name for name in given or () if name not in known]
  if unknown:
    raise SystemExit(f"{argument}: unknown {unknown}; known: {known}.")


def require_results(path: pathlib.Path, argument: str) -> None:
  """Exits naming ``argument`` and ``path`` when there is no results file to read there."""
  if not path.is_file():
    where = "directory does not exist" if not path.parent.is_dir() else "holds no such file"
    raise SystemExit(
        f"{argument}: no results file {path} (its {where}). Check the directory (--out-dir, "
        "--merge-from) or run the study first."
    )


def read_json(path: pathlib.Path) -> dict:
  """A results file's JSON (gzipped if ``.gz``); exits naming the file if it is unreadable."""
  try:
    with _open(path, "rt") as f:
      data = json.load(f)
  except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SystemExit(
        f"{path} is not a readable results file ({type(e).__name__}: {e}); restore it from "
        "version control or move it away."
    ) from None
  if not isinstance(data, dict):
    raise SystemExit(f"{path} is not a results file: its JSON is a {type(data).__name__}.")
  return data


def _open(path: pathlib.Path, mode: str, gzipped: bool | None = None) -> IO[str]:
  """``open``, or ``gzip.open`` for a ``.gz`` file (large results files are stored gzipped)."""
  if gzipped if gzipped is not None else path.suffix == ".gz":
    return cast(IO[str], gzip.open(path, mode, encoding="utf-8"))  # text mode: "rt"/"wt"
  return open(path, mode)  # noqa: SIM115 (returned to a with statement)


def load_results(path: pathlib.Path, protocol: dict, *, required: str | None = None) -> dict:
  """The results stored at ``path`` (an empty set if none); exits if another protocol made them.

  ``required`` names the argument that asked for the file (``--merge-from``): then a
  missing file exits instead of giving an empty set. An unreadable file (corrupt JSON or
  gzip) always exits naming it.
  """
  if required is not None:
    require_results(path, required)
  if path.exists():
    results = read_json(path)
    if results.get("protocol") != protocol:
      raise SystemExit(
          f"{path} holds results for a different protocol:\n  stored {results.get('protocol')}\n"
          f"  asked  {protocol}\nUse another --out-dir or move the file away."
      )
    return results
  return {"format": JSON_FORMAT, "protocol": protocol, "cells": {}}


def save_results(path: pathlib.Path, results: dict) -> None:
  """Writes ``results`` atomically, keeping the cells other processes saved meanwhile.

  Studies are run in pieces, possibly at the same time (``--configs``/``--optimizers``
  subsets with one ``--out-dir``): under an exclusive lock, cells in the file that
  ``results`` lacks are added to it before it is written (a cell in both: ``results``
  wins), so no process drops another's cells. A stopped run never leaves half a file.
  """
  with _locked(path):
    if path.exists():
      stored = read_json(path)
      if stored.get("protocol") != results.get("protocol"):
        raise SystemExit(f"{path} was rewritten for another protocol while this run was on.")
      for key, cell in stored.get("cells", {}).items():
        results["cells"].setdefault(key, cell)
    tmp = path.with_name(path.name + ".tmp")
    with _open(tmp, "wt", gzipped=path.suffix == ".gz") as f:
      json.dump(results, f, indent=1)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: pathlib.Path):
  """An exclusive lock on ``<path>.lock`` (POSIX ``flock``; no lock where there is none)."""
  try:
    import fcntl
  except ImportError:  # not POSIX: one process at a time is the user's job
    yield
    return
  with open(path.with_name(path.name + ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _cpu_model() -> str | None:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def _git_commit() -> str | None:
  try:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=RESULTS_DIR.parent.parent,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):  # no git here: the commit stays unrecorded
    return None


def machine_info() -> dict:
  """The machine, the library versions and the commit a results file was made with."""
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
  cpu_model = _cpu_model()
  if cpu_model is not None:
    info["cpu_model"] = cpu_model
  with contextlib.suppress(OSError):
    info["loadavg_at_start"] = os.getloadavg()
  info["git_commit"] = _git_commit()
  if os.environ.get("XLA_FLAGS"):  # compiler options change what is measured
    info["xla_flags"] = os.environ["XLA_FLAGS"]
  return info
