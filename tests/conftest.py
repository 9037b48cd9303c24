"""Test-wide JAX settings: strict dtype promotion, as in Equinox's test suite.

Under ``"strict"`` promotion, mixing dtypes in ``jax.numpy`` (a bf16 update times a
float32 factor, an int32 count times a float32 array) raises instead of silently
promoting, so a library change that promotes an update fails a test. It is set at
import, before any test module is collected (module-level constants follow the same
rule), and again around every test. Subprocesses (examples run as scripts, notebooks,
multi-process tests) run with JAX's default.

Two places in Optax itself (0.2.5 to 0.2.8 at least) are not strict-clean:

* ``optax.tree.bias_correction`` (in ``optax.scale_by_adam``, so in ``optax.adam`` and
  every CaAdam alias) computes ``decay ** count`` with a float ``decay`` and an int32
  ``count``. A shim runs that one function under standard promotion (the same numbers,
  bit for bit); the rest of Adam stays strict.
* ``optax.MultiSteps`` divides by its int32 mini-step counter. Tests that wrap an
  optimizer in it are marked ``@pytest.mark.standard_promotion`` and run under JAX's
  default promotion.
* ``optax.scale_by_adam`` on complex parameters adds a float32 norm to a complex64
  moment. Test cases parametrized with a complex dtype get the same marker (added at
  collection, below).

The module that runs the examples in-process (``SCRIPT_MODULES``) also runs under
standard promotion: the examples use Flax and Optax pieces that are not strict-clean
(``nn.avg_pool`` divides a float32 sum by an int32 count; Optax schedules mix Python
floats with int32 steps). Every other module, benchmark scripts and notebooks included,
runs strictly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


def pytest_configure(config):
  config.addinivalue_line(
      "markers",
      "standard_promotion: run under JAX's standard dtype promotion, for Optax code that "
      "is not strict-clean (optax.MultiSteps).",
  )


def _is_complex_dtype(value) -> bool:
  try:
    return jnp.issubdtype(jnp.dtype(value), jnp.complexfloating)
  except (TypeError, ValueError):
    return False


SCRIPT_MODULES = frozenset({"test_examples.py"})


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if item.path.name in SCRIPT_MODULES:
      item.add_marker(pytest.mark.standard_promotion)
      continue
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(_is_complex_dtype(v) for v in params.values() if isinstance(v, (str, type))):
      item.add_marker(pytest.mark.standard_promotion)


@pytest.fixture(autouse=True)
def _dtype_promotion(request):
  strict = request.node.get_closest_marker("standard_promotion") is None
  with jax.numpy_dtype_promotion("strict" if strict else "standard"):
    yield


def _strict_bias_correction(original):
  @functools.wraps(original)
  def bias_correction(moment, decay, count):
    # Optax's own computation, traced under standard promotion: the same numbers bit
    # for bit (on JAX >= 0.11, float ** int32 is lax.pow with an integer exponent, which
    # a cast of count to float would change).
    with jax.numpy_dtype_promotion("standard"):
      return original(moment, decay, count)

  return bias_correction


_ORIGINAL = optax.tree_utils.tree_bias_correction
_PATCHED = _strict_bias_correction(_ORIGINAL)
_ALIASES = (
    (optax.tree_utils, "tree_bias_correction"),
    (getattr(optax, "tree", None), "bias_correction"),
)
for _module, _name in _ALIASES:
  if getattr(_module, _name, None) is _ORIGINAL:
    setattr(_module, _name, _PATCHED)
