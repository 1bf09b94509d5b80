"""The command line, driven in-process and once as a real ``python -m pipelines`` process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.service import words
from testkit.cli import run
from testkit.documents import make_pdf
from testkit.servers import ChatServer, Reply

REPO = Path(__file__).resolve().parents[2]
TOKYO = "東京は日本の首都であり、政治と経済の中心地です。"
FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
INTRO = "はじめに。この文書は日本の山について説明します。第一章では富士山を取り上げます。"


@pytest.fixture
def docs(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")  # the int8 question path is for CPUs; a GPU would take float32
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "東京.txt").write_bytes(TOKYO.encode("cp932"))
    (folder / "富士山.pdf").write_bytes(make_pdf([[INTRO], [FUJI]]))
    return folder


@pytest.mark.slow
def test_ingest_reports_each_file_and_the_speed(docs: Path) -> None:
    status, out, err = run("ingest", str(docs))
    assert status == 0, err
    assert "追加\t富士山.pdf\t" in out
    assert "追加\t東京.txt\t1 チャンク" in out
    assert "合計: 追加 2" in out
    assert "トークン/秒" in out
    # both precisions, each with its reason: the fastest path on this CPU that passes the checks, or (a first
    # start on this machine) float32 while they are prepared
    preparing = "（より速い精度を準備中）"
    assert re.search(
        rf"^精度: ((int8|bfloat16|float32)（.+トークン/秒.+）|(bfloat16|float32){preparing}（.+）)$", out, re.M
    ), out
    assert re.search(rf"^質問の精度: (int8|bfloat16|float32)({preparing})?（.+）$", out, re.M), out
    status, out, _ = run("ingest", str(docs))
    assert "変更なし\t東京.txt" in out
    assert "合計: 変更なし 2" in out
    assert "埋め込み" not in out
    # nothing to embed: the model was not loaded, so no precision was chosen
    assert re.search(r"^精度: なし（.*モデルを読み込んでいません）$", out, re.M), out
    assert "質問の精度" not in out


@pytest.mark.slow
def test_a_second_ingest_loads_no_model(docs: Path) -> None:
    status, out, _ = run("ingest", str(docs), "--json")
    first = json.loads(out)
    assert (status, first["model_loaded"], first["embedded_texts"]) == (0, True, 3)
    (docs / "写し.txt").write_bytes((docs / "東京.txt").read_bytes())
    status, out, _ = run("ingest", str(docs), "--json")
    second = json.loads(out)
    assert status == 0
    assert {f["source"]: f["status"] for f in second["files"]} == {
        "写し.txt": "duplicate",
        "富士山.pdf": "unchanged",
        "東京.txt": "unchanged",
    }
    assert (second["model_loaded"], second["embedded_texts"], second["embedded_tokens"]) == (False, 0, 0)


@pytest.mark.slow
def test_commands_that_need_no_model_run_without_one(docs: Path, tmp_path: Path) -> None:
    """Listing, deleting and searching an empty store never load the model: a model that cannot load is no matter."""
    missing = ("--model", str(tmp_path / "no-such-model"))
    status, _, err = run("search", "質問", *missing)
    assert (status, "まだ文書がありません" in err) == (0, True), err
    run("ingest", str(docs))
    status, out, _ = run("documents", *missing)
    assert (status, out.count("\n")) == (0, 2)
    assert run("delete", "東京.txt", *missing)[:2] == (0, "削除しました: 東京.txt（1 チャンク）\n")
    assert run("delete", "富士山.pdf", *missing)[0] == 0
    status, _, err = run("search", "質問", "--json", *missing)
    assert (status, "まだ文書がありません" in err) == (0, True), err
    status, _, err = run("ingest", str(docs), *missing)  # files to embed: now the model is needed
    assert status == 2
    assert "no-such-model" in err


@pytest.mark.slow
def test_ingest_json_and_failures(docs: Path) -> None:
    (docs / "壊れた.pdf").write_bytes(b"%PDF-1.4 garbage")
    status, out, _ = run("ingest", str(docs), "--json")
    assert status == 1  # some file failed
    report = json.loads(out)
    statuses = {f["source"]: f["status"] for f in report["files"]}
    assert statuses == {"壊れた.pdf": "failed", "富士山.pdf": "added", "東京.txt": "added"}
    assert report["embedded_texts"] == 3
    assert report["embedded_tokens"] > 0


@pytest.mark.slow
def test_search_human_and_json(docs: Path) -> None:
    run("ingest", str(docs))
    status, out, _ = run("search", FUJI, "-k", "2")
    assert status == 0
    assert out.startswith("1. 類似度 ")
    assert "富士山.pdf  2 ページ" in out
    status, out, _ = run("search", "ＦＵＪＩ？" + FUJI, "--json", "-k", "5")
    hits = json.loads(out)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {"rank", "cosine", "source", "page", "text", "chunk_index"} <= set(hits[0])
    best = next(h for h in hits if h["text"] == FUJI)
    assert (best["source"], best["page"], best["location"], best["ocr"]) == ("富士山.pdf", 2, "2 ページ", False)
    assert all(-1.0 <= h["cosine"] <= 1.0 for h in hits)
    # hybrid (the default) says which list each hit came from and its BM25 score
    assert all(h["dense_rank"] is not None or h["keyword_rank"] is not None for h in hits)
    assert all(h["keyword_score"] >= 0.0 for h in hits)
    assert best["keyword_rank"] == 1
    status, out, _ = run("search", FUJI, "--json", "-k", "5", "--mode", "dense")
    dense = json.loads(out)
    assert dense == sorted(dense, key=lambda h: -h["cosine"])
    assert [h["dense_rank"] for h in dense] == [1, 2, 3]
    status, out, err = run("search", "標高", "--mode", "keyword")
    assert status == 0
    assert "並び順（キーワード）: BM25" in err
    assert out.startswith("1. 類似度 ")
    assert "キーワード 1" in out
    assert FUJI in out


@pytest.mark.slow
def test_documents_and_delete(docs: Path) -> None:
    status, out, _ = run("documents")
    assert (status, out) == (0, "文書はまだありません。\n")
    run("ingest", str(docs))
    status, out, _ = run("documents", "--json")
    listed = json.loads(out)
    assert [(d["source"], d["pages"], d["chunks"]) for d in listed] == [("富士山.pdf", 2, 2), ("東京.txt", 0, 1)]
    status, out, _ = run("delete", "東京.txt")
    assert (status, out) == (0, "削除しました: 東京.txt（1 チャンク）\n")
    status, _, err = run("delete", "東京.txt")
    assert status == 2
    assert "「東京.txt」という文書はありません" in err
    status, out, _ = run("documents")
    assert out.startswith("富士山.pdf\t2 ページ\t2 チャンク\t")


def test_search_before_any_ingest_says_what_to_do(docs: Path) -> None:
    status, out, err = run("search", "質問")
    assert status == 0
    assert "まだ文書がありません" in err
    assert out == ""


@pytest.mark.slow
def test_model_that_cannot_be_had_writes_nothing(docs: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "new-data"
    status, out, err = run("ingest", str(docs), "--model", "pkshatech/GLuCoSE-base-ja", "--data-dir", str(data_dir))
    assert status == 2
    assert out == ""
    assert "pkshatech/GLuCoSE-base-ja" in err
    assert "RAG_EMBEDDING_MODEL=" in err
    status, out, _ = run("documents", "--json", "--data-dir", str(data_dir))
    assert (status, json.loads(out)) == (0, [])
    assert not any((data_dir / "originals").rglob("*.*"))
    # the store was bound to no model: the right one can still be used
    status, out, _ = run("ingest", str(docs), "--data-dir", str(data_dir))
    assert status == 0
    assert "合計: 追加 2" in out


def test_invalid_setting_is_explained(docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "たくさん")
    status, _, err = run("ingest", str(docs))
    assert status == 2
    assert "RAG_CHUNK_TOKENS は整数で指定してください" in err
    status, _, err = run("ingest", str(docs), "--chunk-tokens", "64", "--chunk-overlap", "40")
    assert status == 2
    assert "RAG_CHUNK_OVERLAP" in err


@pytest.mark.server
def test_python_dash_m_pipelines_runs(docs: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    ingest = subprocess.run(
        [sys.executable, "-m", "pipelines", "ingest", str(docs / "東京.txt")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    search = subprocess.run(
        [sys.executable, "-m", "pipelines", "search", TOKYO, "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert search.returncode == 0, search.stderr
    assert json.loads(search.stdout)[0]["text"] == TOKYO


# ``python -m pipelines ARGS`` in a process that then says what it leaves running for the interpreter's exit
WHAT_IS_LEFT_RUNNING = """
import json, multiprocessing, sys, threading
from pipelines.faces.cli import main
status = main(sys.argv[1:])
threads = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
print(json.dumps({"status": status, "threads": threads, "children": len(multiprocessing.active_children())}))
"""


@pytest.mark.slow
def test_ingest_leaves_no_thread_or_child_process_for_the_interpreter_s_exit(docs: Path) -> None:
    """The reader's child process and its executor's thread end with the command: left to the exit, the
    executor's hook may race its thread and print ``Exception ignored in: <module 'threading'>``."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-c", WHAT_IS_LEFT_RUNNING, "ingest", str(docs)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said == {"status": 0, "threads": [], "children": 0}, done.stderr
    assert "Exception ignored" not in done.stderr
    assert "Traceback" not in done.stderr


HEAVY = ("torch", "transformers", "sentence_transformers", "langchain_core")
# ``python -m pipelines ARGS`` in a process that then says which of the heavy libraries it imported
WHAT_WAS_IMPORTED = f"""
import json, runpy, sys
sys.argv = ["pipelines", *sys.argv[1:]]
try:
    runpy.run_module("pipelines", run_name="__main__")
    status = 0
except SystemExit as done:
    status = done.code
print(json.dumps({{"status": status, "imported": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


@pytest.mark.server
@pytest.mark.parametrize("argv", [("ingest", "DOCS"), ("documents",), ("search", TOKYO)])
def test_a_command_with_nothing_to_embed_or_answer_imports_no_model_or_langchain(
    docs: Path, argv: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged re-ingest, a listing and a search (its int8 verdict kept) start in a second, not ten."""
    monkeypatch.setenv("RAG_PRECISION", "int8")  # on any CPU: with int8 questions too, a search needs no torch
    run("ingest", str(docs))  # the files are stored and the precision verdict is kept
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-c", WHAT_WAS_IMPORTED, *(str(docs) if a == "DOCS" else a for a in argv)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said == {"status": 0, "imported": []}, done.stderr


@pytest.mark.slow
def test_ask_streams_an_answer_and_its_sources(docs: Path, chat_server: ChatServer) -> None:
    run("ingest", str(docs))
    chat_server.replies = [Reply("富士山の標高は三七七六メートルです[1]。")]
    status, out, err = run("ask", FUJI, "--llm-url", chat_server.url, "--llm-model", "テスト用モデル")
    assert status == 0, err
    assert out.startswith("回答:\n富士山の標高は三七七六メートルです[1]。\n\n出典:\n[1] 富士山.pdf  2 ページ  （1 位、")
    assert chat_server.requests[0]["body"]["stream"] is True
    assert FUJI in chat_server.requests[0]["body"]["messages"][1]["content"]


@pytest.mark.slow
def test_ask_json_with_an_unknown_citation(
    docs: Path, chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("ingest", str(docs))
    monkeypatch.setenv("RAG_LLM_URL", chat_server.url)
    monkeypatch.setenv("RAG_LLM_MODEL", "テスト用モデル")
    chat_server.replies = [Reply("富士山の標高は三七七六メートルです[1][7]。")]
    status, out, _ = run("ask", FUJI, "--json", "-k", "2")
    assert status == 0
    result = json.loads(out)
    assert result["answer"] == "富士山の標高は三七七六メートルです[1][7]。"
    assert result["citations"] == [{"n": 1, "source": "富士山.pdf", "page": 2, "location": "2 ページ", "rank": 1}]
    assert result["dropped_citations"] == [7]
    assert result["error"] is None
    _, searched, _ = run("search", FUJI, "--json", "-k", "2")
    assert result["hits"] == json.loads(searched)
    assert len(chat_server.requests) == 1  # one answer, written once (streamed, as on every face)


@pytest.mark.slow
def test_ask_with_a_failing_model_still_shows_the_passages(docs: Path, chat_server: ChatServer) -> None:
    run("ingest", str(docs))
    chat_server.replies = [Reply(status=500)]
    model = ("--llm-url", chat_server.url, "--llm-model", "テスト用モデル")
    status, out, err = run("ask", FUJI, *model)
    assert status == 1
    assert "エラー: 回答を作れませんでした。" in err
    assert "HTTP 500" in err
    assert "検索で見つかった箇所:\n1. 類似度 " in out
    assert "富士山.pdf  2 ページ" in out
    status, out, err = run("ask", FUJI, "--json", *model)
    assert status == 1
    result = json.loads(out)
    assert result["answer"] is None
    assert "HTTP 500" in result["error"]
    assert FUJI in [h["text"] for h in result["hits"]]


def test_ask_without_a_model_says_how_to_set_one(docs: Path) -> None:
    status, out, err = run("ask", FUJI)
    assert (status, out) == (2, "")
    assert err == f"エラー: {words.NO_CHAT_MODEL}\n"  # the catalogue's words, as the API and the page say them


@pytest.mark.slow
def test_a_passage_over_a_page_break_shows_its_range_and_the_page_of_its_sentence(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    biwa = "琵琶湖は滋賀県にある日本最大の湖である。"
    pdf = tmp_path / "琵琶湖.pdf"
    pdf.write_bytes(make_pdf([["日本の湖について述べる。"], [biwa]]))
    run("ingest", str(pdf))
    status, out, _ = run("search", biwa, "--json", "-k", "1")
    assert status == 0
    (hit,) = json.loads(out)
    assert (hit["location"], hit["page"], hit["page_end"]) == ("1–2 ページ", 1, 2)  # one chunk over the break
    assert hit["text"][slice(*hit["best_sentence"])] == biwa
    assert (hit["best_page"], hit["best_location"]) == (2, "2 ページ")  # the page a person should open
