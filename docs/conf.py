"""Sphinx configuration of the caadam_jax documentation (build: ``bash docs/build.sh``)."""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's caadam_jax, not an installed copy
sys.path.insert(0, str(DOCS / "ext"))

# The notebooks are executed at build time with the small settings their test uses
# (tests/test_notebooks.py); the kernel inherits this environment.
os.environ["CAADAM_JAX_SMALL"] = "1"
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
os.environ["CAADAM_JAX_RESULTS"] = str(ROOT / "benchmarks" / "results")
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)

# notebooks/*.ipynb live outside the source directory: copy them in (docs/notebooks/ is
# generated and gitignored), rewriting only changed files so incremental builds stay cheap.
_NOTEBOOKS = DOCS / "notebooks"
_NOTEBOOKS.mkdir(exist_ok=True)
for _source in sorted((ROOT / "notebooks").glob("*.ipynb")):
  _target = _NOTEBOOKS / _source.name
  if not _target.exists() or _target.read_bytes() != _source.read_bytes():
    shutil.copyfile(_source, _target)

# autosummary writes one stub per API entry into docs/_autosummary/ but never deletes
# stale ones: start clean, so a name removed from api.md fails the coverage check.
shutil.rmtree(DOCS / "_autosummary", ignore_errors=True)

import caadam_jax  # noqa: E402

project = "caadam_jax"
author = "caadam_jax developers"
copyright = "caadam_jax developers"  # noqa: A001
release = caadam_jax.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 shipped with the site: formulas render offline
    "sphinx.ext.viewcode",  # [source] links beside every entry
    "sphinx_copybutton",  # a copy button on every code block
    "myst_nb",
    "coverage_check",
]

source_suffix = {
    ".rst": "restructuredtext",
    ".md": "myst-nb",
    ".ipynb": "myst-nb",
}  # .rst first: autosummary stubs
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "README.md", "**/.ipynb_checkpoints", "jupyter_execute"]
root_doc = "index"

# Every cross-reference must resolve (internal links are checked with -W).
nitpicky = True
# Types from other packages have no inventory here (intersphinx needs the network): their
# names in signatures are not links, and only they are exempt from the check.
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|optax|chex|flax|numpy|np|typing|collections|pathlib|os|re)(\..*)?"),
    (r"py:class", r"(Any|Callable|Sequence|Mapping|Iterable|NamedTuple|PathLike|ArrayLike)"),
    (r"py:class", r"(int|float|str|bool|tuple|list|dict|None|object)"),
    # The package's private names never reach a signature (_public_signature below), so
    # none is exempt: a leak fails the build.
]

# API reference: generated from the Google-style docstrings.
autosummary_generate = True
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
add_module_names = False
python_use_unqualified_type_names = True

# MyST: $...$ and $$...$$ math, heading anchors for [text](page.md#heading) links.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: executed on every build (outputs are never stored in the repository), with
# the small settings; a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

html_theme = "furo"
html_title = f"caadam_jax {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# NamedTuple fields are documented by the class's Attributes section (as fields, so not
# twice); their generated "Alias for field number N" entries are skipped.
napoleon_use_ivar = True


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
  if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
    return True
  return None


# Signatures show public names only. The package annotates with its private modules
# (``_formulas.StrategyName``, ``_structure.Structure``) and private aliases
# (``_paths.Path``); these become the public name or what the alias stands for.
_PRIVATE_ALIASES = {
    "Path": "tuple[str | int, ...]",
    "PathKey": "str | int",
    "Order": "Sequence[str | Sequence[str | int]] | caadam_jax.Structure",
    "Factor": "ArrayLike",
    # The layer-decay transforms' argument types.
    "BlocksSpec": "str | re.Pattern[str] | Mapping[Any, int] | None",
    "StemSpec": "str | re.Pattern[str] | Iterable[Any] | None",
    "DecoderRule": 'Literal["sequential", "parallel"]',
}
import caadam_jax.published  # noqa: E402

# Public names, fully qualified so the cross-references resolve from any page (the
# text shows the short name: python_use_unqualified_type_names).
_PUBLIC = {
    **{name: f"caadam_jax.published.{name}" for name in caadam_jax.published.__all__},
    **{name: f"caadam_jax.{name}" for name in caadam_jax.__all__},
}
_PRIVATE_QUALIFIED = re.compile(r"\b(?:caadam_jax\.)?(?:published\.)?_\w+\.(\w+)")


def public_annotation(text: str) -> str:
  """``text`` with private aliases spelled out and private module qualifiers dropped."""

  def unqualify(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in _PUBLIC:
      return _PUBLIC[name]
    return name if name in _PRIVATE_ALIASES else match.group(0)

  text = _PRIVATE_QUALIFIED.sub(unqualify, text)
  # Bare public type names (imported into a private module) get their full name too.
  text = re.sub(
      r"(?<![\w.])([A-Z]\w*)\b",
      lambda m: _PUBLIC.get(m.group(1), m.group(1)),
      text,
  )
  for private, public in _PRIVATE_ALIASES.items():
    text = re.sub(rf"(?<![\w.]){private}\b", public, text)
  return text


class _Written(str):
  """An annotation shown as written (``inspect`` prints ``repr`` for non-types)."""

  def __repr__(self) -> str:
    return str(self)


def _as_written(obj, what):
  """``(signature, return annotation)`` with the annotations as the source spells them.

  Autodoc evaluates annotations where it can, which expands aliases
  (``jax.typing.ArrayLike`` becomes a ten-type union, ``StrategyName`` its ``Literal``); the
  package's modules use ``from __future__ import annotations``, so ``inspect`` without
  evaluation returns the annotations as written. None where there is no signature.
  """
  try:
    sig = inspect.signature(obj)
  except (TypeError, ValueError):
    return None
  params = list(sig.parameters.values())
  if what in ("method", "class") and params and params[0].name in ("self", "cls"):
    params = params[1:]

  def shown(annotation):
    if annotation is inspect.Parameter.empty:
      return annotation
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return _Written(public_annotation(text))

  params = [p.replace(annotation=shown(p.annotation)) for p in params]
  returns = sig.return_annotation
  text = str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))
  return text, None if returns is inspect.Signature.empty else str(shown(returns))


def _public_signature(app, what, name, obj, options, signature, return_annotation):
  if signature is None and return_annotation is None:
    return None
  if what in ("function", "method") and name.startswith("caadam_jax"):
    written = _as_written(obj, what)
    if written is not None:
      return written
  return (
      None if signature is None else public_annotation(signature),
      None if return_annotation is None else public_annotation(return_annotation),
  )


# Copy buttons copy code without the prompts and outputs of doctest examples.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = False


def setup(app):
  app.connect("autodoc-skip-member", _skip_namedtuple_fields)
  app.connect("autodoc-process-signature", _public_signature)
