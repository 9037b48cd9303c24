"""Structure: which layer each parameter belongs to, how large and how deep it is.

A :class:`Structure` is computed once from the static paths and shapes of a
parameter pytree; a scaling formula turns it into one constant factor per leaf.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, cast

import jax.numpy as jnp
import numpy as np
import optax

from caadam_jax import _formulas
from caadam_jax import _leaves
from caadam_jax import _paths
from caadam_jax import _validation


class LeafInfo(NamedTuple):
  """What the structure knows about one parameter leaf.

  Attributes:
    layer: the normalized path of the layer (module) the leaf belongs to, or None
      for a leaf excluded from scaling (factor 1).
    shape: the leaf's shape.
    connections: the connection count of its layer, or None when the layer is
      not counted (it has no weight tensor; its factor is 1). For a stacked leaf
      (``stack_axis`` set), a tuple with one count per slice.
    depth: the 0-based depth of its layer, or None when not counted; a tuple
      per slice for a stacked leaf.
    stack_axis: for ``nn.scan``/``nnx.vmap``-stacked leaves, the axis that
      indexes the stacked layers (each slice is its own layer); else None.
    weight: whether the leaf is one of its layer's weight tensors (its shape is
      then in the layer's ``LayerRecord.shapes``).
  """

  layer: _paths.Path | None
  shape: tuple[int, ...]
  connections: int | tuple[int, ...] | None
  depth: int | tuple[int, ...] | None
  stack_axis: int | None = None
  weight: bool = False

  def layer_ids(self) -> tuple[_paths.Path, ...]:
    """The layers the leaf belongs to: its layer, or one per slice when stacked.

    Empty for a leaf excluded from scaling. The one place where a stacked leaf
    becomes its slices (``slice_layer(layer, i)``).
    """
    if self.layer is None:
      return ()
    if self.stack_axis is None:
      return (self.layer,)
    return tuple(slice_layer(self.layer, i) for i in range(self.shape[self.stack_axis]))

  def slice_shape(self) -> tuple[int, ...]:
    """The shape of one layer's part of the leaf: without the stack axis, if any."""
    if self.stack_axis is None:
      return self.shape
    return self.shape[: self.stack_axis] + self.shape[self.stack_axis + 1 :]

  def records(self) -> tuple[tuple[_paths.Path, int, int], ...]:
    """``(layer id, connections, depth)`` per layer of a counted leaf; empty otherwise.

    Reads ``connections`` and ``depth`` as numbers, or as per-slice tuples for a
    stacked leaf, so that no caller branches on the two forms.
    """
    if self.connections is None:
      return ()
    if self.stack_axis is None:
      return ((cast(_paths.Path, self.layer), cast(int, self.connections), cast(int, self.depth)),)
    return tuple(
        zip(self.layer_ids(), cast(tuple, self.connections), cast(tuple, self.depth), strict=True)
    )

  def with_records(self, records: list[_formulas.LayerRecord]) -> LeafInfo:
    """This leaf with ``connections``/``depth`` from one record per ``layer_ids()``."""
    if self.stack_axis is None:
      return self._replace(connections=records[0].connections, depth=records[0].depth)
    return self._replace(
        connections=tuple(r.connections for r in records), depth=tuple(r.depth for r in records)
    )


# Leaf names that decide a tensor's role whatever its number of dimensions:
# attention kernels are 3-D, attention biases 2-D, stacked biases 2-D.
WEIGHT_NAMES = frozenset({"kernel", "embedding", "weight", "w"})
NON_WEIGHT_NAMES = frozenset({"bias", "b", "scale", "offset", "gamma", "beta"})
# Leaf names of tensors that are added to activations, not contracted with them: class
# tokens and learned position embeddings (vit_jax ``cls``, Flax examples'
# ``pos_embedding``, timm-style ``cls_token``/``pos_embed``, Equinox ViT
# ``positional_embedding``). By shape they look like weights ((1, 1, d), (1, n, d));
# the trace sees them added and gives them factor 1 outside the statistics, and so do
# the path rules.
TOKEN_NAMES = frozenset(
    {
        "cls",
        "cls_token",
        "class_token",
        "dist_token",
        "pos_embedding",
        "pos_embed",
        "pos_emb",
        "posemb",
        "position_embedding",
        "positional_embedding",
    }
)


def is_token(path: _paths.Path) -> bool:
  """Whether a leaf is a class token or learned position embedding, by its name."""
  return bool(path) and isinstance(path[-1], str) and path[-1].lower() in TOKEN_NAMES


def is_weight(path: _paths.Path, shape: tuple[int, ...], stack_axis: int | None = None) -> bool:
  """Whether a leaf counts as weights (connections) of its layer.

  A tensor with fewer than 2 dimensions (not counting a stack axis) is never a
  weight, whatever its name (biases, norm scales, Equinox's ``LayerNorm.weight``).
  Otherwise the leaf's name decides first (``kernel``, ``embedding``, ``weight``,
  ``w`` are weights; ``bias``, ``scale`` and the like are not, whatever their
  number of dimensions); other tensors of 2 or more dimensions are weights.
  """
  if len(shape) - (stack_axis is not None) < 2:
    return False
  name = path[-1] if path else None
  if isinstance(name, str):
    if name.lower() in WEIGHT_NAMES:
      return True
    if name.lower() in NON_WEIGHT_NAMES:
      return False
  return True


def slice_layer(layer: _paths.Path, index: int) -> _paths.Path:
  """The id of slice ``index`` of a stacked layer (``blocks`` -> ``blocks/[3]``)."""
  return (*layer, f"[{index}]")


def _prefix_lookup(table: Mapping[_paths.Path, Any], path: _paths.Path) -> tuple[bool, Any]:
  """The value of the longest key of ``table`` that is a prefix of ``path``."""
  for end in range(len(path), -1, -1):
    if path[:end] in table:
      return True, table[path[:end]]
  return False, None


def _parse_table(table: Mapping[Any, Any] | None) -> dict[_paths.Path, Any]:
  return {_paths.parse_path(k): v for k, v in (table or {}).items()}


def check_stacked(stacked: Any) -> dict[_paths.Path, int]:
  """The ``stacked`` argument, checked and keyed by normalized path prefixes.

  Args:
    stacked: None, or a mapping from a path prefix (``'blocks'`` or a key tuple) to
      the stack axis, a Python int (``0`` for ``nn.scan``/``nnx.vmap`` stacks).

  Returns:
    Normalized prefix -> axis.

  Raises:
    TypeError: ``stacked`` is not a mapping, a key is not a path, or an axis is not
      an int (a bool such as True is not axis 1; a float or string is no axis).
  """
  if stacked is None:
    return {}
  example = "e.g. stacked={'blocks': 0} for a stack of layers along axis 0 under 'blocks'"
  if not isinstance(stacked, Mapping):
    raise TypeError(
        "stacked must be a mapping {path prefix: stack axis} (" + example + "); got "
        f"{_validation.describe_value(stacked)}."
    )
  table = {}
  for key, axis in stacked.items():
    if not _paths.is_path(key):
      raise TypeError(
          f"stacked: key {key!r} is not a parameter path (a '/'-separated string or a tuple "
          f"of str/int keys); {example}."
      )
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
      raise TypeError(
          f"stacked[{key!r}] must be the stack axis as an int (0 for nn.scan / nnx.vmap "
          f"stacks), got {_validation.describe_value(axis)}; {example}."
      )
    table[_paths.parse_path(key)] = int(axis)
  return table


def check_record(argument: str, record: Any) -> _formulas.LayerRecord:
  """A ``(connections, depth)`` pair (or a ``LayerRecord``) as a checked ``LayerRecord``.

  Connections must be a positive integer and depth a non-negative integer; an
  integral float is accepted, a fractional one is never truncated. A
  ``LayerRecord``'s shapes are dropped: they come from the layer's weight leaves.
  """
  if isinstance(record, (str, bytes)) or not isinstance(record, Iterable):
    raise TypeError(f"{argument} must be a (connections, depth) pair or None, got {record!r}.")
  record = tuple(record[:2]) if isinstance(record, _formulas.LayerRecord) else tuple(record)
  if len(record) != 2:
    raise TypeError(f"{argument} must be a (connections, depth) pair or None, got {record!r}.")
  connections = _validation.check_integer(
      f"{argument}: connections", record[0], minimum=1, what="a positive integer"
  )
  depth = _validation.check_integer(
      f"{argument}: depth", record[1], minimum=0, what="a non-negative integer"
  )
  return _formulas.LayerRecord(connections, depth)


def _leaf_info(path: _paths.Path, entry: LeafInfo | tuple[Any, ...]) -> LeafInfo:
  """A ``from_layers`` leaf entry as an uncounted LeafInfo.

  The entry is a LeafInfo or a tuple ``(layer, shape[, stack_axis[, weight]])``
  (weight by default from :func:`is_weight`).
  """
  if isinstance(entry, LeafInfo):
    return entry._replace(shape=tuple(entry.shape), connections=None, depth=None)
  layer, shape, *rest = entry
  axis = rest[0] if rest else None
  weight = rest[1] if len(rest) > 1 else is_weight(path, tuple(shape), axis)
  return LeafInfo(layer, tuple(shape), None, None, axis, bool(weight))


def _layer_records(
    counted_layers: Mapping[_paths.Path, _formulas.LayerRecord] | Iterable[tuple[Any, ...]],
) -> dict[_paths.Path, _formulas.LayerRecord]:
  """``from_layers``'s counted layers as checked records, layer -> LayerRecord."""
  if isinstance(counted_layers, Mapping):
    entries = [(layer, *record[:2]) for layer, record in counted_layers.items()]
  else:
    entries = list(counted_layers)
  records: dict[_paths.Path, _formulas.LayerRecord] = {}
  for position, entry in enumerate(entries):
    layer = entry[0]
    record = check_record(
        f"counted_layers[{position}] (layer {_paths.path_to_str(layer)})",
        (entry[1], entry[2] if len(entry) > 2 else position),
    )
    if layer in records:
      raise ValueError(f"counted_layers lists layer {_paths.path_to_str(layer)} more than once.")
    records[layer] = record
  return records


@dataclasses.dataclass(frozen=True, eq=False)
class Structure:
  """An immutable description of a network's layers, as CaAdam sees them.

  Build one with :func:`infer_structure` (paths and shapes),
  :func:`trace_structure` (the forward pass), :meth:`from_records` (by hand) or
  :meth:`from_layers`.

  Attributes:
    leaves: normalized leaf path -> :class:`LeafInfo`.
    statistics: ``c_min``, ``c_med``, ``c_max`` over the counted layers and the
      number of depth levels ``D`` (the number of counted layers for a
      sequential model), or None when no layer is counted (every factor is
      then 1).
  """

  leaves: Mapping[_paths.Path, LeafInfo]
  statistics: _formulas.Statistics | None

  @classmethod
  def from_layers(
      cls,
      leaves: Mapping[_paths.Path, LeafInfo | tuple[Any, ...]],
      counted_layers: Mapping[_paths.Path, _formulas.LayerRecord] | Iterable[tuple[Any, ...]],
  ) -> Structure:
    """Builds a structure from leaf-to-layer assignments and counted layers.

    Args:
      leaves: normalized leaf path -> :class:`LeafInfo` (its ``connections`` and
        ``depth`` are filled in from ``counted_layers``), or a tuple
        ``(layer, shape)``, ``(layer, shape, stack_axis)`` or
        ``(layer, shape, stack_axis, weight)``; ``layer`` None excludes the leaf
        from scaling. A stacked leaf's slices are the layers
        ``slice_layer(layer, i)``. ``weight`` (tuple default: the rule of
        ``is_weight``) says whether the leaf's shape enters its layer's
        record's ``shapes``.
      counted_layers: layer -> :class:`~caadam_jax.LayerRecord` (its
        ``connections`` and ``depth``; the ``shapes`` come from the weight
        leaves), or a sequence of ``(layer, connections)`` in forward order
        (depth = position) or ``(layer, connections, depth)`` with explicit
        depths (ties allowed, for branches). Layers not listed are not counted
        (factor 1). Connections are positive integers, depths non-negative
        integers.

    Returns:
      The structure, with statistics over the counted layers.

    Raises:
      ValueError: a layer is listed twice, or a record is out of range.
      TypeError: a record is not made of numbers.
    """
    records = _layer_records(counted_layers)
    infos = {}
    for path, entry in leaves.items():
      info = _leaf_info(path, entry)
      found = [records[i] for i in info.layer_ids() if i in records]
      if found and len(found) == len(info.layer_ids()):
        info = info.with_records(found)
      infos[path] = info
    statistics = None
    if records:
      statistics = _formulas.statistics_of(
          [r.connections for r in records.values()],
          num_layers=max(r.depth for r in records.values()) + 1,
      )
    return cls(types.MappingProxyType(infos), statistics)

  @classmethod
  def from_records(
      cls,
      params: optax.Params,
      records: (
          Mapping[Any, tuple[int, int] | _formulas.LayerRecord | None]
          | Callable[[str, Any], tuple[int, int] | _formulas.LayerRecord | None]
      ),
  ) -> Structure:
    """Builds a structure by hand: every leaf's ``(connections, depth)``.

    Useful where the automatic rules do not fit (Equinox or other pytrees with
    their own layouts, shared or unusual layers). The layer of a leaf is its
    parent path; leaves of one layer must get the same record.

    Args:
      params: the parameter pytree.
      records: a mapping from a leaf path, or a path prefix such as a layer path
        (``'encoder/Dense_0'`` or a key tuple; the longest matching prefix
        wins), to ``(connections, depth)`` (or a
        :class:`~caadam_jax.LayerRecord`); or a callable
        ``(path string, leaf) -> (connections, depth)``. ``None`` gives the leaf
        factor 1 and keeps it out of the statistics. ``connections`` must be a
        positive integer and ``depth`` a non-negative integer (integral floats
        such as ``2.0`` are accepted; ``2.7``, negatives, bools are rejected).

    Returns:
      The structure.

    Raises:
      ValueError: a record is out of range, leaves are not covered, or one
        layer's leaves get different records.
      TypeError: a record is not a ``(connections, depth)`` pair of numbers.

    Examples:
      >>> import jax.numpy as jnp, caadam_jax
      >>> params = {'enc': {'weight': jnp.ones((8, 4)), 'bias': jnp.ones(8)},
      ...           'head': {'weight': jnp.ones((2, 8)), 'bias': jnp.ones(2)}}
      >>> s = caadam_jax.Structure.from_records(params, {'enc': (32, 0), 'head': (16, 1)})
      >>> s.leaves[('head', 'bias')].depth
      1
    """
    leaves, _ = _paths.leaves_with_paths(params)
    table = (
        {}
        if callable(records)
        else _parse_table(
            {
                key: None if record is None else check_record(f"records[{key!r}]", record)
                for key, record in records.items()
            }
        )
    )
    leaf_infos: dict[_paths.Path, LeafInfo] = {}
    layer_records: dict[_paths.Path, _formulas.LayerRecord] = {}
    missing = []
    for path, leaf in leaves:
      if callable(records):
        record = records(_paths.path_to_str(path), leaf)
        if record is not None:
          record = check_record(f"records({_paths.path_to_str(path)!r}, leaf)", record)
      else:
        found, record = _prefix_lookup(table, path)
        if not found:
          missing.append(_paths.path_to_str(path))
          continue
      layer = path[:-1] if record is not None else None
      shape = _leaves.shape_of(leaf)
      leaf_infos[path] = LeafInfo(layer, shape, None, None, weight=is_weight(path, shape))
      if record is not None and layer_records.setdefault(path[:-1], record) != record:
        first = layer_records[path[:-1]]
        raise ValueError(
            f"Leaves of layer {_paths.path_to_str(path[:-1])} got different records "
            f"{(first.connections, first.depth)} and {(record.connections, record.depth)}; "
            "give one record per layer."
        )
    if missing:
      raise ValueError(
          f"records gives no (connections, depth) for: {', '.join(missing[:10])}. "
          "Add them (or a prefix covering them), or map them to None for factor 1."
      )
    return cls.from_layers(leaf_infos, layer_records)

  def with_factor_one(self, paths: Iterable[Any]) -> Structure:
    """Returns a copy in which the given leaves (or subtrees) get factor 1.

    Statistics are unchanged: the leaves keep counting for their layers, they
    are only not scaled.

    Args:
      paths: leaf paths or path prefixes (strings ``'a/b'`` or key tuples), or
        one path string.

    Returns:
      The new structure.

    Raises:
      ValueError: a path is no leaf path and no prefix of one (the message lists
        close matches), or is empty (the root would give every leaf factor 1).
      TypeError: a path is neither a string nor a tuple of keys (None, 123).
    """
    if isinstance(paths, str):
      paths = [paths]
    if not isinstance(paths, Iterable) or isinstance(paths, bytes):
      raise TypeError(
          "with_factor_one takes a leaf path or path prefix ('Dense_0/bias', a key tuple) or "
          f"a list of them; got {_validation.describe_value(paths)}."
      )
    paths = list(paths)
    for path in paths:
      if not _paths.is_path(path):
        raise TypeError(
            f"with_factor_one: {_validation.describe_value(path)} is not a parameter path "
            "(a '/'-separated string such as 'Dense_0/bias', or a tuple of str/int keys)."
        )
      if not _paths.parse_path(path):
        raise ValueError(
            f"with_factor_one: the empty path {path!r} is the root, a prefix of every leaf, "
            "so every factor would be 1; name the leaves or subtrees to exclude "
            "('Dense_0/bias', 'encoder')."
        )
    table = _parse_table(dict.fromkeys(paths, True))
    _paths.check_prefixes("with_factor_one", table, list(self.leaves))
    infos = {
        path: info._replace(layer=None, connections=None, depth=None, stack_axis=None)
        if _prefix_lookup(table, path)[0]
        else info
        for path, info in self.leaves.items()
    }
    return Structure(types.MappingProxyType(infos), self.statistics)

  @property
  def layers(self) -> dict[_paths.Path, _formulas.LayerRecord]:
    """Counted layers (stack slices separately) in depth order -> their record.

    A record's ``shapes`` are the shapes of the layer's weight leaves in the tree's
    leaf order (per slice, without the stack axis, for a stacked layer).
    """
    layers: dict[_paths.Path, tuple[int, int]] = {}
    shapes: dict[_paths.Path, list[tuple[int, ...]]] = {}
    for info in self.leaves.values():
      for layer_id, connections, depth in info.records():
        layers[layer_id] = (connections, depth)
        if info.weight:
          shapes.setdefault(layer_id, []).append(info.slice_shape())
    records = {
        layer_id: _formulas.LayerRecord(c, d, tuple(shapes.get(layer_id, ())))
        for layer_id, (c, d) in layers.items()
    }
    return dict(sorted(records.items(), key=lambda item: item[1].depth))

  def factors(
      self,
      strategy: _formulas.StrategyName | _formulas.Formula,
      scaling_factor: Any = None,
  ) -> dict[_paths.Path, Any]:
    """Every leaf's factor under ``strategy`` with scaling factor ``scaling_factor``.

    A factor is a Python float, a traced scalar (injected scaling factor), or,
    for a stacked leaf, an array of per-slice factors shaped to broadcast along
    its stack axis. Leaves of uncounted layers get 1.

    Args:
      strategy: a strategy name (``"additive"``, ``"multiplicative"``,
        ``"depth"``) or a :data:`~caadam_jax.Formula`
        ``(record, stats, g) -> factor``, called once per counted layer.
      scaling_factor: ``g``. For a name: None for its default, range-checked as
        in :func:`~caadam_jax.scale_by_strategy`; for a formula: given to it
        unchanged (None included).

    Returns:
      Normalized leaf path -> factor.

    Raises:
      TypeError: ``strategy`` is neither a name nor a callable, or a formula
        returned something other than a real scalar (a string, None, a dict, a
        complex number).
      ValueError: an unknown name, a ``scaling_factor`` out of its range, or a
        formula returned an array of a shape other than ``()`` or a concrete
        factor that is not finite and > 0 (a traced one becomes NaN there).

    Examples:
      >>> import jax.numpy as jnp, caadam_jax
      >>> params = {'Dense_0': {'kernel': jnp.zeros((4, 8))},
      ...           'Dense_1': {'kernel': jnp.zeros((8, 2))}}
      >>> s = caadam_jax.infer_structure(params)
      >>> s.factors("depth")[('Dense_1', 'kernel')]
      1.0
      >>> fan_in = lambda record, stats, g: 1.0 / record.shapes[0][0]
      >>> s.factors(fan_in)[('Dense_1', 'kernel')]
      0.125
    """
    formula, g, _ = _formulas.resolve(strategy, scaling_factor)
    layers = self.layers
    stats = cast(_formulas.Statistics, self.statistics)  # not None where layers are counted
    per_layer = {layer: formula(record, stats, g) for layer, record in layers.items()}
    if not _formulas.is_named(formula):
      # A user formula's factors follow the rule of every factor: finite and > 0.
      per_layer = {
          layer: _formulas.check_factor(value, formula, _paths.path_to_str(layer))
          for layer, value in per_layer.items()
      }
    return {
        path: _leaf_factor(info, [per_layer[layer_id] for layer_id, _, _ in info.records()])
        for path, info in self.leaves.items()
    }

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
    missing, extra = _paths.path_mismatches([p for p, _ in leaves], masked, list(self.leaves))
    problems = []
    if missing:
      problems.append("paths in the tree but not in the structure: " + _paths.paths_to_str(missing))
    if extra:
      problems.append("paths in the structure but not in the tree: " + _paths.paths_to_str(extra))
    if check_shapes:
      wrong = [
          f"{_paths.path_to_str(p)} {_leaves.shape_of(leaf)} vs {self.leaves[p].shape}"
          for p, leaf in leaves
          if p in self.leaves and _leaves.shape_of(leaf) != self.leaves[p].shape
      ]
      if wrong:
        problems.append("shapes differ (tree vs structure): " + ", ".join(wrong[:10]))
    if problems:
      raise ValueError(
          "The Structure does not match the parameter tree; "
          + "; ".join(problems)
          + ". Build it from the same model (caadam_jax.trace_structure(...) or "
          "caadam_jax.infer_structure(params)); a structure built from a linen variables "
          "dict or from its 'params' serves both."
      )

  def for_tree(self, tree: Any) -> Structure:
    """This structure keyed like ``tree``: with or without the ``params`` level.

    A linen model's optimizer sees either ``variables["params"]`` or (a
    ``TrainState`` created with ``params=variables``) the whole variables dict
    ``{"params": ..., "batch_stats": ...}``. A structure built from one form
    serves the other: leaves under ``params`` are matched with that level added
    or dropped, and leaves of other collections get factor 1. Layers, depths and
    statistics are unchanged.

    Args:
      tree: a parameter or update pytree.

    Returns:
      ``self`` when the paths already match, else the re-keyed structure.
    """
    leaves, masked = _paths.leaves_with_paths(tree)
    tree_paths = [p for p, _ in leaves] + masked
    if not tree_paths or all(p in self.leaves for p in tree_paths):
      return self
    mine = list(self.leaves)
    if _any_params(tree_paths) and not _any_params(mine):
      infos: dict[_paths.Path, LeafInfo] = {("params", *p): info for p, info in self.leaves.items()}
      for path, leaf in leaves:
        if path[:1] != ("params",) and path not in infos:
          infos[path] = LeafInfo(None, _leaves.shape_of(leaf), None, None)
    elif _any_params(mine) and not _any_params(tree_paths):
      infos = {p[1:]: info for p, info in self.leaves.items() if p[:1] == ("params",)}
    else:
      return self
    return Structure(types.MappingProxyType(infos), self.statistics)


def _leaf_factor(info: LeafInfo, values: list[Any]) -> Any:
  """A leaf's factor from its layers' factors (one per slice): broadcast along a stack."""
  if not values:
    return 1.0  # an uncounted leaf
  if info.stack_axis is None:
    return values[0]
  stacked = (
      np.asarray(values, dtype=np.float64)
      if all(isinstance(v, float) for v in values)
      else jnp.stack([jnp.asarray(v, dtype=jnp.float32) for v in values])
  )
  broadcast = [1] * len(info.shape)
  broadcast[info.stack_axis] = len(values)
  return stacked.reshape(broadcast)


def _any_params(paths: Iterable[_paths.Path]) -> bool:
  """Whether some path starts with ``params`` (a linen variables dict)."""
  return any(p[:1] == ("params",) for p in paths)


def assemble(
    leaves: Iterable[tuple[_paths.Path, tuple[int, ...]]],
    *,
    stacked: Mapping[Any, int] | None = None,
    weight_roles: Mapping[_paths.Path, bool | None] | None = None,
    layer_depths: Mapping[_paths.Path, int] | None = None,
) -> Structure:
  """Builds a structure from leaf paths and shapes; shared by every builder.

  Args:
    leaves: ``(normalized path, shape)`` pairs.
    stacked: path prefix -> stack axis for stacked layers.
    weight_roles: per-leaf overrides of :func:`is_weight` (from a trace).
    layer_depths: layer id -> depth; None orders layers naturally by path.

  Returns:
    The structure.
  """
  leaves = list(leaves)
  stack_table = check_stacked(stacked)
  _paths.check_prefixes("stacked", stack_table, [path for path, _ in leaves])
  infos: dict[_paths.Path, LeafInfo] = {}
  connections: dict[_paths.Path, int] = {}
  for path, shape in leaves:
    found, axis = _prefix_lookup(stack_table, path)
    if found:
      if not -len(shape) <= axis < len(shape):
        raise ValueError(
            f"stacked axis {axis} is out of range for {_paths.path_to_str(path)} of shape {shape}."
        )
      axis %= len(shape)
    else:
      axis = None
    layer = path[:-1]
    role = (weight_roles or {}).get(path)
    if role is None and is_token(path):
      # Added to activations, never contracted: factor 1, outside the statistics.
      infos[path] = LeafInfo(None, shape, None, None)
      continue
    # A zero-size tensor has no connections: it is no weight and no layer.
    weight = (is_weight(path, shape, axis) if role is None else role) and int(np.prod(shape)) > 0
    info = LeafInfo(layer, shape, None, None, axis, weight)
    infos[path] = info
    if weight:
      for layer_id in info.layer_ids():
        connections[layer_id] = connections.get(layer_id, 0) + math.prod(info.slice_shape())
  if layer_depths is None:
    layer_depths = {
        layer: depth for depth, layer in enumerate(sorted(connections, key=_paths.natural_key))
    }
  counted = {
      layer: _formulas.LayerRecord(c, layer_depths[layer]) for layer, c in connections.items()
  }
  return Structure.from_layers(infos, counted)


def infer_structure(params: optax.Params, *, stacked: Mapping[Any, int] | None = None) -> Structure:
  """Infers a :class:`Structure` from the paths and shapes of a parameter pytree.

  Rules (the method as described in arXiv:2410.24216, per layer):

  * a leaf's layer is its normalized path without the last key
    (``{'Dense_0': {'kernel', 'bias'}}`` -> layer ``Dense_0``), so a bias shares
    its layer's factor;
  * a layer's connection count is the number of weights in its weight tensors:
    tensors of 2 or more dimensions (attention kernels are 3-D) except those
    named ``bias``/``scale`` (attention biases are 2-D). A 1-D tensor is never a
    weight, whatever its name (Equinox's ``LayerNorm.weight``). Dense
    ``(in, out)``: ``in*out``; Conv ``(kh, kw, in, out)``: ``kh*kw*in*out``;
  * layers with no weight tensor (LayerNorm, BatchNorm) are not counted: they
    get factor 1 and do not enter the statistics;
  * class tokens and learned position embeddings, by their leaf name (``cls``,
    ``cls_token``, ``pos_embedding``, ``pos_embed``, ``positional_embedding`` and
    the like: ``TOKEN_NAMES``), are added to activations, not contracted: they get
    factor 1 and stay out of their layer and the statistics, as in
    :func:`~caadam_jax.trace_structure`;
  * depth is the position of a counted layer in natural path order (numbers
    compared as numbers: ``Dense_2`` before ``Dense_10``). This is right for
    sequential models with numbered layers only; for named or branching modules
    use :func:`~caadam_jax.trace_structure` or build the structure by hand;
  * ``stacked`` declares ``nn.scan``/``nnx.vmap`` stacks: every leaf under a
    given path prefix has its layers along the given axis; each slice is its own
    layer (connections per slice, its own depth), and the factor is broadcast
    along that axis.

  Only shapes are read, so ``jax.ShapeDtypeStruct`` leaves work. ``MaskedNode``
  leaves are skipped, which makes the statistics per group inside
  ``optax.masked``/``optax.partition``.

  Args:
    params: a parameter pytree (linen ``params``, an NNX ``State``, a dict, a
      bare array).
    stacked: path prefix (``'ScanBlock_0'`` or a key tuple) -> stack axis.

  Returns:
    The inferred structure.

  Examples:
    >>> import jax.numpy as jnp
    >>> import caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.zeros((4, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.zeros((8, 2)), 'bias': jnp.zeros(2)}}
    >>> s = caadam_jax.infer_structure(params)
    >>> s.leaves[('Dense_1', 'bias')].connections, s.statistics.c_med
    (16, 24.0)
  """
  leaves, _ = _paths.leaves_with_paths(params)
  return assemble([(path, _leaves.shape_of(leaf)) for path, leaf in leaves], stacked=stacked)
