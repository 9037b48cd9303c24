"""CaAdam on many devices: data parallel, fully sharded, and the shard_map trap.

The checks need 8 devices, so they run in ONE subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and ``JAX_PLATFORMS=cpu``
(this file run as a script); the rest of the test suite keeps its single
device. The subprocess prints a JSON report that the tests below read.

Layouts (8 CPU devices):

* data parallel: a 1-D mesh ``('data',)``; params and optimizer state
  replicated, the batch sharded along ``data``; ``jit`` inserts the gradient
  all-reduce;
* fully sharded: a 2-D mesh ``('x', 'y')`` of shape (4, 2); every kernel is
  sharded along one mesh axis (some along ``x``, some along ``y``), so the
  local shard shapes are NOT a common multiple of the global ones and
  connection-count factors computed from local shapes would differ from the
  global ones.

The model is a 4-layer MLP whose global kernel sizes are 1024, 2048, 512 and
128 connections; sharded as above its local sizes are 256, 1024, 128 and 64.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import caadam_jax

STRATEGIES = caadam_jax.STRATEGY_NAMES
# The strategies whose factors depend on shapes: depth uses the forward order only.
SHAPE_DEPENDENT = tuple(s for s in STRATEGIES if s != "depth")
STEPS = 3
TOL = 1e-6


# ----------------------------------------------------------------------------- child process


def _child() -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from helpers import max_abs_diff  # this file runs as a script: tests/ is first on its path
  from jax.sharding import AxisType
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  report: dict = {"device_count": jax.device_count()}
  t_start = time.perf_counter()

  def log(msg):
    return print(
        f"[{time.perf_counter() - t_start:6.1f}s wall, {time.process_time():6.1f}s cpu] {msg}",
        file=sys.stderr,
    )

  log("imported")
  dims = [16, 64, 32, 16, 8]
  keys = jax.random.split(jax.random.key(0), 2 * len(dims))
  params = {
      f"Dense_{i}": {
          "kernel": jax.random.normal(keys[2 * i], (dims[i], dims[i + 1])) / np.sqrt(dims[i]),
          "bias": 0.1 * jax.random.normal(keys[2 * i + 1], (dims[i + 1],)),
      }
      for i in range(len(dims) - 1)
  }
  x = jax.random.normal(jax.random.key(1), (64, dims[0]))
  y = jax.random.normal(jax.random.key(2), (64, dims[-1]))

  def loss_fn(p, x, y):
    h = x
    for i in range(len(dims) - 1):
      h = h @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
      if i < len(dims) - 2:
        h = jnp.tanh(h)
    return jnp.mean((h - y) ** 2)

  txs = {name: caadam_jax.caadam(1e-3, strategy=name) for name in STRATEGIES}

  @jax.jit
  def train_all(p, states, x, y):
    """STEPS training steps for every strategy, in ONE compiled program."""
    out_p, out_s = {}, {}
    for name, tx in txs.items():

      def body(_, carry, tx=tx):
        q, st = carry
        updates, st = tx.update(jax.grad(loss_fn)(q, x, y), st, q)
        return optax.apply_updates(q, updates), st

      out_p[name], out_s[name] = jax.lax.fori_loop(0, STEPS, body, (p, states[name]))
    return out_p, out_s

  def init_all(p):
    return {name: tx.init(p) for name, tx in txs.items()}

  def flat(tree):
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}

  def factors_of(strategy, tree, structure=None):
    """Per-leaf factors, through the public transform applied to a tree of ones."""
    tx = caadam_jax.scale_by_strategy(strategy, structure=structure)
    ones = jax.tree.map(lambda a: np.ones(a.shape, np.float32), tree)
    scaled, _ = tx.update(ones, tx.init(ones))
    return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in flat(scaled).items()}

  def local_shapes(tree, specs, mesh):
    def local(a, spec):
      shape = list(a.shape)
      for axis, name in enumerate(tuple(spec)):
        if name is not None:
          shape[axis] //= mesh.shape[name]
      return jax.ShapeDtypeStruct(tuple(shape), a.dtype)

    return jax.tree.map(local, tree, specs)

  def ratio_to_adam(updates, adam_updates):
    """Per leaf: max and min over elements of caadam update / adam update."""
    out = {}
    for (k, u), a in zip(flat(updates).items(), flat(adam_updates).values(), strict=False):
      u, a = np.asarray(u, np.float64), np.asarray(a, np.float64)
      mask = np.abs(a) > 1e-12
      r = u[mask] / a[mask]
      out[k] = (float(r.min()), float(r.max()))
    return out

  def factor_error(ratios, factors):
    return max(
        max(abs(lo - factors[k]), abs(hi - factors[k])) / abs(factors[k])
        for k, (lo, hi) in ratios.items()
    )

  def sharding_report(state, param_shardings):
    """Whether mu and nu leaves are sharded like the corresponding params."""
    adam_state = state[0]
    ok, details = True, {}
    for field in ("mu", "nu"):
      for (k, leaf), sh in zip(
          flat(getattr(adam_state, field)).items(), flat(param_shardings).values(), strict=False
      ):
        same = leaf.sharding.is_equivalent_to(sh, leaf.ndim)
        ok &= same
        details[f"{field}{k}"] = str(getattr(leaf.sharding, "spec", leaf.sharding))
    return ok, details

  # Single-device references.
  dev0 = jax.devices()[0]
  p0, x0, y0 = jax.device_put((params, x, y), dev0)
  reference, _ = train_all(p0, init_all(p0), x0, y0)
  log("single-device references")

  # (a) Data parallel: replicated params and state, batch sharded over 8 devices.
  dmesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  replicated = NamedSharding(dmesh, P())
  p_dp = jax.device_put(params, replicated)
  x_dp = jax.device_put(x, NamedSharding(dmesh, P("data")))
  y_dp = jax.device_put(y, NamedSharding(dmesh, P("data")))
  dp_shardings = jax.tree.map(lambda _: replicated, params)
  report["data_parallel"] = {}
  dp_params, dp_states = train_all(p_dp, init_all(p_dp), x_dp, y_dp)
  for s in STRATEGIES:
    ok, details = sharding_report(dp_states[s], dp_shardings)
    report["data_parallel"][s] = {
        "max_abs_diff": max_abs_diff(dp_params[s], reference[s]),
        "state_sharded_like_params": bool(ok),
        "state_specs": details,
        "x_sharding": str(x_dp.sharding.spec),
        "params_sharded_like_input": all(
            a.sharding.is_equivalent_to(replicated, a.ndim) for a in jax.tree.leaves(dp_params[s])
        ),
    }
  log("data parallel")

  # (b) Fully sharded params and state on a (4, 2) mesh.
  mesh = jax.make_mesh((4, 2), ("x", "y"), axis_types=(AxisType.Auto,) * 2)
  specs = {
      "Dense_0": {"kernel": P(None, "x"), "bias": P("x")},
      "Dense_1": {"kernel": P("y", None), "bias": P()},
      "Dense_2": {"kernel": P(None, "x"), "bias": P()},
      "Dense_3": {"kernel": P("y", None), "bias": P()},
  }
  p_shardings = jax.tree.map(lambda sp: NamedSharding(mesh, sp), specs)
  p_fs = jax.device_put(params, p_shardings)
  rep = NamedSharding(mesh, P())
  x_fs, y_fs = jax.device_put((x, y), rep)
  global_structure = caadam_jax.infer_structure(params)
  local = local_shapes(params, specs, mesh)
  report["fully_sharded"] = {}
  # One update on the sharded grads, caadam vs adam: their ratio is the factor.
  grads = jax.jit(jax.grad(loss_fn))(p_fs, x_fs, y_fs)
  adam_tx = optax.adam(1e-3)
  u_ad = jax.jit(lambda g: adam_tx.update(g, adam_tx.init(g), g)[0])(grads)
  # The state's shardings from the params' (optax.tree_map_params), so that a
  # jitted init produces a sharded state (a plain jax.jit(tx.init) with auto
  # sharding would replicate it).
  state_shardings = {
      name: optax.tree_map_params(
          tx,
          lambda _, sh: sh,
          jax.eval_shape(tx.init, params),
          p_shardings,
          transform_non_params=lambda _: rep,
      )
      for name, tx in txs.items()
  }
  jit_states = jax.jit(init_all, out_shardings=state_shardings)(p_fs)
  eager_states = init_all(p_fs)
  # The training step is not pinned (no out_shardings): XLA's sharding
  # propagation picks the output layouts; the state must follow the params.
  fs_params, fs_states = train_all(p_fs, jit_states, x_fs, y_fs)
  u_ca_all = jax.jit(lambda g: {n: tx.update(g, tx.init(g), g)[0] for n, tx in txs.items()})(grads)
  for s in STRATEGIES:
    init_ok, _ = sharding_report(jit_states[s], p_shardings)
    eager_init_ok, _ = sharding_report(eager_states[s], p_shardings)
    p_out = fs_params[s]
    ok, details = sharding_report(fs_states[s], jax.tree.map(lambda a: a.sharding, p_out))
    kernels_kept = all(
        p_out[layer]["kernel"].sharding.is_equivalent_to(p_shardings[layer]["kernel"], 2)
        for layer in params
    )
    ratios = ratio_to_adam(u_ca_all[s], u_ad)
    f_global = factors_of(s, params, structure=global_structure)
    f_local = factors_of(s, local)
    report["fully_sharded"][s] = {
        "max_abs_diff": max_abs_diff(p_out, reference[s]),
        "state_sharded_like_params": bool(ok),
        "state_sharded_after_jit_init": bool(init_ok),
        "state_sharded_after_eager_init": bool(eager_init_ok),
        "state_specs": details,
        "params_sharded_like_input": bool(kernels_kept),
        "update_vs_global_factor_rel_err": factor_error(ratios, f_global),
        "update_vs_local_factor_rel_err": factor_error(ratios, f_local),
        "global_factors": f_global,
        "local_factors": f_local,
        "max_global_local_factor_gap": max(abs(f_global[k] - f_local[k]) for k in f_global),
    }
  log("fully sharded")

  # (c) The trap: inside shard_map the transform sees local shapes.
  report["shard_map"] = {}
  # Adam is elementwise, so its update inside shard_map equals the global one.
  variants = {
      (name, label): caadam_jax.caadam(1e-3, strategy=name, structure=structure)
      for name in STRATEGIES
      for label, structure in (("structure_none", None), ("structure_global", global_structure))
  }
  sm_states = {k: tx.init(p_fs) for k, tx in variants.items()}  # outside shard_map: global shapes
  sm_specs = {
      k: optax.tree_map_params(
          tx, lambda _, sp: sp, sm_states[k], specs, transform_non_params=lambda _: P()
      )
      for k, tx in variants.items()
  }

  @jax.jit
  def shard_mapped_updates(g, states):
    return {
        k: jax.shard_map(
            lambda g, st, tx=tx: tx.update(g, st, g)[0],
            mesh=mesh,
            in_specs=(specs, sm_specs[k]),
            out_specs=specs,
        )(g, states[k])
        for k, tx in variants.items()
    }

  sm_updates = shard_mapped_updates(grads, sm_states)
  for (name, label), u_ca in sm_updates.items():
    ratios = ratio_to_adam(u_ca, u_ad)
    report["shard_map"].setdefault(name, {})[label] = {
        "vs_global_rel_err": factor_error(ratios, factors_of(name, params, global_structure)),
        "vs_local_rel_err": factor_error(ratios, factors_of(name, local)),
    }
  log("shard_map")
  return report


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def report():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  env["JAX_PLATFORMS"] = "cpu"
  t0 = time.perf_counter()
  proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__)],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  result = json.loads(lines[-1])
  result["wall_s"] = time.perf_counter() - t0
  return result


def test_subprocess_has_eight_devices(report):
  assert report["device_count"] == 8


@pytest.mark.parametrize("layout", ["data_parallel", "fully_sharded"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sharded_training_matches_single_device(report, layout, strategy):
  r = report[layout][strategy]
  assert r["max_abs_diff"] <= TOL, r["max_abs_diff"]
  assert r["params_sharded_like_input"]


@pytest.mark.parametrize("layout", ["data_parallel", "fully_sharded"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_optimizer_state_sharded_like_params(report, layout, strategy):
  r = report[layout][strategy]
  assert r["state_sharded_like_params"], r["state_specs"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sharded_init_gives_sharded_state(report, strategy):
  r = report["fully_sharded"][strategy]
  # Eager init keeps the params' shardings (zeros_like of a committed array);
  # a jitted init does when given out_shardings built with optax.tree_map_params.
  assert r["state_sharded_after_eager_init"]
  assert r["state_sharded_after_jit_init"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_factors_come_from_global_shapes_under_jit(report, strategy):
  r = report["fully_sharded"][strategy]
  assert r["update_vs_global_factor_rel_err"] <= 1e-5
  if strategy in SHAPE_DEPENDENT:
    # The model is built so that local-shape factors would be different.
    assert r["max_global_local_factor_gap"] > 1e-2
    assert r["update_vs_local_factor_rel_err"] > 1e-2


@pytest.mark.parametrize("strategy", SHAPE_DEPENDENT)
def test_shard_map_trap_local_shapes_without_structure(report, strategy):
  r = report["shard_map"][strategy]["structure_none"]
  # Inside shard_map, structure=None infers the structure from LOCAL shard shapes.
  assert r["vs_local_rel_err"] <= 1e-5
  assert r["vs_global_rel_err"] > 1e-2


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shard_map_with_global_structure_gives_global_factors(report, strategy):
  r = report["shard_map"][strategy]["structure_global"]
  assert r["vs_global_rel_err"] <= 1e-5


if __name__ == "__main__":
  print(json.dumps(_child()))
