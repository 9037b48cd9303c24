"""The composable form: CaAdam transforms inside Optax chains, schedules and partitions.

Three things on a Flax MLP trained on scikit-learn's bundled 8x8 digits (no download):

1. ``caadam_jax.caadam`` is a chain, and the structure transforms chain with anything:
   ``optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(),
   caadam_jax.scale_by_depth(), optax.scale_by_learning_rate(schedule))``
   (checked: without the clipping it gives exactly ``caadam(schedule, strategy="depth")``).
2. Hyperparameters, the scaling factor included, can be injected and scheduled:
   ``optax.inject_hyperparams(caadam_jax.caadam)(learning_rate=..., scaling_factor=<schedule>)``
   (here the additive factor ramps from 0, plain Adam, to 0.95).
3. Inside ``optax.partition`` (and ``optax.masked``) a transform only sees its group,
   so ``structure=None`` refuses there (its statistics would be per group);
   ``structure=caadam_jax.infer_structure(full_params)`` gives the global statistics and
   a structure built from a group's params gives per-group ones on purpose. The factors
   of both are printed side by side, then both are trained.

    python examples/optax_chain.py                  # about a minute on 2 cores
    python examples/optax_chain.py --epochs 5
"""

from __future__ import annotations

import argparse

import _common  # examples/_common.py: helpers shared by the examples
import cli_types  # examples/cli_types.py: checked argparse types
import jax
import jax.numpy as jnp
import optax
from quickstart import MLP  # the quickstart's Flax MLP (examples/quickstart.py)

import caadam_jax


def probe_factors(tx, params) -> dict[str, float]:
  """The factor a stateless structure transform applies to each leaf: its update of all-ones."""
  ones = jax.tree.map(jnp.ones_like, params)
  scaled, _ = jax.jit(tx.update)(ones, tx.init(params), params)
  flat, _ = jax.tree_util.tree_flatten_with_path(scaled)
  return {
      jax.tree_util.keystr(path, simple=True, separator="/"): float(leaf.reshape(-1)[0])
      for path, leaf in flat
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
  parser.add_argument("--epochs", type=cli_types.positive_int, default=20)
  parser.add_argument("--learning-rate", type=cli_types.positive_float, default=1e-3)
  parser.add_argument("--batch-size", type=cli_types.positive_int, default=64)
  parser.add_argument("--seed", type=cli_types.non_negative_int, default=0)
  args = parser.parse_args(argv)

  data = tuple(jnp.asarray(a) for a in _common.digits_split(args.seed))
  model = MLP(hidden=(128, 64, 32))
  params = model.init(jax.random.key(args.seed), data[0][:1])["params"]
  steps_per_epoch = len(data[0]) // args.batch_size
  total_steps = args.epochs * steps_per_epoch
  results = {}

  # 1. A chain: clipping, Adam, depth factors, a scheduled learning rate.
  schedule = optax.warmup_cosine_decay_schedule(
      0.0,
      args.learning_rate,
      warmup_steps=max(1, total_steps // 10),
      decay_steps=max(2, total_steps),
  )
  chain = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.scale_by_adam(),
      caadam_jax.scale_by_depth(),
      optax.scale_by_learning_rate(schedule),
  )
  unclipped = optax.chain(
      optax.scale_by_adam(), caadam_jax.scale_by_depth(), optax.scale_by_learning_rate(schedule)
  )
  one_liner = caadam_jax.caadam(schedule, strategy="depth")

  @jax.jit
  def three_steps(params):
    grads = jax.grad(
        lambda p: jnp.mean(jnp.asarray(model.apply({"params": p}, data[0][:32])) ** 2)
    )(params)
    state_a, state_b = unclipped.init(params), one_liner.init(params)
    ua = ub = None
    for _ in range(3):
      ua, state_a = unclipped.update(grads, state_a, params)
      ub, state_b = one_liner.update(grads, state_b, params)
    return ua, ub

  ua, ub = three_steps(params)
  same = jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), ua, ub))
  print(
      f"1. chain(scale_by_adam, scale_by_depth, scale_by_learning_rate) == caadam(strategy='depth'): {same}"
  )
  losses, accuracy, _ = _common.train_classifier(
      chain, params, model, data, args.epochs, args.batch_size, args.seed
  )
  print(
      f"   clip + adam + depth + warmup-cosine schedule: final loss {losses[-1]:.4f}, "
      f"test accuracy {accuracy:.4f}"
  )
  results["chain"] = {"losses": losses, "accuracy": accuracy, "equals_caadam_depth": same}

  # 2. A scheduled scaling factor: additive CaAdam whose g ramps from 0 (Adam) to 0.95.
  ramp = optax.linear_schedule(0.0, 0.95, transition_steps=max(1, total_steps // 2))
  injected = optax.inject_hyperparams(caadam_jax.caadam)(
      learning_rate=args.learning_rate, scaling_factor=ramp, strategy="additive"
  )
  losses, accuracy, opt_state = _common.train_classifier(
      injected, params, model, data, args.epochs, args.batch_size, args.seed
  )
  assert isinstance(opt_state, optax.InjectStatefulHyperparamsState)
  g_end = float(jnp.asarray(opt_state.hyperparams["scaling_factor"]))
  print(
      f"2. inject_hyperparams(caadam)(scaling_factor=linear 0 -> 0.95 over {max(1, total_steps // 2)} steps): "
      f"g at the end {g_end:.3f}, final loss {losses[-1]:.4f}, test accuracy {accuracy:.4f}"
  )
  results["scheduled_scaling_factor"] = {"losses": losses, "accuracy": accuracy, "final_g": g_end}

  # 3. optax.partition: the hidden layers in one group, the classifier in another.
  head = f"Dense_{len(model.hidden)}"
  labels = {name: ("head" if name == head else "body") for name in params}
  print(f"\n3. optax.partition with groups {labels}")
  print("   statistics over the whole network (what describe(params) reports):")
  caadam_jax.describe(params, strategy="additive")
  body_params = {name: p for name, p in params.items() if labels[name] == "body"}
  print("   statistics inside the 'body' group (what the transform sees there):")
  caadam_jax.describe(body_params, strategy="additive")

  full_structure = caadam_jax.infer_structure(params)
  # structure=None inside a group refuses (it would see the group only); per-group
  # statistics, on purpose here for the comparison, take a structure per group.
  group_structures = {
      group: caadam_jax.infer_structure({n: p for n, p in params.items() if labels[n] == group})
      for group in ("body", "head")
  }
  per_group = optax.partition(
      {
          "body": caadam_jax.scale_by_connection_minmaxmedian(
              strategy="additive", structure=group_structures["body"]
          ),
          "head": caadam_jax.scale_by_connection_minmaxmedian(
              strategy="additive", structure=group_structures["head"]
          ),
      },
      labels,
  )
  global_stats = optax.partition(
      {
          "body": caadam_jax.scale_by_connection_minmaxmedian(structure=full_structure),
          "head": caadam_jax.scale_by_connection_minmaxmedian(structure=full_structure),
      },
      labels,
  )
  per_group_factors = probe_factors(per_group, params)
  global_factors = probe_factors(global_stats, params)
  print(f"   {'leaf':<16} {'group':<6} {'per-group factor':>17} {'global factor':>14}")
  for leaf in sorted(per_group_factors, key=lambda s: (s.split("/")[0].split("_")[-1], s)):
    print(
        f"   {leaf:<16} {labels[leaf.split('/')[0]]:<6} {per_group_factors[leaf]:>17.4f} "
        f"{global_factors[leaf]:>14.4f}"
    )
  print("   (the head is alone in its group: c_min == c_max there, so its per-group factor is 1)")
  results["factors"] = {"per_group": per_group_factors, "global": global_factors}

  for name, structures in (
      ("per-group statistics", group_structures),
      ("global statistics", dict.fromkeys(group_structures, full_structure)),
  ):
    tx = optax.partition(
        {
            group: caadam_jax.caadam(args.learning_rate, structure=structure, strategy="additive")
            for group, structure in structures.items()
        },
        labels,
    )
    losses, accuracy, _ = _common.train_classifier(
        tx, params, model, data, args.epochs, args.batch_size, args.seed
    )
    print(
        f"   partition, caadam additive with {name}: final loss {losses[-1]:.4f}, "
        f"test accuracy {accuracy:.4f}"
    )
    results[f"partition {name}"] = {"losses": losses, "accuracy": accuracy}
  return results


if __name__ == "__main__":
  main()
