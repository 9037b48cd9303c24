"""Optax's common optimizer checks, run on every entry of ``registry.REGISTRY``.

The checks themselves are in ``common_checks.py``; the entries (every alias and
structure transform of caadam_jax, with per-entry settings) in ``registry.py``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import caadam_jax

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
  import common_checks
  import registry
except ImportError:  # tests/ as a package
  from tests import common_checks
  from tests import registry

ENTRIES = registry.entries()
ENTRY_IDS = [e.name for e in ENTRIES]

entry_params = pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)


def known_failure(request, entry, *qualifiers: str) -> None:
  """Marks the running test xfail (not strict) if the entry lists it as a known failure.

  Keys of ``Settings.known_failures``: the test function name, or
  ``name[qualifier]``, where the qualifier is the dtype name for the tests that
  take one, or ``target-dtype`` for test_optimization.
  """
  name = request.node.originalname
  for key in (name, *(f"{name}[{q}]" for q in qualifiers)):
    if key in entry.settings.known_failures:
      request.applymarker(pytest.mark.xfail(reason=entry.settings.known_failures[key]))


# ----------------------------------------------------------------------------
# The registry itself.


def test_registry_lists_every_alias_and_transform():
  names = {name for name, _ in registry.REGISTRY}
  expected = {
      "caadam-additive",
      "caadam-multiplicative",
      "caadam-depth",
      "caadam-additive-weight_decay",
      "chain-scale_by_connection_minmaxmedian",
      "chain-scale_by_depth",
      "chain-scale_by_strategy-multiplicative",
  }
  assert expected <= names
  assert {"adas", "keras_caadam"} <= names
  # Every public transform constructor of the package is covered.
  public = {n for n in caadam_jax.__all__ if n.startswith("scale_by_")}
  scalers = {name.split("-")[0] for name, _ in registry.NO_ARGUMENT_SCALERS}
  assert public <= scalers, public - scalers
  for name, factory in registry.REGISTRY:
    assert isinstance(factory(), optax.GradientTransformation), name


# ----------------------------------------------------------------------------
# Optimization on known targets.


# Complex parameters on the parabolas only: Rosenbrock adds compile time, not coverage.
_OPTIMIZATION_CASES = [(t, jnp.float32) for t in common_checks.TARGETS] + [
    ("parabola", jnp.complex64),
    ("layered_parabola", jnp.complex64),
]


@entry_params
@pytest.mark.parametrize(
    "target,dtype",
    _OPTIMIZATION_CASES,
    ids=[f"{t}-{jnp.dtype(d).name}" for t, d in _OPTIMIZATION_CASES],
)
def test_optimization(request, entry, target, dtype):
  dtype_name = jnp.dtype(dtype).name
  known_failure(request, entry, dtype_name, f"{target}-{dtype_name}")
  common_checks.check_optimization(entry.factory, entry.settings, target, dtype)


@entry_params
def test_layered_targets_scale_per_layer(entry):
  common_checks.check_per_layer_step_sizes(entry.factory, entry.settings)


# ----------------------------------------------------------------------------
# inject_hyperparams.


@entry_params
def test_inject_hyperparams_equality(entry):
  common_checks.check_inject_hyperparams(entry.factory, entry.settings)


@entry_params
def test_inject_hyperparams_inner_state_structure(entry):
  common_checks.check_inject_inner_state_structure(entry.factory, entry.settings)


@entry_params
def test_scheduled_hyperparam(entry):
  common_checks.check_scheduled_hyperparam(entry.factory, entry.settings)


# ----------------------------------------------------------------------------
# Dtypes and state stability.


@entry_params
@pytest.mark.parametrize("layered", [False, True], ids=["bare", "layered"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_preserve_dtype(request, entry, dtype, layered):
  known_failure(request, entry, dtype)
  common_checks.check_preserve_dtype(entry.factory, entry.settings, dtype, layered)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32", "complex64", None])
@pytest.mark.parametrize("params_dtype", ["bfloat16", "float32", "complex64"])
def test_caadam_explicit_mu_dtype(params_dtype, state_dtype):
  """alias_test.test_explicit_dtype for caadam's ``mu_dtype``."""
  opt = caadam_jax.caadam(0.1, mu_dtype=state_dtype)
  params = common_checks.layered_params(params_dtype)
  state = opt.init(params)
  expected = jnp.dtype(params_dtype if state_dtype is None else state_dtype)
  for mu in jax.tree.leaves(optax.tree.get(state, "mu")):
    assert mu.dtype == expected
  for nu in jax.tree.leaves(optax.tree.get(state, "nu")):
    assert nu.dtype == jnp.dtype(params_dtype)


@entry_params
@pytest.mark.parametrize(
    "dtype",
    [jnp.float16, jnp.bfloat16, jnp.float32, jnp.complex64],
    ids=["float16", "bfloat16", "float32", "complex64"],
)
def test_state_shape_dtype_stability(request, entry, dtype):
  known_failure(request, entry, jnp.dtype(dtype).name)
  # Every dtype is traced (lax.cond checks the branches agree); the jitted step
  # runs for bfloat16 only, to keep compile time down.
  common_checks.check_state_stability(
      entry.factory, entry.settings, dtype, execute=dtype == jnp.bfloat16
  )


# ----------------------------------------------------------------------------
# Gradient accumulation.


@pytest.mark.standard_promotion  # optax.MultiSteps divides by an int32 counter
@entry_params
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_gradient_accumulation(request, entry, dtype):
  known_failure(request, entry, dtype)
  common_checks.check_gradient_accumulation(entry.factory, entry.settings, dtype)


# ----------------------------------------------------------------------------
# Structure transforms built with no arguments.


@pytest.mark.parametrize(
    "constructor",
    [c for _, c in registry.NO_ARGUMENT_SCALERS],
    ids=[n for n, _ in registry.NO_ARGUMENT_SCALERS],
)
def test_scaler_no_arguments(request, constructor):
  name = request.node.callspec.id
  common_checks.check_scaler_no_arguments(constructor, name in registry.IDENTITY_ON_1D)


# ----------------------------------------------------------------------------
# State size and contents.


@entry_params
def test_state_matches_reference(entry):
  common_checks.check_state_matches_reference(entry.factory, entry.settings)


@pytest.mark.parametrize("strategy", ["additive", "multiplicative", "depth"])
def test_caadam_state_bytes_equal_adam(strategy):
  """``caadam()``'s state: exactly ``optax.adam()``'s leaves and bytes."""
  params = common_checks.layered_params()
  state = caadam_jax.caadam(strategy=strategy).init(params)
  adam_state = optax.adam(1e-3).init(params)

  def nbytes(t):
    return sum(x.nbytes for x in jax.tree.leaves(t))

  assert nbytes(state) == nbytes(adam_state) > 0
  chex.assert_trees_all_equal_shapes_and_dtypes(jax.tree.leaves(state), jax.tree.leaves(adam_state))
  chex.assert_trees_all_equal(jax.tree.leaves(state), jax.tree.leaves(adam_state), strict=True)


@entry_params
def test_tree_map_params(entry):
  common_checks.check_tree_map_params(entry.factory, entry.settings)


@entry_params
@pytest.mark.parametrize("empty", [{}, ()], ids=["dict", "tuple"])
def test_init_with_tree_without_leaves(entry, empty):
  opt = entry.factory()
  state = opt.init(empty)
  updates, _ = opt.update(empty, state, empty)
  assert jax.tree.leaves(updates) == []


# ----------------------------------------------------------------------------
# Bare arrays, abstract params, extra arguments.


@entry_params
@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=["1d", "2d"])
def test_bare_array(entry, shape):
  common_checks.check_bare_array(entry.factory, entry.settings, shape)


@entry_params
def test_init_shape_dtype_struct(request, entry):
  known_failure(request, entry)
  common_checks.check_init_shape_dtype_struct(entry.factory, entry.settings)


@pytest.mark.parametrize("strategy", ["additive", "multiplicative", "depth"])
def test_init_shape_dtype_struct_explicit_structure(strategy):
  """With a given Structure, ``init`` checks it against ShapeDtypeStruct leaves."""
  params = common_checks.layered_params()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  structure = caadam_jax.infer_structure(abstract)
  opt = caadam_jax.caadam(0.1, strategy=strategy, structure=structure)
  chex.assert_trees_all_equal_shapes_and_dtypes(opt.init(abstract), opt.init(params))
  chex.assert_trees_all_equal_shapes_and_dtypes(
      jax.eval_shape(opt.init, abstract), opt.init(params)
  )
  grads = common_checks.layered_grads(params)
  updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
  expected, _ = jax.jit(caadam_jax.caadam(0.1, strategy=strategy).update)(
      grads, opt.init(params), params
  )
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, expected)
  chex.assert_trees_all_equal(updates, expected, strict=True)
  # A mismatching tree is refused, abstract or not.
  wrong = dict(abstract, Dense_2={"kernel": jax.ShapeDtypeStruct((5, 1), jnp.float32)})
  with pytest.raises(ValueError, match="does not match"):
    opt.init(wrong)


@entry_params
def test_extra_args(entry):
  common_checks.check_extra_args(entry.factory, entry.settings)


# ----------------------------------------------------------------------------
# The checks can fail: a few deliberately broken optimizers.


def _scale_leaf_by_two(name):
  """A stateless transform that doubles the leaves whose path contains ``name``."""

  def update_fn(updates, state, params=None):
    del params
    return (
        jax.tree_util.tree_map_with_path(
            lambda path, u: 2 * u if name in jax.tree_util.keystr(path) else u, updates
        ),
        state,
    )

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


@pytest.mark.standard_promotion  # its last check wraps optax.MultiSteps
def test_checks_detect_broken_optimizers():
  settings = registry.Settings(reference=lambda: optax.adam(registry.LR))

  # Not Adam on a bare array: a bare array's leaf path is empty, "" matches it.
  def broken(**_):
    return optax.chain(
        optax.scale_by_adam(), _scale_leaf_by_two(""), optax.scale_by_learning_rate(0.1)
    )

  with pytest.raises(AssertionError):
    common_checks.check_bare_array(broken, settings, (3,))

  # Upcasts bf16 updates.
  def upcast(**_):
    return optax.chain(
        optax.adam(0.1),
        optax.GradientTransformation(
            lambda _: optax.EmptyState(),
            lambda u, s, p=None: (jax.tree.map(lambda x: x.astype(jnp.float32), u), s),
        ),
    )

  with pytest.raises(AssertionError):
    common_checks.check_preserve_dtype(upcast, settings, "bfloat16", True)

  # Holds an extra leaf of state: more bytes than Adam.
  def bigger(**_):
    return optax.chain(optax.adam(0.1), optax.scale_by_rms())

  with pytest.raises(AssertionError):
    common_checks.check_state_matches_reference(bigger, settings)
  # Same step in every layer.
  with pytest.raises(AssertionError):
    common_checks.check_per_layer_step_sizes(lambda **_: optax.adam(0.1), settings)
  # Too few steps to converge.
  slow = registry.Settings(steps=5)
  with pytest.raises(AssertionError):
    common_checks.check_optimization(
        lambda **_: optax.adam(0.1), slow, "layered_parabola", jnp.float32
    )
  # Accumulation breaks when the update's dtype differs from the gradients'
  # (optax issue 377): MultiSteps's lax.cond branches disagree.
  with pytest.raises((AssertionError, TypeError)):
    common_checks.check_gradient_accumulation(upcast, settings, "bfloat16")
