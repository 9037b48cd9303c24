"""Guards of the default path: refuse a structure that paths alone would get wrong.

With ``structure=None`` the transforms infer the structure from the paths and
shapes of the tree they are given (:func:`~caadam_jax.infer_structure`). That is
right for a sequential MLP or CNN with numbered layers, and silently wrong when
the sorted path order is not the forward order (named submodules: a ResNet's
classifier ``Dense_0`` sorts before its stem ``conv_init``) or when a leaf holds a
stack of layers (``nn.scan``, ``nnx.vmap``) that was not declared. These checks
run once, in ``init``, where Flax's metadata (partitioning names, NNX Variable
metadata) is still visible, and raise an error that names the fix.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any, cast

import jax

from caadam_jax import _paths
from caadam_jax import _structure

# Partition (sharding) axis names that Flax users give the stack axis of
# nn.scan / nnx.vmap (``metadata_params={nn.PARTITION_NAME: 'layers'}``).
_STACK_AXIS_WORDS = ("layer", "stack", "scan", "repeat")
# linen names a module created with nn.scan(Block) "ScanBlock_<i>" by default.
_LINEN_SCAN_NAME = re.compile(r"^Scan[A-Z]\w*_\d+$")
# A layer key that numbers a sequence: "Dense_3", "conv2", "layers_0" (or an int).
_NUMBERED = re.compile(r"^(\D*?)_?(\d+)$")
_CONV_WORDS = ("conv",)
_DENSE_WORDS = ("dense", "linear", "fc", "mlp")


def is_equinox(tree: Any) -> bool:
  """Whether ``tree`` is an Equinox module (equinox is never imported here)."""
  eqx = sys.modules.get("equinox")
  return eqx is not None and isinstance(tree, eqx.Module)


def _trace_forms(tree: Any) -> str:
  """How to call trace_structure for this kind of tree, for the fix in a message."""
  if is_equinox(tree):
    return (
        "caadam_jax.trace_structure(eqx_model, x) (the Equinox module itself and one "
        "unbatched example; its paths are those of eqx.filter(model, eqx.is_inexact_array))"
    )
  return (
      "caadam_jax.trace_structure(model.apply, variables, x) (linen; or "
      "trace_structure(nnx_module, x) for NNX, trace_structure(eqx_model, x) for Equinox)"
  )


def _fix_stack(params: Any, prefix: _paths.Path, axis: int) -> str:
  declared = f"stacked={{{_paths.path_to_str(prefix) if prefix else ''!r}: {axis}}}"
  return (
      f"Pass structure={_trace_forms(params)}: it finds scanned stacks and counts every "
      "slice as a layer; or declare the stack: "
      f"structure=caadam_jax.infer_structure(params, {declared}). If it is not a stack, pass "
      "structure=caadam_jax.infer_structure(params) to accept the path rules."
  )


def _fix_order(params: Any) -> str:
  return (
      f"Pass structure={_trace_forms(params)}: it reads the forward order from the model. If "
      "the natural path order is the forward order, pass "
      "structure=caadam_jax.infer_structure(params) to say so."
  )


_FIX_GROUP = (
    "Inside optax.masked / optax.partition / optax.multi_transform a transform sees only its "
    "group (the other leaves are optax.MaskedNode placeholders), so structure=None would "
    "compute c_min, c_med, c_max and the depths over the group alone. Build the structure "
    "from the full parameters and pass it: structure=caadam_jax.infer_structure(full_params) "
    "(or caadam_jax.trace_structure(...)); for statistics per group on purpose, pass "
    "structure=caadam_jax.infer_structure(group_params)."
)


def check_not_a_group(params: Any) -> None:
  """Refuses a tree with MaskedNode placeholders: its statistics would be per group."""
  _, masked = _paths.leaves_with_paths(params)
  if masked:
    raise ValueError(
        "caadam_jax (structure=None): the tree has masked-out leaves ("
        + _paths.paths_to_str(masked, limit=4)
        + "). "
        + _FIX_GROUP
    )


def _stack_prefix(structure: _structure.Structure, path: _paths.Path, axis: int) -> _paths.Path:
  """The highest ancestor of ``path`` under which every leaf has its stack size on ``axis``.

  The stack of an ``nnx.vmap``-created module holds several sublayers (``layers/linear``,
  ``layers/bn``): declaring only the flagged sublayer would leave the others counted as
  one layer. The root is only returned for a leaf at the root.
  """
  size = structure.leaves[path].shape[axis]

  def all_stacked(prefix):
    shapes = [i.shape for p, i in structure.leaves.items() if p[: len(prefix)] == prefix]
    return all(len(s) > axis and s[axis] == size for s in shapes)

  best = path[:-1] or path
  for end in range(len(path) - 1, 0, -1):
    if not all_stacked(path[:end]):
      break
    best = path[:end]
  return best


def _axis_names(box: Any) -> tuple[Any, ...]:
  """The partition names of a linen ``nn.Partitioned`` box or an NNX Variable."""
  names = getattr(box, "names", None)  # linen nn.Partitioned / LogicallyPartitioned
  if isinstance(names, tuple):
    return names
  get_metadata = getattr(box, "get_metadata", None)
  metadata = get_metadata() if callable(get_metadata) else {}
  for key in ("out_sharding", "sharding_names", "sharding"):  # across flax 0.12.x
    names = metadata.get(key) if isinstance(metadata, dict) else None
    if isinstance(names, (tuple, list)):
      return tuple(names)
  return ()


def _is_box(x: Any) -> bool:
  return bool(_axis_names(x))


# A stack found by a guard: (reason, stack axis, the stack's path prefix or None when
# it is to be found from the shapes).
_Stack = tuple[str, int, "_paths.Path | None"]


def _named_stacks(params: Any) -> dict[_paths.Path, _Stack]:
  """Leaves whose Flax metadata names a stack axis: path -> stack."""
  found = {}
  flat, _ = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_box)
  for key_path, leaf in flat:
    for axis, name in enumerate(_axis_names(leaf)):
      if isinstance(name, str) and any(w in name.lower() for w in _STACK_AXIS_WORDS):
        path = _paths.normalize_path(key_path)
        found[path] = (f"its partitioning metadata names axis {axis} {name!r}", axis, None)
        break
  return found


def _shape_stacks(structure: _structure.Structure) -> dict[_paths.Path, _Stack]:
  """Leaves whose shapes or paths look like an undeclared stack: path -> stack."""
  by_layer: dict[_paths.Path, dict[Any, tuple[_paths.Path, tuple[int, ...]]]] = {}
  for path, info in structure.leaves.items():
    if path and info.stack_axis is None:
      by_layer.setdefault(path[:-1], {})[path[-1]] = (path, info.shape)
  found: dict[_paths.Path, _Stack] = {}
  for layer, leaves in by_layer.items():
    scan_at = next(
        (i for i, k in enumerate(layer) if isinstance(k, str) and _LINEN_SCAN_NAME.match(k)), None
    )
    if scan_at is not None and any(len(shape) >= 2 for _, shape in leaves.values()):
      path = next(iter(leaves.values()))[0]
      reason = f"it sits under {layer[scan_at]!r}, the name linen gives an nn.scan module"
      found[path] = (reason, 0, layer[: scan_at + 1])
      continue
    bias = leaves.get("bias")
    if "kernel" in leaves and bias:
      (path, k), (_, b) = leaves["kernel"], bias
      # Flax puts the features last: a layer's bias is the kernel's trailing shape.
      if b and len(b) <= len(k) and k[-len(b) :] != b and b[0] == k[0] and len(b) >= 2:
        reason = f"its bias {b} is not the kernel's trailing shape but leads with {b[0]}"
        found[path] = (reason, 0, None)
    elif "weight" in leaves and bias:
      (path, k), (_, b) = leaves["weight"], bias
      # Equinox/PyTorch put the features first: a bias is (out,), or (out, 1, 1) for a
      # convolution; a stacked one leads with the stack size and then has out.
      if len(b) >= 2 and b[0] == k[0] and any(d != 1 for d in b[1:]):
        reason = f"its bias {b} is not (out,) or (out, 1, ...) but leads with {b[0]}"
        found[path] = (reason, 0, None)
    elif not any(
        len(shape) >= 2 and str(name).lower() not in _structure.NON_WEIGHT_NAMES
        for name, (_, shape) in leaves.items()
    ):
      for name in ("scale", "bias"):
        if name in leaves and len(leaves[name][1]) >= 2:
          path, shape = leaves[name]
          found[path] = (f"a norm {name} is 1-D, and this one is {shape}", 0, None)
          break
  return found


def _order_problem(layers: Iterable[_paths.Path]) -> str | None:
  """Why natural path order may not be forward order, or None if it is trusted.

  Trusted: one numbered sequence (``Dense_0, Dense_1``; ``layers/0, layers/1``;
  ``conv1, conv2``; ``blocks/0/mlp, blocks/1/mlp``), or numbered convolutions
  followed by numbered dense layers (``Conv_0, Conv_1, Dense_0``).
  """
  layers = list(layers)
  if len(layers) <= 1:
    return None
  prefix = 0
  while all(len(p) > prefix + 1 and p[prefix] == layers[0][prefix] for p in layers):
    prefix += 1
  rests = [p[prefix:] for p in layers]
  if not all(rests):
    return "a layer sits at the root of the tree beside named layers"
  if len({r[1:] for r in rests}) > 1:
    shown = ", ".join(_paths.path_to_str(r) for r in rests[:6])
    return f"the layers are named submodules at different levels ({shown})"
  if not all(isinstance(r[0], int) or _NUMBERED.match(str(r[0])) for r in rests):
    named = next(r for r in rests if not isinstance(r[0], int) and not _NUMBERED.match(str(r[0])))
    return f"layer {_paths.path_to_str(named)} is named, not numbered"
  ordered = [_family(r[0]) for r in sorted(rests, key=_paths.natural_key)]
  if len(set(ordered)) == 1:
    return None
  kinds = [_kind(f) for f in ordered]
  if set(kinds) == {"conv", "dense"} and kinds == sorted(kinds):  # "conv" < "dense"
    return None
  families = ", ".join(dict.fromkeys(f or "<int>" for f in ordered))
  return f"the layers follow several naming patterns ({families})"


# linen names a module created without a name "<ClassName>_<i>", numbered in the order
# the modules are CONSTRUCTED, which is not the call order where calls nest
# (``nn.Dense(1)(nn.relu(nn.Dense(8)(x)))`` names the output layer Dense_0).
_LINEN_AUTO_NAME = re.compile(r"^[A-Z]\w*_\d+$")
# Backtracking steps spent looking for a second shape-consistent order.
_ORDER_SEARCH_BUDGET = 20_000


def _in_out(structure: _structure.Structure, layer: _paths.Path) -> tuple[int, int, str] | None:
  """``(fan_in, fan_out, kind)`` of a layer with one Dense or Conv weight, else None.

  Flax ``kernel`` is ``(..., in, out)``; Equinox/PyTorch ``weight`` is ``(out, in, ...)``.
  """
  weights = [(p, i.shape) for p, i in structure.leaves.items() if i.layer == layer and i.weight]
  if len(weights) != 1 or len(weights[0][1]) not in (2, 3, 4, 5):
    return None
  (path, shape), kind = weights[0], "dense" if len(weights[0][1]) == 2 else "conv"
  if path[-1] == "kernel":
    return shape[-2], shape[-1], kind
  if path[-1] == "weight":
    return shape[1], shape[0], kind
  return None


def _links(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
  """Whether layer ``b`` can take layer ``a``'s output (a flatten may sit between conv and dense)."""
  if a[2] == "conv" and b[2] == "dense":
    return b[0] % a[1] == 0
  return a[1] == b[0]


def _orders_consistent(shapes: list[tuple[int, int, str]]) -> int:
  """How many orders of ``shapes`` chain (capped at 2; 2 also when the search is too long)."""
  n, count, steps = len(shapes), 0, 0
  used = [False] * n

  def extend(last: int | None, placed: int) -> None:
    nonlocal count, steps
    steps += 1
    if count >= 2 or steps > _ORDER_SEARCH_BUDGET:
      count = max(count, 2 if steps > _ORDER_SEARCH_BUDGET else count)
      return
    if placed == n:
      count += 1
      return
    for j in range(n):
      if not used[j] and (last is None or _links(shapes[last], shapes[j])):
        used[j] = True
        extend(j, placed + 1)
        used[j] = False

  extend(None, 0)
  return count


def _chain_problem(structure: _structure.Structure) -> str | None:
  """Why the layers' shapes contradict, or do not pin down, their numbered order.

  Only for linen's automatic names (``Dense_0``, ``Conv_1``): they follow construction
  order. The order is trusted where every layer has one Dense/Conv weight, the shapes
  chain in natural order (each layer's input size is the previous one's output size),
  and no other order chains as well (layers of equal shapes could be permuted).
  """
  layers = list(structure.layers)
  if len(layers) <= 1 or not all(
      isinstance(layer[-1], str) and _LINEN_AUTO_NAME.match(layer[-1]) for layer in layers
  ):
    return None
  names = ", ".join(_paths.path_to_str(layer) for layer in layers[:6])
  guess = (
      f"linen numbers unnamed modules ({names}) in the order they are constructed, which is "
      "not the call order where calls nest (nn.Dense(1)(nn.relu(nn.Dense(8)(x))) names the "
      "output layer Dense_0)"
  )
  shapes = [_in_out(structure, layer) for layer in layers]
  if any(s is None for s in shapes):
    return f"{guess}, and the layers' shapes cannot confirm the order"
  chain = cast(list[tuple[int, int, str]], shapes)
  for i in range(len(layers) - 1):
    (a, sa), (b, sb) = (layers[i], chain[i]), (layers[i + 1], chain[i + 1])
    if not _links(sa, sb):
      return (
          f"{guess}; here the shapes contradict it: {_paths.path_to_str(b)} takes {sb[0]} "
          f"inputs but {_paths.path_to_str(a)} gives {sa[1]}"
      )
  if _orders_consistent(chain) > 1:
    return (
        f"{guess}, and the layers' shapes fit more than one order (layers of equal shapes "
        "could be swapped), so the order is a guess"
    )
  return None


def _family(key: _paths.PathKey) -> str:
  """``'Dense_3'`` -> ``'dense'``, ``'conv2'`` -> ``'conv'``, ``3`` -> ``''``."""
  if isinstance(key, int):
    return ""
  match = _NUMBERED.match(str(key))
  return match.group(1).lower().strip("_") if match else str(key).lower()


def _kind(family: str) -> str:
  if family.startswith(_CONV_WORDS):
    return "conv"
  if family.startswith(_DENSE_WORDS):
    return "dense"
  return family


def check_default(params: Any, structure: _structure.Structure, *, uses_depth: bool) -> None:
  """Raises a ValueError where the inferred ``structure`` of ``params`` is not trustworthy.

  Args:
    params: the tree ``init`` was given (with its Flax boxes or NNX Variables).
    structure: ``infer_structure`` of that tree.
    uses_depth: whether the strategy reads depths (then the order must be right): the
      depth strategy, and a user formula unless it says otherwise.

  Raises:
    ValueError: a leaf looks like an undeclared stack, or (``uses_depth``) the
      path order cannot be trusted as the forward order.
  """
  check_not_a_group(params)
  stacks = {**_shape_stacks(structure), **_named_stacks(params)}
  if stacks:
    path, (reason, axis, prefix) = next(iter(stacks.items()))
    info = structure.leaves.get(path)
    shape = f" {info.shape}" if info is not None else ""
    size = info.shape[axis] if info is not None and len(info.shape) > axis else "?"
    if prefix is None:
      prefix = _stack_prefix(structure, path, axis)
    raise ValueError(
        f"caadam_jax (structure=None): leaf {_paths.path_to_str(path)}{shape} looks like a stack "
        f"of layers (nn.scan / nnx.vmap) that was not declared: {reason}. Counted as one "
        "layer, its connection count and depth would be wrong. The stack is everything under "
        f"{_paths.path_to_str(prefix)!r} (every leaf there has the stack size "
        f"{size} along axis {axis}). " + _fix_stack(params, prefix, axis)
    )
  if uses_depth:
    problem = _order_problem(structure.layers)
    if problem is None:
      problem = _chain_problem(structure)
    if problem is not None:
      raise ValueError(
          "caadam_jax (structure=None): the strategy reads depths (the depth strategy, or a "
          "formula given with uses_depth=True, the default for formulas) and needs the "
          f"layers' forward order, and sorted paths cannot give it here: {problem}. "
          + _fix_order(params)
          + " A formula that reads no depths may say so: "
          "caadam_jax.scale_by_structure(formula, uses_depth=False)."
      )


def check_not_local_shards(
    structure: _structure.Structure, init_shapes: dict[_paths.Path, tuple[int, ...]]
) -> None:
  """Refuses local shard shapes: inside ``shard_map``, shapes that differ from ``init``'s.

  Under ``jax.shard_map`` a function sees each device's shard; connection counts from
  those shapes are wrong. Where ``init`` saw the same leaves (outside ``shard_map``,
  with global shapes) and a leaf's shape now differs while the current mesh has
  manual axes, the shapes are local: raise with the fix. Elsewhere nothing is known.
  """
  manual = getattr(jax.sharding.get_abstract_mesh(), "manual_axes", ())
  if not manual or set(init_shapes) != set(structure.leaves):
    return
  local = [
      (p, init_shapes[p], info.shape)
      for p, info in structure.leaves.items()
      if info.shape != init_shapes[p]
  ]
  if local:
    shown = ", ".join(f"{_paths.path_to_str(p)} {g} -> {s}" for p, g, s in local[:4])
    raise ValueError(
        f"caadam_jax (structure=None): inside shard_map (manual mesh axes {tuple(manual)}) the "
        f"updates have local shard shapes ({shown}; init saw the global ones), so connection "
        "counts from them would be wrong. Build the structure from the global parameters, "
        "outside shard_map, and pass it: structure=caadam_jax.infer_structure(params) (or "
        "caadam_jax.trace_structure(...)); docs/multihost.md, 'The trap: shard_map sees "
        "local shapes'."
    )
