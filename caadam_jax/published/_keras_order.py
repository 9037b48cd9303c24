"""The Keras variable order: the order in which caadam 0.1.1 sees a model's variables.

The order is part of the published algorithm (depth is a variable's index in it, and
the last kernel in it sets every kernel's connection count).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

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
    leaves: dict[_paths.Path, tuple[int, ...]], layer_order: Sequence[_paths.Path]
) -> list[_paths.Path]:
  """Leaves layer by layer in ``layer_order``, kernel before bias within a layer."""
  by_layer: dict[_paths.Path, list[_paths.Path]] = {layer: [] for layer in layer_order}
  for path in leaves:
    by_layer[path[:-1]].append(path)
  ordered = []
  for layer in layer_order:
    ordered.extend(sorted(by_layer[layer], key=lambda p: _within_layer_key(p, leaves[p])))
  return ordered


def default_order(leaves: dict[_paths.Path, tuple[int, ...]]) -> list[_paths.Path]:
  layers = sorted({path[:-1] for path in leaves}, key=_paths.natural_key)
  return _order_leaves(leaves, layers)


def structure_order(structure: _structure.Structure) -> list[_paths.Path]:
  """Keras order from a Structure: its counted layers in depth order.

  Layers the structure does not count (no tensor of 2+ dimensions: norms) keep
  their natural-order slot among all layers; the counted layers fill the other
  slots in depth order.
  """
  leaves = {path: info.shape for path, info in structure.leaves.items()}
  counted = list(structure.layers)
  counted_set = set(counted)
  layer_ids = {info.layer for info in structure.leaves.values() if info.layer is not None}
  natural = sorted(layer_ids, key=_paths.natural_key)
  depth_order = iter(counted)
  layers = [next(depth_order) if layer in counted_set else layer for layer in natural]
  return _order_leaves(leaves, layers)


_ORDER_HELP = (
    "order must be a sequence of parameter paths (e.g. ['Dense_0/kernel', "
    "'Dense_0/bias', ...] or key tuples like ('Dense_0', 'kernel')) or a "
    "caadam_jax.Structure"
)


# Key-path entries as jax.tree_util.tree_flatten_with_path gives them.
_KEY_TYPES = (
    jax.tree_util.DictKey,
    jax.tree_util.GetAttrKey,
    jax.tree_util.SequenceKey,
    jax.tree_util.FlattenedIndexKey,
)


def parse_order(order: Sequence[Any]) -> list[_paths.Path]:
  if isinstance(order, (str, bytes)):
    raise TypeError(f"{_ORDER_HELP}, not a single string.")
  if not isinstance(order, Sequence):
    raise TypeError(f"{_ORDER_HELP}; got {type(order).__name__} {order!r}.")
  parsed = []
  for i, p in enumerate(order):
    is_keys = isinstance(p, Sequence) and all(
        isinstance(k, (str, int, *_KEY_TYPES)) and not isinstance(k, bool) for k in p
    )
    if not (isinstance(p, str) or is_keys):
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
