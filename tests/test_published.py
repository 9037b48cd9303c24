"""Published-results mode: step-by-step parity with the Keras package caadam 0.1.1.

The reference runs on Keras 3 with the JAX backend; KERAS_BACKEND must be set
before keras is first imported, hence at the top of this module.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from caadam_test_helpers import as_dict
from caadam_test_helpers import mlp_params

import caadam_jax

# Slow tier (in-process, run by every CI leg): step-by-step parity with the Keras package.
pytestmark = pytest.mark.slow

keras = pytest.importorskip(
    "keras", reason="the parity tests need keras>=3 (pip install -e '.[test]')"
)
caadam_ref = pytest.importorskip(
    "caadam", reason="the parity tests need the reference package caadam==0.1.1"
)
if keras.backend.backend() != "jax":
  pytest.skip(
      "keras was imported with another backend before this module; run with KERAS_BACKEND=jax",
      allow_module_level=True,
  )

STEPS = 25
ATOL = 1e-5
LR = 1e-2

_KERAS_STRATEGIES = {
    "additive": caadam_ref.AdditiveMinMaxMedianConnectionScaling,
    "multiplicative": caadam_ref.MultiplicativeMinMaxMedianConnectionScaling,
    "depth": caadam_ref.DepthConnectionScaling,
}


def keras_optimizer(strategy=None, g=None, **kwargs):
  if strategy is None:
    assert g is None
    return caadam_ref.CaAdam(**kwargs)  # the package's default strategy
  cls = _KERAS_STRATEGIES[strategy]
  return caadam_ref.CaAdam(scaling_strategy=cls() if g is None else cls(scaling_factor=g), **kwargs)


# ----------------------------------------------------------------------------
# The same models in Keras and in Flax linen.


class MLP(nn.Module):
  widths: tuple[int, ...]
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    for i, w in enumerate(self.widths):
      x = nn.Dense(w, use_bias=self.use_bias)(x)
      if i < len(self.widths) - 1:
        x = nn.relu(x)
    return x


class CNN(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3), padding="VALID")(x))
    x = nn.relu(nn.Conv(8, (3, 3), padding="VALID")(x))
    return nn.Dense(3)(x.reshape((x.shape[0], -1)))


def keras_mlp(n_in, widths, use_bias=True):
  layers = [keras.Input((n_in,))]
  for i, w in enumerate(widths):
    act = "relu" if i < len(widths) - 1 else None
    layers.append(keras.layers.Dense(w, activation=act, use_bias=use_bias))
  return keras.Sequential(layers)


def keras_cnn():
  return keras.Sequential(
      [
          keras.Input((6, 6, 2)),
          keras.layers.Conv2D(4, 3, activation="relu"),
          keras.layers.Conv2D(8, 3, activation="relu"),
          keras.layers.Flatten(),
          keras.layers.Dense(3),
      ]
  )


# name -> (keras builder, flax module, flax layer names in Keras layer order, input shape,
#          loss kind). Connection counts are in the comments.
MODELS = {
    # 72, 144, 12: the last kernel is the smallest (c_min).
    "mlp3": (lambda: keras_mlp(6, (12, 12, 1)), MLP((12, 12, 1)), 3, (6,), "mse"),
    # 12, 24, 30, 120: min 12, median 27, max 120; the last kernel is the largest.
    "mlp_spread": (lambda: keras_mlp(3, (4, 6, 5, 24)), MLP((4, 6, 5, 24)), 4, (3,), "mse"),
    # 72, 288, 96: the last kernel sits at the median.
    "cnn": (keras_cnn, CNN(), None, (6, 6, 2), "xent"),
    # 36, 36, 36: c_min == c_max, every connection factor is 1.
    "equal": (lambda: keras_mlp(6, (6, 6, 6)), MLP((6, 6, 6)), 3, (6,), "mse"),
}
FLAX_NAMES = {
    "mlp3": ["Dense_0", "Dense_1", "Dense_2"],
    "mlp_spread": ["Dense_0", "Dense_1", "Dense_2", "Dense_3"],
    "cnn": ["Conv_0", "Conv_1", "Dense_0"],
    "equal": ["Dense_0", "Dense_1", "Dense_2"],
}


def build(model_name, seed=0):
  """Returns (keras model, flax module, flax params copied from Keras, var mapping)."""
  build_keras, module, _, _, _ = MODELS[model_name]
  keras.utils.set_random_seed(seed)
  kmodel = build_keras()
  return (kmodel, module, *copy_weights(kmodel, FLAX_NAMES[model_name]))


def copy_weights(kmodel, flax_names):
  """Flax params with Keras's initial weights; mapping: Keras variable i -> (layer, leaf)."""
  params, mapping = {}, []
  layers = [layer for layer in kmodel.layers if layer.trainable_weights]
  assert len(layers) == len(flax_names)
  for name, layer in zip(flax_names, layers, strict=False):
    params[name] = {}
    for w in layer.trainable_weights:
      params[name][w.name] = jnp.asarray(np.asarray(w.value))
      mapping.append((name, w.name))
  assert [v.name for v in kmodel.trainable_variables] == [leaf for _, leaf in mapping]
  return params, mapping


def batches(model_name, steps=STEPS, batch=16, seed=1):
  _, _, _, in_shape, loss = MODELS[model_name]
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(steps):
    x = rng.normal(size=(batch, *in_shape)).astype(np.float32)
    if loss == "mse":
      n_out = MODELS[model_name][1].widths[-1]
      y = rng.normal(size=(batch, n_out)).astype(np.float32)
    else:
      y = rng.integers(0, 3, size=(batch,)).astype(np.int32)
    out.append((x, y))
  return out


def loss_fn(module, kind):
  def loss(params, x, y):
    pred = module.apply({"params": params}, x)
    if kind == "mse":
      return jnp.mean(jnp.square(pred - y))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(pred, y))

  return loss


def max_diff(params, kmodel, mapping):
  return max(
      float(np.max(np.abs(np.asarray(v.value) - np.asarray(params[layer][leaf]))))
      for v, (layer, leaf) in zip(kmodel.trainable_variables, mapping, strict=False)
  )


def step_both(keras_opt, kmodel, mapping, update, state, params, grads):
  """One step of the Keras optimizer and of an optax update on the same gradients."""
  keras_opt.apply_gradients(
      zip([grads[layer][leaf] for layer, leaf in mapping], kmodel.trainable_variables, strict=False)
  )
  updates, state = update(grads, state, params)
  return optax.apply_updates(params, updates), state


def run_shared_gradients(model_name, keras_opt, tx, *, steps=STEPS, check=True):
  """Same JAX gradients fed to Keras's apply_gradients and to the optax transform.

  Returns the largest parameter difference seen over all steps.
  """
  kmodel, module, params, mapping = build(model_name)
  grad_fn = jax.jit(jax.grad(loss_fn(module, MODELS[model_name][4])))
  update = jax.jit(tx.update)
  state = tx.init(params)
  worst = 0.0
  for step, (x, y) in enumerate(batches(model_name, steps)):
    grads = grad_fn(params, x, y)
    params, state = step_both(keras_opt, kmodel, mapping, update, state, params, grads)
    diff = max_diff(params, kmodel, mapping)
    worst = max(worst, diff)
    if check:
      assert diff <= ATOL, f"step {step + 1}: max |keras - optax| = {diff:.3g}"
  return worst


CONFIGS = [
    (None, None),  # caadam.CaAdam(): additive with 0.9
    ("additive", None),
    ("additive", 0.5),
    ("multiplicative", None),
    ("multiplicative", 2.0),
    ("depth", None),
    ("depth", 3.0),
]


# Every configuration on the two MLPs; a spread of them on the CNN and the
# equal-size model (kept small so the module runs in well under 3 minutes).
PARITY_CASES = (
    [(m, s, g) for m in ("mlp3", "mlp_spread") for s, g in CONFIGS]
    + [("cnn", s, g) for s, g in CONFIGS[0:1] + CONFIGS[2:4] + CONFIGS[6:7]]
    + [("equal", s, g) for s, g in CONFIGS[0:1] + CONFIGS[4:6]]
)


@pytest.mark.parametrize(
    "model_name,strategy,g", PARITY_CASES, ids=[f"{m}-{s}-{g}" for m, s, g in PARITY_CASES]
)
def test_parity_with_reference_shared_gradients(model_name, strategy, g):
  run_shared_gradients(
      model_name,
      keras_optimizer(strategy, g, learning_rate=LR),
      caadam_jax.published.keras_caadam(LR, strategy=strategy, scaling_factor=g),
  )


@pytest.mark.parametrize("strategy", ["additive", "multiplicative"])
def test_parity_amsgrad(strategy):
  run_shared_gradients(
      "mlp_spread",
      keras_optimizer(strategy, None, learning_rate=LR, amsgrad=True),
      caadam_jax.published.keras_caadam(LR, strategy=strategy, amsgrad=True),
  )


def test_parity_learning_rate_schedule_and_betas():
  keras_lr = keras.optimizers.schedules.ExponentialDecay(LR, decay_steps=5, decay_rate=0.5)
  optax_lr = optax.exponential_decay(LR, transition_steps=5, decay_rate=0.5)
  run_shared_gradients(
      "mlp3",
      keras_optimizer("depth", None, learning_rate=keras_lr, beta_1=0.8, beta_2=0.99, epsilon=1e-5),
      caadam_jax.published.keras_caadam(
          optax_lr, strategy="depth", beta_1=0.8, beta_2=0.99, epsilon=1e-5
      ),
  )


def test_parity_detects_other_optimizers():
  """The tolerance has power: the method as described and Adam do not pass."""
  for tx in (caadam_jax.caadam(LR, eps=1e-7, strategy="additive"), optax.adam(LR, eps=1e-7)):
    worst = run_shared_gradients(
        "mlp_spread", keras_optimizer("additive", None, learning_rate=LR), tx, check=False
    )
    assert worst > 100 * ATOL


@pytest.mark.parametrize("strategy,g", [(None, None), ("multiplicative", 2.0), ("depth", None)])
def test_parity_keras_computes_its_own_gradients(strategy, g):
  """Keras trains through its own model (train_on_batch), Flax through optax."""
  kmodel, module, params, mapping = build("mlp_spread")
  kmodel.compile(optimizer=keras_optimizer(strategy, g, learning_rate=LR), loss="mse")
  tx = caadam_jax.published.keras_caadam(LR, strategy=strategy, scaling_factor=g)
  loss = loss_fn(module, "mse")

  @jax.jit
  def step(params, state, x, y):
    grads = jax.grad(loss)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  x0 = batches("mlp_spread", 1)[0][0]
  np.testing.assert_allclose(
      np.asarray(kmodel(x0)), module.apply({"params": params}, x0), atol=1e-6
  )
  for i, (x, y) in enumerate(batches("mlp_spread")):
    kmodel.train_on_batch(x, y)
    params, state = step(params, state, x, y)
    diff = max_diff(params, kmodel, mapping)
    assert diff <= ATOL, f"step {i + 1}: max |keras - optax| = {diff:.3g}"


# ----------------------------------------------------------------------------
# Factors: published mode next to the method as described, computed by hand.


@pytest.mark.parametrize("g_add,g_mul,g_depth", [(0.95, 5.0, 1.0), (0.5, 2.0, 3.0)])
def test_factors_published_and_as_described_side_by_side(g_add, g_mul, g_depth):
  # mlp_spread: 3 -> 4 -> 6 -> 5 -> 24; kernels 12, 24, 30, 120.
  params = mlp_params([3, 4, 6, 5, 24])
  c_min, c_med, c_max = 12, (24 + 30) / 2, 120
  layers = ["Dense_0", "Dense_1", "Dense_2", "Dense_3"]
  sizes = [12, 24, 30, 120]
  order = [f"{layer}/{leaf}" for layer in layers for leaf in ("kernel", "bias")]

  # Published (caadam 0.1.1): every kernel is looked up as "kernel" -> the last kernel,
  # 120 = c_max, upper branch n = 1. Biases have c = 0: n = c_med / (c_med - c_min).
  n_bias = c_med / (c_med - c_min)  # 27 / 15 = 1.8
  published = {
      "additive": {p: (1 - g_add if p.endswith("kernel") else 1 + g_add * n_bias) for p in order},
      "multiplicative": {p: (g_mul if p.endswith("kernel") else g_mul**n_bias) for p in order},
      # D = 8 variables, d = index in the variable list.
      "depth": {p: (1 + g_depth) ** ((8 - 1 - d) / 8) for d, p in enumerate(order)},
  }
  # As described: per layer, bias shares its layer's factor, D = 4 layers.
  n = [
      (c_med - c) / (c_med - c_min) if c <= c_med else (c - c_med) / (c_max - c_med) for c in sizes
  ]
  sign = [1 if c <= c_med else -1 for c in sizes]
  per_layer = {
      "additive": [
          1 + s * g_add * k for s, k in zip(sign, n, strict=False)
      ],  # 1+g, 1+0.2g, 1-g/31, 1-g
      "multiplicative": [g_mul**k for k in n],
      "depth": [(1 + g_depth) ** ((4 - 1 - d) / 4) for d in range(4)],
  }
  gs: dict[caadam_jax.StrategyName, float] = {
      "additive": g_add,
      "multiplicative": g_mul,
      "depth": g_depth,
  }
  structure = caadam_jax.infer_structure(params)
  for name, g in gs.items():
    got = caadam_jax.published.keras_caadam_factors(params, strategy=name, scaling_factor=g)
    assert list(got) == order
    np.testing.assert_allclose(
        [got[p] for p in order], [published[name][p] for p in order], rtol=1e-12
    )
    described = structure.factors(name, g)
    for i, layer in enumerate(layers):
      for leaf in ("kernel", "bias"):
        np.testing.assert_allclose(described[(layer, leaf)], per_layer[name][i], rtol=1e-12)
  # The published additive factors are the same for all kernels; the biases' is the largest.
  add = caadam_jax.published.keras_caadam_factors(params, strategy="additive", scaling_factor=g_add)
  assert max(add.values()) == add["Dense_0/bias"] > 1 + g_add


def reference_factors(kmodel, strategy, g):
  """The factor the package computes for each trainable variable, in Keras's order."""
  opt = keras_optimizer(strategy, g)
  opt.build(kmodel.trainable_variables)
  return [
      float(
          opt.scaling_strategy.compute_scaling_factor(
              opt.connection_counts.get(v.name, 0), None, {"depth": i}, opt.model_info
          )
      )
      for i, v in enumerate(kmodel.trainable_variables)
  ]


def test_factors_match_the_reference_package():
  """keras_caadam_factors equals what the package computes on the same Keras model."""
  for model_name in MODELS:
    kmodel, _, params, mapping = build(model_name)
    for strategy, g in CONFIGS:
      expected = reference_factors(kmodel, strategy, g)
      got = caadam_jax.published.keras_caadam_factors(params, strategy=strategy, scaling_factor=g)
      assert list(got) == [f"{layer}/{leaf}" for layer, leaf in mapping]
      # The package computes the multiplicative factor in float32.
      np.testing.assert_allclose(list(got.values()), expected, rtol=1e-6)


def test_default_strategy_is_caadam_default():
  params = mlp_params([3, 4, 6, 5, 24])
  assert caadam_jax.published.keras_caadam_factors(
      params
  ) == caadam_jax.published.keras_caadam_factors(params, strategy="additive", scaling_factor=0.9)
  assert caadam_jax.published.keras_caadam_factors(params, strategy="additive") == (
      caadam_jax.published.keras_caadam_factors(params, strategy="additive", scaling_factor=0.95)
  )
  assert keras_optimizer().scaling_strategy.hyperparameters == {"scaling_factor": 0.9}


# ----------------------------------------------------------------------------
# The reference's division by zero.


@pytest.mark.parametrize(
    "widths,bad",
    [
        # 16, 16, 16, 64: c_min == c_med == 16 < 64. Biases (c = 0) would get +inf.
        ((4, 4, 4, 4, 16), "+inf"),
        # 64, 64, 16, 16, 16: the last kernel is 16 == c_med == c_min: 0/0 for every kernel.
        ((4, 16, 4, 4, 4, 4), "NaN"),
    ],
)
@pytest.mark.parametrize("strategy", ["additive", "multiplicative"])
def test_division_by_zero_raises_where_reference_produces_inf_nan(widths, bad, strategy):
  params = mlp_params(list(widths))
  tx = caadam_jax.published.keras_caadam(strategy=strategy)
  with pytest.raises(ValueError, match=r"c_med == c_min") as info:
    tx.init(params)
  assert bad in str(info.value) and "caadam_jax.caadam" in str(info.value)
  with pytest.raises(ValueError, match=r"c_med == c_min"):
    caadam_jax.published.keras_caadam_factors(params, strategy=strategy)
  with pytest.raises(ValueError, match=r"c_med == c_min"):  # at construction with a Structure
    caadam_jax.published.keras_caadam(strategy=strategy, order=caadam_jax.infer_structure(params))
  # The method as described stays finite, and depth does not divide.
  caadam_jax.caadam(strategy=strategy).init(params)
  caadam_jax.published.keras_caadam(strategy="depth").init(params)

  # The real package: non-finite parameters after one step.
  keras.utils.set_random_seed(0)
  kmodel = keras_mlp(widths[0], widths[1:])
  opt = keras_optimizer(strategy, None)
  grads = [np.full(v.shape, 0.5, np.float32) for v in kmodel.trainable_variables]
  with np.errstate(divide="ignore", invalid="ignore"):
    opt.apply_gradients(zip(grads, kmodel.trainable_variables, strict=False))
  finite = [bool(np.all(np.isfinite(np.asarray(v.value)))) for v in kmodel.trainable_variables]
  assert not all(finite)
  names = [v.name for v in kmodel.trainable_variables]
  broken = {n for n, ok in zip(names, finite, strict=False) if not ok}
  assert broken == ({"bias"} if bad == "+inf" else {"kernel", "bias"})


def test_degenerate_median_without_lower_branch_is_finite_and_matches():
  """c_med == c_min < c_max but no leaf on the lower branch: the reference is fine."""
  widths = (4, 4, 4, 16)  # no biases; kernels 16, 16, 16, 64; the last kernel is c_max
  keras.utils.set_random_seed(0)
  kmodel = keras_mlp(widths[0], widths[1:], use_bias=False)
  module = MLP(widths[1:], use_bias=False)
  params, mapping = copy_weights(kmodel, ["Dense_0", "Dense_1", "Dense_2"])
  # kernel sizes here: 16, 16, 64 -> c_med == c_min; all kernels get n = 1.
  assert caadam_jax.published.keras_caadam_factors(params, strategy="additive") == pytest.approx(
      {"Dense_0/kernel": 0.05, "Dense_1/kernel": 0.05, "Dense_2/kernel": 0.05}
  )
  opt = keras_optimizer("additive", None, learning_rate=LR)
  tx = caadam_jax.published.keras_caadam(LR, strategy="additive")
  state = tx.init(params)
  grad_fn = jax.jit(jax.grad(loss_fn(module, "mse")))
  rng = np.random.default_rng(0)
  for _ in range(5):
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=(8, 16)).astype(np.float32)
    grads = grad_fn(params, x, y)
    params, state = step_both(opt, kmodel, mapping, tx.update, state, params, grads)
    assert max_diff(params, kmodel, mapping) <= ATOL


# ----------------------------------------------------------------------------
# The variable order.


def test_default_order_is_natural_kernel_before_bias():
  params = mlp_params([2] * 12)  # Dense_0 ... Dense_10: Dense_10 after Dense_2
  params["LayerNorm_0"] = {"scale": jnp.ones(2), "bias": jnp.zeros(2)}
  got = list(caadam_jax.published.keras_caadam_factors(params, strategy="depth"))
  assert got[:4] == ["Dense_0/kernel", "Dense_0/bias", "Dense_1/kernel", "Dense_1/bias"]
  assert got.index("Dense_10/kernel") == 20
  assert got[-2:] == ["LayerNorm_0/scale", "LayerNorm_0/bias"]


def test_explicit_order_changes_depth_factors():
  params = mlp_params([3, 4, 5, 2])
  g, D = 1.0, 6
  default = caadam_jax.published.keras_caadam_factors(params, strategy="depth", scaling_factor=g)
  reverse = [f"Dense_{i}/{leaf}" for i in (2, 1, 0) for leaf in ("kernel", "bias")]
  got = caadam_jax.published.keras_caadam_factors(
      params, strategy="depth", scaling_factor=g, order=reverse
  )
  assert list(got) == reverse
  for d, path in enumerate(reverse):
    assert got[path] == pytest.approx((1 + g) ** ((D - 1 - d) / D))
  assert got["Dense_2/kernel"] == pytest.approx(2 ** (5 / 6))
  assert default["Dense_2/kernel"] == pytest.approx(2 ** (1 / 6))
  # Key tuples work as well as strings; the update follows the factors.
  as_tuples = [tuple(p.split("/")) for p in reverse]
  assert caadam_jax.published.keras_caadam_factors(params, strategy="depth", order=as_tuples) == got
  tx = caadam_jax.published.keras_caadam(1.0, strategy="depth", order=reverse)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  updates = as_dict(updates)
  # First Keras-Adam step with g = 1 and m/sqrt(v) ~ 1: the update is -S (up to eps).
  np.testing.assert_allclose(updates["Dense_2"]["kernel"], -got["Dense_2/kernel"], rtol=1e-5)
  np.testing.assert_allclose(updates["Dense_0"]["bias"], -got["Dense_0/bias"], rtol=1e-5)


def test_order_changes_the_kernel_lookup():
  # The last kernel in the order decides every kernel's connection count.
  params = mlp_params([3, 4, 6, 5, 24], use_bias=False)  # 12, 24, 30, 120
  order = ["Dense_3/kernel", "Dense_1/kernel", "Dense_2/kernel", "Dense_0/kernel"]
  got = caadam_jax.published.keras_caadam_factors(
      params, strategy="additive", scaling_factor=0.5, order=order
  )
  assert list(got.values()) == pytest.approx([1 + 0.5 * (27 - 12) / (27 - 12)] * 4)  # 1.5


def test_order_from_structure_uses_its_depths():
  params = mlp_params([3, 4, 5, 2])
  params["LayerNorm_0"] = {"scale": jnp.ones(5), "bias": jnp.zeros(5)}
  inferred = caadam_jax.infer_structure(params)
  leaves = {p: (info.layer, info.shape) for p, info in inferred.leaves.items()}
  counted = [(("Dense_1",), 20), (("Dense_0",), 12), (("Dense_2",), 10)]
  structure = caadam_jax.Structure.from_layers(leaves, counted)
  got = caadam_jax.published.keras_caadam_factors(params, strategy="depth", order=structure)
  # Counted layers take the natural slots of Dense_0..2 in depth order; the
  # uncounted LayerNorm_0 keeps its natural slot (after the Dense layers).
  assert list(got) == [
      "Dense_1/kernel",
      "Dense_1/bias",
      "Dense_0/kernel",
      "Dense_0/bias",
      "Dense_2/kernel",
      "Dense_2/bias",
      "LayerNorm_0/scale",
      "LayerNorm_0/bias",
  ]
  tx = caadam_jax.published.keras_caadam(strategy="depth", order=structure)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  expected = -1e-3 * got["Dense_1/kernel"]
  assert updates["Dense_1"]["kernel"][0, 0] == pytest.approx(expected, rel=1e-4)


def test_order_errors():
  params = mlp_params([3, 4, 2])
  with pytest.raises(ValueError, match="not in order"):
    caadam_jax.published.keras_caadam(order=["Dense_0/kernel", "Dense_0/bias"]).init(params)
  with pytest.raises(ValueError, match="not in the parameters"):
    caadam_jax.published.keras_caadam_factors(
        params, order=["Dense_0/kernel", "Dense_0/bias", "Dense_1/kernel", "Dense_1/bias", "x/y"]
    )
  with pytest.raises(ValueError, match="more than once"):
    caadam_jax.published.keras_caadam(order=["Dense_0/kernel", "Dense_0/kernel"])
  with pytest.raises(TypeError):
    caadam_jax.published.keras_caadam(order="Dense_0/kernel")
  with pytest.raises(ValueError, match="Unknown strategy"):
    caadam_jax.published.keras_caadam(strategy="adam")  # pyright: ignore[reportArgumentType]


def test_named_layers_need_an_explicit_order_to_match_keras():
  """encoder/decoder sort as decoder, encoder: the default order is wrong there."""
  keras.utils.set_random_seed(0)
  kmodel = keras_mlp(3, (8, 2))
  params, mapping = copy_weights(kmodel, ["encoder", "decoder"])
  order = [f"{layer}/{leaf}" for layer, leaf in mapping]

  class Named(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(2, name="decoder")(nn.relu(nn.Dense(8, name="encoder")(x)))

  def run(tx):
    keras.utils.set_random_seed(0)
    kmodel = keras_mlp(3, (8, 2))
    p, _ = copy_weights(kmodel, ["encoder", "decoder"])
    opt = keras_optimizer("depth", None, learning_rate=LR)
    state, grad_fn = tx.init(p), jax.jit(jax.grad(loss_fn(Named(), "mse")))
    rng = np.random.default_rng(0)
    for _ in range(5):
      x = rng.normal(size=(8, 3)).astype(np.float32)
      y = rng.normal(size=(8, 2)).astype(np.float32)
      p, state = step_both(opt, kmodel, mapping, tx.update, state, p, grad_fn(p, x, y))
    return max_diff(p, kmodel, mapping)

  assert next(iter(caadam_jax.published.keras_caadam_factors(params))) == "decoder/kernel"
  assert run(caadam_jax.published.keras_caadam(LR, strategy="depth")) > 100 * ATOL
  assert run(caadam_jax.published.keras_caadam(LR, strategy="depth", order=order)) <= ATOL


# ----------------------------------------------------------------------------
# Optax behaviour.


def test_inject_hyperparams_and_traced_scaling_factor():
  params = mlp_params([3, 4, 6, 5, 24])
  params = jax.tree.map(lambda x: x + 0.1, params)
  plain = caadam_jax.published.keras_caadam(0.01, strategy="multiplicative", scaling_factor=2.0)
  # Betas stay Python floats, as in Keras: float32 (1 - 0.999) is 1.3e-5 off.
  injected = optax.inject_hyperparams(
      caadam_jax.published.keras_caadam, static_args=("beta_1", "beta_2", "epsilon")
  )(learning_rate=0.01, strategy="multiplicative", scaling_factor=2.0)
  s1, s2 = plain.init(params), injected.init(params)
  grads = u2 = None
  for i in range(3):
    grads = jax.tree.map(lambda x, i=i: jnp.sin(x * (i + 1)), params)
    u1, s1 = jax.jit(plain.update)(grads, s1, params)
    u2, s2 = jax.jit(injected.update)(grads, s2, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-9), u1, u2)
  # Changing the injected value changes the step.
  assert isinstance(s2, optax.InjectStatefulHyperparamsState) and u2 is not None
  s2.hyperparams["scaling_factor"] = jnp.asarray(3.0)
  u3, _ = jax.jit(injected.update)(grads, s2, params)
  assert not np.allclose(u3["Dense_0"]["kernel"], u2["Dense_0"]["kernel"])


def test_state_is_adam_moments_only_and_edge_trees():
  params = mlp_params([3, 4, 2])
  state = caadam_jax.published.keras_caadam().init(params)
  n_param_leaves = len(jax.tree.leaves(params))
  assert len(jax.tree.leaves(state)) == 2 * n_param_leaves + 1  # mu, nu, count
  assert len(jax.tree.leaves(caadam_jax.published.keras_caadam(amsgrad=True).init(params))) == (
      3 * n_param_leaves + 1
  )
  # optax.tree_utils.tree_map_params initializes with a tree without leaves.
  tx = caadam_jax.published.keras_caadam()
  optax.tree_utils.tree_map_params(tx, lambda p: p, state)
  # A bare array: factor 1 (connection strategies) and depth D = 1 -> 1.
  for strategy in (None, "multiplicative", "depth"):
    assert caadam_jax.published.keras_caadam_factors(jnp.ones((3, 3)), strategy=strategy) == {
        "<root>": 1.0
    }
  # bf16 updates stay bf16.
  p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  u, _ = jax.jit(tx.update)(p16, tx.init(p16), p16)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))


def _keras_path_params(kmodel):
  """A params tree named by Keras variable paths, and the Keras order of those paths."""
  params, order = {}, []
  for v in kmodel.trainable_variables:
    node = params
    *parents, leaf = v.path.split("/")
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = jax.ShapeDtypeStruct(tuple(v.shape), jnp.float32)
    order.append(v.path)
  return params, order


def _attention_model():
  x = keras.Input((4, 8))
  h = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)(x, x)
  h = keras.layers.LayerNormalization()(keras.layers.Flatten()(h))
  return keras.Model(x, keras.layers.Dense(5)(h))


def _conv_bn_model():
  return keras.Sequential(
      [
          keras.Input((6, 6, 2)),
          keras.layers.Conv2D(4, 3),
          keras.layers.BatchNormalization(),
          keras.layers.Conv2D(5, 3),  # kernels 72, 180, 60
          keras.layers.Flatten(),
          keras.layers.Dense(3),
      ]
  )


@pytest.mark.parametrize("builder", [_attention_model, _conv_bn_model])
def test_factors_match_reference_with_keras_paths_as_order(builder):
  """Any Keras model: its variable paths as ``order`` give the package's factors.

  The attention model has 2-D biases named 'bias': they enter the table, so every
  1-D 'bias' is looked up with the last 2-D bias's size instead of 0.
  """
  keras.utils.set_random_seed(0)
  kmodel = builder()
  params, order = _keras_path_params(kmodel)
  for strategy, g in CONFIGS:
    expected = reference_factors(kmodel, strategy, g)
    got = caadam_jax.published.keras_caadam_factors(
        params, strategy=strategy, scaling_factor=g, order=order
    )
    assert list(got) == order
    np.testing.assert_allclose(list(got.values()), expected, rtol=1e-6)
