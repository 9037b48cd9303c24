#!/usr/bin/env bash
# Builds the documentation site into docs/_build/html with warnings as errors, then checks
# that every link inside it resolves. Needs the docs extra: pip install -e ".[docs]".
#   bash docs/build.sh          build and check
#   bash docs/build.sh --open   ... then open docs/_build/html/index.html in a browser
set -euo pipefail
cd "$(dirname "$0")/.."
python -m sphinx -W --keep-going -b html docs docs/_build/html
python docs/check_links.py docs/_build/html
if [ "${1:-}" = "--open" ]; then
  python -m webbrowser "file://$PWD/docs/_build/html/index.html"
fi
