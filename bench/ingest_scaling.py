"""Chunking time per MB as a text grows, with and without sentence ends (issue 21: a long line without 。).

    .venv/bin/python bench/ingest_scaling.py [--sizes 1 2 4 8] [--max-tokens 128] [--overlap 32] [--repeats 5]
        [--no-normalize]

Japanese texts of each size in MB (of UTF-8) are made by repeating the sentences of ``testkit/documents.py``:
as written, with a paragraph break every five sentences; without 。！？ and line breaks (one line, commas
kept); and without commas either (one line that can only be cut between characters). Each is chunked by the
product's chunker (``chunk_text``, ``--max-tokens`` / ``--overlap``), tokens counted with the sentencepiece
model of the offline test model (``testkit/offline_model.py``) as the product counts a LUKE model's:
``len(sp.encode(text)) + 2``.

Prints, per text: the chunker's seconds of CPU (the process's: the chunker runs on one core, so that waiting
for a core on a shared machine does not count; the best of ``--repeats`` runs, taken in turns over all the
texts, so that a burst of other work spoils one run of each at most), seconds per MB, the time against
the text with sentence ends of the same size, chunks, the characters given to the token counter
per character of text, and the peak of Python's heap while chunking (tracemalloc, in an untimed run);
unless ``--no-normalize``, also the seconds of normalising the text first (``join_pages``: NFKC, control
characters, line joining). Then the ratio of the slowest to the fastest chunker seconds per MB (the goal is
at most 1.5: chunking costs the same per character whatever the text) and the process's peak resident memory
(building the test model imports torch: the figure before chunking is printed too).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest.chunking import chunk_text  # noqa: E402
from ingest.normalize import PagedText, join_pages  # noqa: E402
from testkit.documents import SENTENCES  # noqa: E402
from testkit.offline_model import build_offline_model  # noqa: E402

MB = 1_000_000


def paragraphs() -> str:
    """The sentences as written, a paragraph of five at a time."""
    sentences = list(SENTENCES) * 5
    return "".join(s + ("\n\n" if i % 5 == 4 else "") for i, s in enumerate(sentences))


VARIANTS: dict[str, Callable[[], str]] = {
    "sentences": paragraphs,
    "no sentence ends": lambda: re.sub(r"[。！？!?\n]", "", paragraphs()),
    "no ends, no commas": lambda: re.sub(r"[。！？!?\n、,]", "", paragraphs()),
}


def sized(unit: str, megabytes: float) -> str:
    """``unit`` repeated to ``megabytes`` MB of UTF-8 (cut at a character)."""
    per_char = len(unit.encode("utf-8")) / len(unit)
    chars = int(megabytes * MB / per_char)
    return (unit * (chars // len(unit) + 1))[:chars]


def sentencepiece_counter(scratch: Path) -> Callable[[str], int]:
    """The offline test model's sentencepiece, counting as the product counts a LUKE model's tokens."""
    import sentencepiece as spm

    model = build_offline_model(scratch / "tiny-glucose")
    pieces = spm.SentencePieceProcessor(model_file=str(model / "sentencepiece.bpe.model"))
    return lambda text: len(pieces.encode(text)) + 2


def resident_peak_mb() -> float:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 2, 4, 8], help="text sizes in MB")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="time each text this many times, keep the best")
    parser.add_argument("--no-normalize", action="store_true", help="skip timing join_pages")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        count = sentencepiece_counter(Path(scratch))
    before = resident_peak_mb()
    print(
        f"chunks of ≤ {args.max_tokens} tokens, overlap {args.overlap}; sentencepiece of the offline test model; "
        f"best of {args.repeats}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start"
    )
    texts = {(name, size): sized(make(), size) for name, make in VARIANTS.items() for size in args.sizes}
    seconds = dict.fromkeys(texts, float("inf"))
    # the repeats go round all the texts, so that a burst of other work spoils one run of each at most
    for _ in range(args.repeats):
        for key, text in texts.items():
            gc.collect()
            started = time.process_time()
            chunk_text(PagedText.plain(text), count, args.max_tokens, args.overlap)
            seconds[key] = min(seconds[key], time.process_time() - started)

    per_mb = {key: seconds[key] / (len(text.encode("utf-8")) / MB) for key, text in texts.items()}
    for (name, size), text in texts.items():
        counted = 0

        def counting(piece: str) -> int:
            nonlocal counted
            counted += len(piece)
            return count(piece)

        paged = PagedText.plain(text)
        tracemalloc.start()
        chunks = chunk_text(paged, counting, args.max_tokens, args.overlap)
        peak = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
        normalising = ""
        if not args.no_normalize:
            started = time.process_time()
            join_pages([(1, text)])
            normalising = f"; normalising first {time.process_time() - started:.2f} s"
        against = per_mb[name, size] / per_mb[next(iter(VARIANTS)), size]
        print(
            f"  {name:18} {len(text.encode('utf-8')) / MB:5.2f} MB ({len(text):,} characters): "
            f"{seconds[name, size]:6.2f} s = {per_mb[name, size]:.3f} s/MB (×{against:.2f} the sentences'), "
            f"{len(chunks):,} chunks, {counted / len(text):.2f} characters counted per character, "
            f"Python heap peak {peak:,.1f} MB{normalising}"
        )
    slowest, fastest = max(per_mb, key=per_mb.__getitem__), min(per_mb, key=per_mb.__getitem__)
    print(
        f"slowest / fastest seconds per MB: {per_mb[slowest] / per_mb[fastest]:.2f} "
        f"({slowest[0]}, {slowest[1]:g} MB / {fastest[0]}, {fastest[1]:g} MB; goal ≤ 1.5)"
    )
    print(f"peak resident memory of the process: {resident_peak_mb():,.0f} MB ({before:,.0f} MB before chunking)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
