"""How long trace_structure takes on a ResNet-50-sized Flax model (CPU).

Builds a linen ResNet-50 (bottleneck blocks [3, 4, 6, 3], BatchNorm, ~25.6M
parameters) from abstract shapes (no weights are materialized), then times,
with several repetitions: ``jax.make_jaxpr`` of the forward pass alone, the
whole ``trace_structure`` call, and ``infer_structure`` for comparison. Prints
medians and machine information.

    python -m benchmarks.trace_cost [--repeats 5] [--image-size 224]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import caadam_jax


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


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--image-size", type=int, default=224)
  args = parser.parse_args(argv)

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
