"""Fails the docs build when a public name has no API entry or no docstring.

Every name in ``caadam_jax.__all__`` and ``caadam_jax.published.__all__`` must be
documented as ``<module>.<name>`` (an
``autosummary``/``autodoc`` entry in ``docs/api.md``) and carry its own docstring. The
check runs at the end of reading (``env-check-consistency``) and reports through
Sphinx's logger, so ``sphinx-build -W`` turns a gap into a failed build.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterable
from typing import Any

MODULES = ("caadam_jax", "caadam_jax.published")


def own_docstring(obj: Any) -> str:
  """The object's own docstring; generated ones (NamedTuple's ``X(a, b)``) do not count."""
  doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
  doc = (doc or "").strip()
  if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
    return ""
  return doc


def coverage_problems(module: str, documented: Iterable[str]) -> list[str]:
  """Public names of ``module`` missing from ``documented`` (full names) or undocumented."""
  mod = importlib.import_module(module)
  documented = set(documented)
  problems = []
  for name in mod.__all__:
    full = f"{module}.{name}"
    if full not in documented:
      problems.append(f"{full} has no API entry: add it to docs/api.md")
    obj = getattr(mod, name)
    # A type alias (typing.Literal[...]) or a constant (a tuple, a mapping) cannot carry
    # a docstring: its API entry's text (a ``py:data`` directive in docs/api.md)
    # documents it.
    if callable(obj) and typing.get_origin(obj) is None and not own_docstring(obj):
      problems.append(f"{full} has no docstring: write one (Google style)")
  return problems


def _check(app: Any, env: Any) -> None:
  from sphinx.util import logging  # here: the check itself is usable without Sphinx

  logger = logging.getLogger(__name__)
  objects = env.get_domain("py").objects
  for module in MODULES:
    for problem in coverage_problems(module, objects):
      logger.warning(problem, type="coverage_check")


def setup(app: Any) -> dict[str, Any]:
  """Registers the check."""
  app.connect("env-check-consistency", _check)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
