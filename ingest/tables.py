"""CSV and TSV files (.csv, .tsv): each row a section of ``列名: 値`` lines, numbered as a spreadsheet numbers it.

The text is decoded by ``ingest.encoding.decode_text`` (Excel in Japan writes CP932). A ``.tsv`` is
split at tabs; a ``.csv`` at commas, unless its first lines are plainly split at tabs or semicolons.
The first non-blank record is the header; every later record with a value becomes a ``Section``
whose ``Place.row`` is the row Excel shows it on (the header's row is 1 in an ordinary file): records
are counted, not lines, so a quoted value over several lines does not shift the rows after it, and
blank records are skipped but counted.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ingest.document import Place, Reading, Section
from ingest.encoding import decode_within
from ingest.errors import FormatError
from ingest.limits import Limits

TABLE_SUFFIXES = (".csv", ".tsv")

# The first lines (of the first characters) of a .csv looked at to tell its delimiter.
_SAMPLE_LINES = 20
_SAMPLE_CHARS = 64 * 1024
# Of which the sniffer sees this many: its quote-finding patterns take time in the square of their
# input (64 KiB of ,",",… took over a minute; 4 KiB takes at most 0.3 s).
_SNIFF_CHARS = 4 * 1024
_OTHER_DELIMITERS = "\t;"
_DELIMITER_NAMES = {"\t": "タブ", ";": "セミコロン"}


def _consistent_width(sample: str, delimiter: str) -> int:
    """The number of fields every complete record of the sample has when split at ``delimiter``; 0 if they differ."""
    records = [record for record in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if record]
    if len(records) > 1:
        records = records[:-1]  # the sample may end inside its last record
    widths = {len(record) for record in records}
    return widths.pop() if len(widths) == 1 else 0


def _delimiter(name: str, text: str) -> str:
    """Tab for a .tsv; for a .csv, comma unless ``csv.Sniffer`` finds tab or semicolon and the sample bears it out.

    The sniffer alone guesses wildly on Japanese text; its guess is taken only when every record of
    the sample splits into the same number (two or more) of fields at it, and not at commas.
    """
    if Path(name).suffix.lower() == ".tsv":
        return "\t"
    sample = "\n".join(text[:_SAMPLE_CHARS].splitlines()[:_SAMPLE_LINES])
    try:
        guess = csv.Sniffer().sniff(sample[:_SNIFF_CHARS], delimiters="," + _OTHER_DELIMITERS).delimiter
    except csv.Error:
        return ","
    if guess in _OTHER_DELIMITERS and _consistent_width(sample, guess) > 1 and _consistent_width(sample, ",") < 2:
        return guess
    return ","


def _records(name: str, text: str, delimiter: str) -> tuple[list[list[str]], tuple[str, ...]]:
    """The file's records, and a note when its quoting is broken.

    Read strictly first; a stray or unclosed quote (``"12"x``, or a value never closed, which takes in
    the rest of the file) is then read as the csv module reads it leniently, and the person is told
    on which row it was.
    """
    records: list[list[str]] = []
    try:
        for record in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
            records.append(record)
    except csv.Error as error:
        row = len(records) + 1
        if "end of data" in str(error):
            problem = '値の引用符（"）が閉じられていないため、ファイルの終わりまでがその値に入っています'
        else:
            problem = '引用符（"）の使い方が崩れているため、値が正しく区切られていないおそれがあります'
        note = f"{name}: {row:,} 行目で{problem}。表計算ソフトで開いて確かめてください。"
    else:
        return records, ()
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)), (note,)
    except csv.Error as error:
        raise FormatError(
            f"{name}: CSV として読み取れません（{error}）。表計算ソフトで開いて CSV 形式で保存し直してください。"
        ) from error


def _column_names(header: list[str]) -> list[str]:
    return [cell.replace("\n", " ") or f"列{number}" for number, cell in enumerate(header, 1)]


def read_csv(name: str, data: bytes, limits: Limits) -> Reading:
    """Read a CSV or TSV file into one section per row: ``列名: 値`` lines for the row's non-empty values.

    Blank header cells, and cells past the header's end, are named ``列{n}`` (n counts columns from 1).
    A file of a header alone is that row, its cells joined by " | ". Returns no sections for a file of
    blank records (the caller reports it empty).
    """
    text, encoding = decode_within(name, data, limits)
    # No field can be longer than the text, so none is refused by the csv module's own size limit
    # (a process-wide setting, only ever raised here).
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_chars + 1))
    delimiter = _delimiter(name, text)
    guessed = Path(name).suffix.lower() != ".tsv" and delimiter != ","
    notes: tuple[str, ...] = (
        (f"{name}: 区切り文字を{_DELIMITER_NAMES[delimiter]}と判定して読みました。",) if guessed else ()
    )
    header: list[str] | None = None
    header_cells: list[str] = []
    header_row = 0
    sections: list[Section] = []
    records, quoting = _records(name, text, delimiter)
    notes += quoting
    for row, record in enumerate(records, 1):
        # a value over several lines keeps its line breaks, as \n whatever the file used
        values = [value.strip().replace("\r\n", "\n").replace("\r", "\n") for value in record]
        if not any(values):
            continue
        if header is None:
            header, header_cells, header_row = _column_names(values), values, row
            continue
        names = header + [f"列{number}" for number in range(len(header) + 1, len(values) + 1)]
        lines = [f"{column}: {value}" for column, value in zip(names, values, strict=False) if value]
        sections.append(Section("\n".join(lines), Place(row=row)))
    if header is not None and not sections:
        sections.append(Section(" | ".join(cell for cell in header_cells if cell), Place(row=header_row)))
    return Reading(sections=tuple(sections), encoding=encoding, notes=notes)
