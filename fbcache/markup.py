"""The two table renderers every verb, the plugin and the reports share: Markdown, and the self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence


def cell(value: object) -> str:
    """Table cells cannot hold '|' or newlines."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
.alert { color: #b00020; font-weight: bold; }
.missing { color: #777; font-style: italic; }
img { max-width: 100%; }
td img { width: 12em; image-rendering: pixelated; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
"""


def esc(text: object) -> str:
    """Every piece of text that reaches a page, run names and prompts included, goes through here."""
    return html.escape(str(text), quote=True)


def html_table(header: Sequence[object], rows: Sequence[Sequence[object]], escaped: bool = False) -> str:
    """A table; cells are escaped unless the caller built them as HTML already (``escaped=True``)."""
    cell = (lambda value: str(value)) if escaped else esc
    head = "".join(f"<th>{cell(value)}</th>" for value in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(value)}</td>" for value in cells) + "</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, parts: Sequence[str]) -> str:
    """One page with inline CSS and no script."""
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")
