"""Resource limits for hostile and huge files: pages, characters, pixels and ZIP contents, checked before the work.

Each limit is a field of ``Limits`` with the name of the setting that changes it (field ``x`` is
``RAG_X``), and a file over it is refused with a ``ResourceLimitError`` naming the limit, the file's
figure and that setting; nothing is truncated.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass

from ingest.errors import IngestError, ResourceLimitError

# Below this size an entry's compression ratio is not looked at: small XML parts compress very well.
_RATIO_FLOOR = 5 * 1024 * 1024
# Every central-directory entry begins with this signature.
_CENTRAL_ENTRY = b"PK\x01\x02"
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How much one file may hold, sized for a page that a whole company uploads to."""

    # pages of a PDF, counted from its page tree before any text is extracted
    max_pages: int = 2_000
    # characters of a document after decoding or extraction, counted page by page
    max_chars: int = 5_000_000
    # pixels of an image or rendered page: Pillow's own default (``PIL.Image.MAX_IMAGE_PIXELS``)
    max_pixels: int = 89_478_485
    # uncompressed megabytes and entries of a ZIP-based file (DOCX, XLSX, PPTX)
    max_zip_mb: int = 200
    max_zip_entries: int = 10_000
    # the most an entry above 5 MB may expand, uncompressed size over compressed size
    max_zip_ratio: int = 100
    # cells covered by merges in an Excel workbook, counted before it is loaded (openpyxl makes an
    # object for each: a few bytes can merge a whole sheet, 17 billion cells)
    max_merged_cells: int = 1_000_000
    # the seconds one file may take to read, and the memory of the process that reads it: enforced by
    # ingest.isolation.IsolatedReader, which reads each file in a child process, not by the loaders
    seconds_per_file: int = 300
    reader_memory_mb: int = 4096

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"Limits.{name} must be 1 or more, got {value}")


DEFAULT_LIMITS = Limits()
"""The limits a loader keeps to when it is given none."""


def _refuse(
    name: str, what: str, figure: str, limit: str, setting: str, advice: str = "分割するか"
) -> ResourceLimitError:
    return ResourceLimitError(
        f"{name}: {what}（{figure}、上限 {limit}）。{advice}、上限を {setting} で変えてください。"
    )


def check_pages(name: str, pages: int, limits: Limits) -> None:
    """Refuse a document of more than ``limits.max_pages`` pages."""
    if pages > limits.max_pages:
        raise _refuse(
            name, "ページ数が多すぎます", f"{pages:,} ページ", f"{limits.max_pages:,} ページ", "RAG_MAX_PAGES"
        )


def check_chars(name: str, chars: int, limits: Limits, where: str = "") -> None:
    """Refuse a document of more than ``limits.max_chars`` characters; ``where`` says how far it was read."""
    if chars > limits.max_chars:
        raise _refuse(
            name, "文字数が多すぎます", f"{where}{chars:,} 文字", f"{limits.max_chars:,} 文字", "RAG_MAX_CHARS"
        )


def check_pixels(name: str, width: int, height: int, limits: Limits) -> None:
    """Refuse an image or rendered page of more than ``limits.max_pixels`` pixels, before it is decoded or drawn."""
    if width * height > limits.max_pixels:
        raise _refuse(
            name,
            "画像が大きすぎます",
            f"{width:,}×{height:,} = {width * height:,} ピクセル",
            f"{limits.max_pixels:,} ピクセル",
            "RAG_MAX_PIXELS",
            advice="解像度を下げるか",
        )


def guard_pillow(limits: Limits) -> None:
    """Set Pillow's decompression-bomb guard to ``limits.max_pixels``, for whatever decodes images with it.

    Pillow warns above that many pixels and raises ``DecompressionBombError`` above twice as many,
    when an image is opened and before it is decoded; callers refuse at the limit itself by calling
    ``check_pixels`` with the opened image's size. This sets a Pillow global, for the whole process.
    """
    from PIL import Image  # installed with matplotlib and streamlit; only image readers need it

    Image.MAX_IMAGE_PIXELS = limits.max_pixels


def check_zip(name: str, data: bytes, limits: Limits) -> list[zipfile.ZipInfo]:
    """Check a ZIP-based file (DOCX, XLSX, PPTX) from its central directory alone, before anything is decompressed.

    Refuses too many entries, too many uncompressed bytes in all, and an entry that expands too much
    (a zip bomb); returns the entries. The sizes come from the central directory: ``zipfile`` stops
    reading an entry at its recorded size, so a reader that goes through ``zipfile`` cannot be made
    to produce more than was checked here.
    """
    # zipfile builds an object per entry (a million for 50 MB of empty entries, seconds of work), so the
    # entries are bounded first by the signatures they begin with: never fewer than the entries.
    entries = data.count(_CENTRAL_ENTRY)
    if entries > limits.max_zip_entries:
        raise _refuse(
            name,
            "ZIP の中のファイルが多すぎます",
            f"{entries:,} 個",
            f"{limits.max_zip_entries:,} 個",
            "RAG_MAX_ZIP_ENTRIES",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    # zipfile reports a damaged or exotic directory in several ways: an entry "needing" a newer ZIP
    # version than it reads is a NotImplementedError, a cut-off record a struct.error
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        ValueError,
        EOFError,
        OSError,
        struct.error,
    ) as error:
        raise IngestError(
            f"{name}: ZIP 形式のファイルとして読めません（{type(error).__name__}: {error}）。"
            "ファイルが壊れているか、拡張子と中身が合っていません。元のアプリで保存し直してください。"
        ) from error
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > limits.max_zip_ratio:
            raise _refuse(
                name,
                f"中のファイル「{info.filename}」の圧縮率が高すぎます",
                f"{info.file_size / _MB:,.1f} MB に展開、{ratio:,.0f} 倍",
                f"{limits.max_zip_ratio:,} 倍",
                "RAG_MAX_ZIP_RATIO",
                advice="zip 爆弾の疑いがあります。元のアプリで保存し直すか",
            )
    total = sum(info.file_size for info in infos)
    if total > limits.max_zip_mb * _MB:
        raise _refuse(
            name,
            "展開後のサイズが大きすぎます",
            f"{total / _MB:,.1f} MB",
            f"{limits.max_zip_mb:,} MB",
            "RAG_MAX_ZIP_MB",
        )
    return infos
