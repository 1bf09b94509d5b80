"""Test files made on the spot: HTML pages in any Japanese encoding, and CSV and TSV files as Excel exports them."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Literal

Declaration = Literal["meta", "http-equiv", "xml", "none"]


def make_html(
    body: str,
    *,
    title: str | None = None,
    encoding: str = "utf-8",
    declare: Declaration = "meta",
    label: str | None = None,
    bom: bool = False,
    head: str = "",
) -> bytes:
    """A whole page around ``body`` (HTML markup), encoded in ``encoding``.

    ``declare``: how the page states its charset: ``<meta charset>``, ``<meta http-equiv="Content-Type">``,
    an XHTML ``<?xml encoding?>``, or not at all. ``label``: the name declared (``encoding`` by default;
    give "Shift_JIS" for a page encoded in cp932, or a wrong one). ``bom``: a UTF-8 or UTF-16 BOM first.
    ``head``: more markup for ``<head>`` (styles, scripts).
    """
    label = label or encoding
    prolog = f'<?xml version="1.0" encoding="{label}"?>\n' if declare == "xml" else ""
    meta = {
        "meta": f'<meta charset="{label}">',
        "http-equiv": f'<meta http-equiv="Content-Type" content="text/html; charset={label}">',
        "xml": "",
        "none": "",
    }[declare]
    title_tag = f"<title>{title}</title>" if title is not None else ""
    page = f'{prolog}<!DOCTYPE html>\n<html lang="ja">\n<head>{meta}{title_tag}{head}</head>\n<body>\n{body}\n</body>\n</html>\n'
    data = page.encode(encoding)
    if bom and encoding.replace("-", "").replace("_", "").lower() == "utf8":
        return b"\xef\xbb\xbf" + data
    return data  # the utf-16 codec writes its own BOM


def make_csv(
    rows: Sequence[Sequence[str]],
    *,
    encoding: str = "cp932",
    delimiter: str = ",",
    newline: str = "\r\n",
) -> bytes:
    """A CSV (or, with ``delimiter="\\t"``, TSV) file as Excel writes one: quoted where needed, CRLF, CP932."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buffer.getvalue().encode(encoding)
