"""A per-layer report: which layer each leaf belongs to, its size, depth and factor."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, overload

import jax
import numpy as np
import optax

from caadam_jax import _formulas
from caadam_jax import _guards
from caadam_jax import _paths
from caadam_jax import _structure
from caadam_jax import _validation


class DescribeRow(NamedTuple):
  """One leaf of the report.

  Attributes:
    layer: the layer's path (``'-'`` for a leaf excluded from scaling).
    leaf: the leaf's path.
    shape: the leaf's shape.
    connections: the layer's connection count (per slice for stacks), or None.
    depth: the layer's depth (per slice for stacks), or None.
    factor: the leaf's factor (a tuple per slice for stacks).
  """

  layer: str
  leaf: str
  shape: tuple[int, ...]
  connections: Any
  depth: Any
  factor: float | tuple[float, ...]


# The published mode's per-leaf factors, ``(params, *, strategy, scaling_factor, order) ->
# {path string: factor}`` (``keras_caadam_factors``). ``caadam_jax.published`` registers
# them when it is imported (``import caadam_jax`` imports it): the published mode builds
# on the core, and the core never imports it.
_published_factors: list[Callable[..., dict[Any, float]]] = []


def register_published_factors(factors: Callable[..., dict[Any, float]]) -> None:
  """Sets what ``describe(published=True)`` reports (called by ``caadam_jax.published``).

  ``factors`` returns ``{normalized key tuple: factor}`` (never ambiguous, unlike path strings).
  """
  _published_factors[:] = [factors]


def _as_python(factor: Any) -> float | tuple[float, ...]:
  array = np.asarray(factor, dtype=np.float64)
  return float(array) if array.ndim == 0 else tuple(float(x) for x in array.ravel())


def _shape_tree(structure: _structure.Structure) -> dict[Any, Any]:
  """A nested dict of ShapeDtypeStructs with the structure's leaf paths."""
  tree: dict[Any, Any] = {}
  for path, info in structure.leaves.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = jax.ShapeDtypeStruct(info.shape, np.float32)
  return tree


@overload
def describe(
    params_or_structure: optax.Params | _structure.Structure,
    *,
    strategy: _formulas.StrategyName | _formulas.Formula | None = ...,
    scaling_factor: float | None = ...,
    published: bool = ...,
    show: bool = ...,
    width: int | None = ...,
    as_string: Literal[False] = ...,
) -> list[DescribeRow]:
  ...


@overload
def describe(
    params_or_structure: optax.Params | _structure.Structure,
    *,
    strategy: _formulas.StrategyName | _formulas.Formula | None = ...,
    scaling_factor: float | None = ...,
    published: bool = ...,
    show: bool = ...,
    width: int | None = ...,
    as_string: Literal[True],
) -> str:
  ...


def describe(
    params_or_structure: optax.Params | _structure.Structure,
    *,
    strategy: _formulas.StrategyName | _formulas.Formula | None = "additive",
    scaling_factor: float | None = None,
    published: bool = False,
    show: bool = True,
    width: int | None = None,
    as_string: bool = False,
) -> list[DescribeRow] | str:
  """Returns (and prints) the per-leaf factors of a model, layer by layer.

  Layer and leaf names are never shortened: in a terminal the table is drawn
  with ``rich`` (when installed) and long names wrap; elsewhere (a pipe, a log
  file, a notebook) it is plain text with full names.

  Args:
    params_or_structure: a params pytree (its structure is inferred with
      :func:`~caadam_jax.infer_structure`) or a :class:`~caadam_jax.Structure`
      (e.g. from :func:`~caadam_jax.trace_structure`).
    strategy: ``"additive"``, ``"multiplicative"`` or ``"depth"``, or a
      :data:`~caadam_jax.Formula` (see :func:`~caadam_jax.scale_by_structure`;
      not with ``published``).
    scaling_factor: ``g``; None for the strategy's default (given unchanged to a
      formula).
    published: report the factors of :func:`~caadam_jax.published.keras_caadam` (the
      published caadam 0.1.1 behaviour) instead of the method as described;
      ``strategy=None`` is then allowed (the package's ``CaAdam()`` default).
    show: print the table.
    width: the width of the ``rich`` table in a terminal; None uses the
      terminal's.
    as_string: return the plain-text table as a string instead of the rows (and
      print nothing).

  Returns:
    One :class:`DescribeRow` per leaf, in depth order (uncounted leaves last),
    or the table as a string with ``as_string=True``.

  Raises:
    TypeError: ``params_or_structure`` is neither a Structure nor a pytree of
      arrays (e.g. None), ``strategy`` is neither a name nor a callable, or it is a
      formula with ``published=True``, or ``show``, ``published`` or
      ``as_string`` is not a bool.
    ValueError: ``width`` is not a positive integer (or None); or, for a params
      pytree (not a Structure), what ``caadam(structure=None)``'s ``init`` refuses
      for the same strategy (an undeclared stack, masked-out leaves, for depth a
      path order that may not be the forward order): the message names the fix.

  Examples:
    >>> import jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.zeros((4, 8)), 'bias': jnp.zeros(8)},
    ...           'Dense_1': {'kernel': jnp.zeros((8, 2))}}
    >>> rows = caadam_jax.describe(params, strategy="depth", show=False)
    >>> [(r.leaf, r.depth, round(r.factor, 4)) for r in rows]
    [('Dense_0/bias', 0, 1.4142), ('Dense_0/kernel', 0, 1.4142), ('Dense_1/kernel', 1, 1.0)]
  """
  published = _validation.check_bool("published", published)
  show = _validation.check_bool("show", show)
  as_string = _validation.check_bool("as_string", as_string)
  if width is not None:
    width = _validation.check_integer(
        "width", width, minimum=1, what="a positive number of columns or None"
    )
  if not isinstance(params_or_structure, _structure.Structure):
    _check_params(params_or_structure)
  structure = (
      params_or_structure
      if isinstance(params_or_structure, _structure.Structure)
      else _structure.infer_structure(params_or_structure)
  )
  if published:
    if callable(strategy):
      raise TypeError(
          "describe(published=True) reports caadam 0.1.1's named strategies; a formula "
          "has no published behaviour. Pass published=False to report a formula's factors."
      )
    if not _published_factors:
      raise RuntimeError("describe(published=True) needs caadam_jax.published: import it.")
    given = isinstance(params_or_structure, _structure.Structure)
    factors = _published_factors[0](
        params_or_structure if not given else _shape_tree(structure),
        strategy=strategy,
        scaling_factor=scaling_factor,
        order=structure if given else None,  # a traced structure knows the forward order
    )
  elif strategy is None:
    raise TypeError(
        "describe(strategy=None) is caadam 0.1.1's CaAdam() default and needs "
        "published=True; for the method as described pass a strategy name or a formula."
    )
  else:
    if not isinstance(params_or_structure, _structure.Structure):
      # The same refusals as the optimizer's default path: describe shows what caadam does.
      _, _, uses_depth = _formulas.resolve(strategy, scaling_factor)
      _guards.check_default(params_or_structure, structure, uses_depth=uses_depth)
    factors = structure.factors(strategy, scaling_factor)

  def sort_key(item):
    path, info = item
    records = info.records()  # a stacked leaf sorts by its first slice
    depth = records[0][2] if records else None
    return (depth is None, depth if depth is not None else 0, _paths.natural_key(path))

  rows = [
      DescribeRow(
          layer="-" if info.layer is None else _paths.path_to_str(info.layer),
          leaf=_paths.path_to_str(path),
          shape=info.shape,
          connections=info.connections,
          depth=info.depth,
          factor=_as_python(factors[path]),
      )
      for path, info in sorted(structure.leaves.items(), key=sort_key)
  ]
  if as_string:
    return _plain_table(*_table(rows, structure, strategy, published))
  if show:
    _print_table(*_table(rows, structure, strategy, published), width=width)
  return rows


def _check_params(params: Any) -> None:
  leaves = jax.tree_util.tree_leaves(params)  # MaskedNode placeholders have no leaves
  bad = [x for x in leaves if not hasattr(x, "shape") and not isinstance(x, (int, float))]
  if params is None or not leaves or bad:
    got = type(bad[0]).__name__ + " leaves" if bad else repr(params)
    raise TypeError(
        "describe expects a params pytree of arrays (or jax.ShapeDtypeStruct) or a "
        f"caadam_jax.Structure (from infer_structure or trace_structure); got {got}."
    )


def _format(value: Any) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.4f}"
  if isinstance(value, tuple) and value and isinstance(value[0], float):
    return "(" + ", ".join(f"{v:.3f}" for v in value) + ")"
  return str(value)


def _table(rows, structure, strategy, published) -> tuple[str, list[str], list[list[str]]]:
  """The table's title, header and body as strings."""
  header = ["layer", "leaf", "shape", "connections", "depth", "factor"]
  body = [
      [r.layer, r.leaf, str(r.shape), _format(r.connections), _format(r.depth), _format(r.factor)]
      for r in rows
  ]
  stats = structure.statistics
  mode = (
      "published (caadam 0.1.1; connections and depth as described)"
      if published
      else "as described"
  )
  name = strategy if isinstance(strategy, str) or strategy is None else None
  title = f"{mode}, strategy={name or getattr(strategy, '__name__', repr(strategy))}"
  if stats is not None:
    title += (
        f"; c_min={stats.c_min:g}, c_med={stats.c_med:g}, c_max={stats.c_max:g}, "
        f"D={stats.num_layers}"
    )
  return title, header, body


def _plain_table(title: str, header: list[str], body: list[list[str]]) -> str:
  widths = [max(len(str(x)) for x in column) for column in zip(header, *body, strict=False)]
  lines = [title]
  for line in [header, ["-" * w for w in widths], *body]:
    lines.append("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)).rstrip())
  return "\n".join(lines)


def _print_table(title: str, header: list[str], body: list[list[str]], width: int | None) -> None:
  try:
    import rich.console
    import rich.table
  except ImportError:
    rich = None
  if rich is None or not sys.stdout.isatty():
    print(_plain_table(title, header, body))  # full names for pipes, logs and notebooks
    return
  table = rich.table.Table(title=title)
  for name in header:
    table.add_column(
        name,
        justify="right" if name in ("connections", "depth", "factor") else "left",
        overflow="fold",  # wrap long layer names, never cut them to "ResNetBlock_…"
    )
  for line in body:
    table.add_row(*line)
  rich.console.Console(width=width).print(table)
