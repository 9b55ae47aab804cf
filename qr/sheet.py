"""Printable A4 sheets of case codes: a grid of labels with cut lines, one label per case.

A label holds the court, the case number, the QR code of the case's URL, one line of
instructions in large type and the short code to type by hand. The QR is drawn as vector
squares, one rectangle per run of dark modules: no image per code.

The symbols come from zxing-cpp's encoder (C++), not from qrcode as `mst qr --png`'s do:
both choose the best of the eight masks as the QR standard asks, but qrcode does it in
Python at 11-14 ms a code (two and a half minutes for 10,000 on two cores), zxing-cpp in
about half a millisecond. Same URL, same error correction, a scanner reads either.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qr import tokens

# What an elderly reader needs to know, in one line: the short code is printed below it.
INSTRUCTION = "微信扫一扫，或在本院公众号发送下方短码"
EC_LEVEL = "M"  # as qr.render's: survives a crease or a smudge on a printed document
QUIET_ZONE = 4  # modules of white around the symbol, as the standard (and qr.render) has it
MM = 72 / 25.4
PAGE_W, PAGE_H = 210 * MM, 297 * MM  # A4, in points
MARGIN = 8 * MM  # most printers cannot print closer to the edge
LAYOUTS = {"2x4": (2, 4), "3x4": (3, 4)}  # columns × rows; 3x4 has smaller type
CJK_FONT = "STSong-Light"  # one of reportlab's CID fonts: the reader's viewer supplies it
CODE_FONT = "Courier-Bold"  # monospaced: every character of the short code stands apart
FOOTER_FONT = "Helvetica"
_DARK = re.compile(rb"\x00+")  # a run of dark modules in a row of zxing's 1-pixel image


@dataclass(frozen=True)
class Label:
    court: str
    case_number: str
    short_code: str  # as stored (10 characters); printed as tokens.pretty gives it
    url: str  # what the QR encodes: qr.codes.url_for


def per_page(layout: str = "2x4") -> int:
    cols, rows = LAYOUTS[layout]
    return cols * rows


def page_count(labels: int, layout: str = "2x4") -> int:
    return -(-labels // per_page(layout))


def qr_path(url: str) -> tuple[int, str]:
    """The QR symbol of `url` as PDF path operators: one unit per module, the origin at the
    lower-left corner of the quiet zone, each row's runs of dark modules one rectangle.
    Returns (modules per side, quiet zone included; the operators)."""
    import zxingcpp

    symbol = zxingcpp.create_barcode(url, zxingcpp.BarcodeFormat.QRCode, ec_level=EC_LEVEL)
    image = symbol.to_image(scale=1, add_quiet_zones=False)  # one byte a module, 0 = dark
    side = image.shape[0]
    # zxingcpp's Image has the buffer protocol, which its stub does not declare.
    cells = bytes(memoryview(image))  # type: ignore[arg-type]
    ops = []
    for r in range(side):
        y = side - 1 - r + QUIET_ZONE
        left = r * side - QUIET_ZONE
        for run in _DARK.finditer(cells, r * side, (r + 1) * side):
            ops.append(f"{run.start() - left} {y} {run.end() - run.start()} 1 re")
    return side + 2 * QUIET_ZONE, "\n".join(ops)


def write(labels: Sequence[Label], out: Path, *, layout: str = "2x4") -> int:
    """Lay `labels` out on A4 pages and write the PDF to `out` (a temporary file renamed
    into place, so a failure leaves no half-written sheet). Returns the number of pages."""
    from reportlab.pdfgen.canvas import Canvas

    if not labels:
        raise ValueError("a sheet needs at least one label")
    _setup()
    cols, rows = LAYOUTS[layout]
    pages = page_count(len(labels), layout)
    cell_w = (PAGE_W - 2 * MARGIN) / cols
    cell_h = (PAGE_H - 2 * MARGIN) / rows
    out = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        c = Canvas(tmp, pagesize=(PAGE_W, PAGE_H), pageCompression=1)
        c.setTitle("码上通 案件二维码")
        c.setCreator("码上通 mst qr-sheet")
        for i, label in enumerate(labels):
            slot = i % (cols * rows)
            if slot == 0:
                if i:
                    c.showPage()
                _page_furniture(c, cols, rows, cell_w, cell_h, i // (cols * rows) + 1, pages)
            col, row = slot % cols, slot // cols
            x = MARGIN + col * cell_w
            y = PAGE_H - MARGIN - (row + 1) * cell_h
            _label(c, label, qr_path(label.url), x, y, cell_w, cell_h)
        c.showPage()
        c.save()
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return pages


_fonts_ready = False


def _setup() -> None:
    """Once per process: the CJK font, and how page streams are written."""
    global _fonts_ready
    if _fonts_ready:
        return
    from reportlab import rl_config
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    # Binary (zlib only) page streams: ASCII85 on top is pure Python here, a third of the
    # layout's time, and makes the file a quarter larger.
    rl_config.useA85 = 0
    _fonts_ready = True


def _fit(text: str, font: str, size: float, width: float) -> float:
    """`size`, or smaller so that `text` fits in `width`."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    wide = stringWidth(text, font, size)
    return size if wide <= width else size * width / wide


def _page_furniture(
    c: Any, cols: int, rows: int, cell_w: float, cell_h: float, page: int, pages: int
) -> None:
    """Dashed cut lines from edge to edge along every label's sides, and the page number."""
    c.saveState()
    c.setStrokeGray(0.6)
    c.setLineWidth(0.4)
    c.setDash(3, 3)
    for i in range(cols + 1):
        x = MARGIN + i * cell_w
        c.line(x, 0, x, PAGE_H)
    for j in range(rows + 1):
        y = MARGIN + j * cell_h
        c.line(0, y, PAGE_W, y)
    c.restoreState()
    c.setFillGray(0.4)
    c.setFont(FOOTER_FONT, 7)
    c.drawRightString(PAGE_W - MARGIN, MARGIN / 2 - 2, f"{page} / {pages}")
    c.setFillGray(0)


def _label(
    c: Any, label: Label, symbol: tuple[int, str], x: float, y: float, w: float, h: float
) -> None:
    """One label in the cell whose lower-left corner is (x, y), top to bottom: court, case
    number, QR, the instruction, the short code."""
    pad = 3 * MM
    inner = w - 2 * pad
    centre = x + w / 2
    big = 16 if w > 80 * MM else 11  # the instruction's type, for a 2- or 3-column sheet
    code_size = 24 if w > 80 * MM else 20
    top = y + h - pad

    size = _fit(label.court, CJK_FONT, 11, inner)
    top -= size
    c.setFont(CJK_FONT, size)
    c.drawCentredString(centre, top, label.court)
    size = _fit(label.case_number, CJK_FONT, 11, inner)
    top -= size + 4
    c.setFont(CJK_FONT, size)
    c.drawCentredString(centre, top, label.case_number)

    bottom = y + pad
    code = tokens.pretty(label.short_code)
    size = _fit(code, CODE_FONT, code_size, inner)
    c.setFont(CODE_FONT, size)
    c.drawCentredString(centre, bottom + 2, code)
    bottom += size + 4
    size = _fit(INSTRUCTION, CJK_FONT, big, inner)
    # Text render mode 2 (fill, then stroke the outline): a heavier stroke for older eyes.
    c.saveState()  # the render mode and line width outlive the text object
    t = c.beginText()
    t.setTextRenderMode(2)
    t.setFont(CJK_FONT, size)
    c.setLineWidth(size / 40)
    t.setTextOrigin(centre - _width(INSTRUCTION, size) / 2, bottom + 2)
    t.textOut(INSTRUCTION)
    c.drawText(t)
    c.restoreState()
    bottom += size + 4

    side, ops = symbol
    box = min(inner, top - 2 - bottom)  # the QR's square, quiet zone included
    unit = box / side
    left = centre - box / 2
    c.addLiteral(f"q 0 g {unit:.4f} 0 0 {unit:.4f} {left:.2f} {bottom:.2f} cm\n{ops}\nf Q")


def _width(text: str, size: float) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return stringWidth(text, CJK_FONT, size)
