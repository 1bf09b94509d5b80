"""Ingest speed of the product, whole processes as a user runs them, against the LangChain tutorial on the same files.

    .venv/bin/python bench/ingest_speed.py [--articles N] [--rounds R] [--paths auto int8 bfloat16 float32]
        [--without avx512] [--no-baseline] [--pdf-overlap]

Builds, offline, a random-weight model with GLuCoSE-base-ja's architecture and size (LUKE, 768 hidden,
12 layers, 12 heads, 3072 intermediate, 32,772-token vocabulary), so the cost per token is the real
one; writes the JSQuAD articles of ``../shared/data`` as text files (one per article, its paragraphs
joined, the title as the name). Then, in one run:

1. the CPU's features, and its matrix-multiply peaks on the model's shapes: float32 and bfloat16 with
   torch (GFLOP/s), int8 with ONNX Runtime's ``MatMulInteger``, uint8 × int8 (GOPS); measured again
   after the rounds, the better of the two kept;
2. a user's very first run, once: ``python -m pipelines ingest DOCS --json`` with ``RAG_PRECISION=auto``
   and an empty cache directory (``RAG_CACHE_DIR``), which pays the int8 export and the precision
   checks; then one untimed run for each other path of ``--paths``, so that each has its verdict and
   export in its own cache directory, as every later start of the product has;
3. ``--rounds`` rounds, each: the tutorial's ingest as its own process (``bench/tutorial_ingest.py``:
   ``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)``, ``HuggingFaceEmbeddings``,
   ``Chroma.from_documents``), then for each path the product's ingest into a fresh data directory,
   then the same command again on the unchanged files (the re-ingest). Every time is a whole process
   timed from outside: interpreter start, imports and model load included;
4. per path, the medians of the rounds: seconds, tokens/s, the tutorial's seconds over the product's
   for the same files, the re-ingest's share of the first ingest, the embedding's share of the process,
   the embedding's rate as a share of the peak of the precision used, and that precision and why; the
   goals (at least 3× the tutorial, 4× on a CPU with native bfloat16; a re-ingest under 10% of the
   first); a markdown table.

``bfloat16`` is skipped where the CPU lacks AVX512-BF16. ``--without avx512`` runs all of it, child
processes included, as a CPU with AVX2 and FMA only would (``bench/cpu_mask.py``): the instructions
change, not the cores, caches or memory. Variables ``RAG_*`` of the calling shell are not passed on.

Tokens are what the model read, counted with its own tokenizer: the tutorial's 1,000-character chunks
are cut by the model at 512 tokens, and only those count; the product's are its chunks, as its
``Indexer.chunk`` cuts them. ``--pdf-overlap`` also writes the articles as Japanese PDFs and times the
product's ingest of them, in this process, with and without reading and chunking the next files in a
background thread (``Indexer(prefetch=...)``).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import cpu_mask  # noqa: E402
from bench.data import jglue_dir  # noqa: E402
from testkit.offline_model import build_offline_model  # noqa: E402

JSQUAD = jglue_dir() / "jsquad-v1.3-valid.json"
GLUCOSE_SHAPE = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072}
TUTORIAL = REPO / "bench" / "tutorial_ingest.py"
PATHS = ("auto", "int8", "bfloat16", "float32")
# the model's feed-forward products for 2,048 tokens at once
MATMUL_SHAPES = ((2048, 768, 3072), (2048, 3072, 768))
# prints the precision a start with these settings computes passages in, and why (the CLI's 精度: line)
PRECISION_PROBE = """
import json
from pipelines.service.compose import make_embedder
from pipelines.settings import Settings
embedder = make_embedder(Settings.from_env())
embedder.load()
print(json.dumps([embedder.precision.passages, embedder.precision.passages_reason], ensure_ascii=False))
"""


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


# Peaks ---------------------------------------------------------------------------------------


def best_rate(
    step: Callable[[], object], operations: float, bursts: int = 6, burst_seconds: float = 0.5, warm_up: int = 3
) -> float:
    """The best rate of ``step`` (``operations`` each call), in G operations a second, over short bursts.

    The best of several bursts after a few calls to warm up, so that a moment of other work on the
    machine does not lower it.
    """
    for _ in range(warm_up):
        step()
    best = 0.0
    for _ in range(bursts):
        runs, started = 0, time.perf_counter()
        while True:  # at least one call, however long it takes
            step()
            runs += 1
            if (elapsed := time.perf_counter() - started) >= burst_seconds:
                break
        best = max(best, operations * runs / elapsed / 1e9)
    return best


def matmul_peak(dtype: Any, native: bool = True) -> float:
    """The best GFLOP/s of torch matrix products in ``dtype``, on the model's own shapes and a square one.

    Not ``native`` (bfloat16 without AVX512-BF16), torch takes a path a hundred times slower: one
    short product, timed once, says so without taking minutes.
    """
    import torch

    shapes = (*MATMUL_SHAPES, (2048, 2048, 2048)) if native else ((256, 768, 3072),)
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        step = functools.partial(torch.mm, a, b)
        rate = best_rate(step, 2 * m * k * n) if native else best_rate(step, 2 * m * k * n, 1, 0.0, 1)
        best = max(best, rate)
    return best


def rate(value: float) -> str:
    """A rate in G operations a second: whole numbers, or two decimals below 10."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def measure_peaks(native_bf16: bool, before: dict[str, float] | None = None) -> dict[str, float]:
    """float32 and bfloat16 peaks (torch, GFLOP/s), int8's (ONNX Runtime, GOPS); the better of now and ``before``."""
    import torch

    peak = {
        "float32": matmul_peak(torch.float32),
        "bfloat16": matmul_peak(torch.bfloat16, native_bf16),
        "int8": int8_peak(),
    }
    if before is not None:
        peak = {name: max(rate, before[name]) for name, rate in peak.items()}
    slow = "" if native_bf16 else ", not native here"
    print(
        f"matrix-multiply peak{' (the better of the start and the end)' if before else ''}: "
        f"float32 {rate(peak['float32'])} GFLOP/s, bfloat16 {rate(peak['bfloat16'])} GFLOP/s{slow} (torch); "
        f"int8 {rate(peak['int8'])} GOPS (ONNX Runtime MatMulInteger)"
    )
    return peak


def int8_peak() -> float:
    """The best GOPS of ONNX Runtime's ``MatMulInteger`` (uint8 × int8 → int32) on the model's shapes.

    What the int8 path's quantized products run on (activations uint8, weights int8), with ONNX
    Runtime's default threads; 2·M·K·N operations a product, as for floats.
    """
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    best = 0.0
    for m, k, n in MATMUL_SHAPES:
        weights = numpy_helper.from_array(rng.integers(-128, 128, (k, n), dtype=np.int8), name="B")
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
            "int8_peak",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
            [weights],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feed = {"A": rng.integers(0, 256, (m, k), dtype=np.uint8)}
        best = max(best, best_rate(functools.partial(session.run, None, feed), 2 * m * k * n))
    return best


# Whole processes ------------------------------------------------------------------------------


@dataclass
class Timed:
    """One whole process, timed from outside: wall seconds, the JSON it printed, how contended the CPUs were."""

    seconds: float
    summary: dict[str, Any]
    stalled: float  # share of the run in which some task of the machine waited for a CPU


def timed_process(command: Sequence[str], env: dict[str, str]) -> Timed:
    """Run ``command`` from the repository root; a failure stops the bench with what the process said."""
    started, stall = time.perf_counter(), cpu_stall_microseconds()
    done = subprocess.run(list(command), cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    stalled = (cpu_stall_microseconds() - stall) / 1e6 / seconds
    if done.returncode != 0:
        log = REPO / "bench-out" / f"failed-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{' '.join(command)}\n\n{done.stdout}\n\n{done.stderr}", encoding="utf-8")
        raise SystemExit(
            f"{' '.join(command)}: exit {done.returncode}\n{done.stderr[-2000:]}\nall of its output: {log}"
        )
    # the JSON is the last text that starts a line with "{" (the CLI indents its own lines)
    start = done.stdout.rfind("\n{") + 1
    return Timed(seconds, json.loads(done.stdout[start:]), stalled)


def clean_environment() -> dict[str, str]:
    """This process's environment without ``RAG_*`` settings (the CPU mask's LD_PRELOAD stays)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("RAG_")}


def product_environment(
    model: Path, data: Path, cache: Path, precision: str, args: argparse.Namespace
) -> dict[str, str]:
    """The settings of one product run: this model, data and cache directories, precision and chunking."""
    return {
        **clean_environment(),
        "RAG_EMBEDDING_MODEL": str(model),
        "RAG_DATA_DIR": str(data),
        "RAG_CACHE_DIR": str(cache),
        "RAG_PRECISION": precision,
        "RAG_BATCH_SIZE": str(args.batch_size),
        "RAG_CHUNK_TOKENS": str(args.chunk_tokens),
        "RAG_CHUNK_OVERLAP": str(args.chunk_overlap),
    }


def product_ingest(docs: Path, env: dict[str, str], expected: set[str]) -> Timed:
    """``python -m pipelines ingest DOCS --json`` as a whole process; every file must end in ``expected``."""
    run = timed_process([sys.executable, "-m", "pipelines", "ingest", str(docs), "--json"], env)
    statuses = {f["status"] for f in run.summary["files"]}
    if not statuses <= expected:
        wrong = [(f["source"], f["status"], f["message"]) for f in run.summary["files"] if f["status"] not in expected]
        raise SystemExit(f"product ingest: expected {sorted(expected)}, got {wrong[:5]}")
    return run


def chosen_precision(env: dict[str, str]) -> tuple[str, str]:
    """What a start with ``env`` computes passages in, and why (after the warm-up, from the kept verdict)."""
    done = subprocess.run(
        [sys.executable, "-c", PRECISION_PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        return "?", f"could not ask: {said[-1] if said else f'exit {done.returncode}'}"
    precision, reason = json.loads(done.stdout.strip().splitlines()[-1])
    return precision, reason


def product_lengths(env: dict[str, str], docs: Path) -> tuple[list[int], int]:
    """The tokens of each distinct text the product embeds from ``docs``, and the model's parameters.

    Chunked as the product chunks (``Indexer.chunk``), counted by its embedder, cut at the model's limit;
    a text that comes twice is embedded once.
    """
    from ingest.loaders import load_file
    from pipelines.model.embedder import Embedder
    from pipelines.service.compose import make_embedder
    from pipelines.settings import Settings
    from pipelines.store.chroma import ChromaStore
    from pipelines.store.indexing import Indexer
    from pipelines.store.paths import collect_paths

    # float32 for both: nothing to check or time, the torch model is loaded as is
    settings = Settings.from_env(env, precision="float32", query_precision="float32")
    embedder = make_embedder(settings)
    indexer = Indexer(
        embedder, ChromaStore.persistent(settings.data_dir), settings.chunk_tokens, settings.chunk_overlap
    )
    limit = embedder.max_tokens
    texts: dict[str, int] = {}
    for path, source in collect_paths([docs]):
        for chunk in indexer.chunk(load_file(path, source)):
            texts[chunk.text] = min(chunk.tokens, limit)
    parameters = sum(p.numel() for p in embedder.model.parameters()) if isinstance(embedder, Embedder) else 0
    return list(texts.values()), parameters


@dataclass
class Row:
    """One line of the results: medians over the rounds of one path (or the tutorial, or the first start)."""

    label: str
    precision: str
    seconds: float  # whole process
    tokens: int
    flops: float  # of the model's forward passes over what it read
    embedding_seconds: float | None = None
    again_seconds: float | None = None
    # what the process itself timed: the CLI's ``seconds``, the tutorial's pipeline after its model loaded
    inside_seconds: float | None = None
    stalled: float = 0.0  # the most of any of its processes
    reason: str = ""

    def peak_share(self, peak: dict[str, float]) -> float | None:
        """The embedding's rate (the tutorial's: its whole pipeline's) as a share of the precision's peak."""
        seconds = self.embedding_seconds or self.inside_seconds
        if not seconds or self.precision not in peak:
            return None
        return self.flops / seconds / 1e9 / peak[self.precision]


def product_row(label: str, precision: str, reason: str, firsts: list[Timed], agains: list[Timed], flops: float) -> Row:
    """The medians of a path's rounds."""
    return Row(
        label=label,
        precision=precision,
        seconds=statistics.median(t.seconds for t in firsts),
        tokens=firsts[0].summary["embedded_tokens"],
        flops=flops,
        embedding_seconds=statistics.median(t.summary["embedding_seconds"] for t in firsts),
        again_seconds=statistics.median(t.seconds for t in agains) if agains else None,
        inside_seconds=statistics.median(t.summary["seconds"] for t in firsts),
        stalled=max(t.stalled for t in firsts + agains),
        reason=reason,
    )


def tutorial_row(runs: list[Timed]) -> Row:
    """The medians of the tutorial's rounds; the seconds it spent counting tokens for this bench are taken off."""
    lengths = runs[0].summary["lengths"]
    return Row(
        label="LangChain tutorial",
        precision="float32",
        seconds=statistics.median(t.seconds - t.summary["count_seconds"] for t in runs),
        tokens=sum(lengths),
        flops=forward_flops(lengths),
        inside_seconds=statistics.median(t.summary["pipeline_seconds"] for t in runs),
        stalled=max(t.stalled for t in runs),
    )


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def disturbed(row: Row) -> str:
    """A warning when other work on the machine took the CPUs for a noticeable part of a run."""
    return "  ← DISTURBED by other work: not comparable" if row.stalled > 0.1 else ""


def show(row: Row, peak: dict[str, float], tutorial: Row | None) -> None:
    """The details of one row."""
    print(f"  {row.label}: {row.seconds:.1f} s whole process = {row.tokens / row.seconds:,.0f} tokens/s", end="")
    if tutorial and row is not tutorial:
        print(f"; the tutorial takes {tutorial.seconds / row.seconds:.2f}× as long", end="")
    print(f"; some task waited for a CPU up to {row.stalled:.0%} of the time{disturbed(row)}")
    if row.embedding_seconds is not None and row.inside_seconds is not None:
        print(
            f"    embedding {row.embedding_seconds:.1f} s = {row.embedding_seconds / row.seconds:.0%} of the process, "
            f"{row.tokens / row.embedding_seconds:,.0f} tokens/s = {percent(row.peak_share(peak))} of the "
            f"{row.precision} peak; the ingest itself {row.inside_seconds:.1f} s, start and imports "
            f"{row.seconds - row.inside_seconds:.1f} s"
        )
    elif row.inside_seconds is not None:
        print(
            f"    after the model is loaded {row.inside_seconds:.1f} s (splitting, embedding, storing) = "
            f"{percent(row.peak_share(peak))} of the float32 peak"
        )
    if row.again_seconds is not None:
        print(
            f"    re-ingest unchanged: {row.again_seconds:.2f} s = {row.again_seconds / row.seconds:.1%} of the first"
        )
    if row.reason:
        print(f"    precision: {row.precision} ({row.reason})")


def table(rows: Sequence[Row], peak: dict[str, float], tutorial: Row | None) -> str:
    """The rows as a markdown table."""
    lines = [
        "| run | precision | seconds | tokens/s | tutorial ÷ this | re-ingest s | re-ingest share | embedding share "
        "| share of peak |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        ratio = f"{tutorial.seconds / row.seconds:.2f}×" if tutorial else "–"
        again = "–" if row.again_seconds is None else f"{row.again_seconds:.2f}"
        again_share = None if row.again_seconds is None else row.again_seconds / row.seconds
        embedding = None if row.embedding_seconds is None else row.embedding_seconds / row.seconds
        lines.append(
            f"| {row.label} | {row.precision} | {row.seconds:.1f} | {row.tokens / row.seconds:,.0f} | {ratio} "
            f"| {again} | {percent(again_share)} | {percent(embedding)} | {percent(row.peak_share(peak))} |"
        )
    return "\n".join(lines)


def goals(rows: Sequence[Row], tutorial: Row | None, native_bf16: bool) -> list[str]:
    """The issue's goals, each met or not: the ingest against the tutorial, the re-ingest against the first."""
    lines = []
    target = 4.0 if native_bf16 else 3.0
    cpu = "with" if native_bf16 else "without"
    for row in rows:
        if tutorial and row.label == "auto":
            ratio = tutorial.seconds / row.seconds
            verdict = "met" if ratio >= target else "NOT met"
            lines.append(f"auto ≥ {target:.0f}× the tutorial (a CPU {cpu} native bf16): {ratio:.2f}× — {verdict}")
        if row.again_seconds is not None:
            share = row.again_seconds / row.seconds
            verdict = "met" if share < 0.1 else "NOT met"
            lines.append(f"{row.label}: re-ingest < 10% of the first: {share:.1%} — {verdict}")
    return lines


# PDFs, in process ------------------------------------------------------------------------------


def pdf_overlap(model: Path, pdfs: Path, scratch: Path, cache: Path, precision: str, args: argparse.Namespace) -> None:
    """The product's ingest of ``pdfs`` in this process, without and with prefetch, best of two each."""
    from ingest.loaders import load_file
    from pipelines.choices import Precision
    from pipelines.model.embedder import Embedder
    from pipelines.store.chroma import ChromaStore
    from pipelines.store.indexing import Indexer
    from pipelines.store.paths import collect_paths

    chosen = cast(Precision, precision)
    embedder = Embedder(str(model), device="cpu", batch_size=args.batch_size, precision=chosen, cache_dir=cache)
    embedder.load()
    started = time.perf_counter()
    probe = Indexer(embedder, ChromaStore.persistent(scratch / "pdf-probe"), args.chunk_tokens, args.chunk_overlap)
    for path, source in collect_paths([pdfs]):
        probe.chunk(load_file(path, source))
    print(
        f"PDFs: the same articles as {len(list(pdfs.iterdir()))} files; reading (pypdf), normalising and chunking "
        f"them alone takes {time.perf_counter() - started:.1f} s; {embedder.precision.passages}, in this process"
    )
    best: dict[int, float] = {}
    for number, prefetch in enumerate((0, 2, 0, 2)):
        store = ChromaStore.persistent(scratch / f"pdf-{number}")
        indexer = Indexer(embedder, store, args.chunk_tokens, args.chunk_overlap, prefetch=prefetch)
        tokens, started = embedder.stats.tokens, time.perf_counter()
        indexer.ingest_paths([pdfs])
        seconds = time.perf_counter() - started
        print(f"  prefetch {prefetch}: {seconds:.1f} s = {(embedder.stats.tokens - tokens) / seconds:,.0f} tokens/s")
        best[prefetch] = min(best.get(prefetch, seconds), seconds)
    saved = best[0] - best[2]
    print(
        f"  best of two: without overlap {best[0]:.1f} s, with {best[2]:.1f} s: {saved:+.1f} s ({saved / best[0]:+.1%})"
    )


# Main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=None, help="only the first N articles (default: all 59)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; medians are reported (default 2)")
    parser.add_argument(
        "--paths", nargs="+", default=list(PATHS), choices=PATHS, help="RAG_PRECISION values to time (default: all)"
    )
    parser.add_argument(
        "--without", choices=["avx512"], help="avx512: run everything as a CPU with AVX2 and FMA only would"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--chunk-overlap", type=int, default=32)
    parser.add_argument("--no-baseline", action="store_true", help="skip the LangChain tutorial")
    parser.add_argument("--pdf-overlap", action="store_true", help="also time PDFs with and without prefetch")
    parser.add_argument("--cache", type=Path, default=REPO / "bench-out" / "glucose-sized-model")
    args = parser.parse_args()
    if args.without == "avx512":
        cpu_mask.run_masked()  # this process again, masked, in place of this one; returns once masked
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    import onnxruntime
    import torch

    print(
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}, ONNX Runtime {onnxruntime.__version__}, "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    print(cpu_mask.describe())
    native_bf16 = cpu_mask.features()["AVX512BF16"]
    paths = list(dict.fromkeys(args.paths))
    if "bfloat16" in paths and not native_bf16:
        paths.remove("bfloat16")
        print("bfloat16: skipped, this CPU has no AVX512-BF16 (the product would compute float32 in its place)")
    peak = measure_peaks(native_bf16)

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        docs = scratch / "docs"
        chars = write_articles(JSQUAD, docs, args.articles)
        corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted(docs.iterdir()))
        model = glucose_sized_model(args.cache, corpus)
        shape = json.loads((model / "config.json").read_text(encoding="utf-8"))
        lengths, parameters = product_lengths(
            product_environment(model, scratch / "probe", scratch / "probe-cache", "float32", args), docs
        )
        print(
            f"model: GLuCoSE-shaped LUKE ({shape['num_hidden_layers']} layers, {shape['hidden_size']} hidden, "
            f"{shape['intermediate_size']} feed-forward), {parameters / 1e6:.0f}M parameters, random weights; "
            f"{forward_flops([1]) / 1e6:.0f} MFLOP per token plus attention"
        )
        print(f"corpus: {len(list(docs.iterdir()))} JSQuAD articles as text files, {chars:,} characters")
        print(
            f"product: python -m pipelines ingest DOCS --json; chunks of ≤ {args.chunk_tokens} tokens, overlap "
            f"{args.chunk_overlap}, batch {args.batch_size}: {len(lengths):,} texts, {sum(lengths):,} tokens; "
            "tutorial: bench/tutorial_ingest.py, 1000/200 characters, HuggingFaceEmbeddings defaults (batch 32)"
        )

        def settings(path: str, data: str) -> dict[str, str]:
            """A product run of ``path`` into data directory ``data``, with the path's own cache directory."""
            return product_environment(model, scratch / data, scratch / f"cache-{path}", path, args)

        warm: dict[str, Timed] = {}
        for path in paths:
            warm[path] = product_ingest(docs, settings(path, f"warm-up-{path}"), {"added", "duplicate"})
            if path == "auto":
                print(
                    f"first start, auto, empty cache: {warm[path].seconds:.1f} s (with the int8 export and the checks)"
                )
            else:
                print(f"warm-up, {path}: {warm[path].seconds:.1f} s (untimed)")
        embedded = sorted({t.summary["embedded_tokens"] for t in warm.values()})
        if embedded != [sum(lengths)]:
            print(f"  note: the product embedded {embedded} tokens, its chunks {sum(lengths)}: shares are approximate")

        chosen = {path: chosen_precision(settings(path, f"warm-up-{path}")) for path in paths}
        firsts: dict[str, list[Timed]] = {path: [] for path in paths}
        agains: dict[str, list[Timed]] = {path: [] for path in paths}
        tutorials: list[Timed] = []
        for number in range(args.rounds):
            if not args.no_baseline:
                persist = scratch / f"tutorial-{number}"
                tutorials.append(
                    timed_process(
                        [sys.executable, str(TUTORIAL), str(model), str(docs), str(persist)], clean_environment()
                    )
                )
                print(f"round {number + 1}: tutorial {tutorials[-1].seconds:.1f} s")
            for path in paths:
                env = settings(path, f"{path}-{number}")
                firsts[path].append(product_ingest(docs, env, {"added", "duplicate"}))
                agains[path].append(product_ingest(docs, env, {"unchanged"}))
                print(
                    f"round {number + 1}: {path} {firsts[path][-1].seconds:.1f} s, "
                    f"re-ingest {agains[path][-1].seconds:.2f} s"
                )

        peak = measure_peaks(native_bf16, peak)  # again: other work on the machine may have lowered the first
        flops = forward_flops(lengths)
        tutorial = tutorial_row(tutorials) if tutorials else None
        rows = [product_row(path, *chosen[path], firsts[path], agains[path], flops) for path in paths]
        if "auto" in warm:
            rows.append(product_row("auto, first start (empty cache)", *chosen["auto"], [warm["auto"]], [], flops))
        print(f"\nmedians of {args.rounds} round(s):")
        for row in [*([tutorial] if tutorial else []), *rows]:
            show(row, peak, tutorial)
        if args.without:
            print(f"CPU masked to AVX2 and FMA: {cpu_mask.NOTE}")
        print("goals:")
        for line in goals(rows, tutorial, native_bf16):
            print(f"  {line}")

        if args.pdf_overlap and paths:
            pdfs = scratch / "pdfs"
            write_pdfs(JSQUAD, pdfs, args.articles)
            pdf_overlap(model, pdfs, scratch, scratch / f"cache-{paths[0]}", paths[0], args)

        print()
        print(table([*([tutorial] if tutorial else []), *rows], peak, tutorial))
        print(
            "\nseconds: whole processes, medians; tokens: what the model read; share of peak: the embedding's rate "
            "over the peak of the precision used (the tutorial's: its whole pipeline after the model loaded)"
        )
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
