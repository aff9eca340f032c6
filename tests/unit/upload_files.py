"""Files for the attachment tests: real images made by Pillow, hostile ones made by hand."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

from PIL import Image


def image_bytes(fmt: str = "PNG", size=(800, 600), mode: str = "RGB") -> bytes:
    out = BytesIO()
    Image.new(mode, size, (200, 30, 30) if mode == "RGB" else None).save(out, fmt)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says ``width`` x ``height``: a decompression bomb's shape
    (its IDAT is a tiny image's; Pillow refuses it from the header, before decoding)."""
    data = bytearray(image_bytes("PNG", (4, 4)))
    # The IHDR chunk starts at byte 8: length (4), type (4), then width and height.
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    crc = zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n"
# The PNG signature, then HTML: the magic says PNG, Pillow says it is not one.
PNG_MAGIC_HTML = b"\x89PNG\r\n\x1a\n" + HTML
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>\n'
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
