"""Checks that every link inside the built site resolves (no network: external links are skipped).

Usage: ``python docs/check_links.py docs/_build/html``. Every relative ``href``/``src``
in every HTML page must point to an existing file, and a ``#fragment`` to an ``id`` (or
``name``) in the target page. Exits 1 and lists the broken links otherwise.
"""

from __future__ import annotations

import html.parser
import pathlib
import sys
import urllib.parse


class _Page(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.links: list[str] = []
    self.ids: set[str] = set()

  def handle_starttag(self, tag, attrs):
    for name, value in attrs:
      if value is None:
        continue
      if name in ("id", "name"):
        self.ids.add(value)
      elif name in ("href", "src") and not (tag == "link" and name == "href" and "#" in value):
        self.links.append(value)


def _parse(path: pathlib.Path) -> _Page:
  page = _Page()
  page.feed(path.read_text(encoding="utf-8"))
  return page


def broken_links(site: pathlib.Path) -> list[str]:
  """``'page: link (reason)'`` for every link inside ``site`` that does not resolve."""
  pages = {p: _parse(p) for p in sorted(site.rglob("*.html"))}
  problems = []
  for page, parsed in pages.items():
    for link in parsed.links:
      parts = urllib.parse.urlsplit(link)
      if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:", "data:")):
        continue  # external: not checked here (no network)
      target = page if not parts.path else (page.parent / urllib.parse.unquote(parts.path))
      target = target.resolve()
      if target.is_dir():
        target = target / "index.html"
      where = f"{page.relative_to(site)}: {link}"
      if not target.is_file():
        problems.append(f"{where} (no such file)")
      elif parts.fragment and target.suffix == ".html":
        ids = pages[target].ids if target in pages else _parse(target).ids
        if urllib.parse.unquote(parts.fragment) not in ids:
          problems.append(f"{where} (no id {parts.fragment!r} in {target.name})")
  return problems


def main(argv: list[str]) -> int:
  site = pathlib.Path(argv[1] if len(argv) > 1 else "docs/_build/html").resolve()
  if not (site / "index.html").is_file():
    print(f"check_links: {site} has no index.html: build the site first (bash docs/build.sh)")
    return 1
  problems = broken_links(site)
  for problem in problems:
    print("broken link:", problem)
  count = len(list(site.rglob("*.html")))
  print(f"check_links: {count} pages, {len(problems)} broken internal links")
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
