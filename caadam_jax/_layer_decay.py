"""Layer-wise learning-rate decay (timm/BEiT): repeated blocks found from the structure.

The rule (BEiT, ELECTRA, MAE, DeiT III; timm's ``layer_decay``): with ``L``
repeated blocks, everything used before the first block (the stem: patch or token
embeddings, class token, position embeddings) gets id 0, block ``i`` (0-based, in
forward order) gets id ``i + 1``, everything after the last block (final norm,
head) gets id ``L + 1``, and every leaf of a group is scaled by
``decay ** (L + 1 - id)``.

The ids become a :class:`~caadam_jax.Structure` whose layers are the groups and
whose depths are the ids, and the scaling is :func:`~caadam_jax.scale_by_structure`
with the formula ``decay ** (L + 1 - depth)``: the same per-leaf factor
application (constants folded into the step, stacked leaves scaled by a
broadcast array) as every CaAdam strategy.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, cast, overload

import jax
import jax.numpy as jnp
import optax

from caadam_jax import _describe
from caadam_jax import _factor_state
from caadam_jax import _formulas
from caadam_jax import _guards
from caadam_jax import _paths
from caadam_jax import _structure
from caadam_jax import _transforms
from caadam_jax import _validation

DecoderRule = Literal["sequential", "parallel"]
BlocksSpec = str | re.Pattern[str] | Mapping[Any, int] | None
StemSpec = str | re.Pattern[str] | Iterable[Any] | None

# A module key that numbers a sequence: "encoderblock_3", "layers_0", "h_7", "conv2".
_NUMBERED = re.compile(r"^(.*?)_?(\d+)$")
# Family names that say "repeated block" (a LayerNorm_0/LayerNorm_1 pair does not).
_BLOCK_WORDS = re.compile(r"block|layer|stage|^h$|^blk$|^res", re.IGNORECASE)
_NOT_BLOCK_WORDS = re.compile(r"norm", re.IGNORECASE)
# Names of stem parameters (BEiT's and timm's ViT rule, plus token-embedding and
# Flax ResNet stem names), matched against each key of a leaf's path.
DEFAULT_STEM = (
    r"^(cls|cls_token|class_token|dist_token|reg_token|mask_token|wte|wpe|stem)$"
    r"|embed|^pos|patch|_init$|^(conv|bn)_?1$"
)
_ENCODER_WORDS = re.compile(r"enc", re.IGNORECASE)
_DECODER_WORDS = re.compile(r"dec", re.IGNORECASE)
_FIX_BLOCKS = (
    "Name the blocks: blocks=r'<pattern with one (\\d+) group>' (matched against "
    "'/'-joined leaf paths, e.g. r'encoderblock_(\\d+)/') or blocks={{'path/prefix': "
    "block_index, ...}} (0-based). For an nn.scan/nnx.vmap stack pass "
    "structure=caadam_jax.trace_structure(...) (it finds scanned stacks) or "
    "caadam_jax.infer_structure(params, stacked={{'prefix': 0}})."
)


class LayerDecayRow(NamedTuple):
  """One leaf of :func:`describe_layer_decay`.

  Attributes:
    leaf: the leaf's path.
    group: ``'stem'``, ``'head'`` or the block's path (``'blocks/[3]'`` for a
      stack slice; a tuple per slice for a stacked leaf).
    layer_id: the group's id (0 stem, ``i + 1`` block ``i``, ``L + 1`` head; a
      tuple per slice for a stacked leaf).
    factor: ``decay ** (L + 1 - id)`` (a tuple per slice for a stacked leaf).
  """

  leaf: str
  group: str | tuple[str, ...]
  layer_id: int | tuple[int, ...]
  factor: float | tuple[float, ...]


class LayerIds(NamedTuple):
  """The layer-decay groups of a parameter tree.

  Attributes:
    ids: normalized leaf path -> its id, or a tuple of ids (one per slice along
      the stack axis) for a stacked leaf.
    groups: normalized leaf path -> its group's name (a tuple per slice).
    num_blocks: ``L``.
    structure: the groups as a :class:`~caadam_jax.Structure` (one layer per id,
      depth = id), what :func:`scale_by_layer_decay` scales with.
  """

  ids: Mapping[_paths.Path, int | tuple[int, ...]]
  groups: Mapping[_paths.Path, str | tuple[str, ...]]
  num_blocks: int
  structure: _structure.Structure


class _Family(NamedTuple):
  """Numbered siblings (or the slices of one stack): the candidates for blocks."""

  parent: _paths.Path
  name: str  # the family's name ("encoderblock"; the list's key for int keys)
  members: dict[int, _paths.Path]  # number -> member prefix (for a stack: the root)
  stack: bool
  label: str  # for messages: "encoderblock_*", "blocks/*", "layers" (a stack)


def _block_word(name: str) -> bool:
  return bool(_BLOCK_WORDS.search(name)) and not _NOT_BLOCK_WORDS.search(name)


def _stack_roots(structure: _structure.Structure) -> dict[_paths.Path, int]:
  """Stack root -> number of slices: the shallowest module prefix whose leaves are all stacked.

  ``Transformer/encoderblock`` for a scanned ViT's ``Transformer/encoderblock/...``
  leaves beside ``Transformer/encoder_norm``.
  """
  roots: dict[_paths.Path, int] = {}
  for path, info in structure.leaves.items():
    if info.stack_axis is None:
      continue
    length = info.shape[info.stack_axis]
    root = path[:-1]
    for end in range(len(path) - 2, 0, -1):
      under = [i for p, i in structure.leaves.items() if p[:end] == path[:end]]
      if all(i.stack_axis is not None and i.shape[i.stack_axis] == length for i in under):
        root = path[:end]
      else:
        break
    roots[root] = length
  return roots


def _families(structure: _structure.Structure) -> list[_Family]:
  """Every stack and every family of numbered sibling modules, shallowest first."""
  found: dict[tuple[_paths.Path, str], dict[int, _paths.Path]] = {}
  roots = _stack_roots(structure)
  for path, info in structure.leaves.items():
    if info.stack_axis is not None:
      continue
    for k in range(len(path) - 1):  # module keys only: a leaf's own name is no module
      key = path[k]
      if isinstance(key, int) or key.isdigit():  # a list index ("0" in Hugging Face trees)
        name = str(path[k - 1]) if k else ""
        number = int(key)
      else:
        match = _NUMBERED.match(key)
        if match is None:
          continue
        name, number = match.group(1), int(match.group(2))
      found.setdefault((path[:k], name), {})[number] = path[: k + 1]
  families = [
      _Family(
          root[:-1],
          str(root[-1]) if root else "",
          dict(enumerate([root] * n)),
          True,
          _paths.path_to_str(root),
      )
      for root, n in roots.items()
  ]
  for (parent, name), members in found.items():
    int_keys = str(next(iter(members.values()))[-1]).isdigit()
    label = (
        _paths.path_to_str(parent) + "/*"
        if int_keys
        else _paths.path_to_str((*parent, name)) + "_*"
    )
    families.append(_Family(parent, name, members, False, label.removeprefix("<root>/")))
  return sorted(families, key=lambda f: len(f.parent))


def _chosen_families(structure: _structure.Structure) -> list[_Family]:
  """The block families: the shallowest level with a stack or a block-like family."""
  families = _families(structure)
  for level in sorted({len(f.parent) for f in families}):
    here = [f for f in families if len(f.parent) == level]
    preferred = [f for f in here if f.stack or _block_word(f.name)]
    if not preferred:
      preferred = [f for f in here if len(f.members) >= 2]
    if preferred:
      return preferred
  return []


class _Block(NamedTuple):
  name: str
  prefix: _paths.Path
  slice_index: int | None  # for a stack: which slice


def _layer_depths(structure: _structure.Structure) -> dict[_paths.Path, list[int]]:
  """Leaf path -> the depths of its counted layers (one per slice of a stacked leaf)."""
  return {path: [d for _, _, d in info.records()] for path, info in structure.leaves.items()}


def _under(path: _paths.Path, prefix: _paths.Path) -> bool:
  return path[: len(prefix)] == prefix


def _is_forward_ordered(structure: _structure.Structure | None) -> bool:
  """Whether the structure's depths carry a forward order beyond sorted paths (traced)."""
  if structure is None:
    return False
  layers = list(structure.layers)
  return layers != sorted(layers, key=_paths.natural_key)


def _block_start(
    block: _Block, structure: _structure.Structure, depths: Mapping[_paths.Path, list[int]]
) -> tuple[float, float]:
  """The smallest and largest traced depth of a block's counted layers (inf when none)."""
  found = []
  for path, info in structure.leaves.items():
    if not _under(path, block.prefix):
      continue
    values = depths[path]
    if block.slice_index is not None and info.stack_axis is not None and values:
      values = [values[block.slice_index]]
    found += values
  return (min(found), max(found)) if found else (math.inf, -math.inf)


def _ordered_blocks(
    families: list[_Family], structure: _structure.Structure, ordered: bool
) -> list[list[_Block]]:
  """The blocks, one list per family in forward order; families in forward order."""
  depths = _layer_depths(structure)
  per_family: list[tuple[float, str, list[_Block]]] = []  # (end depth, label, blocks)
  for family in families:
    blocks = [
        _Block(
            _paths.path_to_str(_structure.slice_layer(prefix, n) if family.stack else prefix),
            prefix,
            n if family.stack else None,
        )
        for n, prefix in sorted(family.members.items())
    ]
    spans = [_block_start(b, structure, depths) for b in blocks]
    if ordered and not family.stack and all(math.isfinite(lo) for lo, _ in spans):
      blocks = [b for _, b in sorted(zip(spans, blocks, strict=True), key=lambda t: t[0])]
    # A family ends where its last block ends: a decoder that reads the encoder's
    # output ends after it, even where its first block runs beside the encoder's.
    per_family.append((max((hi for _, hi in spans), default=math.inf), family.label, blocks))
  if len(per_family) > 1:
    names = [name for _, name, _ in per_family]
    if ordered and all(math.isfinite(end) for end, _, _ in per_family):
      per_family.sort(key=lambda t: t[0])
    elif (
        len(per_family) == 2
        and sum(bool(_ENCODER_WORDS.search(n)) for n in names) == 1
        and sum(bool(_DECODER_WORDS.search(n)) for n in names) == 1
    ):
      per_family.sort(key=lambda t: not _ENCODER_WORDS.search(t[1]))
    else:
      raise ValueError(
          f"layer decay: found several families of repeated blocks ({', '.join(names)}) and "
          "paths alone cannot order them. Pass structure=caadam_jax.trace_structure(...) "
          "(the forward pass orders them) or " + _FIX_BLOCKS.format()
      )
  return [blocks for _, _, blocks in per_family]


def _blocks_from_override(
    spec: BlocksSpec, structure: _structure.Structure
) -> list[list[_Block]] | Callable[[_paths.Path], tuple[int, str] | None]:
  """``blocks=`` as a leaf path -> (0-based block index, name) lookup."""
  paths = list(structure.leaves)
  if isinstance(spec, (str, re.Pattern)):
    pattern = re.compile(spec)
    if pattern.groups < 1:
      raise ValueError(
          f"blocks={pattern.pattern!r} has no group: give one (\\d+) group that captures the "
          "block number, e.g. r'encoderblock_(\\d+)/'."
      )
    numbers: dict[_paths.Path, tuple[int, str]] = {}
    for path in paths:
      text = _paths.path_to_str(path)
      match = pattern.search(text)
      if match is None:
        continue
      try:
        number = int(match.group(1))
      except (TypeError, ValueError):
        raise ValueError(
            f"blocks={pattern.pattern!r}: its first group matched {match.group(1)!r} in "
            f"{text!r}, which is not a number; the group must capture the block number."
        ) from None
      numbers[path] = (number, text[: match.end(1)])
    if not numbers:
      raise ValueError(
          f"blocks={pattern.pattern!r} matches no parameter path (paths include "
          f"{_paths.paths_to_str(paths, 6)})."
      )
    rank = {n: i for i, n in enumerate(sorted({n for n, _ in numbers.values()}))}
    names = {n: name for n, name in numbers.values()}
    return lambda path: (
        (rank[numbers[path][0]], names[numbers[path][0]]) if path in numbers else None
    )
  if isinstance(spec, Mapping):
    table: dict[_paths.Path, int] = {}
    for key, index in spec.items():
      table[_paths.parse_path(key)] = _validation.check_integer(
          f"blocks[{key!r}]", index, minimum=0, what="a 0-based block index (an integer >= 0)"
      )
    _paths.check_prefixes("blocks", table, paths)
    missing = sorted(set(range(max(table.values()) + 1)) - set(table.values()))
    if missing:
      raise ValueError(
          f"blocks: the block indices must be 0, 1, ..., L - 1 with none left out; "
          f"{missing} are missing (got {sorted(set(table.values()))})."
      )

    def lookup(path: _paths.Path) -> tuple[int, str] | None:
      for end in range(len(path), -1, -1):
        if path[:end] in table:
          index = table[path[:end]]
          return index, f"block {index}"
      return None

    return lookup
  raise TypeError(
      "blocks must be None (find the blocks automatically), a regular expression with one "
      "(\\d+) group, or a mapping from path prefix to 0-based block index; got "
      f"{type(spec).__name__}."
  )


def _stem_matcher(spec: StemSpec, paths: Sequence[_paths.Path]) -> Callable[[_paths.Path], bool]:
  if isinstance(spec, (str, re.Pattern)):
    pattern = re.compile(spec)
    return lambda path: bool(pattern.search(_paths.path_to_str(path)))
  prefixes = [_paths.parse_path(p) for p in cast(Iterable[Any], spec)]
  _paths.check_prefixes("stem", prefixes, paths)
  return lambda path: any(_under(path, p) for p in prefixes)


def _default_stem(path: _paths.Path) -> bool:
  return any(re.search(DEFAULT_STEM, str(key), re.IGNORECASE) for key in path)


def layer_ids(
    structure: _structure.Structure,
    *,
    blocks: BlocksSpec = None,
    stem: StemSpec = None,
    decoder: DecoderRule = "sequential",
    forward_ordered: bool | None = None,
) -> LayerIds:
  """Every leaf's layer-decay id under the timm/BEiT rule.

  Args:
    structure: the parameters' structure (from :func:`~caadam_jax.trace_structure`
      for forward order, or :func:`~caadam_jax.infer_structure`).
    blocks: None (find the blocks), a regex with one number group, or a mapping
      path prefix -> 0-based block index. See :func:`scale_by_layer_decay`.
    stem: None (traced order, else the names of :data:`DEFAULT_STEM`), a regex or
      path prefixes of the leaves outside the blocks that get id 0 (the others get
      ``L + 1``).
    decoder: ``"sequential"`` or ``"parallel"`` (see :func:`scale_by_layer_decay`).
    forward_ordered: whether the structure's depths are the forward order; None
      decides from the structure (depths that differ from sorted path order come
      from a trace or a hand-built structure).

  Returns:
    The :class:`LayerIds`.

  Raises:
    ValueError: no repeated block found, block families paths cannot order, or a
      bad ``blocks``/``stem``/``decoder``.
  """
  if decoder not in ("sequential", "parallel"):
    raise ValueError(f"decoder must be 'sequential' or 'parallel', got {decoder!r}.")
  ordered = _is_forward_ordered(structure) if forward_ordered is None else forward_ordered
  paths = list(structure.leaves)
  block_of: dict[_paths.Path, Any] = {}  # leaf -> (id, name) or per-slice tuple
  if blocks is not None:
    lookup = cast(Callable[[_paths.Path], Any], _blocks_from_override(blocks, structure))
    for path in paths:
      found = lookup(path)
      if found is not None:
        block_of[path] = (found[0] + 1, found[1])
    num_blocks = max(i for i, _ in block_of.values())
    # A depth range per id, for placing the other counted layers.
    spans: dict[int, tuple[float, float]] = {}
    depths = _layer_depths(structure)
    for path, (i, _) in block_of.items():
      lo, hi = spans.get(i, (math.inf, -math.inf))
      values = depths[path]
      spans[i] = (min([lo, *values]), max([hi, *values]))
  else:
    families = _chosen_families(structure)
    if not families:
      top = sorted({_paths.path_to_str(p[:1]) for p in paths})
      raise ValueError(
          "layer decay: no repeated block found: no numbered sibling modules "
          "(encoderblock_0, blocks/0, layers_3, h_7) and no nn.scan/nnx.vmap stack among "
          f"the parameters (top-level names: {', '.join(top[:12])}). " + _FIX_BLOCKS.format()
      )
    per_family = _ordered_blocks(families, structure, ordered)
    if decoder == "parallel":
      numbered = [[(i + 1, b) for i, b in enumerate(f)] for f in per_family]
      num_blocks = max(len(f) for f in per_family)
    else:
      flat = [b for f in per_family for b in f]
      numbered = [[(i + 1, b) for i, b in enumerate(flat)]]
      num_blocks = len(flat)
    spans = {}
    depths = _layer_depths(structure)
    for family in numbered:
      for block_id, block in family:
        lo, hi = _block_start(block, structure, depths)
        old = spans.get(block_id, (math.inf, -math.inf))
        spans[block_id] = (min(lo, old[0]), max(hi, old[1]))
        for path, info in structure.leaves.items():
          if not _under(path, block.prefix):
            continue
          if block.slice_index is None:
            block_of[path] = (block_id, block.name)
          else:
            n = info.shape[cast(int, info.stack_axis)]
            previous = block_of.get(path, ((0,) * n, ("",) * n))
            slice_ids, names = list(previous[0]), list(previous[1])
            slice_ids[block.slice_index], names[block.slice_index] = block_id, block.name
            block_of[path] = (tuple(slice_ids), tuple(names))
  is_stem = _default_stem if stem is None else _stem_matcher(stem, paths)
  first = spans.get(1, (math.inf, math.inf))[0]
  last_end = max((hi for _, hi in spans.values()), default=-math.inf)
  starts = sorted((lo, i) for i, (lo, _) in spans.items() if math.isfinite(lo))
  ids: dict[_paths.Path, int | tuple[int, ...]] = {}
  groups: dict[_paths.Path, str | tuple[str, ...]] = {}
  for path, info in structure.leaves.items():
    if path in block_of:
      ids[path], groups[path] = block_of[path]
      continue
    own = _layer_depths(structure)[path]
    if stem is None and ordered and own and math.isfinite(first):
      depth = min(own)
      if depth < first:
        block_id = 0
      elif depth > last_end:
        block_id = num_blocks + 1
      else:  # between blocks: with the block that started last before it
        block_id = max(i for lo, i in starts if lo <= depth)
    else:
      block_id = 0 if is_stem(path) else num_blocks + 1
    del info
    ids[path] = block_id
    groups[path] = {0: "stem", num_blocks + 1: "head"}.get(block_id, f"block {block_id - 1}")
  return LayerIds(
      types.MappingProxyType(ids),
      types.MappingProxyType(groups),
      num_blocks,
      _group_structure(structure, ids),
  )


def _group_structure(
    structure: _structure.Structure, ids: Mapping[_paths.Path, int | tuple[int, ...]]
) -> _structure.Structure:
  """The groups as a Structure: one layer per id (depth = id), stacked leaves per slice."""
  leaves: dict[_paths.Path, tuple[Any, ...]] = {}
  counted: dict[_paths.Path, _formulas.LayerRecord] = {}
  for path, info in structure.leaves.items():
    leaf_ids = ids[path]
    if isinstance(leaf_ids, tuple):
      layer: _paths.Path = ("layer_decay", "stack", *leaf_ids)
      leaves[path] = (layer, info.shape, info.stack_axis, False)
      for i, block_id in enumerate(leaf_ids):
        counted[_structure.slice_layer(layer, i)] = _formulas.LayerRecord(1, block_id)
    else:
      layer = ("layer_decay", leaf_ids)
      leaves[path] = (layer, info.shape, None, False)
      counted[layer] = _formulas.LayerRecord(1, leaf_ids)
  return _structure.Structure.from_layers(leaves, counted)


def _check_decay(decay: Any, owner: str) -> Any:
  """A concrete ``decay`` checked; a JAX array made NaN outside ``(0, 1]`` (never silently wrong)."""
  _validation.check_real_scalar(
      "decay",
      decay,
      "0 < decay <= 1 (0.65-0.85 are usual for ViT/BERT fine-tuning; 1 turns layer decay off)",
      lambda x: 0 < x <= 1,
      owner=owner,
  )
  if _validation.is_jax_array(decay):
    decay = jnp.asarray(decay, jnp.float32) if jnp.issubdtype(decay.dtype, jnp.integer) else decay
    return jnp.where((decay > 0) & (decay <= 1), decay, jnp.nan)
  return float(decay)


def _formula(num_blocks: int) -> _formulas.Formula:
  def layer_decay(record: _formulas.LayerRecord, stats: _formulas.Statistics, g: Any) -> Any:
    del stats
    return g ** (num_blocks + 1 - record.depth)

  return layer_decay


def _checked_structure(structure: Any) -> _structure.Structure | None:
  if structure is not None and not isinstance(structure, _structure.Structure):
    raise TypeError(
        "structure must be a caadam_jax.Structure or None (None reads the blocks from the "
        f"parameter paths), got {type(structure).__name__}. Build one with "
        "caadam_jax.trace_structure(model.apply, variables, x) for the forward order."
    )
  return structure


def scale_by_layer_decay(
    decay: jax.typing.ArrayLike,
    *,
    structure: _structure.Structure | None = None,
    blocks: BlocksSpec = None,
    stem: StemSpec = None,
    decoder: DecoderRule = "sequential",
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each leaf's update by ``decay ** (L + 1 - id)``: layer-wise learning-rate decay.

  timm's and BEiT's rule for fine-tuning: with ``L`` repeated blocks, the stem
  (everything used before the first block: patch or token embeddings, class
  token, position embeddings) gets id 0, block ``i`` (0-based, forward order)
  gets id ``i + 1`` and everything after the last block (final norm, head) gets
  ``L + 1``; every leaf of a group (weights, biases, norm scales, tokens) is
  scaled by ``decay ** (L + 1 - id)``. The head moves at the full step, the stem
  at ``decay ** (L + 1)`` of it. Chain it after ``optax.scale_by_adam()`` (or any
  preconditioner); :func:`adamw_layer_decay` is AdamW with it.

  Blocks, found automatically (:func:`describe_layer_decay` shows the result):

  * numbered sibling modules: ``encoderblock_0, encoderblock_1, ...``,
    ``blocks/0, blocks/1`` (``nnx.List``, Equinox lists), ``layers_3``, ``h_7``:
    the shallowest level of the tree that has a family named like blocks
    (``block``, ``layer``, ``stage``, ``h``, not ``norm``) or, failing that, a
    family of two or more numbered siblings; numbers give the order (a traced
    structure's forward order wins);
  * ``nn.scan``/``nnx.vmap`` stacks known to the structure (traced, or declared
    with ``infer_structure(params, stacked=...)``): each slice is a block, and a
    stacked leaf is scaled by a factor array along its stack axis;
  * two families (an encoder-decoder's ``encoder/layers_i`` and
    ``decoder/layers_i``): ``decoder="sequential"`` (default) numbers the
    decoder's blocks after the encoder's, as the forward pass runs them
    (``L = L_enc + L_dec``); ``"parallel"`` gives decoder block ``i`` the id of
    encoder block ``i`` (``L = max(L_enc, L_dec)``). Families are ordered by the
    traced forward pass, else by the names ``enc``/``dec``.

  Leaves outside the blocks go to the stem or the head: with a traced
  structure, a counted layer (one with weights) by where the forward pass uses it
  (before the first block: 0; after the last: ``L + 1``; between blocks: the
  block before it); any other leaf (norm scales, tokens, and every leaf when the
  paths are all there is) by name: stem if a key of its path matches
  :data:`DEFAULT_STEM` (``cls``, ``embed``, ``pos...``, ``patch``, ``stem``,
  ``wte``, ``wpe``, ``..._init``), else head. ``stem=`` replaces that rule.

  Examples:
    >>> import jax.numpy as jnp, optax, caadam_jax
    >>> params = {'embed': {'embedding': jnp.ones((8, 4))},
    ...           'block_0': {'kernel': jnp.ones((4, 4))},
    ...           'block_1': {'kernel': jnp.ones((4, 4))},
    ...           'head': {'kernel': jnp.ones((4, 2))}}
    >>> tx = optax.chain(optax.scale_by_adam(), caadam_jax.scale_by_layer_decay(0.5))
    >>> updates, _ = tx.update(params, tx.init(params))  # Adam's first step: about 1
    >>> {k: round(float(v[next(iter(v))][0, 0]), 4) for k, v in updates.items()}
    {'block_0': 0.25, 'block_1': 0.5, 'embed': 0.125, 'head': 1.0}

  Args:
    decay: the decay per block, ``0 < decay <= 1`` (1 leaves updates unchanged).
      A JAX array (``optax.inject_hyperparams``, traced under ``jit``) is used
      arithmetically and not range-checked: outside ``(0, 1]`` the step is NaN,
      never silently wrong.
    structure: a :class:`~caadam_jax.Structure`, best from
      :func:`~caadam_jax.trace_structure` (forward order of blocks and of the
      layers outside them, scanned stacks). None reads the blocks from the paths
      of the tree given to ``init``/``update`` (``init`` refuses undeclared
      stacks).
    blocks: overrides the block search: a regular expression (``re.search`` on
      ``'/'``-joined leaf paths) whose first group captures the block number
      (numbers ranked: ``r'layer_(\\d+)/'``), or a mapping from path prefix to
      0-based block index (several prefixes may share an index: ResNet stages);
      the longest prefix wins.
    stem: which leaves outside the blocks are stem (id 0; all others outside the
      blocks are head): a regular expression on the ``'/'``-joined path or path
      prefixes. None: the traced order and :data:`DEFAULT_STEM`, as above.
    decoder: ``"sequential"`` or ``"parallel"``, for two block families.

  Returns:
    A stateless ``optax.GradientTransformationExtraArgs`` (``optax.EmptyState``).

  Raises:
    TypeError: ``decay`` is not a real scalar, or ``structure``/``blocks`` has a
      wrong type.
    ValueError: a concrete ``decay`` outside ``(0, 1]`` or not finite; no
      repeated block found, block families that paths cannot order, an unknown
      path in ``blocks``/``stem`` (at construction with a structure, else in
      ``init``).

  References:
    Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022;
    Clark et al., "ELECTRA", ICLR 2020 (layer-wise learning-rate decay).
  """
  decay = _check_decay(decay, "caadam_jax.scale_by_layer_decay")
  structure = _checked_structure(structure)

  def ids_of(source: _structure.Structure, forward_ordered: bool | None) -> LayerIds:
    return layer_ids(
        source, blocks=blocks, stem=stem, decoder=decoder, forward_ordered=forward_ordered
    )

  cache: dict[Any, tuple[_structure.Structure, optax.GradientTransformationExtraArgs]] = {}

  def transform_for(tree: Any) -> optax.GradientTransformationExtraArgs:
    """``scale_by_structure`` with the group structure of ``tree`` (cached per tree layout)."""
    source = _structure.infer_structure(tree) if structure is None else structure.for_tree(tree)
    key = (id(source) if structure is not None else None, jax.tree_util.tree_structure(tree))
    if structure is None:
      key = (tuple(source.leaves.items()), key[1])
    if key not in cache:
      ids = ids_of(source, None if structure is not None else False)
      cache[key] = (
          source,
          _transforms.scale_by_structure(_formula(ids.num_blocks), decay, structure=ids.structure),
      )
    return cache[key][1]

  if structure is not None:
    ids_of(structure, None)  # errors at construction

  def init_fn(params: optax.Params) -> optax.EmptyState:
    if structure is None:
      # An undeclared nn.scan stack would be taken for one block: refuse it, naming the fix.
      _guards.check_default(params, _structure.infer_structure(params), uses_depth=False)
    else:
      structure.for_tree(params).check_matches(params)
    transform_for(params)
    return optax.EmptyState()

  def update_fn(
      updates: optax.Updates,
      state,  # optax.EmptyState
      params: optax.Params | None = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, optax.EmptyState]:
    del params, extra_args
    updates, _ = transform_for(updates).update(updates, optax.EmptyState())
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adamw_layer_decay(
    learning_rate: optax.ScalarOrSchedule,
    decay: jax.typing.ArrayLike = 0.75,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: optax.ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    *,
    nesterov: bool = False,
    structure: _structure.Structure | None = None,
    blocks: BlocksSpec = None,
    stem: StemSpec = None,
    decoder: DecoderRule = "sequential",
    factors_in_state: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """AdamW with layer-wise learning-rate decay: ``optax.adamw`` with a per-group learning rate.

  Group ``id`` (see :func:`scale_by_layer_decay`) trains with the learning rate
  ``learning_rate * decay ** (L + 1 - id)``, as timm's ``layer_decay`` does: the
  factor multiplies the whole step, Adam's update and the decoupled weight decay
  alike. Equal to::

    optax.chain(
        optax.scale_by_adam(b1, b2, eps, eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        optax.add_decayed_weights(weight_decay, mask),
        <scale_by_layer_decay(decay) then optax.scale_by_learning_rate(learning_rate)>,
    )

  where the last stage is ONE transform with the state of
  ``optax.scale_by_learning_rate``: the optimizer state is exactly
  ``optax.adamw``'s (same tree, shapes and dtypes), so checkpoints interchange.
  Works with ``optax.inject_hyperparams`` (``decay`` may be injected or scheduled
  there).

  Examples:
    >>> import jax, jax.numpy as jnp, optax, caadam_jax
    >>> params = {'embed': {'embedding': jnp.ones((8, 4))},
    ...           'layers_0': {'kernel': jnp.ones((4, 4))},
    ...           'head': {'kernel': jnp.ones((4, 2))}}
    >>> tx = caadam_jax.adamw_layer_decay(1e-3, decay=0.75)
    >>> state = tx.init(params)
    >>> jax.tree.structure(state) == jax.tree.structure(optax.adamw(1e-3).init(params))
    True

  Args:
    learning_rate: a scalar or an Optax schedule (the head's learning rate).
    decay: the decay per block, ``0 < decay <= 1`` (default 0.75, timm's and
      BEiT's usual value for ViT-B).
    b1: as in ``optax.adamw``.
    b2: as in ``optax.adamw``.
    eps: as in ``optax.adamw``.
    eps_root: as in ``optax.adamw``.
    mu_dtype: as in ``optax.adamw``.
    weight_decay: as in ``optax.adamw``.
    mask: as in ``optax.adamw``.
    nesterov: as in ``optax.adamw``.
    structure: see :func:`scale_by_layer_decay`.
    blocks: see :func:`scale_by_layer_decay`.
    stem: see :func:`scale_by_layer_decay`.
    decoder: see :func:`scale_by_layer_decay`.
    factors_in_state: hold the per-group factors in the state
      (:func:`~caadam_jax.factors_in_state`): a state that is not ``optax.adamw``'s,
      for a compile time near AdamW's with many blocks (~1000). False (the default)
      keeps ``optax.adamw``'s state.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Raises:
    TypeError: as :func:`scale_by_layer_decay`, or a hyperparameter that is not a
      real scalar.
    ValueError: as :func:`scale_by_layer_decay`, or a concrete hyperparameter out
      of range.

  References:
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019;
    Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022.
  """
  owner = "caadam_jax.adamw_layer_decay"
  _validation.check_adam_hyperparameters(
      owner,
      learning_rate=learning_rate,
      b1=b1,
      b2=b2,
      eps=eps,
      eps_root=eps_root,
      weight_decay=weight_decay,
  )
  layer_decay = scale_by_layer_decay(
      decay, structure=structure, blocks=blocks, stem=stem, decoder=decoder
  )
  factors_in_state = _validation.check_bool("factors_in_state", factors_in_state)
  tx = optax.chain(
      optax.scale_by_adam(
          b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
      ),
      optax.add_decayed_weights(weight_decay, mask),
      # optax.scale_by_learning_rate's state (adamw's tree), layer decay run first.
      _transforms.with_stateless(optax.scale_by_learning_rate(learning_rate), before=layer_decay),
  )
  return _factor_state.factors_in_state(tx) if factors_in_state else tx


@overload
def describe_layer_decay(
    params_or_structure: optax.Params | _structure.Structure,
    decay: float = ...,
    *,
    blocks: BlocksSpec = ...,
    stem: StemSpec = ...,
    decoder: DecoderRule = ...,
    show: bool = ...,
    as_string: Literal[False] = ...,
) -> list[LayerDecayRow]:
  ...


@overload
def describe_layer_decay(
    params_or_structure: optax.Params | _structure.Structure,
    decay: float = ...,
    *,
    blocks: BlocksSpec = ...,
    stem: StemSpec = ...,
    decoder: DecoderRule = ...,
    show: bool = ...,
    as_string: Literal[True],
) -> str:
  ...


def describe_layer_decay(
    params_or_structure: optax.Params | _structure.Structure,
    decay: float = 0.75,
    *,
    blocks: BlocksSpec = None,
    stem: StemSpec = None,
    decoder: DecoderRule = "sequential",
    show: bool = True,
    as_string: bool = False,
) -> list[LayerDecayRow] | str:
  """Returns (and prints) every leaf's layer-decay group, id and factor.

  Args:
    params_or_structure: a params pytree (blocks read from its paths) or a
      :class:`~caadam_jax.Structure` (e.g. from
      :func:`~caadam_jax.trace_structure`).
    decay: the decay per block, ``0 < decay <= 1``.
    blocks: see :func:`scale_by_layer_decay`.
    stem: see :func:`scale_by_layer_decay`.
    decoder: see :func:`scale_by_layer_decay`.
    show: print the table.
    as_string: return the table as a string instead of the rows (print nothing).

  Returns:
    One :class:`LayerDecayRow` per leaf, by id (stacked leaves by their first
    slice), or the table as a string.

  Raises:
    ValueError: as :func:`scale_by_layer_decay`.

  Examples:
    >>> import jax.numpy as jnp, caadam_jax
    >>> params = {'embed': {'embedding': jnp.ones((8, 4))},
    ...           'h_0': {'kernel': jnp.ones((4, 4))},
    ...           'h_1': {'kernel': jnp.ones((4, 4))},
    ...           'ln_f': {'scale': jnp.ones(4)}}
    >>> rows = caadam_jax.describe_layer_decay(params, 0.5, show=False)
    >>> [(r.leaf, r.group, r.layer_id, r.factor) for r in rows]  # doctest: +NORMALIZE_WHITESPACE
    [('embed/embedding', 'stem', 0, 0.125), ('h_0/kernel', 'h_0', 1, 0.25),
     ('h_1/kernel', 'h_1', 2, 0.5), ('ln_f/scale', 'head', 3, 1.0)]
  """
  decay = _check_decay(decay, "caadam_jax.describe_layer_decay")
  given = isinstance(params_or_structure, _structure.Structure)
  structure = params_or_structure if given else _structure.infer_structure(params_or_structure)
  structure = cast(_structure.Structure, structure)
  ids = layer_ids(
      structure,
      blocks=blocks,
      stem=stem,
      decoder=decoder,
      forward_ordered=None if given else False,
  )
  factors = ids.structure.factors(_formula(ids.num_blocks), decay)

  def first(value: Any) -> int:
    return value[0] if isinstance(value, tuple) else value

  rows = [
      LayerDecayRow(
          leaf=_paths.path_to_str(path),
          group=ids.groups[path],
          layer_id=ids.ids[path],
          factor=_describe._as_python(factors[path]),
      )
      for path in sorted(structure.leaves, key=lambda p: (first(ids.ids[p]), _paths.natural_key(p)))
  ]
  title = f"layer decay {decay:g}: L={ids.num_blocks} blocks, factor = decay ** (L + 1 - id)"
  header = ["leaf", "group", "id", "factor"]
  body = [[r.leaf, _text(r.group), _text(r.layer_id), _describe._format(r.factor)] for r in rows]
  if as_string:
    return _describe._plain_table(title, header, body)
  if show:
    _describe._print_table(title, header, body, width=None)
  return rows


def _text(value: Any) -> str:
  if isinstance(value, tuple):
    shown = ", ".join(str(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
    return f"({shown})"
  return str(value)
