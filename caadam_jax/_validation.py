"""Argument checks shared by every alias and helper: one message style, one rule.

Concrete values (Python numbers, NumPy scalars and arrays) are checked for type,
shape, finiteness and range where they are given, at construction. JAX arrays,
traced or not, are checked for shape and dtype only: they are what
``optax.inject_hyperparams`` passes (concrete in ``init`` and eager updates, traced
under ``jit``) and a value check would either fail on a tracer or force a
device-to-host transfer at every step. Schedules (callables) pass where the
argument accepts one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_jax_array(value: Any) -> bool:
  """Whether ``value`` is a JAX array or tracer (its value is not checked)."""
  return isinstance(value, jax.Array)  # tracers are jax.Array instances too


def describe_value(value: Any) -> str:
  """``'float 1.5'``: a value's type and (shortened) repr, for messages."""
  text = repr(value)
  return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check_real_scalar(
    name: str,
    value: Any,
    allowed: str,
    ok: Callable[[float], bool],
    *,
    schedule: bool = False,
    owner: str | None = None,
    context: str = "",
) -> None:
  """Raises if ``value`` is not a real scalar in range; JAX arrays are not range-checked.

  Args:
    name: the argument's name, for the message.
    value: the argument.
    allowed: the valid range in words (``"0 <= b1 < 1"``).
    ok: the range check, applied to ``float(value)`` of a concrete value.
    schedule: whether a callable (an Optax schedule) is accepted as it is.
    owner: the public function the argument belongs to (``"caadam_jax.caadam"``),
      named in the hint for scheduling an argument that takes no schedule.
    context: appended to the range message (``" for strategy='additive'"``).

  Raises:
    TypeError: ``value`` is not a real number (a string, None, a list, a bool, a
      complex or boolean array), or is a callable where none is accepted.
    ValueError: ``value`` is an array that is not 0-dimensional, or a concrete
      value that is not finite or not in ``allowed``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from caadam_jax._validation import check_real_scalar
    >>> check_real_scalar("b1", jnp.asarray(2.0), "0 <= b1 < 1", lambda x: 0 <= x < 1)
    >>> check_real_scalar("b1", 1.0, "0 <= b1 < 1", lambda x: 0 <= x < 1)
    Traceback (most recent call last):
    ...
    ValueError: b1=1.0 is out of range: expected 0 <= b1 < 1.
  """
  if callable(value) and not is_jax_array(value):
    if schedule:
      return
    raise TypeError(
        f"{name} must be a number, not a callable ({describe_value(value)}). To schedule it, "
        f"wrap the optimizer: optax.inject_hyperparams({owner or 'the optimizer'})"
        f"({name}=schedule)."
    )
  expected = "a real scalar (a Python int or float, or a 0-d NumPy/JAX array)" + (
      " or an Optax schedule" if schedule else ""
  )
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be {expected}, not a bool ({value!r}).")
  array: Any = value  # a number or an array from here on
  if is_jax_array(array) or isinstance(array, (np.ndarray, np.generic)):
    dtype, shape = np.dtype(array.dtype), tuple(array.shape)
  elif isinstance(array, numbers.Real):
    dtype, shape = np.dtype(np.float64), ()
  else:
    raise TypeError(f"{name} must be {expected}; got {describe_value(value)}.")
  if dtype == np.bool_ or not (
      jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
  ):
    raise TypeError(f"{name} must be {expected}; got an array of dtype {dtype}.")
  if shape:
    raise ValueError(f"{name} must be {expected}; got an array of shape {shape}.")
  if is_jax_array(value):
    return
  number = float(array)
  if not math.isfinite(number):
    raise ValueError(f"{name}={number!r}{context} is out of range: it must be finite, {allowed}.")
  if not ok(number):
    raise ValueError(f"{name}={number!r}{context} is out of range: expected {allowed}.")


def check_bool(name: str, value: Any) -> bool:
  """Returns ``value`` as a Python bool; raises TypeError unless it is a bool."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be a bool (True or False), got {describe_value(value)}.")
  return bool(value)


def check_integer(name: str, value: Any, *, minimum: int | None = None, what: str = "") -> int:
  """Returns ``value`` as a Python int; raises unless it is an integer >= ``minimum``.

  Integral floats (``2.0``) are accepted; ``2.7`` is rejected, never truncated.

  Args:
    name: the argument's name, for the message.
    value: the argument.
    minimum: the smallest valid value, or None.
    what: the valid values in words (``"a non-negative integer"``).

  Returns:
    The integer.

  Raises:
    TypeError: ``value`` is a bool or not a real number.
    ValueError: ``value`` is not finite, not integral or below ``minimum``.

  Examples:
    >>> from caadam_jax._validation import check_integer
    >>> check_integer("depth", 2.0, minimum=0)
    2
    >>> check_integer("depth", 2.7, minimum=0, what="a non-negative integer")
    Traceback (most recent call last):
    ...
    ValueError: depth must be a non-negative integer, got 2.7.
  """
  what = what or "an integer"
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be {what}, not a bool ({value!r}).")
  if not isinstance(value, numbers.Real):
    raise TypeError(f"{name} must be {what} (a number); got {describe_value(value)}.")
  number = float(value)
  if not math.isfinite(number):
    raise ValueError(f"{name} must be finite, {what}; got {value!r}.")
  if not number.is_integer() or (minimum is not None and number < minimum):
    raise ValueError(f"{name} must be {what}, got {value!r}.")
  return int(number)


def check_adam_hyperparameters(
    owner: str,
    *,
    learning_rate: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    weight_decay: Any,
    weight_decay_may_be_none: bool = False,
) -> None:
  """Checks the Adam(W) hyperparameters of an alias.

  Args:
    owner: the alias's full name, for the messages.
    learning_rate: a number or a schedule, ``>= 0``.
    b1: ``0 <= b1 < 1``.
    b2: ``0 <= b2 < 1``.
    eps: ``> 0``.
    eps_root: ``>= 0``.
    weight_decay: a number or a schedule, ``>= 0`` (or None where allowed).
    weight_decay_may_be_none: whether ``weight_decay=None`` (no decay) is allowed.

  Raises:
    TypeError, ValueError: as :func:`check_real_scalar`, naming the argument.
  """
  for name, value, allowed, ok in (
      ("learning_rate", learning_rate, "learning_rate >= 0", lambda x: x >= 0),
      ("b1", b1, "0 <= b1 < 1", lambda x: 0 <= x < 1),
      ("b2", b2, "0 <= b2 < 1", lambda x: 0 <= x < 1),
      ("eps", eps, "eps > 0", lambda x: x > 0),
      ("eps_root", eps_root, "eps_root >= 0", lambda x: x >= 0),
      ("weight_decay", weight_decay, "weight_decay >= 0", lambda x: x >= 0),
  ):
    if name == "weight_decay" and value is None and weight_decay_may_be_none:
      continue
    check_real_scalar(
        name, value, allowed, ok, schedule=name in ("learning_rate", "weight_decay"), owner=owner
    )
