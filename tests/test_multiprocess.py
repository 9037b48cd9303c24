"""Several JAX processes, one global mesh: training and Orbax checkpoints across processes.

The test starts separate Python processes on this machine with the launcher of
``examples/multihost.py`` (a coordinator on 127.0.0.1 at a free port, CPU collectives
through gloo, each process with its own simulated CPU devices, every process in its own
process group and killed at a deadline). Each process runs this file as a script (the
worker below): it trains ``caadam_test_helpers.MLP`` with every optimizer of
``caadam_test_helpers.OPTIMIZERS`` for ``2 * K`` steps in two layouts of
``multihost.mesh_and_shardings`` (``dp``: replicated state, batch split over all
devices; ``fsdp``: params and optimizer state split over all devices, hence across
processes), feeding only its own rows of each global batch through
``jax.make_array_from_process_local_data``. It gathers the final state
(``process_allgather``) and writes it to a ``.npz`` file that the test compares with a
single-process, single-device run of the same global batches in the test process.

Launches (processes x devices per process): 2 x 2 (train in both layouts, write an Orbax
checkpoint of the ``fsdp`` states after ``K`` steps from all processes, then restore it
into states built from new objects on the same mesh and continue ``K`` steps: bit for
bit), 4 x 1 (train in the ``fsdp`` layout, and restore the 2-process checkpoint in new
processes on a 4-process mesh), the test process itself (restore it on one device), and
2 x 1 twice for the fault checks (one process exits mid-run; the other must exit with
JAX's error within a bounded time instead of hanging).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import time

import jax
import numpy as np
import pytest
from caadam_test_helpers import OPTIMIZERS
from caadam_test_helpers import create_state
from caadam_test_helpers import data
from caadam_test_helpers import init_params
from caadam_test_helpers import make_train_step
from caadam_test_helpers import max_abs_diff
from caadam_test_helpers import train

from examples import multihost

# Slow tier: several JAX processes.
pytestmark = [pytest.mark.slow, pytest.mark.external]

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The workers run this file as a script: Python puts tests/ (caadam_test_helpers) on their
# path, and PYTHONPATH adds the repository root for `from examples import multihost`, as
# pytest's `pythonpath` setting does in this process.
WORKER_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}

K = 2  # steps before the checkpoint, and after it
BATCH = 16  # global batch rows: a multiple of every global device count used here
NAMES = tuple(OPTIMIZERS)
LAYOUTS = ("dp", "fsdp")
TOL = 1e-5  # float32: the sharded runs reduce the batch mean in another order
LAUNCH_TIMEOUT_S = 240  # per launch: every worker is killed after this
HEARTBEAT_S = 5  # the fault launches' heartbeat timeout
FAULT_BOUND_S = 60  # a survivor must be gone this long after the death at the latest
DIE_AFTER = 2  # the dying process exits after this many steps
DIE_CODE = 17


def _has_orbax() -> bool:
  try:
    import orbax.checkpoint  # noqa: F401
  except ImportError:
    return False
  return True


# ----------------------------------------------------------------------------- worker side


def _flat(state) -> dict[str, np.ndarray]:
  return {
      jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(state)
  }


def _gather(state) -> dict[str, np.ndarray]:
  """The full global state as numpy arrays on every process: one jitted all-gather."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("all",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  whole = jax.jit(lambda s: s, out_shardings=replicated)(state)
  return _flat(jax.tree.map(lambda a: a.addressable_data(0), whole))


def _held_fraction(state) -> float:
  """The fraction of the state's elements (params and optimizer state) this process holds."""
  leaves = jax.tree.leaves(state)
  held = sum(multihost.held_fraction(a) * a.size for a in leaves)
  return held / sum(a.size for a in leaves)


def _states(names=NAMES, seed: int = 0) -> dict:
  """New TrainStates from one initial params, one per optimizer: ``{name: state}``."""

  def make():
    params = init_params(seed)
    return {name: create_state(name, params=params) for name in names}

  return jax.jit(make)()  # one compilation, cheaper than the many small ones of eager init


def _place(states, layout: str):
  """Puts the (host) states on this layout's global mesh; every process passes the same values.

  Returns ``(states, batch_sharding)``.
  """
  _, shardings, batch_sharding = multihost.mesh_and_shardings(layout, states)

  def place(a, sharding):
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(place, states, shardings), batch_sharding


def _make_step_all():
  """One jitted step of every state of a ``{name: state}`` dict (one compilation for all)."""
  step = make_train_step()
  return jax.jit(lambda states, x, y: {name: step(s, x, y) for name, s in states.items()})


def _batches(batch_sharding):
  """The global batches, each process feeding its own rows."""
  x, y = data(2 * K, BATCH)
  pairs = [multihost.global_batch(batch_sharding, x[i], y[i]) for i in range(2 * K)]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def run_training(layouts, ckpt_dir: str | None) -> tuple[dict, dict]:
  """Every optimizer, ``2 * K`` steps in each layout; checkpoints the ``fsdp`` states after ``K``."""
  arrays, report = {}, {}
  for layout in layouts:
    states, batch_sharding = _place(_states(), layout)
    xs, ys = _batches(batch_sharding)
    step_all = _make_step_all()
    states = train(states, range(K), xs, ys, step_all)
    if ckpt_dir is not None and layout == "fsdp":
      import orbax.checkpoint as ocp

      with ocp.StandardCheckpointer() as checkpointer:  # every process writes its shards
        checkpointer.save(ckpt_dir, states)
        checkpointer.wait_until_finished()
    states = train(states, range(K, 2 * K), xs, ys, step_all)
    rows = multihost.local_rows(batch_sharding, (BATCH,))
    report[f"{layout}/rows"] = [rows.start, rows.stop]
    for name, state in states.items():
      report[f"{layout}/{name}"] = {"held_fraction": _held_fraction(state)}
    arrays.update({layout + k: v for k, v in _gather(states).items()})
  return arrays, report


def run_restore(ckpt_dir: str) -> dict:
  """Restores the checkpoint onto this run's ``fsdp`` mesh and trains ``K`` more steps."""
  import orbax.checkpoint as ocp

  # Built from new objects and other initial params: only shapes and shardings matter.
  abstract = jax.eval_shape(lambda: _states(seed=123))
  _, shardings, batch_sharding = multihost.mesh_and_shardings("fsdp", abstract)
  target = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )
  with ocp.StandardCheckpointer() as checkpointer:
    states = checkpointer.restore(ckpt_dir, target)
  xs, ys = _batches(batch_sharding)
  states = train(states, range(K, 2 * K), xs, ys, _make_step_all())
  return {"restored" + k: v for k, v in _gather(states).items()}


def run_until_killed(die: int) -> None:
  """Trains (data parallel) until a process dies; process ``die`` exits after ``DIE_AFTER`` steps."""
  states, batch_sharding = _place(_states(["caadam_multiplicative"]), "dp")
  xs, ys = _batches(batch_sharding)
  step_all = _make_step_all()
  for i in range(10**6):
    if i == DIE_AFTER and jax.process_index() == die:
      print(f"process {die} exits now", flush=True)
      os._exit(DIE_CODE)
    states = jax.block_until_ready(step_all(states, xs[i % len(xs)], ys[i % len(ys)]))
    print(f"step {i}", flush=True)


def _worker(argv=None) -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  parser.add_argument("--train", nargs="*", choices=LAYOUTS, help="train in these layouts")
  parser.add_argument("--ckpt", default=None, help="write the fsdp checkpoints here")
  parser.add_argument("--restore", default=None, help="restore the checkpoints from here")
  parser.add_argument("--die", type=int, default=None, help="fault check: this process dies")
  multihost.add_distributed_arguments(parser)
  args = parser.parse_args(argv)
  multihost.initialize(args)
  if args.die is not None:
    run_until_killed(args.die)
    return
  report = multihost.describe_process()
  arrays = {}
  if args.train:
    trained, report["training"] = run_training(args.train, args.ckpt)
    arrays.update(trained)
  if args.restore:
    arrays.update(run_restore(args.restore))
  report["cpu_s"] = time.process_time()
  np.savez(os.path.join(args.out, f"process_{jax.process_index()}.npz"), **arrays)
  print(multihost.RESULT_PREFIX + json.dumps(report), flush=True)


# ----------------------------------------------------------------------------- test side


def _launch(tmp: pathlib.Path, processes: int, devices: int, *worker_args: str):
  out = tmp / f"out_{processes}x{devices}_{time.monotonic_ns()}"
  out.mkdir()
  argv = [os.path.abspath(__file__), "--out", str(out), *worker_args]
  argv += ["--init-timeout", "120", "--heartbeat-timeout", "30"]
  results = multihost.launch_local(argv, processes, devices, LAUNCH_TIMEOUT_S, env=WORKER_ENV)
  for r in results:
    assert (
        r.returncode == 0
    ), f"process {r.process_id}: exit {r.returncode} after {r.wall_s:.0f}s\n{r.stderr[-4000:]}"
  reports = multihost.reports(results)
  arrays = []
  for i in range(processes):
    with np.load(out / f"process_{i}.npz") as f:
      arrays.append(dict(f))
  return reports, arrays


def _select(arrays: dict, prefix: str) -> dict:
  return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix + ".")}


def _diff(a: dict, b: dict) -> float:
  assert sorted(a) == sorted(b) and a
  return max_abs_diff([a[k] for k in sorted(a)], [b[k] for k in sorted(b)])


def _bitwise(a: dict, b: dict) -> bool:
  assert sorted(a) == sorted(b) and a
  return all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
  return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
def reference(strict_optax):
  """One process, one device, the same global batches: the full final state per optimizer."""
  del strict_optax  # it steps Adam in this process (strictly) before any test's span
  x, y = data(2 * K, BATCH)
  states = train(_states(), range(2 * K), x, y, _make_step_all())
  return {name: _flat(state) for name, state in states.items()}


# Launch -> (its fixture, the layouts it trains). The 4-process launch trains only the
# fully sharded layout (the one whose state is split across processes), to save CPU time.
LAUNCHES = {"2x2": ("two_by_two", LAYOUTS), "4x1": ("four_by_one", ("fsdp",))}
TRAINED = [(launch, layout) for launch, (_, layouts) in LAUNCHES.items() for layout in layouts]


@pytest.fixture(scope="module")
def two_by_two(tmp):
  """Trains, checkpoints after ``K`` steps and restores that checkpoint: one launch."""
  ckpt = tmp / "ckpt_2x2"
  args = ["--train", *LAUNCHES["2x2"][1]]
  if _has_orbax():
    args += ["--ckpt", str(ckpt), "--restore", str(ckpt)]
  reports, arrays = _launch(tmp, 2, 2, *args)
  return reports, arrays, ckpt


@pytest.fixture(scope="module")
def four_by_one(tmp, two_by_two):
  ckpt = two_by_two[2]
  args = ["--train", *LAUNCHES["4x1"][1], *(["--restore", str(ckpt)] if _has_orbax() else [])]
  return _launch(tmp, 4, 1, *args)


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
def test_each_process_sees_the_global_devices(request, launch):
  reports = request.getfixturevalue(LAUNCHES[launch][0])[0]
  processes, devices = (int(n) for n in launch.split("x"))
  assert [r["process_index"] for r in reports] == list(range(processes))
  for r in reports:
    assert r["process_count"] == processes
    assert len(r["local_devices"]) == devices
    assert r["global_device_count"] == processes * devices
  # Every process has its own devices.
  all_devices = [d for r in reports for d in r["local_devices"]]
  assert len(set(all_devices)) == processes * devices
  # Each process fed its own block of rows: together they cover the global batch once.
  for layout in LAUNCHES[launch][1]:
    blocks = sorted(r["training"][f"{layout}/rows"] for r in reports)
    assert blocks == [
        [i * BATCH // processes, (i + 1) * BATCH // processes] for i in range(processes)
    ]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("launch", "layout"), TRAINED)
def test_final_state_equals_single_process_run(request, reference, launch, layout, name):
  arrays = request.getfixturevalue(LAUNCHES[launch][0])[1]
  ref = reference[name]
  for i, per_process in enumerate(arrays):
    got = _select(per_process, f"{layout}['{name}']")
    diff = _diff(got, ref)
    print(f"{launch} {layout} {name} process {i}: max abs diff to single process {diff:.3g}")
    assert diff <= TOL, (i, diff)
    # The params moved: the comparison is not between two initial states.
    params = [k for k in ref if k.startswith(".params")]
    init = _flat(init_params())  # every optimizer starts from these
    assert max(np.max(np.abs(ref[k] - init[k[len(".params") :]])) for k in params) > 1e-3
  # Every process ends with the same global state, bit for bit.
  for per_process in arrays[1:]:
    assert _bitwise(
        _select(per_process, f"{layout}['{name}']"), _select(arrays[0], f"{layout}['{name}']")
    )


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
def test_fsdp_splits_state_across_processes(request, launch):
  reports = request.getfixturevalue(LAUNCHES[launch][0])[0]
  processes = len(reports)
  for r in reports:
    for name in NAMES:
      if "dp" in LAUNCHES[launch][1]:
        assert r["training"][f"dp/{name}"]["held_fraction"] == 1.0
      held = r["training"][f"fsdp/{name}"]["held_fraction"]
      print(f"{launch} fsdp {name} process {r['process_index']}: holds {held:.4f} of the state")
      # Only the few tensors no device count divides (scalars, the 1-unit output bias, and
      # ADAS's step sizes of the 1-unit output layer's shapes) stay replicated.
      assert 1 / processes <= held < 1 / processes + 0.02, (name, held)


# Checkpoints.


def _need_orbax():
  if not _has_orbax():
    pytest.skip("orbax-checkpoint is not installed (the 'examples' extra)")


def test_checkpoint_written_by_every_process(two_by_two):
  _need_orbax()
  ckpt = two_by_two[2]
  files = [p.name for p in ckpt.rglob("*")]
  # Orbax's OCDBT format: each process writes its shards under ocdbt.process_<index>.
  assert "ocdbt.process_0" in files and "ocdbt.process_1" in files, files


def test_restore_by_same_process_count_continues_bit_for_bit(two_by_two):
  _need_orbax()
  for name in NAMES:
    for i, per_process in enumerate(two_by_two[1]):
      got = _select(per_process, f"restored['{name}']")
      straight = _select(per_process, f"fsdp['{name}']")
      assert _bitwise(got, straight), (name, i, _diff(got, straight))


def test_restore_by_four_processes_continues(two_by_two, four_by_one):
  _need_orbax()
  for name in NAMES:
    straight = _select(two_by_two[1][0], f"fsdp['{name}']")
    for i, per_process in enumerate(four_by_one[1]):
      got = _select(per_process, f"restored['{name}']")
      diff = _diff(got, straight)
      print(f"saved 2x2, restored 4x1 {name} process {i}: max abs diff {diff:.3g}")
      assert diff <= TOL, (name, i, diff)


def test_restore_by_one_process_on_one_device_continues(two_by_two):
  _need_orbax()
  arrays = run_restore(str(two_by_two[2]))  # this test process: one process, one device
  for name in NAMES:
    got = _select(arrays, f"restored['{name}']")
    straight = _select(two_by_two[1][0], f"fsdp['{name}']")
    diff = _diff(got, straight)
    print(f"saved 2x2, restored 1x1 {name}: max abs diff {diff:.3g}")
    assert diff <= TOL, (name, diff)


# Faults.

DEATH_MESSAGE = re.compile(
    r"another task died|tasks are unhealthy|leader task was preempted/died|Gloo .* failed"
)


@pytest.mark.parametrize("die", [1, 0], ids=["worker_dies", "coordinator_dies"])
def test_survivors_exit_with_an_error_when_a_process_dies(tmp, die):
  out = tmp / f"fault_{die}"
  out.mkdir()
  argv = [os.path.abspath(__file__), "--out", str(out), "--die", str(die)]
  argv += ["--init-timeout", "120", "--heartbeat-timeout", str(HEARTBEAT_S)]
  results = multihost.launch_local(argv, 2, 1, LAUNCH_TIMEOUT_S, env=WORKER_ENV)
  dead, survivor = results[die], results[1 - die]
  assert dead.returncode == DIE_CODE, dead.stderr[-3000:]
  assert f"step {DIE_AFTER - 1}" in dead.stdout  # it trained before it died
  # The survivor ended by itself (not killed at the launcher's deadline), with an error.
  assert survivor.returncode is not None, survivor.stdout[-2000:]
  assert survivor.returncode != 0
  assert DEATH_MESSAGE.search(survivor.stderr), survivor.stderr[-3000:]
  waited = survivor.wall_s - dead.wall_s
  print(f"process {die} died; process {1 - die} exited {waited:.1f}s later: {survivor.returncode}")
  assert waited < FAULT_BOUND_S


if __name__ == "__main__":
  _worker()
