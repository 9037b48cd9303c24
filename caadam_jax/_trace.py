"""Structure from the forward pass: layer depths and roles read from a jaxpr.

``jax.tree_util`` sorts dict keys, so a params tree cannot tell the forward order
of named modules, and no order at all describes residual or branching networks.
:func:`trace_structure` traces the model abstractly (``jax.make_jaxpr``: shapes
only, no compute) and follows every value from the inputs through the network.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import numpy as np
from jax.extend import core as jex_core

from caadam_jax import _paths
from caadam_jax import _structure

# A parameter element: (leaf index, stack slice or None).
_Element = tuple[int, Any]
# Primitives whose parameter operand is multiplied into the activation: weights.
_CONTRACTIONS = frozenset({"dot_general", "conv_general_dilated", "gather", "dynamic_slice"})


class _Value:
  """What a jaxpr variable is derived from.

  ``params``: parameter elements it depends on while it does not depend on any
  input (``is_activation`` False). ``ancestors``: for activations, the parameter
  elements on any path from the inputs to it.
  """

  __slots__ = ("elements", "is_activation")

  def __init__(self, is_activation: bool, elements: frozenset):
    self.is_activation = is_activation
    self.elements = elements


_CONSTANT = _Value(False, frozenset())
_INPUT = _Value(True, frozenset())


class _Tracer:
  """Walks a jaxpr, recording every use of parameters by activations."""

  def __init__(self):
    self.uses: list[tuple[frozenset, frozenset]] = []  # (param elements, activation ancestors)
    self.contracted: set[int] = set()  # leaves used as the parameter operand of a contraction
    self.scanned: dict[int, set[int]] = {}  # leaf -> lengths of scans slicing it

  def run(self, jaxpr: Any, inputs: list[_Value]) -> list[_Value]:
    if isinstance(jaxpr, jex_core.ClosedJaxpr):
      jaxpr = jaxpr.jaxpr
    env: dict[Any, _Value] = {v: _CONSTANT for v in jaxpr.constvars}
    env.update(zip(jaxpr.invars, inputs, strict=False))

    def read(v):
      return _CONSTANT if isinstance(v, jex_core.Literal) else env.get(v, _CONSTANT)

    for eqn in jaxpr.eqns:
      outs = self._equation(eqn, [read(v) for v in eqn.invars])
      env.update(zip(eqn.outvars, outs, strict=False))
    return [read(v) for v in jaxpr.outvars]

  def _equation(self, eqn: Any, ins: list[_Value]) -> list[_Value]:
    name, params = eqn.primitive.name, eqn.params
    if name == "scan":
      return self._scan(eqn, ins)
    if name == "while":
      body_consts = ins[params["cond_nconsts"] : params["cond_nconsts"] + params["body_nconsts"]]
      carry = ins[params["cond_nconsts"] + params["body_nconsts"] :]
      for _ in range(2):  # a second pass lets the carry's ancestry reach the body
        carry = self._merge(carry, self.run(params["body_jaxpr"], body_consts + carry))
      return carry
    if name == "cond":
      outs = [self.run(branch, ins[1:]) for branch in params["branches"]]
      merged = outs[0]
      for other in outs[1:]:
        merged = self._merge(merged, other)
      return [self._combine([ins[0], v]) for v in merged]
    call = self._call_jaxpr(eqn)
    if call is not None:
      return self.run(call, ins)
    out = self._combine(ins, contraction=name in _CONTRACTIONS)
    return [out] * len(eqn.outvars)

  @staticmethod
  def _call_jaxpr(eqn: Any) -> Any:
    """The body of a call-like primitive (jit, remat, custom_jvp/vjp), if any."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
      sub = eqn.params.get(key)
      if isinstance(sub, (jex_core.Jaxpr, jex_core.ClosedJaxpr)):
        inner = sub.jaxpr if isinstance(sub, jex_core.ClosedJaxpr) else sub
        if len(inner.invars) == len(eqn.invars) and len(inner.outvars) == len(eqn.outvars):
          return sub
    return None

  def _combine(self, ins: list[_Value], contraction: bool = False) -> _Value:
    activations = [v for v in ins if v.is_activation]
    params = frozenset().union(*(v.elements for v in ins if not v.is_activation))
    if not activations:
      return _Value(False, params)
    ancestors = frozenset().union(*(v.elements for v in activations))
    if params:
      self.uses.append((params, ancestors))
      if contraction:
        self.contracted.update(leaf for leaf, _ in params)
    return _Value(True, ancestors | params)

  @staticmethod
  def _merge(a: list[_Value], b: list[_Value]) -> list[_Value]:
    return [
        _Value(x.is_activation or y.is_activation, x.elements | y.elements)
        for x, y in zip(a, b, strict=False)
    ]

  def _scan(self, eqn: Any, ins: list[_Value]) -> list[_Value]:
    params = eqn.params
    length = params["length"]
    consts, carry, xs = _split_scan_inputs(params, ins)
    n_carry = len(carry)
    stacked = [not x.is_activation and x.elements for x in xs]
    if any(stacked):
      for x in xs:
        if not x.is_activation:
          for leaf, _ in x.elements:
            self.scanned.setdefault(leaf, set()).add(length)
      # Unroll: slice i of each stacked parameter is its own layer.
      order = range(length - 1, -1, -1) if params["reverse"] else range(length)
      ys = None
      for i in order:
        sliced = [
            _Value(False, frozenset((leaf, i) for leaf, _ in x.elements)) if s else x
            for x, s in zip(xs, stacked, strict=False)
        ]
        outs = self.run(params["jaxpr"], consts + carry + sliced)
        carry, step_ys = outs[:n_carry], outs[n_carry:]
        ys = step_ys if ys is None else self._merge(ys, step_ys)
      return carry + (ys or [])
    outs: list[Any] = []
    for _ in range(2):  # a second pass lets the carry's ancestry reach the body
      outs = self.run(params["jaxpr"], consts + carry + xs)
      carry = self._merge(carry, outs[:n_carry])
    return carry + outs[n_carry:]


def _split_scan_inputs(params: dict[str, Any], ins: list[Any]) -> tuple[list, list, list]:
  """A scan equation's inputs as (consts, carry, xs), across JAX versions."""
  if "num_consts" in params:  # JAX < 0.11: counts as params
    n_consts, n_carry = params["num_consts"], params["num_carry"]
    return ins[:n_consts], ins[n_consts : n_consts + n_carry], ins[n_consts + n_carry :]
  # JAX >= 0.11: a FlatTree of (consts, carry, xs), unpacked as jax's own scan rules do.
  consts, carry, xs = params["ft_in"].update(ins).unpack()
  return list(consts), list(carry), list(xs)


def _split_static(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
  """Separates array leaves (traced) from static ones (closed over)."""
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  is_array = [
      isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct, np.generic)) for x in leaves
  ]

  def rebuild(arrays: list[Any]) -> Any:
    it = iter(arrays)
    return jax.tree_util.tree_unflatten(
        treedef, [next(it) if a else x for x, a in zip(leaves, is_array, strict=False)]
    )

  return [x for x, a in zip(leaves, is_array, strict=False) if a], rebuild


def _longest_path_depths(order: list, preds: Mapping[Any, set]) -> dict[Any, int]:
  position = {layer: i for i, layer in enumerate(order)}
  depths: dict[Any, int] = {}
  for layer in order:
    # Only edges from layers used earlier: tied weights would otherwise form cycles.
    earlier = [depths[p] for p in preds.get(layer, ()) if position[p] < position[layer]]
    depths[layer] = 1 + max(earlier) if earlier else 0
  return depths


def trace_structure(
    apply_fn: Callable[..., Any] | Any,
    params: Any,
    *args: Any,
    stacked: Mapping[Any, int] | None = None,
    depth_rule: str = "longest_path",
    **kwargs: Any,
) -> _structure.Structure:
  """Builds a :class:`~caadam_jax.Structure` from the model's forward pass.

  Traces ``apply_fn(params, *args, **kwargs)`` abstractly with
  ``jax.make_jaxpr`` (shapes only, no compute) and follows every value from the
  inputs. A layer is *used* where one of its parameters meets an activation (a
  value that depends on the inputs). Then:

  * ``depth_rule="longest_path"`` (default): a layer's depth is the largest
    number of counted layers on any path from the inputs to its use, so layers
    side by side in two branches share a depth, and a layer after a residual
    block sits after the block's deepest layer: for
    ``y = x + B(A(x)); z = C(y)`` the depths are A 0, B 1, C 2. ``D`` (the
    depth strategy's number of layers) is the largest depth plus 1.
  * ``depth_rule="first_use"``: depth is the order in which layers are first
    used (every layer its own depth).

  For a sequential model both rules give the forward order. Edges from layers
  first used later (tied weights) are ignored, and layers never used get the
  depths after the last, in natural path order.

  Roles: a leaf whose name is not one of the known ones (``kernel``, ``bias``,
  ``embedding``, ``scale``, ...) is a weight if the trace contracts it with an
  activation (matrix product, convolution, lookup). Stacks: a parameter sliced
  by a ``scan`` (``nn.scan``, ``nnx.scan``) is detected as stacked along axis 0,
  and each slice is its own layer; ``stacked`` declares or overrides stacks
  (path prefix -> axis), e.g. for an ``nnx.vmap``-created stack applied in a
  Python loop.

  Inputs: for linen, pass ``model.apply`` and the variables dict; when ``params``
  has a ``"params"`` key, the structure covers ``params["params"]`` (what the
  optimizer sees) and other collections (``batch_stats``) pass through. For
  NNX, pass the module itself and the example inputs:
  ``trace_structure(model, x)``.

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, caadam_jax
    >>> class Residual(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     y = x + nn.Dense(4, name='b')(nn.relu(nn.Dense(4, name='a')(x)))
    ...     return nn.Dense(2, name='c')(y)
    >>> model = Residual()
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> s = caadam_jax.trace_structure(model.apply, variables, jnp.ones((1, 4)))
    >>> {'/'.join(k): r.depth for k, r in s.layers.items()}
    {'a': 0, 'b': 1, 'c': 2}

  Args:
    apply_fn: ``(params, *args, **kwargs) -> outputs``, or an ``nnx.Module``.
    params: the parameters (linen variables or params; for an NNX module, the
      first example input).
    *args: example inputs (arrays or ``jax.ShapeDtypeStruct``; non-array
      arguments are passed as they are).
    stacked: path prefix -> stack axis, overriding detection.
    depth_rule: ``"longest_path"`` or ``"first_use"``.
    **kwargs: keyword arguments for ``apply_fn``.

  Returns:
    The structure of the parameter leaves.
  """
  if depth_rule not in ("longest_path", "first_use"):
    raise ValueError(f"depth_rule must be 'longest_path' or 'first_use', got {depth_rule!r}.")
  # flax is optional: whoever passes an NNX module has imported flax.nnx already.
  nnx = sys.modules.get("flax.nnx")
  call: Callable[..., Any] = apply_fn
  if nnx is not None and isinstance(apply_fn, nnx.Module):
    graphdef, param_state, rest = nnx.split(apply_fn, nnx.Param, ...)
    args = (params, *args)
    module_graph = graphdef

    def call_module(p, *a, **k):
      return nnx.merge(module_graph, p, rest)(*a, **k)

    call = call_module
    params = param_state

  # A linen variables dict: the optimizer sees only its "params" collection.
  is_variables = isinstance(params, Mapping) and "params" in params
  arrays, rebuild = _split_static((args, kwargs))

  def forward(variables, arrays):
    call_args, call_kwargs = rebuild(arrays)
    return call(variables, *call_args, **call_kwargs)

  jaxpr = jax.make_jaxpr(forward)(params, arrays)
  paths, inputs = [], []
  for key_path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    path = _paths.normalize_path(key_path)
    if is_variables and path[:1] != ("params",):
      inputs.append(_INPUT)  # other collections (batch_stats) flow like inputs
      continue
    inputs.append(_Value(False, frozenset({(len(paths), None)})))
    paths.append((path[1:] if is_variables else path, leaf))
  inputs += [_INPUT] * (len(jaxpr.jaxpr.invars) - len(inputs))
  tracer = _Tracer()
  tracer.run(jaxpr, inputs)

  shapes = [(path, _structure._shape_of(leaf)) for path, leaf in paths]
  detected = {
      shapes[leaf][0]: 0
      for leaf, lengths in tracer.scanned.items()
      if len(lengths) == 1 and shapes[leaf][1] and shapes[leaf][1][0] in lengths
  }
  stacked_table = {**detected, **{_paths.parse_path(k): v for k, v in (stacked or {}).items()}}
  roles = {
      path: (index in tracer.contracted) or None
      for index, (path, _) in enumerate(shapes)
      if not (
          isinstance(path[-1] if path else None, str)
          and path[-1].lower() in _structure.WEIGHT_NAMES | _structure.NON_WEIGHT_NAMES
      )
  }
  base = _structure.assemble(shapes, stacked=stacked_table, weight_roles=roles)
  counted = set(base.layers)

  def layer_of(element: _Element) -> Any:
    leaf, index = element
    path = shapes[leaf][0]
    info = base.leaves[path]
    if info.stack_axis is not None and index is not None:
      return _structure.slice_layer(cast(_paths.Path, info.layer), index)
    return info.layer if info.stack_axis is None else None

  order: list[Any] = []
  seen: set[Any] = set()
  preds: dict[Any, set] = {}
  for params_used, ancestors in tracer.uses:
    targets = {layer_of(e) for e in params_used} & counted
    sources = {layer_of(e) for e in ancestors} & counted
    for target in sorted(targets, key=_paths.natural_key):
      if target not in seen:
        seen.add(target)
        order.append(target)
      preds.setdefault(target, set()).update(sources - {target})
  unused = sorted(counted - seen, key=_paths.natural_key)
  if depth_rule == "first_use":
    depths = {layer: i for i, layer in enumerate(order)}
  else:
    depths = _longest_path_depths(order, preds)
  start = max(depths.values(), default=-1) + 1
  depths.update({layer: start + i for i, layer in enumerate(unused)})
  return _structure.assemble(shapes, stacked=stacked_table, weight_roles=roles, layer_depths=depths)
