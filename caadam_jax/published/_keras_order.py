"""The Keras variable order: the order in which caadam 0.1.1 sees a model's variables.

The order is part of the published algorithm (depth is a variable's index in it, and
the last kernel in it sets every kernel's connection count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from caadam_jax import _leaves
from caadam_jax import _paths
from caadam_jax import _structure

# Within a layer, Keras creates a norm's scale (``gamma``) before its offset
# (``beta``) and a kernel before its bias.
_OFFSET_NAMES = frozenset({"bias", "beta"})

Order = Sequence[str | Sequence[_paths.PathKey]] | _structure.Structure


def leaf_name(path: _paths.Path) -> str:
  """The Keras short name of a leaf: the last key of its path (``'kernel'``)."""
  return str(path[-1]) if path else ""


def _within_layer_key(path: _paths.Path, shape: tuple[int, ...]) -> tuple[Any, ...]:
  name = leaf_name(path)
  is_offset = name in _OFFSET_NAMES
  return (0 if len(shape) >= 2 else 1, 1 if is_offset else 0, _paths.natural_key(path[-1:]))


def _order_leaves(
    leaves: dict[_paths.Path, tuple[int, ...]],
    layer_order: Sequence[_paths.Path],
    layer_of: dict[_paths.Path, _paths.Path] | None = None,
) -> list[_paths.Path]:
  """Leaves layer by layer in ``layer_order``, kernel before bias within a layer.

  ``layer_of`` maps a leaf to its layer where that is not its parent path (a traced
  structure's layers); by default a leaf's layer is its path without the last key.
  """
  rank = {layer: i for i, layer in enumerate(layer_order)}

  def key(path: _paths.Path) -> tuple[Any, ...]:
    layer = (layer_of or {}).get(path, path[:-1])
    return (rank[layer], _within_layer_key(path, leaves[path]))

  return sorted(leaves, key=key)


def default_order(leaves: dict[_paths.Path, tuple[int, ...]]) -> list[_paths.Path]:
  layers = sorted({path[:-1] for path in leaves}, key=_paths.natural_key)
  return _order_leaves(leaves, layers)


def structure_order(structure: _structure.Structure) -> list[_paths.Path]:
  """Keras order from a Structure: its counted layers in depth order.

  Layers the structure does not count (no tensor of 2+ dimensions: norms) keep
  their natural-order slot among all layers; the counted layers fill the other
  slots in depth order. A stacked leaf (``nn.scan``) is one Keras variable: its
  layer takes the slot of its first slice.
  """
  leaves = {path: info.shape for path, info in structure.leaves.items()}
  layer_of = {
      path: info.layer if info.layer is not None else path[:-1]
      for path, info in structure.leaves.items()
  }
  slice_of: dict[_paths.Path, _paths.Path] = {
      layer_id: cast(_paths.Path, info.layer)  # a leaf with layer ids has a layer
      for info in structure.leaves.values()
      for layer_id in info.layer_ids()
  }
  counted = list(dict.fromkeys(slice_of[layer_id] for layer_id in structure.layers))
  counted_set = set(counted)
  natural = sorted(set(layer_of.values()), key=_paths.natural_key)
  depth_order = iter(counted)
  layers = [next(depth_order) if layer in counted_set else layer for layer in natural]
  return _order_leaves(leaves, layers, layer_of)


_ORDER_HELP = (
    "order must be a sequence of parameter paths (e.g. ['Dense_0/kernel', "
    "'Dense_0/bias', ...] or key tuples like ('Dense_0', 'kernel')) or a "
    "caadam_jax.Structure"
)


def parse_order(order: Sequence[Any]) -> list[_paths.Path]:
  if isinstance(order, (str, bytes)):
    raise TypeError(f"{_ORDER_HELP}, not a single string.")
  if not isinstance(order, Sequence):
    raise TypeError(f"{_ORDER_HELP}; got {type(order).__name__} {order!r}.")
  parsed = []
  for i, p in enumerate(order):
    if not _paths.is_path(p):
      raise TypeError(
          f"order[{i}] = {p!r} is not a parameter path: {_ORDER_HELP} (each path a "
          "'/'-separated string or a tuple of str/int keys)."
      )
    parsed.append(_paths.parse_path(p))
  seen, duplicates = set(), []
  for p in parsed:
    if p in seen:
      duplicates.append(_paths.path_to_str(p))
    seen.add(p)
  if duplicates:
    raise ValueError(f"order lists these parameter paths more than once: {duplicates[:10]}.")
  return parsed


class KerasOrder:
  """The ``order`` argument of :func:`~caadam_jax.published.keras_caadam`, checked once.

  ``None`` (the default rule), a sequence of leaf paths, or a Structure (whose
  leaves then give the shapes: statistics over the whole structure, as Keras builds
  over all variables).
  """

  def __init__(self, order: Order | None):
    self.structure: _structure.Structure | None = None
    self.paths: list[_paths.Path] | None = None
    if isinstance(order, _structure.Structure):
      self.structure = order
    elif order is not None:
      self.paths = parse_order(order)

  def of(self, tree: Any) -> tuple[dict[_paths.Path, tuple[int, ...]], list[_paths.Path]]:
    """``(leaf shapes, leaf paths in Keras order)`` for ``tree``'s real leaves."""
    pairs, masked = _paths.leaves_with_paths(tree)
    present = {path: _leaves.shape_of(leaf) for path, leaf in pairs}
    if self.structure is not None:
      self.structure.check_matches(tree, check_shapes=False)
      return {p: info.shape for p, info in self.structure.leaves.items()}, structure_order(
          self.structure
      )
    if self.paths is None:
      return present, default_order(present)
    missing, extra = _paths.path_mismatches(list(present), masked, self.paths)
    if missing or extra:
      problems = []
      if missing:
        problems.append("parameters not in order: " + _paths.paths_to_str(missing))
      if extra:
        problems.append("paths in order but not in the parameters: " + _paths.paths_to_str(extra))
      raise ValueError(
          "order must list every parameter leaf exactly once, as paths like "
          "'Dense_0/kernel'; " + "; ".join(problems) + "."
      )
    return present, [p for p in self.paths if p in present]
