"""Cost of layer decay: ``adamw_layer_decay`` vs ``optax.adamw`` vs the usual ``multi_transform``.

The usual Optax way to get layer-wise learning-rate decay is one AdamW per group,
``optax.multi_transform({group: optax.adamw(lr * decay ** (L + 1 - id))}, labels)``
with labels from regexes over parameter names (one optimizer state per group).
This script measures, on the parameter tree of a ViT-Ti (hidden 192, MLP 768,
12 blocks, patch 16, 1000 classes; about 5.7M parameters; float32):

* optimizer-state bytes and leaves, and whether the state tree equals
  ``optax.adamw``'s (``jax.tree.structure``);
* step time (``update`` + ``apply_updates``, jitted, params and state donated):
  the optimizers are timed round-robin (the starting one rotates every round),
  each sample the mean of back-to-back steps; reported as medians and as the
  median over rounds of the per-round ratio to ``optax.adamw`` (pairing within a
  round cancels most of a loaded machine's drift);
* compile time: ``jax.jit(step).lower(...).compile()`` of a fresh function,
  alternating optimizers, median of ``--compile-reps``, and its ratio.

Usage::

  nice -n 10 python -m benchmarks.layer_decay_cost            # writes results/layer_decay_cost.json
  python -m benchmarks.layer_decay_cost --quick                # a few seconds, nothing written
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Hashable

import jax
import jax.numpy as jnp
import optax

import caadam_jax
from examples import cli_types

from ._shared import RESULTS_DIR
from .step_cost import compile_step
from .step_cost import flat_machine_info
from .step_cost import materialize
from .step_cost import tree_bytes

DECAY, LR = 0.75, 1e-3


def vit_shapes(hidden=192, mlp=768, blocks=12, patch=16, classes=1000, tokens=197):
  """vision_transformer's ViT parameter layout (shapes only)."""
  h = hidden
  block = {
      "LayerNorm_0": {"scale": (h,), "bias": (h,)},
      "MultiHeadDotProductAttention_0": {
          name: {
              "kernel": (h, 3, h // 3) if name != "out" else (3, h // 3, h),
              "bias": (3, h // 3) if name != "out" else (h,),
          }
          for name in ("query", "key", "value", "out")
      },
      "LayerNorm_1": {"scale": (h,), "bias": (h,)},
      "MlpBlock_0": {
          "Dense_0": {"kernel": (h, mlp), "bias": (mlp,)},
          "Dense_1": {"kernel": (mlp, h), "bias": (h,)},
      },
  }
  transformer = {f"encoderblock_{i}": block for i in range(blocks)}
  transformer["posembed_input"] = {"pos_embedding": (1, tokens, h)}
  transformer["encoder_norm"] = {"scale": (h,), "bias": (h,)}
  return {
      "embedding": {"kernel": (patch, patch, 3, h), "bias": (h,)},
      "cls": (1, 1, h),
      "Transformer": transformer,
      "head": {"kernel": (h, classes), "bias": (classes,)},
  }


def multi_transform_layer_decay(params, decay=DECAY, lr=LR, num_blocks=12):
  """The usual way: labels from regexes over the names, one AdamW per group."""

  def label(path, _):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    match = re.search(r"encoderblock_(\d+)/", name)
    if match:
      return f"block_{match.group(1)}"
    if re.match(r"(embedding|cls|Transformer/posembed_input)", name):
      return "stem"
    return "head"

  ids = {"stem": 0, "head": num_blocks + 1, **{f"block_{i}": i + 1 for i in range(num_blocks)}}
  transforms: dict[Hashable, optax.GradientTransformation] = {
      g: optax.adamw(lr * decay ** (num_blocks + 1 - i)) for g, i in ids.items()
  }
  return optax.multi_transform(transforms, jax.tree_util.tree_map_with_path(label, params))


def optimizers(params):
  return {
      "optax.adamw": lambda: optax.adamw(LR),
      "adamw_layer_decay": lambda: caadam_jax.adamw_layer_decay(LR, DECAY),
      "multi_transform": lambda: multi_transform_layer_decay(params),
  }


def main(argv: list[str] | None = None) -> int:
  arg_list = sys.argv[1:] if argv is None else list(argv)
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
  parser.add_argument("--rounds", type=cli_types.positive_int, default=15)
  parser.add_argument(
      "--steps", type=cli_types.positive_int, default=10, help="back-to-back steps per sample"
  )
  parser.add_argument("--compile-reps", type=cli_types.positive_int, default=3)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default=str(RESULTS_DIR / "layer_decay_cost.json"))
  args = parser.parse_args(arg_list)
  shapes = vit_shapes(blocks=2, hidden=48, mlp=96) if args.quick else vit_shapes()
  if args.quick:
    args.rounds, args.steps, args.compile_reps = 3, 2, 1
  params0, grads = materialize(shapes, 0), materialize(shapes, 1)
  factories = optimizers(params0)
  if args.quick:
    factories["multi_transform"] = lambda: multi_transform_layer_decay(params0, num_blocks=2)
  info = flat_machine_info()
  print("machine:", json.dumps(info))
  names = list(factories)
  txs = {n: factories[n]() for n in names}
  states = {n: txs[n].init(params0) for n in names}
  reference = jax.tree.structure(states["optax.adamw"])
  compiled, compile_s = {}, {n: [] for n in names}
  live = {n: (jax.tree.map(jnp.copy, params0), states[n]) for n in names}
  for rep in range(args.compile_reps):
    for name in names[rep % len(names) :] + names[: rep % len(names)]:
      compiled[name], wall, _ = compile_step(txs[name], *live[name], grads)
      compile_s[name].append(wall)
  times: dict[str, list[float]] = {n: [] for n in names}

  def run(name, steps):
    params, state = live[name]
    t0 = time.perf_counter()
    for _ in range(steps):
      params, state = compiled[name](params, state, grads)
    jax.block_until_ready((params, state))
    live[name] = (params, state)
    return (time.perf_counter() - t0) / steps

  for name in names:
    run(name, 2)
  for rnd in range(args.rounds):
    for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
      times[name].append(run(name, args.steps))
  base = times["optax.adamw"]
  results = {}
  for name in names:
    ratios = [a / b for a, b in zip(times[name], base, strict=True)]
    results[name] = {
        "state_bytes": tree_bytes(states[name]),
        "state_leaves": len(jax.tree.leaves(states[name])),
        "state_tree_equals_adamw": jax.tree.structure(states[name]) == reference,
        "step_ms_median": 1e3 * statistics.median(times[name]),
        "step_ratio_paired_median": statistics.median(ratios),
        "compile_s_median": statistics.median(compile_s[name]),
        "compile_ratio": statistics.median(compile_s[name])
        / statistics.median(compile_s["optax.adamw"]),
        "step_ms_all": [1e3 * t for t in times[name]],
        "compile_s_all": compile_s[name],
    }
  n_params = sum(x.size for x in jax.tree.leaves(params0))
  command = " ".join(["python", "-m", "benchmarks.layer_decay_cost", *arg_list])
  print(f"command: {command}")
  print(
      f"ViT-Ti parameter tree: {n_params / 1e6:.2f}M params, "
      f"{len(jax.tree.leaves(params0))} leaves; {args.rounds} rounds x {args.steps} steps"
  )
  print(
      f"{'optimizer':<20}{'state MB':>10}{'leaves':>8}{'==adamw':>9}{'step ms':>9}"
      f"{'ratio':>7}{'compile s':>11}{'c.ratio':>8}"
  )
  for name, r in results.items():
    print(
        f"{name:<20}{r['state_bytes'] / 2**20:>10.2f}{r['state_leaves']:>8}"
        f"{str(r['state_tree_equals_adamw']):>9}{r['step_ms_median']:>9.2f}"
        f"{r['step_ratio_paired_median']:>7.3f}{r['compile_s_median']:>11.3f}"
        f"{r['compile_ratio']:>8.2f}"
    )
  if not args.quick:
    payload = {
        "benchmark": "layer_decay_cost",
        "command": command,
        "machine": info,
        "n_params": int(n_params),
        "rounds": args.rounds,
        "steps_per_sample": args.steps,
        "compile_reps": args.compile_reps,
        "results": results,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(payload, f, indent=1)
    print("wrote", args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
