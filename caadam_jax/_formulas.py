"""The CaAdam scaling formulas, as pure functions of structure and scaling factor.

Each formula maps one layer's record (connection count, depth) and the network's
statistics to the factor ``S`` that multiplies that layer's Adam step
(Genet & Inzirillo, "CaAdam: Improving Adam optimizer using connection aware
methods", arXiv:2410.24216). The scaling factor ``g`` is only used arithmetically,
so it may be a traced value (``optax.inject_hyperparams``, schedules); the
structural quantities are static Python numbers.

A formula is public (:data:`~caadam_jax.Formula`): user code passes its own to
:func:`~caadam_jax.scale_by_structure`, ``caadam(strategy=...)``,
:meth:`~caadam_jax.Structure.factors` or :func:`~caadam_jax.describe` without touching
the package (docs/method.md, "Adding a strategy"). A named strategy is one formula
function here plus one entry in ``STRATEGIES`` (CONTRIBUTING.md, "Add a strategy").
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, cast, get_args

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from caadam_jax import _validation

# A scaling factor or a layer's factor: a Python number, or an array (traced under
# ``optax.inject_hyperparams``).
Factor = jax.typing.ArrayLike

# The names of the strategies, for type checkers (one entry per key of STRATEGIES).
StrategyName = Literal["additive", "multiplicative", "depth"]

# The built-in strategy names, in a fixed order: the one list that tests, benchmarks and
# examples iterate over instead of spelling the names again.
STRATEGY_NAMES: tuple[StrategyName, ...] = get_args(StrategyName)


class Statistics(NamedTuple):
  """Global statistics over the counted layers of a network.

  Attributes:
    c_min: smallest connection count.
    c_med: median connection count (numpy convention: mean of the two middle
      values for an even number of layers).
    c_max: largest connection count.
    num_layers: number of counted layers ``D``.
  """

  c_min: float
  c_med: float
  c_max: float
  num_layers: int


class LayerRecord(NamedTuple):
  """What a formula knows about one layer.

  Attributes:
    connections: the layer's connection count (the number of weights in its weight
      tensors).
    depth: the layer's 0-based depth.
    shapes: the shapes of the layer's weight tensors, in the tree's leaf order (one slice's
      shape, without the stack axis, for a layer of an ``nn.scan``/``nnx.vmap``
      stack), so that fan-in or fan-out formulas are expressible: a Dense kernel is
      ``(in, out)``, a Conv kernel ``(kh, kw, in, out)`` (Flax's layouts; PyTorch-style
      and Equinox weights are ``(out, in, ...)``). Empty for a record built without
      shapes (``LayerRecord(connections, depth)``).

  Examples:
    >>> import jax.numpy as jnp, caadam_jax
    >>> params = {'Dense_0': {'kernel': jnp.zeros((4, 8)), 'bias': jnp.zeros(8)}}
    >>> caadam_jax.infer_structure(params).layers[('Dense_0',)]
    LayerRecord(connections=32, depth=0, shapes=((4, 8),))
  """

  connections: float
  depth: int
  shapes: tuple[tuple[int, ...], ...] = ()


def statistics_of(connections: Sequence[float], num_layers: int) -> Statistics:
  """``c_min``, ``c_med`` (numpy's median), ``c_max`` of non-empty ``connections``, and ``D``."""
  return Statistics(
      c_min=float(min(connections)),
      c_med=float(np.median(np.asarray(connections, dtype=np.float64))),
      c_max=float(max(connections)),
      num_layers=num_layers,
  )


# A scaling formula: one layer's record, the network's statistics and the scaling
# factor ``g`` (whatever the caller passed, None included) -> the layer's factor.
Formula = Callable[[LayerRecord, Statistics, Any], Factor]


def minmaxmedian_exponent(connections: float, stats: Statistics) -> float:
  """The normalized distance ``n >= 0`` of a connection count from the median.

  ``n = (c_med - c) / (c_med - c_min)`` for ``c <= c_med`` and
  ``n = (c - c_med) / (c_max - c_med)`` above the median. Degenerate statistics
  give finite values: ``c_min == c_max`` gives 0 (every factor is then 1), and
  ``c_med == c_min`` gives 0 on the lower branch (where it would be 0/0).

  Args:
    connections: the layer's connection count ``c``.
    stats: the network's statistics.

  Returns:
    ``n`` as a Python float.
  """
  c, c_min, c_med, c_max = float(connections), stats.c_min, stats.c_med, stats.c_max
  if c_max == c_min:
    return 0.0
  if c <= c_med:
    return 0.0 if c_med == c_min else (c_med - c) / (c_med - c_min)
  return (c - c_med) / (c_max - c_med)


def additive_minmaxmedian(record: LayerRecord, stats: Statistics, g: Factor) -> Factor:
  """Additive MinMaxMedian: ``1 + g*n`` below the median, ``1 - g*n`` above it."""
  n = minmaxmedian_exponent(record.connections, stats)
  if n == 0.0:
    return 1.0
  sign = 1.0 if record.connections <= stats.c_med else -1.0
  return 1.0 + sign * n * g


def multiplicative_minmaxmedian(record: LayerRecord, stats: Statistics, g: Factor) -> Factor:
  """Multiplicative MinMaxMedian: ``g ** n`` on both sides of the median.

  As in the paper's formula and the reference code, ``n >= 0`` on both sides, so
  with ``g > 1`` both the smallest and the largest layers get factors above 1.
  """
  n = minmaxmedian_exponent(record.connections, stats)
  if n == 0.0:
    return 1.0
  return g**n


def depth_scaling(record: LayerRecord, stats: Statistics, g: Factor) -> Factor:
  """Depth: ``(1 + g) ** ((D - (1 + d)) / D)``; the last layer gets exactly 1."""
  exponent = (stats.num_layers - (1 + record.depth)) / stats.num_layers
  if exponent == 0.0:
    return 1.0
  return (1.0 + g) ** exponent


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A named scaling strategy: its formula, default ``g`` and allowed range.

  The entries of :data:`~caadam_jax.STRATEGIES`. A ``Strategy`` is accepted wherever a
  strategy is (:func:`~caadam_jax.scale_by_strategy`, :meth:`~caadam_jax.Structure.factors`);
  its ``g`` is then given to the formula unchanged.

  Attributes:
    formula: the :data:`~caadam_jax.Formula`, ``(record, stats, g) -> factor``.
    default_scaling_factor: ``g`` when the user gives none.
    allowed: the valid range of ``g`` in words, for error messages.
    is_allowed: the range check; it works on a Python float and, elementwise
      with ``&``, on a (traced) array.
    uses_depth: whether the formula reads ``record.depth`` (the default-structure
      guards then also check that path order can be the forward order).
    minmaxmedian: whether the formula is a MinMaxMedian one of the connection count
      (it divides by ``c_med - c_min`` and ``c_max - c_med``):
      :func:`~caadam_jax.scale_by_connection_minmaxmedian` accepts exactly these.

  Examples:
    >>> import caadam_jax
    >>> {name: s.default_scaling_factor for name, s in caadam_jax.STRATEGIES.items()}
    {'additive': 0.95, 'multiplicative': 5.0, 'depth': 1.0}
    >>> caadam_jax.STRATEGIES["additive"].allowed
    '0 <= scaling_factor < 1'
  """

  formula: Formula
  default_scaling_factor: float
  allowed: str
  is_allowed: Callable[[Any], Any]
  uses_depth: bool = False
  minmaxmedian: bool = False


# The named strategies, read-only (a new one is added here: CONTRIBUTING.md, "Add a
# strategy"). Keys in the order of STRATEGY_NAMES.
STRATEGIES: Mapping[StrategyName, Strategy] = types.MappingProxyType(
    {
        # g >= 1 would zero or flip the step of the largest layer; multiplicative g <= 0
        # zeroes or flips steps; depth g < 0 shrinks steps, down to zero at g = -1.
        "additive": Strategy(
            additive_minmaxmedian,
            0.95,
            "0 <= scaling_factor < 1",
            lambda g: (g >= 0.0) & (g < 1.0),
            minmaxmedian=True,
        ),
        "multiplicative": Strategy(
            multiplicative_minmaxmedian,
            5.0,
            "scaling_factor > 0",
            lambda g: g > 0.0,
            minmaxmedian=True,
        ),
        "depth": Strategy(
            depth_scaling, 1.0, "scaling_factor >= 0", lambda g: g >= 0.0, uses_depth=True
        ),
    }
)


def nan_outside_range(strategy: Strategy, g: jax.typing.ArrayLike) -> jax.Array:
  """``g`` where it is in the strategy's range, NaN elsewhere (the traced-``g`` rule).

  A traced scaling factor cannot raise. Out of range it would silently zero or flip
  the sign of some layers' steps (additive ``g >= 1``, multiplicative ``g <= 0``) or
  shrink them (depth ``g < 0``); as NaN it makes every factor that depends on it
  NaN, so the step is visibly non-finite (an ``optax.apply_if_finite`` chained
  after the optimizer skips it).
  In range, ``g`` is returned unchanged, bit for bit, in its own dtype (an
  integer ``g`` becomes float32, which can hold the NaN).
  """
  g = jnp.asarray(g)
  if not jnp.issubdtype(g.dtype, jnp.floating):
    g = g.astype(jnp.float32)
  return jnp.where(strategy.is_allowed(g), g, jnp.nan)


def resolve_strategy(
    name: StrategyName, scaling_factor: Factor | None, *, argument: str = "strategy"
) -> tuple[Strategy, Factor]:
  """Looks up a strategy and validates its scaling factor.

  Args:
    name: a key of ``STRATEGIES``.
    scaling_factor: ``g``, or None for the strategy's default. A JAX array
      (what ``optax.inject_hyperparams`` passes; traced under ``jit``) cannot
      raise on its value: it is returned through :func:`nan_outside_range`.
    argument: the user-facing name of ``name``, for error messages.

  Returns:
    ``(strategy, g)``.

  Raises:
    ValueError: for an unknown strategy, a ``g`` that is not 0-dimensional, or a
      concrete ``g`` that is not finite or not in the strategy's allowed range.
    TypeError: ``g`` is not a real number (a string, a bool, None, a list).
  """
  if name not in STRATEGIES:
    raise ValueError(f"Unknown {argument} {name!r}: expected one of {sorted(STRATEGIES)}.")
  strategy = STRATEGIES[name]
  g = strategy.default_scaling_factor if scaling_factor is None else scaling_factor
  _validation.check_real_scalar(
      "scaling_factor",
      g,
      strategy.allowed,
      strategy.is_allowed,
      context=f" for {argument}={name!r}",
  )
  if _validation.is_jax_array(g):
    g = nan_outside_range(strategy, g)
  return strategy, g


def is_named(formula: Any) -> bool:
  """Whether ``formula`` is a named strategy's (its factors are positive by construction)."""
  return any(formula is strategy.formula for strategy in STRATEGIES.values())


def formula_name(formula: Any) -> str:
  """A formula's name for messages: ``fan_in_factor``, ``<lambda>``, or its type."""
  return getattr(formula, "__qualname__", None) or type(formula).__name__


def check_factor(value: Any, formula: Any, layer: str) -> Factor:
  """A formula's factor for one layer, checked: a real scalar, finite and > 0.

  The rule of every factor (docs/method.md, "Rules for a formula"): a concrete
  factor (a Python number, a NumPy scalar or array) must be finite and positive,
  since zero stops a layer, a negative factor is gradient ascent and NaN or inf
  spreads into the parameters. A JAX array factor (it depends on a ``g`` that
  ``optax.inject_hyperparams`` passes, traced under ``jit``) is not value-checked,
  as the named strategies' JAX-array ``g`` is not: like it, it becomes NaN where it
  is not finite and positive, so the step is visibly non-finite rather than
  silently flipped.

  Args:
    value: what the formula returned.
    formula: the formula, named in the message.
    layer: the layer's path, named in the message.

  Returns:
    ``value`` (a Python float for a Python or NumPy number), or the JAX array with
    NaN where it is out of range.

  Raises:
    TypeError: ``value`` is not a real number (a string, None, a dict, a list, a
      bool, a complex number or array).
    ValueError: ``value`` is an array of a shape other than ``()``, or a concrete
      (non-JAX) value that is not finite or not > 0.
  """
  where = f"formula {formula_name(formula)} returned {{what}} for layer {layer}"
  rule = "a factor must be a real scalar (a Python number or a 0-d array), finite and > 0"
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating, np.ndarray, jax.Array)
  ):
    raise TypeError(f"{where.format(what=_validation.describe_value(value))}: {rule}.")
  array: Any = value  # a number or an array from here on
  dtype = np.dtype(array.dtype) if hasattr(array, "dtype") else np.dtype(np.float64)
  if dtype == np.bool_ or not (
      jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
  ):
    raise TypeError(f"{where.format(what=f'a value of dtype {dtype}')}: {rule}.")
  if np.shape(value) != ():
    raise ValueError(
        f"{where.format(what=f'an array of shape {np.shape(value)}')}: {rule} (one factor "
        "per layer; per-element factors would change the update's shape or scale columns)."
    )
  if _validation.is_jax_array(array):
    array = array if jnp.issubdtype(dtype, jnp.floating) else array.astype(jnp.float32)
    return jnp.where(jnp.isfinite(array) & (array > 0), array, jnp.nan)
  number = float(value)
  if not (math.isfinite(number) and number > 0):
    raise ValueError(
        f"{where.format(what=repr(number))}: {rule} (0 stops the layer, a negative factor is "
        "gradient ascent, NaN or inf spreads into the parameters)."
    )
  return number if isinstance(value, (int, float, np.integer, np.floating)) else value


def resolve(
    strategy: StrategyName | Formula | Strategy,
    scaling_factor: Any,
    *,
    argument: str = "strategy",
) -> tuple[Formula, Any, bool]:
  """A strategy name, a user formula or a :class:`Strategy` as ``(formula, g, uses_depth)``.

  A name goes through :func:`resolve_strategy` (default and range of ``g``). A user
  formula's ``g`` is passed to it unchanged (its range is the user's business) and
  the formula counts as reading depths (the conservative choice for the
  default-structure guards). A :class:`Strategy` keeps ``g`` unchanged.

  Args:
    strategy: a key of ``STRATEGIES``, a :data:`Formula`, or a :class:`Strategy`.
    scaling_factor: ``g``, or None (a name's default; given as is to a formula).
    argument: the user-facing name of ``strategy``, for error messages.

  Returns:
    ``(formula, g, uses_depth)``.

  Raises:
    TypeError: ``strategy`` is neither a name nor a callable.
    ValueError: as :func:`resolve_strategy`, for a name.
  """
  strategy = unwrap(strategy)
  if isinstance(strategy, str):
    resolved, g = resolve_strategy(cast(StrategyName, strategy), scaling_factor, argument=argument)
    return resolved.formula, g, resolved.uses_depth
  if isinstance(strategy, Strategy):
    return strategy.formula, scaling_factor, strategy.uses_depth
  if callable(strategy) and not _validation.is_jax_array(strategy):
    return strategy, scaling_factor, True
  if _validation.is_jax_array(strategy):
    # optax.inject_hyperparams took the formula for a schedule and called it with the step.
    raise TypeError(
        f"{argument} is a JAX array ({strategy!r}): optax.inject_hyperparams calls every "
        "callable argument as a schedule, so a formula given there was called with the step "
        f"count. Declare it static: optax.inject_hyperparams(caadam_jax.caadam, "
        f"static_args=({argument!r},))({argument}=formula, ...)."
    )
  raise TypeError(
      f"{argument} must be one of the names {sorted(STRATEGIES)} or a formula, a callable "
      f"(record: caadam_jax.LayerRecord, stats: caadam_jax.Statistics, g) -> factor; "
      f"got {type(strategy).__name__} {strategy!r}."
  )


class BoundFormula:
  """A formula bound to a transform's argument by ``inspect.signature(...).bind``.

  That is what ``optax.inject_hyperparams`` does with its arguments before it calls
  every callable one not declared in ``static_args`` as a schedule, with the step
  count, before the transform runs (a formula ``(record, stats, g)`` would fail
  there with Python's "missing 2 required positional arguments"). Called as a
  formula, this is the formula; called with one argument, it raises the fix.
  """

  def __init__(self, formula: Formula, argument: str, owner: str):
    functools.update_wrapper(self, formula)  # the formula's name in messages
    self.formula, self.argument, self.owner = formula, argument, owner

  def __call__(self, *args: Any, **kwargs: Any) -> Factor:
    if len(args) == 1 and not kwargs:
      raise TypeError(
          f"{self.argument}={formula_name(self.formula)} is a formula, and "
          "optax.inject_hyperparams calls every callable argument as a schedule (with the "
          f"step count) unless it is static. Declare it static: optax.inject_hyperparams("
          f"{self.owner}, static_args=({self.argument!r},))({self.argument}="
          f"{formula_name(self.formula)}, ...)."
      )
    return self.formula(*args, **kwargs)

  def __repr__(self) -> str:
    return repr(self.formula)


def unwrap(strategy: Any) -> Any:
  """The formula a :class:`BoundFormula` holds; anything else unchanged."""
  return strategy.formula if isinstance(strategy, BoundFormula) else strategy


class _FormulaBindingSignature(inspect.Signature):
  """A signature whose ``bind`` wraps a callable formula argument in :class:`BoundFormula`."""

  formula_argument = ""
  owner = ""

  def bind(self, /, *args: Any, **kwargs: Any) -> inspect.BoundArguments:
    bound = super().bind(*args, **kwargs)
    value = bound.arguments.get(self.formula_argument)
    if callable(value) and not isinstance(value, BoundFormula):
      bound.arguments[self.formula_argument] = BoundFormula(
          cast(Formula, value), self.formula_argument, self.owner
      )
    return bound


_F = TypeVar("_F", bound=Callable[..., Any])


def binds_formula(argument: str, owner: str) -> Callable[[_F], _F]:
  """Decorates a transform whose ``argument`` takes a formula, for ``inject_hyperparams``.

  ``optax.inject_hyperparams(fn)`` binds its arguments with ``inspect.signature(fn)``
  and then calls each callable one not in ``static_args`` as a schedule. With this
  decorator the binding wraps the formula in :class:`BoundFormula`, so that call
  raises a ``TypeError`` that names ``argument`` and says to pass
  ``static_args=(argument,)`` instead of Python's missing-argument error; declared
  static, the wrapper reaches ``fn``, which unwraps it (:func:`unwrap`). Direct
  calls of ``fn`` do not bind and are unaffected.

  Args:
    argument: the name of the formula argument (``"strategy"``, ``"formula"``).
    owner: the public name of ``fn``, for the message (``"caadam_jax.caadam"``).

  Returns:
    A decorator that sets ``fn.__signature__`` and returns ``fn``.
  """

  def decorate(fn: _F) -> _F:
    signature = _FormulaBindingSignature.from_callable(fn)
    signature.formula_argument, signature.owner = argument, owner
    fn.__signature__ = signature  # pyright: ignore[reportFunctionMemberAccess]
    return fn

  return decorate
