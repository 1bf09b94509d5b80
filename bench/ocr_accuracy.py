"""OCR accuracy and speed on Japanese pages drawn at 300 dpi, 横書き and 縦書き.

    .venv/bin/python bench/ocr_accuracy.py [--pages N] [--chars C] [--workers W] [--only horizontal|vertical]

Draws N A4 pages at 300 dpi (2480×3508 pixels) of JSQuAD contexts (``bench/data.py``; the test
sentences of ``testkit/documents.py`` when JGLUE is not there), each about C characters in IPA Gothic
at 10.5 pt (44 pixels), once 横書き and once 縦書き (columns right to left), and reads each with
``ingest.ocr.recognise`` as the product does. Prints, for each orientation, the character accuracy
(1 − edit distance / reference length, NFKC, whitespace removed; ``testkit.scans.char_accuracy``) and
the median seconds per page; then the same for one Tesseract pass with every language (the strategy
``recognise`` does not take); then seconds per page when W pages are read side by side. ``--only`` measures one orientation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.data import jglue_dir  # noqa: E402
from ingest.ocr import OcrOptions, _run, recognise, tesseract  # noqa: E402
from testkit.documents import SENTENCES  # noqa: E402
from testkit.scans import char_accuracy, scan_image  # noqa: E402

A4_300DPI = (2480, 3508)
FONT_PX = 44  # 10.5 pt at 300 dpi


def paragraphs() -> list[str]:
    """JSQuAD contexts without their title, or the test sentences when JGLUE is not there."""
    source = jglue_dir() / "jsquad-v1.3-valid.json"
    if not source.exists():
        return list(SENTENCES) * 50
    articles = json.loads(source.read_text(encoding="utf-8"))["data"]
    return [
        paragraph["context"].split("[SEP]", 1)[-1].strip()
        for article in articles
        for paragraph in article["paragraphs"]
    ]


def pages(count: int, chars: int) -> list[list[str]]:
    """``count`` pages of whole paragraphs, each page at least ``chars`` characters (one paragraph a line)."""
    source = iter(paragraphs())
    made: list[list[str]] = []
    for _ in range(count):
        lines: list[str] = []
        while sum(map(len, lines)) < chars:
            lines.append(next(source))
        made.append(lines)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--chars", type=int, default=1200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("horizontal", "vertical"), help="measure one orientation only")
    args = parser.parse_args()
    options = OcrOptions()
    program = tesseract(options.langs)
    texts = pages(args.pages, args.chars)
    print(
        f"{args.pages} pages of {statistics.mean(sum(map(len, lines)) for lines in texts):.0f} characters, A4 300 dpi"
    )
    orientations = {"horizontal": (False,), "vertical": (True,), None: (False, True)}[args.only]
    for vertical in orientations:
        label = "縦書き" if vertical else "横書き"
        images = [scan_image(lines, vertical=vertical, size=A4_300DPI, font_px=FONT_PX) for lines in texts]
        for image in images:
            image.info["dpi"] = (300, 300)
        seconds, accuracy = [], []
        for lines, image in zip(texts, images, strict=True):
            start = time.perf_counter()
            text = recognise("bench", image, options)
            seconds.append(time.perf_counter() - start)
            accuracy.append(char_accuracy("".join(lines), text))
        print(
            f"{label}  recognise: accuracy {statistics.mean(accuracy):.3f} (min {min(accuracy):.3f}),"
            f" {statistics.median(seconds):.2f} s/page"
        )
        seconds, accuracy = [], []
        with tempfile.TemporaryDirectory() as folder:
            for number, (lines, image) in enumerate(zip(texts, images, strict=True)):
                png = Path(folder) / f"page{number}.png"
                image.save(png, dpi=(300, 300), compress_level=1)
                start = time.perf_counter()
                reading = _run(program, "bench", png, options.langs)
                seconds.append(time.perf_counter() - start)
                accuracy.append(char_accuracy("".join(lines), reading.text))
        print(
            f"{label}  one pass {options.langs}: accuracy {statistics.mean(accuracy):.3f},"
            f" {statistics.median(seconds):.2f} s/page"
        )
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(lambda image: recognise("bench", image, options), images))
        print(
            f"{label}  recognise, {args.workers} pages side by side: "
            f"{(time.perf_counter() - start) / len(images):.2f} s/page"
        )


if __name__ == "__main__":
    main()
