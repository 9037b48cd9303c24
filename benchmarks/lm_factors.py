"""How large CaAdam's factors get on a language model, by strategy and layer kind.

Traces a GPT-2-small-sized pre-LN Transformer LM (vocab 50257, width 768, 12
blocks of 12 heads, MLP 3072, tied input/output embedding) with
``trace_structure`` (shapes only: no parameters are allocated), once with
separate q/k/v projections (Flax's ``MultiHeadDotProductAttention``) and once
with one fused ``(768, 3*768)`` projection (GPT-2's ``c_attn``), and prints each
layer kind's connection count and factor per strategy. Run:

    python -m benchmarks.lm_factors

The numbers quoted in docs/your_model.md come from this script.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import caadam_jax

from . import model_zoo

GPT2_SMALL = {"vocab": 50257, "d": 768, "heads": 12, "num_layers": 12, "max_len": 1024}
STRATEGIES = caadam_jax.STRATEGY_NAMES


def kind(layer: str) -> str:
  """The layer kind of a traced layer path: 'embedding (tied logits)', 'q/k/v', ..."""
  name = layer.rsplit("/", 1)[-1]
  return {
      "embed": "embedding (tied logits)",
      "query": "q/k/v",
      "key": "q/k/v",
      "value": "q/k/v",
      "qkv": "fused qkv",
      "out": "attention out",
      "attn_out": "attention out",
      "mlp_in": "mlp in",
      "mlp_out": "mlp out",
  }[name]


def lm_structure(fused_qkv: bool, **config) -> caadam_jax.Structure:
  model = model_zoo.TransformerLM(**{**GPT2_SMALL, **config}, fused_qkv=fused_qkv)
  tokens = jax.ShapeDtypeStruct((1, 16), jnp.int32)
  variables = jax.eval_shape(model.init, jax.random.key(0), tokens)
  return caadam_jax.trace_structure(model.apply, variables, tokens)


def factor_table(structure: caadam_jax.Structure) -> list[dict]:
  """One row per layer kind: connections, and the range of factors per strategy."""
  rows: dict[str, dict] = {}
  stats = structure.statistics
  assert stats is not None, "a language model has counted layers"
  for strategy in STRATEGIES:
    resolved = caadam_jax.STRATEGIES[strategy]
    g = resolved.default_scaling_factor
    for layer, record in structure.layers.items():
      name = caadam_jax.path_to_str(layer)
      row = rows.setdefault(kind(name), {"kind": kind(name), "connections": record.connections})
      f = float(np.asarray(resolved.formula(record, stats, g)))
      low, high = row.get(strategy, (f, f))
      row[strategy] = (min(low, f), max(high, f))
  return list(rows.values())


def format_table(title: str, structure: caadam_jax.Structure, rows: list[dict]) -> str:
  stats = structure.statistics
  assert stats is not None, "a language model has counted layers"
  lines = [
      f"{title}: {len(structure.layers)} layers, c_min={stats.c_min:g}, "
      f"c_med={stats.c_med:g}, c_max={stats.c_max:g}, D={stats.num_layers}",
      f"{'layer kind':<24} {'connections':>12} "
      + " ".join(
          f"{s + ' (g=' + str(caadam_jax.STRATEGIES[s].default_scaling_factor) + ')':>22}"
          for s in STRATEGIES
      ),
  ]
  for row in rows:
    cells = []
    for strategy in STRATEGIES:
      low, high = row[strategy]
      cells.append(f"{low:.4f}" if abs(high - low) < 5e-5 else f"{low:.4f} .. {high:.4f}")
    lines.append(
        f"{row['kind']:<24} {row['connections']:>12,} " + " ".join(f"{c:>22}" for c in cells)
    )
  return "\n".join(lines)


def report(fused_qkv: bool) -> str:
  """The table for GPT-2 small with separate or fused q/k/v projections."""
  structure = lm_structure(fused_qkv)
  title = "GPT-2 small, " + ("fused qkv (768, 2304)" if fused_qkv else "separate q/k/v")
  return format_table(title, structure, factor_table(structure))


def main() -> None:
  for fused in (False, True):
    print(report(fused))
    print()


if __name__ == "__main__":
  main()
