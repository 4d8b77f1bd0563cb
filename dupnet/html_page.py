"""The mechanics of the toolkit's HTML pages: escaping, tables, and a self-contained page.

Used by the flow's ``RUN/index.html`` (:mod:`dupnet.flow`) and the FPGA budget report
(:mod:`dupnet.hw.budget.render`); each keeps its own content and style.  (Named
``html_page`` rather than ``html`` so it never shadows the standard library's module.)
"""
from __future__ import annotations

import html
from typing import Any, Callable, Iterable

__all__ = ["escape", "table", "page"]


def escape(x: Any) -> str:
    """``str(x)`` with ``&``, ``<``, ``>`` and quotes escaped for HTML text and attributes."""
    return html.escape(str(x))


def table(head: Iterable[Any], rows: Iterable[Iterable[Any]],
          cell: Callable[[Any], str] = escape) -> str:
    """A ``<table>`` with a header row and one row per item of ``rows``.

    Parameters
    ----------
    head : the column titles
    rows : the cells, row by row
    cell : turns a title or cell into HTML (default: :func:`escape`; a page whose cells hold
        markup passes its own renderer)

    Returns
    -------
    str
        The table, one line per row.
    """
    lines = ["<table><thead><tr>" + "".join(f"<th>{cell(c)}</th>" for c in head)
             + "</tr></thead><tbody>"]
    lines += ["<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows]
    lines.append("</tbody></table>")
    return "\n".join(lines)


def page(title: str, body: Iterable[str], style: str = "") -> str:
    """A complete UTF-8 HTML document.

    Parameters
    ----------
    title : str
        Plain text (escaped here).
    body : the HTML fragments of the body, in order (one line each)
    style : CSS for a ``<style>`` element in the head

    Returns
    -------
    str
        The document, ending with a newline.
    """
    head = f"<meta charset='utf-8'><title>{escape(title)}</title>"
    if style:
        head += f"<style>{style}</style>"
    return ("<!DOCTYPE html>\n<html><head>" + head + "</head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
