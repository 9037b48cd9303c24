"""Multi-process training with CaAdam: one JAX process per host, one global mesh.

Every process runs this same script. It joins the others with
``jax.distributed.initialize``, builds one mesh over the devices of all processes,
creates the train state directly sharded on it, feeds its own slice of each global batch
with ``jax.make_array_from_process_local_data``, and runs the same jitted step. Each
process prints its view (process index, local and global devices) and the loss.

Two layouts (``--layout``):

* ``dp`` (data parallel): params and optimizer state replicated on every device, the
  batch split over all devices;
* ``fsdp`` (fully sharded): every tensor of the params and of the optimizer state
  split along its largest divisible axis over all devices (hence across processes), the
  batch split the same way.

Launcher mode, to try it on one machine (N local processes on the CPU, a coordinator on
127.0.0.1 at a free port, each process with ``--local-devices`` simulated devices)::

    python examples/multihost.py --launch 2 --local-devices 2 --layout fsdp

Worker mode: a cluster launcher starts this script as-is on every host. The process
group comes from, in this order:

1. ``--coordinator HOST:PORT --num-processes N --process-id I``;
2. ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
3. ``torchrun``-style ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``;
4. otherwise ``jax.distributed.initialize()`` detects the cluster by itself: SLURM
   (``srun``: ``SLURM_JOB_ID``, ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS``,
   ``SLURM_PROCID``, ``SLURM_LOCALID``), Open MPI (``mpirun``), Kubernetes and Cloud TPU
   (from the TPU VM's metadata).

``--heartbeat-timeout`` bounds how long the others wait once a process has died (they
then exit with JAX's "another task died" error instead of hanging). See
docs/multihost.md for what was tested.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import caadam_jax

try:  # examples/cli_types.py: checked argparse types
  import cli_types  # run as a script (examples/ on sys.path)
except ModuleNotFoundError:  # imported as examples.multihost (the multi-process tests' workers)
  from examples import cli_types

OPTIMIZERS = {
    "caadam-additive": lambda lr: caadam_jax.caadam(lr, strategy="additive"),
    "caadam-multiplicative": lambda lr: caadam_jax.caadam(lr, strategy="multiplicative"),
    "caadam-depth": lambda lr: caadam_jax.caadam(lr, strategy="depth"),
    "keras-caadam": caadam_jax.published.keras_caadam,
    "adas": caadam_jax.adas,
}
RESULT_PREFIX = "RESULT "

# ----------------------------------------------------------------------------- process group


def coordinator_address(text: str) -> str:
  """An argparse type: ``HOST:PORT`` with a port in 1..65535."""
  host, sep, port = text.rpartition(":")
  if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise argparse.ArgumentTypeError(
        f"must be HOST:PORT with a port in 1..65535 (e.g. 10.0.0.1:1234), got {text!r}"
    )
  return text


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
  """The worker's process-group options (the launcher sets them for each worker)."""
  parser.add_argument(
      "--coordinator",
      type=coordinator_address,
      default=None,
      help="HOST:PORT of process 0's coordinator",
  )
  parser.add_argument("--num-processes", type=cli_types.positive_int, default=None)
  parser.add_argument("--process-id", type=cli_types.non_negative_int, default=None)
  parser.add_argument(
      "--local-devices",
      type=cli_types.positive_int,
      default=None,
      help="CPU only: simulate this many devices in each process (default: the real ones)",
  )
  parser.add_argument(
      "--heartbeat-timeout",
      type=cli_types.positive_int,
      default=100,
      help="seconds without a heartbeat after which a process counts as dead and the others exit",
  )
  parser.add_argument(
      "--init-timeout",
      type=cli_types.positive_int,
      default=300,
      help="seconds to wait for all processes to join",
  )


def check_group(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """Exits with a usage error where the process-group arguments contradict each other."""
  group = (args.num_processes, args.process_id)
  if None not in group and args.process_id >= args.num_processes:
    parser.error(f"--process-id {args.process_id} must be < --num-processes {args.num_processes}")


def process_group(args: argparse.Namespace, env: Mapping[str, str] = os.environ):
  """``(coordinator, num_processes, process_id)`` from the arguments or the environment.

  Each is None when neither the arguments nor ``JAX_*`` / ``torchrun``-style variables
  give it; ``jax.distributed.initialize`` then detects it (SLURM, Open MPI, Cloud TPU).
  """
  coordinator = args.coordinator or env.get("JAX_COORDINATOR_ADDRESS")
  if coordinator is None and "MASTER_ADDR" in env and "MASTER_PORT" in env:
    coordinator = f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"

  def number(given, names):
    if given is not None:
      return given
    for name in names:
      if name in env:
        try:
          return int(env[name])
        except ValueError:
          raise ValueError(f"${name} must be an integer, got {env[name]!r}") from None
    return None

  return (
      coordinator,
      number(args.num_processes, ("JAX_NUM_PROCESSES", "WORLD_SIZE")),
      number(args.process_id, ("JAX_PROCESS_ID", "RANK")),
  )


def initialize(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> None:
  """``jax.distributed.initialize`` with the group of ``process_group`` and bounded timeouts.

  Call it before anything touches a JAX device. CPU collectives go through gloo (ignored
  by GPU and TPU backends). ``--local-devices`` simulates CPU devices.
  """
  if args.local_devices is not None:
    jax.config.update("jax_num_cpu_devices", args.local_devices)
  with contextlib.suppress(AttributeError):  # unknown to this JAX: keep its default
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  coordinator, num_processes, process_id = process_group(args, env)
  kwargs = {
      "initialization_timeout": args.init_timeout,
      "heartbeat_timeout_seconds": args.heartbeat_timeout,
  }
  if "shutdown_timeout_seconds" in inspect.signature(jax.distributed.initialize).parameters:
    kwargs["shutdown_timeout_seconds"] = args.heartbeat_timeout  # jax >= 0.8
  if (coordinator, num_processes, process_id) == (None, None, None):
    try:  # SLURM, Open MPI, Kubernetes, Cloud TPU: detected from their environment
      jax.distributed.initialize(**kwargs)
    except ValueError as e:  # none detected: one process, like `python multihost.py`
      print(f"no process group given or detected ({e}): running as a single process")
    return
  jax.distributed.initialize(coordinator, num_processes, process_id, **kwargs)
  check_agreement(num_processes, args.init_timeout)


def check_agreement(num_processes: int | None, timeout_s: int) -> None:
  """Raises unless every process was started with the same ``--num-processes``.

  The coordinator accepts a worker that claims a different group size, and the group
  then runs with the coordinator's size. Each process publishes its claim in the
  coordination service's key-value store and reads every other's, within ``timeout_s``.
  """
  if num_processes is None:
    return
  if jax.process_count() != num_processes:
    raise SystemExit(
        f"--num-processes {num_processes} disagrees with the group's {jax.process_count()} "
        "processes: start every worker with the same --num-processes"
    )
  from jax._src import distributed  # the coordination client (no public accessor)

  client = distributed.global_state.client
  if client is None:
    return
  client.key_value_set(f"caadam_multihost/num_processes/{jax.process_index()}", str(num_processes))
  for other in range(num_processes):
    claim = client.blocking_key_value_get(
        f"caadam_multihost/num_processes/{other}", timeout_s * 1000
    )
    if int(claim) != num_processes:
      raise SystemExit(
          f"process {other} was started with --num-processes {claim}, this one "
          f"({jax.process_index()}) with {num_processes}: start every worker with the same value"
      )


def describe_process() -> dict:
  """This process's view of the group."""
  return {
      "process_index": jax.process_index(),
      "process_count": jax.process_count(),
      "local_devices": [str(d) for d in jax.local_devices()],
      "global_device_count": jax.device_count(),
  }


# ----------------------------------------------------------------------------- layouts


def mesh_and_shardings(layout: str, abstract_state):
  """A 1-D mesh over all devices and the shardings of a state of the given shapes.

  ``dp`` replicates every leaf; ``fsdp`` splits each leaf along its largest axis that the
  device count divides (leaves with no such axis, like scalars, are replicated). The batch
  is split along its first axis in both. Returns ``(mesh, state_shardings,
  batch_sharding)``.
  """
  if layout not in ("dp", "fsdp"):
    raise ValueError(f"layout must be 'dp' or 'fsdp', got {layout!r}")
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ("devices",), axis_types=(AxisType.Auto,))

  def spec(leaf):
    shape = np.shape(leaf)
    divisible = [i for i, size in enumerate(shape) if size % n == 0 and size >= n]
    if layout == "dp" or not divisible:
      return NamedSharding(mesh, P())
    axis = max(divisible, key=lambda i: shape[i])
    return NamedSharding(mesh, P(*[("devices" if i == axis else None) for i in range(len(shape))]))

  return mesh, jax.tree.map(spec, abstract_state), NamedSharding(mesh, P("devices"))


def local_rows(batch_sharding: NamedSharding, global_shape: Sequence[int]) -> slice:
  """The rows of a global batch that this process's devices hold (one contiguous block)."""
  n = global_shape[0]
  blocks = sorted(
      {
          index[0].indices(n)[:2]
          for index in batch_sharding.addressable_devices_indices_map(tuple(global_shape)).values()
          if index is not None  # None: the device holds no part of the array
      }
  )
  if any(a[1] != b[0] for a, b in zip(blocks, blocks[1:], strict=False)):
    raise ValueError(f"this process's rows are not one contiguous block: {blocks}")
  return slice(blocks[0][0], blocks[-1][1])


def held_fraction(array: jax.Array) -> float:
  """The fraction of a global array's elements that this process holds (replicas counted once)."""
  shards = {str(s.index): s.data.size for s in array.addressable_shards}
  return sum(shards.values()) / array.size


def global_batch(batch_sharding: NamedSharding, *arrays: np.ndarray):
  """Each process passes its own rows of the global arrays; returns the global jax arrays."""
  rows = local_rows(batch_sharding, arrays[0].shape)
  return tuple(
      jax.make_array_from_process_local_data(batch_sharding, a[rows], a.shape) for a in arrays
  )


# ----------------------------------------------------------------------------- training


class MLP(nn.Module):
  """ReLU layers of ``hidden`` units, then one linear output."""

  hidden: Sequence[int] = (64, 32)

  @nn.compact
  def __call__(self, x):
    for units in self.hidden:
      x = nn.relu(nn.Dense(units)(x))
    return nn.Dense(1)(x)


def train(args: argparse.Namespace) -> dict:
  """Trains the MLP on a synthetic regression task; returns this process's report."""
  view = describe_process()
  tag = f"[process {view['process_index']}/{view['process_count']}]"
  print(
      f"{tag} local devices {view['local_devices']}, global devices {view['global_device_count']}",
      flush=True,
  )
  if args.batch_size % jax.device_count():
    raise ValueError(
        f"--batch-size {args.batch_size} must be a multiple of the global device count "
        f"{jax.device_count()}"
    )
  model, tx = MLP(tuple(args.hidden)), OPTIMIZERS[args.optimizer](args.learning_rate)

  def create():
    params = model.init(jax.random.key(0), jnp.ones((1, 8)))["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  mesh, shardings, batch_sharding = mesh_and_shardings(args.layout, jax.eval_shape(create))
  state = jax.jit(create, out_shardings=shardings)()  # created sharded, never whole on one device

  def loss_fn(params, x, y):
    return jnp.mean((model.apply({"params": params}, x) - y) ** 2)

  @jax.jit
  def train_step(state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y)
    return state.apply_gradients(grads=grads), loss

  # Every process draws the same global data (same seed) and feeds only its rows.
  rng = np.random.default_rng(0)
  w = rng.normal(size=(8, 1)).astype(np.float32)
  losses = []
  for step in range(args.steps):
    x = rng.normal(size=(args.batch_size, 8)).astype(np.float32)
    y = np.sin(x @ w).astype(np.float32)
    state, loss = train_step(state, *global_batch(batch_sharding, x, y))
    losses.append(float(loss))  # a replicated scalar: every process has it
    print(f"{tag} step {step} loss {losses[-1]:.6f}", flush=True)
  report = {
      **view,
      "layout": args.layout,
      "mesh": dict(mesh.shape),
      "losses": losses,
      "kernel_held_fraction": held_fraction(state.params["Dense_0"]["kernel"]),
      "params_checksum": float(
          sum(
              np.abs(a).sum()
              for a in jax.tree.leaves(multihost_utils.process_allgather(state.params, tiled=True))
          )
      ),
  }
  print(RESULT_PREFIX + json.dumps(report), flush=True)
  return report


# ----------------------------------------------------------------------------- launcher


class WorkerResult(NamedTuple):
  """What one local worker did: exit status (None if killed at the deadline), output, time."""

  process_id: int
  returncode: int | None
  stdout: str
  stderr: str
  wall_s: float


def free_port() -> int:
  """A free TCP port on the loopback interface (bound to port 0, then released)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch_local(
    worker_argv: Sequence[str],
    num_processes: int,
    local_devices: int,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> list[WorkerResult]:
  """Runs ``python *worker_argv`` as ``num_processes`` CPU processes joined on 127.0.0.1.

  Each worker gets ``--coordinator 127.0.0.1:PORT --num-processes N --process-id I
  --local-devices D`` appended, runs in its own process group, and is killed (the whole
  group) if it is still running ``timeout_s`` seconds after the start, or if the
  launcher itself is interrupted. Returns one result per worker, in process order.
  """
  if num_processes < 1 or local_devices < 1:
    raise ValueError(
        f"num_processes and local_devices must be >= 1, got {num_processes} and {local_devices}"
    )
  address = f"127.0.0.1:{free_port()}"
  child_env = dict(os.environ if env is None else env)
  child_env["JAX_PLATFORMS"] = "cpu"
  procs = []
  ended: list[float | None] = [None] * num_processes  # seconds to each worker's exit
  with contextlib.ExitStack() as files:
    outputs = [
        (
            files.enter_context(tempfile.TemporaryFile("w+")),
            files.enter_context(tempfile.TemporaryFile("w+")),
        )
        for _ in range(num_processes)
    ]
    t0 = time.monotonic()
    try:
      for i, (out, err) in enumerate(outputs):
        argv = [sys.executable, *worker_argv, "--coordinator", address]
        argv += ["--num-processes", str(num_processes), "--process-id", str(i)]
        argv += ["--local-devices", str(local_devices)]
        procs.append(
            subprocess.Popen(argv, stdout=out, stderr=err, env=child_env, start_new_session=True)
        )
      while any(e is None for e in ended) and time.monotonic() - t0 < timeout_s:
        for i, p in enumerate(procs):
          if ended[i] is None and p.poll() is not None:
            ended[i] = time.monotonic() - t0
        time.sleep(0.05)
    finally:  # at the deadline, or if the launcher is interrupted: kill every worker's group
      for p in procs:
        if p.poll() is None:
          os.killpg(p.pid, signal.SIGKILL)
          p.wait()
    results = []
    for i, (p, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
      out.seek(0)
      err.seek(0)
      killed = ended[i] is None
      results.append(
          WorkerResult(
              i, None if killed else p.returncode, out.read(), err.read(), ended[i] or timeout_s
          )
      )
  return results


def reports(results: Sequence[WorkerResult]) -> list[dict]:
  """The ``RESULT`` line of each worker's output, parsed (None for a worker without one)."""
  parsed = []
  for r in results:
    lines = [line for line in r.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    parsed.append(json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else None)
  return parsed


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument(
      "--launch",
      type=cli_types.positive_int,
      default=None,
      metavar="N",
      help="launcher mode: start N local worker processes on the CPU",
  )
  parser.add_argument(
      "--timeout", type=cli_types.positive_float, default=600, help="launcher mode: seconds"
  )
  parser.add_argument("--layout", choices=["dp", "fsdp"], default="dp")
  parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="caadam-multiplicative")
  parser.add_argument("--learning-rate", type=cli_types.positive_float, default=1e-3)
  parser.add_argument("--steps", type=cli_types.positive_int, default=20)
  parser.add_argument(
      "--hidden",
      type=cli_types.positive_int_list,
      default=[64, 32],
      help="hidden layer sizes, comma-separated",
  )
  parser.add_argument(
      "--batch-size", type=cli_types.positive_int, default=64, help="global batch size"
  )
  add_distributed_arguments(parser)
  args = parser.parse_args(argv)
  check_group(parser, args)

  if args.launch is None:  # worker mode
    initialize(args)
    return train(args)

  worker_argv = [os.path.abspath(__file__), "--layout", args.layout, "--optimizer", args.optimizer]
  worker_argv += ["--learning-rate", str(args.learning_rate), "--steps", str(args.steps)]
  worker_argv += ["--batch-size", str(args.batch_size)]
  worker_argv += ["--hidden", ",".join(map(str, args.hidden))]
  worker_argv += ["--heartbeat-timeout", str(args.heartbeat_timeout)]
  worker_argv += ["--init-timeout", str(args.init_timeout)]
  results = launch_local(worker_argv, args.launch, args.local_devices or 1, args.timeout)
  for r in results:
    status = "killed at the deadline" if r.returncode is None else f"exit {r.returncode}"
    print(f"--- process {r.process_id}: {status} after {r.wall_s:.1f}s")
    print(r.stdout, end="")
    if r.returncode != 0:
      print(r.stderr[-4000:], end="")
  out = {"returncodes": [r.returncode for r in results], "reports": reports(results)}
  if any(r.returncode != 0 for r in results):
    raise SystemExit(f"a worker failed: exit codes {out['returncodes']}")
  return out


if __name__ == "__main__":
  main()
