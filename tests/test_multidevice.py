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

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from caadam_test_helpers import max_abs_diff  # run as a script, tests/ is first on the child's path
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import caadam_jax

# Slow tier: one subprocess with 8 simulated CPU devices.
pytestmark = [pytest.mark.slow, pytest.mark.external]

STRATEGIES = caadam_jax.STRATEGY_NAMES
# The strategies whose factors depend on shapes: depth uses the forward order only.
SHAPE_DEPENDENT = tuple(s for s in STRATEGIES if s != "depth")
STEPS = 3
TOL = 1e-6


# ----------------------------------------------------------------------------- child process
# The child's program, in one function per layout; they share the model and the
# single-device references through a ``_Setup``.


def _log(msg: str) -> None:
  print(
      f"[{time.perf_counter() - _T_START:6.1f}s wall, {time.process_time():6.1f}s cpu] {msg}",
      file=sys.stderr,
  )


_T_START = time.perf_counter()
DIMS = [16, 64, 32, 16, 8]


def _flat(tree) -> dict:
  return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _loss_fn(p, x, y):
  h = x
  for i in range(len(DIMS) - 1):
    h = h @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
    if i < len(DIMS) - 2:
      h = jnp.tanh(h)
  return jnp.mean((h - y) ** 2)


def _factors_of(strategy, tree, structure=None) -> dict:
  """Per-leaf factors, through the public transform applied to a tree of ones.

  Without ``structure``, the path rules of ``tree`` are accepted explicitly (local shard
  shapes need not chain, and the default path would refuse to guess the order).
  """
  structure = structure or caadam_jax.infer_structure(tree)
  tx = caadam_jax.scale_by_strategy(strategy, structure=structure)
  ones = jax.tree.map(lambda a: np.ones(a.shape, np.float32), tree)
  scaled, _ = tx.update(ones, tx.init(ones))
  return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in _flat(scaled).items()}


def _local_shapes(tree, specs, mesh):
  def local(a, spec):
    shape = list(a.shape)
    for axis, name in enumerate(tuple(spec)):
      if name is not None:
        shape[axis] //= mesh.shape[name]
    return jax.ShapeDtypeStruct(tuple(shape), a.dtype)

  return jax.tree.map(local, tree, specs)


def _ratio_to_adam(updates, adam_updates) -> dict:
  """Per leaf: max and min over elements of caadam update / adam update."""
  out = {}
  for (k, u), a in zip(_flat(updates).items(), _flat(adam_updates).values(), strict=False):
    u, a = np.asarray(u, np.float64), np.asarray(a, np.float64)
    mask = np.abs(a) > 1e-12
    r = u[mask] / a[mask]
    out[k] = (float(r.min()), float(r.max()))
  return out


def _factor_error(ratios, factors) -> float:
  return max(
      max(abs(lo - factors[k]), abs(hi - factors[k])) / abs(factors[k])
      for k, (lo, hi) in ratios.items()
  )


def _sharding_report(state, param_shardings) -> tuple[bool, dict]:
  """Whether mu and nu leaves are sharded like the corresponding params."""
  adam_state = state[0]
  ok, details = True, {}
  for field in ("mu", "nu"):
    for (k, leaf), sh in zip(
        _flat(getattr(adam_state, field)).items(), _flat(param_shardings).values(), strict=False
    ):
      ok &= leaf.sharding.is_equivalent_to(sh, leaf.ndim)
      details[f"{field}{k}"] = str(getattr(leaf.sharding, "spec", leaf.sharding))
  return ok, details


@dataclasses.dataclass
class _Setup:
  """The model, the data, one optimizer per strategy and the single-device results."""

  params: dict
  x: jax.Array
  y: jax.Array
  txs: dict
  train_all: Any
  reference: dict

  def init_all(self, p) -> dict:
    return {name: tx.init(p) for name, tx in self.txs.items()}


def _setup() -> _Setup:
  keys = jax.random.split(jax.random.key(0), 2 * len(DIMS))
  params = {
      f"Dense_{i}": {
          "kernel": jax.random.normal(keys[2 * i], (DIMS[i], DIMS[i + 1])) / np.sqrt(DIMS[i]),
          "bias": 0.1 * jax.random.normal(keys[2 * i + 1], (DIMS[i + 1],)),
      }
      for i in range(len(DIMS) - 1)
  }
  x = jax.random.normal(jax.random.key(1), (64, DIMS[0]))
  y = jax.random.normal(jax.random.key(2), (64, DIMS[-1]))
  txs = {name: caadam_jax.caadam(1e-3, strategy=name) for name in STRATEGIES}

  @jax.jit
  def train_all(p, states, x, y):
    """STEPS training steps for every strategy, in ONE compiled program."""
    out_p, out_s = {}, {}
    for name, tx in txs.items():

      def body(_, carry, tx=tx):
        q, st = carry
        updates, st = tx.update(jax.grad(_loss_fn)(q, x, y), st, q)
        return optax.apply_updates(q, updates), st

      out_p[name], out_s[name] = jax.lax.fori_loop(0, STEPS, body, (p, states[name]))
    return out_p, out_s

  setup = _Setup(params, x, y, txs, train_all, reference={})
  p0, x0, y0 = jax.device_put((params, x, y), jax.devices()[0])
  setup.reference, _ = train_all(p0, setup.init_all(p0), x0, y0)
  _log("single-device references")
  return setup


def _data_parallel(setup: _Setup) -> dict:
  """(a) Replicated params and state, the batch sharded over 8 devices."""
  dmesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
  replicated = NamedSharding(dmesh, P())
  p_dp = jax.device_put(setup.params, replicated)
  x_dp = jax.device_put(setup.x, NamedSharding(dmesh, P("data")))
  y_dp = jax.device_put(setup.y, NamedSharding(dmesh, P("data")))
  dp_shardings = jax.tree.map(lambda _: replicated, setup.params)
  dp_params, dp_states = setup.train_all(p_dp, setup.init_all(p_dp), x_dp, y_dp)
  report = {}
  for s in STRATEGIES:
    ok, details = _sharding_report(dp_states[s], dp_shardings)
    report[s] = {
        "max_abs_diff": max_abs_diff(dp_params[s], setup.reference[s]),
        "state_sharded_like_params": bool(ok),
        "state_specs": details,
        "x_sharding": str(x_dp.sharding.spec),
        "params_sharded_like_input": all(
            a.sharding.is_equivalent_to(replicated, a.ndim) for a in jax.tree.leaves(dp_params[s])
        ),
    }
  _log("data parallel")
  return report


@dataclasses.dataclass
class _Sharded:
  """The (4, 2) mesh layout, shared by the fully sharded and shard_map checks."""

  mesh: Any
  specs: dict
  p_fs: dict
  grads: dict
  adam_updates: dict
  global_structure: caadam_jax.Structure
  local: dict


def _sharded(setup: _Setup) -> tuple[_Sharded, NamedSharding, dict]:
  mesh = jax.make_mesh((4, 2), ("x", "y"), axis_types=(AxisType.Auto,) * 2)
  specs = {
      "Dense_0": {"kernel": P(None, "x"), "bias": P("x")},
      "Dense_1": {"kernel": P("y", None), "bias": P()},
      "Dense_2": {"kernel": P(None, "x"), "bias": P()},
      "Dense_3": {"kernel": P("y", None), "bias": P()},
  }
  p_shardings = jax.tree.map(lambda sp: NamedSharding(mesh, sp), specs)
  p_fs = jax.device_put(setup.params, p_shardings)
  rep = NamedSharding(mesh, P())
  x_fs, y_fs = jax.device_put((setup.x, setup.y), rep)
  # One update on the sharded grads, caadam vs adam: their ratio is the factor.
  grads = jax.jit(jax.grad(_loss_fn))(p_fs, x_fs, y_fs)
  adam_tx = optax.adam(1e-3)
  u_ad = jax.jit(lambda g: adam_tx.update(g, adam_tx.init(g), g)[0])(grads)
  layout = _Sharded(
      mesh,
      specs,
      p_fs,
      grads,
      u_ad,
      caadam_jax.infer_structure(setup.params),
      _local_shapes(setup.params, specs, mesh),
  )
  return layout, rep, p_shardings


def _fully_sharded(setup: _Setup, layout: _Sharded, rep, p_shardings) -> dict:
  """(b) Every kernel sharded along one axis of a (4, 2) mesh."""
  x_fs, y_fs = jax.device_put((setup.x, setup.y), rep)
  # The state's shardings from the params' (optax.tree_map_params), so that a
  # jitted init produces a sharded state (a plain jax.jit(tx.init) with auto
  # sharding would replicate it).
  state_shardings = {
      name: optax.tree_map_params(
          tx,
          lambda _, sh: sh,
          jax.eval_shape(tx.init, setup.params),
          p_shardings,
          transform_non_params=lambda _: rep,
      )
      for name, tx in setup.txs.items()
  }
  jit_states = jax.jit(setup.init_all, out_shardings=state_shardings)(layout.p_fs)
  eager_states = setup.init_all(layout.p_fs)
  # The training step is not pinned (no out_shardings): XLA's sharding
  # propagation picks the output layouts; the state must follow the params.
  fs_params, fs_states = setup.train_all(layout.p_fs, jit_states, x_fs, y_fs)
  u_ca_all = jax.jit(lambda g: {n: tx.update(g, tx.init(g), g)[0] for n, tx in setup.txs.items()})(
      layout.grads
  )
  report = {}
  for s in STRATEGIES:
    init_ok, _ = _sharding_report(jit_states[s], p_shardings)
    eager_init_ok, _ = _sharding_report(eager_states[s], p_shardings)
    p_out = fs_params[s]
    ok, details = _sharding_report(fs_states[s], jax.tree.map(lambda a: a.sharding, p_out))
    kernels_kept = all(
        p_out[layer]["kernel"].sharding.is_equivalent_to(p_shardings[layer]["kernel"], 2)
        for layer in setup.params
    )
    ratios = _ratio_to_adam(u_ca_all[s], layout.adam_updates)
    f_global = _factors_of(s, setup.params, structure=layout.global_structure)
    f_local = _factors_of(s, layout.local)
    report[s] = {
        "max_abs_diff": max_abs_diff(p_out, setup.reference[s]),
        "state_sharded_like_params": bool(ok),
        "state_sharded_after_jit_init": bool(init_ok),
        "state_sharded_after_eager_init": bool(eager_init_ok),
        "state_specs": details,
        "params_sharded_like_input": bool(kernels_kept),
        "update_vs_global_factor_rel_err": _factor_error(ratios, f_global),
        "update_vs_local_factor_rel_err": _factor_error(ratios, f_local),
        "global_factors": f_global,
        "local_factors": f_local,
        "max_global_local_factor_gap": max(abs(f_global[k] - f_local[k]) for k in f_global),
    }
  _log("fully sharded")
  return report


def _shard_map(setup: _Setup, layout: _Sharded) -> dict:
  """(c) The trap: inside shard_map the transform sees local shapes."""
  # Adam is elementwise, so its update inside shard_map equals the global one.
  report: dict = {}
  # structure=None: init sees the global shapes, update the local ones; it refuses.
  for name in STRATEGIES:
    tx = caadam_jax.caadam(1e-3, strategy=name)
    state = tx.init(layout.p_fs)
    state_specs = optax.tree_map_params(
        tx, lambda _, sp: sp, state, layout.specs, transform_non_params=lambda _: P()
    )
    try:
      jax.jit(
          jax.shard_map(
              lambda g, st, tx=tx: tx.update(g, st, g)[0],
              mesh=layout.mesh,
              in_specs=(layout.specs, state_specs),
              out_specs=layout.specs,
          )
      )(layout.grads, state)
      report.setdefault(name, {})["structure_none"] = {"refused": ""}
    except ValueError as e:
      report.setdefault(name, {})["structure_none"] = {"refused": str(e)}
  variants = {
      (name, "structure_global"): caadam_jax.caadam(
          1e-3, strategy=name, structure=layout.global_structure
      )
      for name in STRATEGIES
  }
  sm_states = {k: tx.init(layout.p_fs) for k, tx in variants.items()}  # global shapes
  sm_specs = {
      k: optax.tree_map_params(
          tx, lambda _, sp: sp, sm_states[k], layout.specs, transform_non_params=lambda _: P()
      )
      for k, tx in variants.items()
  }

  @jax.jit
  def shard_mapped_updates(g, states):
    return {
        k: jax.shard_map(
            lambda g, st, tx=tx: tx.update(g, st, g)[0],
            mesh=layout.mesh,
            in_specs=(layout.specs, sm_specs[k]),
            out_specs=layout.specs,
        )(g, states[k])
        for k, tx in variants.items()
    }

  for (name, label), u_ca in shard_mapped_updates(layout.grads, sm_states).items():
    ratios = _ratio_to_adam(u_ca, layout.adam_updates)
    report.setdefault(name, {})[label] = {
        "vs_global_rel_err": _factor_error(
            ratios, _factors_of(name, setup.params, layout.global_structure)
        ),
        "vs_local_rel_err": _factor_error(ratios, _factors_of(name, layout.local)),
    }
  _log("shard_map")
  return report


def _child() -> dict:
  """The subprocess's program (8 CPU devices): one report per layout."""
  _log("imported")
  setup = _setup()
  layout, rep, p_shardings = _sharded(setup)
  return {
      "device_count": jax.device_count(),
      "data_parallel": _data_parallel(setup),
      "fully_sharded": _fully_sharded(setup, layout, rep, p_shardings),
      "shard_map": _shard_map(setup, layout),
  }


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


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shard_map_trap_local_shapes_without_structure_refuses(report, strategy):
  r = report["shard_map"][strategy]["structure_none"]
  # Inside shard_map, structure=None would infer the structure from LOCAL shard shapes
  # (init saw the global ones): it refuses and names the fix.
  assert "local shard shapes" in r["refused"], r
  assert "structure=caadam_jax.infer_structure(params)" in r["refused"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shard_map_with_global_structure_gives_global_factors(report, strategy):
  r = report["shard_map"][strategy]["structure_global"]
  assert r["vs_global_rel_err"] <= 1e-5


if __name__ == "__main__":
  print(json.dumps(_child()))
