"""Layer-wise learning-rate decay on a small Flax ViT, in a few lines.

1. ``caadam_jax.describe_layer_decay`` shows the groups the rule finds (stem 0,
   block i -> i + 1, final norm and head L + 1) and each factor
   ``decay ** (L + 1 - id)``, from a structure traced from the forward pass.
2. ``optax.chain(optax.scale_by_adam(), caadam_jax.scale_by_layer_decay(0.75, ...))``
   gives each leaf exactly its factor times Adam's update (checked).
3. ``caadam_jax.adamw_layer_decay`` is ``optax.adamw`` with a per-group learning rate;
   its state is AdamW's (checked), and ``decay`` can be injected and scheduled.

    python examples/layer_decay.py        # a few seconds
"""

from __future__ import annotations

import argparse
from typing import cast

import cli_types  # examples/cli_types.py: checked argparse types
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import caadam_jax


class Block(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = x + nn.Dense(x.shape[-1], name="attn")(nn.LayerNorm()(x))
    return x + nn.Dense(x.shape[-1], name="mlp")(nn.LayerNorm()(x))


class TinyViT(nn.Module):
  num_blocks: int = 4

  @nn.compact
  def __call__(self, patches):
    x = nn.Dense(16, name="patch_embed")(patches)
    cls = self.param("cls_token", nn.initializers.zeros, (1, 1, 16))
    x = jnp.concatenate([jnp.tile(cls, [x.shape[0], 1, 1]), x], axis=1)
    x = x + self.param("pos_embed", nn.initializers.normal(0.02), (1, x.shape[1], 16))
    for i in range(self.num_blocks):
      x = Block(name=f"blocks_{i}")(x)
    return nn.Dense(10, name="head")(nn.LayerNorm(name="norm")(x[:, 0]))


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument("--decay", type=cli_types.decay_fraction, default=0.75)
  args = parser.parse_args(argv)
  model = TinyViT()
  patches = jnp.ones((2, 9, 12))
  variables = model.init(jax.random.key(0), patches)
  params = variables["params"]

  # 1. The groups and factors, from the forward pass.
  structure = caadam_jax.trace_structure(model.apply, variables, patches)
  rows = caadam_jax.describe_layer_decay(structure, args.decay)
  assert not isinstance(rows, str)  # as_string=False: the rows

  # 2. One step: Adam's update times each leaf's factor.
  grads = jax.tree.map(lambda p: jnp.cos(p) + 0.1, params)
  tx = optax.chain(
      optax.scale_by_adam(), caadam_jax.scale_by_layer_decay(args.decay, structure=structure)
  )
  adam = optax.scale_by_adam()
  ours, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  ref, _ = jax.jit(adam.update)(grads, adam.init(params), params)
  # No stacked leaves here, so every factor is a single float.
  factors = {r.leaf: cast(float, r.factor) for r in rows}
  flat_ours = {
      jax.tree_util.keystr(k, simple=True, separator="/"): v
      for k, v in jax.tree_util.tree_flatten_with_path(ours)[0]
  }
  flat_ref = {
      jax.tree_util.keystr(k, simple=True, separator="/"): v
      for k, v in jax.tree_util.tree_flatten_with_path(ref)[0]
  }
  max_error = max(
      float(np.max(np.abs(flat_ours[k] - flat_ref[k] * np.float32(factors[k])))) for k in flat_ref
  )
  print(f"\nmax |update - factor * Adam update| = {max_error:.2e}")

  # 3. AdamW with layer decay: AdamW's state; decay injected (here warmed up from 1 = AdamW).
  opt = caadam_jax.adamw_layer_decay(1e-3, args.decay, weight_decay=0.05, structure=structure)
  same_state = jax.tree.structure(opt.init(params)) == jax.tree.structure(
      optax.adamw(1e-3).init(params)
  )
  print("state tree equals optax.adamw's:", same_state)
  scheduled = optax.inject_hyperparams(caadam_jax.adamw_layer_decay)(
      learning_rate=1e-3,
      decay=optax.linear_schedule(1.0, args.decay, transition_steps=5),
      weight_decay=0.05,
      structure=structure,
  )
  state = scheduled.init(params)
  step = jax.jit(scheduled.update)
  for _ in range(6):
    _, state = step(grads, state, params)
  assert isinstance(state, optax.InjectStatefulHyperparamsState)
  final_decay = float(jnp.asarray(state.hyperparams["decay"]))
  print(f"scheduled decay after 6 steps: {final_decay:.3f}")
  return {
      "factors": factors,
      "max_error": max_error,
      "same_state": same_state,
      "final_decay": final_decay,
  }


if __name__ == "__main__":
  main()
