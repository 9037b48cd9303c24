"""The public strategy hook: a fourth strategy written in user code.

The user formula here is a fan-in based factor, ``sqrt(g / fan_in)`` with ``fan_in``
the first dimension of a layer's (Flax ``(in, out)``) kernel; the expected factors are
computed by hand from the layer sizes in this file, and the expected updates from
``optax.adam``'s own update times those factors.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import caadam_jax

NAMES = caadam_jax.STRATEGY_NAMES  # the one registry of names

# A small MLP: fan-ins 3, 8, 16; Dense_1's bias shares its layer's factor.
PARAMS = {
    "Dense_0": {"kernel": jnp.full((3, 8), 0.5), "bias": jnp.zeros(8)},
    "Dense_1": {"kernel": jnp.full((8, 16), 0.5), "bias": jnp.zeros(16)},
    "Dense_2": {"kernel": jnp.full((16, 2), 0.5)},
}
G = 8.0  # the reference fan-in: a layer with fan-in 8 gets factor 1
# Hand-computed sqrt(8 / fan_in) per layer.
HAND = {"Dense_0": math.sqrt(8 / 3), "Dense_1": 1.0, "Dense_2": math.sqrt(0.5)}


def fan_in_factor(record: caadam_jax.LayerRecord, stats: caadam_jax.Statistics, g):
  """User code: ``sqrt(g / fan_in)``, fan-in read from the layer's first weight shape."""
  del stats
  return (g / record.shapes[0][0]) ** 0.5


def _grads(seed=0):
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 8))
  return jax.tree.map(lambda p: jax.random.normal(next(keys), p.shape), PARAMS)


def _assert_scaled(updates, reference, hand=HAND):
  for layer, leaves in reference.items():
    for name, ref in leaves.items():
      np.testing.assert_allclose(updates[layer][name], hand[layer] * ref, rtol=1e-6, atol=0)


def test_layer_records_carry_weight_shapes():
  layers = caadam_jax.infer_structure(PARAMS).layers
  assert [r.shapes for r in layers.values()] == [((3, 8),), ((8, 16),), ((16, 2),)]
  assert caadam_jax.LayerRecord(24, 0) == (24, 0, ())  # the 2-field form still works
  # A stack: each slice's record has the slice's shape, without the stack axis.
  stacked = {"blocks": {"kernel": jnp.zeros((3, 4, 5)), "bias": jnp.zeros((3, 5))}}
  records = caadam_jax.infer_structure(stacked, stacked={"blocks": 0}).layers
  assert [r.shapes for r in records.values()] == [((4, 5),)] * 3
  # By hand: the default weight rule gives the shapes.
  by_hand = caadam_jax.Structure.from_records(
      PARAMS, {"Dense_0": (1, 0), "Dense_1": None, "Dense_2": (7, 1)}
  )
  assert by_hand.layers == {
      ("Dense_0",): (1, 0, ((3, 8),)),
      ("Dense_2",): (7, 1, ((16, 2),)),
  }


def test_traced_structure_records_carry_kernel_shapes():
  class MLP(nn.Module):

    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(8, name="hidden")(x))
      return nn.Dense(2, name="out")(x)

  x = jnp.ones((1, 3))
  model = MLP()
  variables = model.init(jax.random.PRNGKey(0), x)
  structure = caadam_jax.trace_structure(model.apply, variables, x)
  records = structure.layers
  assert {"/".join(map(str, k)): r.shapes for k, r in records.items()} == {
      "hidden": ((3, 8),),
      "out": ((8, 2),),
  }
  factors = structure.factors(fan_in_factor, G)
  assert factors[("hidden", "kernel")] == pytest.approx(math.sqrt(8 / 3))
  assert factors[("out", "bias")] == pytest.approx(1.0)


def test_fourth_strategy_in_user_code_gives_hand_computed_factors():
  factors = caadam_jax.infer_structure(PARAMS).factors(fan_in_factor, G)
  for path, factor in factors.items():
    assert factor == pytest.approx(HAND[str(path[0])], rel=1e-12)
  rows = caadam_jax.describe(PARAMS, strategy=fan_in_factor, scaling_factor=G, show=False)
  assert isinstance(rows, list)
  assert {r.leaf: r.factor for r in rows} == pytest.approx(
      {f"{layer}/{name}": HAND[layer] for layer, leaves in PARAMS.items() for name in leaves}
  )
  table = caadam_jax.describe(PARAMS, strategy=fan_in_factor, scaling_factor=G, as_string=True)
  assert "strategy=fan_in_factor" in table


def test_caadam_with_a_formula_under_jit_equals_adam_times_hand_factors():
  tx = caadam_jax.caadam(1e-2, strategy=fan_in_factor, scaling_factor=G)
  adam = optax.adam(1e-2)
  state, adam_state = tx.init(PARAMS), adam.init(PARAMS)
  step, adam_step = jax.jit(tx.update), jax.jit(adam.update)
  for seed in range(2):
    grads = _grads(seed)
    updates, state = step(grads, state, PARAMS)
    reference, adam_state = adam_step(grads, adam_state, PARAMS)
    _assert_scaled(updates, reference)


def test_caadam_with_a_formula_under_inject_hyperparams():
  # A formula is a callable: inject_hyperparams would take it for a schedule
  # unless it is declared static.
  tx = optax.inject_hyperparams(caadam_jax.caadam, static_args=("strategy",))(
      learning_rate=1e-2, strategy=fan_in_factor, scaling_factor=2.0
  )
  state = tx.init(PARAMS)
  assert isinstance(state, optax.InjectStatefulHyperparamsState)
  state.hyperparams["scaling_factor"] = jnp.asarray(G)  # injected: a traced g
  grads = _grads()
  updates, state = jax.jit(tx.update)(grads, state, PARAMS)
  adam = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)  # the same float32 b1, b2, eps
  reference, _ = adam.update(grads, adam.init(PARAMS), PARAMS)
  _assert_scaled(updates, reference)


@pytest.mark.parametrize(
    "transform,argument",
    [
        # An eager Adam step: ~3 s here (the jitted injected form is in the fast tier above).
        pytest.param(caadam_jax.caadam, "strategy", marks=pytest.mark.slow),
        (caadam_jax.scale_by_strategy, "strategy"),
        (caadam_jax.scale_by_structure, "formula"),
    ],
)
def test_formula_declared_static_in_inject_hyperparams_equals_the_plain_transform(
    transform, argument
):
  # Without static_args optax would call the formula as a schedule (a TypeError that
  # says to declare it: test_bad_input.py); declared static, the transform gets the
  # formula and its step is the plain transform's. The scalings alone are equal bit for
  # bit (grads times HAND); in caadam, inject_hyperparams also makes b1, b2, eps float32
  # arrays, which moves Adam's step by float32 rounding (as it moves optax.adam's; the
  # injected caadam is the injected Adam times HAND: the test above).
  kwargs = {argument: fan_in_factor, "scaling_factor": G}
  injected = optax.inject_hyperparams(transform, static_args=(argument,))(**kwargs)
  plain = transform(**kwargs)
  grads = _grads()
  updates, _ = injected.update(grads, injected.init(PARAMS), PARAMS)
  expected, _ = plain.update(grads, plain.init(PARAMS), PARAMS)
  if transform is caadam_jax.caadam:
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5), updates, expected)
  else:
    jax.tree.map(np.testing.assert_array_equal, updates, expected)
    _assert_scaled(updates, grads)


@pytest.mark.parametrize("name", NAMES)
def test_scale_by_strategy_is_scale_by_structure_of_the_registry_formula(name):
  entry = caadam_jax.STRATEGIES[name]
  g = entry.default_scaling_factor
  by_name = caadam_jax.scale_by_strategy(name, g)
  by_formula = caadam_jax.scale_by_structure(entry.formula, g)
  grads = _grads()
  expected, _ = by_formula.update(grads, by_formula.init(PARAMS))
  got, _ = by_name.update(grads, by_name.init(PARAMS))
  jax.tree.map(np.testing.assert_array_equal, got, expected)
  # And caadam(strategy=name) is caadam(strategy=formula) with the same g.
  a, b = caadam_jax.caadam(strategy=name), caadam_jax.caadam(
      strategy=entry.formula, scaling_factor=g
  )
  ua, _ = a.update(grads, a.init(PARAMS), PARAMS)
  ub, _ = b.update(grads, b.init(PARAMS), PARAMS)
  jax.tree.map(np.testing.assert_array_equal, ua, ub)


def test_a_formula_counts_as_reading_depths_unless_it_says_otherwise():
  # Named submodules: sorted paths need not be the forward order.
  named = {
      "encoder": {"kernel": jnp.zeros((3, 8))},
      "decoder": {"kernel": jnp.zeros((8, 4))},
      "head": {"kernel": jnp.zeros((4, 2))},
  }
  with pytest.raises(ValueError, match=r"uses_depth=False"):
    caadam_jax.scale_by_structure(fan_in_factor, G).init(named)
  with pytest.raises(ValueError, match=r"forward order"):
    caadam_jax.caadam(strategy=fan_in_factor, scaling_factor=G).init(named)
  caadam_jax.scale_by_structure(fan_in_factor, G, uses_depth=False).init(named)
  caadam_jax.scale_by_strategy("additive").init(named)  # the registry knows it reads no depth


def test_a_formula_needs_no_scaling_factor():
  half = lambda record, stats, g: 0.5 if g is None else float("nan")  # noqa: E731
  tx = caadam_jax.scale_by_structure(half, uses_depth=False)
  updates, _ = tx.update(PARAMS, tx.init(PARAMS))
  jax.tree.map(lambda u, p: np.testing.assert_array_equal(u, 0.5 * p), updates, PARAMS)


@pytest.mark.parametrize(
    "make, message",
    # Arguments of the wrong type, on purpose: the checks at run time are under test.
    [
        (
            lambda: caadam_jax.scale_by_structure(3),  # pyright: ignore[reportArgumentType]
            r"formula must be a callable.*got int",
        ),
        (
            lambda: caadam_jax.scale_by_structure(
                "additive"  # pyright: ignore[reportArgumentType]
            ),
            r"use caadam_jax.scale_by_strategy",
        ),
        (
            lambda: caadam_jax.scale_by_strategy(None),  # pyright: ignore[reportArgumentType]
            r"strategy must be one of the names",
        ),
        (
            lambda: caadam_jax.caadam(strategy=3),  # pyright: ignore[reportArgumentType]
            r"strategy must be one of the names.*got int",
        ),
        (
            lambda: caadam_jax.infer_structure(PARAMS).factors(
                2.0  # pyright: ignore[reportArgumentType]
            ),
            r"or a formula",
        ),
        (
            lambda: caadam_jax.describe(
                PARAMS, strategy=["depth"], show=False  # pyright: ignore[reportArgumentType]
            ),
            r"got list",
        ),
        (
            lambda: caadam_jax.describe(PARAMS, strategy=fan_in_factor, published=True),
            r"published=False",
        ),
    ],
)
def test_a_strategy_that_is_neither_name_nor_callable_is_a_type_error(make, message):
  with pytest.raises(TypeError, match=message):
    make()
