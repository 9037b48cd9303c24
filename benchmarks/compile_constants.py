"""Compile and step time of a jitted train step with per-layer factors, against Adam.

A CaAdam factor is a constant per layer. Handed to XLA as a literal, each distinct
factor made its layer's fused Adam kernel distinct, and XLA compiles every distinct
kernel anew: a train step of 125 equal layers compiled about 2x (on a loaded machine
up to 5x) slower than Adam's. ``caadam_jax`` hands distinct factors to XLA as runtime
values (``apply_factors``: the outputs of a ``lax.cond`` whose branches return the
same literals and compute nothing), so equal layers share one kernel again; where
literals would make at most 16 kernels distinct (the zoo models) they stay literals. Two
reports:

* the train step (default): forward, backward, update and apply, jitted and
  compiled afresh (``jax.jit(step).lower(...).compile()``), for ``adam``,
  ``caadam`` with each named strategy and a user formula (``fan_in_depth``), and
  ``adamw_layer_decay`` against ``optax.adamw``, on MLPs of ``--layers`` Dense
  layers (16x16 + bias, tanh; equal layers, so ``additive`` and
  ``multiplicative`` give one factor there, ``depth``, the formula and layer
  decay one per layer), each also with ``factors_in_state=True`` (``-state``: the
  factors held in the optimizer state, entry operands of the step), and on the model
  zoo's ResNet and Transformer LM
  (``--models``; structures from ``trace_structure``). Each round compiles every
  optimizer once (in reversed order every other round, so that no optimizer is
  always compiled first or last: ``--reps`` is even) and keeps every executable,
  then each of ``--steps`` rounds steps every executable once; medians, and ratios
  to the baseline as the median over rounds of the ratio within a round; and, since
  two compiles of one program can step a few percent apart (layout), one step ratio
  per compile round (the optimizer's executable of that round against its
  baseline's) with its mean and 95% t interval over the ``--reps`` rounds;
  ``adam-again`` (Adam compiled again) shows the floor of these ratios, and
  ``adam-carry`` (Adam whose state also carries as many scalars as
  ``caadam-depth-state`` holds factors, passed through unchanged) what held factors
  cost a step by being inputs and outputs alone; the number of distinct fused
  computations in each compiled HLO.
* ``--update-only``: one ``update + apply_updates`` of ``--layers`` dense layers
  with the number of distinct fused computations in the compiled HLO, for
  ``adam``, controls (one shared constant, per-layer learning rates through
  ``multi_transform``, factors behind an ``optimization_barrier``) and the
  strategies.

    python -m benchmarks.compile_constants [--layers 125,1000] [--models resnet,transformer] [--reps 2]
    python -m benchmarks.compile_constants --layers= --models transformer,transformer-12 --reps 2
    python -m benchmarks.compile_constants --update-only [--layers 100] [--reps 3]
    python -m benchmarks.compile_constants --order-check 4 [--layers 125] [--steps 300]
    python -m benchmarks.compile_constants --factor-cost 1000 [--reps 4] [--steps 300]

``--order-check``: why the train step report balances the order of compilation: it
compiles copies of Adam's step one after another and prints each one's step ratio to
the first. ``--factor-cost LEAVES``: what ``apply_factors`` costs a call per distinct
factor, alone (``factor_cost``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import chex
import jax
import jax.numpy as jnp
import optax

import caadam_jax
from examples import cli_types

from . import model_zoo
from . import stats
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


def candidates(
    layers: int, structure: caadam_jax.Structure
) -> dict[str, Callable[[], optax.GradientTransformation]]:
  return {
      "adam": lambda: optax.adam(1e-3),
      "adam*1.5": lambda: optax.chain(optax.adam(1e-3), optax.scale(1.5)),
      "per-layer-lr": lambda: per_layer_lr(layers),
      **{
          f"caadam-{s}": (lambda s=s: caadam_jax.caadam(1e-3, strategy=s, structure=structure))
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
  # The layers are in natural path order by construction (depth refuses to guess it).
  structure = caadam_jax.infer_structure(params)
  txs = {name: make() for name, make in candidates(layers, structure).items()}
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


def fan_in_depth(record: caadam_jax.LayerRecord, stats: caadam_jax.Statistics, g: Any) -> float:
  """A user formula: ``1 / sqrt(fan_in * (1 + depth))``, distinct per layer even on equal layers."""
  del stats, g
  return 1.0 / math.sqrt(math.prod(record.shapes[0][:-1]) * (1 + record.depth))


# Near 1, as for deep models: 0.75 ** 1000 would underflow float32 to 0 (one shared factor).
LAYER_DECAY = 0.99


def carry_scalars(count: int) -> optax.GradientTransformation:
  """A transform whose state is ``count`` float32 scalars, passed through unchanged."""
  return optax.GradientTransformation(
      lambda params: tuple(jnp.float32(i) for i in range(count)),
      lambda updates, state, params=None: (updates, state),
  )


def train_optimizers(
    structure: caadam_jax.Structure, params: Any
) -> dict[str, tuple[Callable[[], Any], str]]:
  """Name -> (make the optimizer, the name of its baseline: adam, or adamw for layer decay)."""
  # As many scalars as caadam-depth-state holds factors: what holding them costs a step
  # when they take part in nothing (the entries of a step's inputs and outputs).
  held = len(
      jax.tree.leaves(
          caadam_jax.caadam(
              1e-3, strategy="depth", structure=structure, factors_in_state=True
          ).init(params)
      )
  ) - len(jax.tree.leaves(optax.adam(1e-3).init(params)))
  return {
      "adam": (lambda: optax.adam(1e-3), "adam"),
      # The same optimizer again: its ratio is what the design measures between two
      # executables that should be equal (the floor every other ratio sits on).
      "adam-again": (lambda: optax.adam(1e-3), "adam"),
      "adam-carry": (lambda: optax.chain(optax.adam(1e-3), carry_scalars(held)), "adam"),
      **{
          f"caadam-{s}": (
              lambda s=s: caadam_jax.caadam(1e-3, strategy=s, structure=structure),
              "adam",
          )
          for s in caadam_jax.STRATEGY_NAMES
      },
      "caadam-formula": (
          lambda: caadam_jax.caadam(1e-3, strategy=fan_in_depth, structure=structure),
          "adam",
      ),
      **{
          f"caadam-{s}-state": (
              lambda s=s: caadam_jax.caadam(
                  1e-3, strategy=s, structure=structure, factors_in_state=True
              ),
              "adam",
          )
          for s in caadam_jax.STRATEGY_NAMES
      },
      "caadam-formula-state": (
          lambda: caadam_jax.caadam(
              1e-3, strategy=fan_in_depth, structure=structure, factors_in_state=True
          ),
          "adam",
      ),
      "adamw": (lambda: optax.adamw(1e-3, weight_decay=1e-4), "adamw"),
      "adamw-layer-decay": (
          lambda: caadam_jax.adamw_layer_decay(
              1e-3, LAYER_DECAY, weight_decay=1e-4, structure=structure
          ),
          "adamw",
      ),
      "adamw-layer-decay-state": (
          lambda: caadam_jax.adamw_layer_decay(
              1e-3, LAYER_DECAY, weight_decay=1e-4, structure=structure, factors_in_state=True
          ),
          "adamw",
      ),
  }


def train_models(layers: list[int], models: list[str]) -> dict[str, tuple[Any, Any, Any]]:
  """Name -> (loss(params, batch), params, batch)."""
  out: dict[str, tuple[Any, Any, Any]] = {}
  for n in layers:
    forward, abstract, x = _mlp(n)
    params = step_cost.materialize(jax.tree.map(lambda a: a.shape, abstract), 0)
    out[f"mlp-{n}"] = (
        lambda p, b, forward=forward: jnp.mean(forward(p, b) ** 2),
        params,
        jnp.ones((8, x.shape[1])),
    )
  if "resnet" in models:
    model = model_zoo.ResNet()
    variables = model.init(jax.random.key(0), model_zoo.RESNET_INPUT, train=False)
    rest = {k: v for k, v in variables.items() if k != "params"}
    out["zoo-resnet"] = (
        lambda p, b, model=model, rest=rest: jnp.mean(
            cast(jax.Array, model.apply({"params": p, **rest}, b, train=False)) ** 2
        ),
        variables["params"],
        model_zoo.RESNET_INPUT,
    )
  # The zoo's Transformer (d 8, 2 blocks: a 0.5-1 ms step of ~290 tiny kernels), and the
  # same class at a size where kernels do work (d 64, 12 blocks, 32 tokens: ~15 ms).
  lms = {
      "transformer": ("zoo-transformer", model_zoo.TransformerLM(), model_zoo.LM_INPUT),
      "transformer-12": (
          "transformer-12",
          model_zoo.TransformerLM(vocab=256, d=64, heads=4, num_layers=12, max_len=32),
          jnp.zeros((4, 32), jnp.int32),
      ),
  }
  for key, (name, model, tokens) in lms.items():
    if key in models:
      variables = model.init(jax.random.key(0), tokens)
      out[name] = (
          lambda p, b, model=model: jnp.mean(cast(jax.Array, model.apply({"params": p}, b)) ** 2),
          variables["params"],
          tokens,
      )
  return out


def _mlp(n: int):
  from . import trace_cost

  return trace_cost.mlp(n)


def _train_step(loss, tx: optax.GradientTransformation) -> Callable[..., Any]:
  """One training step: gradient of ``loss``, ``tx``'s update, new params and state."""

  def step(params, state, batch):
    grads = jax.grad(loss)(params, batch)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def _round_robin(executables: list[list[Any]], batch, steps: int) -> list[list[float]]:
  """Seconds of each step of each ``[compiled step, live (params, state)]``, per round.

  Each of ``steps`` rounds runs one step of every executable, the first one rotating
  so that none always runs first; ``live`` is replaced by the step's output.
  """
  times: list[list[float]] = [[] for _ in executables]
  for i in range(steps):
    for k in range(len(executables)):
      j = (i + k) % len(executables)
      compiled, live = executables[j]
      start = time.perf_counter()
      executables[j][1] = jax.block_until_ready(compiled(*live, batch))
      times[j].append(time.perf_counter() - start)
  return times


def measure_train_step(
    loss,
    params,
    batch,
    reps: int,
    steps: int,
    only: set[str] | None = None,
    log: Callable[[str], None] = print,
    donate: bool = False,
) -> dict[str, dict[str, Any]]:
  """Optimizer -> compile and step seconds, their ratios to its baseline, distinct fusions.

  Each round compiles every optimizer once (fresh ``jit``, ``lower``, ``compile``), in
  the table's order in even rounds and reversed in odd ones, and keeps every
  executable, so that each optimizer is compiled as often early as late (``reps``
  even): the step time of an executable might depend on when in the process it was
  compiled (``order_check`` measures it; ``adam-again`` shows what is left between
  two copies of one program). Then each of ``steps`` rounds
  runs one step of every executable (the first one rotating); an optimizer's time in
  a round is the mean over its executables. ``compile_ratio`` and ``step_ratio`` are
  medians over rounds of the ratio to the baseline of the same round (pairing cancels
  most of a loaded machine's drift). ``step_ratio_per_compile``: for each compile
  round, the median step of the optimizer's executable of that round over the
  baseline's; ``step_ratio_mean`` and ``step_ratio_interval`` (95%, t over rounds)
  summarize them, so the spread between compiles is in the interval. ``only``: the
  optimizers to measure (with their baselines); None for all. ``donate``: the step
  donates its params and state (as ``jax.jit(..., donate_argnums=(0, 1))``), so state
  entries that pass through unchanged (held factors) alias their inputs instead of
  being copied.
  """
  if reps < 2 or reps % 2:
    raise ValueError(f"reps must be even (as many compiles early as late), got {reps}")
  structure = caadam_jax.trace_structure(lambda p, b: loss(p, b), params, batch)
  txs, baseline = {}, {}
  table = train_optimizers(structure, params)
  if only is not None:
    unknown = only - set(table)
    if unknown:
      raise ValueError(f"unknown optimizers {sorted(unknown)}; known: {list(table)}")
    only = only | {table[name][1] for name in only}
  for name, (make, base) in table.items():
    if only is not None and name not in only:
      continue
    try:
      txs[name] = make()
      txs[name].init(params)
      baseline[name] = base
    except ValueError as e:  # e.g. layer decay on a model without repeated blocks
      txs.pop(name, None)
      log(f"  {name}: skipped ({type(e).__name__}: {str(e)[:100]})")
  names = list(txs)
  compile_s: dict[str, list[float]] = {n: [] for n in names}
  step_s: dict[str, list[float]] = {n: [] for n in names}
  owners: list[str] = []  # the optimizer of each executable
  executables: list[list[Any]] = []  # [compiled step, (params, state)]
  fusions: dict[str, int] = {}
  for rep in range(reps):
    for name in names if rep % 2 == 0 else names[::-1]:
      state = txs[name].init(params)
      start = time.perf_counter()
      compiled = (
          jax.jit(_train_step(loss, txs[name]), donate_argnums=(0, 1) if donate else ())
          .lower(params, state, batch)
          .compile()
      )
      compile_s[name].append(time.perf_counter() - start)
      own = jax.tree.map(jnp.copy, (params, state))  # a donated step consumes its inputs
      owners.append(name)
      executables.append([compiled, compiled(*own, batch)])  # + warm-up
      hlo_text = compiled.as_text()
      assert hlo_text is not None  # a compiled CPU/GPU program has its HLO
      fusions[name] = distinct_fusions(hlo_text)
  times = _round_robin(executables, batch, steps)
  for i in range(steps):
    for name in names:
      step_s[name].append(
          statistics.mean(t[i] for t, owner in zip(times, owners, strict=True) if owner == name)
      )

  def paired(times: dict[str, list[float]], name: str) -> float:
    base = times[baseline[name]]
    return statistics.median(t / b for t, b in zip(times[name], base, strict=True))

  # Executables differ from one compile to the next (layout, placement), which the
  # rounds of steps above cannot average out: they pair the same executables every
  # time. So also one ratio per compile round (the median step of the optimizer's
  # executable of that round over its baseline's), with a t interval over rounds.
  median_of = {
      (owners[k], k // len(names)): statistics.median(times[k]) for k in range(len(owners))
  }

  per_compile = {
      n: [median_of[n, rep] / median_of[baseline[n], rep] for rep in range(reps)] for n in names
  }

  def interval(ratios: list[float]) -> tuple[float, float]:
    low, high = stats.t_interval([r - 1.0 for r in ratios])
    return 1.0 + low, 1.0 + high

  return {
      n: {
          "baseline": baseline[n],
          "compile_s": statistics.median(compile_s[n]),
          "compile_ratio": paired(compile_s, n),
          "step_s": statistics.median(step_s[n]),
          "step_ratio": paired(step_s, n),
          "step_ratio_per_compile": per_compile[n],
          "step_ratio_mean": statistics.mean(per_compile[n]),
          "step_ratio_interval": interval(per_compile[n]),
          "distinct_fusions": fusions[n],
      }
      for n in names
  }


def order_check(layers: int, copies: int, steps: int) -> list[float]:
  """Step ratio of each of ``copies`` identical Adam train steps to the first compiled.

  The steps are compiled one after another, then timed one step each per round (the
  first one rotating); each ratio is the median over rounds. Equal programs: any
  ratio away from 1 is what the order of compilation alone does to step time.
  """
  loss, params, batch = train_models([layers], [])[f"mlp-{layers}"]
  tx = optax.adam(1e-3)
  executables = []
  for _ in range(copies):
    compiled = jax.jit(_train_step(loss, tx)).lower(params, tx.init(params), batch).compile()
    executables.append([compiled, compiled(params, tx.init(params), batch)])
  times = _round_robin(executables, batch, steps)
  return [
      statistics.median(t / b for t, b in zip(times[k], times[0], strict=True))
      for k in range(copies)
  ]


def factor_cost(leaves: int, reps: int, calls: int) -> dict[str, dict[str, float]]:
  """What the factors' mechanism costs a jitted program per distinct factor, alone.

  ``leaves`` 16x16 arrays, each multiplied by a factor, three ways: ``shared`` (one
  runtime scalar for all: the kernels' work, without distinct factors), ``apply_factors``
  (``caadam_jax``'s own path, through ``scale_by_structure`` with a formula of the
  depth: ``leaves`` distinct concrete factors, which ``apply_factors`` hands to XLA as
  the outputs of its ``lax.cond`` when they would make more than
  ``MAX_KERNELS_FROM_LITERALS`` kernels distinct, and as literals otherwise) and
  ``literals`` (the same factors as constants, each kernel distinct). Each of ``reps``
  rounds compiles the three in turn (the first one rotating), then ``calls`` rounds
  call each executable once.

  Returns:
    Way -> median compile seconds and median call seconds (over all rounds), and
    ``per_factor_us``: the median over call rounds of (the way's time - ``shared``'s,
    same round) / ``leaves``, in microseconds.
  """
  tree = {f"Dense_{i}": {"kernel": jnp.ones((16, 16), jnp.float32)} for i in range(leaves)}

  def factor_at(depth: int) -> float:
    return 1.0 + (depth + 1) / leaves

  scale = caadam_jax.scale_by_structure(
      lambda record, layer_stats, g: factor_at(record.depth),
      structure=caadam_jax.infer_structure(tree),  # Dense_i at depth i
  )

  def shared(t):
    f = jax.lax.optimization_barrier(jnp.int32(1)).astype(jnp.float32)
    return jax.tree.map(lambda x: x * f, t)

  ways: dict[str, Callable[[Any], Any]] = {
      "shared": shared,
      "apply_factors": lambda t: scale.update(t, optax.EmptyState())[0],
      "literals": lambda t: {
          f"Dense_{i}": {"kernel": t[f"Dense_{i}"]["kernel"] * factor_at(i)} for i in range(leaves)
      },
  }
  names = list(ways)
  compile_s: dict[str, list[float]] = {n: [] for n in names}
  executables: list[list[Any]] = []
  outputs: dict[str, Any] = {}
  for rep in range(reps):
    for k in range(len(names)):
      name = names[(rep + k) % len(names)]
      start = time.perf_counter()
      # A new function each time: jit would reuse the executable of one it has seen.
      compiled = jax.jit(lambda t, way=ways[name]: way(t)).lower(tree).compile()
      compile_s[name].append(time.perf_counter() - start)
      outputs[name] = jax.block_until_ready(compiled(tree))
      executables.append([name, compiled])
  # The library's path and the literals scale by the same factors, exactly.
  chex.assert_trees_all_equal(outputs["apply_factors"], outputs["literals"])
  call_s: dict[str, list[list[float]]] = {n: [] for n in names}
  for i in range(calls):
    this_round: dict[str, list[float]] = {n: [] for n in names}
    for k in range(len(executables)):
      name, compiled = executables[(i + k) % len(executables)]
      start = time.perf_counter()
      jax.block_until_ready(compiled(tree))
      this_round[name].append(time.perf_counter() - start)
    for n in names:
      call_s[n].append(this_round[n])
  return {
      n: {
          "compile_s": statistics.median(compile_s[n]),
          "call_s": statistics.median(t for r in call_s[n] for t in r),
          "per_factor_us": statistics.median(
              1e6 * (statistics.mean(a) - statistics.mean(b)) / leaves
              for a, b in zip(call_s[n], call_s["shared"], strict=True)
          ),
      }
      for n in names
  }


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
  parser.add_argument(
      "--layers", default=None, help="comma-separated layer counts (default 125; empty: none)"
  )
  parser.add_argument(
      "--models",
      default="resnet,transformer",
      help="comma-separated: resnet, transformer (the zoo's), transformer-12 (d 64, 12 blocks)",
  )
  parser.add_argument("--update-only", action="store_true")
  parser.add_argument("--rows", type=cli_types.positive_int, default=128)
  parser.add_argument("--cols", type=cli_types.positive_int, default=256)
  parser.add_argument(
      "--reps",
      type=cli_types.positive_int,
      default=None,
      help="even for the train step (default 2)",
  )
  parser.add_argument("--steps", type=cli_types.positive_int, default=30)
  parser.add_argument(
      "--optimizers", default=None, help="comma-separated train-step optimizers (default all)"
  )
  parser.add_argument(
      "--donate", action="store_true", help="the train step donates its params and state"
  )
  parser.add_argument(
      "--factor-cost",
      type=cli_types.non_negative_int,
      default=0,
      metavar="LEAVES",
      help="only time LEAVES 16x16 arrays scaled by distinct factors (apply_factors) "
      "against one shared runtime scalar and against literals",
  )
  parser.add_argument(
      "--order-check",
      type=cli_types.non_negative_int,
      default=0,
      metavar="COPIES",
      help="only compile COPIES identical Adam steps in a row and print each one's step ratio",
  )
  args = parser.parse_args(argv)
  if args.update_only:
    return update_only(int(args.layers or 100), args.rows, args.cols, args.reps or 3)
  command = "command: python -m benchmarks.compile_constants " + " ".join(
      sys.argv[1:] if argv is None else argv
  )
  if args.factor_cost:
    print(command)
    print("machine:", json.dumps(step_cost.machine_info()))
    reps = args.reps or 2
    results = factor_cost(args.factor_cost, reps, args.steps)
    print(
        f"{args.factor_cost} arrays of 16x16, each times a factor; {reps} rounds compiling "
        f"each way once, then {args.steps} rounds calling every executable once; medians; "
        "per factor: (call - shared's call, same round) / arrays"
    )
    print(f"  {'way':<15}{'compile s':>10}{'call ms':>9}{'per factor us':>15}")
    for name, r in results.items():
      print(
          f"  {name:<15}{r['compile_s']:>10.3f}{1e3 * r['call_s']:>9.3f}"
          f"{r['per_factor_us']:>15.3f}"
      )
    return 0
  if args.order_check:
    layers = int(args.layers or 125)
    print(command)
    print("machine:", json.dumps(step_cost.machine_info()))
    ratios = order_check(layers, args.order_check, args.steps)
    print(
        f"{args.order_check} copies of optax.adam's {layers}-layer train step, compiled one "
        f"after another; step ratio to the first, median over {args.steps} rounds:",
        " ".join(f"{r:.3f}" for r in ratios),
    )
    return 0
  args.reps = 2 if args.reps is None else args.reps
  # --layers= (empty): the model zoo only.
  layers = [int(n) for n in ("125" if args.layers is None else args.layers).split(",") if n]
  models = [m for m in args.models.split(",") if m]
  unknown = set(models) - {"resnet", "transformer", "transformer-12"}
  if unknown or any(n < 1 for n in layers) or not (layers or models):
    parser.error(f"bad --layers/--models: {args}")
  if args.reps < 2 or args.reps % 2:
    parser.error(
        f"--reps must be even for the train step (as many compiles early as late): {args.reps}"
    )
  print(command)
  print("machine:", json.dumps(step_cost.machine_info()))
  print(
      f"train step (grad + update + apply{'; params and state donated' if args.donate else ''}), "
      f"fresh jit+lower+compile; {args.reps} rounds, each "
      "compiling every optimizer once (order reversed every other round; every executable "
      f"kept), then {args.steps} rounds of one step of every executable; seconds are medians, "
      "ratios the median over rounds of the ratio to the baseline of the same round (adam; "
      "adamw for layer decay); per compile round: the median step of the optimizer's "
      "executable of that compile round over its baseline's (what varies from one compile "
      "to the next, which the rounds of steps do not average out); adam-again: adam "
      "compiled again (the floor of the ratios); "
      "adam-carry: adam whose state also carries, unchanged, as many scalars as "
      "caadam-depth-state holds factors; fusions: distinct fused computations in the compiled HLO"
  )
  for model, (loss, params, batch) in train_models(layers, models).items():
    leaves = len(jax.tree.leaves(params))
    print(f"{model} ({leaves} leaves)", flush=True)
    only = set(args.optimizers.split(",")) if args.optimizers else None
    results = measure_train_step(
        loss, params, batch, args.reps, args.steps, only, donate=args.donate
    )
    print(
        f"  {'optimizer':<22}{'vs':>6}{'compile s':>10}{'ratio':>7}{'step ms':>9}{'ratio':>7}"
        f"{'fusions':>9}   step ratio per compile round: mean [95% t interval]; each round"
    )
    for name, r in results.items():
      low, high = r["step_ratio_interval"]
      print(
          f"  {name:<22}{r['baseline']:>6}{r['compile_s']:>10.2f}{r['compile_ratio']:>7.2f}"
          f"{1e3 * r['step_s']:>9.3f}{r['step_ratio']:>7.2f}{r['distinct_fusions']:>9d}"
          f"   {r['step_ratio_mean']:.3f} [{low:.3f}, {high:.3f}];"
          f" {' '.join(f'{x:.3f}' for x in r['step_ratio_per_compile'])}",
          flush=True,
      )
  return 0


def update_only(layers: int, rows: int, cols: int, reps: int) -> int:
  print("machine:", json.dumps(step_cost.machine_info()))
  print(
      f"{layers} dense layers of kernel ({rows}, {cols}) + bias, {reps} alternating compiles each"
  )
  results = measure(layers, rows, cols, reps)
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
