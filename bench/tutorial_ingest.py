"""The ingest a user writes from the LangChain RAG tutorial, run as its own process, as a user runs it.

    .venv/bin/python bench/tutorial_ingest.py MODEL_DIR DOCS_DIR PERSIST_DIR

Each ``*.txt`` file of DOCS_DIR read into a ``Document``, ``RecursiveCharacterTextSplitter(chunk_size=1000,
chunk_overlap=200)``, ``HuggingFaceEmbeddings(model_name=MODEL_DIR)`` (its defaults: batch 32, float32),
``Chroma.from_documents`` into PERSIST_DIR. ``bench/ingest_speed.py`` times the whole process against the
product's ``python -m pipelines ingest``.

Prints one JSON line: ``chunks``; ``lengths``, the tokens the model read for each chunk (its own
tokenizer on the text as ``HuggingFaceEmbeddings`` passes it, line ends made spaces, cut at the model's
``max_seq_length``); ``seconds``, from the start of this script (imports and model load included) to
the store's return; ``pipeline_seconds``, the same from the model loaded on; ``count_seconds``, the
time counting tokens took afterwards, which is no part of a user's script.
"""

import time

STARTED = time.perf_counter()  # before the imports: a user waits for them too

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from langchain_chroma import Chroma  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_huggingface import HuggingFaceEmbeddings  # noqa: E402
from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402

CHUNK_SIZE, CHUNK_OVERLAP = 1000, 200


def token_lengths(embeddings: HuggingFaceEmbeddings, texts: list[str], batch: int = 256) -> list[int]:
    """The tokens the model read for each text: its tokenizer, cut at its ``max_seq_length``, as it embedded them."""
    model = embeddings._client
    preprocess = getattr(model, "preprocess", None) or model.tokenize  # tokenize is deprecated from 5.x on
    lengths: list[int] = []
    for begin in range(0, len(texts), batch):
        features = preprocess([t.replace("\n", " ") for t in texts[begin : begin + batch]])
        lengths.extend(int(n) for n in features["attention_mask"].sum(dim=1))
    return lengths


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    model, docs, persist = (Path(a) for a in sys.argv[1:])
    embeddings = HuggingFaceEmbeddings(model_name=str(model))
    loaded = time.perf_counter()
    documents = [
        Document(page_content=path.read_text(encoding="utf-8"), metadata={"source": str(path)})
        for path in sorted(docs.glob("*.txt"))
    ]
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    chunks = splitter.split_documents(documents)
    store = Chroma.from_documents(chunks, embeddings, persist_directory=str(persist))
    done = time.perf_counter()
    stored = store._collection.count()
    if stored != len(chunks):
        raise SystemExit(f"the store holds {stored} chunks, not {len(chunks)}")
    lengths = token_lengths(embeddings, [c.page_content for c in chunks])
    result = {
        "chunks": len(chunks),
        "lengths": lengths,
        "seconds": round(done - STARTED, 3),
        "pipeline_seconds": round(done - loaded, 3),
        "count_seconds": round(time.perf_counter() - done, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
