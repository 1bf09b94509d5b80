"""End to end in a real browser: `streamlit run app.py`, Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.service.library import Library
from pipelines.service.results import Caller
from pipelines.service.service import Service
from pipelines.settings import Settings
from testkit.documents import make_pdf
from testkit.oidc import CLIENT_ID, CLIENT_SECRET, Provider
from testkit.servers import ChatServer, Reply

pytestmark = pytest.mark.browser  # Chromium through Playwright, against `streamlit run`

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INTRO = "はじめに。この文書は日本の山について説明します。第一章では富士山を取り上げます。"
FUJI = "富士山は日本で最も高い山で、標高は三七七六メートルです。"
HOSTILE = ["<script>alert('x')</script>", "<img src=x onerror=alert(2)>", "[リンク](javascript:alert(3))"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(model_dir: Path, tmp_path: Path) -> Iterator[str]:
    with serving(model_dir, tmp_path) as url:
        yield url


@contextlib.contextmanager
def serving(model_dir: Path, tmp_path: Path, **settings: str) -> Iterator[str]:
    """``streamlit run app.py`` on a free port with the offline model and a data directory in ``tmp_path``."""
    port = free_port()
    # a model directory beside the page, named as a person would name it (shown on the page, and in the screenshot)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny-glucose").symlink_to(model_dir, target_is_directory=True)
    env = {
        **os.environ,
        "RAG_EMBEDDING_MODEL": "models/tiny-glucose",
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_CHUNK_TOKENS": "48",
        "RAG_CHUNK_OVERLAP": "8",
        **settings,
    }
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address", "127.0.0.1"]
    command += ["--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"streamlit did not start:\n{output}")
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


RULES = (
    "第1条（年次有給休暇）\n入社して六か月が経過した社員には、十日の年次有給休暇を付与する。"
    "申請は、取得する日の三日前までに上長に行うこと。\n"
    "第2条（在宅勤務）\n在宅勤務は週に二日までとし、前日までに申請する。"
)


def test_upload_ask_and_see_the_passage(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium fonts-ipafont-gothic"
    pdf = tmp_path / "富士山の資料.pdf"
    pdf.write_bytes(make_pdf([[INTRO], [FUJI]]))
    rules = tmp_path / "就業規則.txt"
    rules.write_text(RULES, encoding="utf-8")
    note = tmp_path / "<img src=x onerror=alert(9)>注意.txt"
    note.write_text("。\n".join(HOSTILE) + "。", encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ja-JP")
        dialogs: list[str] = []

        def refuse(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", refuse)
        opened = time.monotonic()
        page.goto(server)
        # the page draws itself first: the uploader is there while the model loads behind it (the model
        # starts loading only once the page is drawn, so the notice is up when the uploader appears,
        # however fast or slow this machine is)
        expect(page.locator("input[type=file]")).to_be_attached(timeout=60_000)
        drawn = time.monotonic() - opened
        assert page.get_by_text("埋め込みモデル「models/tiny-glucose」を読み込んでいます").is_visible()
        expect(page.get_by_text("まだ文書がありません")).to_be_visible(timeout=60_000)
        print(f"uploader drawn {drawn:.1f} s after opening the page, before the model was loaded")
        # Streamlit's English words on the uploader ("Upload", "200MB per file") give way to Japanese ones
        button = page.locator("[data-testid=stFileUploaderDropzone] button p")
        hint = page.locator("[data-testid=stFileUploaderDropzoneInstructions] span")
        for words in (button, hint):
            expect(words).to_have_css("font-size", "0px")
        after = "element => getComputedStyle(element, '::after').content"
        assert button.evaluate(after) == '"ファイルを選択"'
        assert hint.evaluate(after).startswith('"1 ファイル 50 MB まで。')

        page.locator("input[type=file]").set_input_files([str(pdf), str(rules)])
        page.get_by_role("button", name="取り込む").click()
        expect(page.get_by_text("富士山の資料.pdf: 追加")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("就業規則.txt: 追加")).to_be_visible()
        # the loading notice gave way to the model's line by itself, in its place (no rerun of the whole page)
        expect(page.get_by_text("計算精度", exact=False)).to_be_visible(timeout=10_000)
        expect(page.get_by_text("を読み込んでいます", exact=False)).to_have_count(0)

        page.get_by_label("質問").fill("日本で一番高い山の標高は？")
        page.get_by_label("質問").press("Enter")
        expect(page.get_by_text("1 位").first).to_be_visible(timeout=60_000)
        cards = page.locator("[class*='st-key-card-']")
        fuji = cards.filter(has_text="三七七六メートル").first
        expect(fuji).to_contain_text("富士山の資料.pdf ・ 2 ページ")
        expect(fuji).to_contain_text("類似度")
        expect(page.get_by_text("埋め込みモデル: ")).to_be_visible()

        screenshot = tmp_path / "screenshot.png"
        page.screenshot(path=str(screenshot), full_page=True)

        # each card's best sentence is bold, and no "**" is left over (「…する。**申請」 would not close)
        question = "有給休暇は入社してから何日もらえますか？"
        page.get_by_label("質問").fill(question)
        page.get_by_label("質問").press("Enter")
        expect(page.locator("[class*='st-key-recent-']").filter(has_text=question)).to_be_visible(timeout=60_000)
        passages = cards.locator(
            "[data-testid=stMarkdownContainer]:not([data-testid=stExpander] *)", has_text="第"
        )  # not the sentences around a passage, in its expander
        expect(passages.first).to_be_visible()
        for passage in passages.all():
            assert "**" not in passage.inner_text()
            expect(passage.locator("strong")).to_have_count(1)

        # a document's markup is shown as its characters and never runs (a second visit, its own upload)
        page.close()
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ja-JP")
        page.on("dialog", refuse)
        page.goto(server)
        expect(page.get_by_text("登録済みの文書（2 件）")).to_be_visible(timeout=60_000)
        page.locator("input[type=file]").set_input_files([str(note)])
        page.get_by_role("button", name="取り込む").click()
        expect(page.get_by_text("<img src=x onerror=alert(9)>注意.txt: 追加")).to_be_visible(timeout=60_000)
        page.get_by_label("質問").fill(HOSTILE[0])
        page.get_by_label("質問").press("Enter")
        recent = page.locator("[class*='st-key-recent-']")
        cards = page.locator("[class*='st-key-card-']")
        expect(recent.filter(has_text=HOSTILE[0])).to_be_visible(timeout=60_000)  # drawn when the run ends
        shown = "\n".join(cards.all_inner_texts())
        for line in HOSTILE:
            assert line in shown
        assert "<img src=x onerror=alert(9)>注意.txt ・ チャンク 0" in shown  # a text file has no page
        # no element that could run script exists, so no dialog can still be on its way
        assert page.locator("a[href^='javascript']").count() == 0
        assert page.locator("img[src=x]").count() == 0
        assert page.locator("script:has-text('alert')").count() == 0
        assert dialogs == []
        browser.close()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SCREENSHOT_TO"):
        shutil.copy(screenshot, os.environ["SCREENSHOT_TO"])


def test_office_documents_upload_and_cards_say_where_each_passage_is(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from testkit.office import make_branch_pptx, make_produce_xlsx, make_trip_docx

    files = {"出張規程.docx": make_trip_docx(), "青果.xlsx": make_produce_xlsx(), "支店報告.pptx": make_branch_pptx()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ja-JP")
        page.goto(server)
        expect(page.locator("input[type=file]")).to_be_attached(timeout=60_000)
        page.locator("input[type=file]").set_input_files([str(tmp_path / name) for name in files])
        page.get_by_role("button", name="取り込む").click()
        for name in files:
            expect(page.get_by_text(f"{name}: 追加")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("支店報告.pptx — 2 スライド")).to_be_visible()
        page.get_by_label("質問").fill("ドリアンの単価と出張の日当と新潟支店の売上")
        page.get_by_label("質問").press("Enter")
        cards = page.locator("[class*='st-key-card-']")
        expect(cards.filter(has_text="品目: ドリアン").first).to_contain_text(
            "青果.xlsx ・ シート 青果 ・ ", timeout=60_000
        )
        # the card whose passage is 2.1 (a neighbouring card's 「前後の文」 may hold the same words)
        trip = cards.filter(has_text="出張規程.docx ・ 第2章 出張 > 2.1 旅費").first
        expect(trip).to_contain_text("日当は一日三千円")
        expect(cards.filter(has_text="一割増").first).to_contain_text("支店報告.pptx ・ スライド ")

        # each opens where it stands: the sheet's rows with the passage's marked, the Word text, the slide
        viewer = page.locator("[class*='st-key-viewer']")
        cards.filter(has_text="品目: ドリアン").first.get_by_role("button", name="原文を開く").click()
        expect(viewer).to_contain_text("シート 青果", timeout=60_000)
        marked = viewer.locator("tr").filter(has_text="●")
        expect(marked.filter(has_text="品目: ドリアン")).to_have_count(1)
        expect(viewer.locator("tr").filter(has_text="品目: りんご")).to_be_visible()
        trip.get_by_role("button", name="原文を開く").click()
        expect(viewer).to_contain_text("原文: 出張規程.docx", timeout=60_000)
        expect(viewer).to_contain_text("出張の日当は一日三千円です。")
        cards.filter(has_text="一割増").first.get_by_role("button", name="原文を開く").click()
        expect(viewer).to_contain_text("原文: 支店報告.pptx", timeout=60_000)
        expect(viewer).to_contain_text("新潟支店の売上は前年比一割増でした。")
        viewer.get_by_role("button", name="閉じる").click()
        expect(viewer).to_have_count(0, timeout=30_000)
        browser.close()


def test_a_card_opens_the_page_its_sentence_is_on_with_the_passage_marked(server: str, tmp_path: Path) -> None:
    from urllib.parse import quote

    from playwright.sync_api import expect, sync_playwright

    biwa = "琵琶湖は滋賀県にある日本最大の湖である。"
    pdf = tmp_path / "琵琶湖.pdf"
    pdf.write_bytes(make_pdf([["日本の湖について述べる。"], [biwa]]))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400}, locale="ja-JP")
        page.goto(server)
        expect(page.locator("input[type=file]")).to_be_attached(timeout=60_000)
        page.locator("input[type=file]").set_input_files([str(pdf)])
        page.get_by_role("button", name="取り込む").click()
        expect(page.get_by_text("琵琶湖.pdf: 追加")).to_be_visible(timeout=60_000)
        page.get_by_label("質問").fill(biwa)
        page.get_by_label("質問").press("Enter")
        card = page.locator("[class*='st-key-card-']").filter(has_text=biwa).first
        expect(card).to_contain_text("琵琶湖.pdf ・ 1–2 ページ", timeout=60_000)  # the chunk runs over the break

        # the download gives back the bytes that were uploaded
        with page.expect_download() as download:
            card.get_by_role("button", name="元のファイルをダウンロード").click()
        assert Path(download.value.path()).read_bytes() == pdf.read_bytes()
        assert download.value.suggested_filename == "琵琶湖.pdf"

        # the view opens on page 2, where the sentence closest to the question is, with the passage marked
        card.get_by_role("button", name="原文を開く").click()
        image = page.locator("[class*='st-key-viewer'] img")
        expect(image).to_have_attribute("alt", "琵琶湖.pdf の 2 ページ（全 2 ページ）、該当箇所に印", timeout=60_000)
        assert "doc=" in page.url
        assert "page=2" in page.url
        page.get_by_role("button", name="前のページ").click()
        expect(image).to_have_attribute("alt", "琵琶湖.pdf の 1 ページ（全 2 ページ）、該当箇所に印", timeout=30_000)

        # the address is a link that reopens the view in a fresh page; a deleted document's link says so
        fresh = browser.new_page(viewport={"width": 1400, "height": 1400}, locale="ja-JP")
        fresh.goto(f"{server}/?doc={quote('琵琶湖.pdf')}&chunk=0&page=2")
        expect(fresh.locator("[class*='st-key-viewer'] img")).to_have_attribute(
            "alt", "琵琶湖.pdf の 2 ページ（全 2 ページ）、該当箇所に印", timeout=60_000
        )
        fresh.goto(f"{server}/?doc={quote('消えた.pdf')}&chunk=0")
        expect(fresh.get_by_text("「消えた.pdf」は登録されていません")).to_be_visible(timeout=60_000)
        fresh.goto(f"{server}/?doc={quote('琵琶湖.pdf')}&chunk=abc")
        expect(fresh.get_by_text("リンクの箇所（chunk）がこの文書にありません")).to_be_visible(timeout=60_000)
        browser.close()


SESSIONS = 3
OWN = [
    "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
    "吾輩は猫である。名前はまだ無い。",
    "会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。",
]
SHARED = "この共通の文書は三つのセッションから同時にアップロードされます。"


def test_sessions_ingesting_and_searching_at_once(server: str, tmp_path: Path) -> None:
    """Three people upload at the same moment (one file each, plus the same shared file), then all ask."""
    from playwright.sync_api import expect, sync_playwright

    from pipelines.store.chroma import ChromaStore

    files = []
    for number, text in enumerate(OWN):
        own = tmp_path / f"個別{number}.txt"
        own.write_text(text, encoding="utf-8")
        files.append(own)
    shared = tmp_path / "共通.txt"
    shared.write_text(SHARED, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = [browser.new_context(locale="ja-JP").new_page() for _ in range(SESSIONS)]
        for page in pages:
            page.goto(server)
            expect(page.get_by_text("まだ文書がありません")).to_be_visible(timeout=60_000)
            # the sessions ingest and search at once with the model loaded (uploading while it loads: the first test)
            expect(page.get_by_text("計算精度", exact=False)).to_be_visible(timeout=120_000)
        for page, own in zip(pages, files, strict=True):
            page.locator("input[type=file]").set_input_files([str(own), str(shared)])
        for page in pages:  # all three runs start before any has finished
            page.get_by_role("button", name="取り込む").click()
        for page, own in zip(pages, files, strict=True):
            expect(page.get_by_text(f"{own.name}: 追加")).to_be_visible(timeout=120_000)
            expect(page.get_by_text("共通.txt: ")).to_be_visible(timeout=120_000)
        for page, text in zip(pages, OWN, strict=True):
            page.get_by_label("質問").fill(text)
            page.get_by_label("質問").press("Enter")
        for page, own in zip(pages, files, strict=True):
            first = page.locator("[class*='st-key-card-1']")
            expect(first).to_contain_text(f"{own.name} ・ チャンク", timeout=60_000)
        browser.close()

    store = ChromaStore.persistent(tmp_path / "data")
    documents = store.documents()
    assert sorted(d.source for d in documents) == sorted([f.name for f in files] + ["共通.txt"])
    assert store.count() == sum(d.chunks for d in documents)  # every document stored once
    store.close()


def test_a_conversation_in_the_browser(model_dir: Path, tmp_path: Path, chat_server: ChatServer) -> None:
    """With a chat model the page is a conversation: a follow-up searched as a standalone question, both turns saved."""
    from playwright.sync_api import expect, sync_playwright

    rules = tmp_path / "就業規則.txt"
    rules.write_text(RULES, encoding="utf-8")
    standalone = "年次有給休暇は入社何か月後から付与されますか？"
    chat_server.replies = [
        Reply("十日の年次有給休暇が付与されます[1]。"),
        Reply(standalone),
        Reply("入社して六か月が経過してからです[1]。"),
    ]
    model = {"RAG_LLM_URL": chat_server.url, "RAG_LLM_MODEL": "テスト用モデル", "RAG_LLM_TIMEOUT": "10"}
    with serving(model_dir, tmp_path, **model) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ja-JP", accept_downloads=True)
        page.goto(url)
        expect(page.locator("input[type=file]")).to_be_attached(timeout=60_000)
        page.locator("input[type=file]").set_input_files([str(rules)])
        page.get_by_role("button", name="取り込む").click()
        expect(page.get_by_text("就業規則.txt: 追加")).to_be_visible(timeout=60_000)
        box = page.get_by_placeholder("質問を入力してください", exact=False)
        messages = page.locator("[data-testid='stChatMessage']")
        for turn, question in enumerate(["有給休暇は何日？", "それは入社何か月後から？"]):
            box.fill(question)
            box.press("Enter")
            # the turn is whole once its cards are drawn under the answer
            answer = messages.nth(2 * turn + 1)
            expect(answer.locator("[class*='st-key-'][class*='card-1']")).to_contain_text(
                "就業規則.txt", timeout=60_000
            )
        expect(messages).to_have_count(4)
        shown = messages.all_inner_texts()
        assert "有給休暇は何日？" in shown[0]
        assert "十日の年次有給休暇が付与されます[1]。" in shown[1]
        assert "それは入社何か月後から？" in shown[2]
        assert f"検索した質問: {standalone}" in shown[3]
        assert "入社して六か月が経過してからです[1]。" in shown[3]
        with page.expect_download() as download:
            page.get_by_role("button", name="会話を保存").click()
        saved = Path(download.value.path()).read_text(encoding="utf-8")
        assert saved.index("有給休暇は何日？") < saved.index("それは入社何か月後から？")
        assert saved.count("- [1] 就業規則.txt") == 2
        browser.close()


def test_a_collection_made_in_the_sidebar_keeps_its_documents_apart(server: str, tmp_path: Path) -> None:
    """Create a collection in the sidebar, upload into it, then switch back: default has none of it."""
    from playwright.sync_api import expect, sync_playwright

    rules = tmp_path / "就業規則.txt"
    rules.write_text(RULES, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ja-JP")
        page.goto(server)
        sidebar = page.locator("[data-testid='stSidebar']")
        expect(sidebar.get_by_text("コレクション", exact=True)).to_be_visible(timeout=60_000)
        # The page reruns itself once the model is loaded, and a click in that instant can be lost: this
        # test, about collections, starts once the model is in.
        expect(page.get_by_text("計算精度", exact=False)).to_be_visible(timeout=120_000)
        sidebar.get_by_text("コレクションの作成・削除").click()
        sidebar.get_by_label("新しいコレクションの名前").fill("人事規程")
        sidebar.get_by_label("新しいコレクションの名前").press("Enter")
        expect(page.locator("[data-testid='stStatusWidget']")).to_be_hidden(timeout=30_000)  # that rerun is over
        sidebar.get_by_role("button", name="作成").click()
        expect(sidebar.get_by_text("コレクション「人事規程」を作りました。")).to_be_visible(timeout=30_000)
        page.locator("input[type=file]").set_input_files([str(rules)])
        page.get_by_role("button", name="取り込む").click()
        expect(page.get_by_text("就業規則.txt: 追加")).to_be_visible(timeout=60_000)
        expect(sidebar.get_by_text("登録済みの文書（1 件）")).to_be_visible()
        sidebar.locator("[data-testid='stSelectbox']").first.click()
        page.get_by_role("option", name="default").click()
        expect(sidebar.get_by_text("登録済みの文書（0 件）")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("まだ文書がありません")).to_be_visible()
        browser.close()


@pytest.mark.server
def test_signing_in_with_openid_connect(model_dir: Path, tmp_path: Path, provider: Provider) -> None:
    """RAG_AUTH=oidc: サインイン at the provider, the policy's collections only, サインアウト."""
    from playwright.sync_api import expect, sync_playwright

    policy = tmp_path / "policy.txt"
    policy.write_text("group:jinji 人事* read\n", encoding="utf-8")
    data = tmp_path / "data"
    service = Service(Library(Settings.from_env({"RAG_DATA_DIR": str(data), "RAG_EMBEDDING_MODEL": str(model_dir)})))
    for name in ("人事規程", "技術資料"):
        service.create_collection(Caller("cli"), name)
    service.close()
    # the page's cwd is tmp_path: Streamlit reads .streamlit/secrets.toml there, and fills in {port}
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-cookie-secret-for-the-test-0123456789"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'server_metadata_url = "{provider.metadata_url}"\n',
        encoding="utf-8",
    )
    with (
        serving(model_dir, tmp_path, RAG_AUTH="oidc", RAG_POLICY_FILE=str(policy)) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ja-JP")
        page.goto(url)
        page.get_by_role("button", name="サインイン").click()
        page.get_by_role("button", name="suzuki").click()  # the provider's form: a predefined person
        sidebar = page.locator("[data-testid='stSidebar']")
        expect(sidebar.get_by_text("suzuki としてサインインしています")).to_be_visible(timeout=60_000)
        sidebar.locator("[data-testid='stSelectbox']").first.click()
        expect(page.get_by_role("option")).to_have_text(["人事規程"])
        page.keyboard.press("Escape")
        sidebar.get_by_role("button", name="サインアウト").click()
        # Streamlit forgets the sign-in and sends the browser to the provider's end of session, which asks first
        end = page.get_by_role("button", name="End session")
        again = page.get_by_role("button", name="サインイン")
        expect(end.or_(again)).to_be_visible(timeout=60_000)
        if end.is_visible():
            end.click()
            page.goto(url)
        expect(again).to_be_visible(timeout=60_000)
        expect(page.get_by_text("suzuki としてサインインしています")).to_have_count(0)
        browser.close()
