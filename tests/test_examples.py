"""The examples run end to end with tiny settings."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


def test_quickstart_tiny(tmp_path, capsys):
  pytest.importorskip("sklearn", reason="the quickstart needs the 'examples' extra")
  import quickstart

  out = tmp_path / "losses.png"
  results = quickstart.main(["--epochs", "2", "--seeds", "1", "--out", str(out)])
  assert {"adam", "caadam additive", "caadam multiplicative", "caadam depth"} <= set(results)
  for runs in results.values():
    losses, accuracy, _ = runs[0]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert accuracy > 0.5  # 10 classes: chance is 0.1
  assert out.stat().st_size > 10_000
  assert "test accuracy" in capsys.readouterr().out
