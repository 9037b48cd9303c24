"""``describe()`` of the small ResNet, Transformer LM and ViT of model_zoo, by strategy.

The structures come from ``trace_structure`` (forward order, roles from use);
the tables are what docs/your_model.md shows. Run:

    python -m benchmarks.describe_models            # per layer, the three strategies side by side
    python -m benchmarks.describe_models --full vit # describe() itself, per leaf (resnet, lm, vit)
"""

from __future__ import annotations

import sys

import jax

import caadam_jax

from . import model_zoo

STRATEGIES = caadam_jax.STRATEGY_NAMES


def structures() -> dict[str, caadam_jax.Structure]:
  """The traced structure of each model (shapes only)."""

  def trace(model, *inputs, **kwargs):
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs, **kwargs))
    return caadam_jax.trace_structure(model.apply, variables, *inputs, **kwargs)

  return {
      "resnet": trace(model_zoo.ResNet(), model_zoo.RESNET_INPUT, train=False),
      "lm": trace(model_zoo.TransformerLM(), model_zoo.LM_INPUT),
      "vit": trace(model_zoo.ViT(), model_zoo.IMAGES),
  }


def summary(structure: caadam_jax.Structure) -> str:
  """One line per counted layer: connections, depth and each strategy's factor."""
  by_strategy = {
      strategy: {
          r.layer: r.factor for r in caadam_jax.describe(structure, strategy=strategy, show=False)
      }
      for strategy in STRATEGIES
  }
  width = max(len(str(layer)) for layer in by_strategy[STRATEGIES[0]])
  stats = structure.statistics
  assert stats is not None, "the models here all have counted layers"
  lines = [
      f"c_min={stats.c_min:g}, c_med={stats.c_med:g}, c_max={stats.c_max:g}, D={stats.num_layers}; "
      "layers not listed (norms, tokens, positional embeddings) get factor 1",
      f"{'layer':<{width}}  {'connections':>11}  {'depth':>5}  "
      + "  ".join(f"{s:>14}" for s in STRATEGIES),
  ]
  for layer, record in structure.layers.items():
    name = "/".join(map(str, layer)) or "<root>"
    cells = "  ".join(f"{by_strategy[s][name]:>14.4f}" for s in STRATEGIES)
    lines.append(f"{name:<{width}}  {record.connections:>11}  {record.depth:>5}  {cells}")
  return "\n".join(lines)


def main(args: list[str]) -> None:
  full = "--full" in args
  names = [a for a in args if a != "--full"]
  for name, structure in structures().items():
    if names and name not in names:
      continue
    if not full:
      print(f"## {name}")
      print(summary(structure))
      print()
      continue
    for strategy in STRATEGIES:
      print(f"## {name}, {strategy}")
      print(caadam_jax.describe(structure, strategy=strategy, as_string=True))
      print()


if __name__ == "__main__":
  main(sys.argv[1:])
