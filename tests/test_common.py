"""Optax's common optimizer checks, run on every entry of ``registry.ENTRIES``.

The checks themselves are in ``caadam_test_common_checks.py``; the entries (every alias and
structure transform of caadam_jax, with what the checks need to know) in
``caadam_test_registry.py``.
"""

from __future__ import annotations

import caadam_test_common_checks as common_checks
import caadam_test_registry as registry
import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import caadam_jax

# The explicit chains (``optax.chain(scale_by_adam(), scale_by_*(...), ...)``) run the
# caadam alias's code path: the fast tier checks the aliases, the slow tier the chains too.
entry_params = pytest.mark.parametrize(
    "entry",
    [
        pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.name.startswith("chain-") else [])
        for e in registry.ENTRIES
    ],
)


# ----------------------------------------------------------------------------
# The registry itself.


def test_registry_lists_every_alias_and_transform():
  names = {entry.name for entry in registry.ENTRIES}
  expected = {
      *(f"caadam-{strategy}" for strategy in caadam_jax.STRATEGY_NAMES),
      "caadam-additive-weight_decay",
      "chain-scale_by_connection_minmaxmedian",
      "chain-scale_by_depth",
      "chain-scale_by_strategy-multiplicative",
  }
  assert expected <= names
  assert {"adas", "keras_caadam"} <= names
  assert len(names) == len(registry.ENTRIES)  # ids are unique
  # Every public transform constructor of the package is covered.
  public = {n for n in caadam_jax.__all__ if n.startswith("scale_by_")}
  scalers = {scaler.name.split("-")[0] for scaler in registry.NO_ARGUMENT_SCALERS}
  assert public <= scalers, public - scalers
  for entry in registry.ENTRIES:
    assert isinstance(entry.factory(), optax.GradientTransformation), entry.name


# ----------------------------------------------------------------------------
# Optimization on known targets.


# Complex parameters on the parabolas only (Rosenbrock adds compile time, not coverage),
# in the slow tier; the fast tier checks complex states in test_state_shape_dtype_stability.
_OPTIMIZATION_CASES = [
    pytest.param(t, jnp.float32, id=f"{t}-float32") for t in common_checks.TARGETS
] + [
    pytest.param(t, jnp.complex64, id=f"{t}-complex64", marks=pytest.mark.slow)
    for t in ("parabola", "layered_parabola")
]


@entry_params
@pytest.mark.parametrize("target,dtype", _OPTIMIZATION_CASES)
def test_optimization(entry, target, dtype):
  common_checks.check_optimization(entry, target, dtype)


# ----------------------------------------------------------------------------
# Checks that take the entry alone: id -> check.

ENTRY_CHECKS = {
    "layered_targets_scale_per_layer": common_checks.check_per_layer_step_sizes,
    "inject_hyperparams_equality": common_checks.check_inject_hyperparams,
    "inject_hyperparams_inner_state_structure": common_checks.check_inject_inner_state_structure,
    "scheduled_hyperparam": common_checks.check_scheduled_hyperparam,
    "state_matches_reference": common_checks.check_state_matches_reference,
    "tree_map_params": common_checks.check_tree_map_params,
    "init_shape_dtype_struct": common_checks.check_init_shape_dtype_struct,
    "extra_args": common_checks.check_extra_args,
}


@pytest.mark.parametrize("check", ENTRY_CHECKS.values(), ids=ENTRY_CHECKS.keys())
@entry_params
def test_entry_check(entry, check):
  check(entry)


# ----------------------------------------------------------------------------
# Dtypes and state stability.


@entry_params
@pytest.mark.parametrize("layered", [False, True], ids=["bare", "layered"])
# float32 in the slow tier: the fast tier's other checks all run float32.
@pytest.mark.parametrize("dtype", ["bfloat16", pytest.param("float32", marks=pytest.mark.slow)])
def test_preserve_dtype(entry, dtype, layered):
  common_checks.check_preserve_dtype(entry, dtype, layered)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32", "complex64", None])
@pytest.mark.parametrize("params_dtype", ["bfloat16", "float32", "complex64"])
def test_caadam_explicit_mu_dtype(params_dtype, state_dtype):
  """alias_test.test_explicit_dtype for caadam's ``mu_dtype``."""
  opt = caadam_jax.caadam(0.1, mu_dtype=state_dtype, strategy="additive")
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
    [
        jnp.float16,
        pytest.param(jnp.bfloat16, marks=pytest.mark.slow),
        jnp.float32,
        jnp.complex64,
    ],
    ids=["float16", "bfloat16", "float32", "complex64"],
)
def test_state_shape_dtype_stability(entry, dtype):
  # Every dtype is traced (lax.cond checks the branches agree); the jitted step runs for
  # bfloat16 only, in the slow tier (XLA's CPU compile of bfloat16 steps is the slowest
  # of the suite); float32 steps run in every other check of the fast tier.
  common_checks.check_state_stability(entry, dtype, execute=dtype == jnp.bfloat16)


# ----------------------------------------------------------------------------
# Gradient accumulation.


@pytest.mark.standard_promotion  # optax.MultiSteps divides by an int32 counter
# The fast tier: float32 on the caadam alias (a drop-in for optax.adam under MultiSteps);
# the slow tier: every entry, and bfloat16 (its CPU compile is the slowest of the suite).
@pytest.mark.parametrize(
    "entry,dtype",
    [
        pytest.param(
            e,
            dtype,
            id=f"{dtype}-{e.name}",
            marks=[] if (e.name, dtype) == ("caadam-additive", "float32") else [pytest.mark.slow],
        )
        for e in registry.ENTRIES
        for dtype in ("bfloat16", "float32")
    ],
)
def test_gradient_accumulation(entry, dtype):
  common_checks.check_gradient_accumulation(entry, dtype)


# ----------------------------------------------------------------------------
# Structure transforms built with no arguments.


@pytest.mark.parametrize("scaler", registry.NO_ARGUMENT_SCALERS, ids=lambda s: s.name)
def test_scaler_no_arguments(scaler):
  common_checks.check_scaler_no_arguments(scaler)


# ----------------------------------------------------------------------------
# Trees without leaves, bare arrays, abstract params.


@entry_params
@pytest.mark.parametrize("empty", [{}, ()], ids=["dict", "tuple"])
def test_init_with_tree_without_leaves(entry, empty):
  opt = entry.factory()
  state = opt.init(empty)
  updates, _ = opt.update(empty, state, empty)
  assert jax.tree.leaves(updates) == []


@entry_params
@pytest.mark.parametrize("shape", [(3,), (2, 3)], ids=["1d", "2d"])
def test_bare_array(entry, shape):
  common_checks.check_bare_array(entry, shape)


# One strategy in the fast tier: the check is of init's structure check, not the formulas.
@pytest.mark.parametrize(
    "strategy",
    [
        s if s == "depth" else pytest.param(s, marks=pytest.mark.slow)
        for s in caadam_jax.STRATEGY_NAMES
    ],
)
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

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


@pytest.mark.slow  # a test of the checks themselves, not of the library
@pytest.mark.standard_promotion  # its last check wraps optax.MultiSteps
def test_checks_detect_broken_optimizers():
  def entry(factory, **fields):
    return registry.Entry("broken", factory, reference=lambda: optax.adam(registry.LR), **fields)

  # Not Adam on a bare array: a bare array's leaf path is empty, "" matches it.
  def broken(**_):
    return optax.chain(
        optax.scale_by_adam(), _scale_leaf_by_two(""), optax.scale_by_learning_rate(0.1)
    )

  with pytest.raises(AssertionError):
    common_checks.check_bare_array(entry(broken), (3,))

  # Upcasts bf16 updates.
  def upcast(**_):
    return optax.chain(
        optax.adam(0.1),
        optax.GradientTransformation(
            lambda params: optax.EmptyState(),
            lambda updates, state, params=None: (
                jax.tree.map(lambda x: x.astype(jnp.float32), updates),
                state,
            ),
        ),
    )

  with pytest.raises(AssertionError):
    common_checks.check_preserve_dtype(entry(upcast), "bfloat16", True)

  # Holds an extra leaf of state: more bytes than Adam.
  def bigger(**_):
    return optax.chain(optax.adam(0.1), optax.scale_by_rms())

  with pytest.raises(AssertionError):
    common_checks.check_state_matches_reference(entry(bigger))
  adam = entry(lambda **_: optax.adam(0.1))
  # Same step in every layer.
  with pytest.raises(AssertionError):
    common_checks.check_per_layer_step_sizes(adam)
  # Too few steps to converge.
  with pytest.raises(AssertionError):
    common_checks.check_optimization(entry(adam.factory, steps=5), "layered_parabola", jnp.float32)
  # Accumulation breaks when the update's dtype differs from the gradients'
  # (optax issue 377): MultiSteps's lax.cond branches disagree.
  with pytest.raises((AssertionError, TypeError)):
    common_checks.check_gradient_accumulation(entry(upcast), "bfloat16")
