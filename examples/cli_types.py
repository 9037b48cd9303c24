"""Checked ``argparse`` types for the command lines of the examples and benchmarks.

A bad number on a command line (``--batch-size 0``, ``--epochs -1``, ``--lr nan``) is
refused while parsing, with the option named and what it must be, instead of ending in a
``ZeroDivisionError`` or an empty table later.

The one home of these types (not part of the ``caadam_jax`` package, standard library
only): the examples import it as ``cli_types`` (``python examples/<name>.py`` puts
``examples/`` on ``sys.path``), the benchmarks as ``examples.cli_types`` (``python -m
benchmarks.<study>`` runs from the repository root), as with ``data_files``.

Example::

  parser.add_argument("--batch-size", type=cli_types.positive_int, default=64)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

_Number = TypeVar("_Number", int, float)


def _checked(
    convert: Callable[[str], _Number], holds: Callable[[_Number], bool], what: str
) -> Callable[[str], _Number]:
  """An argparse type: ``convert(text)`` if that succeeds and ``holds``, else an error."""

  def parse(text: str) -> _Number:
    try:
      value = convert(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not holds(value):
      raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value

  return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
"""An integer >= 1 (a batch size, a number of epochs, seeds or steps)."""

non_negative_int = _checked(int, lambda v: v >= 0, "a non-negative integer")
"""An integer >= 0 (a seed, a process id, a count that may be zero)."""

positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
"""A finite number > 0 (a learning rate, a timeout)."""

non_negative_float = _checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
"""A finite number >= 0 (a tolerance such as a plateau's ``min_delta``)."""

finite_float = _checked(float, math.isfinite, "a finite number")
"""Any finite number (where the sign has a meaning of its own)."""

decay_fraction = _checked(float, lambda v: math.isfinite(v) and 0 < v <= 1, "a number in (0, 1]")
"""A number with ``0 < x <= 1`` (a layer-wise learning-rate decay; 1 turns it off)."""


def comma_separated(item: Callable[[str], _Number], what: str) -> Callable[[str], list[_Number]]:
  """An argparse type: comma-separated values, each parsed by ``item`` (``what`` names them)."""

  def parse(text: str) -> list[_Number]:
    try:
      return [item(u) for u in text.split(",")]
    except argparse.ArgumentTypeError:
      raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None

  return parse


positive_int_list = comma_separated(positive_int, "comma-separated positive integers such as 64,32")
"""Comma-separated integers >= 1 (hidden layer sizes)."""
