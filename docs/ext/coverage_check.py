"""Fails the docs build when a public name has no API entry or no docstring.

Every name in ``caadam_jax.__all__`` and ``caadam_jax.published.__all__`` must be
documented (an ``autosummary``/``autodoc`` entry in ``docs/api.md``) and carry its own
docstring. A name of ``caadam_jax.published`` re-exported from ``caadam_jax`` (the same
object) is documented once, as ``caadam_jax.<name>``. The
check runs at the end of reading (``env-check-consistency``) and reports through
Sphinx's logger, so ``sphinx-build -W`` turns a gap into a failed build.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Iterable
from typing import Any

MODULE = "caadam_jax"
# The public modules the check walks, each with the modules whose entries of the same
# object also count (re-exports are documented once).
MODULES: dict[str, tuple[str, ...]] = {MODULE: (), "caadam_jax.published": (MODULE,)}


def own_docstring(obj: Any) -> str:
  """The object's own docstring; generated ones (NamedTuple's ``X(a, b)``) do not count."""
  doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
  doc = (doc or "").strip()
  if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
    return ""
  return doc


def coverage_problems(
    module: str, documented: Iterable[str], also: Iterable[str] = ()
) -> list[str]:
  """Public names of ``module`` missing from ``documented`` (full names) or undocumented.

  A name also counts as documented as ``<other>.<name>`` for a module ``other`` of
  ``also`` that exports the same object.
  """
  mod = importlib.import_module(module)
  others = [importlib.import_module(other) for other in also]
  documented = set(documented)
  problems = []
  for name in mod.__all__:
    full = f"{module}.{name}"
    obj = getattr(mod, name)
    elsewhere = any(
        getattr(other, name, None) is obj and f"{other.__name__}.{name}" in documented
        for other in others
    )
    if full not in documented and not elsewhere:
      problems.append(f"{full} has no API entry: add it to docs/api.md")
    # A type alias (typing.Literal[...]) cannot carry a docstring: its API entry's
    # text (a ``py:data`` directive in docs/api.md) documents it.
    if typing.get_origin(obj) is None and not own_docstring(obj):
      problems.append(f"{full} has no docstring: write one (Google style)")
  return problems


def _check(app: Any, env: Any) -> None:
  from sphinx.util import logging  # here: the check itself is usable without Sphinx

  logger = logging.getLogger(__name__)
  objects = env.get_domain("py").objects
  for module, also in MODULES.items():
    for problem in coverage_problems(module, objects, also):
      logger.warning(problem, type="coverage_check")


def setup(app: Any) -> dict[str, Any]:
  """Registers the check."""
  app.connect("env-check-consistency", _check)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
