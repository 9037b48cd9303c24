"""The structure transforms and the caadam alias: values, wrappers, errors."""

import functools

import caadam_test_helpers as helpers
import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import caadam_jax
from caadam_jax import _paths
from caadam_jax import _transforms

# Random kernels: the comparisons with Adam need values, not only shapes.
mlp_params = functools.partial(helpers.mlp_params, seed=0)


WIDTHS = [3, 4, 5, 6, 2]  # connections 12, 20, 30, 12: min 12, median 16, max 30
ADDITIVE = {"Dense_0": 1.95, "Dense_1": 1 - 0.95 * 4 / 14, "Dense_2": 0.05, "Dense_3": 1.95}


def test_transform_multiplies_each_leaf_by_its_factor():
  params = mlp_params(WIDTHS)
  ones = jax.tree.map(jnp.ones_like, params)
  tx = caadam_jax.scale_by_connection_minmaxmedian()
  updates, state = jax.jit(tx.update)(ones, tx.init(params))
  assert state == optax.EmptyState()
  for layer, factor in ADDITIVE.items():
    np.testing.assert_allclose(updates[layer]["kernel"], factor, rtol=1e-6)
    np.testing.assert_allclose(updates[layer]["bias"], factor, rtol=1e-6)


def test_caadam_equals_adam_times_factor_over_steps():
  params = mlp_params(WIDTHS)
  adam, ca = optax.adam(1e-2), caadam_jax.caadam(1e-2, strategy="additive")
  adam_state, ca_state = adam.init(params), ca.init(params)
  for step in range(3):
    grads = jax.tree.map(lambda p, step=step: jnp.sin(p + step), params)
    adam_updates, adam_state = adam.update(grads, adam_state, params)
    ca_updates, ca_state = ca.update(grads, ca_state, params)
    adam_updates, ca_updates = helpers.as_dict(adam_updates), helpers.as_dict(ca_updates)
    for layer, factor in ADDITIVE.items():
      for name in ("kernel", "bias"):
        np.testing.assert_allclose(
            ca_updates[layer][name], factor * adam_updates[layer][name], rtol=1e-5, atol=1e-9
        )
  # Same moments: the structure transform adds no state.
  jax.tree.map(
      np.testing.assert_array_equal,
      helpers.as_tuple(ca_state)[0],
      helpers.as_tuple(adam_state)[0],
  )


def test_explicit_chain_equals_alias():
  params = mlp_params(WIDTHS)
  chain = optax.chain(
      optax.scale_by_adam(),
      caadam_jax.scale_by_depth(2.0),
      optax.scale_by_learning_rate(1e-3),
  )
  alias = caadam_jax.caadam(1e-3, strategy="depth", scaling_factor=2.0)
  grads = jax.tree.map(jnp.cos, params)
  a, _ = chain.update(grads, chain.init(params), params)
  b, _ = alias.update(grads, alias.init(params), params)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  # D = 4 layers: the first gets 3 ** (3/4).
  adam_updates, _ = optax.adam(1e-3).update(grads, optax.adam(1e-3).init(params), params)
  a, adam_updates = helpers.as_dict(a), helpers.as_dict(adam_updates)
  np.testing.assert_allclose(
      a["Dense_0"]["kernel"], 3**0.75 * adam_updates["Dense_0"]["kernel"], rtol=1e-5
  )
  np.testing.assert_allclose(a["Dense_3"]["kernel"], adam_updates["Dense_3"]["kernel"], rtol=1e-6)


def test_weight_decay_is_not_scaled_and_respects_mask():
  params = mlp_params(WIDTHS)
  zeros = jax.tree.map(jnp.zeros_like, params)
  mask = jax.tree.map(lambda p: p.ndim > 1, params)
  tx = caadam_jax.caadam(0.1, weight_decay=0.5, mask=mask, strategy="additive")
  updates, _ = tx.update(zeros, tx.init(params), params)
  updates = helpers.as_dict(updates)
  # Zero gradients: Adam's step is 0, so the update is -lr * wd * param, unscaled by S.
  np.testing.assert_allclose(
      updates["Dense_2"]["kernel"], -0.05 * params["Dense_2"]["kernel"], rtol=1e-6
  )
  np.testing.assert_array_equal(updates["Dense_2"]["bias"], 0.0)


def test_state_bytes_equal_adam_even_with_structure():
  params = mlp_params(WIDTHS)
  ca_state = caadam_jax.caadam(
      structure=caadam_jax.infer_structure(params), strategy="additive"
  ).init(params)
  helpers.assert_same_state(ca_state, optax.adam(1e-3).init(params))


def test_traced_scaling_factor_under_jit_and_schedule():
  params = mlp_params(WIDTHS)
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optax.inject_hyperparams(caadam_jax.caadam)(
      learning_rate=1.0, scaling_factor=0.5, strategy="additive"
  )
  state = tx.init(params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  # First Adam step of a constant gradient is ~1 per element, times lr and S.
  np.testing.assert_allclose(updates["Dense_0"]["kernel"], -1.5, rtol=1e-5)
  np.testing.assert_allclose(updates["Dense_2"]["kernel"], -0.5, rtol=1e-5)
  # A schedule for the factor: 0 at step 0 makes every factor 1, 0.9 afterwards.
  tx = optax.inject_hyperparams(caadam_jax.caadam)(
      learning_rate=1.0,
      scaling_factor=lambda count: jnp.where(count < 1, 0.0, 0.9),
      strategy="additive",
  )
  state = tx.init(params)
  step = jax.jit(tx.update)
  first, state = step(grads, state, params)
  second, state = step(grads, state, params)
  np.testing.assert_allclose(first["Dense_2"]["kernel"], -1.0, rtol=1e-5)
  np.testing.assert_allclose(second["Dense_2"]["kernel"], -0.1, rtol=1e-4)


def test_partition_refuses_the_default_path_and_takes_group_or_global_structures():
  params = mlp_params(WIDTHS)
  labels = {k: ("small" if k in ("Dense_0", "Dense_1") else "big") for k in params}
  grads = jax.tree.map(jnp.ones_like, params)
  # structure=None inside a group would give per-group statistics silently: refused.
  default = optax.partition(
      {
          "small": caadam_jax.scale_by_connection_minmaxmedian(),
          "big": caadam_jax.scale_by_connection_minmaxmedian(),
      },
      labels,
  )
  with pytest.raises(ValueError, match=r"optax.masked.*infer_structure\(full_params\)"):
    default.init(params)
  # Per-group statistics on purpose: a structure built from each group's params.
  per_group = optax.partition(
      {
          name: caadam_jax.scale_by_connection_minmaxmedian(
              structure=caadam_jax.infer_structure(
                  {k: v for k, v in params.items() if labels[k] == name}
              )
          )
          for name in ("small", "big")
      },
      labels,
  )
  updates, _ = per_group.update(grads, per_group.init(params))
  updates = helpers.as_dict(updates)
  # Group "small": connections 12, 20 -> min 12, median 16, max 20.
  np.testing.assert_allclose(updates["Dense_0"]["kernel"], 1.95, rtol=1e-6)
  np.testing.assert_allclose(updates["Dense_1"]["kernel"], 0.05, rtol=1e-6)
  # Group "big": connections 30, 12 -> min 12, median 21, max 30.
  np.testing.assert_allclose(updates["Dense_2"]["kernel"], 0.05, rtol=1e-6)
  np.testing.assert_allclose(updates["Dense_3"]["kernel"], 1.95, rtol=1e-6)

  structure = caadam_jax.infer_structure(params)
  global_stats = optax.partition(
      {
          "small": caadam_jax.scale_by_connection_minmaxmedian(structure=structure),
          "big": caadam_jax.scale_by_connection_minmaxmedian(structure=structure),
      },
      labels,
  )
  updates, _ = global_stats.update(grads, global_stats.init(params))
  updates = helpers.as_dict(updates)
  for layer, factor in ADDITIVE.items():
    np.testing.assert_allclose(updates[layer]["kernel"], factor, rtol=1e-6)


def test_masked_leaves_pass_through():
  params = mlp_params(WIDTHS)
  mask = {k: {"kernel": True, "bias": False} for k in params}
  structure = caadam_jax.infer_structure(params)
  tx = optax.masked(caadam_jax.scale_by_connection_minmaxmedian(structure=structure), mask)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params))
  updates = helpers.as_dict(updates)
  np.testing.assert_allclose(updates["Dense_0"]["kernel"], 1.95, rtol=1e-6)
  np.testing.assert_array_equal(updates["Dense_0"]["bias"], 1.0)


def test_bf16_updates_keep_dtype_and_scale():
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), mlp_params(WIDTHS))
  grads = jax.tree.map(jnp.ones_like, params)
  for tx in (
      caadam_jax.scale_by_depth(),
      optax.inject_hyperparams(caadam_jax.scale_by_depth)(scaling_factor=1.0),
  ):
    updates, _ = jax.jit(tx.update)(grads, tx.init(params))
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    np.testing.assert_allclose(
        np.asarray(updates["Dense_0"]["kernel"], np.float32), 2**0.75, rtol=1e-2
    )


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: caadam_jax.caadam(scaling_factor=1.0, strategy="additive"),
            r"0 <= scaling_factor < 1",
        ),
        (
            lambda: caadam_jax.caadam(scaling_factor=-0.1, strategy="additive"),
            r"0 <= scaling_factor < 1",
        ),
        (
            lambda: caadam_jax.caadam(scaling_factor=float("nan"), strategy="additive"),
            r"out of range",
        ),
        (
            lambda: caadam_jax.caadam(strategy="multiplicative", scaling_factor=0.0),
            r"scaling_factor > 0",
        ),
        (lambda: caadam_jax.caadam(strategy="depth", scaling_factor=-1.0), r"scaling_factor >= 0"),
        (
            lambda: caadam_jax.caadam(
                strategy="sideways"  # pyright: ignore[reportArgumentType]  # bad on purpose
            ),
            r"Unknown strategy 'sideways'",
        ),
        (
            lambda: caadam_jax.scale_by_connection_minmaxmedian(strategy="depth"),
            r"Unknown strategy 'depth'",
        ),
        (lambda: caadam_jax.scale_by_connection_minmaxmedian(1.5), r"0 <= scaling_factor < 1"),
        (
            lambda: caadam_jax.scale_by_connection_minmaxmedian(-2.0, strategy="multiplicative"),
            r"> 0",
        ),
        (lambda: caadam_jax.scale_by_depth(-0.5), r"scaling_factor >= 0"),
        (lambda: caadam_jax.scale_by_depth(jnp.ones(2)), r"real scalar"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_caadam_without_strategy_names_the_choices():
  # No default strategy (issue #27): omitting it is an error that lists the names and
  # points to the evidence, directly and through optax.inject_hyperparams (whose
  # factory runs at init).
  params = mlp_params(WIDTHS)
  injected = optax.inject_hyperparams(caadam_jax.caadam)(1e-3)
  for make in (caadam_jax.caadam, lambda: injected.init(params)):
    with pytest.raises(TypeError, match=r"strategy=") as info:
      make()
    message = str(info.value)
    assert all(repr(name) in message for name in caadam_jax.STRATEGY_NAMES)
    assert "docs/benchmarks.md" in message


def test_inject_hyperparams_with_named_strategy():
  # inject_hyperparams treats the strategy name as static and the numbers as hyperparams.
  params = mlp_params(WIDTHS)
  tx = optax.inject_hyperparams(caadam_jax.caadam)(learning_rate=0.5, strategy="depth")
  state = tx.init(params)
  assert isinstance(state, optax.InjectStatefulHyperparamsState)
  assert set(state.hyperparams) >= {"learning_rate", "b1", "b2", "eps"}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  updates = helpers.as_dict(updates)
  depth = len(WIDTHS) - 1
  # First Adam step of a constant gradient is ~1; depth factor of layer 0 is 2**((D-1)/D).
  np.testing.assert_allclose(
      updates["Dense_0"]["kernel"], -0.5 * 2 ** ((depth - 1) / depth), rtol=1e-5
  )


def test_boundary_values_are_accepted():
  caadam_jax.caadam(scaling_factor=0.0, strategy="additive")
  caadam_jax.caadam(scaling_factor=0.999, strategy="additive")
  caadam_jax.caadam(strategy="multiplicative", scaling_factor=0.5)
  caadam_jax.caadam(strategy="depth", scaling_factor=0.0)
  caadam_jax.scale_by_depth(jnp.float32(2.0))


def test_apply_if_finite_skips_nan_steps_like_adam():
  params = mlp_params(WIDTHS)
  tx = optax.apply_if_finite(caadam_jax.caadam(1e-2, strategy="additive"), max_consecutive_errors=3)
  state = tx.init(params)
  bad = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
  updates, state = jax.jit(tx.update)(bad, state, params)
  assert all(np.all(u == 0) for u in jax.tree.leaves(updates))
  assert int(state.notfinite_count) == 1
  good = jax.tree.map(jnp.ones_like, params)
  updates, state = jax.jit(tx.update)(good, state, params)
  np.testing.assert_allclose(updates["Dense_0"]["kernel"], -1.95e-2, rtol=1e-5)
  assert int(state.notfinite_count) == 0


def test_minmaxmedian_mode_keyword_is_a_deprecated_strategy():
  params = {"Dense_0": {"kernel": jnp.ones((4, 8))}, "Dense_1": {"kernel": jnp.ones((8, 16))}}
  new = caadam_jax.scale_by_connection_minmaxmedian(2.0, strategy="multiplicative")
  with pytest.warns(DeprecationWarning, match="'mode' is deprecated; use 'strategy'"):
    old = caadam_jax.scale_by_connection_minmaxmedian(
        2.0, mode="multiplicative"  # pyright: ignore[reportCallIssue]  # deprecated: no parameter
    )
  got, _ = old.update(params, old.init(params))
  expected, _ = new.update(params, new.init(params))
  chex.assert_trees_all_equal(got, expected, strict=True)
  assert float(got["Dense_0"]["kernel"][0, 0]) == 2.0  # c = c_min: g ** 1
  with pytest.raises(TypeError, match="both 'mode'"):
    caadam_jax.scale_by_connection_minmaxmedian(
        mode="additive", strategy="additive"  # pyright: ignore[reportCallIssue]  # as above
    )


# ----------------------------------------------------------------------------
# Factors as runtime values (compile cost): where literals would make more than
# MAX_KERNELS_FROM_LITERALS fused kernels distinct, distinct concrete factors leave the
# jitted update through a lax.cond, never as literals multiplied into the updates, and
# the numbers are exactly update * factor (rounded once to the update's dtype), for
# updates of either sign. The cond's predicate depends on no input of the update, so
# no scaled update waits for the others (test_cond_predicate_depends_on_no_input).
# Fewer stay literals (test_few_distinct_kernels_stay_literals).


def _equal_layers(n: int) -> dict:
  return {f"Dense_{i}": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)} for i in range(n)}


# Under depth, n equal layers have n - 1 distinct factors other than 1 (the last layer's
# is 1), on kernels and on biases: as literals, 2 * (n - 2) kernels more than runtime
# factors make; 12 layers make 20, over the threshold.
DEPTH4 = _equal_layers(4)
DEPTH12 = _equal_layers(12)


def _literal_muls(jaxpr):
  """Multiplies of a non-scalar value by a literal, at any nesting level."""
  found = []
  for eqn in jaxpr.eqns:
    for param in eqn.params.values():
      if isinstance(param, jax.extend.core.ClosedJaxpr):
        found += _literal_muls(param.jaxpr)
    literal = any(isinstance(v, jax.extend.core.Literal) for v in eqn.invars)
    if eqn.primitive.name == "mul" and eqn.outvars[0].aval.shape and literal:
      found.append(eqn)
  return found


def _primitives(jaxpr) -> set[str]:
  return {e.primitive.name for e in jaxpr.eqns}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_distinct_factors_are_runtime_values_and_exact(dtype, sign):
  tx = caadam_jax.scale_by_depth(structure=caadam_jax.infer_structure(DEPTH12))
  updates = jax.tree.map(lambda p: (sign * 0.3 * p).astype(dtype), DEPTH12)
  jaxpr = jax.make_jaxpr(tx.update)(updates, tx.init(DEPTH12))
  assert "cond" in _primitives(jaxpr)
  assert _literal_muls(jaxpr.jaxpr) == []
  out, _ = jax.jit(tx.update)(updates, tx.init(DEPTH12))
  for i in range(12):
    factor = 2.0 ** ((12 - (1 + i)) / 12)  # (1 + g) ** ((D - (1 + d)) / D), g = 1
    for name in ("kernel", "bias"):
      leaf = updates[f"Dense_{i}"][name]
      expected = np.asarray(leaf * jnp.asarray(factor, dtype))
      assert out[f"Dense_{i}"][name].dtype == dtype
      np.testing.assert_array_equal(np.asarray(out[f"Dense_{i}"][name]), expected)


def _concrete(params, factor_of) -> dict:
  """Normalized path -> (factor, float32), for apply_factors' count, by a hand formula."""
  out = {}
  _paths.map_with_normalized_path(
      lambda path, u: out.setdefault(path, (factor_of(path), jnp.dtype(jnp.float32))), params
  )
  return {path: vd for path, vd in out.items() if vd[0] != 1.0}


@pytest.mark.parametrize("layers", range(3, 16))
def test_kernels_literals_would_add_is_counted_by_shape(layers):
  """2 * (n - 2) for n equal layers under depth (see DEPTH12); the cond from 11 on."""
  params = _equal_layers(layers)

  def depth_factor(path):
    d = int(next(str(k) for k in path if str(k).startswith("Dense_"))[len("Dense_") :])
    return 2.0 ** ((layers - (1 + d)) / layers)

  added = _transforms._kernels_literals_add(params, _concrete(params, depth_factor))
  assert added == 2 * (layers - 2)
  tx = caadam_jax.scale_by_depth(structure=caadam_jax.infer_structure(params))
  uses_cond = "cond" in _primitives(jax.make_jaxpr(tx.update)(params, tx.init(params)))
  assert uses_cond == (added > _transforms.MAX_KERNELS_FROM_LITERALS)
  assert uses_cond == (layers >= 11)


def test_kernels_literals_would_add_count_each_shape_apart():
  """Leaves of different shapes never share a kernel, so their factors add none."""
  params = {f"Dense_{i:02d}": {"kernel": jnp.ones((i + 2, 3))} for i in range(30)}
  order = {}

  def factor(path):
    return 1.5 + order.setdefault(path, len(order))  # 30 distinct factors

  assert _transforms._kernels_literals_add(params, _concrete(params, factor)) == 0


def test_few_distinct_kernels_stay_literals():
  """Four layers (4 kernels more as literals): no cond, and the same numbers as with it."""
  tx = caadam_jax.scale_by_depth(structure=caadam_jax.infer_structure(DEPTH4))
  updates = jax.tree.map(lambda p: (0.3 * p).astype(jnp.bfloat16), DEPTH4)
  jaxpr = jax.make_jaxpr(tx.update)(updates, tx.init(DEPTH4))
  assert "cond" not in _primitives(jaxpr)
  out, _ = jax.jit(tx.update)(updates, tx.init(DEPTH4))
  for i in range(4):
    factor = 2.0 ** ((4 - (1 + i)) / 4)
    for name in ("kernel", "bias"):
      leaf = updates[f"Dense_{i}"][name]
      np.testing.assert_array_equal(
          np.asarray(out[f"Dense_{i}"][name]), np.asarray(leaf * jnp.asarray(factor, jnp.bfloat16))
      )


def _depends_on_inputs(jaxpr) -> set:
  """The variables of ``jaxpr`` computed from any of its inputs (forward closure)."""
  tainted = set(jaxpr.invars) | set(jaxpr.constvars)
  for eqn in jaxpr.eqns:
    if any(not isinstance(v, jax.extend.core.Literal) and v in tainted for v in eqn.invars):
      tainted.update(eqn.outvars)
  return tainted


def test_cond_predicate_depends_on_no_input():
  """The factors' cond may run at the start of a train step.

  Were its predicate a value of the updates (it was: the first leaf's first element),
  every scaled update would wait for the gradient that value came from, in a train
  step often the last one the backward pass computes: a 125-layer MLP's step took
  7-10% longer than ``optax.adam``'s (``benchmarks/compile_constants.py``).
  """
  tx = optax.chain(
      optax.scale_by_adam(),
      caadam_jax.scale_by_depth(structure=caadam_jax.infer_structure(DEPTH12)),
  )
  jaxpr = jax.make_jaxpr(tx.update)(DEPTH12, tx.init(DEPTH12), DEPTH12).jaxpr
  conds = [e for e in jaxpr.eqns if e.primitive.name == "cond"]
  assert len(conds) == 1
  predicate = conds[0].invars[0]
  assert not isinstance(predicate, jax.extend.core.Literal)  # not folded away
  assert predicate not in _depends_on_inputs(jaxpr)
  # And what the cond returns does not depend on the inputs either: only the scaled
  # updates do.
  assert not set(conds[0].outvars) & _depends_on_inputs(jaxpr)


def test_eager_update_needs_no_cond_and_equals_the_jitted_one(monkeypatch):
  """Eagerly, literal factors cost no compile (an eager cond recompiles every call)."""
  tx = caadam_jax.scale_by_depth(structure=caadam_jax.infer_structure(DEPTH4))
  updates = jax.tree.map(lambda p: (0.3 * p).astype(jnp.bfloat16), DEPTH4)
  jitted, _ = jax.jit(tx.update)(updates, tx.init(DEPTH4))

  def no_cond(*args, **kwargs):
    raise AssertionError("an eager update ran a lax.cond")

  monkeypatch.setattr(jax.lax, "cond", no_cond)
  eager, _ = tx.update(updates, tx.init(DEPTH4))
  chex.assert_trees_all_equal(eager, jitted, strict=True)
  assert len({float(u[0, 0]) for u in jax.tree.leaves(eager) if u.ndim == 2}) == 4


def test_equal_factors_stay_literals():
  """One factor (or none but 1) needs no cond: nothing to keep apart."""
  params = {"Dense_0": {"kernel": jnp.ones((3, 3))}, "Dense_1": {"kernel": jnp.ones((3, 3))}}
  tx = caadam_jax.scale_by_connection_minmaxmedian()
  jaxpr = jax.make_jaxpr(tx.update)(params, tx.init(params))
  assert "cond" not in {e.primitive.name for e in jaxpr.eqns}


def test_distinct_factors_add_no_kernel_per_factor():
  """The compiled update of 12 layers with 11 distinct factors has Adam's kernels, not 11 more.

  XLA compiles each distinct fused computation anew; a factor that reached a kernel as a
  literal (or came from a kernel of its own) would make one distinct computation per
  layer, and compile time grows with them (``benchmarks/compile_constants.py``).
  """
  from benchmarks import compile_constants  # the HLO parser the benchmark reports with

  params = {f"Dense_{i}": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)} for i in range(12)}
  structure = caadam_jax.infer_structure(params)
  adam = optax.scale_by_adam()
  depth = optax.chain(optax.scale_by_adam(), caadam_jax.scale_by_depth(structure=structure))
  factors = structure.factors("depth")
  assert len({f for f in factors.values() if f != 1.0}) == 11

  def distinct(tx):
    hlo_text = jax.jit(tx.update).lower(params, tx.init(params)).compile().as_text()
    assert hlo_text is not None
    return compile_constants.distinct_fusions(hlo_text)

  # A few more for the last layer's unscaled kernels and the cond's predicate (4 with
  # jax 0.10), not one per factor (16 with a computed factor per cond output).
  assert distinct(adam) <= distinct(depth) <= distinct(adam) + 5
