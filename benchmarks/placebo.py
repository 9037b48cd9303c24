"""The placebo control of the sweep: Adam with CaAdam's per-layer factors reassigned.

For an as-described strategy, :func:`placebo_tables` gives the same per-layer factor
values permuted across layers, and one uniform factor with the same mean step (the
parameter-weighted mean of the factors); :func:`placebo_spec` is the optimizer cell of
one such table. If the real factors do no better than permuted ones, the structure
carries no information.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import caadam_jax

from .optimizers import OptSpec


def scale_by_fixed_factors(table: dict[str, float]) -> optax.GradientTransformation:
  """Multiplies each leaf's update by ``table[leaf path]`` (paths as ``describe`` writes them)."""

  def update_fn(updates, state, params=None):
    del params

    def scale(path, u):
      return u * jnp.asarray(table[caadam_jax.path_to_str(path)], u.dtype)

    return jax.tree_util.tree_map_with_path(scale, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def _natural_order(params) -> caadam_jax.Structure:
  # The benchmark models name their layers in forward order (L0_..., Dense_0 ...), the order
  # the real cells' structure has; structure=None refuses, for depth, to guess it.
  return caadam_jax.infer_structure(params)


def layer_factors(
    params, strategy: caadam_jax.StrategyName
) -> tuple[list[str], dict[str, float], dict[str, int]]:
  """Layers in depth order, each layer's as-described factor and its parameter count."""
  rows = caadam_jax.describe(_natural_order(params), strategy=strategy, show=False)
  layers, factor, size = [], {}, {}
  for row in rows:
    if row.layer not in factor:
      layers.append(row.layer)
      factor[row.layer] = float(np.asarray(row.factor))
      size[row.layer] = 0
    size[row.layer] += int(np.prod(row.shape))
  return layers, factor, size


def placebo_tables(
    params, strategy: caadam_jax.StrategyName, n_permutations: int, seed: int
) -> dict[str, dict]:
  """The placebo factor assignments of one strategy: permutations and a uniform factor.

  Returns:
    ``{name: {"layers": {layer: factor}, "leaves": {leaf path: factor}}}`` for
    ``placebo_<strategy>_perm<k>`` (distinct assignments that differ from the
    real one) and ``placebo_<strategy>_uniform``.
  """
  layers, factor, size = layer_factors(params, strategy)
  rows = caadam_jax.describe(_natural_order(params), strategy=strategy, show=False)
  values = tuple(factor[lay] for lay in layers)
  if len(layers) <= 7:
    candidates = sorted({p for p in itertools.permutations(values) if p != values})
    rng = np.random.default_rng([seed, len(layers)])
    order = rng.permutation(len(candidates)) if candidates else []
    chosen = [candidates[i] for i in order[:n_permutations]]
  else:
    rng, chosen = np.random.default_rng([seed, len(layers)]), []
    for _ in range(1000 * n_permutations):
      p = tuple(rng.permutation(values))
      if p != values and p not in chosen:
        chosen.append(p)
      if len(chosen) == n_permutations:
        break
  mean_step = sum(factor[lay] * size[lay] for lay in layers) / sum(size.values())
  assignments = {
      f"placebo_{strategy}_perm{k}": dict(zip(layers, p, strict=True)) for k, p in enumerate(chosen)
  }
  assignments[f"placebo_{strategy}_uniform"] = {lay: mean_step for lay in layers}
  out = {}
  for name, by_layer in assignments.items():
    leaves = {r.leaf: by_layer.get(r.layer, 1.0) for r in rows}
    out[name] = {"layers": by_layer, "leaves": leaves}
  return out


def placebo_spec(name: str, strategy: caadam_jax.StrategyName, table: dict) -> OptSpec:
  leaves = table["leaves"]

  def make(learning_rate):
    return optax.chain(
        optax.scale_by_adam(),
        scale_by_fixed_factors(leaves),
        optax.scale_by_learning_rate(learning_rate),
    )

  kind = "uniform factor with the same mean step" if name.endswith("uniform") else "permuted"
  return OptSpec(
      name,
      make,
      description=f"placebo of caadam_{strategy}: optax Adam with the {kind} per-layer "
      "factors " + ", ".join(f"{k}={v:.3g}" for k, v in table["layers"].items()),
  )
