"""``describe()`` of the small ResNet, Transformer LM and ViT of model_zoo, by strategy.

The structures come from ``trace_structure`` (forward order, roles from use);
the tables are what docs/your_model.md shows. Run:

    python benchmarks/describe_models.py            # all three models
    python benchmarks/describe_models.py vit        # one of resnet, lm, vit
"""

from __future__ import annotations

import pathlib
import sys

import jax

import caadam_jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import model_zoo  # noqa: E402

STRATEGIES = ("additive", "multiplicative", "depth")


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


def main(names: list[str]) -> None:
  for name, structure in structures().items():
    if names and name not in names:
      continue
    for strategy in STRATEGIES:
      print(f"## {name}, {strategy}")
      print(caadam_jax.describe(structure, strategy=strategy, as_string=True))
      print()


if __name__ == "__main__":
  main(sys.argv[1:])
