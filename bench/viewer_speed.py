"""Seconds to render one PDF page with a passage marked on it (the page's 「原文を開く」), and the PNG's size.

    .venv/bin/python bench/viewer_speed.py [--pages 3] [--lines 45] [--dpi 150] [--runs 21]

A PDF of ``--pages`` pages of ``--lines`` Japanese lines each (testkit's sentences); page 2 is drawn with
a passage of ten of its lines marked, ``--runs`` times; prints the median and the range.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.search.page_view import render_page
from testkit.documents import SENTENCES, make_pdf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--lines", type=int, default=45)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    pages = [
        [f"{page}-{line} {SENTENCES[(page + line) % len(SENTENCES)]}" for line in range(args.lines)]
        for page in range(1, args.pages + 1)
    ]
    data = make_pdf(pages)
    passage = "\n".join(pages[1][10:20])
    seconds, size, boxes = [], 0, 0
    for _ in range(args.runs):
        started = time.perf_counter()
        image = render_page("資料.pdf", data, 2, passage, dpi=args.dpi)
        seconds.append(time.perf_counter() - started)
        size, boxes = len(image.png), image.boxes
    print(
        f"page 2 of {args.pages}, {args.lines} lines, {args.dpi} dpi, a passage of 10 lines: "
        f"median {statistics.median(seconds):.3f} s (min {min(seconds):.3f}, max {max(seconds):.3f}) "
        f"over {args.runs} runs; PNG {size / 1024:.0f} KB, {boxes} marks"
    )


if __name__ == "__main__":
    main()
