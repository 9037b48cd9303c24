"""Structure: which layer each parameter belongs to, how large and how deep it is.

A :class:`Structure` is computed once from the static paths and shapes of a
parameter pytree; a scaling formula turns it into one constant factor per leaf.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import optax

from caadam_jax import _formulas
from caadam_jax import _paths


class LeafInfo(NamedTuple):
  """What the structure knows about one parameter leaf.

  Attributes:
    layer: the normalized path of the layer the leaf belongs to.
    shape: the leaf's shape.
    connections: the connection count of its layer, or None when the layer is
      not counted (it has no weight tensor; its factor is 1).
    depth: the 0-based forward-order depth of its layer, or None when not counted.
  """

  layer: _paths.Path
  shape: tuple[int, ...]
  connections: int | None
  depth: int | None


def _shape_of(leaf: Any) -> tuple[int, ...]:
  shape = getattr(leaf, "shape", None)
  return tuple(int(d) for d in (np.shape(leaf) if shape is None else shape))


def _median(values: list[int]) -> float:
  return float(np.median(np.asarray(values, dtype=np.float64)))


@dataclasses.dataclass(frozen=True, eq=False)
class Structure:
  """An immutable description of a network's layers, as CaAdam sees them.

  Attributes:
    leaves: normalized leaf path -> :class:`LeafInfo`.
    statistics: ``c_min``, ``c_med``, ``c_max`` and the number of counted layers
      ``D``, or None when no layer is counted (every factor is then 1).
  """

  leaves: Mapping[_paths.Path, LeafInfo]
  statistics: _formulas.Statistics | None

  @classmethod
  def from_layers(
      cls,
      leaves: Mapping[_paths.Path, tuple[_paths.Path, tuple[int, ...]]],
      counted_layers: Iterable[tuple[_paths.Path, int]],
  ) -> Structure:
    """Builds a structure from leaf-to-layer assignments and counted layers.

    Args:
      leaves: normalized leaf path -> (layer path, shape).
      counted_layers: ``(layer path, connection count)`` in forward order; the
        position in this sequence is the layer's depth. Layers not listed are
        not counted (factor 1).

    Returns:
      The structure, with statistics over the counted layers.
    """
    counted = list(counted_layers)
    records = {layer: (c, depth) for depth, (layer, c) in enumerate(counted)}
    if len(records) != len(counted):
      raise ValueError("counted_layers lists a layer more than once.")
    infos = {}
    for path, (layer, shape) in leaves.items():
      connections, depth = records.get(layer, (None, None))
      infos[path] = LeafInfo(layer, tuple(shape), connections, depth)
    statistics = None
    if counted:
      sizes = [c for _, c in counted]
      statistics = _formulas.Statistics(
          c_min=float(min(sizes)),
          c_med=_median(sizes),
          c_max=float(max(sizes)),
          num_layers=len(counted),
      )
    return cls(types.MappingProxyType(infos), statistics)

  @property
  def layers(self) -> dict[_paths.Path, _formulas.LayerRecord]:
    """Counted layers in forward order -> their record."""
    layers = {
        info.layer: _formulas.LayerRecord(info.connections, info.depth)
        for info in self.leaves.values()
        if info.connections is not None
    }
    return dict(sorted(layers.items(), key=lambda item: item[1].depth))

  def factors(
      self, strategy: _formulas.Strategy, scaling_factor: _formulas.Factor
  ) -> dict[_paths.Path, _formulas.Factor]:
    """Returns every leaf's factor under ``strategy`` with factor ``scaling_factor``."""
    per_layer = {
        layer: strategy.formula(record, self.statistics, scaling_factor)
        for layer, record in self.layers.items()
    }
    return {path: per_layer.get(info.layer, 1.0) for path, info in self.leaves.items()}

  def check_matches(self, tree: Any, *, check_shapes: bool = True) -> None:
    """Raises a ValueError if ``tree`` does not have this structure's leaves.

    ``MaskedNode`` placeholders (``optax.masked``/``optax.partition``) count as
    present. A tree with no leaves at all (``optax.tree_utils.tree_map_params``
    initializes with one) is accepted.

    Args:
      tree: a parameter or update pytree.
      check_shapes: also compare leaf shapes (global shapes; skip inside
        ``shard_map``, where leaves have local shapes).
    """
    leaves, masked = _paths.leaves_with_paths(tree)
    if not leaves and not masked:
      return
    present = {path for path, _ in leaves}
    # A MaskedNode may stand for a whole subtree (a mask given as a tree prefix).
    is_masked = lambda p: any(p[: len(m)] == m for m in masked)
    missing = [p for p, _ in leaves if p not in self.leaves]
    extra = [p for p in self.leaves if p not in present and not is_masked(p)]
    problems = []
    if missing:
      problems.append(
          "paths in the tree but not in the structure: "
          + ", ".join(_paths.path_to_str(p) for p in missing[:10])
      )
    if extra:
      problems.append(
          "paths in the structure but not in the tree: "
          + ", ".join(_paths.path_to_str(p) for p in extra[:10])
      )
    if check_shapes:
      wrong = [
          f"{_paths.path_to_str(p)} {_shape_of(leaf)} vs {self.leaves[p].shape}"
          for p, leaf in leaves
          if p in self.leaves and _shape_of(leaf) != self.leaves[p].shape
      ]
      if wrong:
        problems.append("shapes differ (tree vs structure): " + ", ".join(wrong[:10]))
    if problems:
      raise ValueError(
          "The Structure does not match the parameter tree; "
          + "; ".join(problems)
          + ". Build it from the same params (caadam_jax.infer_structure(params)) "
          "or pass structure=None to infer it from the tree."
      )


def infer_structure(params: optax.Params) -> Structure:
  """Infers a :class:`Structure` from the paths and shapes of a parameter pytree.

  Rules (the method as described in arXiv:2410.24216, per layer):

  * a leaf's layer is its normalized path without the last key
    (``{'Dense_0': {'kernel', 'bias'}}`` -> layer ``Dense_0``), so a bias shares
    its layer's factor;
  * a layer's connection count is the number of weights in its tensors of 2 or
    more dimensions (Dense ``(in, out)``: ``in*out``; Conv
    ``(kh, kw, in, out)``: ``kh*kw*in*out``);
  * layers with no such tensor (LayerNorm, BatchNorm) are not counted: they get
    factor 1 and do not enter the statistics;
  * depth is the position of a counted layer in natural path order (numbers
    compared as numbers: ``Dense_2`` before ``Dense_10``). This is right for
    sequential models with numbered layers only; for named or branching modules
    build the structure from the forward pass or by hand.

  Only shapes are read, so ``jax.ShapeDtypeStruct`` leaves work. ``MaskedNode``
  leaves are skipped, which makes the statistics per group inside
  ``optax.masked``/``optax.partition``.

  Args:
    params: a parameter pytree (linen ``params``, an NNX ``State``, a dict, a
      bare array).

  Returns:
    The inferred structure.

  Example:
    >>> import jax.numpy as jnp
    >>> import caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.zeros((4, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.zeros((8, 2)), 'bias': jnp.zeros(2)}}
    >>> s = caadam_jax.infer_structure(params)
    >>> s.leaves[('Dense_1', 'bias')].connections, s.statistics.c_med
    (16, 24.0)
  """
  leaves, _ = _paths.leaves_with_paths(params)
  leaf_layers = {}
  connections: dict[_paths.Path, int] = {}
  for path, leaf in leaves:
    shape = _shape_of(leaf)
    layer = path[:-1]
    leaf_layers[path] = (layer, shape)
    if len(shape) >= 2:
      connections[layer] = connections.get(layer, 0) + int(np.prod(shape))
  order = sorted(connections, key=_paths.natural_key)
  return Structure.from_layers(leaf_layers, [(layer, connections[layer]) for layer in order])
