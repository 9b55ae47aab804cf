"""QR images of a case code's URL: PNG for print, SVG for layouts."""

from __future__ import annotations

import io
from typing import Any

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M


def _qr(url: str) -> qrcode.QRCode[Any]:  # the image factory is chosen per make_image call
    # Level M survives a crease or a smudge on a printed document.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(url)
    code.make(fit=True)
    return code


def png(url: str) -> bytes:
    buf = io.BytesIO()
    _qr(url).make_image().save(buf, format="PNG")
    return buf.getvalue()


def svg(url: str) -> bytes:
    buf = io.BytesIO()
    _qr(url).make_image(image_factory=qrcode.image.svg.SvgPathImage).save(buf)
    return buf.getvalue()
