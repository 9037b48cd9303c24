"""Packaging facts that a user relies on: one version, typed, flax optional."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import subprocess
import sys
import typing

import jax
import pytest

import caadam_jax


def test_version_is_the_installed_metadata():
  # One source: pyproject reads caadam_jax.__version__ (setuptools dynamic version).
  assert caadam_jax.__version__ == importlib.metadata.version("caadam-jax")


def test_py_typed_marker_ships_with_the_package():
  assert (pathlib.Path(caadam_jax.__file__).parent / "py.typed").is_file()


def test_strategy_name_literal_lists_every_strategy():
  assert set(typing.get_args(caadam_jax.StrategyName)) == set(caadam_jax.STRATEGIES)
  assert tuple(caadam_jax.STRATEGIES) == caadam_jax.STRATEGY_NAMES


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


REPO = pathlib.Path(__file__).resolve().parents[1]
PRIVATE_IMPORT = re.compile(
    r"\b(?:from\s+caadam_jax(?:\.\w+)*\s+import\s+_\w+|caadam_jax(?:\.\w+)*\._\w+)"
)


def _private_imports(path: pathlib.Path) -> list[str]:
  text = path.read_text(encoding="utf-8")
  # Dunder attributes (caadam_jax.__version__, .__all__) are public.
  return [m for m in PRIVATE_IMPORT.findall(text) if not m.rstrip().endswith("__")]


def test_shipped_code_outside_the_package_uses_only_public_names():
  # Benchmarks, examples, docs and notebooks are what users copy: no caadam_jax._* names.
  files = [REPO / "README.md"]
  for folder, patterns in {
      "benchmarks": ("*.py",),
      "examples": ("*.py",),
      "docs": ("*.py", "*.md"),
      "notebooks": ("*.ipynb",),
  }.items():
    for pattern in patterns:
      files += [p for p in (REPO / folder).rglob(pattern) if "_build" not in p.parts]
  assert len(files) > 30
  found = {str(p.relative_to(REPO)): _private_imports(p) for p in files}
  assert {k: v for k, v in found.items() if v} == {}


def test_private_import_pattern_catches_private_names(tmp_path):
  sample = tmp_path / "x.py"
  sample.write_text(
      "from caadam_jax import _paths\nimport caadam_jax._formulas\n"
      "from caadam_jax.published import _keras_records\nprint(caadam_jax.__version__)\n"
  )
  assert _private_imports(sample) == [
      "from caadam_jax import _paths",
      "caadam_jax._formulas",
      "from caadam_jax.published import _keras_records",
  ]


def test_the_core_never_imports_the_published_mode():
  # caadam_jax.published builds on the core; only the package's __init__ (the public
  # namespace, as optax imports optax.contrib) imports it.
  core = [p for p in (REPO / "caadam_jax").glob("*.py") if p.name != "__init__.py"]
  assert len(core) > 10
  offenders = [p.name for p in core if "caadam_jax.published" in _imported_modules(p)]
  assert offenders == []
  assert "caadam_jax.published" in _imported_modules(REPO / "caadam_jax" / "__init__.py")


def _imported_modules(path: pathlib.Path) -> set[str]:
  """Every module an ``import`` or ``from ... import`` in the file names (at any depth)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      names |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
  return names


@pytest.mark.slow  # a fresh interpreter
def test_describe_published_needs_no_import_of_the_published_mode_by_the_core():
  code = (
      "import sys, jax.numpy as jnp\n"
      "from caadam_jax import _describe\n"
      "assert 'caadam_jax.published' in sys.modules\n"  # the package __init__ imports it
      "p = {'Dense_0': {'kernel': jnp.ones((4, 8)), 'bias': jnp.zeros(8)},"
      " 'Dense_1': {'kernel': jnp.ones((8, 1)), 'bias': jnp.zeros(1)}}\n"
      "rows = _describe.describe(p, strategy=None, published=True, show=False)\n"
      "print({r.leaf: round(r.factor, 4) for r in rows})\n"
  )
  out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
  # caadam 0.1.1 additive 0.9: sizes 32 and 8 give c_min 8, c_med 20, c_max 32; every kernel
  # is looked up with the last kernel's size (8: n = 1, factor 1.9), every bias with c = 0
  # (n = 20/12, factor 1 + 0.9*20/12 = 2.5).
  assert out.stdout.decode().strip() == (
      "{'Dense_0/bias': 2.5, 'Dense_0/kernel': 1.9, 'Dense_1/bias': 2.5, 'Dense_1/kernel': 1.9}"
  )


@pytest.mark.parametrize("name", ["keras_caadam", "keras_caadam_factors"])
def test_former_top_level_published_names_warn_and_still_work(name):
  with pytest.warns(
      DeprecationWarning,
      match=rf"caadam_jax\.{name} is deprecated; use caadam_jax\.published\.{name}\.",
  ):
    obj = getattr(caadam_jax, name)
  assert obj is getattr(caadam_jax.published, name)
  assert name not in caadam_jax.__all__ and name in caadam_jax.published.__all__
  with pytest.warns(DeprecationWarning, match="deprecated"):
    exec(f"from caadam_jax import {name}", {})


def test_unknown_top_level_names_still_raise_attribute_error():
  with pytest.raises(AttributeError, match="no attribute 'keras_adam'"):
    caadam_jax.keras_adam  # noqa: B018


def test_strategy_names_come_from_the_strategy_table():
  minmaxmedian = [n for n, s in caadam_jax.STRATEGIES.items() if s.minmaxmedian]
  assert minmaxmedian == ["additive", "multiplicative"]
  with pytest.raises(ValueError, match=r"expected one of \['additive', 'multiplicative'\]"):
    caadam_jax.scale_by_connection_minmaxmedian(strategy="depth")
  with pytest.raises(TypeError):
    caadam_jax.STRATEGIES["mine"] = caadam_jax.STRATEGIES["depth"]  # read-only  # type: ignore[index]
  from caadam_jax.published import _keras_records

  assert set(_keras_records.PUBLISHED_STRATEGIES) <= set(caadam_jax.STRATEGY_NAMES)


def test_path_to_str_names_key_paths_and_normalized_paths_alike():
  tree = {"layers": [{"kernel": 1.0}], "w": 2.0}
  named = jax.tree_util.tree_map_with_path(lambda p, _: caadam_jax.path_to_str(p), tree)
  assert named == {"layers": [{"kernel": "layers/0/kernel"}], "w": "w"}
  assert caadam_jax.path_to_str(("layers", 0, "kernel")) == "layers/0/kernel"
  assert caadam_jax.path_to_str(()) == "<root>"
  # A box attribute (NNX Variable, linen nn.Partitioned) is not part of the name.
  boxed = (jax.tree_util.DictKey("Dense_0"), jax.tree_util.GetAttrKey("value"))
  assert caadam_jax.path_to_str(boxed) == "Dense_0"


def test_describe_without_published_rejects_strategy_none():
  params = {"Dense_0": {"kernel": jax.ShapeDtypeStruct((2, 3), "float32")}}
  with pytest.raises(TypeError, match=r"strategy=None.*published=True"):
    # ShapeDtypeStruct leaves work (describe reads shapes); Optax's Params type has arrays only.
    caadam_jax.describe(params, strategy=None, show=False)  # pyright: ignore[reportArgumentType]
