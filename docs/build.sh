#!/usr/bin/env bash
# Builds the documentation site into docs/_build/html with warnings as errors, then checks
# that every link inside it resolves. Needs the docs extra: pip install -e ".[docs]".
#   bash docs/build.sh          build and check
#   bash docs/build.sh --open   ... then open docs/_build/html/index.html in a browser
set -euo pipefail
cd "$(dirname "$0")/.."
python -m sphinx -W --keep-going -b html docs docs/_build/html
python docs/check_links.py docs/_build/html
index="$PWD/docs/_build/html/index.html"
echo "site built: $index"
if [ "${1:-}" = "--open" ]; then
  # webbrowser.open returns False (silently) where no browser can start, e.g. over ssh.
  if ! python -c 'import sys, webbrowser; sys.exit(0 if webbrowser.open(sys.argv[1]) else 1)' "file://$index"; then
    echo "no browser could be opened here: open $index yourself, or serve the site with"
    echo "  python -m http.server --directory docs/_build/html 8000   # then http://localhost:8000"
  fi
fi
