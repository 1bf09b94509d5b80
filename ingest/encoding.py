"""Japanese text encodings: a file's bytes decoded as UTF-8, Shift_JIS/CP932, EUC-JP or UTF-16, detected."""

from __future__ import annotations

from ingest.errors import EncodingError
from ingest.limits import Limits, check_chars

# Encodings tried on a file without a byte-order mark, after UTF-8.
_CANDIDATES = ("cp932", "euc_jp", "utf-16-le", "utf-16-be")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Below this share of plausible characters a decoding is taken for a wrong guess.
_MIN_PLAUSIBLE = 0.9


def plausibility(text: str) -> float:
    """Share of characters that ordinary Japanese or ASCII text is made of; hiragana counts double.

    Wrong guesses decode to half-width katakana (EUC-JP read as CP932), rare CJK blocks or control
    characters (a multibyte encoding read as UTF-16), which all score zero.
    """
    if not text:
        return 0.0
    score = 0.0
    for char in text:
        code = ord(char)
        if 0x3041 <= code <= 0x309F:
            score += 2.0
        elif (
            (0x20 <= code <= 0x7E)
            or char in "\n\r\t"
            or 0x30A0 <= code <= 0x30FF  # katakana
            or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
            or 0x3000 <= code <= 0x303F  # CJK punctuation
            or 0xFF01 <= code <= 0xFF5E  # full-width ASCII
            or 0x2010 <= code <= 0x2312  # general punctuation, arrows, maths
            or 0x2460 <= code <= 0x24FF  # circled numbers
            or 0x2500 <= code <= 0x257F  # box drawing
            or 0x25A0 <= code <= 0x26FF  # shapes and symbols
            or code in (0xA7, 0xA8, 0xB0, 0xB1, 0xB4, 0xB6, 0xD7, 0xF7)
        ):
            score += 1.0
    return min(score / len(text), 1.0)


_plausibility = plausibility  # the name it had before OCR (ingest/ocr.py) came to use it


def decode_text(data: bytes, name: str = "") -> tuple[str, str]:
    """Decode a Japanese text file, detecting its encoding: UTF-8, Shift_JIS/CP932, EUC-JP or UTF-16.

    A byte-order mark decides; otherwise UTF-8 is taken when the bytes are valid UTF-8 and not
    UTF-16 in disguise, and else the candidate whose decoding looks most like Japanese text.
    Returns ``(text, encoding)``.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as error:
                raise EncodingError(
                    f"{name}: 先頭に {encoding} の印 (BOM) がありますが、その文字コードとして読めません"
                    f"（{error.start} バイト目）。UTF-8 で保存し直してください。"
                ) from error
    decoded: list[tuple[float, str, str]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        # ASCII in UTF-16 is valid UTF-8 with a NUL every other byte; a few stray NULs are just dirt.
        looks_like_utf16 = text.count("\x00") * 3 >= len(text)
        score = plausibility(text.replace("\x00", ""))
        if score >= _MIN_PLAUSIBLE and not looks_like_utf16:
            return text, "utf-8"
        decoded.append((score / 2 if looks_like_utf16 else score, text, "utf-8"))
    for encoding in _CANDIDATES:
        if encoding.startswith("utf-16") and len(data) % 2:
            continue
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        decoded.append((plausibility(text), text, encoding))
    if decoded:
        score, text, encoding = max(decoded, key=lambda item: item[0])
        if score >= _MIN_PLAUSIBLE:
            return text, encoding
    raise EncodingError(
        f"{name}: 文字コードを判別できません（UTF-8、Shift_JIS、EUC-JP、UTF-16 のいずれでもありません）。"
        "テキストファイルでなければ拡張子が合っているか確かめ、テキストなら UTF-8 で保存し直してください。"
    )


def check_encoded_size(name: str, data: bytes, limits: Limits) -> None:
    """Refuse bytes too many to be within ``limits.max_chars`` in any encoding ``decode_text`` reads.

    Each takes at most 4 bytes a character after a BOM of at most 3, so a file this long is over the
    limit however it decodes: refused before the slow plausibility scan.
    """
    check_chars(name, (len(data) - 3) // 4, limits, where="少なくとも ")


def decode_within(name: str, data: bytes, limits: Limits) -> tuple[str, str]:
    """``decode_text`` for a file that must keep to ``limits.max_chars``, checked before and after decoding."""
    check_encoded_size(name, data, limits)
    text, encoding = decode_text(data, name)
    check_chars(name, len(text), limits)
    return text, encoding
