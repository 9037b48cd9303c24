"""Fails unless the checkers installed are the versions the `lint` extra pins.

.ci/check and the pre-commit hooks run the tools of the current environment; this keeps
them the ones CI uses (pip install -e ".[lint]" installs them).
"""

import importlib.metadata
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
pins = dict(re.fullmatch(r"([\w-]+)(?:\[[\w,]+\])?==(\S+)", r).groups() for r in lint["lint"])
wrong = {}
for name, pinned in pins.items():
  try:
    installed = importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    installed = "not installed"
  if installed != pinned:
    wrong[name] = f"{installed} (the lint extra pins {pinned})"
if wrong:
  sys.exit(
      "lint tools differ from pyproject.toml's `lint` extra: "
      + "; ".join(f"{k} {v}" for k, v in wrong.items())
      + '. Run: pip install -e ".[lint]"'
  )
print("lint tools as pinned:", ", ".join(f"{k}=={v}" for k, v in pins.items()))
