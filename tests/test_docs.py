"""Every README code block and every docstring example runs."""

import doctest
import importlib
import pathlib
import pkgutil
import re

import pytest

import caadam_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
MODULES = sorted(m.name for m in pkgutil.iter_modules(caadam_jax.__path__, "caadam_jax."))


def test_readme_has_code_blocks():
  assert len(README_BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_block_runs(index):
  exec(compile(README_BLOCKS[index], f"README.md block {index}", "exec"), {})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
  assert result.failed == 0
