"""Ingest speed of the product on a GLuCoSE-sized model, against the LangChain tutorial pipeline on the same model.

    .venv/bin/python bench/ingest_speed.py [--articles N] [--batch-size B] [--precision auto float32] [--pdf-overlap]

Builds, offline, a random-weight model with GLuCoSE-base-ja's architecture and size (LUKE, 768 hidden,
12 layers, 12 heads, 3072 intermediate, 32,772-token vocabulary), so the cost per token is the real
one; writes the JSQuAD articles of ``../shared/data`` as text files (one per article, its paragraphs
joined, the title as the name). Then, in one run:

1. the machine's matrix-multiply peak (float32 and bfloat16), with torch, in GFLOP/s;
2. the product's ingest (load, normalise, chunk, embed, store) into a fresh Chroma store, for each
   ``--precision``, then a second ingest of the unchanged files;
3. the ingest a user would write from a LangChain tutorial on the same files and model: each file
   read into a ``Document``, ``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)``,
   ``HuggingFaceEmbeddings(model_name=<the model's folder>)``, ``Chroma.from_documents`` into a
   temporary persistent directory;
4. the ratios, and the product's rate as a share of the peak.

Tokens are what the model read, counted with its own tokenizer: the tutorial's 1,000-character chunks
are cut by the model at 512 tokens, and only those count. ``--pdf-overlap`` also writes the articles
as Japanese PDFs and times the product's ingest of them with and without reading and chunking the
next files in a background thread (``Indexer(prefetch=...)``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.data import jglue_dir  # noqa: E402
from ingest.loaders import load_file  # noqa: E402
from pipelines.choices import PRECISIONS, Precision  # noqa: E402
from pipelines.embedder import Embedder  # noqa: E402
from pipelines.indexing import Indexer, collect_paths  # noqa: E402
from pipelines.store import ChromaStore  # noqa: E402
from testkit.offline_model import build_offline_model  # noqa: E402

JSQUAD = jglue_dir() / "jsquad-v1.3-valid.json"
GLUCOSE_SHAPE = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072}
TUTORIAL_CHUNK_SIZE, TUTORIAL_CHUNK_OVERLAP = 1000, 200


def read_articles(source: Path, limit: int | None) -> list[tuple[str, str]]:
    """(title, text) per JSQuAD article, its paragraphs joined by blank lines."""
    articles = json.loads(source.read_text(encoding="utf-8"))["data"][:limit]
    return [
        (
            article["title"].replace("/", "／"),
            "\n\n".join(p["context"].split("[SEP]", 1)[-1].strip() for p in article["paragraphs"]),
        )
        for article in articles
    ]


def write_articles(source: Path, folder: Path, limit: int | None) -> int:
    """One text file per JSQuAD article; returns the number of characters written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for title, text in read_articles(source, limit):
        (folder / f"{title}.txt").write_text(text, encoding="utf-8")
        written += len(text)
    return written


def write_pdfs(source: Path, folder: Path, limit: int | None) -> int:
    """One A4 PDF per article, 48 characters a line in HeiseiMin-W3 (a CID font pypdf reads back); returns pages."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("HeiseiMin-W3"))
    folder.mkdir(parents=True, exist_ok=True)
    pages = 0
    for title, text in read_articles(source, limit):
        buffer = io.BytesIO()
        pdf = canvas.Canvas(buffer)
        pdf.setFont("HeiseiMin-W3", 10)
        y = 800
        for paragraph in text.split("\n\n"):
            for begin in range(0, len(paragraph), 48):
                if y < 50:
                    pdf.showPage()
                    pdf.setFont("HeiseiMin-W3", 10)
                    pages, y = pages + 1, 800
                pdf.drawString(40, y, paragraph[begin : begin + 48])
                y -= 14
            y -= 14
        pdf.showPage()
        pdf.save()
        pages += 1
        (folder / f"{title}.pdf").write_bytes(buffer.getvalue())
    return pages


def glucose_sized_model(cache: Path, corpus: str) -> Path:
    """A GLuCoSE-shaped model with random weights; its sentencepiece vocabulary is trained on the corpus."""
    if (cache / "model.safetensors").exists():
        return cache
    # GLuCoSE has 32,768 pieces + 4 fairseq ids; a small corpus trains fewer pieces, so the embedding
    # matrix is padded to GLuCoSE's 32,772 rows.
    return build_offline_model(cache, vocab_size=32_000, embedding_rows=32_772, text=corpus, **GLUCOSE_SHAPE)


def forward_flops(lengths: Sequence[int]) -> float:
    """Useful FLOPs of GLuCoSE's encoder over sequences of these lengths (tokens, padding not counted).

    Per layer and token: the Q, K, V and output projections (4·d² weights) and the two feed-forward
    products (2·d·f weights), 2 FLOPs per weight: 2·(4d² + 2df), that is 2 × the non-embedding
    weights a text without entities uses (LUKE's entity-aware query matrices stay idle and are not
    counted); plus attention, QKᵀ and softmax·V, 2·2·n·d for a sequence of n tokens. So a sequence
    costs layers · n · (2(4d² + 2df) + 4nd): 14.2 MFLOP per token and layer plus 3,072·n.
    """
    d, f, layers = GLUCOSE_SHAPE["hidden_size"], GLUCOSE_SHAPE["intermediate_size"], GLUCOSE_SHAPE["num_layers"]
    return float(sum(layers * n * (2 * (4 * d * d + 2 * d * f) + 4 * n * d) for n in lengths))


def cpu_stall_microseconds() -> int:
    """Time runnable tasks of this machine have waited for a CPU (Linux PSI), to tell a run that others slowed."""
    try:
        line = Path("/proc/pressure/cpu").read_text(encoding="ascii").splitlines()[0]
    except (OSError, IndexError):
        return 0
    return int(line.rsplit("total=", 1)[-1])


def matmul_peak(dtype: Any, bursts: int = 6, burst_seconds: float = 0.5) -> float:
    """The best GFLOP/s of torch matrix products in ``dtype``, on the model's own shapes and a square one.

    The best of several short bursts, so that a moment of other work on the machine does not lower it.
    """
    import torch

    best = 0.0
    for m, k, n in ((2048, 768, 3072), (2048, 3072, 768), (2048, 2048, 2048)):
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        for _ in range(3):
            torch.mm(a, b)
        for _ in range(bursts):
            runs, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < burst_seconds:
                torch.mm(a, b)
                runs += 1
            best = max(best, 2 * m * k * n * runs / elapsed / 1e9)
    return best


@dataclass
class Run:
    """What one ingest took: seconds, texts and tokens the model read, sequence lengths."""

    label: str
    seconds: float
    chunks: int
    tokens: int
    lengths: list[int]
    embed_seconds: float = 0.0
    again_seconds: float = 0.0
    precision: str = "float32"
    note: str = ""
    stalled: float = 0.0  # share of the run in which some task of the machine waited for a CPU

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds


def product_ingest(
    model: Path, docs: Path, data: Path, args: argparse.Namespace, precision: Precision, prefetch: int = 2
) -> tuple[Run, Indexer]:
    """The product's ingest of ``docs`` into a fresh store, then again unchanged."""
    embedder = Embedder(str(model), device="cpu", batch_size=args.batch_size, precision=precision)
    embedder.load()
    store = ChromaStore.persistent(data)
    indexer = Indexer(embedder, store, args.chunk_tokens, args.chunk_overlap, prefetch=prefetch)
    started, stall = time.perf_counter(), cpu_stall_microseconds()
    reports = indexer.ingest_paths([docs])
    seconds = time.perf_counter() - started
    stalled = (cpu_stall_microseconds() - stall) / 1e6 / seconds
    stats = embedder.stats
    started = time.perf_counter()
    again = indexer.ingest_paths([docs])
    again_seconds = time.perf_counter() - started
    failed = [(r.source, r.status, r.message) for r in reports if r.status not in ("added", "duplicate")]
    if failed or {r.status for r in again} != {"unchanged"}:
        raise SystemExit(f"unexpected statuses: {failed} / {sorted({r.status for r in again})}")
    # the lengths of the distinct texts the model read (a text repeated is embedded once)
    texts: dict[str, int] = {}
    for path, source in collect_paths([docs]):
        for chunk in indexer.chunk(load_file(path, source)):
            texts[chunk.text] = min(chunk.tokens, embedder.max_tokens)
    lengths = list(texts.values())
    assert sum(lengths) == stats.tokens, (sum(lengths), stats.tokens)
    return (
        Run(
            label=f"product, {embedder.precision.passages}" + (", no prefetch" if prefetch == 0 else ""),
            seconds=seconds,
            chunks=sum(r.chunks for r in reports),
            tokens=stats.tokens,
            lengths=lengths,
            embed_seconds=stats.seconds,
            again_seconds=again_seconds,
            precision=embedder.precision.passages,
            note=embedder.precision.passages_reason,
            stalled=stalled,
        ),
        indexer,
    )


def langchain_tutorial_ingest(model: Path, docs: Path, persist: Path, count_tokens: Any) -> Run:
    """What a user writes from the LangChain RAG tutorial, on the same files and model."""
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    embeddings = HuggingFaceEmbeddings(model_name=str(model))  # loaded before the clock, like the product's
    started, stall = time.perf_counter(), cpu_stall_microseconds()
    documents = [
        Document(page_content=path.read_text(encoding="utf-8"), metadata={"source": str(path)})
        for path in sorted(docs.glob("*.txt"))
    ]
    splitter = RecursiveCharacterTextSplitter(chunk_size=TUTORIAL_CHUNK_SIZE, chunk_overlap=TUTORIAL_CHUNK_OVERLAP)
    chunks = splitter.split_documents(documents)
    store = Chroma.from_documents(chunks, embeddings, persist_directory=str(persist))
    seconds = time.perf_counter() - started
    stalled = (cpu_stall_microseconds() - stall) / 1e6 / seconds
    assert store._collection.count() == len(chunks)
    limit = embeddings._client.max_seq_length
    # HuggingFaceEmbeddings replaces line ends with spaces before encoding; the model stops at its limit
    lengths = [min(count_tokens(c.page_content.replace("\n", " ")), limit) for c in chunks]
    return Run("LangChain tutorial, float32", seconds, len(chunks), sum(lengths), lengths, stalled=stalled)


def disturbed(run: Run) -> str:
    """A warning when other work on the machine took the CPUs for a noticeable part of a run."""
    return "  ← DISTURBED by other work: not comparable" if run.stalled > 0.1 else ""


def show(run: Run, peak: dict[str, float]) -> None:
    achieved = forward_flops(run.lengths) / run.seconds / 1e9
    print(
        f"  {run.label}: {run.seconds:.1f} s = {run.tokens_per_second:,.0f} tokens/s, {run.chunks_per_second:.1f} chunks/s"
        f" ({run.chunks:,} chunks, {run.tokens:,} tokens, {sum(run.lengths) / len(run.lengths):.0f} tokens per text);"
        f" {achieved:,.0f} GFLOP/s = {achieved / peak[run.precision]:.0%} of the {run.precision} peak;"
        f" some task waited for a CPU {run.stalled:.0%} of the time{disturbed(run)}"
    )
    if run.embed_seconds:
        print(
            f"    embedding {run.embed_seconds / run.seconds:.0%} of the time, at {run.tokens / run.embed_seconds:,.0f}"
            f" tokens/s = {forward_flops(run.lengths) / run.embed_seconds / 1e9 / peak[run.precision]:.0%} of the peak"
        )
    if run.again_seconds:
        print(
            f"    re-ingest unchanged: {run.again_seconds:.2f} s = {run.again_seconds / run.seconds:.1%} of the first ingest"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=None, help="only the first N articles (default: all 59)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--chunk-overlap", type=int, default=32)
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["auto", "float32"],
        choices=PRECISIONS,
        help="the product's precisions to time (default: auto float32)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the LangChain tutorial pipeline")
    parser.add_argument("--pdf-overlap", action="store_true", help="also time PDFs with and without prefetch")
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()

    import torch

    print(
        f"machine: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    peak = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    print(f"matrix-multiply peak: float32 {peak['float32']:,.0f} GFLOP/s, bfloat16 {peak['bfloat16']:,.0f} GFLOP/s")

    with tempfile.TemporaryDirectory() as scratch:
        docs = Path(scratch) / "docs"
        chars = write_articles(JSQUAD, docs, args.articles)
        corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted(docs.iterdir()))
        started = time.perf_counter()
        model = glucose_sized_model(args.cache, corpus)
        probe = Embedder(str(model), device="cpu", precision="float32")
        probe.load()
        shape = json.loads((model / "config.json").read_text(encoding="utf-8"))
        parameters = sum(p.numel() for p in probe.model.parameters())
        print(
            f"model: GLuCoSE-shaped LUKE ({shape['num_hidden_layers']} layers, {shape['hidden_size']} hidden, "
            f"{shape['intermediate_size']} feed-forward), {parameters / 1e6:.0f}M parameters, random weights; "
            f"loaded in {time.perf_counter() - started:.1f} s; {forward_flops([1]) / 1e6:.0f} MFLOP per token "
            "plus attention"
        )
        print(f"corpus: {len(list(docs.iterdir()))} JSQuAD articles as text files, {chars:,} characters")
        print(
            f"product: chunks of ≤ {args.chunk_tokens} tokens, overlap {args.chunk_overlap}, batch {args.batch_size}; "
            f"tutorial: {TUTORIAL_CHUNK_SIZE}/{TUTORIAL_CHUNK_OVERLAP} characters, HuggingFaceEmbeddings defaults (batch 32)"
        )

        runs: list[Run] = []
        for number, precision in enumerate(args.precision):
            run, _ = product_ingest(model, docs, Path(scratch) / f"product-{number}", args, precision)
            runs.append(run)
            show(run, peak)
            print(f"    precision {precision}: {run.precision} ({run.note})")
        if not args.no_baseline:
            baseline = langchain_tutorial_ingest(model, docs, Path(scratch) / "langchain", probe.count_tokens)
            show(baseline, peak)
            for run in runs:
                print(
                    f"  ratio {run.label} / tutorial: {run.tokens_per_second / baseline.tokens_per_second:.2f}× tokens/s, "
                    f"{baseline.seconds / run.seconds:.2f}× less time for the same corpus "
                    f"({run.tokens / baseline.tokens:.2f}× the tokens read)"
                )

        if args.pdf_overlap:
            pdfs = Path(scratch) / "pdfs"
            pages = write_pdfs(JSQUAD, pdfs, args.articles)
            indexer = Indexer(
                probe, ChromaStore.persistent(Path(scratch) / "probe"), args.chunk_tokens, args.chunk_overlap
            )
            started = time.perf_counter()
            for path, source in collect_paths([pdfs]):
                indexer.chunk(load_file(path, source))
            prepare = time.perf_counter() - started
            print(
                f"PDFs: the same {len(list(pdfs.iterdir()))} articles as {pages} pages; reading (pypdf), normalising "
                f"and chunking them alone takes {prepare:.1f} s"
            )
            precision = args.precision[0]
            timed: dict[int, Run] = {}
            for prefetch in (0, 2, 0, 2):
                run, _ = product_ingest(
                    model, pdfs, Path(scratch) / f"pdf-{prefetch}-{time.time()}", args, precision, prefetch
                )
                print(
                    f"  prefetch {prefetch}: {run.seconds:.1f} s = {run.tokens_per_second:,.0f} tokens/s"
                    f" (some task waited for a CPU {run.stalled:.0%} of the time){disturbed(run)}"
                )
                timed[prefetch] = min(timed.get(prefetch, run), run, key=lambda r: r.seconds)
            saved = timed[0].seconds - timed[2].seconds
            print(
                f"  best of two, {timed[2].precision}: without overlap {timed[0].seconds:.1f} s, with {timed[2].seconds:.1f} s: "
                f"{saved:+.1f} s ({saved / timed[0].seconds:+.1%}); {timed[2].tokens_per_second:,.0f} tokens/s"
            )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
