"""Step cost of CaAdam vs ``optax.adam``: time, bandwidth, compile time, state bytes.

For every optimizer (``caadam`` with each strategy, ``keras_caadam``, ``adas``
and ``optax.adam``) it builds ONE jitted step

    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)

with the params and optimizer-state buffers donated (the gradients are a fixed
input), on float32 param trees of several sizes and two layouts:

* ``large``: 4 dense layers ``{'Dense_i': {'kernel': (r_i, 1024), 'bias': (1024,)}}``
  with row counts in the ratio 1:2:3:4 (8 leaves; distinct sizes, so every
  CaAdam factor but the last depth factor differs from 1);
* ``many``: 100 dense layers ``{'Dense_i': {'kernel': (r_i, 256), 'bias': (256,)}}``
  with varying row counts (200 leaves, MLP-like);

and on the params of a real Flax model (``resnet``: the ResNet-20 of
``benchmarks/models.py`` in its CIFAR layout, 32x32x3 inputs, convolutions without
bias, normalized projection shortcuts; ~0.27M parameters, 65 leaves).

Everything is measured in one process. After warm-up the optimizers are timed
round-robin (the starting optimizer rotates every round); each sample is the
mean over enough back-to-back steps to last ~30 ms. Reported per optimizer:

* median step time over the rounds and its spread (25th/75th percentile);
* ``adam-control``: a second ``optax.adam``, compiled and timed like the others.
  Its ratios to ``adam`` are those of two identical programs, the noise floor of
  this machine (an A/A control); every missed target is printed with it;
* ``ratio``: the median over rounds of (step time / adam's step time in the same
  round) -- pairing within a round cancels most of the machine's drift -- and
  its 25th/75th percentiles; also the ratio of the medians;
* effective bandwidth under two byte models:
  - ``min`` (minimal traffic): every param, grad and full-size state tensor is
    read once, and params and state are written once. For Adam/CaAdam this is
    ``4 reads (p, g, mu, nu) + 3 writes (p, mu, nu) = 28 bytes/param``; in general
    ``param_bytes * 3 + state_bytes * 2`` (grads read, params read+written, state
    read+written);
  - ``hlo`` (as compiled): the sum over the compiled HLO entry computation's
    top-level instructions (fusions, copies, ...) of operand bytes + result bytes,
    i.e. what the compiled kernels actually move if nothing stays in cache;
* compile time: ``jax.jit(step).lower(...).compile()`` wall time (a fresh
  Python function each time, so nothing is cached), median of several
  alternating repetitions, and its ratio to adam's; also the process CPU time
  of the same calls (less sensitive to other jobs on a shared machine);
* optimizer-state bytes (sum of ``nbytes`` over the state leaves) and the
  number of kernels (top-level fusions and other non-trivial ops) in the
  compiled step.

Usage::

  python -m benchmarks.step_cost                      # 1M, 16M, 64M; writes JSON
  python -m benchmarks.step_cost --quick              # 64K params, large + many (12 layers)
  python -m benchmarks.step_cost --sizes 1M,16M --reps 15 --out /tmp/x.json

Writes ``--out`` (default ``benchmarks/results/step_cost_<backend>.json``, e.g.
``step_cost_cpu.json`` or ``step_cost_gpu.json``; ``--quick`` writes only when
``--out`` is given), rewritten after every case so that a run stopped early keeps
what it measured (``"complete": false`` until the last case).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import pathlib
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import caadam_jax
from examples import cli_types

from ._shared import RESULTS_DIR
from ._shared import machine_info
from .models import ResNet20

BASELINE = "adam"
CONTROL = "adam-control"


# ----------------------------------------------------------------------------- optimizers


def optimizers() -> dict[str, Callable[[optax.Params], optax.GradientTransformation]]:
  """Name -> factory (of the params tree) of every optimizer the benchmark compares.

  The caadam strategies get ``infer_structure(params)``: the benchmark trees' natural path
  order is their layer order by construction (``structure=None`` refuses, for depth, a
  tree whose equal shapes leave the order a guess).
  """
  opts: dict[str, Callable[[optax.Params], optax.GradientTransformation]] = {
      BASELINE: lambda params: optax.adam(1e-3),
      # A second optax.adam, compiled and timed apart: its ratio to adam's is what the
      # machine's noise alone gives (an A/A control), to read the other ratios against.
      CONTROL: lambda params: optax.adam(1e-3),
  }
  for s in caadam_jax.STRATEGY_NAMES:
    opts[f"caadam-{s}"] = lambda params, s=s: caadam_jax.caadam(
        1e-3, strategy=s, structure=caadam_jax.infer_structure(params)
    )
  opts["keras_caadam"] = lambda params: caadam_jax.published.keras_caadam(1e-3)
  opts["adas"] = lambda params: caadam_jax.adas()
  # Layer decay is AdamW with a per-group learning rate: its reference is optax.adamw.
  opts["adamw"] = lambda params: optax.adamw(1e-3)
  opts["adamw_layer_decay"] = lambda params: caadam_jax.adamw_layer_decay(1e-3, 0.75)
  return opts


# ----------------------------------------------------------------------------- param trees


def parse_size(text: str) -> int:
  text = text.strip().upper()
  mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:])
  return int(float(text[:-1]) * mult) if mult else int(text)


def large_tree_shapes(n: int) -> dict[str, dict[str, tuple[int, ...]]]:
  """4 dense layers, rows in ratio 1:2:3:4, 1024 columns, ~n parameters."""
  cols = min(1024, max(8, n // 64))
  total_rows = max(10, n // cols - 4)
  rows = [max(1, round(total_rows * w / 10)) for w in (1, 2, 3, 4)]
  return {f"Dense_{i}": {"kernel": (r, cols), "bias": (cols,)} for i, r in enumerate(rows)}


def many_tree_shapes(n: int, layers: int = 100) -> dict[str, dict[str, tuple[int, ...]]]:
  """``layers`` dense layers with varying rows, 256 columns, ~n parameters."""
  cols = min(256, max(4, n // (layers * 8)))
  weights = [1.0 + ((i * 37) % 10) / 3.0 for i in range(layers)]
  budget = n - layers * cols
  scale = budget / (cols * sum(weights))
  rows = [max(1, round(w * scale)) for w in weights]
  return {f"Dense_{i}": {"kernel": (r, cols), "bias": (cols,)} for i, r in enumerate(rows)}


def resnet_shapes() -> Any:
  model = ResNet20(size=32, conv_bias=False, shortcut_norm=True)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3))))
  return jax.tree.map(lambda s: tuple(s.shape), variables["params"])


def materialize(shapes: Any, seed: int) -> Any:
  """Random float32 arrays for a tree of shape tuples."""

  def is_shape(x):
    return isinstance(x, tuple) and all(isinstance(d, int) for d in x)

  leaves, treedef = jax.tree.flatten(shapes, is_leaf=is_shape)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  arrays = [0.01 * jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, leaves, strict=False)]
  return jax.tree.unflatten(treedef, arrays)


def tree_bytes(tree: Any) -> int:
  return int(sum(np.dtype(x.dtype).itemsize * math.prod(x.shape) for x in jax.tree.leaves(tree)))


def tree_size(tree: Any) -> int:
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------- HLO analysis

_DTYPE_BYTES = {
    "f32": 4,
    "f16": 2,
    "bf16": 2,
    "f64": 8,
    "s32": 4,
    "u32": 4,
    "s64": 8,
    "u64": 8,
    "s8": 1,
    "u8": 1,
    "pred": 1,
    "s16": 2,
    "u16": 2,
}
_SHAPE_RE = re.compile(r"\b(f32|f16|bf16|f64|s32|u32|s64|u64|s8|u8|pred|s16|u16)\[([0-9,]*)\]")
_INSTR_RE = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s+([\w\-]+)\((.*)$")
_FREE_OPS = {"parameter", "tuple", "get-tuple-element", "constant", "bitcast"}


def _shape_bytes(text: str) -> int:
  total = 0
  for dtype, dims in _SHAPE_RE.findall(text):
    n = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
    total += n * _DTYPE_BYTES[dtype]
  return total


def hlo_summary(hlo_text: str) -> dict[str, Any]:
  """Kernels and bytes moved by the entry computation of a compiled HLO module."""
  entry = hlo_text[hlo_text.index("\nENTRY") :]
  entry = entry[: entry.index("\n}") + 1]
  result_bytes: dict[str, int] = {}
  kernels: dict[str, int] = {}
  moved = 0
  for line in entry.splitlines()[1:]:
    m = _INSTR_RE.match(line)
    if not m:
      continue
    name, shape_text, op, rest = m.groups()
    out_bytes = _shape_bytes(shape_text)
    result_bytes[name] = out_bytes
    if op in _FREE_OPS:
      continue
    kernels[op] = kernels.get(op, 0) + 1
    args = rest.split(")", 1)[0]
    operands = re.findall(r"%([\w.\-]+)", args)
    moved += out_bytes + sum(result_bytes.get(o, 0) for o in operands)
  return {"kernels": sum(kernels.values()), "kernels_by_op": kernels, "hlo_bytes_moved": moved}


# ----------------------------------------------------------------------------- measuring


def make_step(tx: optax.GradientTransformation) -> Callable:
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def compile_step(tx, params, state, grads):
  """A fresh jit + lower + compile; returns (compiled, wall seconds, process CPU seconds)."""
  c0, t0 = time.process_time(), time.perf_counter()
  compiled = jax.jit(make_step(tx), donate_argnums=(0, 1)).lower(params, state, grads).compile()
  return compiled, time.perf_counter() - t0, time.process_time() - c0


def pct(values: list[float], q: float) -> float:
  return float(np.percentile(np.asarray(values), q))


def _start(factories: dict[str, Callable], params0, log) -> tuple[dict, dict, dict]:
  """Each optimizer and its live ``(params, state)``; ``errors`` for those that refuse the tree."""
  txs, live, errors = {}, {}, {}
  for name, factory in factories.items():
    try:
      txs[name] = factory(params0)
      state = jax.jit(txs[name].init)(params0)
      live[name] = (jax.tree.map(jnp.copy, params0), state)
    except ValueError as e:  # e.g. keras_caadam's documented division-by-zero error
      errors[name] = f"{type(e).__name__}: {e}"
      log(f"  {name}: skipped ({errors[name][:120]})")
  return txs, live, errors


def _rotated(names: list[str], k: int) -> list[str]:
  return names[k % len(names) :] + names[: k % len(names)]


def _compile_all(names, txs, live, grads, compile_reps):
  """Compiles every step ``compile_reps`` times, alternating optimizers; keeps the last."""
  compiled = {}
  compile_times, compile_cpu = {n: [] for n in names}, {n: [] for n in names}
  for rep in range(compile_reps):
    for name in _rotated(names, rep):
      params, state = live[name]
      compiled[name], wall, cpu = compile_step(txs[name], params, state, grads)
      compile_times[name].append(wall)
      compile_cpu[name].append(cpu)
  return compiled, compile_times, compile_cpu


def _time_rounds(names, compiled, live, grads, *, reps, warmup, sample_seconds):
  """Round-robin step times (seconds per step) of every optimizer, and the steps per sample."""

  def run(name: str, steps: int) -> float:
    params, state = live[name]
    step = compiled[name]
    t0 = time.perf_counter()
    for _ in range(steps):
      params, state = step(params, state, grads)
    jax.block_until_ready((params, state))
    elapsed = time.perf_counter() - t0
    live[name] = (params, state)
    return elapsed / steps

  # Warm-up, and the number of back-to-back steps per sample from adam's cost.
  for name in names:
    run(name, 2)
  t_est = statistics.median(run(BASELINE, 1) for _ in range(3))
  inner = int(min(200, max(1, math.ceil(sample_seconds / max(t_est, 1e-6)))))
  times: dict[str, list[float]] = {n: [] for n in names}
  for rnd in range(warmup + reps):
    sample = {name: run(name, inner) for name in _rotated(names, rnd)}
    if rnd >= warmup:
      for name in names:
        times[name].append(sample[name])
  return times, inner


def _optimizer_record(name, times, compile_times, compile_cpu, hlo, state_bytes, param_bytes):
  """The measurements of one optimizer, with its ratios to adam's."""
  t, base = times[name], times[BASELINE]
  paired = [a / b for a, b in zip(t, base, strict=False)]
  med = statistics.median(t)
  min_bytes = 3 * param_bytes + 2 * state_bytes[name]
  return {
      "median_ms": med * 1e3,
      "p25_ms": pct(t, 25) * 1e3,
      "p75_ms": pct(t, 75) * 1e3,
      "min_ms": min(t) * 1e3,
      "times_ms": [x * 1e3 for x in t],
      "ratio_paired_median": statistics.median(paired),
      "ratio_paired_p25": pct(paired, 25),
      "ratio_paired_p75": pct(paired, 75),
      "ratio_of_medians": med / statistics.median(base),
      "bytes_min_model": min_bytes,
      "bytes_hlo_model": hlo[name]["hlo_bytes_moved"],
      "gbps_min_model": min_bytes / med / 1e9,
      "gbps_hlo_model": hlo[name]["hlo_bytes_moved"] / med / 1e9,
      "compile_s_median": statistics.median(compile_times[name]),
      "compile_s_all": compile_times[name],
      "compile_ratio": statistics.median(compile_times[name])
      / statistics.median(compile_times[BASELINE]),
      "compile_cpu_s_median": statistics.median(compile_cpu[name]),
      "compile_cpu_s_all": compile_cpu[name],
      "compile_cpu_ratio": statistics.median(compile_cpu[name])
      / statistics.median(compile_cpu[BASELINE]),
      "state_bytes": state_bytes[name],
      "state_bytes_equal_adam": state_bytes[name] == state_bytes[BASELINE],
      "kernels": hlo[name]["kernels"],
      "kernels_by_op": hlo[name]["kernels_by_op"],
  }


def run_case(
    layout: str,
    shapes: Any,
    factories: dict[str, Callable],
    *,
    reps: int,
    warmup: int,
    compile_reps: int,
    sample_seconds: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
  """Compiles, times and sizes every optimizer's step on the param tree ``shapes``."""
  params0 = materialize(shapes, 0)
  grads = materialize(shapes, 1)
  param_bytes = tree_bytes(params0)
  txs, live, errors = _start(factories, params0, log)
  names = [n for n in factories if n in live]  # txs holds one whose init refused too
  compiled, compile_times, compile_cpu = _compile_all(names, txs, live, grads, compile_reps)
  hlo = {n: hlo_summary(compiled[n].as_text()) for n in names}
  state_bytes = {n: tree_bytes(live[n][1]) for n in names}
  times, inner = _time_rounds(
      names, compiled, live, grads, reps=reps, warmup=warmup, sample_seconds=sample_seconds
  )
  for name in names:
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(live[name][0])), name
  results = {
      name: _optimizer_record(
          name, times, compile_times, compile_cpu, hlo, state_bytes, param_bytes
      )
      for name in names
  }
  return {
      "layout": layout,
      "n_params": tree_size(params0),
      "n_leaves": len(jax.tree.leaves(params0)),
      "param_bytes": param_bytes,
      "steps_per_sample": inner,
      "rounds": reps,
      "warmup_rounds": warmup,
      "compile_reps": compile_reps,
      "errors": errors,
      "optimizers": results,
  }


def flat_machine_info() -> dict[str, Any]:
  """``_shared.machine_info()`` in the flat layout of the step-cost JSON files."""
  info = machine_info()
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  loadavg = info.get("loadavg_at_start")
  return {
      "cpu_model": info.get("cpu_model", info["processor"]),
      "cpu_count": info["cpu_count"],
      "cpus_usable": usable,
      "loadavg_start": list(loadavg) if loadavg is not None else None,
      "platform": info["platform"],
      "python": info["python"],
      **info["versions"],
      "devices": info["jax_devices"],
      "backend": jax.default_backend(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def format_case(case: dict[str, Any]) -> str:
  head = (
      f"\n== {case['layout']}: {case['n_params'] / 2**20:.2f}M params, {case['n_leaves']} leaves, "
      f"{case['rounds']} rounds x {case['steps_per_sample']} steps ==\n"
      f"{'optimizer':<22}{'median ms':>10}{'p25-p75 ms':>17}{'ratio':>7}{'[p25,p75]':>15}"
      f"{'GB/s min':>9}{'GB/s hlo':>9}{'compile s':>10}{'c.ratio':>8}{'cpu.ratio':>10}"
      f"{'state MB':>10}{'kern':>6}"
  )
  rows = [head]
  for name, r in case["optimizers"].items():
    rows.append(
        f"{name:<22}{r['median_ms']:>10.3f}{r['p25_ms']:>8.3f}-{r['p75_ms']:<8.3f}"
        f"{r['ratio_paired_median']:>7.3f} "
        f"[{r['ratio_paired_p25']:.3f},{r['ratio_paired_p75']:.3f}]"
        f"{r['gbps_min_model']:>9.2f}{r['gbps_hlo_model']:>9.2f}{r['compile_s_median']:>10.3f}"
        f"{r['compile_ratio']:>8.3f}{r['compile_cpu_ratio']:>10.3f}"
        f"{r['state_bytes'] / 2**20:>10.2f}{r['kernels']:>6d}"
    )
  for name, err in case["errors"].items():
    rows.append(f"{name:<22}skipped: {err[:100]}")
  return "\n".join(rows)


def check_targets(cases: list[dict[str, Any]]) -> list[str]:
  """The step-cost targets per caadam strategy; returns the misses.

  The targets: step ratio <= 1.03, compile ratio <= 1.2, state bytes equal to Adam's
  (stored as ``targets`` in the JSON); ``adamw_layer_decay``: step ratio to
  ``optax.adamw`` (paired per round) <= 1.05 and state bytes equal to AdamW's.
  """
  misses = []
  for case in cases:
    runs = case["optimizers"]
    control = runs.get(CONTROL)
    # Each miss names the A/A ratio of the same case: a miss within it is noise.
    noise = f" (A/A control: {control['ratio_paired_median']:.3f})" if control else ""
    if "adamw_layer_decay" in runs and "adamw" in runs:
      ld, ref = runs["adamw_layer_decay"], runs["adamw"]
      ratio = statistics.median(
          a / b for a, b in zip(ld["times_ms"], ref["times_ms"], strict=False)
      )
      where = f"{case['layout']} {case['n_params'] / 2**20:.2f}M adamw_layer_decay"
      if ratio > 1.05:
        misses.append(f"{where}: step ratio to adamw {ratio:.3f} > 1.05{noise}")
      if ld["state_bytes"] != ref["state_bytes"]:
        misses.append(f"{where}: state bytes {ld['state_bytes']} != adamw")
    noise_compile = f" (A/A control: {control['compile_ratio']:.3f})" if control else ""
    for name, r in runs.items():
      if not name.startswith("caadam-"):
        continue
      where = f"{case['layout']} {case['n_params'] / 2**20:.2f}M {name}"
      if r["ratio_paired_median"] > 1.03:
        misses.append(f"{where}: step ratio {r['ratio_paired_median']:.3f} > 1.03{noise}")
      if not r["state_bytes_equal_adam"]:
        misses.append(f"{where}: state bytes {r['state_bytes']} != adam")
      if r["compile_ratio"] > 1.2:
        misses.append(f"{where}: compile ratio {r['compile_ratio']:.3f} > 1.2{noise_compile}")
  return misses


def print_targets(misses: list[str]) -> None:
  print(
      "\ntargets (caadam strategies: step ratio <= 1.03, state bytes == adam, "
      "compile ratio <= 1.2; adamw_layer_decay: step ratio to adamw <= 1.05, state bytes "
      "== adamw):"
  )
  print("  all held" if not misses else "\n".join("  MISSED " + m for m in misses))


def merge_results(paths: list[str], out: str | None) -> int:
  """One result file from several runs (e.g. layouts run as separate commands)."""
  runs = [json.loads(pathlib.Path(p).read_text()) for p in paths]
  cases = [case for run in runs for case in run["cases"]]
  for case in cases:
    print(format_case(case))
  misses = check_targets(cases)
  print_targets(misses)
  if out:
    merged = dict(runs[0])
    merged.update(
        command=" && ".join(run["command"] for run in runs),
        date=max(run["date"] for run in runs),
        complete=all(run.get("complete", True) for run in runs),
        merged_from=[
            {
                "command": r["command"],
                "date": r["date"],
                "machine": r["machine"],
                "total_s": r["total_s"],
            }
            for r in runs
        ],
        total_s=sum(run["total_s"] for run in runs),
        target_misses=misses,
        cases=cases,
    )
    pathlib.Path(out).write_text(json.dumps(merged, indent=1))
    print("wrote", out)
  return 0


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
  parser.add_argument("--sizes", default=None, help="comma list, e.g. 1M,16M,64M (default)")
  parser.add_argument(
      "--layouts", default=None, help="default large,many,resnet (--quick: large,many)"
  )
  parser.add_argument(
      "--many-layers",
      type=cli_types.positive_int,
      default=None,
      help="layers of the 'many' layout (default 100 = 200 leaves; --quick: 12)",
  )
  parser.add_argument("--optimizers", default=None, help="comma list of names (default all)")
  parser.add_argument(
      "--reps", type=cli_types.positive_int, default=None, help="timed rounds (default 15)"
  )
  parser.add_argument("--warmup", type=cli_types.non_negative_int, default=2, help="untimed rounds")
  parser.add_argument("--compile-reps", type=cli_types.positive_int, default=None, help="default 3")
  parser.add_argument(
      "--sample-seconds", type=cli_types.positive_float, default=None, help="default 0.03"
  )
  parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds (< 60 s)")
  parser.add_argument("--out", default=None)
  parser.add_argument(
      "--merge",
      nargs="+",
      default=None,
      metavar="JSON",
      help="merge the cases of these result files into --out and report",
  )
  return parser


def _apply_defaults(args) -> None:
  """Fills the options left unset with the defaults of a full or a ``--quick`` run."""
  quick = args.quick
  args.sizes = args.sizes or ("64K" if quick else "1M,16M,64M")
  args.reps = args.reps or (3 if quick else 15)
  args.compile_reps = args.compile_reps or (1 if quick else 3)
  args.sample_seconds = args.sample_seconds or (0.005 if quick else 0.03)
  if quick:
    args.warmup = min(args.warmup, 1)
  args.layouts = args.layouts or ("large,many" if quick else "large,many,resnet")
  args.many_layers = args.many_layers or (12 if quick else 100)
  if not (args.out or quick):
    args.out = str(RESULTS_DIR / f"step_cost_{jax.default_backend()}.json")


def _param_trees(args):
  """``(layout, shapes)`` of every case to measure, in order."""
  for layout in args.layouts.split(","):
    if layout == "resnet":
      yield "resnet", resnet_shapes()
      continue
    shapes_of = {
        "large": large_tree_shapes,
        "many": lambda n: many_tree_shapes(n, args.many_layers),
    }
    for size in args.sizes.split(","):
      yield layout, shapes_of[layout](parse_size(size))


def _write_results(out, arg_list, info, cases, misses, total_s, final: bool) -> None:
  payload = {
      "benchmark": "step_cost",
      "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      "command": " ".join(["python", "-m", "benchmarks.step_cost", *arg_list]),
      "complete": final,
      "machine": info,
      "byte_models": {
          "min": "3*param_bytes + 2*state_bytes (grads read once, params and full state "
          "read and written once; 28 B/param for Adam/CaAdam)",
          "hlo": "sum over top-level instructions of the compiled entry computation of "
          "operand bytes + result bytes",
      },
      "targets": {
          "step_ratio_max": 1.03,
          "compile_ratio_max": 1.2,
          "state_bytes": "== adam",
          "adamw_layer_decay": "step ratio to adamw <= 1.05, state bytes == adamw",
      },
      "target_misses": misses,
      "total_s": total_s,
      "cases": cases,
  }
  path = pathlib.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(payload, indent=1))


def main(argv: list[str] | None = None) -> int:
  arg_list = sys.argv[1:] if argv is None else list(argv)
  args = _parser().parse_args(arg_list)
  if args.merge:
    return merge_results(args.merge, args.out)
  _apply_defaults(args)
  factories = optimizers()
  if args.optimizers:
    wanted = [BASELINE] + [n for n in args.optimizers.split(",") if n != BASELINE]
    factories = {n: factories[n] for n in wanted}
  info = flat_machine_info()
  print("machine:", json.dumps(info))
  print(
      "byte models: min = 3*param_bytes (grad read; param read+write) + 2*state_bytes "
      "(state read+write), i.e. 28 B/param for Adam; hlo = operand+result bytes of every "
      "top-level kernel of the compiled step"
  )
  cases: list[dict[str, Any]] = []
  t_start = time.perf_counter()

  def report(final: bool) -> list[str]:
    # Written after every case, so a run stopped by a time limit keeps what it measured.
    misses = check_targets(cases)
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if args.out:
      _write_results(args.out, arg_list, info, cases, misses, time.perf_counter() - t_start, final)
    return misses

  for layout, shapes in _param_trees(args):
    t0 = time.perf_counter()
    case = run_case(
        layout,
        shapes,
        factories,
        reps=args.reps,
        warmup=args.warmup,
        compile_reps=args.compile_reps,
        sample_seconds=args.sample_seconds,
        log=print,
    )
    case["wall_s"] = time.perf_counter() - t0
    cases.append(case)
    print(format_case(case), flush=True)
    report(final=False)
    gc.collect()

  print_targets(report(final=True))
  print(f"total {time.perf_counter() - t_start:.1f} s")
  if args.out:
    print("wrote", args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
