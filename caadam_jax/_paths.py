"""Parameter paths: normalization and natural ordering.

This is the one place where a pytree key path becomes a plain tuple of keys and where
layer paths are ordered. Every structure, transform and report goes through it, so a
leaf is named the same way whether it comes from Flax linen, Flax NNX (with or
without the ``.value`` level of its Variables) or a plain dict.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import optax

PathKey = str | int
Path = tuple[PathKey, ...]

# Attribute names that hold a parameter's array inside a box: NNX Variables (``.value``)
# and linen's partitioning boxes (``nn.Partitioned.value``). They are not part of the
# parameter's name: ``tx.init`` sees them, ``tx.update`` does not.
_BOX_ATTRIBUTES = frozenset({"value", "raw_value"})


def _key_to_plain(key: Any) -> PathKey:
  if isinstance(key, jax.tree_util.DictKey):
    plain = key.key
  elif isinstance(key, jax.tree_util.GetAttrKey):
    plain = key.name
  elif isinstance(key, jax.tree_util.SequenceKey):
    plain = key.idx
  elif isinstance(key, jax.tree_util.FlattenedIndexKey):
    plain = key.key
  else:
    plain = str(key)
  if isinstance(plain, (str, int)) and not isinstance(plain, bool):
    return plain
  return str(plain)


def normalize_path(key_path: Sequence[Any]) -> Path:
  """Returns the plain, box-free form of a pytree key path.

  Dict keys, attribute names and sequence indices become plain ``str``/``int``
  keys; a trailing attribute ``value`` (NNX Variables, linen ``nn.Partitioned``
  boxes) is dropped, so ``('Dense_0', 'kernel', .value)`` and
  ``('Dense_0', 'kernel')`` name the same parameter. Integer keys stay integers
  (``nnx.List`` entries, ``nnx.Sequential`` layers), so ordering compares them as
  numbers.

  Args:
    key_path: a key path as produced by ``jax.tree_util.tree_flatten_with_path``,
      or an already plain sequence of keys.

  Returns:
    The normalized path as a tuple of ``str`` and ``int``.
  """
  keys = list(key_path)
  while (
      keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name in _BOX_ATTRIBUTES
  ):
    keys.pop()
  return tuple(_key_to_plain(k) for k in keys)


def path_to_str(path: Sequence[Any]) -> str:
  """Names a parameter path ``'a/b/0/kernel'``, as the rest of the library writes it.

  The names of :func:`~caadam_jax.describe`'s rows, of error messages and of
  :func:`~caadam_jax.published.keras_caadam_factors`' keys. Box attributes (NNX
  Variables' and linen ``nn.Partitioned``'s ``.value``) are dropped, as in
  :class:`~caadam_jax.Structure` paths, so a leaf has the same name in ``tx.init``
  and ``tx.update``.

  Args:
    path: a JAX key path (from ``jax.tree_util.tree_map_with_path`` or
      ``tree_flatten_with_path``) or a normalized path, a tuple of ``str``/``int``
      keys (the keys of ``Structure.leaves`` and
      :meth:`~caadam_jax.Structure.factors`).

  Returns:
    The keys joined by ``'/'``; ``'<root>'`` for the empty path (a bare array).

  Examples:
    >>> import jax, jax.numpy as jnp, caadam_jax
    >>> params = {'layers': [{'kernel': jnp.zeros((2, 3))}]}
    >>> jax.tree_util.tree_map_with_path(lambda p, _: caadam_jax.path_to_str(p), params)
    {'layers': [{'kernel': 'layers/0/kernel'}]}
    >>> caadam_jax.path_to_str(('Dense_0', 'kernel')), caadam_jax.path_to_str(())
    ('Dense_0/kernel', '<root>')
  """
  keys = normalize_path(path)
  return "/".join(str(k) for k in keys) if keys else "<root>"


def parse_path(path: str | Sequence[PathKey]) -> Path:
  """Accepts a path written as ``'a/b/0'`` or as a sequence of keys.

  Digits in a string path become ``int`` keys, matching how ``nnx.List`` and
  ``nnx.Sequential`` paths normalize. Linen names such as ``Dense_0`` stay strings.
  """
  if isinstance(path, str):
    if path in ("", "<root>"):
      return ()
    return tuple(int(p) if p.isdigit() else p for p in path.split("/"))
  return normalize_path(path)


def is_path(path: Any) -> bool:
  """Whether ``path`` can be a parameter path: a string, or a sequence of str/int keys."""
  if isinstance(path, str):
    return True
  if isinstance(path, (bytes, dict)) or not isinstance(path, Sequence):
    return False
  return all(isinstance(k, (str, int, *_KEY_TYPES)) and not isinstance(k, bool) for k in path)


# Key-path entries as jax.tree_util.tree_flatten_with_path gives them.
_KEY_TYPES = (
    jax.tree_util.DictKey,
    jax.tree_util.GetAttrKey,
    jax.tree_util.SequenceKey,
    jax.tree_util.FlattenedIndexKey,
)


_NUMBER = re.compile(r"(\d+)")


def natural_key(path: Path) -> tuple[Any, ...]:
  """A sort key that compares the numbers inside path keys as numbers.

  ``Dense_2`` sorts before ``Dense_10`` and ``layers/2`` before ``layers/10``,
  unlike ``jax.tree_util``'s sorted dict order. This is a heuristic for
  sequential models whose layers are numbered in forward order; it cannot
  recover the forward order of named submodules.
  """
  key = []
  for part in path:
    pieces = _NUMBER.split(str(part))
    key.append(tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pieces if p))
  return tuple(key)


def _is_masked_node(x: Any) -> bool:
  return isinstance(x, optax.MaskedNode)


def leaves_with_paths(tree: Any) -> tuple[list[tuple[Path, Any]], list[Path]]:
  """Flattens a tree into ``(normalized path, leaf)`` pairs.

  ``optax.masked``/``optax.partition`` hand inner transforms trees in which the
  excluded leaves are ``MaskedNode`` placeholders; their paths are returned
  separately so a structure built from the full params can still be matched.

  Args:
    tree: a parameter or update pytree.

  Returns:
    ``(leaves, masked_paths)``: the real leaves with their normalized paths, and
    the normalized paths of masked-out leaves.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_masked_node)
  leaves, masked = [], []
  for key_path, leaf in flat:
    path = normalize_path(key_path)
    (masked if _is_masked_node(leaf) else leaves).append((path, leaf))
  return leaves, [p for p, _ in masked]


def map_with_normalized_path(fn: Callable[[Path, Any], Any], tree: Any) -> Any:
  """``jax.tree_util.tree_map_with_path`` with normalized paths; masked leaves kept."""

  def apply(key_path, leaf):
    if _is_masked_node(leaf):
      return leaf
    return fn(normalize_path(key_path), leaf)

  return jax.tree_util.tree_map_with_path(apply, tree, is_leaf=_is_masked_node)


def path_mismatches(
    tree_paths: Sequence[Path], masked: Sequence[Path], expected: Sequence[Path]
) -> tuple[list[Path], list[Path]]:
  """Compares a tree's leaf paths with the paths something expects.

  Args:
    tree_paths: the normalized paths of the tree's real leaves.
    masked: the paths of its ``MaskedNode`` placeholders; each may stand for a
      whole subtree (a mask given as a tree prefix), so expected paths under it
      count as present.
    expected: the paths expected.

  Returns:
    ``(unexpected, absent)``: tree paths not expected, and expected paths that
    are neither in the tree nor masked.
  """
  expected_set, present = set(expected), set(tree_paths)

  def is_masked(p):
    return any(p[: len(m)] == m for m in masked)

  unexpected = [p for p in tree_paths if p not in expected_set]
  absent = [p for p in expected if p not in present and not is_masked(p)]
  return unexpected, absent


def paths_to_str(paths: Sequence[Path], limit: int = 10) -> str:
  """``'a/b, c/d, ...'`` for an error message (at most ``limit`` paths)."""
  shown = ", ".join(path_to_str(p) for p in paths[:limit])
  return shown + (f" (and {len(paths) - limit} more)" if len(paths) > limit else "")


def check_prefixes(argument: str, prefixes: Iterable[Path], paths: Sequence[Path]) -> None:
  """Raises a ValueError for every prefix that is no path in ``paths`` nor a prefix of one.

  The message names ``argument`` and, for each unknown prefix, the closest known
  paths and prefixes (a wrong case or a typo), so a misspelt path is never
  silently ignored.

  Args:
    argument: the user-facing argument the prefixes come from (``'stacked'``).
    prefixes: normalized paths given by the user.
    paths: the normalized leaf paths they must match.

  Raises:
    ValueError: some prefix matches nothing.
  """
  known = {path[:end] for path in paths for end in range(len(path) + 1)}
  unknown = [p for p in prefixes if p not in known]
  if not unknown:
    return
  names = sorted({path_to_str(k) for k in known if k}, key=lambda s: natural_key((s,)))
  described = []
  for prefix in unknown:
    text = path_to_str(prefix)
    close = [n for n in names if n.lower() == text.lower()]
    close += [n for n in difflib.get_close_matches(text, names, n=3, cutoff=0.6) if n not in close]
    if close:
      described.append(f"{text!r} (did you mean {' or '.join(repr(c) for c in close[:3])}?)")
    else:
      shown = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
      described.append(f"{text!r} (parameter paths include {shown or 'none'})")
  raise ValueError(
      f"{argument}: no parameter path is or starts with " + "; ".join(described) + ". Paths "
      "are '/'-separated keys as infer_structure(params).leaves and describe() show them "
      "(case-sensitive)."
  )
