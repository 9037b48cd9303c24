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
from collections.abc import Iterable
from typing import Any

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

_FIX_STACK = (
    "Pass structure=caadam_jax.trace_structure(...) (it finds scanned stacks and counts "
    "every slice as a layer), or declare the stack: "
    "structure=caadam_jax.infer_structure(params, stacked={{{prefix!r}: 0}}). If it is not "
    "a stack, pass structure=caadam_jax.infer_structure(params) to accept the path rules."
)
_FIX_ORDER = (
    "Pass structure=caadam_jax.trace_structure(model.apply, variables, x) (or "
    "trace_structure(nnx_module, x)): it reads the forward order from the model. If the "
    "natural path order is the forward order, pass "
    "structure=caadam_jax.infer_structure(params) to say so."
)


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


def _named_stacks(params: Any) -> dict[_paths.Path, str]:
  """Leaves whose Flax metadata names a stack axis: path -> reason."""
  found = {}
  flat, _ = jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_box)
  for key_path, leaf in flat:
    for axis, name in enumerate(_axis_names(leaf)):
      if isinstance(name, str) and any(w in name.lower() for w in _STACK_AXIS_WORDS):
        path = _paths.normalize_path(key_path)
        found[path] = f"its partitioning metadata names axis {axis} {name!r}"
        break
  return found


def _shape_stacks(structure: _structure.Structure) -> dict[_paths.Path, str]:
  """Leaves whose shapes or paths look like an undeclared stack: path -> reason."""
  by_layer: dict[_paths.Path, dict[Any, tuple[_paths.Path, tuple[int, ...]]]] = {}
  for path, info in structure.leaves.items():
    if path and info.stack_axis is None:
      by_layer.setdefault(path[:-1], {})[path[-1]] = (path, info.shape)
  found = {}
  for layer, leaves in by_layer.items():
    scan_key = next((k for k in layer if isinstance(k, str) and _LINEN_SCAN_NAME.match(k)), None)
    if scan_key is not None and any(len(shape) >= 2 for _, shape in leaves.values()):
      path = next(iter(leaves.values()))[0]
      found[path] = f"it sits under {scan_key!r}, the name linen gives an nn.scan module"
      continue
    kernel, bias = leaves.get("kernel"), leaves.get("bias")
    if kernel and bias:
      (path, k), (_, b) = kernel, bias
      # Flax puts the features last: a layer's bias is the kernel's trailing shape.
      if b and len(b) <= len(k) and k[-len(b) :] != b and b[0] == k[0] and len(b) >= 2:
        found[path] = f"its bias {b} is not the kernel's trailing shape but leads with {b[0]}"
    elif kernel is None:
      for name in ("scale", "bias"):
        if name in leaves and len(leaves[name][1]) >= 2:
          path, shape = leaves[name]
          found[path] = f"a norm {name} is 1-D, and this one is {shape}"
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
  stacks = {**_shape_stacks(structure), **_named_stacks(params)}
  if stacks:
    path, reason = next(iter(stacks.items()))
    info = structure.leaves.get(path)
    shape = f" {info.shape}" if info is not None else ""
    raise ValueError(
        f"caadam_jax (structure=None): leaf {_paths.path_to_str(path)}{shape} looks like a stack "
        f"of layers (nn.scan / nnx.vmap) that was not declared: {reason}. Counted as one "
        "layer, its connection count and depth would be wrong. "
        + _FIX_STACK.format(prefix=_paths.path_to_str(path[:-1] or path))
    )
  if uses_depth:
    problem = _order_problem(structure.layers)
    if problem is not None:
      raise ValueError(
          "caadam_jax (structure=None): the strategy reads depths (the depth strategy, or a "
          "formula given with uses_depth=True, the default for formulas) and needs the "
          f"layers' forward order, and sorted paths cannot give it here: {problem}. "
          + _FIX_ORDER
          + " A formula that reads no depths may say so: "
          "caadam_jax.scale_by_structure(formula, uses_depth=False)."
      )
