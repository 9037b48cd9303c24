"""Per-leaf CaAdam factors: caadam 0.1.1 (published results) next to the method as described.

Prints a markdown table for the California Housing MLP of the published protocol
(8 -> 128 -> 64 -> 32 -> 1, ReLU) and writes it to
``benchmarks/results/published_factors.md``. Only shapes are used: no training,
no data, runs in seconds on CPU.

    python -m benchmarks.published_factors [--widths 8 128 64 32 1]
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp

import caadam_jax
from examples import cli_types

# Each strategy with its default scaling factor (as described; 0.1.1 has the same ones).
STRATEGIES: tuple[tuple[caadam_jax.StrategyName, float], ...] = tuple(
    (name, caadam_jax.STRATEGIES[name].default_scaling_factor) for name in caadam_jax.STRATEGY_NAMES
)


def mlp_shapes(widths: list[int]) -> dict:
  """Flax linen ``nn.Dense`` parameter shapes for an MLP with these widths."""
  return {
      f"Dense_{i}": {
          "kernel": jax.ShapeDtypeStruct((a, b), jnp.float32),
          "bias": jax.ShapeDtypeStruct((b,), jnp.float32),
      }
      for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=False))
  }


def factor_table(params) -> str:
  """The markdown table: one row per leaf in Keras order."""
  structure = caadam_jax.infer_structure(params)
  records, stats = caadam_jax.published.keras_caadam_records(params)
  published = {
      name: caadam_jax.published.keras_caadam_factors(params, strategy=name, scaling_factor=g)
      for name, g in STRATEGIES
  }
  published_default = caadam_jax.published.keras_caadam_factors(params)
  described = {name: structure.factors(name, g) for name, g in STRATEGIES}
  header = ["leaf", "shape", "c (0.1.1)", "c (described)", "CaAdam() 0.1.1"]
  for name, g in STRATEGIES:
    header += [f"{name} {g:g} 0.1.1", f"{name} {g:g} described"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  paths = {caadam_jax.path_to_str(path): path for path in structure.leaves}
  for key, record in records.items():  # Keras order
    path = paths[key]
    info = structure.leaves[path]
    row = [
        f"`{key}`",
        "x".join(str(d) for d in info.shape),
        str(record.connections),
        str(info.connections),
        f"{published_default[key]:.3f}",
    ]
    for name, _ in STRATEGIES:
      row += [f"{published[name][key]:.3f}", f"{float(described[name][path]):.3f}"]
    lines.append("| " + " | ".join(row) + " |")
  kernel_sizes = sorted(
      info.connections
      for info in structure.leaves.values()
      if info.connections is not None and len(info.shape) >= 2
  )
  described_layers = len(structure.layers)  # D of the method as described
  notes = [
      "",
      f"Kernel sizes {kernel_sizes}: c_min = {stats.c_min:g}, c_med = {stats.c_med:g}, "
      f"c_max = {stats.c_max:g} (both modes). 0.1.1: D = {stats.num_layers} variables, "
      "depth = index in the variable list; described: D = "
      f"{described_layers} layers.",
      "c (0.1.1) is what caadam 0.1.1 looks up: every kernel gets the last kernel's size, "
      "every bias 0. 'CaAdam()' is the package's default strategy (additive, g = 0.9).",
  ]
  return "\n".join(lines + notes) + "\n"


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
  parser.add_argument(
      "--widths", type=cli_types.positive_int, nargs="+", default=[8, 128, 64, 32, 1]
  )
  parser.add_argument(
      "--out",
      type=pathlib.Path,
      default=pathlib.Path(__file__).resolve().parent / "results" / "published_factors.md",
  )
  args = parser.parse_args(argv)
  widths = args.widths
  title = f"## Per-leaf factors, MLP {' -> '.join(map(str, widths))} (Flax `nn.Dense` names)\n\n"
  text = title + factor_table(mlp_shapes(widths))
  print(text)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(text)
  print(f"written to {args.out}")


if __name__ == "__main__":
  main()
