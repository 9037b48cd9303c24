"""Packaging facts that a user relies on: one version, typed, flax optional."""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys
import typing

import pytest

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


@pytest.mark.slow  # a fresh interpreter in a subprocess
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


# What the sdist ships (MANIFEST.in, CONTRIBUTING.md "What the sdist ships"): the library,
# the tests and what they read, and no stored benchmark results or figures.
SHIPPED = (
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "CONTRIBUTING.md",
    "pyproject.toml",
    "caadam_jax/__init__.py",
    "caadam_jax/py.typed",
    "tests/conftest.py",
    "tests/test_packaging.py",
)
SHIPPED_FOLDERS = ("examples/", "benchmarks/", "notebooks/", "docs/")


def _sdist_file_list(root: pathlib.Path) -> list[str]:
  (sources,) = root.glob("*.egg-info/SOURCES.txt")  # what setuptools put in the sdist
  return sources.read_text().split()


def test_sdist_ships_the_tests_and_not_the_results():
  root = pathlib.Path(caadam_jax.__file__).resolve().parents[1]
  if not (root / "PKG-INFO").is_file():
    pytest.skip("not an unpacked sdist: .ci/run's sdist leg runs this check in one")
  names = _sdist_file_list(root)
  missing = [n for n in SHIPPED if n not in names]
  assert not missing, f"the sdist lacks {missing}"
  for folder in SHIPPED_FOLDERS:
    assert any(n.startswith(folder) for n in names), f"the sdist lacks {folder}"
  left_in = [
      n
      for n in names
      if n.startswith(("benchmarks/results/", "docs/_build/"))
      or n.endswith((".png", ".pyc", ".lock"))
  ]
  assert not left_in, f"the sdist ships what MANIFEST.in leaves out: {left_in[:10]}"
  # Every test module on disk is in the list (the list is the sdist, not a stale file).
  on_disk = {f"tests/{p.name}" for p in (root / "tests").glob("*.py")}
  assert on_disk <= set(names), sorted(on_disk - set(names))
