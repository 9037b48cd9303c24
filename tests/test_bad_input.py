"""Bad and unusual input: the input and what must happen.

Each test is named for the input it feeds and the error or behaviour it expects; the table
"What each bad-input item became" in docs/validation.md lists the same inputs. Expected
numbers come from the formulas of docs/method.md ("The factors") written out here, or from
``optax.adam``; errors are checked for the argument's name and the valid range or what to
do. NNX train-mode tracing and NumPy static arguments of ``trace_structure`` are here in
their plain form; tests/test_models.py covers them on real models (``nnx.scan`` stacks with
BatchNorm). Packaging is checked by .ci/run's sdist and minimum legs and
tests/test_packaging.py.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import math
import pathlib
import re

import caadam_test_helpers as helpers
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import caadam_jax
from caadam_jax import _formulas

# Connection counts 6, 12, 4: c_min = 4, c_med = 6, c_max = 12, so under MinMaxMedian
# Dense_0 (the median) has n = 0, Dense_1 n = 1 (upper branch) and Dense_2 n = 1
# (lower branch); depth exponents (D - 1 - d)/D are 2/3, 1/3, 0.
PARAMS = {
    "Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)},
    "Dense_1": {"kernel": jnp.ones((3, 4))},
    "Dense_2": {"kernel": jnp.ones((4, 1))},
}
GRADS = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), PARAMS)


def hand_factors(strategy: str, g: float) -> dict[str, float]:
  """The factor of every layer of PARAMS, from the formulas of docs/method.md."""
  if strategy == "additive":
    return {"Dense_0": 1.0, "Dense_1": 1 - g, "Dense_2": 1 + g}
  if strategy == "multiplicative":
    return {"Dense_0": 1.0, "Dense_1": g, "Dense_2": g}
  return {"Dense_0": (1 + g) ** (2 / 3), "Dense_1": (1 + g) ** (1 / 3), "Dense_2": 1.0}


def layer_updates(updates) -> dict[str, np.ndarray]:
  return {layer: np.asarray(u["kernel"]) for layer, u in updates.items()}


# --------------------------------------------------------------------------- item 1

# (strategy, schedule of g over the steps): each goes out of the strategy's range
# (additive 0 <= g < 1, multiplicative g > 0, depth g >= 0) after two steps.
SCHEDULES = {
    "additive": [0.5, 0.9, 1.0, 2.0],  # g >= 1: zero, then flipped steps
    "multiplicative": [1.0, 0.5, 0.0, -1.0],  # g <= 0: zero or flipped steps
    "depth": [1.0, 0.0, -0.5, -1.0],  # g < 0: shrunk, then zero steps
}


def in_range(strategy: str, g: float) -> bool:
  return {"additive": 0 <= g < 1, "multiplicative": g > 0, "depth": g >= 0}[strategy]


def _injected(strategy, values, alias):
  def schedule(count):
    return jnp.asarray(values, jnp.float32)[jnp.minimum(count, len(values) - 1)]

  if alias == "caadam":
    return optax.inject_hyperparams(caadam_jax.caadam)(
        learning_rate=1.0, strategy=strategy, scaling_factor=schedule
    )
  return optax.inject_hyperparams(caadam_jax.published.keras_caadam)(
      learning_rate=1.0,
      strategy=strategy,
      scaling_factor=schedule,
      order=[
          ("Dense_0", "kernel"),
          ("Dense_0", "bias"),
          ("Dense_1", "kernel"),
          ("Dense_2", "kernel"),
      ],
  )


# Eager steps in the slow tier (op by op, seconds each); jitted ones in the fast.
@pytest.mark.parametrize(
    "jit", [pytest.param(False, marks=pytest.mark.slow), True], ids=["eager", "jit"]
)
@pytest.mark.parametrize("strategy", sorted(SCHEDULES))
def test_traced_scaling_factor_out_of_range_gives_non_finite_steps(strategy, jit):
  """Input: inject_hyperparams(caadam)(scaling_factor=schedule leaving the range).

  Expected: in-range steps are Adam times the hand factors; out-of-range steps are
  NaN on every layer whose factor depends on g (never a flipped or zero step), and
  an apply_if_finite chained after the optimizer turns them into zero updates.
  """
  values = SCHEDULES[strategy]
  tx = _injected(strategy, values, "caadam")
  adam = optax.inject_hyperparams(optax.adam)(1.0)  # the same float32 hyperparameters
  checker = optax.apply_if_finite(optax.identity(), max_consecutive_errors=99)

  def step(states):
    state, adam_state, checker_state = states
    updates, state = tx.update(GRADS, state, PARAMS)
    reference, adam_state = adam.update(GRADS, adam_state, PARAMS)
    safe, checker_state = checker.update(updates, checker_state)  # chained after the optimizer
    return (updates, reference, safe), (state, adam_state, checker_state)

  step = jax.jit(step) if jit else step
  states = (tx.init(PARAMS), adam.init(PARAMS), checker.init(PARAMS))
  for g in values:
    outputs, states = step(states)
    got, reference, safe = (layer_updates(u) for u in outputs)
    for layer, factor in hand_factors(strategy, g).items():
      if in_range(strategy, g):
        np.testing.assert_allclose(got[layer], factor * reference[layer], rtol=1e-6)
        np.testing.assert_array_equal(safe[layer], got[layer])
      elif factor != 1.0:  # a layer whose factor depends on g
        assert np.all(np.isnan(got[layer])), (g, layer, got[layer])
        assert np.all(safe[layer] == 0.0), (g, layer, safe[layer])
  checker_state = states[2]
  assert isinstance(checker_state, optax.ApplyIfFiniteState)
  assert int(checker_state.total_notfinite) == sum(not in_range(strategy, g) for g in values)


@pytest.mark.parametrize("strategy", sorted(SCHEDULES))
def test_keras_caadam_injected_scaling_factor_out_of_range_is_nan_under_jit(strategy):
  """Input: inject_hyperparams(keras_caadam)(scaling_factor=schedule leaving the range).

  Expected: the same rule as caadam: out-of-range steps are NaN, never a flip.
  """
  values = SCHEDULES[strategy]
  tx = _injected(strategy, values, "keras_caadam")
  state = tx.init(PARAMS)
  update = jax.jit(tx.update)
  for g in values:
    updates, state = update(GRADS, state, PARAMS)
    finite = all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
    assert finite == in_range(strategy, g), (g, updates)


@pytest.mark.parametrize("strategy", sorted(SCHEDULES))
def test_traced_scaling_factor_is_kept_exactly_in_range_and_nan_outside(strategy):
  """Input: a traced g inside the range (and at its edges), and outside it.

  Expected: inside, g itself bit for bit (the factors equal the concrete-g ones) and in
  its own dtype; outside, and for NaN, NaN.
  """
  inside = {
      "additive": [0.0, 0.5, 0.999],
      "multiplicative": [1e-6, 0.5, 5.0, 80.0],
      "depth": [0.0, 3.0],
  }
  outside = {"additive": [-0.1, 1.0, 2.0], "multiplicative": [0.0, -1.0], "depth": [-0.5, -2.0]}
  guard = jax.jit(lambda g: _formulas.resolve_strategy(strategy, g)[1])
  for g in inside[strategy]:
    assert guard(jnp.float32(g)).tobytes() == np.float32(g).tobytes()
    assert guard(jnp.asarray(g, jnp.bfloat16)).dtype == jnp.bfloat16
  for g in [*outside[strategy], math.nan]:
    assert np.isnan(guard(jnp.float32(g))), g
  assert np.isnan(guard(jnp.int32(-1)))  # integer g is moved to float to hold the NaN


# --------------------------------------------------------------------------- item 2


def test_with_factor_one_accepts_a_single_path_string():
  """Input: with_factor_one('Dense_1/kernel'). Expected: that leaf gets 1, the others keep theirs."""
  structure = caadam_jax.infer_structure(PARAMS).with_factor_one("Dense_1/kernel")
  factors = structure.factors("additive", 0.5)
  assert factors[("Dense_1", "kernel")] == 1.0
  assert factors[("Dense_2", "kernel")] == pytest.approx(1.5)


@pytest.mark.parametrize(
    "paths, close",
    [
        (["Dense_1/kernal"], "Dense_1/kernel"),  # typo
        (["dense_1"], "Dense_1"),  # wrong case
        ("Dense_9/kernel", "Dense_"),  # a bare string that matches nothing
    ],
)
def test_with_factor_one_rejects_unknown_paths_listing_close_matches(paths, close):
  """Input: a path that is no leaf or prefix of one. Expected: ValueError naming it and close matches."""
  with pytest.raises(
      ValueError, match=rf"with_factor_one: no parameter path .*did you mean '{close}"
  ):
    caadam_jax.infer_structure(PARAMS).with_factor_one(paths)


# --------------------------------------------------------------------------- item 3


def test_infer_structure_stacked_prefix_matching_nothing_raises():
  """Input: stacked={'blocks_typo': 0}. Expected: ValueError naming the prefix and 'blocks'."""
  params = {"blocks": {"kernel": jnp.ones((3, 4, 4))}, "head": {"kernel": jnp.ones((4, 2))}}
  with pytest.raises(
      ValueError, match=r"stacked: no parameter path .*'blocks_typo' \(did you mean 'blocks'"
  ):
    caadam_jax.infer_structure(params, stacked={"blocks_typo": 0})


def test_trace_structure_stacked_prefix_matching_nothing_raises():
  """Input: trace_structure(..., stacked={'blocks_typo': 0}). Expected: the same ValueError."""
  params = {"blocks": {"kernel": jnp.ones((3, 4, 4))}, "head": {"kernel": jnp.ones((4, 2))}}

  def apply_fn(p, x):
    for i in range(3):
      x = x @ p["blocks"]["kernel"][i]
    return x @ p["head"]["kernel"]

  with pytest.raises(
      ValueError, match=r"stacked: no parameter path .*'blocks_typo' \(did you mean 'blocks'"
  ):
    caadam_jax.trace_structure(apply_fn, params, jnp.ones((1, 4)), stacked={"blocks_typo": 0})


# --------------------------------------------------------------------------- item 4


def test_zero_size_kernel_is_not_a_layer():
  """Input: a (0, 4) kernel among Dense layers. Expected: not counted; the others as without it."""
  params = {
      "Dense_0": {"kernel": jnp.ones((0, 4)), "bias": jnp.zeros(4)},
      "Dense_1": {"kernel": jnp.ones((4, 8))},  # 32
      "Dense_2": {"kernel": jnp.ones((8, 2))},  # 16
      "Dense_3": {"kernel": jnp.ones((2, 1))},  # 2
  }
  structure = caadam_jax.infer_structure(params)
  assert structure.leaves[("Dense_0", "kernel")].connections is None
  assert structure.statistics == (2.0, 16.0, 32.0, 3)
  factors = structure.factors("additive")
  assert factors[("Dense_0", "kernel")] == 1.0 and factors[("Dense_0", "bias")] == 1.0
  assert factors[("Dense_1", "kernel")] == pytest.approx(1 - 0.95)  # c_max: n = 1
  assert factors[("Dense_2", "kernel")] == 1.0  # the median
  assert factors[("Dense_3", "kernel")] == pytest.approx(1 + 0.95)  # c_min: n = 1
  assert structure.layers[("Dense_1",)].depth == 0


# --------------------------------------------------------------------------- item 5


@pytest.mark.parametrize(
    "name", ["learning_rate", "hyper_learning_rate", "meta_learning_rate", "eps"]
)
@pytest.mark.parametrize("value", [math.inf, -math.inf], ids=["inf", "-inf"])
def test_adas_rejects_infinite_hyperparameters(name, value):
  """Input: adas(<name>=inf). Expected: ValueError naming the argument and 'finite'."""
  with pytest.raises(ValueError, match=rf"{name}.*finite"):
    caadam_jax.adas(**{name: value})


# --------------------------------------------------------------------------- item 6


@pytest.mark.parametrize(
    "record, error, match",
    [
        ((32, -5), ValueError, r"depth.*non-negative integer.*-5"),
        ((32, 2.7), ValueError, r"depth.*non-negative integer.*2\.7"),
        ((32, True), TypeError, r"depth.*not a bool"),
        ((-32, 0), ValueError, r"connections.*positive.*-32"),
        ((0, 0), ValueError, r"connections.*positive"),
        ((math.inf, 0), ValueError, r"connections.*finite"),
        ((math.nan, 0), ValueError, r"connections.*finite"),
        ((32.5, 0), ValueError, r"connections.*integer"),
        (("32", 0), TypeError, r"connections.*number"),
        ((32,), TypeError, r"\(connections, depth\)"),
    ],
    ids=lambda v: repr(v) if isinstance(v, tuple) else "",
)
def test_from_records_validates_each_record(record, error, match):
  """Input: a bad (connections, depth) record. Expected: an error naming records, the layer, the field."""
  params = {"Dense_0": {"kernel": jnp.ones((4, 8))}, "Dense_1": {"kernel": jnp.ones((8, 2))}}
  with pytest.raises(error, match=rf"records.*Dense_0.*{match}"):
    caadam_jax.Structure.from_records(params, {"Dense_0": record, "Dense_1": (16, 1)})


def test_from_records_accepts_integral_numpy_and_float_values():
  """Input: numpy ints and integral floats. Expected: accepted as ints."""
  params = {"Dense_0": {"kernel": jnp.ones((4, 8))}, "Dense_1": {"kernel": jnp.ones((8, 2))}}
  # The records' type says ints; integral values of other types are accepted on purpose.
  s = caadam_jax.Structure.from_records(
      params,
      {"Dense_0": (np.int64(32), 0.0), "Dense_1": (16.0, 1)},  # pyright: ignore[reportArgumentType]
  )
  layers = {k: (r.connections, r.depth) for k, r in s.layers.items()}
  assert layers == {("Dense_0",): (32, 0), ("Dense_1",): (16, 1)}
  assert type(s.layers[("Dense_0",)].depth) is int
  with pytest.raises(ValueError, match=r"records.*Dense_0.*depth"):  # but never truncated
    caadam_jax.Structure.from_records(
        params,
        {"Dense_0": (np.int64(32), 0.5), "Dense_1": (16, 1)},  # pyright: ignore[reportArgumentType]
    )


# --------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("value", ["no", 1, None, np.float32(1.0)])
def test_keras_caadam_amsgrad_must_be_a_bool(value):
  """Input: keras_caadam(amsgrad='no'). Expected: TypeError naming amsgrad; True/False/np.bool_ work."""
  with pytest.raises(TypeError, match=r"amsgrad must be a bool"):
    caadam_jax.published.keras_caadam(amsgrad=value)
  caadam_jax.published.keras_caadam(
      amsgrad=np.bool_(True)  # pyright: ignore[reportArgumentType]  # np.bool_ on purpose
  ).init(PARAMS)


# --------------------------------------------------------------------------- item 8


def test_trace_structure_on_an_nnx_module_in_train_mode():
  """Input: an NNX module with BatchNorm and Dropout in train mode. Expected: it traces.

  Before, ``TraceContextError: Cannot mutate BatchStat/RngCount from a different trace
  level``. The two Linear layers are counted (4*8 = 32 and 8*2 = 16 connections, in
  forward order); BatchNorm is not; the caller's module is left untouched.
  """
  from flax import nnx

  class Net(nnx.Module):

    def __init__(self, rngs):
      self.linear1 = nnx.Linear(4, 8, rngs=rngs)
      self.bn = nnx.BatchNorm(8, rngs=rngs)
      self.dropout = nnx.Dropout(0.5, rngs=rngs)
      self.linear2 = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
      return self.linear2(self.dropout(self.bn(self.linear1(x))))

  def as_numpy(x):  # RNG keys compare by their key data
    return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)

  model = Net(nnx.Rngs(0))
  before = jax.tree.map(as_numpy, nnx.state(model, nnx.Not(nnx.Param)))
  structure = caadam_jax.trace_structure(model, jnp.ones((3, 4)))
  layers = {k: (r.connections, r.depth) for k, r in structure.layers.items()}
  assert layers == {("linear1",): (32, 0), ("linear2",): (16, 1)}
  assert structure.leaves[("bn", "scale")].connections is None
  after = jax.tree.map(as_numpy, nnx.state(model, nnx.Not(nnx.Param)))
  jax.tree.map(np.testing.assert_array_equal, before, after)


# --------------------------------------------------------------------------- item 9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(learning_rate="0.5"), r"learning_rate must be a real scalar.*str"),
        (dict(hyper_learning_rate="0.5"), r"hyper_learning_rate must be a real scalar.*str"),
        (dict(learning_rate=None), r"learning_rate must be a real scalar.*None"),
        (dict(second_moment_decay=[0.9]), r"second_moment_decay must be a real scalar.*list"),
        (dict(output_axis="0"), r"output_axis must be an int"),
        (dict(output_axis=1.5), r"output_axis must be an int.*1\.5"),
    ],
    ids=lambda v: ",".join(f"{k}={x!r}" for k, x in v.items()) if isinstance(v, dict) else "",
)
def test_adas_wrong_types_raise_type_error_naming_the_argument(kwargs, match):
  """Input: strings, None, lists, a float axis. Expected: TypeError at construction, naming it."""
  with pytest.raises(TypeError, match=match):
    caadam_jax.adas(**kwargs)


# --------------------------------------------------------------------------- item 10


def test_adas_on_python_float_leaves_works_like_on_arrays():
  """Input: params and grads that are Python floats (optax.adam accepts them).

  Expected: the same updates and state as with 0-d float32 array leaves.
  """
  params, grads = {"a": 1.0, "b": -2.0}, {"a": 0.25, "b": -0.5}
  arrays = jax.tree.map(jnp.float32, params)
  optax.adam(1e-3).update(grads, optax.adam(1e-3).init(params))  # the baseline accepts them
  tx = caadam_jax.adas()
  state, array_state = tx.init(params), tx.init(arrays)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    expected, array_state = tx.update(jax.tree.map(jnp.float32, grads), array_state, arrays)
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(expected), strict=True):
      assert np.asarray(got).dtype == np.float32
      np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- item 11


@pytest.mark.parametrize(
    "make",
    [
        lambda s: caadam_jax.caadam(structure=s, strategy="additive"),
        lambda s: caadam_jax.scale_by_depth(structure=s),
        lambda s: caadam_jax.scale_by_connection_minmaxmedian(structure=s),
    ],
    ids=["caadam", "scale_by_depth", "scale_by_connection_minmaxmedian"],
)
@pytest.mark.parametrize("structure", ["foo", PARAMS])
def test_structure_of_the_wrong_type_raises_at_construction(make, structure):
  """Input: structure='foo' (or a params dict). Expected: TypeError naming structure and Structure."""
  with pytest.raises(TypeError, match=r"structure must be a caadam_jax\.Structure or None"):
    make(structure)


# --------------------------------------------------------------------------- item 12


def test_zero_size_stacked_leaf_is_not_counted():
  """Input: infer_structure({'b': {'kernel': (0, 4, 4)}}, stacked={'b': 0}).

  Expected: no ZeroDivisionError; nothing is counted, the factor is 1 and caadam steps like Adam.
  """
  params = {"b": {"kernel": jnp.ones((0, 4, 4))}, "head": {"kernel": jnp.ones((4, 2))}}
  structure = caadam_jax.infer_structure(params, stacked={"b": 0})
  assert structure.leaves[("b", "kernel")].connections is None
  assert list(structure.layers) == [("head",)]
  tx = caadam_jax.caadam(1.0, structure=structure, strategy="additive")
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  expected, _ = optax.adam(1.0).update(grads, optax.adam(1.0).init(params), params)
  updates, expected = helpers.as_dict(updates), helpers.as_dict(expected)
  np.testing.assert_array_equal(updates["head"]["kernel"], expected["head"]["kernel"])
  assert updates["b"]["kernel"].shape == (0, 4, 4)


# --------------------------------------------------------------------------- item 13


@pytest.mark.parametrize("flag", [np.True_, np.bool_(True), np.int32(1)], ids=str)
def test_numpy_scalar_static_arguments_are_static(flag):
  """Input: trace_structure(fn, P, x, np.True_). Expected: static like True, not traced.

  Before, ``TracerBoolConversionError`` from ``if flag``.
  """
  params = {"a": {"kernel": jnp.ones((4, 3))}, "b": {"kernel": jnp.ones((3, 2))}}

  def apply_fn(p, x, flag):
    x = x @ p["a"]["kernel"]
    return x @ p["b"]["kernel"] if flag else x

  structure = caadam_jax.trace_structure(apply_fn, params, jnp.ones((2, 4)), flag)
  layers = {k: (r.connections, r.depth) for k, r in structure.layers.items()}
  assert layers == {("a",): (12, 0), ("b",): (6, 1)}


# --------------------------------------------------------------------------- item 14


@pytest.mark.parametrize(
    "order, match",
    [
        ([0, 1, 2], r"order\[0\].*0.*path"),
        ([["Dense_0", 1.5]], r"order\[0\].*path"),
        (7, r"order must be a sequence"),
    ],
    ids=lambda v: "" if isinstance(v, str) else repr(v),
)
def test_keras_caadam_order_entries_must_be_paths(order, match):
  """Input: keras_caadam(order=[0, 1, 2]). Expected: TypeError naming order and the bad entry."""
  with pytest.raises(TypeError, match=match):
    caadam_jax.published.keras_caadam(order=order)


# --------------------------------------------------------------------------- item 15

# (alias, argument, bad value, error, key words of the message)
BAD_HYPERPARAMETERS = [
    (
        "caadam",
        "learning_rate",
        "1e-3",
        TypeError,
        r"learning_rate must be a real scalar.*schedule",
    ),
    ("caadam", "learning_rate", [1e-3], TypeError, r"learning_rate must be a real scalar"),
    (
        "caadam",
        "learning_rate",
        np.ones(2),
        ValueError,
        r"learning_rate must be a real scalar.*shape \(2,\)",
    ),
    ("caadam", "learning_rate", -1e-3, ValueError, r"learning_rate.*>= 0"),
    ("caadam", "learning_rate", math.nan, ValueError, r"learning_rate.*finite"),
    ("caadam", "learning_rate", True, TypeError, r"learning_rate.*not a bool"),
    ("caadam", "b1", "0.9", TypeError, r"b1 must be a real scalar"),
    ("caadam", "b1", 1.0, ValueError, r"b1.*0 <= b1 < 1"),
    ("caadam", "b1", lambda count: 0.9, TypeError, r"b1.*inject_hyperparams"),
    ("caadam", "b2", -0.1, ValueError, r"b2.*0 <= b2 < 1"),
    ("caadam", "b2", jnp.ones(3), ValueError, r"b2 must be a real scalar.*shape \(3,\)"),
    ("caadam", "eps", 0.0, ValueError, r"eps.*eps > 0"),
    ("caadam", "eps", math.inf, ValueError, r"eps.*finite"),
    ("caadam", "eps_root", -1e-8, ValueError, r"eps_root.*eps_root >= 0"),
    ("caadam", "weight_decay", -1e-4, ValueError, r"weight_decay.*weight_decay >= 0"),
    ("caadam", "weight_decay", "0.1", TypeError, r"weight_decay must be a real scalar"),
    ("caadam", "scaling_factor", "0.5", TypeError, r"scaling_factor must be a real scalar"),
    ("caadam", "scaling_factor", False, TypeError, r"scaling_factor.*not a bool"),
    ("keras_caadam", "learning_rate", "1e-3", TypeError, r"learning_rate must be a real scalar"),
    ("keras_caadam", "learning_rate", -1.0, ValueError, r"learning_rate.*>= 0"),
    ("keras_caadam", "beta_1", 1.5, ValueError, r"beta_1.*0 <= beta_1 < 1"),
    ("keras_caadam", "beta_2", [0.999], TypeError, r"beta_2 must be a real scalar"),
    ("keras_caadam", "epsilon", -1e-7, ValueError, r"epsilon.*epsilon > 0"),
    ("keras_caadam", "epsilon", math.nan, ValueError, r"epsilon.*finite"),
    ("adas", "learning_rate", True, TypeError, r"learning_rate.*not a bool"),
    ("adas", "meta_learning_rate", [5e-4], TypeError, r"meta_learning_rate must be a real scalar"),
    (
        "adas",
        "step_size_average_decay",
        "0.9",
        TypeError,
        r"step_size_average_decay must be a real scalar",
    ),
]


def _alias(name):
  return getattr(caadam_jax.published if name == "keras_caadam" else caadam_jax, name)


@pytest.mark.parametrize(
    "alias, name, value, error, match",
    BAD_HYPERPARAMETERS,
    # A function's repr holds its address: ids must be the same in every process (xdist).
    ids=[
        f"{a}-{n}-{v.__name__ if callable(v) else repr(v)}"[:60]
        for a, n, v, _, _ in BAD_HYPERPARAMETERS
    ],
)
def test_concrete_hyperparameters_are_checked_at_construction(alias, name, value, error, match):
  """Input: a string, list, vector, bool, non-finite or out-of-range hyperparameter.

  Expected: the alias raises at construction, naming the argument and its range or type.
  """
  required = {"strategy": "additive"} if alias == "caadam" else {}
  with pytest.raises(error, match=match):
    _alias(alias)(**required, **{name: value})


@pytest.mark.parametrize("alias", ["caadam", "keras_caadam", "adas"])
def test_valid_edges_schedules_and_traced_values_pass(alias):
  """Input: boundary values, numpy scalars, schedules (learning rate) and traced values.

  Expected: construction works and, under jit with traced hyperparameters, so does a step.
  """
  make = _alias(alias)
  if alias == "caadam":
    make = functools.partial(make, strategy="additive")
  if alias == "adas":
    make(
        learning_rate=np.float32(1e-3),
        hyper_learning_rate=0,
        meta_learning_rate=0,
        second_moment_decay=0.0,
        eps=np.float64(1e-8),
    )
    names = ("learning_rate", "second_moment_decay")
  else:
    lr_name = "learning_rate"
    b1, eps = ("b1", "eps") if alias == "caadam" else ("beta_1", "epsilon")
    make(**{lr_name: 0, b1: 0.0, eps: np.float32(1e-8)})
    make(**{lr_name: optax.linear_schedule(1e-3, 0.0, 10)})
    names = (lr_name, b1)

  @jax.jit
  def step(a, b):
    tx = make(**dict(zip(names, (a, b), strict=True)))
    return tx.update(GRADS, tx.init(PARAMS), PARAMS)[0]

  assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(step(1e-3, 0.5)))
  with pytest.raises(ValueError, match=rf"{names[1]}.*finite"):  # while concrete ones are checked
    make(**{names[1]: math.inf})


# ----------------------------------------------- issue 28: user formulas (strategy hook)

# The rule of every factor (docs/method.md, "Rules for a formula"): a real scalar,
# finite and > 0; a concrete one is checked at init, naming the formula and the layer.


def _ascent(record, stats, g):
  del record, stats, g
  return -1.0


@pytest.mark.parametrize(
    "returned,error,match",
    [
        (-1.0, ValueError, r"returned -1\.0 for layer Dense_0.*> 0.*gradient ascent"),
        (0, ValueError, r"returned 0\.0 for layer Dense_0"),
        (math.nan, ValueError, r"returned nan for layer Dense_0.*finite"),
        (math.inf, ValueError, r"returned inf for layer Dense_0"),
        (jnp.full((3,), 2.0), ValueError, r"shape \(3,\) for layer Dense_0"),
        (np.ones((1, 1)) * 2, ValueError, r"shape \(1, 1\) for layer Dense_0"),
        ([[2.0]], TypeError, r"returned list .* for layer Dense_0"),
        ("2", TypeError, r"returned str '2' for layer Dense_0"),
        (None, TypeError, r"returned NoneType None for layer Dense_0"),
        ({"a": 2.0}, TypeError, r"returned dict .* for layer Dense_0"),
        (2j, TypeError, r"returned complex 2j for layer Dense_0"),
        (jnp.asarray(2.0 + 0j), TypeError, r"dtype complex64 for layer Dense_0"),
        (True, TypeError, r"returned bool True for layer Dense_0"),
    ],
)
def test_issue28_formula_factors_must_be_finite_positive_scalars(returned, error, match):
  """Input: a formula returning a bad factor. Expected: an error naming formula and layer."""

  def bad_formula(record, stats, g):
    del stats, g
    return returned if record.depth == 0 else 1.0

  with pytest.raises(error, match=r"formula .*bad_formula.*" + match):
    caadam_jax.caadam(strategy=bad_formula).init(PARAMS)  # at init, not at the first step
  with pytest.raises(error, match=match):
    caadam_jax.describe(PARAMS, strategy=bad_formula, show=False)
  with pytest.raises(error, match=match):
    caadam_jax.infer_structure(PARAMS).factors(bad_formula)


def test_issue28_formula_scalar_arrays_are_factors():
  """Input: 0-d arrays (NumPy, JAX) and ints. Expected: the factor, step = factor x Adam's."""
  for value in (np.float32(2.0), jnp.asarray(2.0), 2, np.asarray(2.0)):
    tx = caadam_jax.caadam(1.0, strategy=lambda r, s, g, v=value: v)
    updates, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    adam, _ = optax.adam(1.0).update(GRADS, optax.adam(1.0).init(PARAMS), PARAMS)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(adam), strict=True):
      assert a.shape == b.shape
      np.testing.assert_allclose(a, 2.0 * b, rtol=1e-6)


def test_issue28_traced_formula_factor_follows_the_nan_rule():
  """Input: a formula whose factor is g, with g injected (traced) and negative.

  Expected: NaN steps (never gradient ascent), as for a named strategy's injected g; in
  range, the factor times Adam's step.
  """

  def identity_of_g(record, stats, g):
    del record, stats
    return g

  inject = optax.inject_hyperparams(caadam_jax.caadam, static_args=("strategy",))
  for g, expected in ((-2.0, math.nan), (0.0, math.nan), (3.0, 3.0)):
    tx = inject(learning_rate=1.0, strategy=identity_of_g, scaling_factor=g)
    updates, _ = jax.jit(tx.update)(GRADS, tx.init(PARAMS), PARAMS)
    kernel = np.asarray(updates["Dense_1"]["kernel"])
    if math.isnan(expected):
      assert np.all(np.isnan(kernel))
    else:
      np.testing.assert_allclose(kernel, -3.0, rtol=1e-5)  # Adam's first step is ~1
  # A Python g reaching the formula is checked like any concrete factor.
  with pytest.raises(ValueError, match=r"identity_of_g returned -2\.0"):
    caadam_jax.describe(PARAMS, strategy=identity_of_g, scaling_factor=-2.0, show=False)


def _three_argument_formula(record, stats, g):
  del record, stats, g
  return 2.0


def _one_argument_formula(record, stats=None, g=None):
  del record, stats, g
  return 2.0


@pytest.mark.parametrize("formula", [_three_argument_formula, _one_argument_formula])
@pytest.mark.parametrize(
    "transform,argument",
    [
        (caadam_jax.caadam, "strategy"),
        (caadam_jax.scale_by_strategy, "strategy"),
        (caadam_jax.scale_by_structure, "formula"),
    ],
)
def test_issue28_formula_in_inject_hyperparams_needs_static_args(transform, argument, formula):
  """Input: inject_hyperparams(caadam)(strategy=formula) without static_args.

  Expected: optax calls the formula as a schedule (with the step count) at init; that
  call raises a TypeError naming the argument, the formula and static_args=(argument,),
  whatever the formula's signature (Python's own "missing 2 required positional
  arguments" used to come out of optax for a (record, stats, g) formula).
  """
  tx = optax.inject_hyperparams(transform)(**{argument: formula})
  name = formula.__name__
  with pytest.raises(
      TypeError,
      match=rf"{argument}={name} is a formula.*static_args=\('{argument}',\)\)\({argument}={name}",
  ):
    tx.init(PARAMS)


# ------------------------------------------------- issue 28: structure helper arguments


@pytest.mark.parametrize(
    "stacked,error,match",
    [
        (
            {"blocks": True},
            TypeError,
            r"stacked\['blocks'\] must be the stack axis as an int.*bool",
        ),
        ({"blocks": 1.5}, TypeError, r"stacked\['blocks'\].*float 1\.5"),
        ({"blocks": 1.0}, TypeError, r"stacked\['blocks'\].*float 1\.0"),
        ({"blocks": "0"}, TypeError, r"stacked\['blocks'\].*str '0'"),
        ("blocks", TypeError, r"stacked must be a mapping.*str 'blocks'"),
        ({None: 0}, TypeError, r"key None is not a parameter path"),
    ],
)
def test_issue28_stacked_values_are_checked(stacked, error, match):
  tree = {"blocks": {"kernel": jnp.ones((3, 4, 4)), "bias": jnp.ones((3, 4))}}
  with pytest.raises(error, match=match):
    caadam_jax.infer_structure(tree, stacked=stacked)
  with pytest.raises(error, match=match):
    caadam_jax.trace_structure(lambda p, x: x, tree, jnp.ones(4), stacked=stacked)


def test_issue28_stacked_int_axis_still_works():
  tree = {"blocks": {"kernel": jnp.ones((3, 4, 4)), "bias": jnp.ones((3, 4))}}
  for axis in (0, np.int64(0)):
    structure = caadam_jax.infer_structure(
        tree, stacked={"blocks": axis}  # pyright: ignore[reportArgumentType]  # np.int64 on purpose
    )
    assert [r.connections for r in structure.layers.values()] == [16, 16, 16]


@pytest.mark.parametrize(
    "paths,error,match",
    [
        ("", ValueError, r"empty path '' is the root"),
        (["Dense_0/bias", ""], ValueError, r"empty path '' is the root"),
        (None, TypeError, r"with_factor_one takes a leaf path.*NoneType"),
        (123, TypeError, r"with_factor_one takes a leaf path.*int 123"),
        ([None], TypeError, r"NoneType None is not a parameter path"),
        ([123], TypeError, r"int 123 is not a parameter path"),
    ],
)
def test_issue28_with_factor_one_arguments(paths, error, match):
  structure = caadam_jax.infer_structure(PARAMS)
  with pytest.raises(error, match=match):
    structure.with_factor_one(paths)


def test_issue28_flag_arguments_are_checked():
  # Arguments of the wrong type, on purpose: the checks at run time are under test.
  with pytest.raises(TypeError, match=r"uses_depth must be a bool.*str 'no'"):
    caadam_jax.scale_by_structure(
        lambda r, s, g: 1.0, uses_depth="no"  # pyright: ignore[reportArgumentType]
    )
  with pytest.raises(TypeError, match=r"show must be a bool.*str 'yes'"):
    caadam_jax.describe(PARAMS, show="yes")  # pyright: ignore[reportArgumentType]
  with pytest.raises(TypeError, match=r"as_string must be a bool"):
    caadam_jax.describe(PARAMS, as_string=1)  # pyright: ignore[reportCallIssue, reportArgumentType]
  for width in (-5, 0, 2.5):
    with pytest.raises(ValueError, match=r"width must be a positive number of columns"):
      caadam_jax.describe(PARAMS, width=width, show=False)  # pyright: ignore[reportArgumentType]
  assert caadam_jax.describe(PARAMS, width=40, show=False)


def test_issue28_keras_factors_never_merge_paths_with_a_slash_in_a_key():
  """Input: {'a/b': x, 'a': {'b': y}}: two leaves whose path strings are both 'a/b'."""
  tree = {"a/b": jnp.ones((2, 3)), "a": {"b": jnp.ones((3, 4))}, "c": {"kernel": jnp.ones((4, 2))}}
  with pytest.raises(ValueError, match=r"\('a/b',\) and \('a', 'b'\) have the same path string"):
    caadam_jax.published.keras_caadam_factors(tree)
  # describe keys by key tuples: three rows for three leaves.
  assert len(caadam_jax.describe(tree, published=True, show=False)) == 3


# -------------------------------------------------- issue 28: the default path's refusals


def _eqx_zoo():
  pytest.importorskip("equinox")
  from benchmarks import model_zoo as zoo

  return zoo.equinox_zoo()


def test_issue28_undeclared_stack_refusal_names_the_stack_prefix():
  """Input: an nnx.vmap stack {'layers': {'bn', 'linear'}}. Expected: stacked={'layers': 0}.

  Following the advice gives the traced structure (every slice its own layer).
  """
  nnx = pytest.importorskip("flax.nnx")
  from benchmarks import model_zoo as zoo

  model = nnx.eval_shape(lambda: zoo.ScanMLP(4, n_layers=3, rngs=nnx.Rngs(0)))
  params = nnx.state(model, nnx.Param)
  with pytest.raises(ValueError, match=r"everything under 'layers'.*stacked=\{'layers': 0\}"):
    caadam_jax.caadam(strategy="additive").init(params)
  advised = caadam_jax.infer_structure(params, stacked={"layers": 0})
  traced = caadam_jax.trace_structure(model, jnp.ones((2, 4)))
  assert advised.layers == traced.layers
  assert [r.connections for r in advised.layers.values()] == [16, 16, 16]


@pytest.mark.slow  # a whole model: the slow tier
def test_issue28_equinox_cnn_one_liner_equals_the_traced_factors():
  """Input: Equinox's MNIST CNN (conv bias (3, 1, 1)). Expected: no stack refusal.

  The factors of structure=None equal trace_structure's for every strategy.
  """
  cnn_class, _, eqx = _eqx_zoo()
  cnn = cnn_class(jax.random.key(0))
  params = eqx.filter(cnn, eqx.is_inexact_array)
  assert len(jax.tree.leaves(params)) == 6
  traced = caadam_jax.trace_structure(cnn, jnp.ones((1, 8, 8)))
  grads = jax.tree.map(lambda p: jnp.ones(p.shape, p.dtype), params)
  for strategy in caadam_jax.STRATEGY_NAMES:
    one_liner = caadam_jax.caadam(1.0, strategy=strategy)
    traced_tx = caadam_jax.caadam(1.0, strategy=strategy, structure=traced)
    a, _ = one_liner.update(grads, one_liner.init(params), params)
    b, _ = traced_tx.update(grads, traced_tx.init(params), params)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_array_equal(x, y)
  # Connections 48, 768, 160 (conv (3, 1, 4, 4), linears (16, 48), (10, 16)): additive
  # g = 0.95 gives the median layer 1, the largest 0.05, the smallest 1.95.
  factors = caadam_jax.infer_structure(params).factors("additive")
  assert factors[("layers", 0, "bias")] == factors[("layers", 0, "weight")] == pytest.approx(1.95)


def test_issue28_class_tokens_and_position_embeddings_get_factor_one():
  """Input: vit_jax-style root `cls` (1, 1, d) and `pos_embedding` (1, n, d).

  Expected: factor 1, outside the statistics, as the trace gives them (before, `cls`
  was a root layer of 8 connections: additive 1.95, multiplicative 5.0).
  """
  from benchmarks import model_zoo as zoo

  variables = jax.eval_shape(zoo.ViT().init, jax.random.key(0), zoo.IMAGES)
  params = variables["params"]
  inferred = caadam_jax.infer_structure(params)
  traced = caadam_jax.trace_structure(zoo.ViT().apply, variables, zoo.IMAGES)
  for path in [("cls",), ("Transformer_posembed_input", "pos_embedding")]:
    assert inferred.leaves[path].connections is None
  for strategy in ("additive", "multiplicative"):
    assert inferred.factors(strategy) == traced.factors(strategy)
    assert inferred.factors(strategy)[("cls",)] == 1.0
  assert inferred.statistics is not None and traced.statistics is not None
  assert inferred.statistics[:3] == traced.statistics[:3]  # c_min, c_med, c_max


@pytest.mark.slow  # a whole model: the slow tier
def test_issue28_equinox_vit_tokens_are_not_one_root_layer():
  _, vit_class, eqx = _eqx_zoo()
  vit = vit_class(key=jax.random.key(0))
  params = eqx.filter(vit, eqx.is_inexact_array)
  inferred = caadam_jax.infer_structure(params)
  traced = caadam_jax.trace_structure(vit, jnp.ones((1, 8, 8)))
  assert () not in inferred.layers  # cls_token + positional_embedding: no root layer of c_max
  for strategy in ("additive", "multiplicative"):
    assert inferred.factors(strategy)[("cls_token",)] == 1.0
    assert inferred.factors(strategy)[("positional_embedding",)] == 1.0
  assert inferred.statistics is not None and traced.statistics is not None
  assert inferred.statistics.c_max == traced.statistics.c_max == 128


def test_issue28_depth_refuses_linen_construction_order_that_is_not_call_order():
  """Input: nn.Dense(1)(nn.relu(nn.Dense(8)(x))): the output layer is named Dense_0.

  Expected: the depth default refuses (the shapes contradict the numbering), and so does
  describe(strategy='depth'); the connection strategies do not read depths.
  """
  nn = pytest.importorskip("flax.linen")

  class Nested(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))

  params = Nested().init(jax.random.key(0), jnp.ones((1, 3)))["params"]
  assert params["Dense_0"]["kernel"].shape == (8, 1)  # the OUTPUT layer
  match = r"constructed.*Dense_1 takes 3 inputs but Dense_0 gives 1.*trace_structure"
  with pytest.raises(ValueError, match=match):
    caadam_jax.caadam(strategy="depth").init(params)
  with pytest.raises(ValueError, match=match):
    caadam_jax.describe(params, strategy="depth", show=False)
  caadam_jax.caadam(strategy="additive").init(params)
  # Layers of equal shapes could be swapped: the order is a guess, refused too.
  square = {f"Dense_{i}": {"kernel": jnp.ones((8, 8))} for i in range(3)}
  with pytest.raises(ValueError, match=r"fit more than one order"):
    caadam_jax.caadam(strategy="depth").init(square)
  with pytest.raises(ValueError, match=r"fit more than one order"):
    caadam_jax.describe(square, strategy="depth", show=False)
  # Accepting the path rules explicitly works.
  accepted = caadam_jax.caadam(strategy="depth", structure=caadam_jax.infer_structure(square))
  accepted.init(square)
  # Shapes that chain in one order only are trusted (PARAMS: 2 -> 3 -> 4 -> 1).
  caadam_jax.caadam(strategy="depth").init(PARAMS)


def test_issue28_describe_refuses_what_caadam_refuses():
  tree = {"encoder": {"kernel": jnp.ones((4, 3))}, "decoder": {"kernel": jnp.ones((3, 2))}}
  with pytest.raises(ValueError, match="named, not numbered"):
    caadam_jax.caadam(strategy="depth").init(tree)
  with pytest.raises(ValueError, match="named, not numbered"):
    caadam_jax.describe(tree, strategy="depth", show=False)
  # With a structure, describe reports whatever it is given.
  assert caadam_jax.describe(caadam_jax.infer_structure(tree), strategy="depth", show=False)


# A 5-layer MLP, one layer frozen (the issue's case): connections 8*16, 16*16, 16*16,
# 16*16, 16*2.
MLP5 = {
    f"Dense_{i}": {"kernel": jnp.ones(shape), "bias": jnp.zeros(shape[1])}
    for i, shape in enumerate([(8, 16), (16, 16), (16, 16), (16, 16), (16, 2)])
}
FROZEN = {k: k != "Dense_2" for k in MLP5}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda tx: optax.masked(tx, FROZEN),
        lambda tx: optax.multi_transform({True: tx, False: optax.set_to_zero()}, FROZEN),
        lambda tx: optax.partition({True: tx, False: optax.set_to_zero()}, FROZEN),
    ],
    ids=["masked", "multi_transform", "partition"],
)
def test_issue28_optax_groups_refuse_the_default_path_and_take_the_full_structure(wrap):
  """Input: caadam(structure=None) inside masked / multi_transform / partition.

  Expected: init refuses (the group alone would set the statistics) and names the fix;
  with structure=infer_structure(full_params) the factors are the full network's.
  """
  with pytest.raises(ValueError, match=r"masked-out leaves.*infer_structure\(full_params\)"):
    wrap(caadam_jax.caadam(1.0, strategy="multiplicative")).init(MLP5)
  full = caadam_jax.infer_structure(MLP5)
  tx = wrap(caadam_jax.caadam(1.0, strategy="multiplicative", structure=full))
  grads = jax.tree.map(jnp.ones_like, MLP5)
  updates, _ = tx.update(grads, tx.init(MLP5), MLP5)
  # Full network: c = 128, 256, 256, 256, 32 -> c_min 32, c_med 256, c_max 256;
  # multiplicative g = 5: Dense_0 n = (256-128)/(256-32) = 4/7, Dense_4 n = 1, others 1.
  expected = {"Dense_0": 5 ** (4 / 7), "Dense_1": 1.0, "Dense_3": 1.0, "Dense_4": 5.0}
  for layer, factor in expected.items():
    np.testing.assert_allclose(updates[layer]["kernel"], -factor, rtol=1e-5)


def test_issue28_refusals_name_the_equinox_form_for_equinox_trees():
  pytest.importorskip("equinox")
  import equinox as eqx

  class Named(eqx.Module):
    encoder: eqx.nn.Linear
    decoder: eqx.nn.Linear

    def __init__(self, key):
      k1, k2 = jax.random.split(key)
      self.encoder = eqx.nn.Linear(4, 3, key=k1)
      self.decoder = eqx.nn.Linear(3, 2, key=k2)

  params = eqx.filter(Named(jax.random.key(0)), eqx.is_inexact_array)
  with pytest.raises(ValueError, match=r"trace_structure\(eqx_model, x\) \(the Equinox module"):
    caadam_jax.caadam(strategy="depth").init(params)


# ------------------------------------------------------- issue 28: examples/multihost.py


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--batch-size", "0"], r"--batch-size: must be a positive integer, got '0'"),
        (["--steps", "-3"], r"--steps: must be a positive integer, got '-3'"),
        (["--hidden", "0"], r"--hidden: must be comma-separated positive integers"),
        (["--hidden", "64,x"], r"--hidden: must be comma-separated positive integers"),
        (["--local-devices", "0"], r"--local-devices: must be a positive integer"),
        (["--coordinator", "localhost"], r"--coordinator: must be HOST:PORT"),
        (["--coordinator", "h:99999"], r"--coordinator: must be HOST:PORT"),
        (["--coordinator", ":1234"], r"--coordinator: must be HOST:PORT"),
        (["--init-timeout", "0"], r"--init-timeout: must be a positive integer"),
        (["--heartbeat-timeout", "0"], r"--heartbeat-timeout: must be a positive integer"),
        (["--learning-rate", "nan"], r"--learning-rate: must be a finite number > 0"),
        (["--num-processes", "0"], r"--num-processes: must be a positive integer"),
        (
            ["--num-processes", "2", "--process-id", "2"],
            r"--process-id 2 must be < --num-processes 2",
        ),
        (["--launch", "0"], r"--launch: must be a positive integer"),
    ],
)
def test_issue28_multihost_rejects_bad_arguments_before_starting(argv, match, capsys):
  """Input: a bad argument. Expected: exit 2 with a message naming it, before JAX starts."""
  from examples import multihost

  with pytest.raises(SystemExit) as exit_info:
    multihost.main(argv)
  assert exit_info.value.code == 2
  assert re.search(match, capsys.readouterr().err)


def _run_workers(argvs, timeout_s=150):
  import os
  import subprocess
  import sys
  import time

  env = dict(os.environ, JAX_PLATFORMS="cpu")
  script = str(pathlib.Path(__file__).parent.parent / "examples" / "multihost.py")
  t0 = time.monotonic()
  procs = [
      subprocess.Popen(
          [sys.executable, script, "--steps", "2", "--local-devices", "1", *argv],
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
          env=env,
      )
      for argv in argvs
  ]
  results = []
  for p in procs:
    try:
      out, _ = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      p.kill()
      out, _ = p.communicate()
    results.append((p.returncode, out))
  return results, time.monotonic() - t0


@pytest.mark.slow
def test_issue28_multihost_workers_disagreeing_on_num_processes_fail_in_bounded_time():
  """Input: process 0 says --num-processes 2, process 1 says 3. Expected: both non-zero."""
  from examples import multihost

  group = ["--coordinator", f"127.0.0.1:{multihost.free_port()}", "--init-timeout", "20"]
  group += ["--heartbeat-timeout", "10"]
  results, wall = _run_workers(
      [group + ["--num-processes", n, "--process-id", i] for n, i in (("2", "0"), ("3", "1"))]
  )
  assert all(code not in (0, None) for code, _ in results), [c for c, _ in results]
  assert "start every worker with the same --num-processes" in results[1][1]
  assert wall < 150


@pytest.mark.slow
def test_issue28_multihost_absent_peer_fails_in_bounded_time():
  """Input: process 1 of 2 whose coordinator never comes. Expected: non-zero, bounded."""
  from examples import multihost

  argv = ["--coordinator", f"127.0.0.1:{multihost.free_port()}", "--num-processes", "2"]
  argv += ["--process-id", "1", "--init-timeout", "5", "--heartbeat-timeout", "5"]
  [(code, _)], wall = _run_workers([argv], timeout_s=120)
  assert code not in (0, None)
  assert wall < 120


# ------------------------------------------------------------ issue 28: benchmark scripts


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--seeds", "-1"], r"--seeds: must be a positive integer, got '-1'"),
        (["--seeds", "0"], r"--seeds: must be a positive integer"),
        (["--lr", "nan"], r"--lr: must be a finite number > 0, got 'nan'"),
        (["--lr=-1e-3"], r"--lr: must be a finite number > 0"),
        (["--max-epochs", "0"], r"--max-epochs: must be a positive integer"),
    ],
)
def test_issue28_reproduce_rejects_bad_numbers_while_parsing(argv, match, capsys):
  from benchmarks import reproduce

  with pytest.raises(SystemExit) as exit_info:
    reproduce.parse_args(["--task", "california", *argv])
  assert exit_info.value.code == 2
  assert re.search(match, capsys.readouterr().err)


# ------------------------------------------- every script's numbers: examples/cli_types.py


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(number=st.integers(min_value=-(10**6), max_value=10**6))
def test_integer_cli_types_accept_exactly_their_range(number):
  """Oracle: the definition (>= 1, >= 0), on the integer's own text."""
  from examples import cli_types

  for parse, lowest in ((cli_types.positive_int, 1), (cli_types.non_negative_int, 0)):
    if number >= lowest:
      assert parse(str(number)) == number
    else:
      with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"got '{number}'")):
        parse(str(number))


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(number=st.floats(allow_nan=True, allow_infinity=True))
def test_float_cli_types_accept_exactly_their_range(number):
  """Oracle: the definition (finite, and > 0 or >= 0), on ``repr`` of the float."""
  from examples import cli_types

  for parse, holds in (
      (cli_types.positive_float, math.isfinite(number) and number > 0),
      (cli_types.non_negative_float, math.isfinite(number) and number >= 0),
      (cli_types.finite_float, math.isfinite(number)),
      (cli_types.decay_fraction, math.isfinite(number) and 0 < number <= 1),
  ):
    if holds:
      assert parse(repr(number)) == number
    else:
      with pytest.raises(argparse.ArgumentTypeError, match=r"must be a (finite )?number"):
        parse(repr(number))


@pytest.mark.parametrize("text", ["", "x", "1.5", "1e3", " ", "0x10"])
def test_integer_cli_types_refuse_what_is_not_an_integer(text):
  from examples import cli_types

  for parse in (cli_types.positive_int, cli_types.non_negative_int):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"got {text!r}")):
      parse(text)


def test_positive_int_list():
  from examples import cli_types

  assert cli_types.positive_int_list("64,32") == [64, 32]
  assert cli_types.positive_int_list("7") == [7]
  for text in ("64,0", "64,", "", "64;32", "-1"):
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated positive integers"):
      cli_types.positive_int_list(text)


def test_comma_separated_names_the_whole_list():
  from examples import cli_types

  decays = cli_types.comma_separated(cli_types.decay_fraction, "numbers in (0, 1]")
  assert decays("1,0.8,0.5") == [1.0, 0.8, 0.5]
  for text in ("1,0", "1,1.5", "1,", "1,nan", ""):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"got {text!r}")):
      decays(text)


POSITIVE_INT = "a positive integer"
NON_NEGATIVE_INT = "a non-negative integer"
POSITIVE_FLOAT = "a finite number > 0"


# (module, entry point, arguments, the option refused, what it must be). One row per parser
# at least: every example and benchmark script takes its numbers through cli_types.
SCRIPT_CASES = [
    ("california_housing", "main", ["--batch-size", "0"], "--batch-size", POSITIVE_INT),
    ("california_housing", "main", ["--epochs", "-1"], "--epochs", POSITIVE_INT),
    ("california_housing", "main", ["--seeds", "0"], "--seeds", POSITIVE_INT),
    ("quickstart", "main", ["--learning-rates", "1e-3", "nan"], "--learning-rates", POSITIVE_FLOAT),
    ("quickstart", "main", ["--epochs", "0"], "--epochs", POSITIVE_INT),
    ("optax_chain", "main", ["--seed", "-1"], "--seed", NON_NEGATIVE_INT),
    ("adam_basics", "main", ["--iterations", "0"], "--iterations", POSITIVE_INT),
    ("adam_basics", "main", ["--regression-lr", "inf"], "--regression-lr", POSITIVE_FLOAT),
    ("linen_trainstate", "main", ["--learning-rate", "0"], "--learning-rate", POSITIVE_FLOAT),
    ("nnx_optimizer", "main", ["--subset", "0"], "--subset", POSITIVE_INT),
    ("benchmarks.sweep", "parse_args", ["--max-epochs", "0"], "--max-epochs", POSITIVE_INT),
    ("benchmarks.sweep", "parse_args", ["--widen", "-1"], "--widen", NON_NEGATIVE_INT),
    ("benchmarks.sweep", "parse_args", ["--lr-low", "0"], "--lr-low", POSITIVE_FLOAT),
    (
        "benchmarks.sweep",
        "parse_args",
        ["--plateau-min-delta=-1e-4"],
        "--plateau-min-delta",
        "a finite number >= 0",
    ),
    (
        "benchmarks.sweep",
        "parse_args",
        ["--checkpoint-every", "nan"],
        "--checkpoint-every",
        "a finite number",
    ),
    ("benchmarks.reproduce", "parse_args", ["--eval-chunk", "0"], "--eval-chunk", POSITIVE_INT),
    (
        "benchmarks.reproduce",
        "parse_args",
        ["--shuffle-seed=-1"],
        "--shuffle-seed",
        NON_NEGATIVE_INT,
    ),
    ("benchmarks.step_cost", "main", ["--sample-seconds", "0"], "--sample-seconds", POSITIVE_FLOAT),
    ("benchmarks.compile_constants", "main", ["--steps", "0"], "--steps", POSITIVE_INT),
    ("benchmarks.trace_cost", "main", ["--repeats", "0"], "--repeats", POSITIVE_INT),
    (
        "benchmarks.trace_cost",
        "main",
        ["--layers", "125,x"],
        "--layers",
        "comma-separated positive integers such as 64,32",
    ),
    ("benchmarks.layer_decay_finetune", "main", ["--seeds", "0"], "--seeds", POSITIVE_INT),
    (
        "benchmarks.layer_decay_finetune",
        "main",
        ["--decays", "1,0.8,0"],
        "--decays",
        "comma-separated numbers in (0, 1] such as 1,0.8",
    ),
    (
        "benchmarks.layer_decay_finetune",
        "main",
        ["--lrs", "1e-3,x"],
        "--lrs",
        "comma-separated numbers > 0 such as 1e-4,3e-4",
    ),
    ("layer_decay", "main", ["--decay", "1.5"], "--decay", "a number in (0, 1]"),
    ("benchmarks.layer_decay_cost", "main", ["--rounds", "0"], "--rounds", POSITIVE_INT),
    ("benchmarks.adas_mnist", "parse_args", ["--epochs-adas", "0"], "--epochs-adas", POSITIVE_INT),
    (
        "benchmarks.adas_tuned",
        "parse_args",
        ["--adam-lrs", "1e-3", "-1"],
        "--adam-lrs",
        POSITIVE_FLOAT,
    ),
    ("benchmarks.published_factors", "main", ["--widths", "8", "0"], "--widths", POSITIVE_INT),
]


@pytest.mark.slow  # imports every example and benchmark script
@pytest.mark.external
@pytest.mark.parametrize("module,entry,argv,option,what", SCRIPT_CASES)
def test_scripts_refuse_bad_numbers_while_parsing(module, entry, argv, option, what, capsys):
  """Input: a bad number. Expected: exit 2 naming the option and the rule, before any work.

  It used to be a ZeroDivisionError for ``--batch-size 0``, an IndexError for ``--epochs
  -1`` and an empty table for ``--seeds 0`` (``examples/california_housing.py``).
  """
  import importlib

  with pytest.raises(SystemExit) as exit_info:
    getattr(importlib.import_module(module), entry)(argv)
  assert exit_info.value.code == 2
  bad = argv[-1].split("=")[-1]
  assert f"argument {option}: must be {what}, got {bad!r}" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.external
def test_sweep_refuses_a_learning_rate_range_upside_down():
  from benchmarks import sweep

  with pytest.raises(SystemExit, match=r"--lr-low must be below --lr-high, got 0.01, 0.001"):
    sweep.parse_args(["--lr-low", "1e-2", "--lr-high", "1e-3"])


@pytest.mark.slow
@pytest.mark.external
def test_sweep_keeps_the_values_whose_sign_means_something():
  """``--checkpoint-every -1`` (never), ``0`` (every epoch), ``--plateau-min-delta 0``."""
  from benchmarks import sweep

  assert sweep.parse_args(["--checkpoint-every", "-1", "--quick"]).checkpoint_every == -1.0
  assert sweep.parse_args(["--checkpoint-every", "0", "--quick"]).checkpoint_every == 0.0
  args = sweep.parse_args(["--plateau-min-delta", "0", "--permutations", "0", "--quick"])
  assert args.plateau_min_delta == 0.0


def test_issue28_report_only_and_merge_from_need_results(tmp_path):
  """Input: --report-only on an empty or typo'd --out-dir; --merge-from /nonexistent."""
  from benchmarks import reproduce
  from benchmarks import sweep

  typo = tmp_path / "reslts"
  for main, name in ((reproduce.main, "california.json"), (sweep.main, "sweep_california.json.gz")):
    for out_dir in (tmp_path, typo):
      with pytest.raises(SystemExit, match=rf"--report-only: no results file .*{re.escape(name)}"):
        main(["--task", "california", "--report-only", "--out-dir", str(out_dir)])
  assert not typo.exists()  # nothing created under the typo
  with pytest.raises(SystemExit, match=r"--merge-from: no results file /nonexistent/california"):
    reproduce.main(
        ["--task", "california", "--merge-from", "/nonexistent", "--out-dir", str(tmp_path)]
    )


def test_issue28_unknown_configs_fail(monkeypatch):
  """Input: --configs "[bad". Expected: exit naming it and the known configs (not 0 cells)."""
  from benchmarks import reproduce
  from benchmarks import tasks

  args = reproduce.parse_args(["--task", "california", "--configs", "[bad"])
  known = tasks._task("california", "regression", {"[64,32]": None}, ["adam"])
  monkeypatch.setattr(tasks, "_california_task", lambda args: (known, None))  # no data needed
  with pytest.raises(SystemExit, match=r"--configs: unknown \['\[bad'\]; known: \['\[64,32\]'\]"):
    tasks.build_task(args)


@pytest.mark.parametrize(
    "name,content",
    [
        ("california.json", b'{"format": 1, "cells": {'),
        ("sweep_california.json.gz", b"not gzip at all"),
        # mtime=0: the same bytes, so the same test id, in every process (xdist).
        ("sweep_california.json.gz", gzip.compress(b"[1, 2", mtime=0)),
        ("california.json", b"[1, 2]"),
    ],
)
def test_issue28_corrupt_results_files_are_named(tmp_path, name, content):
  from benchmarks import _shared

  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(SystemExit, match=re.escape(str(path))):
    _shared.load_results(path, {"task": "california"})
  with pytest.raises(SystemExit, match=re.escape(str(path))):
    _shared.save_results(path, {"protocol": {}, "cells": {}})


def test_issue28_keras_order_from_a_stacked_or_traced_scan_structure():
  """Input: keras_caadam(order=<structure of an nnx.vmap/nnx.scan stack>). Was: KeyError.

  Expected: a stack is one Keras variable; depth factors over the 4 variables in order
  bn/scale, bn/bias (uncounted layer, natural slot), linear/kernel, linear/bias:
  (1 + 1) ** ((4 - 1 - d) / 4).
  """
  nnx = pytest.importorskip("flax.nnx")
  from benchmarks import model_zoo as zoo

  model = nnx.eval_shape(lambda: zoo.ScanMLP(4, n_layers=3, rngs=nnx.Rngs(0)))
  params = nnx.state(model, nnx.Param)
  expected = {
      "layers/bn/scale": 2 ** (3 / 4),
      "layers/bn/bias": 2 ** (2 / 4),
      "layers/linear/kernel": 2 ** (1 / 4),
      "layers/linear/bias": 1.0,
  }
  for order in (
      caadam_jax.infer_structure(params, stacked={"layers": 0}),
      caadam_jax.trace_structure(model, jnp.ones((2, 4))),
  ):
    factors = caadam_jax.published.keras_caadam_factors(params, strategy="depth", order=order)
    assert list(factors) == list(expected)
    for name, value in expected.items():
      assert factors[name] == pytest.approx(value)
    real = jax.tree.map(lambda s: jnp.ones(s.shape), params)
    tx = caadam_jax.published.keras_caadam(1e-3, strategy="depth", order=order)
    tx.update(real, tx.init(real), real)
