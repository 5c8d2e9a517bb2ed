"""A self-contained HTML report: one file that opens offline in any browser.

Images are embedded as base64 ``data:`` URIs and the stylesheet is inline; the page loads no
scripts, fonts or other external resources. Every string given by the caller is
HTML-escaped, so captions and table cells show literally whatever they contain.

    doc = Report("fer_jax explanation report")
    sec = doc.section("Occlusion test", id="occlusion", intro="What the test measures.")
    sec.table(["method", "difference"], [["rollout", 0.31], ["lrp", None]], highlight={1: "max"})
    sec.figure(png_bytes, caption="Occlusion map", pixelated=True, width=240)
    doc.write("report/index.html")
"""
from __future__ import annotations

import base64
import datetime
import html
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import fer_jax
from fer_jax import atomic_files
from fer_jax.errors import UserError

_ID = re.compile(r"[A-Za-z0-9_-]+")
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"GIF87a": "image/gif", b"GIF89a": "image/gif",
          b"\xff\xd8\xff": "image/jpeg"}
MISSING = "\u2013"  # en dash shown for a ``None`` table cell

STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; line-height: 1.5; color: #1f2328; background: #fff;
       max-width: 1200px; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.8rem; margin: 0 0 1rem; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 0.75rem; padding-bottom: 0.25rem;
     border-bottom: 1px solid #d0d7de; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px;
          padding: 0.75rem 1.25rem; }
nav.toc p { font-weight: 600; margin: 0; }
nav.toc ol { margin: 0.25rem 0 0; }
a { color: #0969da; }
figure.table { overflow-x: auto; }
figure.table figcaption { font-style: italic; margin: 0 0 0.3rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.7rem; text-align: left; }
th { background: #eaeef2; }
tbody tr:nth-child(even) { background: #f6f8fa; }
td.num { text-align: right; }
td.best { font-weight: 700; }
figure { margin: 1rem 0; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #57606a; margin-top: 0.3rem; }
img.pixelated { image-rendering: pixelated; }
.gallery { display: grid; gap: 0.75rem; }
.gallery figure { margin: 0; }
.gallery img { width: 100%; }
@media (max-width: 700px) {
  .gallery { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
}
details { margin: 1rem 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 0.5rem 1rem; }
summary { cursor: pointer; font-weight: 600; }
footer { margin-top: 3rem; padding-top: 0.5rem; border-top: 1px solid #d0d7de;
         font-size: 0.85rem; color: #57606a; }
"""


def _esc(value) -> str:
    """``str(value)``, HTML-escaped (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def _is_number(value) -> bool:
    """Whether a table cell is a real number (booleans are not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _format_cell(value, ndigits: int) -> str:
    """A cell's text: floats with ``ndigits`` decimals, ``None`` as an en dash."""
    if value is None:
        return MISSING
    if _is_number(value) and not isinstance(value, numbers.Integral):
        return f"{float(value):.{ndigits}f}"
    return str(value)


def _best_rows(rows: Sequence[Sequence], column: int, mode: str) -> set[int]:
    """Indices of the rows holding the best (``"max"``/``"min"``) number of ``column``."""
    values = {i: float(row[column]) for i, row in enumerate(rows)
              if _is_number(row[column]) and not math.isnan(row[column])}
    if not values:
        return set()
    best = (max if mode == "max" else min)(values.values())
    return {i for i, v in values.items() if v == best}


def _image_mime(data: bytes) -> str:
    """The MIME type of PNG, GIF or JPEG bytes, read from their magic bytes."""
    for magic, mime in _MAGIC.items():
        if data.startswith(magic):
            return mime
    raise UserError(f"report image: {data[:8]!r}... is neither PNG, GIF nor JPEG; encode "
                    "it with cv2.imencode('.png', image) or Pillow first")


def _figure_html(data: bytes, caption: str, pixelated: bool, width: int | None) -> str:
    """A ``<figure>`` with the image embedded as a ``data:`` URI and an optional caption."""
    data = bytes(data)
    uri = f"data:{_image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"
    cls = ' class="pixelated"' if pixelated else ""
    size = f' style="width: {int(width)}px"' if width else ""
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{_esc(caption)}"{cls}{size}>{cap}</figure>'


class Content:
    """Blocks of a section or of a collapsible subsection, rendered in the order added.

    The adding methods return ``self`` so that calls can be chained.
    """

    def __init__(self):
        self._blocks: list[str | Details] = []

    def text(self, paragraph: str) -> Content:
        """Adds a paragraph of plain (escaped) text."""
        self._blocks.append(f"<p>{_esc(paragraph)}</p>")
        return self

    def table(self, header: Sequence[str], rows: Sequence[Sequence], caption: str = "",
              ndigits: int = 3, highlight: Mapping[int, str] | None = None) -> Content:
        """Adds a table; ``highlight`` maps a column index to ``"max"`` or ``"min"`` and bolds
        that column's best number (every tied cell).

        Floats are shown with ``ndigits`` decimals, ``None`` as an en dash; other cells
        as ``str(cell)``.
        """
        for i, row in enumerate(rows):
            if len(row) != len(header):
                raise UserError(f"report table: row {i} has {len(row)} cells for "
                                f"{len(header)} columns; give one cell per header entry")
        best = {}
        for column, mode in (highlight or {}).items():
            if mode not in ("max", "min") or not 0 <= column < len(header):
                raise UserError(f"report table: highlight {{{column!r}: {mode!r}}}; use a "
                                f"column index below {len(header)} and 'max' or 'min'")
            best[column] = _best_rows(rows, column, mode)
        head = "".join(f"<th>{_esc(h)}</th>" for h in header)
        body = "\n".join(
            "<tr>" + "".join(self._cell(cell, ndigits, i in best.get(j, ()))
                             for j, cell in enumerate(row)) + "</tr>"
            for i, row in enumerate(rows))
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        self._blocks.append(f'<figure class="table">{cap}<table><thead><tr>{head}</tr></thead>\n'
                            f"<tbody>\n{body}\n</tbody></table></figure>")
        return self

    @staticmethod
    def _cell(value, ndigits: int, best: bool) -> str:
        """One ``<td>``: numbers right-aligned, the best one bold."""
        classes = " ".join(c for c, on in (("num", _is_number(value)), ("best", best)) if on)
        attr = f' class="{classes}"' if classes else ""
        return f"<td{attr}>{_esc(_format_cell(value, ndigits))}</td>"

    def figure(self, data: bytes, caption: str = "", pixelated: bool = False,
               width: int | None = None) -> Content:
        """Adds one PNG or GIF image (bytes, or a uint8 buffer such as ``cv2.imencode``'s),
        shown ``width`` CSS pixels wide when given.

        ``pixelated`` scales it up without smoothing (for tiny face crops).
        """
        self._blocks.append(_figure_html(data, caption, pixelated, width))
        return self

    def gallery(self, items: Sequence[tuple[bytes, str]], columns: int = 4,
                pixelated: bool = False) -> Content:
        """Adds a grid of ``(image bytes, caption)`` figures, ``columns`` wide (2 on narrow
        screens); each image fills its cell."""
        if columns < 1:
            raise UserError(f"report gallery: columns={columns}; use at least 1")
        figures = "\n".join(_figure_html(data, caption, pixelated, None)
                            for data, caption in items)
        self._blocks.append(f'<div class="gallery" style="grid-template-columns: '
                            f'repeat({int(columns)}, minmax(0, 1fr))">\n{figures}\n</div>')
        return self

    def details(self, summary: str, open: bool = False) -> Details:
        """Adds a collapsible subsection and returns it (to add blocks to)."""
        sub = Details(summary, open)
        self._blocks.append(sub)
        return sub

    def _render_blocks(self) -> str:
        """The blocks' HTML, one per line."""
        return "\n".join(b if isinstance(b, str) else b.render() for b in self._blocks)


class Details(Content):
    """A collapsible ``<details>`` subsection, closed unless ``open``."""

    def __init__(self, summary: str, open: bool = False):
        super().__init__()
        self.summary = summary
        self.open = open

    def render(self) -> str:
        """The subsection's HTML."""
        attr = " open" if self.open else ""
        return (f"<details{attr}><summary>{_esc(self.summary)}</summary>\n"
                f"{self._render_blocks()}\n</details>")


class Section(Content):
    """A top-level ``<section>`` with a heading, listed in the table of contents."""

    def __init__(self, title: str, id: str, intro: str = ""):
        super().__init__()
        self.title = title
        self.id = id
        if intro:
            self.text(intro)

    def render(self) -> str:
        """The section's HTML."""
        return (f'<section id="{self.id}">\n<h2>{_esc(self.title)}</h2>\n'
                f"{self._render_blocks()}\n</section>")


class Report:
    """An HTML document: title, table of contents, sections and a generation footer."""

    def __init__(self, title: str = "fer_jax report"):
        self.title = title
        self.sections: list[Section] = []

    def section(self, title: str, id: str, intro: str = "") -> Section:
        """Adds a section with the HTML id ``id`` (letters, digits, ``-``, ``_``; unique)
        and an optional intro paragraph, and returns it."""
        if not _ID.fullmatch(id):
            raise UserError(f"report section id {id!r}: use only letters, digits, '-' and '_'")
        if any(s.id == id for s in self.sections):
            raise UserError(f"report section id {id!r} is used twice; give each section "
                            "its own id")
        sec = Section(title, id, intro)
        self.sections.append(sec)
        return sec

    def _toc(self) -> str:
        """The table of contents: a numbered list of links to the sections."""
        if not self.sections:
            return ""
        items = "\n".join(f'<li><a href="#{s.id}">{_esc(s.title)}</a></li>'
                          for s in self.sections)
        return f'<nav class="toc"><p>Contents</p>\n<ol>\n{items}\n</ol></nav>'

    @staticmethod
    def _footer() -> str:
        """The generation line: local date and time, and the ``fer_jax`` version if known."""
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        version = getattr(fer_jax, "__version__", None)
        by = f"fer_jax {_esc(version)}" if version else "fer_jax"
        return f"<footer>Generated {now} by {by}.</footer>"

    def html(self) -> str:
        """The whole document as a string."""
        sections = "\n".join(s.render() for s in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f"<title>{_esc(self.title)}</title>\n<style>{STYLE}</style>\n</head>\n"
                f"<body>\n<h1>{_esc(self.title)}</h1>\n{self._toc()}\n{sections}\n"
                f"{self._footer()}\n</body>\n</html>\n")

    def write(self, path: str | Path) -> Path:
        """Writes the document as UTF-8 to ``path`` (creating its folders); returns it."""
        return atomic_files.write_atomic(path, self.html(), "the HTML report")
