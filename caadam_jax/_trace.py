"""Structure from the forward pass: layer depths and roles read from a jaxpr.

``jax.tree_util`` sorts dict keys, so a params tree cannot tell the forward order
of named modules, and no order at all describes residual or branching networks.
:func:`trace_structure` traces the model abstractly (``jax.make_jaxpr``: shapes
only, no compute) and follows every value from the inputs through the network.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import jax
import numpy as np
from jax.extend import core as jex_core

from caadam_jax import _leaves
from caadam_jax import _paths
from caadam_jax import _structure

# A parameter element: (leaf index, stack slice or None).
_Element = tuple[int, Any]
# Primitives whose parameter operand is multiplied into the activation: weights.
_CONTRACTIONS = frozenset({"dot_general", "conv_general_dilated", "gather", "dynamic_slice"})

# What a jaxpr variable is derived from. A value that does not depend on any input is
# the frozenset of the parameter elements it depends on (empty for a constant). A value
# that depends on an input (an activation) is the int id of a node of the dataflow
# graph: the node's parents are the activations it is computed from, and it adds the
# parameter elements used there. Nodes hold only their own edges, never the set of
# everything upstream, so the walk stays linear in the size of the jaxpr.
_ValueRef = int | frozenset
_CONSTANT: frozenset = frozenset()
_INPUT = 0  # the node of every input (and of the model's state)


class _Tracer:
  """Walks a jaxpr, building the dataflow graph of activations and parameter uses."""

  def __init__(self):
    self.parents: list[tuple[int, ...]] = [()]  # node -> parent nodes (node 0: the inputs)
    self.own: list[frozenset] = [frozenset()]  # node -> parameter elements it adds
    self.uses: list[int] = []  # nodes where parameters meet activations, in trace order
    self.contracted: set[int] = set()  # leaves used as the parameter operand of a contraction
    self.used: set[int] = set()  # leaves that meet an activation anywhere
    self.scanned: dict[int, set[int]] = {}  # leaf -> lengths of scans slicing it

  def _node(self, parents: tuple[int, ...], own: frozenset) -> int:
    self.parents.append(parents)
    self.own.append(own)
    return len(self.parents) - 1

  def run(self, jaxpr: Any, inputs: list[_ValueRef]) -> list[_ValueRef]:
    if isinstance(jaxpr, jex_core.ClosedJaxpr):
      jaxpr = jaxpr.jaxpr
    env: dict[Any, _ValueRef] = {v: _CONSTANT for v in jaxpr.constvars}
    env.update(zip(jaxpr.invars, inputs, strict=False))

    def read(v):
      return _CONSTANT if isinstance(v, jex_core.Literal) else env.get(v, _CONSTANT)

    for eqn in jaxpr.eqns:
      outs = self._equation(eqn, [read(v) for v in eqn.invars])
      env.update(zip(eqn.outvars, outs, strict=False))
    return [read(v) for v in jaxpr.outvars]

  def _equation(self, eqn: Any, ins: list[_ValueRef]) -> list[_ValueRef]:
    name, params = eqn.primitive.name, eqn.params
    if name == "scan":
      return self._scan(eqn, ins)
    if name == "while":
      body_consts = ins[params["cond_nconsts"] : params["cond_nconsts"] + params["body_nconsts"]]
      carry = ins[params["cond_nconsts"] + params["body_nconsts"] :]
      return self._loop(params["body_jaxpr"], body_consts, carry, [])
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

  def _combine(self, ins: list[_ValueRef], contraction: bool = False) -> _ValueRef:
    activations = tuple(dict.fromkeys(v for v in ins if isinstance(v, int)))
    params = frozenset().union(*(v for v in ins if not isinstance(v, int)))
    if not activations:
      return params
    if not params:
      return activations[0] if len(activations) == 1 else self._node(activations, params)
    node = self._node(activations, params)
    self.uses.append(node)
    self.used.update(leaf for leaf, _ in params)
    if contraction:
      self.contracted.update(leaf for leaf, _ in params)
    return node

  def _merge(self, a: list[_ValueRef], b: list[_ValueRef]) -> list[_ValueRef]:
    """Values that may be either of two (a loop's carry, a cond's branches)."""
    merged: list[_ValueRef] = []
    for x, y in zip(a, b, strict=False):
      if not isinstance(x, int) and not isinstance(y, int):
        merged.append(x | y)
      elif x == y:
        merged.append(x)
      else:
        activations = tuple(v for v in (x, y) if isinstance(v, int))
        params = frozenset().union(*(v for v in (x, y) if not isinstance(v, int)))
        merged.append(self._node(activations, params))
    return merged

  def _scan(self, eqn: Any, ins: list[_ValueRef]) -> list[_ValueRef]:
    params = eqn.params
    length = params["length"]
    consts, carry, xs = _split_scan_inputs(params, ins)
    n_carry = len(carry)
    stacked = [not isinstance(x, int) and bool(x) for x in xs]
    if any(stacked):
      for x in xs:
        if not isinstance(x, int):
          for leaf, _ in x:
            self.scanned.setdefault(leaf, set()).add(length)
      # Unroll: slice i of each stacked parameter is its own layer.
      order = range(length - 1, -1, -1) if params["reverse"] else range(length)
      ys = None
      for i in order:
        sliced = [
            frozenset((leaf, i) for leaf, _ in x)
            if s
            else x  # pyright: ignore[reportGeneralTypeIssues]
            for x, s in zip(xs, stacked, strict=False)
        ]
        outs = self.run(params["jaxpr"], consts + carry + sliced)
        carry, step_ys = outs[:n_carry], outs[n_carry:]
        ys = step_ys if ys is None else self._merge(ys, step_ys)
      return carry + (ys or [])
    return self._loop(params["jaxpr"], consts, carry, xs)

  def _loop(self, body: Any, consts: list, carry: list, xs: list) -> list[_ValueRef]:
    """A loop over shared weights (a ``while``, a ``scan`` slicing no parameter).

    Weight reuse across iterations is not depth: the body is recorded once, as one
    iteration (one time step), and the carry entering it stands for what the loop's
    own inputs reach it through earlier iterations (the initial carry, and the consts
    and ``xs`` that flow into it), never for the body's own layers. So the gates of a
    recurrent cell, which read ``x_t`` and ``h_{t-1}`` side by side, share a depth,
    and a layer fed the loop's outputs sits after all of them.

    Returns:
      The carry out, then the ``xs`` outputs (``ys``) of a scan.
    """
    n_consts, n_carry = len(consts), len(carry)
    # Which carries are activations (a carry the body makes one is one from the first
    # iteration on), what parameters flow around the others, and which loop inputs
    # reach each carry out: repeated scratch runs until nothing changes.
    carry_in = list(carry)
    while True:
      outs, reach = self._scratch(body, consts + carry_in + xs)
      changed = False
      for i, out in enumerate(outs[:n_carry]):
        if isinstance(carry_in[i], int):
          continue
        if isinstance(out, int):
          carry_in[i], changed = _INPUT, True  # placeholder: an activation from now on
        elif not out <= carry_in[i]:
          carry_in[i], changed = carry_in[i] | out, True
      if not changed:
        break
    # The outer activations each activation carry derives from, through any chain of
    # carries (a transitive closure over what one iteration reaches).
    outer = consts + carry + xs
    sources: dict[int, set[int]] = {
        i: ({carry[i]} if isinstance(carry[i], int) else set())
        for i in range(n_carry)
        if isinstance(carry_in[i], int)
    }
    grew = True
    while grew:
      grew = False
      for i, found in sources.items():
        for j in reach[i]:
          k = j - n_consts
          extra = sources[k] if 0 <= k < n_carry else {cast(int, outer[j])}
          if not extra <= found:
            found |= extra
            grew = True
    for i, found in sources.items():
      carry_in[i] = self._combine(sorted(found)) if found else _INPUT
    outs = self.run(body, consts + carry_in + xs)
    carry_out = [
        out if isinstance(out, int) else cast(frozenset, carry_in[i]) | out
        for i, out in enumerate(outs[:n_carry])
    ]
    return carry_out + outs[n_carry:]

  def _scratch(self, body: Any, inputs: list[_ValueRef]) -> tuple[list[_ValueRef], list[set[int]]]:
    """Runs ``body`` without recording anything.

    Returns:
      The outputs, and for each output the indices of the activation inputs it
      depends on.
    """
    n_nodes, n_uses = len(self.parents), len(self.uses)
    saved = (set(self.contracted), set(self.used), {k: set(v) for k, v in self.scanned.items()})
    try:
      marked = [self._node((), frozenset()) if isinstance(v, int) else v for v in inputs]
      marker_of = {v: j for j, v in enumerate(marked) if isinstance(v, int)}
      outs = self.run(body, marked)
      reach: dict[int, set[int]] = {}
      for node in range(n_nodes, len(self.parents)):
        if node in marker_of:
          reach[node] = {marker_of[node]}
        else:
          reach[node] = set().union(*(reach.get(p, set()) for p in self.parents[node]))
      return outs, [reach.get(out, set()) if isinstance(out, int) else set() for out in outs]
    finally:
      del self.parents[n_nodes:], self.own[n_nodes:], self.uses[n_uses:]
      self.contracted, self.used, self.scanned = saved


def _split_scan_inputs(params: dict[str, Any], ins: list[Any]) -> tuple[list, list, list]:
  """A scan equation's inputs as (consts, carry, xs), across JAX versions."""
  if "num_consts" in params:  # JAX < 0.11: counts as params
    n_consts, n_carry = params["num_consts"], params["num_carry"]
    return ins[:n_consts], ins[n_consts : n_consts + n_carry], ins[n_consts + n_carry :]
  # JAX >= 0.11: a FlatTree of (consts, carry, xs), unpacked as jax's own scan rules do.
  consts, carry, xs = params["ft_in"].update(ins).unpack()
  return list(consts), list(carry), list(xs)


def _split_static(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
  """Separates array leaves (traced) from static ones (closed over).

  NumPy scalars (``np.True_``, ``np.int32(3)``) are static like Python scalars:
  models branch on them (``train=np.True_``); 0-d arrays are traced.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  is_array = [isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)) for x in leaves]

  def rebuild(arrays: list[Any]) -> Any:
    it = iter(arrays)
    return jax.tree_util.tree_unflatten(
        treedef, [next(it) if a else x for x, a in zip(leaves, is_array, strict=False)]
    )

  return [x for x, a in zip(leaves, is_array, strict=False) if a], rebuild


def _as_function(
    model: Any, params: Any, args: tuple[Any, ...]
) -> tuple[Callable[..., Any], Any, Any, tuple[Any, ...]]:
  """``(fn(params, state, *args, **kwargs), params, state, args)`` for any model.

  ``params`` are the leaves the structure describes; ``state`` (linen's other
  collections, NNX batch statistics and RNG counts) is traced too, like the
  inputs, so models may update it (train mode) without leaking tracers.
  """
  # flax is optional: whoever passes an NNX module has imported flax.nnx already.
  nnx = sys.modules.get("flax.nnx")
  if nnx is not None and isinstance(model, nnx.Module):
    return (*_nnx_function(nnx, model), (params, *args))
  eqx = sys.modules.get("equinox")  # an Equinox module implies equinox is imported
  if eqx is not None and isinstance(model, eqx.Module):
    return (*_equinox_function(eqx, model), (params, *args))
  if not callable(model):
    raise TypeError(
        "trace_structure expects apply_fn to be a function (params, *args) -> outputs "
        f"(e.g. model.apply), an nnx.Module or an equinox.Module; got {type(model).__name__}."
    )
  if isinstance(params, Mapping) and "params" in params:
    # A linen variables dict: the optimizer sees its "params" collection; the
    # others (batch_stats, cache) are state.
    collections = {k: v for k, v in params.items() if k != "params"}

    def linen_fn(p, state, *a, **k):
      return model({"params": p, **state}, *a, **k)

    return linen_fn, params["params"], collections, args

  def plain_fn(p, state, *a, **k):
    del state
    return model(p, *a, **k)

  return plain_fn, params, None, args


def _nnx_function(nnx: Any, model: Any) -> tuple[Callable[..., Any], Any, Any]:
  """``(fn(params, state, *args, **kwargs), params, state)`` for an NNX module."""
  graphdef, param_state, rest = nnx.split(model, nnx.Param, ...)

  def nnx_fn(p, state, *a, **k):
    # A fresh module inside the trace: it may mutate its state (BatchNorm in
    # train mode, Dropout's RNG count, nnx.scan's carried state); the caller's
    # module is left untouched.
    return nnx.merge(graphdef, p, state)(*a, **k)

  return nnx_fn, param_state, rest


def _equinox_function(eqx: Any, model: Any) -> tuple[Callable[..., Any], Any, None]:
  """``(fn(params, state, *args, **kwargs), params, None)`` for an Equinox module."""
  arrays, static = eqx.partition(model, _is_float_array)

  def eqx_fn(p, state, *a, **k):
    del state
    return eqx.combine(p, static)(*a, **k)

  return eqx_fn, arrays, None


def _is_float_array(x: Any) -> bool:
  """Equinox's trainable leaves: floating arrays, abstract ones (``eqx.filter_eval_shape``) too."""
  return isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)) and np.issubdtype(
      x.dtype, np.inexact
  )


def _make_jaxpr(forward: Callable[..., Any], *operands: Any) -> Any:
  """``jax.make_jaxpr(forward)(*operands)`` with the fixes for common failures."""
  try:
    return jax.make_jaxpr(forward)(*operands)
  except NameError as error:  # jax: "Found an unbound axis name: batch"
    if "axis name" not in str(error):
      raise
    raise ValueError(
        f"trace_structure could not trace the model: {error} The model uses a collective "
        "(BatchNorm's axis_name, pmean) that only exists under pmap/shard_map. Trace it in "
        "evaluation mode instead: pass train=False (or use_running_average=True, "
        "deterministic=True: whatever the model's flag is) as a keyword argument; the "
        "structure does not depend on the mode."
    ) from error
  except TypeError as error:
    if "missing" not in str(error) or "argument" not in str(error):
      raise
    raise TypeError(
        f"trace_structure could not call the model: {error} Pass every argument the "
        "forward pass needs after params (example inputs) or as keyword arguments, e.g. "
        "trace_structure(model.apply, variables, x, train=False)."
    ) from error


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

  Roles from use: a parameter holds connections only if the trace feeds it
  into a contraction with an activation (``dot_general``, a convolution, or a
  gather from it as an embedding table), whatever its name. Parameters that
  are only added, multiplied elementwise or concatenated (norm scales, class
  tokens, positional embeddings) get factor 1 and stay out of the statistics;
  biases share their layer's factor. Leaves the forward pass never uses keep
  the rule of :func:`~caadam_jax.infer_structure`.

  Stacks: a parameter sliced by a ``scan`` (``nn.scan``, ``nnx.scan``) is
  detected as stacked along axis 0, and each slice is its own layer;
  ``stacked`` declares or overrides stacks (path prefix -> axis), e.g. for an
  ``nnx.vmap``-created stack applied in a Python loop.

  Loops: weight reuse is not depth. A loop over shared weights (a ``scan``
  slicing no parameter, as ``nn.RNN`` over an ``LSTMCell``, or a
  ``while_loop``) counts as one application of its body, one time step: the
  carry entering the body sits at the depth of what flows into the loop, never
  after the body's own layers, so the gates of a recurrent cell (reading
  ``x_t`` and ``h_{t-1}`` side by side) share a depth, and a layer reading the
  loop's outputs comes after them. Layers first used together in one product
  (kernels concatenated as in ``OptimizedLSTMCell``) are side by side. A loop
  unrolled in Python is no loop in the trace: its reused weights follow the
  tied-weight rule above.

  Models:

  * linen: pass ``model.apply`` and the variables dict (or the params), then
    the example inputs and keyword arguments:
    ``trace_structure(model.apply, variables, x, train=False)``. Models whose
    BatchNorm reduces over a named axis need ``train=False`` (the structure
    does not depend on the mode); the error says so.
  * NNX: pass the module itself and the example inputs:
    ``trace_structure(model, x)``. Its state (batch statistics, RNG counts) is
    traced along, so train mode, ``nnx.scan``/``nnx.vmap`` stacks with
    BatchNorm or Dropout work, and the module is left unchanged.
  * Equinox: pass the module itself and one example (Equinox modules act on
    unbatched inputs): ``trace_structure(model, x)``. Its floating-point arrays
    are the parameters (``eqx.filter(model, eqx.is_inexact_array)`` has the
    same paths); equinox is only imported if such a module is passed.

  The structure's paths are those of the parameters (for linen, of
  ``variables["params"]``); it also serves a tree that holds the whole
  variables dict (a ``TrainState`` created with ``params=variables``), whose
  other collections then get factor 1. Abstract parameters
  (``jax.eval_shape(model.init, ...)``, ``nnx.eval_shape``,
  ``eqx.filter_eval_shape``) suffice: only shapes are traced. Non-array
  arguments, NumPy scalars (``np.True_``) included, are passed as they are.

  Examples:
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
    apply_fn: ``(params, *args, **kwargs) -> outputs``, an ``nnx.Module`` or an
      ``equinox.Module``.
    params: the parameters (linen variables or params; for an NNX or Equinox
      module, the first example input).
    *args: example inputs (arrays or ``jax.ShapeDtypeStruct``; non-array
      arguments are passed as they are).
    stacked: path prefix -> stack axis, overriding detection.
    depth_rule: ``"longest_path"`` or ``"first_use"``.
    **kwargs: keyword arguments for ``apply_fn``.

  Returns:
    The structure of the parameter leaves.

  Raises:
    ValueError: for an unknown ``depth_rule``; when the model needs a
      collective axis that is unbound (pass ``train=False``); when a linen model
      lacks a variable collection (pass the whole variables dict, not
      ``variables["params"]``).
    TypeError: when the model is called without an argument it needs, or
      ``apply_fn`` is a linen module itself (pass ``model.apply`` and the
      variables).
  """
  if depth_rule not in ("longest_path", "first_use"):
    raise ValueError(f"depth_rule must be 'longest_path' or 'first_use', got {depth_rule!r}.")
  _reject_linen_module(apply_fn)
  try:
    shapes, tracer = _trace(apply_fn, params, args, kwargs)
  except Exception as error:
    _explain_missing_collection(error)
    raise
  stacked_table = {
      **_detected_stacks(tracer, shapes),
      **_structure.check_stacked(stacked),
  }
  roles = _roles(tracer, shapes)
  base = _structure.assemble(shapes, stacked=stacked_table, weight_roles=roles)
  layers_of = _layer_map(base, shapes)
  order = _forward_order(tracer, layers_of)
  depths = _depths(tracer, layers_of, order, set(base.layers), depth_rule)
  return _structure.assemble(shapes, stacked=stacked_table, weight_roles=roles, layer_depths=depths)


_Shapes = list[tuple[_paths.Path, tuple[int, ...]]]

_LINEN_USAGE = "trace_structure(model.apply, variables, x) with variables = model.init(key, x)"


def _reject_linen_module(apply_fn: Any) -> None:
  """A linen module itself (the NNX habit) cannot run unbound: say what to pass instead."""
  linen = sys.modules.get("flax.linen")  # whoever passes a linen module has imported it
  if linen is not None and isinstance(apply_fn, linen.Module):
    raise TypeError(
        f"trace_structure got the linen module {type(apply_fn).__name__} itself; a linen "
        "module holds no parameters (only NNX and Equinox modules are passed whole). Pass "
        f"its apply function and the whole variables dict: {_LINEN_USAGE}."
    )


def _explain_missing_collection(error: Exception) -> None:
  """Re-raises flax's ScopeCollectionNotFound with the fix: pass the whole variables dict."""
  if type(error).__name__ != "ScopeCollectionNotFound":
    return
  found = re.search(r'collection "([^"]+)"', str(error))
  collection = found.group(1) if found else "a collection"
  if collection == "params":
    hint = (
        "model.apply takes the variables dict ({'params': ..., 'batch_stats': ...}), not its "
        "'params' entry: pass the whole variables dict (a model with no other collection may "
        "also be passed as lambda p, x: model.apply({'params': p}, x) with the params)"
    )
  else:
    hint = (
        f"the model reads the {collection!r} collection, which the variables passed lack: "
        "pass the whole variables dict (params and every other collection, e.g. batch_stats), "
        "not variables['params']"
    )
  raise ValueError(
      f"trace_structure could not run the linen model: {error} Fix: {hint}; {_LINEN_USAGE}."
  ) from error


def _trace(
    apply_fn: Any, params: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[_Shapes, _Tracer]:
  """Traces the model once: ``(parameter paths and shapes, the walked tracer)``.

  Parameter leaf ``i`` of the shapes is element ``(i, None)`` in the tracer's records.
  """
  fn, param_tree, state, args = _as_function(apply_fn, params, args)
  arrays, rebuild = _split_static((args, kwargs))

  def forward(p, state, arrays):
    call_args, call_kwargs = rebuild(arrays)
    return fn(p, state, *call_args, **call_kwargs)

  jaxpr = _make_jaxpr(forward, param_tree, state, arrays)
  shapes = [
      (_paths.normalize_path(key_path), _leaves.shape_of(leaf))
      for key_path, leaf in jax.tree_util.tree_flatten_with_path(param_tree)[0]
  ]
  inputs: list[_ValueRef] = [frozenset({(i, None)}) for i in range(len(shapes))]
  inputs += [_INPUT] * (len(jaxpr.jaxpr.invars) - len(inputs))  # state and inputs
  tracer = _Tracer()
  tracer.run(jaxpr, inputs)
  return shapes, tracer


def _detected_stacks(tracer: _Tracer, shapes: _Shapes) -> dict[_paths.Path, int]:
  """Leaves sliced along axis 0 by scans of one length equal to that axis: stacks."""
  return {
      shapes[leaf][0]: 0
      for leaf, lengths in tracer.scanned.items()
      if len(lengths) == 1 and shapes[leaf][1] and shapes[leaf][1][0] in lengths
  }


def _roles(tracer: _Tracer, shapes: _Shapes) -> dict[_paths.Path, bool | None]:
  """Leaf path -> whether it holds connections, from its use; None keeps the path rule.

  A used leaf holds connections only if it enters a contraction (matrix product,
  convolution, embedding lookup), whatever its name; leaves only added, multiplied
  elementwise or concatenated (norm scales, class tokens, positional embeddings) are
  not weights. Unused leaves keep the path rule.
  """
  return {
      path: (index in tracer.contracted) if index in tracer.used else None
      for index, (path, _) in enumerate(shapes)
  }


def _layer_map(base: _structure.Structure, shapes: _Shapes) -> Callable[[_Element], frozenset]:
  """Parameter element -> the counted layers it belongs to (cached)."""
  counted = set(base.layers)
  cache: dict[_Element, frozenset] = {}

  def layers_of(element: _Element) -> frozenset:
    if element not in cache:
      leaf, index = element
      path, shape = shapes[leaf]
      info = base.leaves[path]
      if info.stack_axis is None:
        layers = {info.layer}
      else:
        layer = cast(_paths.Path, info.layer)
        # A stack used whole (nn.vmap, or sliced outside a scan): its slices are used
        # here, side by side.
        slices = [index] if index is not None else range(shape[info.stack_axis])
        layers = {_structure.slice_layer(layer, i) for i in slices}
      cache[element] = frozenset(layers & counted)
    return cache[element]

  return layers_of


def _forward_order(tracer: _Tracer, layers_of: Callable[[_Element], frozenset]) -> list[Any]:
  """Counted layers in order of first use (layers used together: natural path order)."""
  order: list[Any] = []
  seen: set[Any] = set()
  for node in tracer.uses:
    targets = set().union(*map(layers_of, tracer.own[node]))
    for target in sorted(targets - seen, key=_paths.natural_key):
      seen.add(target)
      order.append(target)
  return order


def _depths(
    tracer: _Tracer,
    layers_of: Callable[[_Element], frozenset],
    order: list[Any],
    counted: set[Any],
    depth_rule: str,
) -> dict[Any, int]:
  """Layer -> depth under ``depth_rule``; unused counted layers after the last, naturally."""
  if depth_rule == "first_use":
    depths = {layer: i for i, layer in enumerate(order)}
  else:
    depths = dict(zip(order, _longest_paths(tracer, layers_of, order), strict=True))
  unused = sorted(counted - set(order), key=_paths.natural_key)
  start = max(depths.values(), default=-1) + 1
  depths.update({layer: start + i for i, layer in enumerate(unused)})
  return depths


# How many of the most recently first-used layers upstream of a value are kept by
# position; the rest is summarized by their largest depth.
_RECENT = 8


class _Upstream(NamedTuple):
  """The counted layers upstream of a value, as far as depths need them.

  ``recent``: ``(position, depth)`` of the upstream layers with the largest first-use
  positions, above ``cut``; ``below``: the largest depth of the upstream layers at or
  below position ``cut`` (-1 if none). Exact for every question about layers first
  used after ``cut``, which is every question a forward pass asks except a reuse of an
  early layer downstream (tied weights); those walk the graph (``_exact_upstream``).
  """

  cut: int
  below: int
  recent: tuple[tuple[int, int], ...]


_NOTHING = _Upstream(-1, -1, ())


def _join(parts: list[_Upstream], own: list[tuple[int, int]]) -> _Upstream:
  cut = max((p.cut for p in parts), default=-1)
  below = max((p.below for p in parts), default=-1)
  recent: dict[int, int] = {}
  for position, depth in [e for p in parts for e in p.recent] + own:
    if position <= cut:
      below = max(below, depth)
    elif recent.get(position, -1) < depth:
      recent[position] = depth
  kept = sorted(recent.items(), reverse=True)
  if len(kept) > _RECENT:
    cut = kept[_RECENT][0]
    below = max(below, max(d for _, d in kept[_RECENT:]))
    kept = kept[:_RECENT]
  return _Upstream(cut, below, tuple(kept))


def _longest_paths(
    tracer: _Tracer, layers_of: Callable[[_Element], frozenset], order: list[Any]
) -> list[int]:
  """Depth of each layer of ``order``: the longest path of counted layers to its uses.

  A layer's depth is 1 + the largest depth of the counted layers upstream of any of
  its uses that were first used before it (edges from layers first used later, as
  with tied weights, would form cycles), its side-by-side siblings (slices of a stack
  used whole, layers first used at one node with it such as fused kernels) excepted;
  0 without such layers. One pass over the dataflow graph in
  trace order, each value carrying only an ``_Upstream`` summary, gives these depths
  unless a layer's depth grows after it was read (reuse of a layer on a later layer's
  output); then the pass repeats until nothing changes (depths only grow, so this
  reaches the least solution, which is the unique one: edges go from earlier to
  later positions).
  """
  position = {layer: i for i, layer in enumerate(order)}
  n_nodes = len(tracer.parents)
  uses = set(tracer.uses)
  # Node -> positions of the counted layers its parameters belong to, grouped by
  # element (a stack used whole is one element of many layers).
  groups: list[list[frozenset]] = [
      [
          frozenset(position[layer] for layer in layers_of(element) if layer in position)
          for element in tracer.own[node]
      ]
      for node in range(n_nodes)
  ]
  # The siblings of a layer, side by side with it: the layers of one element with it
  # (slices of a stack used whole) and the layers first used at one node with it
  # (kernels concatenated into one product, as in a fused LSTM cell).
  side_by_side: dict[int, frozenset] = {}
  for node in range(n_nodes):
    for group in groups[node]:
      for p in group:
        side_by_side[p] = side_by_side.get(p, frozenset()) | group
  seen: set[int] = set()
  for node in tracer.uses:
    first = frozenset().union(*groups[node]) - seen
    seen |= first
    for p in first:
      side_by_side[p] = side_by_side.get(p, frozenset()) | first
  # Node -> (position, siblings' positions) of its counted layers.
  own_layers: list[list[tuple[int, frozenset]]] = [
      [(p, side_by_side[p]) for p in frozenset().union(*node_groups)] for node_groups in groups
  ]
  depth = [0] * len(order)
  while True:
    read: set[int] = set()
    grew_after_read = False
    upstream: list[_Upstream] = [_NOTHING] * n_nodes
    for node in range(1, n_nodes):
      parts = [upstream[p] for p in tracer.parents[node]]
      before = _join(parts, []) if len(parts) != 1 else parts[0]
      if node in uses:
        for target, siblings in own_layers[node]:
          deepest = _deepest_before(before, target, siblings)
          if deepest is None:
            deepest = _exact_upstream(tracer, node, target, siblings, own_layers, depth)
          if 1 + deepest > depth[target]:
            grew_after_read |= target in read
            depth[target] = 1 + deepest
      own = [(p, depth[p]) for p, _ in own_layers[node]]
      read.update(p for p, _ in own)
      upstream[node] = _join([before], own) if own else before
    if not grew_after_read:
      return depth


def _deepest_before(up: _Upstream, target: int, siblings: frozenset) -> int | None:
  """Largest depth upstream among layers first used before ``target``, siblings excepted.

  -1 if there are none; None if the summary cannot tell (ask ``_exact_upstream``).
  """
  if target <= up.cut or any(s <= up.cut for s in siblings if s != target):
    return None
  return max([up.below] + [d for p, d in up.recent if p < target and p not in siblings], default=-1)


def _exact_upstream(
    tracer: _Tracer,
    node: int,
    target: int,
    siblings: frozenset,
    own_layers: list[list[tuple[int, frozenset]]],
    depth: list[int],
) -> int:
  """``_deepest_before`` by walking the whole graph upstream of ``node``'s inputs."""
  stack, seen, deepest = list(tracer.parents[node]), set(tracer.parents[node]), -1
  while stack:
    current = stack.pop()
    for p, _ in own_layers[current]:
      if p < target and p not in siblings:
        deepest = max(deepest, depth[p])
    for parent in tracer.parents[current]:
      if parent not in seen:
        seen.add(parent)
        stack.append(parent)
  return deepest
