"""The page, driven in-process with streamlit's AppTest on the offline model and a temp store."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pipelines.service import words
from testkit.documents import make_pdf
from testkit.page import APP, texts, use_model, wait_for_model
from testkit.servers import ChatServer, Reply

FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
TOKYO = "東京は日本の首都であり、政治と経済の中心地です。"
INTRO = "はじめに。この文書は日本の山について説明します。第一章では富士山を取り上げます。"


@pytest.fixture
def page(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")  # the int8 question path is for CPUs; a GPU would take float32
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    monkeypatch.setenv("RAG_CHUNK_OVERLAP", "8")
    st.cache_resource.clear()  # the cached model and store outlive an AppTest inside one pytest process
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    wait_for_model(at)
    yield at
    st.cache_resource.clear()


@pytest.mark.slow
def test_the_page_is_usable_while_the_model_loads(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The uploader and the library are drawn before the model has loaded; the model's progress shows."""
    import threading

    from pipelines.model.embedder import Embedder

    release = threading.Event()
    real_load = Embedder.load

    def slow_load(self: Embedder, stage: object = None) -> None:
        release.wait(60)  # a model that takes as long as the test wants
        real_load(self, stage)  # type: ignore[arg-type]

    monkeypatch.setattr(Embedder, "load", slow_load)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    try:
        started = time.monotonic()
        at.run()
        assert time.monotonic() - started < 10  # drawn without waiting for the model (3 s in a browser, unloaded)
        assert not at.exception
        assert at.file_uploader[0].label.startswith("PDF")
        assert "まだ文書がありません" in texts(at)
        assert any("を読み込んでいます" in i.value for i in at.info)
        assert not any(c.value.startswith("埋め込みモデル: ") for c in at.caption)
        release.set()
        wait_for_model(at)
        assert not any("を読み込んでいます" in i.value for i in at.info)
    finally:
        release.set()
        st.cache_resource.clear()


def test_empty_page_says_what_to_do(page: AppTest) -> None:
    assert not page.exception
    assert page.title[0].value == "日本語文書検索"
    assert "まだ文書がありません" in page.info[0].value
    assert page.button[0].label == "取り込む"
    assert page.button[0].disabled
    # the precisions the embedder chose after its checks and timing (the fastest that passes on this CPU), or
    # float32 while a first start on this machine prepares them
    model_line = next(c for c in page.caption if c.value.startswith("埋め込みモデル: "))
    assert re.search(
        r"・ 計算精度: 文書 (int8|bfloat16|float32)(（より速い精度を準備中）)?、質問 (int8|bfloat16|float32)(（より速い精度を準備中）)? ・ "
        r"トークンの数え方: モデルのトークナイザー$",
        model_line.value,
    )


def test_upload_ingest_and_ask(page: AppTest) -> None:
    uploader = page.file_uploader[0]
    uploader.set_value(
        [
            ("富士山.pdf", make_pdf([[INTRO], [FUJI]]), "application/pdf"),
            ("東京.txt", TOKYO.encode("cp932"), "text/plain"),
            ("壊れた.pdf", b"%PDF-1.4 garbage", "application/pdf"),
        ]
    )
    page.run()
    page.button[0].click().run()
    assert not page.exception
    reports = [s.value for s in page.success] + [e.value for e in page.error]
    assert any(r.startswith("富士山\\.pdf: 追加") for r in reports)
    assert any(r.startswith("東京\\.txt: 追加（1 チャンク）") for r in reports)
    assert any(r.startswith("壊れた\\.pdf: 失敗") and "PDF" in r for r in reports)
    assert page.subheader[1].value == "登録済みの文書（2 件）"

    page.text_input[0].input(FUJI).run()
    assert not page.exception
    shown = texts(page)
    assert "**1 位** 類似度" in shown
    assert "富士山\\.pdf ・ 2 ページ ・ チャンク 1" in shown
    assert escape(FUJI) in shown


def test_cards_highlight_words_and_the_best_sentence(page: AppTest) -> None:
    text = "有給休暇は入社して六か月後から取得できます。申請は上長に行います。"
    page.file_uploader[0].set_value(("規程.txt", text.encode(), "text/plain"))
    page.run()
    page.button[0].click().run()
    page.text_input[0].input("有給休暇は入社後いつから取れますか？").run()
    assert not page.exception
    card = next(m.value for m in page.markdown if ":orange[" in m.value)
    assert ":orange[有給休暇]" in card
    assert ":orange[入社]" in card
    assert card.count("**") == 2  # one sentence emphasised
    expander = page.expander[0]
    assert expander.label == "前後の文を表示"
    assert "（文書の先頭です）" in [m.value for m in expander.markdown]


def test_recent_questions_and_document_filter(page: AppTest) -> None:
    page.file_uploader[0].set_value(
        [("東京.txt", TOKYO.encode(), "text/plain"), ("富士山.txt", FUJI.encode(), "text/plain")]
    )
    page.run()
    page.button[0].click().run()
    page.multiselect[0].select("富士山.txt").run()
    page.text_input[0].input(TOKYO).run()
    assert not page.exception
    captions = [c.value for c in page.caption]
    assert any(c.startswith("富士山\\.txt ・ チャンク") for c in captions)  # a text file has no page
    assert not any(c.startswith("東京\\.txt ・") for c in captions)
    page.text_input[0].input("二つ目の質問").run()
    recent = [b.label for b in page.button if b.key and b.key.startswith("recent-")]
    assert recent == ["二つ目の質問", TOKYO]
    next(b for b in page.button if b.label == TOKYO).click().run()
    assert page.text_input[0].value == TOKYO


def test_retrieval_mode_choice_shows_its_rule_and_every_score(page: AppTest) -> None:
    page.file_uploader[0].set_value(
        [("東京.txt", TOKYO.encode(), "text/plain"), ("富士山.txt", FUJI.encode(), "text/plain")]
    )
    page.run()
    page.button[0].click().run()
    mode = page.radio[0]
    assert mode.label == "検索方式"
    assert mode.value == "hybrid"
    page.text_input[0].input("標高").run()
    shown = texts(page)
    assert "並び順（ハイブリッド）" in shown
    assert "BM25 **" in shown
    mode.set_value("keyword").run()
    assert not page.exception
    shown = texts(page)
    assert "並び順（キーワード）: BM25" in shown
    cards = [m.value for m in page.markdown if "位** 類似度" in m.value]
    assert len(cards) == 1  # only 富士山.txt shares a word with the question
    assert "キーワード 1 位" in cards[0]
    mode.set_value("dense").run()
    cards = [m.value for m in page.markdown if "位** 類似度" in m.value]
    assert len(cards) == 2  # by meaning, every document is a candidate
    assert "並び順（意味（ベクトル））: コサイン類似度" in texts(page)


def escape(text: str) -> str:
    from app import escape_markdown

    return escape_markdown(text)


def test_delete_needs_confirmation(page: AppTest) -> None:
    page.file_uploader[0].set_value(("東京.txt", TOKYO.encode(), "text/plain"))
    page.run()
    page.button[0].click().run()
    next(s for s in page.selectbox if s.label == "削除する文書").select("東京.txt").run()
    delete = next(b for b in page.button if b.label == "削除")
    assert delete.disabled
    page.checkbox[0].check().run()
    next(b for b in page.button if b.label == "削除").click().run()
    assert not page.exception
    assert "まだ文書がありません" in page.info[0].value


@pytest.mark.slow
def test_model_error_is_explained_not_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(tmp_path / "ない"))
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    deadline = time.monotonic() + 30
    while not at.error and time.monotonic() < deadline:  # the model loads (and fails) in the background
        time.sleep(0.2)
        at.run()
    assert not at.exception
    assert "埋め込みモデルを読み込めませんでした" in at.error[0].value
    assert "ない" in at.error[0].value  # the directory it looked for
    assert "RAG\\_EMBEDDING\\_MODEL" in at.info[0].value
    assert at.file_uploader  # the rest of the page is still there
    assert [b.label for b in at.button if b.label == "もう一度読み込む"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("<script>alert(1)</script>", "\\<script\\>alert\\(1\\)\\</script\\>"),
        ("[link](javascript:alert(1))", "\\[link\\]\\(javascript\\:alert\\(1\\)\\)"),
        ("**太字** と $x$", "\\*\\*太字\\*\\* と \\$x\\$"),
        ("一行目\n二行目", "一行目  \n二行目"),
    ],
)
def test_document_text_is_escaped(raw: str, shown: str) -> None:
    assert escape(raw) == shown


def ingest_and_ask(page: AppTest, question: str) -> None:
    page.file_uploader[0].set_value(
        [("富士山.txt", FUJI.encode(), "text/plain"), ("東京.txt", TOKYO.encode(), "text/plain")]
    )
    page.run()
    page.button[0].click().run()
    if page.chat_input:  # a chat model is configured: the page is a conversation
        page.chat_input[0].set_value(question).run()
    else:
        page.text_input[0].input(question).run()
    assert not page.exception


def test_answer_panel_streams_a_cited_answer_above_the_cards(
    page: AppTest, chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_model(monkeypatch, chat_server)
    chat_server.replies = [Reply("富士山の標高は三七七六メートルです[1]。**太字**にはならない[5]")]
    ingest_and_ask(page, FUJI)
    assert [m.proto.name for m in page.get("chat_message")] == ["user", "assistant"]
    shown = texts(page)
    assert "富士山の標高は三七七六メートルです\\[1\\]。\\*\\*太字\\*\\*にはならない\\[5\\]" in shown
    assert "\\[1\\] 1 位の箇所: 富士山\\.txt" in shown
    assert "回答にある \\[5\\] は渡した箇所にない番号のため、出典から外しました。" in shown
    assert "**1 位** 類似度" in shown  # the cards are there too
    assert len(chat_server.requests) == 1
    page.run()  # another action on the page keeps the answer without asking the model again
    assert len(chat_server.requests) == 1
    assert "\\[1\\] 1 位の箇所: 富士山\\.txt" in texts(page)


def test_answer_panel_without_a_model_says_how_to_turn_it_on(page: AppTest) -> None:
    ingest_and_ask(page, FUJI)
    assert "回答" not in [h.value for h in page.subheader]
    assert any(c.value.startswith("回答の生成は設定されていません。RAG\\_LLM\\_URL") for c in page.caption)
    assert "**1 位** 類似度" in texts(page)


def test_answer_panel_with_a_failing_model_shows_why_and_the_cards(
    page: AppTest, chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_model(monkeypatch, chat_server)
    chat_server.replies = [Reply(status=500), Reply(status=500), Reply("首都は東京です[1]。")]
    ingest_and_ask(page, TOKYO)
    (error,) = page.error
    assert error.value.startswith("回答を作れませんでした。回答用の言語モデル（テスト用モデル、")
    assert "HTTP 500" in error.value
    assert "見つかった箇所は下に表示しています。" in error.value
    assert "**1 位** 類似度" in texts(page)
    next(b for b in page.button if b.label == "もう一度回答を作る").click().run()
    assert not page.error
    assert "首都は東京です\\[1\\]。" in texts(page)


def test_an_upload_that_waits_for_another_says_so(tmp_path: Path, model_dir: Path) -> None:
    """While another upload holds a collection's writer, the next one is told it waits (順番待ち), then goes on in turn."""
    import threading

    from pipelines.service.library import Library
    from pipelines.settings import Settings

    library = Library(Settings.from_env({}, data_dir=tmp_path, embedding_model=str(model_dir)))
    said: list[str] = []
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def other() -> None:
        with library.writing("default"):
            holding.set()
            release.wait(10)
            order.append("ほかの取り込み")

    def upload() -> None:
        with library.writing("default", lambda: said.append("順番待ち")):
            order.append("規程.pdf")

    first = threading.Thread(target=other)
    first.start()
    assert holding.wait(10)
    waiting = threading.Thread(target=upload)
    waiting.start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.01)
    assert said == ["順番待ち"]
    assert order == []  # still waiting its turn
    release.set()
    first.join(10)
    waiting.join(10)
    assert order == ["ほかの取り込み", "規程.pdf"]
    with library.writing("default", lambda: said.append("順番待ち")):  # a free writer: no word about waiting
        pass
    assert len(said) == 1


def test_collection_selector_keeps_uploads_and_searches_apart(page: AppTest) -> None:
    """Uploads and searches go to the chosen collection; a collection is created and, once confirmed, deleted."""
    assert page.selectbox(key="collection").value == "default"
    page.text_input(key="new-collection").input("人事規程")
    page.button(key="create-collection").click().run()
    assert not page.exception
    assert page.selectbox(key="collection").value == "人事規程"  # the new one is chosen
    assert any("「人事規程」を作りました" in s.value for s in page.success)
    page.file_uploader[0].set_value(("東京.txt", TOKYO.encode(), "text/plain"))
    page.run()
    page.button[0].click().run()
    assert page.subheader[1].value == "登録済みの文書（1 件）"
    assert page.selectbox(key="collection").options == ["default", "人事規程"]
    page.text_input(key="question").input(TOKYO).run()
    assert "東京\\.txt ・ チャンク 0" in texts(page)
    page.selectbox(key="collection").select("default").run()
    assert not page.exception
    assert "まだ文書がありません" in texts(page)  # nothing of 人事規程 is found from default
    assert page.subheader[1].value == "登録済みの文書（0 件）"
    assert page.button(key="delete-collection").disabled  # default cannot be deleted
    page.selectbox(key="collection").select("人事規程").run()
    assert page.button(key="delete-collection").disabled  # not before it is confirmed
    page.checkbox(key="confirm-collection").check().run()
    page.button(key="delete-collection").click().run()
    assert not page.exception
    assert page.selectbox(key="collection").value == "default"
    assert page.selectbox(key="collection").options == ["default"]
    assert any("「人事規程」を削除しました（1 文書、1 チャンク）" in s.value for s in page.success)


def test_a_configured_collection_that_does_not_exist_is_said(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAG_COLLECTION naming no collection: the page opens default and says so, until the collection is made."""
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(model_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    monkeypatch.setenv("RAG_COLLECTION", "技術文書")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.selectbox(key="collection").value == "default"
    assert any("コレクション「技術文書」がないため、default を開いています" in w.value for w in at.warning)
    at.text_input(key="new-collection").input("技術文書")
    at.button(key="create-collection").click().run()
    assert at.selectbox(key="collection").value == "技術文書"
    assert not any("がないため" in w.value for w in at.warning)
    st.cache_resource.clear()


def test_a_views_link_opens_its_collection(page: AppTest, model_dir: Path) -> None:
    """A passage's link carries its collection: a colleague's new session opens that collection and the view."""
    page.text_input(key="new-collection").input("人事規程")
    page.button(key="create-collection").click().run()
    page.file_uploader[0].set_value(("東京.txt", TOKYO.encode(), "text/plain"))
    page.run()
    page.button[0].click().run()
    page.text_input(key="question").input(TOKYO).run()
    page.button(key="open-1").click().run()
    assert dict(page.query_params) == {"doc": "東京.txt", "chunk": "0", "collection": "人事規程"}
    colleague = AppTest.from_file(APP, default_timeout=60)
    for key, value in page.query_params.items():
        colleague.query_params[key] = value
    colleague.run()
    wait_for_model(colleague)
    assert not colleague.exception
    assert colleague.selectbox(key="collection").value == "人事規程"
    assert any(s.value == "原文: 東京.txt" for s in colleague.subheader)
    assert not any("登録されていません" in w.value for w in colleague.warning)


def test_the_uploader_says_the_ingests_limit_in_japanese(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The browser refuses what the ingest would (RAG_MAX_UPLOAD_MB), and says so in Japanese, not "200MB per file"."""
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", str(tmp_path / "ない"))  # the uploader needs no model
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "7")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.file_uploader[0].proto.max_upload_size_mb == 7
    styles = [element.proto.body for element in at.get("html")]
    assert any('content: "1 ファイル 7 MB まで' in style and 'content: "ファイルを選択"' in style for style in styles)


def test_the_best_sentence_is_bold_where_another_sentence_follows() -> None:
    """「。**申請」 would not close in Markdown (its ``**`` was shown as it is): a zero-width space sits inside each."""
    from markdown_it import MarkdownIt

    from app import ZWSP, render_passage

    text = "第1条\n入社した社員には、十日の年次有給休暇を付与する。申請は上長に行うこと。"
    shown = render_passage(text, ["有給休暇"], (text.index("入社"), text.index("申請")))
    assert shown == (
        f"第1条  \n**{ZWSP}入社した社員には、十日の年次:orange[有給休暇]を付与する。{ZWSP}**申請は上長に行うこと。"
    )
    html = MarkdownIt("commonmark").render(shown)  # CommonMark's rules for ``**``, as the page's renderer has them
    assert "**" not in html
    assert f"<strong>{ZWSP}入社した社員には、十日の年次:orange[有給休暇]を付与する。{ZWSP}</strong>申請" in html
    assert "**" in MarkdownIt("commonmark").render(shown.replace(ZWSP, ""))  # without it, as before


def test_an_administrator_reads_the_audit_log_in_the_sidebar(page: AppTest) -> None:
    """The page's caller has every right: 「監査ログ」 lists the latest acts, newest first, in the catalogue's words."""
    page.file_uploader[0].set_value(("東京.txt", TOKYO.encode(), "text/plain"))
    page.run()
    page.button[0].click().run()
    page.text_input[0].input("首都").run()
    page.run()  # the sidebar is drawn before the question is searched: the next run lists it
    assert not page.exception
    assert "監査ログ" in [e.label for e in page.sidebar.expander]
    table = page.sidebar.dataframe[0].value
    assert list(table.columns) == list(words.AUDIT_COLUMNS)
    assert list(table["操作"][:2]) == ["検索", "取り込み"]
    assert list(table["だれが"][:2]) == ["page", "page"]
    assert table["内容"][0] == "首都"


def test_an_administrator_syncs_a_share_from_the_sidebar(page: AppTest, tmp_path: Path) -> None:
    """「同期元」 lists the collection's share with its last sync; 「今すぐ同期」 brings its files in; a card says where its file lies."""
    from testkit.cli import run

    share = tmp_path / "共有"
    (share / "規程").mkdir(parents=True)
    (share / "規程" / "東京.txt").write_text(TOKYO, encoding="utf-8")
    (share / "規程" / "~$東京.docx").write_text("lock", encoding="utf-8")
    assert run("sources", "add", str(share))[0] == 0
    page.run()
    assert words.SOURCES_TITLE in [e.label for e in page.sidebar.expander]
    assert "まだ同期していません" in texts(page)
    next(b for b in page.sidebar.button if b.label == words.SYNC_NOW).click().run()
    assert not page.exception
    shown = texts(page).replace("\\", "")  # the page escapes Markdown
    assert f"{share}: 追加 1" in shown
    assert "完了 ・ 1 ファイル" in shown
    assert "規程/東京.txt" in shown  # in the library
    page.text_input[0].input("首都").run()
    assert f"{words.ORIGIN_LABEL}: {share / '規程' / '東京.txt'}" in [c.value.replace("\\", "") for c in page.caption]
