"""Bad and unusual input, item by item: the input and what must happen.

Each test is named for the item of the catalogue in docs/validation.md ("What each
bad-input item became") it covers and states the input and the expected error or
behaviour. Expected numbers come from the formulas of docs/method.md ("The factors")
written out here, or from ``optax.adam``; errors are checked for the argument's name
and the valid range or what to do. Items 8 and 13 (NNX train-mode
tracing, NumPy static arguments of ``trace_structure``) are here in their plain form;
tests/test_models.py covers them on real models (``nnx.scan`` stacks with BatchNorm).
Items 16-18 (packaging) are checked by .ci/run's sdist and minimum legs and
tests/test_packaging.py.
"""

from __future__ import annotations

import math

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


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("strategy", sorted(SCHEDULES))
def test_item01_traced_scaling_factor_out_of_range_gives_non_finite_steps(strategy, jit):
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
  assert int(states[2].total_notfinite) == sum(not in_range(strategy, g) for g in values)


@pytest.mark.parametrize("strategy", sorted(SCHEDULES))
def test_item01_keras_caadam_injected_scaling_factor_out_of_range_is_nan_under_jit(strategy):
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
def test_item01_traced_scaling_factor_is_kept_exactly_in_range_and_nan_outside(strategy):
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


def test_item02_with_factor_one_accepts_a_single_path_string():
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
def test_item02_with_factor_one_rejects_unknown_paths_listing_close_matches(paths, close):
  """Input: a path that is no leaf or prefix of one. Expected: ValueError naming it and close matches."""
  with pytest.raises(
      ValueError, match=rf"with_factor_one: no parameter path .*did you mean '{close}"
  ):
    caadam_jax.infer_structure(PARAMS).with_factor_one(paths)


# --------------------------------------------------------------------------- item 3


def test_item03_infer_structure_stacked_prefix_matching_nothing_raises():
  """Input: stacked={'blocks_typo': 0}. Expected: ValueError naming the prefix and 'blocks'."""
  params = {"blocks": {"kernel": jnp.ones((3, 4, 4))}, "head": {"kernel": jnp.ones((4, 2))}}
  with pytest.raises(
      ValueError, match=r"stacked: no parameter path .*'blocks_typo' \(did you mean 'blocks'"
  ):
    caadam_jax.infer_structure(params, stacked={"blocks_typo": 0})


def test_item03_trace_structure_stacked_prefix_matching_nothing_raises():
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


def test_item04_zero_size_kernel_is_not_a_layer():
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
def test_item05_adas_rejects_infinite_hyperparameters(name, value):
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
def test_item06_from_records_validates_each_record(record, error, match):
  """Input: a bad (connections, depth) record. Expected: an error naming records, the layer, the field."""
  params = {"Dense_0": {"kernel": jnp.ones((4, 8))}, "Dense_1": {"kernel": jnp.ones((8, 2))}}
  with pytest.raises(error, match=rf"records.*Dense_0.*{match}"):
    caadam_jax.Structure.from_records(params, {"Dense_0": record, "Dense_1": (16, 1)})


def test_item06_from_records_accepts_integral_numpy_and_float_values():
  """Input: numpy ints and integral floats. Expected: accepted as ints."""
  params = {"Dense_0": {"kernel": jnp.ones((4, 8))}, "Dense_1": {"kernel": jnp.ones((8, 2))}}
  s = caadam_jax.Structure.from_records(
      params, {"Dense_0": (np.int64(32), 0.0), "Dense_1": (16.0, 1)}
  )
  layers = {k: (r.connections, r.depth) for k, r in s.layers.items()}
  assert layers == {("Dense_0",): (32, 0), ("Dense_1",): (16, 1)}
  assert type(s.layers[("Dense_0",)].depth) is int
  with pytest.raises(ValueError, match=r"records.*Dense_0.*depth"):  # but never truncated
    caadam_jax.Structure.from_records(params, {"Dense_0": (np.int64(32), 0.5), "Dense_1": (16, 1)})


# --------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("value", ["no", 1, None, np.float32(1.0)])
def test_item07_keras_caadam_amsgrad_must_be_a_bool(value):
  """Input: keras_caadam(amsgrad='no'). Expected: TypeError naming amsgrad; True/False/np.bool_ work."""
  with pytest.raises(TypeError, match=r"amsgrad must be a bool"):
    caadam_jax.published.keras_caadam(amsgrad=value)
  caadam_jax.published.keras_caadam(amsgrad=np.bool_(True)).init(PARAMS)


# --------------------------------------------------------------------------- item 8


def test_item08_trace_structure_on_an_nnx_module_in_train_mode():
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
def test_item09_adas_wrong_types_raise_type_error_naming_the_argument(kwargs, match):
  """Input: strings, None, lists, a float axis. Expected: TypeError at construction, naming it."""
  with pytest.raises(TypeError, match=match):
    caadam_jax.adas(**kwargs)


# --------------------------------------------------------------------------- item 10


def test_item10_adas_on_python_float_leaves_works_like_on_arrays():
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
        lambda s: caadam_jax.caadam(structure=s),
        lambda s: caadam_jax.scale_by_depth(structure=s),
        lambda s: caadam_jax.scale_by_connection_minmaxmedian(structure=s),
    ],
    ids=["caadam", "scale_by_depth", "scale_by_connection_minmaxmedian"],
)
@pytest.mark.parametrize("structure", ["foo", PARAMS])
def test_item11_structure_of_the_wrong_type_raises_at_construction(make, structure):
  """Input: structure='foo' (or a params dict). Expected: TypeError naming structure and Structure."""
  with pytest.raises(TypeError, match=r"structure must be a caadam_jax\.Structure or None"):
    make(structure)


# --------------------------------------------------------------------------- item 12


def test_item12_zero_size_stacked_leaf_is_not_counted():
  """Input: infer_structure({'b': {'kernel': (0, 4, 4)}}, stacked={'b': 0}).

  Expected: no ZeroDivisionError; nothing is counted, the factor is 1 and caadam steps like Adam.
  """
  params = {"b": {"kernel": jnp.ones((0, 4, 4))}, "head": {"kernel": jnp.ones((4, 2))}}
  structure = caadam_jax.infer_structure(params, stacked={"b": 0})
  assert structure.leaves[("b", "kernel")].connections is None
  assert list(structure.layers) == [("head",)]
  tx = caadam_jax.caadam(1.0, structure=structure)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  expected, _ = optax.adam(1.0).update(grads, optax.adam(1.0).init(params), params)
  np.testing.assert_array_equal(updates["head"]["kernel"], expected["head"]["kernel"])
  assert updates["b"]["kernel"].shape == (0, 4, 4)


# --------------------------------------------------------------------------- item 13


@pytest.mark.parametrize("flag", [np.True_, np.bool_(True), np.int32(1)], ids=str)
def test_item13_numpy_scalar_static_arguments_are_static(flag):
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
def test_item14_keras_caadam_order_entries_must_be_paths(order, match):
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
    ids=[f"{a}-{n}-{v!r}"[:60] for a, n, v, _, _ in BAD_HYPERPARAMETERS],
)
def test_item15_concrete_hyperparameters_are_checked_at_construction(
    alias, name, value, error, match
):
  """Input: a string, list, vector, bool, non-finite or out-of-range hyperparameter.

  Expected: the alias raises at construction, naming the argument and its range or type.
  """
  with pytest.raises(error, match=match):
    _alias(alias)(**{name: value})


@pytest.mark.parametrize("alias", ["caadam", "keras_caadam", "adas"])
def test_item15_valid_edges_schedules_and_traced_values_pass(alias):
  """Input: boundary values, numpy scalars, schedules (learning rate) and traced values.

  Expected: construction works and, under jit with traced hyperparameters, so does a step.
  """
  make = _alias(alias)
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
