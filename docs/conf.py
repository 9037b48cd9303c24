"""Sphinx configuration of the caadam_jax documentation (build: ``bash docs/build.sh``)."""

from __future__ import annotations

import os
import pathlib
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
    (r"py:.*", r"(jax|jaxlib|optax|chex|flax|numpy|np|typing|collections|pathlib|os)(\..*)?"),
    (r"py:class", r"(Any|Callable|Sequence|Mapping|Iterable|NamedTuple|PathLike|ArrayLike)"),
    (r"py:class", r"(int|float|str|bool|tuple|list|dict|None|object)"),
    # Private names of the package in signatures (``_paths.Path``, ``Order``, ``Strategy``).
    (
        r"py:class",
        r"(_paths\.Path|_paths\.PathKey|Order|Factor|_formulas\.Factor|_formulas\.StrategyName|_formulas\.Formula)",
    ),
    (r"py:class", r"caadam_jax\._\w+\..*"),
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


def setup(app):
  app.connect("autodoc-skip-member", _skip_namedtuple_fields)
