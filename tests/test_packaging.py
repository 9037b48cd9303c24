"""Packaging facts that a user relies on: one version, typed, flax optional."""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys
import typing

import caadam_jax
from caadam_jax import _formulas


def test_version_is_the_installed_metadata():
  # One source: pyproject reads caadam_jax.__version__ (setuptools dynamic version).
  assert caadam_jax.__version__ == importlib.metadata.version("caadam-jax")


def test_py_typed_marker_ships_with_the_package():
  assert (pathlib.Path(caadam_jax.__file__).parent / "py.typed").is_file()


def test_strategy_name_literal_lists_every_strategy():
  assert set(typing.get_args(caadam_jax.StrategyName)) == set(_formulas.STRATEGIES)
  assert tuple(_formulas.STRATEGIES) == caadam_jax.STRATEGY_NAMES


def test_import_does_not_need_flax():
  # flax is an optional extra: importing the library (and using it on plain pytrees)
  # must not import it.
  code = (
      "import sys, jax.numpy as jnp, caadam_jax\n"
      "p = {'a': {'kernel': jnp.ones((2, 3))}, 'b': {'kernel': jnp.ones((3, 1))}}\n"
      "caadam_jax.trace_structure(lambda p, x: x @ p['a']['kernel'] @ p['b']['kernel'],"
      " p, jnp.ones((1, 2)))\n"
      "assert 'flax' not in sys.modules, sorted(m for m in sys.modules if 'flax' in m)\n"
  )
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
