"""Test-wide settings: strict dtype promotion (as in Equinox's test suite) and the tiers.

Under ``"strict"`` promotion, mixing dtypes in ``jax.numpy`` (a bf16 update times a
float32 factor, an int32 count times a float32 array) raises instead of silently
promoting, so a library change that promotes an update fails a test. It is set at
import, before any test module is collected (module-level constants follow the same
rule), and again around every test. Subprocesses (examples run as scripts, notebooks,
multi-process tests) run with JAX's default.

Three things in Optax itself (0.2.5 to 0.2.8 at least) are not strict-clean:

* ``optax.tree.bias_correction`` (in ``optax.scale_by_adam``, so in ``optax.adam`` and
  every CaAdam alias) computes ``decay ** count`` with a float ``decay`` and an int32
  ``count``. While a test runs strictly (and while a fixture that asks for
  ``strict_optax`` builds its values), that one function runs under standard promotion
  (the same numbers, bit for bit); the rest of Adam stays strict. Optax is unpatched
  outside those spans: at collection and in tests under standard promotion.
* ``optax.MultiSteps`` divides by its int32 mini-step counter. Tests that wrap an
  optimizer in it are marked ``@pytest.mark.standard_promotion`` and run under JAX's
  default promotion.
* ``optax.scale_by_adam`` on complex parameters adds a float32 norm to a complex64
  moment. Test cases parametrized with a complex dtype get the same marker (added at
  collection, below).

tests/test_examples.py, which runs the examples in-process, is marked
``standard_promotion`` as a module: the examples use Flax and Optax pieces that are not
strict-clean (``nn.avg_pool`` divides a float32 sum by an int32 count; Optax schedules mix
Python floats with int32 steps). Every other module, benchmark scripts and notebooks
included, runs strictly.

Tiers (markers in pyproject.toml): ``python -m pytest -q`` deselects ``slow`` tests (the
``addopts`` there); ``-m ""`` runs everything and ``-m slow`` the slow tier alone.
A module whose ``pytestmark`` names ``pytest.mark.slow`` is not even imported under the
default ``-m 'not slow'`` (``pytest_ignore_collect`` below).
``external`` (always with ``slow``) marks tests of code outside the library or that launch
processes; ``-m "not external"`` is every in-process test (.ci/run's version legs). A test
marked ``data`` needs ``$CAADAM_JAX_DATA`` and is skipped, with that reason, when it is unset.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import os

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


def _is_complex_dtype(value) -> bool:
  try:
    return jnp.issubdtype(jnp.dtype(value), jnp.complexfloating)
  except (TypeError, ValueError):
    return False


_NO_DATA = pytest.mark.skip(
    reason="CAADAM_JAX_DATA is not set: this test reads the datasets (set it to the "
    "project's shared/data; README.md, set-up)"
)


def _marks_the_whole_module_slow(path) -> bool:
  """Whether a module's top-level ``pytestmark`` names ``pytest.mark.slow``."""
  tree = ast.parse(path.read_text())
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
    ):
      return "pytest.mark.slow" in ast.unparse(node.value)
  return False


def pytest_ignore_collect(collection_path, config):
  """The fast tier (the default ``-m 'not slow'``) skips importing all-slow modules.

  They would be deselected anyway; not importing them (Keras, Orbax, SciPy, the
  benchmarks) saves each pytest-xdist worker seconds of collection.
  """
  if (
      config.option.markexpr == "not slow"
      and collection_path.suffix == ".py"
      and collection_path.name.startswith("test_")
      and _marks_the_whole_module_slow(collection_path)
  ):
    return True
  return None


def pytest_collection_modifyitems(config, items):
  del config
  has_data = bool(os.environ.get("CAADAM_JAX_DATA"))
  for item in items:
    if not has_data and item.get_closest_marker("data") is not None:
      item.add_marker(_NO_DATA)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(_is_complex_dtype(v) for v in params.values() if isinstance(v, (str, type))):
      item.add_marker(pytest.mark.standard_promotion)


def _standard_promotion_bias_correction(original):
  @functools.wraps(original)
  def bias_correction(moment, decay, count):
    # Optax's own computation, traced under standard promotion: the same numbers bit
    # for bit (on JAX >= 0.11, float ** int32 is lax.pow with an integer exponent, which
    # a cast of count to float would change).
    with jax.numpy_dtype_promotion("standard"):
      return original(moment, decay, count)

  return bias_correction


_ORIGINAL = optax.tree_utils.tree_bias_correction
_PATCHED = _standard_promotion_bias_correction(_ORIGINAL)
# Optax exposes the one function under two names; optax.scale_by_adam calls optax.tree's.
_ALIASES = tuple(
    (module, name)
    for module, name in (
        (optax.tree_utils, "tree_bias_correction"),
        (optax.tree, "bias_correction"),
    )
    if getattr(module, name, None) is _ORIGINAL
)


@contextlib.contextmanager
def _strict_promotion():
  """Strict promotion, with Optax's bias correction run under standard promotion."""
  previous = [getattr(module, name) for module, name in _ALIASES]
  for module, name in _ALIASES:
    setattr(module, name, _PATCHED)
  try:
    with jax.numpy_dtype_promotion("strict"):
      yield
  finally:
    for (module, name), value in zip(_ALIASES, previous, strict=True):
      setattr(module, name, value)


@pytest.fixture(autouse=True)
def _dtype_promotion(request):
  if request.node.get_closest_marker("standard_promotion") is None:
    with _strict_promotion():
      yield
  else:
    with jax.numpy_dtype_promotion("standard"):
      yield


@pytest.fixture(scope="module")
def strict_optax():
  """For module-scoped fixtures that step Optax's Adam: they run before any test's span."""
  with _strict_promotion():
    yield
