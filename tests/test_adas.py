"""Tests for caadam_jax._adas: ADAS against an independent numpy oracle, plus Optax compat."""

from __future__ import annotations

import doctest
import inspect
import json
import pathlib
import subprocess
import sys
from typing import Any

import caadam_test_helpers as helpers
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import caadam_jax
from caadam_jax import _adas

REPO = pathlib.Path(__file__).resolve().parents[1]
SHAPES = {"dense": (5, 3), "bias": (3,), "conv": (3, 3, 2, 4), "scalar": ()}
# The oracle takes the reference's names (adasopt.py); the library takes descriptive ones.
DEFAULTS = dict(lr=1e-3, lr2=5e-3, lr3=5e-4, beta_1=0.999, beta_2=0.999, beta_3=0.9999, eps=1e-7)
OPTAX_NAMES = dict(
    lr="learning_rate",
    lr2="hyper_learning_rate",
    lr3="meta_learning_rate",
    beta_1="second_moment_decay",
    beta_2="step_size_average_decay",
    beta_3="update_average_decay",
    eps="eps",
)


def _library_kwargs(reference_kwargs) -> dict[str, Any]:
  return {OPTAX_NAMES[k]: v for k, v in reference_kwargs.items()}


# --------------------------------------------------------------------------- oracle


def _numpy_adas(params, grad_fn, steps, *, lr, lr2, lr3, beta_1, beta_2, beta_3, eps):
  """The eight steps of scale_by_adas's docstring in float64 numpy, output axis last."""

  def normalizer(state, x, beta, t):
    """Returns (old u, xn) and updates state['v'], state['u'] in place."""
    state["v"] = beta_1 * state["v"] + (1 - beta_1) * x**2
    xn = x * np.sqrt(1 - beta_1**t) / (np.sqrt(state["v"]) + eps)
    old_u = state["u"]
    state["u"] = beta * state["u"] + (1 - beta) * xn
    return old_u, xn

  params = {k: np.array(v, np.float64) for k, v in params.items()}
  st = {}
  for k, w in params.items():
    s = w.shape[:-1]
    st[k] = dict(
        eta=np.full(s, lr),
        mu=lr2,
        nw={"v": np.zeros(w.shape), "u": np.zeros(w.shape)},
        neta={"v": np.zeros(s), "u": np.zeros(s)},
        nmu={"v": 0.0, "u": 0.0},
    )
  for t in range(1, steps + 1):
    grads = grad_fn(params, t)
    for k in params:
      g, s = grads[k], st[k]
      u_w_old, gn = normalizer(s["nw"], g, beta_3, t)  # 1
      if g.ndim == 0:
        params[k] = params[k] - s["eta"] * gn  # 2
        h = u_w_old * g  # 3
      else:
        params[k] = params[k] - s["eta"][..., None] * gn  # 2
        h = (u_w_old * g).sum(axis=-1)  # 3
      u_eta_old, hn = normalizer(s["neta"], h, beta_2, t)  # 4
      s["eta"] = s["eta"] + s["mu"] * s["eta"] * hn  # 5
      k_ = float(np.sum(u_eta_old * h))  # 6
      _, kn = normalizer(s["nmu"], k_, 0.0, t)  # 7
      s["mu"] = s["mu"] + lr3 * s["mu"] * kn  # 8
  return params, st


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  init = {k: rng.normal(size=s) for k, s in SHAPES.items()}
  target = {k: rng.normal(size=s) for k, s in SHAPES.items()}
  curvature = {k: rng.uniform(0.5, 2.0, size=s) for k, s in SHAPES.items()}
  noise = {k: rng.normal(scale=0.3, size=(31,) + s) for k, s in SHAPES.items()}

  def grad_fn(params, t):
    # Gradient of a fixed diagonal quadratic plus a fixed noise stream.
    return {
        k: curvature[k] * (np.asarray(params[k], np.float64) - target[k]) + noise[k][t]
        for k in SHAPES
    }

  return init, grad_fn


def _run_library(
    tx, params: Any, grad_fn, steps, to_oracle=lambda p: p, from_oracle=lambda p: p
) -> tuple[Any, list[Any]]:
  """Runs ``tx`` for ``steps`` steps; returns the final params and every state."""
  params = {k: jnp.asarray(from_oracle(v), jnp.float32) for k, v in params.items()}
  states: list[Any] = [tx.init(params)]
  update = jax.jit(tx.update)
  for t in range(1, steps + 1):
    grads = grad_fn({k: to_oracle(np.asarray(v)) for k, v in params.items()}, t)
    grads = {k: jnp.asarray(from_oracle(v), jnp.float32) for k, v in grads.items()}
    updates, state = update(grads, states[-1], params)
    states.append(state)
    params = optax.apply_updates(params, updates)
  return params, states


def test_matches_numpy_oracle():
  init, grad_fn = _problem()
  expected, est = _numpy_adas(init, grad_fn, 30, **DEFAULTS)
  params, states = _run_library(caadam_jax.adas(), init, grad_fn, 30)
  state = states[-1]
  for k in SHAPES:
    np.testing.assert_allclose(params[k], expected[k], rtol=2e-5, atol=2e-6, err_msg=k)
    np.testing.assert_allclose(state.eta[k], est[k]["eta"], rtol=2e-5, err_msg=k)
    np.testing.assert_allclose(state.mu[k], est[k]["mu"], rtol=2e-5, err_msg=k)
  assert int(state.count) == 30
  # The step sizes did move: the test would not see a wrong hypergradient otherwise.
  assert not np.allclose(est["dense"]["eta"], DEFAULTS["lr"])
  assert est["conv"]["mu"] != DEFAULTS["lr2"]


def test_each_decay_name_reaches_its_decay_numpy_oracle():
  # Distinct decays (the defaults of beta_1 and beta_2 are equal, so they cannot tell a
  # swapped pair apart): each descriptive name must drive the reference's decay.
  init, grad_fn = _problem(seed=2)
  hp = dict(DEFAULTS, lr2=2e-2, lr3=1e-2, beta_1=0.99, beta_2=0.9, beta_3=0.95)
  expected, est = _numpy_adas(init, grad_fn, 20, **hp)
  params, states = _run_library(caadam_jax.adas(**_library_kwargs(hp)), init, grad_fn, 20)
  for k in SHAPES:
    np.testing.assert_allclose(params[k], expected[k], rtol=2e-5, atol=2e-6, err_msg=k)
    np.testing.assert_allclose(states[-1].eta[k], est[k]["eta"], rtol=2e-5, err_msg=k)
    np.testing.assert_allclose(states[-1].mu[k], est[k]["mu"], rtol=2e-5, err_msg=k)


def test_matches_numpy_oracle_output_axis_0():
  init, grad_fn = _problem(seed=1)
  hp = dict(DEFAULTS, lr2=2e-2, lr3=1e-2)  # larger hyper-steps: the step sizes move more.
  expected, _ = _numpy_adas(init, grad_fn, 30, **hp)

  def from_oracle(x):  # (..., out) -> (out, ...): the PyTorch layout.
    return np.moveaxis(x, -1, 0) if np.ndim(x) >= 2 else x

  def to_oracle(x):
    return np.moveaxis(x, 0, -1) if np.ndim(x) >= 2 else x

  tx = caadam_jax.adas(**_library_kwargs(hp), output_axis=0)
  params, states = _run_library(tx, init, grad_fn, 30, to_oracle, from_oracle)
  state = states[-1]
  assert state.eta["dense"].shape == (5,)
  assert state.eta["conv"].shape == (3, 3, 2)  # (out, kh, kw, in) without out
  for k in SHAPES:
    np.testing.assert_allclose(
        to_oracle(np.asarray(params[k])), expected[k], rtol=2e-5, atol=2e-6, err_msg=k
    )


def test_first_step_leaves_step_sizes_unchanged():
  init, grad_fn = _problem()
  tx = caadam_jax.adas(learning_rate=2e-3, hyper_learning_rate=7e-3)
  _, (_, state, state2) = _run_library(tx, init, grad_fn, 2)
  for k in SHAPES:
    np.testing.assert_array_equal(state.eta[k], np.full(state.eta[k].shape, 2e-3, np.float32))
    np.testing.assert_array_equal(state.mu[k], np.float32(7e-3))
  # The second step moves eta but not yet mu (mu's hypergradient needs two steps of history).
  assert not np.allclose(state2.eta["dense"], 2e-3)
  np.testing.assert_array_equal(state2.mu["dense"], np.float32(7e-3))


# --------------------------------------------------------------------------- state


def _params(dtype=jnp.float32):
  return {k: jnp.ones(s, dtype) * 0.5 for k, s in SHAPES.items()}


def _grads(params, seed=0):
  keys = jax.random.split(jax.random.key(seed), len(params))
  return {
      k: jax.random.normal(key, p.shape, jnp.float32).astype(p.dtype)
      for key, (k, p) in zip(keys, sorted(params.items()), strict=False)
  }


def test_state_layout():
  state = caadam_jax.scale_by_adas().init(_params())
  assert isinstance(state, caadam_jax.ScaleByAdasState)
  assert state._fields == ("count", "eta", "mu", "v_w", "u_w", "v_eta", "u_eta", "v_mu")
  assert {k: v.shape for k, v in helpers.as_dict(state.eta).items()} == {
      "dense": (5,),
      "bias": (),
      "conv": (3, 3, 2),
      "scalar": (),
  }
  assert all(v.shape == () for v in helpers.as_dict(state.mu).values())
  assert all(v.shape == () for v in helpers.as_dict(state.v_mu).values())
  assert jax.tree.map(jnp.shape, state.v_w) == jax.tree.map(jnp.shape, _params())
  assert state.count.dtype == jnp.int32


def test_state_shapes_and_dtypes_stable_and_lax_cond():
  tx = caadam_jax.adas()
  params = _params()
  state = tx.init(params)
  _, new_state = jax.eval_shape(tx.update, _grads(params), state, params)

  def spec(t):
    return jax.tree.map(lambda x: (x.shape, x.dtype), t)

  assert spec(new_state) == spec(state)

  @jax.jit
  def maybe_step(pred, grads, state):
    return jax.lax.cond(pred, lambda s: tx.update(grads, s)[1], lambda s: s, state)

  out = maybe_step(True, _grads(params), state)
  assert int(out.count) == 1
  assert int(maybe_step(False, _grads(params), state).count) == 0


def test_jit_matches_eager():
  tx = caadam_jax.adas(hyper_learning_rate=1e-2)
  params = {"dense": jnp.ones((5, 3)), "bias": jnp.zeros(3)}
  s_eager = s_jit = tx.init(params)
  update = jax.jit(tx.update)
  for i in range(2):
    g = _grads(params, i)
    u_eager, s_eager = tx.update(g, s_eager, params)
    u_jit, s_jit = update(g, s_jit, params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), u_eager, u_jit
    )


def test_inject_hyperparams_matches_plain():
  params = _params()
  hp: dict[str, Any] = dict(learning_rate=2e-3, hyper_learning_rate=1e-2, meta_learning_rate=1e-3)
  plain = caadam_jax.adas(**hp)
  injected = optax.inject_hyperparams(caadam_jax.adas)(**hp)
  s_plain: Any
  s_inj: Any
  s_plain, s_inj = plain.init(params), injected.init(params)
  up_plain, up_inj = jax.jit(plain.update), jax.jit(injected.update)
  for i in range(5):
    g = _grads(params, i)
    u_plain, s_plain = up_plain(g, s_plain, params)
    u_inj, s_inj = up_inj(g, s_inj, params)
    # Injected hyperparameters are float32 arrays where the plain ones are Python
    # floats (1 - beta rounds differently), hence a float32 tolerance.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-10), u_plain, u_inj
    )
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), s_plain.mu, s_inj.inner_state.mu
  )
  # An injected meta_learning_rate acts at every step: 0 freezes mu.
  s_inj.hyperparams["meta_learning_rate"] = jnp.asarray(0.0)
  _, s_next = up_inj(_grads(params, 9), s_inj, params)
  jax.tree.map(np.testing.assert_array_equal, s_next.inner_state.mu, s_inj.inner_state.mu)


def test_inject_hyperparams_static_output_axis():
  params = {"w": jnp.ones((4, 3))}
  tx = optax.inject_hyperparams(caadam_jax.adas, static_args=("output_axis",))(output_axis=0)
  state: Any = tx.init(params)
  assert state.inner_state.eta["w"].shape == (3,)
  jax.jit(tx.update)({"w": jnp.ones((4, 3))}, state, params)


def test_bf16_params_give_bf16_updates_and_f32_state():
  params = _params(jnp.bfloat16)
  tx = caadam_jax.adas()
  state = tx.init(params)
  updates, new_state = jax.jit(tx.update)(_grads(params), state, params)
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
  floats = [x for x in jax.tree.leaves(new_state) if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats)
  new_params = optax.apply_updates(params, updates)
  assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(new_params))


def test_masked():
  params = _params()
  mask = {"dense": True, "bias": False, "conv": True, "scalar": False}
  tx = optax.masked(caadam_jax.adas(), mask)
  state = tx.init(params)
  grads = _grads(params)
  updates, state = jax.jit(tx.update)(grads, state, params)
  assert isinstance(state.inner_state.eta["bias"], optax.MaskedNode)
  # Masked-out leaves pass through; the others are what ADAS gives on the subset.
  np.testing.assert_array_equal(updates["bias"], grads["bias"])
  sub = {k: params[k] for k in ("dense", "conv")}
  ref_tx = caadam_jax.adas()
  ref, _ = jax.jit(ref_tx.update)({k: grads[k] for k in sub}, ref_tx.init(sub))
  for k in sub:
    np.testing.assert_allclose(updates[k], ref[k], rtol=1e-6)


# --------------------------------------------------------------------------- training


def _toy_data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(128, 8)).astype(np.float32)
  w = rng.normal(size=(8, 3))
  y = np.argmax(x @ w, axis=-1).astype(np.int32)
  return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.slow  # a whole model: the slow tier
def test_linen_train_state_reduces_loss():
  class MLP(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))

  x, y = _toy_data()
  model = MLP()
  params = model.init(jax.random.key(0), x)["params"]
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=params, tx=caadam_jax.adas(learning_rate=1e-2)
  )

  @jax.jit
  def loss_fn(p):
    logits = jnp.asarray(model.apply({"params": p}, x))
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(state):
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

  first = float(loss_fn(state.params))
  for _ in range(60):
    state, _ = step(state)
  assert float(loss_fn(state.params)) < 0.5 * first


@pytest.mark.slow  # a whole model: the slow tier
def test_nnx_optimizer_reduces_loss():
  x, y = _toy_data()

  class MLP(nnx.Module):

    def __init__(self, rngs):
      self.l1 = nnx.Linear(8, 16, rngs=rngs)
      self.l2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
      return self.l2(nnx.relu(self.l1(x)))

  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, caadam_jax.adas(learning_rate=1e-2), wrt=nnx.Param)

  def loss_fn(model):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  first = float(loss_fn(model))
  for _ in range(60):
    step(model, optimizer)
  assert float(loss_fn(model)) < 0.5 * first


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=-1e-3), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(hyper_learning_rate=-1.0), "hyper_learning_rate"),
        (dict(meta_learning_rate=-1.0), "meta_learning_rate"),
        (dict(second_moment_decay=1.0), "second_moment_decay"),
        (dict(step_size_average_decay=-0.1), "step_size_average_decay"),
        (dict(update_average_decay=1.5), "update_average_decay"),
        (dict(eps=0.0), "eps"),
        (dict(learning_rate=np.array([1e-3, 1e-3])), "learning_rate"),
    ],
)
def test_invalid_hyperparameters_raise(kwargs, name):
  with pytest.raises(ValueError, match=name):
    caadam_jax.adas(**kwargs)


def test_valid_edge_hyperparameters_and_traced_values():
  caadam_jax.adas(
      hyper_learning_rate=0.0,
      meta_learning_rate=0.0,
      second_moment_decay=0.0,
      step_size_average_decay=0.0,
      update_average_decay=0.0,
  )
  caadam_jax.adas(learning_rate=jnp.asarray(1e-3), eps=np.float32(1e-8))

  @jax.jit
  def build_and_step(lr):  # traced hyperparameters are not validated (no Python if)
    tx = caadam_jax.adas(learning_rate=lr, second_moment_decay=lr)
    params = {"w": jnp.ones(3)}
    return tx.update({"w": jnp.ones(3)}, tx.init(params))[0]

  build_and_step(1e-3)


def test_output_axis_errors():
  with pytest.raises(ValueError, match="output_axis"):
    caadam_jax.adas(output_axis=2).init({"w": jnp.ones((3, 4))})
  with pytest.raises(TypeError, match="static_args"):
    jax.jit(lambda a: caadam_jax.adas(output_axis=a))(0)


def test_doctests():
  result = doctest.testmod(_adas)
  assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- benchmark


@pytest.mark.slow  # a benchmark script in a subprocess
@pytest.mark.external
@pytest.mark.data
def test_benchmark_quick(tmp_path):
  out = tmp_path / "quick.json"
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.adas_mnist", "--quick", "--out", str(out)],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "adas epoch" in proc.stdout and "adam epoch" in proc.stdout
  result = json.loads(out.read_text())
  for name in ("adas", "adam"):
    history = result["results"][name]["history"]
    assert history and history[-1]["train_accuracy"] > 0.5


def test_complex_parameters_are_rejected_with_a_clear_error():
  with pytest.raises(ValueError, match="real parameters only"):
    caadam_jax.adas().init({"w": jnp.ones((2, 3), jnp.complex64)})


def test_init_accepts_shape_dtype_structs():
  params = {
      "w": jax.ShapeDtypeStruct((4, 3), jnp.float32),
      "b": jax.ShapeDtypeStruct((3,), jnp.bfloat16),
  }
  # Optax's Params type has array leaves only; shape structs work (adas reads shapes).
  state = caadam_jax.adas().init(params)  # pyright: ignore[reportArgumentType]
  assert isinstance(state, caadam_jax.ScaleByAdasState)
  eta, v_w = helpers.as_dict(state.eta), helpers.as_dict(state.v_w)
  assert eta["w"].shape == (4,) and eta["b"].shape == ()
  assert v_w["b"].dtype == jnp.float32


# --------------------------------------------------------------------------- renamed keywords


@pytest.mark.parametrize("factory", [caadam_jax.adas, caadam_jax.scale_by_adas])
def test_reference_keywords_warn_and_give_the_same_steps(factory):
  reference = dict(lr=2e-3, lr2=1e-2, lr3=1e-3, beta_1=0.99, beta_2=0.98, beta_3=0.97)
  with pytest.warns(DeprecationWarning) as caught:
    old = factory(**reference)
  messages = " ".join(str(w.message) for w in caught)
  for name in OPTAX_NAMES.values():
    if name != "eps":  # eps keeps its name
      assert f"use {name!r}" in messages
  new = factory(**_library_kwargs(reference))
  params = _params()
  s_old, s_new = old.init(params), new.init(params)
  for i in range(3):
    u_old, s_old = old.update(_grads(params, i), s_old, params)
    u_new, s_new = new.update(_grads(params, i), s_new, params)
    chex.assert_trees_all_equal(u_old, u_new, strict=True)
  chex.assert_trees_all_equal(s_old, s_new, strict=True)


def test_reference_and_new_keyword_together_raise():
  with pytest.raises(TypeError, match=r"both 'lr2' \(deprecated\) and 'hyper_learning_rate'"):
    caadam_jax.adas(lr2=1e-2, hyper_learning_rate=1e-2)  # pyright: ignore[reportCallIssue]


@pytest.mark.parametrize("factory", [caadam_jax.adas, caadam_jax.scale_by_adas])
def test_former_optax_style_decay_names_warn_and_give_the_same_steps(factory):
  # b1, b2, b3 were the decays' names before they were named for what they are.
  former = dict(b1=0.99, b2=0.98, b3=0.97)
  with pytest.warns(DeprecationWarning) as caught:
    old = factory(**former)
  messages = [str(w.message) for w in caught]
  assert messages == [
      f"caadam_jax.{factory.__name__}: the keyword 'b1' is deprecated; use 'second_moment_decay'.",
      f"caadam_jax.{factory.__name__}: the keyword 'b2' is deprecated; use "
      "'step_size_average_decay'.",
      f"caadam_jax.{factory.__name__}: the keyword 'b3' is deprecated; use 'update_average_decay'.",
  ]
  assert {w.filename for w in caught} == {__file__}  # attributed to the caller's line
  new = factory(second_moment_decay=0.99, step_size_average_decay=0.98, update_average_decay=0.97)
  params = _params()
  s_old, s_new = old.init(params), new.init(params)
  for i in range(3):
    u_old, s_old = old.update(_grads(params, i), s_old, params)
    u_new, s_new = new.update(_grads(params, i), s_new, params)
    chex.assert_trees_all_equal(u_old, u_new, strict=True)
  chex.assert_trees_all_equal(s_old, s_new, strict=True)
  with pytest.raises(TypeError, match=r"both 'b1' \(deprecated\) and 'second_moment_decay'"):
    factory(b1=0.9, second_moment_decay=0.9)


def test_adas_is_scale_by_adas_with_its_signature():
  # The alias declares no arguments of its own: inject_hyperparams and the docs see
  # scale_by_adas's, and every argument reaches it.
  assert inspect.signature(caadam_jax.adas) == inspect.signature(caadam_jax.scale_by_adas)
  assert "update_average_decay" in inspect.signature(caadam_jax.adas).parameters
  hp = dict(learning_rate=2e-3, hyper_learning_rate=1e-2, meta_learning_rate=1e-3, eps=1e-6)
  decays = dict(second_moment_decay=0.99, step_size_average_decay=0.98, update_average_decay=0.97)
  positional = (2e-3, 1e-2, 1e-3, 0.99, 0.98, 0.97, 1e-6)  # the declared order
  alias = caadam_jax.adas(*positional, output_axis=0)
  transform = caadam_jax.scale_by_adas(**hp, **decays, output_axis=0)
  injected = optax.inject_hyperparams(caadam_jax.adas, static_args=("output_axis",))(
      **hp, **decays, output_axis=0
  )
  params = _params()
  states: list[Any] = [tx.init(params) for tx in (alias, transform, injected)]
  assert set(states[2].hyperparams) == set(hp) | set(decays)
  for i in range(2):
    outs = [
        tx.update(_grads(params, i), s, params)
        for tx, s in zip((alias, transform, injected), states, strict=True)
    ]
    states = [s for _, s in outs]
    chex.assert_trees_all_equal(outs[0][0], outs[1][0], strict=True)
    chex.assert_trees_all_close(outs[0][0], outs[2][0], rtol=1e-6)
