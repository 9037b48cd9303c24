"""How trace_structure's cost grows with the model, against jax.make_jaxpr (CPU).

The curve (default): MLPs of n Dense layers (16x16 kernels and biases, tanh; 2n
leaves) for n = 125 .. 5000, abstract shapes only. For each n, ``--repeats``
alternating calls of ``jax.make_jaxpr`` of the forward pass and of the whole
``trace_structure`` (which includes its own ``make_jaxpr``); medians and their
ratio. ``--memory`` adds peak Python allocations (``tracemalloc``) of one
``make_jaxpr`` and one ``trace_structure`` at the largest n, and of
``jax.eval_shape`` of one ``optax.adam`` and one ``caadam`` update on an
abstract 1B-parameter tree (nothing is allocated on the device).

``--resnet50``: the former report instead, a linen ResNet-50 (25.6M parameters):
``make_jaxpr``, ``trace_structure`` and ``infer_structure`` times.

    python -m benchmarks.trace_cost [--layers 125,250,500,1000,2000,5000] [--repeats 3] [--memory]
    python -m benchmarks.trace_cost --resnet50 [--repeats 5] [--image-size 224]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import caadam_jax
from examples import cli_types


class Bottleneck(nn.Module):
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = partial(nn.BatchNorm, use_running_average=not train)
    residual = x
    y = nn.relu(norm()(nn.Conv(self.filters, (1, 1), use_bias=False)(x)))
    y = nn.relu(norm()(nn.Conv(self.filters, (3, 3), self.strides, use_bias=False)(y)))
    y = norm()(nn.Conv(self.filters * 4, (1, 1), use_bias=False)(y))
    if residual.shape != y.shape:
      residual = norm()(nn.Conv(self.filters * 4, (1, 1), self.strides, use_bias=False)(residual))
    return nn.relu(residual + y)


class ResNet50(nn.Module):
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(64, (7, 7), (2, 2), use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.max_pool(x, (3, 3), (2, 2), "SAME")
    for stage, blocks in enumerate([3, 4, 6, 3]):
      for block in range(blocks):
        x = Bottleneck(64 * 2**stage, strides=2 if stage > 0 and block == 0 else 1)(x, train)
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


_T = TypeVar("_T")


def timed(fn: Callable[[], _T], repeats: int) -> tuple[_T, list[tuple[float, float]]]:
  """Wall and process-CPU seconds of each call (CPU time is robust to a loaded machine)."""
  times, results = [], []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    results.append(fn())
    times.append((time.perf_counter() - start, time.process_time() - start_cpu))
  return results[-1], times


def mlp(n: int, width: int = 16):
  """``(forward, abstract params, abstract input)`` of n Dense layers with tanh."""
  f32 = jnp.float32
  params = {
      f"Dense_{i}": {
          "kernel": jax.ShapeDtypeStruct((width, width), f32),
          "bias": jax.ShapeDtypeStruct((width,), f32),
      }
      for i in range(n)
  }

  def forward(p, x):
    for i in range(n):
      x = jnp.tanh(x @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"])
    return x

  return forward, params, jax.ShapeDtypeStruct((1, width), f32)


def peak_bytes(fn) -> int:
  """Peak Python allocations (tracemalloc) during one call."""
  tracemalloc.start()
  try:
    fn()
    return tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()


def machine_line() -> str:
  return (
      f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
      f"loadavg {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
      f"python {platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, "
      f"device {jax.devices()[0].platform}"
  )


def curve(layers: list[int], repeats: int, memory: bool) -> None:
  print(machine_line())
  print(
      f"MLP of n Dense layers (16x16 + bias, tanh), shapes only; {repeats} alternating calls "
      "each, medians (wall s); trace_structure includes its own make_jaxpr"
  )
  print(f"{'n layers':>9}{'leaves':>8}{'make_jaxpr':>12}{'trace_structure':>17}{'ratio':>7}")
  for n in layers:
    forward, params, x = mlp(n)
    make, trace = [], []
    for rep in range(repeats):
      for name in (["make", "trace"] if rep % 2 == 0 else ["trace", "make"]):
        start = time.perf_counter()
        if name == "make":
          # A fresh function each time, as trace_structure traces one: jax caches the
          # trace of a function it has seen.
          jax.make_jaxpr(lambda p, x, f=forward: f(p, x))(params, x)
          make.append(time.perf_counter() - start)
        else:
          structure = caadam_jax.trace_structure(forward, params, x)
          trace.append(time.perf_counter() - start)
          assert structure.layers[(f"Dense_{n - 1}",)].depth == n - 1
    m, t = statistics.median(make), statistics.median(trace)
    print(f"{n:>9}{2 * n:>8}{m:>12.3f}{t:>17.3f}{t / m:>7.2f}", flush=True)
  if not memory:
    return
  n = layers[-1]
  forward, params, x = mlp(n)
  make_peak = peak_bytes(lambda: jax.make_jaxpr(lambda p, x: forward(p, x))(params, x))
  trace_peak = peak_bytes(lambda: caadam_jax.trace_structure(forward, params, x))
  print(
      f"peak Python allocations (tracemalloc), {n} layers: make_jaxpr {make_peak / 2**20:.1f} MiB, "
      f"trace_structure {trace_peak / 2**20:.1f} MiB (ratio {trace_peak / make_peak:.2f})"
  )
  # 1B parameters, abstract: 64 layers of 3952x3952 kernels + biases.
  width, count = 3952, 64
  big = {
      f"Dense_{i}": {
          "kernel": jax.ShapeDtypeStruct((width, width), jnp.float32),
          "bias": jax.ShapeDtypeStruct((width,), jnp.float32),
      }
      for i in range(count)
  }
  n_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(big))
  for name, tx in [
      ("optax.adam", optax.adam(1e-3)),
      ("caadam depth", caadam_jax.caadam(1e-3, strategy="depth")),
      ("caadam additive", caadam_jax.caadam(1e-3)),
  ]:

    def update(tx=tx):
      state = jax.eval_shape(tx.init, big)
      return jax.eval_shape(tx.update, big, state, big)

    print(
        f"one update, {n_params / 1e9:.2f}B parameters (jax.eval_shape), {name}: "
        f"peak Python allocations {peak_bytes(update) / 2**20:.2f} MiB"
    )


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument("--repeats", type=cli_types.positive_int, default=3)
  parser.add_argument(
      "--layers", type=cli_types.positive_int_list, default=[125, 250, 500, 1000, 2000, 5000]
  )
  parser.add_argument("--memory", action="store_true")
  parser.add_argument("--resnet50", action="store_true")
  parser.add_argument("--image-size", type=cli_types.positive_int, default=224)
  args = parser.parse_args(argv)
  if not args.resnet50:
    return curve(args.layers, args.repeats, args.memory)

  model = ResNet50()
  x = jax.ShapeDtypeStruct((1, args.image_size, args.image_size, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))

  _, jaxpr_times = timed(lambda: jax.make_jaxpr(model.apply)(variables, x), args.repeats)
  structure, trace_times = timed(
      lambda: caadam_jax.trace_structure(model.apply, variables, x), args.repeats
  )
  _, infer_times = timed(lambda: caadam_jax.infer_structure(variables["params"]), args.repeats)

  print(
      f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
      f"python {platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, "
      f"device {jax.devices()[0].platform}"
  )
  stats = structure.statistics
  assert stats is not None, "ResNet-50 has counted layers"
  print(
      f"model: ResNet-50, {n_params / 1e6:.1f}M parameters, "
      f"{len(jax.tree.leaves(variables['params']))} leaves, "
      f"{len(structure.layers)} counted layers, D = {stats.num_layers}"
  )
  for name, times in [
      ("jax.make_jaxpr alone", jaxpr_times),
      ("trace_structure (incl. make_jaxpr)", trace_times),
      ("infer_structure", infer_times),
  ]:
    wall, cpu = [t[0] for t in times], [t[1] for t in times]
    print(
        f"{name:<36} wall median {statistics.median(wall):.3f} s (min {min(wall):.3f}), "
        f"CPU median {statistics.median(cpu):.3f} s, {len(times)} runs"
    )
  return structure, trace_times


if __name__ == "__main__":
  main()
