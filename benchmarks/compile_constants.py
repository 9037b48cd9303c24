"""Why ``depth`` compiles slower on many-layer models: one kernel per distinct constant.

A CaAdam factor is a compile-time constant per layer. XLA folds it into the
layer's fused Adam kernel, and identical fused kernels are compiled once, so the
compile cost follows the number of DISTINCT fused computations, not the number
of layers. This script builds ``--layers`` dense layers of one shape (so plain
Adam needs only a handful of distinct kernels) and compiles one
``update + apply_updates`` step of:

* ``adam``: ``optax.adam``;
* ``adam*1.5``: Adam times one shared constant (control: a constant by itself costs
  nothing);
* ``per-layer-lr``: Adam with a different constant learning-rate multiplier per layer,
  written with ``optax.multi_transform`` (control: not specific to CaAdam);
* ``caadam-additive``, ``caadam-multiplicative``: equal layers get equal factors;
* ``caadam-depth``: every layer gets its own factor;
* ``caadam-depth+barrier``: the depth factors passed through
  ``jax.lax.optimization_barrier`` (an attempt to keep them out of the kernels).

For each it prints the median compile wall and process-CPU time over
``--reps`` alternating repetitions, the ratio to Adam, the number of top-level
kernels and the number of distinct fused computations in the compiled HLO
(bodies compared with instruction names and metadata stripped).

    python -m benchmarks.compile_constants [--layers 100] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

import caadam_jax

from . import step_cost


def per_layer_lr(layers: int) -> optax.GradientTransformation:
  def labels(params):
    return {
        layer: jax.tree.map(lambda _, layer=layer: layer, leaves)
        for layer, leaves in params.items()
    }

  return optax.multi_transform(
      {f"Dense_{i}": optax.adam(1e-3 * (1.0 + i / layers)) for i in range(layers)}, labels
  )


def depth_behind_barrier() -> optax.GradientTransformation:
  def scale(updates, params=None):
    del params
    factors = caadam_jax.infer_structure(updates).factors("depth")
    # A barrier around all factors, as traced scalars, before they meet the updates.
    factors = jax.lax.optimization_barrier(
        {caadam_jax.path_to_str(path): jnp.float32(f) for path, f in factors.items()}
    )
    return jax.tree_util.tree_map_with_path(
        lambda path, u: u * factors[caadam_jax.path_to_str(path)], updates
    )

  return optax.chain(
      optax.scale_by_adam(), optax.stateless(scale), optax.scale_by_learning_rate(1e-3)
  )


def candidates(layers: int) -> dict[str, Callable[[], optax.GradientTransformation]]:
  return {
      "adam": lambda: optax.adam(1e-3),
      "adam*1.5": lambda: optax.chain(optax.adam(1e-3), optax.scale(1.5)),
      "per-layer-lr": lambda: per_layer_lr(layers),
      **{
          f"caadam-{s}": (lambda s=s: caadam_jax.caadam(1e-3, strategy=s))
          for s in caadam_jax.STRATEGY_NAMES
      },
      "caadam-depth+barrier": depth_behind_barrier,
  }


_NAME_RE = re.compile(r"%[\w.\-]+")
_META_RE = re.compile(
    r",?\s*(metadata|frontend_attributes|backend_config)=\{[^{}]*(\{[^{}]*\}[^{}]*)*\}"
)


def distinct_fusions(hlo_text: str) -> int:
  """Distinct bodies among the fused computations of a compiled HLO module."""
  bodies = set()
  for block in re.split(r"\n(?=\S)", hlo_text):
    header = block.split("\n", 1)[0]
    if not re.match(r"%?fused_computation|%?[\w.\-]*fused", header) or "ENTRY" in header:
      continue
    body = block.split("\n", 1)[1] if "\n" in block else ""
    body = _META_RE.sub("", body)
    bodies.add(_NAME_RE.sub("%v", body))
  return len(bodies)


def measure(layers: int, rows: int, cols: int, reps: int) -> dict[str, dict[str, float]]:
  """Name -> median compile wall/CPU seconds, kernels and distinct fused computations."""
  shapes = {f"Dense_{i}": {"kernel": (rows, cols), "bias": (cols,)} for i in range(layers)}
  params, grads = step_cost.materialize(shapes, 0), step_cost.materialize(shapes, 1)
  txs = {name: make() for name, make in candidates(layers).items()}
  states = {name: tx.init(params) for name, tx in txs.items()}
  wall: dict[str, list[float]] = {name: [] for name in txs}
  cpu: dict[str, list[float]] = {name: [] for name in txs}
  hlo = {}
  names = list(txs)
  for rep in range(reps):
    for name in names[rep % len(names) :] + names[: rep % len(names)]:
      compiled, t, c = step_cost.compile_step(txs[name], params, states[name], grads)
      wall[name].append(t)
      cpu[name].append(c)
      hlo[name] = compiled.as_text()
  return {
      name: {
          "compile_s": statistics.median(wall[name]),
          "compile_cpu_s": statistics.median(cpu[name]),
          "kernels": step_cost.hlo_summary(hlo[name])["kernels"],
          "distinct_fusions": distinct_fusions(hlo[name]),
      }
      for name in names
  }


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
  parser.add_argument("--layers", type=int, default=100)
  parser.add_argument("--rows", type=int, default=128)
  parser.add_argument("--cols", type=int, default=256)
  parser.add_argument("--reps", type=int, default=3)
  args = parser.parse_args(argv)

  print("machine:", json.dumps(step_cost.machine_info()))
  print(
      f"{args.layers} dense layers of kernel ({args.rows}, {args.cols}) + bias, "
      f"{args.reps} alternating compiles each"
  )
  results = measure(args.layers, args.rows, args.cols, args.reps)
  base = results["adam"]
  print(
      f"{'optimizer':<24}{'compile s':>10}{'ratio':>7}{'cpu s':>8}{'ratio':>7}"
      f"{'kernels':>9}{'distinct fusions':>18}"
  )
  for name, r in results.items():
    print(
        f"{name:<24}{r['compile_s']:>10.3f}{r['compile_s'] / base['compile_s']:>7.2f}"
        f"{r['compile_cpu_s']:>8.3f}{r['compile_cpu_s'] / base['compile_cpu_s']:>7.2f}"
        f"{r['kernels']:>9d}{r['distinct_fusions']:>18d}"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
