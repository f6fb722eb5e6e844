"""MkDocs hook of the course site (scripts/build_site.py names it in build/mkdocs.yml).

mkdocs-jupyter builds a notebook page's table of contents with Python-Markdown's slugs, which drop
inline code (``4 · A NaN mid-run: `NonFiniteGuard` `` -> ``#4-a-nan-mid-run``), while the page's
headings carry nbconvert's ids, which keep it (``#4-a-nan-mid-run-nonfiniteguard``): such a TOC
entry would link nowhere. This points each of them at the one heading id that starts with it.
"""

from __future__ import annotations

import re

_HEADING_ID = re.compile(r'<h[1-6][^>]*\bid="([^"]+)"')


def _fix(items, ids: set[str]) -> None:
    for item in items:
        if item.id not in ids:
            candidates = [i for i in ids if i.startswith(f"{item.id}-")]
            if len(candidates) == 1:
                item.id = candidates[0]
        _fix(item.children, ids)


def on_page_content(html: str, page, config, files) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        _fix(page.toc, set(_HEADING_ID.findall(html)))
    return html
