"""Every code block of the README and the docs pages, and every docstring example, runs.

Also checks the two tools of the docs build on small inputs: the API coverage check
(``docs/ext/coverage_check.py``) and the internal link check (``docs/check_links.py``).
"""

import doctest
import importlib
import pathlib
import pkgutil
import re
import sys
import types

import pytest

import caadam_jax
import caadam_jax.published
from docs import check_links
from docs.ext import coverage_check

ROOT = pathlib.Path(__file__).resolve().parents[1]

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = {
    page.relative_to(ROOT).as_posix(): re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    for page in PAGES
}
# A page's blocks run in order in one namespace, as a reader runs them (a later block
# may use what an earlier one defined).
CASES = [page for page, blocks in BLOCKS.items() if blocks]
MODULES = sorted(m.name for m in pkgutil.iter_modules(caadam_jax.__path__, "caadam_jax."))


def test_pages_have_code_blocks():
  assert len(BLOCKS["README.md"]) >= 1
  for page in ("getting_started", "method", "optax", "published", "adas", "multihost"):
    assert BLOCKS[f"docs/{page}.md"], f"docs/{page}.md lost its code blocks"
  assert len(BLOCKS["docs/your_model.md"]) >= 6


@pytest.mark.slow  # the docs pages' examples, run whole
@pytest.mark.parametrize("page", CASES)
def test_code_blocks_run(page):
  namespace = {}
  for index, block in enumerate(BLOCKS[page]):
    exec(compile(block, f"{page} block {index}", "exec"), namespace)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
  assert result.failed == 0


def test_api_page_lists_every_public_name():
  # The same rule the build enforces, read from the page's source: one autosummary line
  # each (or a ``py:data`` entry for a type alias).
  source = (ROOT / "docs" / "api.md").read_text()
  listed = set(re.findall(r"^   (\w+)$", source, re.M))
  listed |= set(re.findall(r"^\.\. py:(?:data|class):: (\w+)$", source, re.M))
  assert set(caadam_jax.__all__) <= listed, set(caadam_jax.__all__) - listed
  assert set(caadam_jax.published.__all__) <= listed, set(caadam_jax.published.__all__) - listed


def test_coverage_check_reports_missing_entries_and_docstrings(monkeypatch):
  def documented():
    """Has a docstring."""

  def undocumented():
    pass

  class Row(tuple):  # a NamedTuple's generated docstring does not count
    __doc__ = "Row(a, b)"

  module = types.ModuleType("fake_public")
  module.__dict__.update(
      __all__=["documented", "undocumented", "Row"],
      documented=documented,
      undocumented=undocumented,
      Row=Row,
  )
  monkeypatch.setitem(sys.modules, "fake_public", module)
  problems = coverage_check.coverage_problems("fake_public", {"fake_public.documented"})
  assert problems == [
      "fake_public.undocumented has no API entry: add it to docs/api.md",
      "fake_public.undocumented has no docstring: write one (Google style)",
      "fake_public.Row has no API entry: add it to docs/api.md",
      "fake_public.Row has no docstring: write one (Google style)",
  ]
  for name in coverage_check.MODULES:
    module = importlib.import_module(name)
    everything = {f"{name}.{n}" for n in module.__all__}
    assert coverage_check.coverage_problems(name, everything) == []


def test_link_check_finds_broken_files_and_anchors(tmp_path):
  (tmp_path / "sub").mkdir()
  (tmp_path / "data.json").write_text("{}")
  (tmp_path / "index.html").write_text(
      '<a href="sub/page.html#here">ok</a> <a href="data.json">ok</a> <img src="x.png">'
      '<a href="https://example.org/missing">external, not checked</a> <a href="#top">ok</a>'
      '<h1 id="top"></h1>'
  )
  (tmp_path / "sub" / "page.html").write_text(
      '<p id="here"></p><a href="../index.html#nowhere">bad anchor</a><a href="../gone.html">bad</a>'
  )
  assert check_links.broken_links(tmp_path) == [
      "index.html: x.png (no such file)",
      "sub/page.html: ../index.html#nowhere (no id 'nowhere' in index.html)",
      "sub/page.html: ../gone.html (no such file)",
  ]


def test_docstrings_use_the_examples_section_name():
  # CONTRIBUTING.md: Google style with an ``Examples:`` section (``Example:`` renders the
  # same but is a second spelling).
  package = ROOT / "caadam_jax"
  found = [
      f"{path.relative_to(ROOT)}:{number}"
      for path in sorted(package.rglob("*.py"))
      for number, line in enumerate(path.read_text().splitlines(), 1)
      if line.strip() == "Example:"
  ]
  assert found == []
