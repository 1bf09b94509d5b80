"""Streamlit page: upload Japanese documents, ask in Japanese, browse the passages found, and read a cited answer."""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath

import streamlit as st

from ingest.document import describe
from ingest.errors import IngestError
from ingest.limits import Limits
from ingest.loaders import SUPPORTED_SUFFIXES, kind_of
from ingest.ocr import OcrOptions
from pipelines.answers.answer import Answer, Answerer
from pipelines.answers.conversation import Conversation, Turn
from pipelines.choices import MODE_LABELS, MODES, Mode
from pipelines.errors import GenerationError, RagError, SettingsError
from pipelines.model.warmup import ModelWarmup
from pipelines.search.highlight import query_terms, term_spans
from pipelines.search.page_view import render_page
from pipelines.search.retrieval import Hit
from pipelines.search.text_views import document_view, rows_view, slide_view
from pipelines.search.viewer import view_for
from pipelines.service.compose import Pipelines
from pipelines.service.library import Library
from pipelines.service.querylog import LoggedQuery, QueryLog, Target
from pipelines.settings import Settings
from pipelines.store.chroma import StoredChunk, StoredDocument
from pipelines.store.collections import DEFAULT, clean_name
from pipelines.store.indexing import FileReport, mixed_precisions

STATUS_LABELS = {
    "added": "追加しました",
    "replaced": "新しい版に置き換えました",
    "unchanged": "変更がないため、そのままです",
    "duplicate": "同じ内容の文書があります",
    "failed": "取り込めませんでした",
}
# seconds between drawing the page and starting to load the model (sooner when an action needs it)
SETTLE_SECONDS = 3.0
ZWSP = "\u200b"  # a zero-width space: no width, and to Markdown neither a space nor punctuation
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def escape_markdown(text: str) -> str:
    """Text from a document shown as itself: no Markdown, HTML, links or formulas; line breaks kept."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


@st.cache_resource(show_spinner=False)
def open_library(settings: Settings) -> tuple[Library, ModelWarmup]:
    """The collections' parts, shared by every session of this server process, and the model loading behind them.

    Opening reads the store's list of collections and loads no model, so the page draws at once; the
    model (one for every collection) then loads in a background thread, and what needs it waits for it.
    """
    library = Library(settings)
    return library, ModelWarmup(library.embedder)  # started once the page is drawn (main)


def collection_panel(library: Library) -> Pipelines:
    """The collection selector at the top of the sidebar; uploads, the library and searches use the chosen one."""
    names = library.names()
    linked = st.query_params.get("collection")
    if linked and "collection" not in st.session_state and linked in names:
        st.session_state["collection"] = linked  # a view's link, opened in a new session, opens its collection
    if st.session_state.get("collection") not in names:  # first run, or deleted by another session
        chosen = clean_name(library.settings.collection)
        st.session_state["collection"] = chosen if chosen in names else DEFAULT
        if chosen not in names:
            st.session_state["collection-missing"] = chosen
    pipelines = library.pipelines(st.selectbox("コレクション", names, key="collection"))
    missing = st.session_state.get("collection-missing")
    if missing and missing in names:  # made since (in the sidebar below, or by another session)
        del st.session_state["collection-missing"]
    elif missing:
        st.warning(
            f"RAG_COLLECTION のコレクション「{escape_markdown(missing)}」がないため、{DEFAULT} を開いています。"
            "下の「コレクションの作成・削除」で作れます。"
        )
    return pipelines


def manage_collections(library: Library) -> None:
    """Create a collection, or delete the chosen one with everything in it once confirmed."""
    with st.expander("コレクションの作成・削除"):
        st.text_input("新しいコレクションの名前", key="new-collection", placeholder="例: 人事規程")
        st.button("作成", key="create-collection", on_click=_create_collection, args=(library,))
        name = st.session_state.get("collection", DEFAULT)
        default = name == DEFAULT
        confirmed = st.checkbox(
            f"「{escape_markdown(name)}」を、文書・元のファイルごと削除してよい",
            key="confirm-collection",
            disabled=default,
        )
        st.button(
            "コレクションを削除",
            key="delete-collection",
            disabled=default or not confirmed,
            help="既定のコレクション default は削除できません。" if default else None,
            on_click=_delete_collection,
            args=(library, name),
        )
    said = st.session_state.pop("collection-said", None)
    if said is not None:
        (st.success if said[0] else st.error)(escape_markdown(said[1]))


def _create_collection(library: Library) -> None:
    try:
        made = library.create(st.session_state.get("new-collection", ""))
    except RagError as error:
        st.session_state["collection-said"] = (False, str(error))
        return
    st.session_state["collection"] = made.name  # a callback runs before the widgets: the selector shows it
    st.session_state["new-collection"] = ""
    st.session_state["collection-said"] = (True, f"コレクション「{made.name}」を作りました。")


def _delete_collection(library: Library, name: str) -> None:
    st.session_state["confirm-collection"] = False
    try:
        removed = library.delete(name)
    except RagError as error:
        st.session_state["collection-said"] = (False, str(error))
        return
    st.session_state["collection"] = DEFAULT
    st.session_state["collection-said"] = (
        True,
        f"コレクション「{removed.name}」を削除しました（{removed.documents} 文書、{removed.chunks} チャンク）。",
    )


def model_error(error: RagError) -> None:
    """Why the model could not be loaded, as the page says it wherever the model was needed."""
    st.error(f"埋め込みモデルを読み込めませんでした。\n\n{escape_markdown(str(error))}")


def model_ready(warmup: ModelWarmup) -> bool:
    """Wait for the model (with a spinner); False, with the reason shown, when it cannot be loaded."""
    try:
        if not warmup.ready:
            with st.spinner(f"埋め込みモデルの読み込みを待っています（{warmup.stage}）…"):
                warmup.wait()
        return True
    except RagError as error:
        model_error(error)
        return False


def model_status(parts: Pipelines, warmup: ModelWarmup) -> None:
    """The model and its precisions once loaded; while it loads, its progress, redrawn every second.

    When loading ends, the fragment draws the outcome in its own place. It does not rerun the whole page:
    a rerun the page starts by itself can swallow a click or an upload the person makes in that instant.
    """
    if warmup.finished:
        model_outcome(parts, warmup)
        return

    @st.fragment(run_every=1.0)
    def progress() -> None:
        if warmup.finished:
            model_outcome(parts, warmup)
            return
        st.info(
            f"埋め込みモデル「{escape_markdown(parts.settings.embedding_model)}」を読み込んでいます"
            f"（{warmup.seconds:.0f} 秒、{warmup.stage}）。初回はモデル（約 0.5 GB）をダウンロードするため、"
            "数分かかることがあります。文書のアップロードと一覧はこのまま使えます。"
        )

    progress()


def model_outcome(parts: Pipelines, warmup: ModelWarmup) -> None:
    """The loaded model's line, or why it could not be loaded and a button to try again."""
    if warmup.ready:
        model_caption(parts)
        return
    if warmup.error is None:
        warmup.wait()  # not a reason for the person but a bug: raised here, Streamlit shows it as one
        return
    model_error(warmup.error)
    st.info(
        "インターネットに接続できない環境では、モデルのディレクトリを用意し、"
        "環境変数 RAG\\_EMBEDDING\\_MODEL にそのパスを指定してから、もう一度読み込んでください。"
    )
    if st.button("もう一度読み込む"):
        open_library.clear()
        st.rerun()


def upload_panel(pipelines: Pipelines, warmup: ModelWarmup) -> None:
    st.subheader("文書を追加")
    limit = pipelines.settings.max_upload_mb
    files = st.file_uploader(
        "PDF・Word・Excel・PowerPoint・HTML・CSV・テキスト・Markdown・画像（複数可）",
        type=[suffix.lstrip(".") for suffix in SUPPORTED_SUFFIXES],
        accept_multiple_files=True,
        max_upload_size=limit,  # the browser refuses a larger file before sending it, as the ingest would
    )
    st.html(uploader_words(limit))
    if not st.button("取り込む", disabled=not files, type="primary") or not model_ready(warmup):
        return
    reports: list[FileReport] = []
    bar = st.progress(0.0, text="取り込みを始めます…")
    files = files or []
    for number, upload in enumerate(files):

        def progress(done: int, total: int, name: str = upload.name, number: int = number) -> None:
            share = (number + done / max(total, 1)) / len(files)
            bar.progress(min(share, 1.0), text=f"{name}: 埋め込み {done}/{total} チャンク")

        def say(text: str, number: int = number) -> None:
            bar.progress(number / len(files), text=text)

        try:
            with turn(pipelines.write_lock, upload.name, say):
                say(f"{upload.name} を読み込んでいます…")
                reports.append(pipelines.indexer.ingest_bytes(upload.name, upload.getvalue(), progress))
        except RagError as error:  # the store or the model refused: no file can go in, so stop here
            st.error(escape_markdown(str(error)))
            break
    bar.progress(1.0, text="取り込みが終わりました")
    for report in reports:
        line = f"{escape_markdown(report.source)}: {STATUS_LABELS[report.status]}"
        notes = "".join(f"（{escape_markdown(note)}）" for note in report.notes)
        if report.status in ("added", "replaced"):
            st.success(f"{line}（{report.chunks} チャンク）{notes}")
        elif report.status == "failed":
            st.error(f"{line}。{escape_markdown(report.message)}")
        else:
            st.info(f"{line}。{escape_markdown(report.message)}" if report.message else line)


def uploader_words(limit_mb: int) -> str:
    """Japanese words for the words Streamlit's uploader has only in English ("Upload", "50MB per file • PDF, …").

    Streamlit offers no setting for them, so a style sheet hides its words and shows these in their place.
    """
    button = '[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p'
    hint = '[data-testid="stFileUploaderDropzoneInstructions"] span'
    return (
        "<style>"
        f"{button}, {hint} {{font-size: 0}}"
        f"{hint} {{white-space: normal}}"
        f'{button}::after {{content: "ファイルを選択"; font-size: 0.875rem}}'
        f'{hint}::after {{content: "1 ファイル {limit_mb} MB まで。ここへのドラッグ＆ドロップでも追加できます"; font-size: 0.875rem}}'
        "</style>"
    )


@contextlib.contextmanager
def turn(lock: threading.Lock, name: str, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the page's write lock for one upload; while another session's upload holds it, say so (順番待ち)."""
    if not lock.acquire(blocking=False):
        say(f"順番待ち: ほかの取り込みが終わるのを待っています（{name}）。検索はこのまま使えます。")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def library_panel(pipelines: Pipelines) -> None:
    documents = pipelines.store.documents()
    st.subheader(f"登録済みの文書（{len(documents)} 件）")
    for document in documents:
        unit = "スライド" if document.kind == "pptx" else "ページ"
        pages = f"{document.pages} {unit}・" if document.pages else ""
        st.caption(f"{escape_markdown(document.source)} — {pages}{document.chunks} チャンク・{document.added_at[:10]}")
    if not documents:
        return
    mixed = mixed_precisions(documents)
    if mixed:
        st.warning(escape_markdown(mixed))
    name = st.selectbox("削除する文書", [d.source for d in documents], index=None, placeholder="選んでください")
    confirmed = st.checkbox("この文書を削除してよい", disabled=name is None)
    if st.button("削除", disabled=not (name and confirmed)) and name:
        with pipelines.write_lock:
            removed = pipelines.indexer.delete(name)
        st.success(f"{escape_markdown(removed.source)} を削除しました（{removed.chunks} チャンク）")
        st.rerun()


def render_passage(text: str, terms: list[str], emphasis: tuple[int, int]) -> str:
    """A passage as safe Markdown: the question's words highlighted, its best sentence in bold.

    Markdown does not close ``**`` between punctuation and a letter, as in 「…する。**申請は」, which is
    where Japanese puts it whenever a sentence follows another (the ``**`` was shown as it is); a
    zero-width space inside each ``**``, to Markdown neither space nor punctuation, lets it open and close.
    """
    start, end = emphasis
    marks = [(a, b) for a, b in term_spans(text, terms) if b <= start or a >= end or start <= a < b <= end]

    def piece(a: int, b: int) -> str:
        out, cursor = [], a
        for x, y in marks:
            if a <= x and y <= b:
                out.append(escape_markdown(text[cursor:x]))
                out.append(f":orange[{escape_markdown(text[x:y])}]")
                cursor = y
        out.append(escape_markdown(text[cursor:b]))
        return "".join(out)

    if start >= end:
        return piece(0, len(text))
    return piece(0, start) + f"**{ZWSP}" + piece(start, end) + f"{ZWSP}**" + piece(end, len(text))


def _ocr(hit: Hit) -> str:
    """The card's word for a passage read from an image: its characters may be misrecognised."""
    return "OCR で読み取り" if hit.ocr else ""


def show_hit(
    pipelines: Pipelines,
    hit: Hit,
    terms: list[str],
    emphasis: tuple[int, int],
    key: str = "",
    footer: Callable[[Hit], None] | None = None,
) -> None:
    """A result card; ``key`` sets its widgets apart from another turn's cards, ``footer`` adds to its end."""
    with st.container(border=True, key=f"{key}card-{hit.rank}"):
        where = "".join(f" ・ {escape_markdown(part)}" for part in (hit.location, _ocr(hit)) if part)
        keyword = f"{hit.keyword_score:.2f}" if hit.keyword_score is not None else "—"
        places = f"意味 {_place(hit.dense_rank)} ・ キーワード {_place(hit.keyword_rank)}"
        rerank = f" ・ 再ランキング **{hit.rerank_score:.3f}**" if hit.rerank_score is not None else ""
        st.markdown(f"**{hit.rank} 位** 類似度 **{hit.cosine:.3f}** ・ BM25 **{keyword}**{rerank} ・ {places}")
        st.progress(min(max(hit.cosine, 0.0), 1.0))
        st.caption(f"{escape_markdown(hit.source)}{where} ・ チャンク {hit.chunk_index}")
        st.markdown(render_passage(hit.text, terms, emphasis))
        card_actions(pipelines, hit, emphasis[0], key)
        with st.expander("前後の文を表示"):
            before, after = pipelines.searcher.surroundings(hit)
            st.caption("前")
            st.markdown(escape_markdown(before) if before else "（文書の先頭です）")
            st.caption("後")
            st.markdown(escape_markdown(after) if after else "（文書の末尾です）")
        if footer is not None:
            footer(hit)


def _place(rank: int | None) -> str:
    return f"{rank} 位" if rank is not None else "候補外"


def no_answer_note() -> None:
    """Without a chat model the page searches only; say how answers and conversations are turned on."""
    st.caption(
        "回答の生成は設定されていません。RAG\\_LLM\\_URL と RAG\\_LLM\\_MODEL を設定すると、"
        "見つかった箇所から出典付きの回答を作り、続けて質問できる会話になります。"
    )


def stream_answer(answerer: Answerer, question: str, hits: list[Hit]) -> Answer | str:
    """The answer built from the passages found, written out as the model streams it; a failure says why."""
    slot = st.empty()
    text = ""
    try:
        passages = answerer.passages(hits)
        for piece in answerer.stream(question, passages):
            text += piece
            slot.markdown(escape_markdown(text) + " ▌")
        return answerer.finish(question, passages, text)
    except GenerationError as error:
        return str(error)


def show_answer(turn: Turn, hits: list[Hit], key: str = "") -> None:
    """An answer with its sources (each opens the original where its passage is), or why there is none."""
    if turn.error:
        st.error(f"回答を作れませんでした。{escape_markdown(turn.error)}\n\n見つかった箇所は下に表示しています。")
        return
    if turn.answered:
        st.markdown(escape_markdown(turn.answer))
    else:
        st.warning(escape_markdown(turn.answer))
    # a citation opens the page its passage's sentence closest to the question is on, as the card does
    pages = {hit.rank: _focus_number(hit, span[0]) for hit, span in zip(hits, turn.emphases, strict=False)}
    for citation in turn.citations:
        where = f" ・ {escape_markdown(citation.location)}" if citation.location else ""
        st.caption(f"\\[{citation.n}\\] {citation.rank} 位の箇所: {escape_markdown(citation.source)}{where}")
        st.button(
            f"[{citation.n}] の原文を開く",
            key=f"{key}cite-{citation.n}",
            on_click=open_view,
            args=(citation.source, citation.chunk_index, pages.get(citation.rank, citation.page)),
            type="tertiary",
        )
    if turn.dropped:
        numbers = "".join(f"\\[{n}\\]" for n in turn.dropped)
        st.warning(f"回答にある {numbers} は渡した箇所にない番号のため、出典から外しました。")
    if turn.passages:
        st.caption(f"回答は上位 {turn.passages} 件の箇所だけから作っています。内容は出典で確かめてください。")


def remember(question: str) -> None:
    """Keep the session's recent questions, newest first, without repeats."""
    recent = [q for q in st.session_state.get("recent", []) if q != question]
    st.session_state["recent"] = [question, *recent][:10]


def _ask_again(question: str) -> None:
    st.session_state["question"] = question


def recent_panel() -> None:
    """Buttons that ask the session's recent questions again."""
    recent = st.session_state.get("recent", [])
    if not recent:
        return
    st.subheader("最近の質問")
    for number, question in enumerate(recent):
        st.button(question, key=f"recent-{number}", width="stretch", on_click=_ask_again, args=(question,))


def model_caption(pipelines: Pipelines) -> None:
    """The model, the precision passages and questions are computed in, and how tokens are counted (reasons on hover)."""
    choice = pipelines.embedder.precision
    counting = pipelines.embedder.counting
    st.caption(
        f"埋め込みモデル: {escape_markdown(pipelines.settings.embedding_model)} ・ "
        f"計算精度: 文書 {choice.passages_label}、質問 {choice.questions_label} ・ "
        f"トークンの数え方: {escape_markdown(counting)}",
        help=escape_markdown(
            f"文書: {choice.passages_reason}\n\n質問: {choice.questions_reason}\n\nトークンの数え方: {counting}"
        ),
    )


def main() -> None:
    st.set_page_config(page_title="日本語文書検索", layout="wide")
    st.title("日本語文書検索")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        st.error(f"設定に誤りがあります。\n\n{escape_markdown(str(error))}")
        st.stop()
        raise  # st.stop() ends the run; this line only satisfies the type checker
    library, warmup = open_library(settings)
    try:
        with st.sidebar:
            pipelines = collection_panel(library)
    except RagError as error:  # the store cannot be opened
        st.error(escape_markdown(str(error)))
        st.stop()
        raise
    model_status(pipelines, warmup)
    with st.sidebar:
        upload_panel(pipelines, warmup)
        library_panel(pipelines)
        recent_slot = st.container()  # filled last, so that it lists this run's question too
        manage_collections(library)
    try:
        viewer_panel(pipelines)
        if settings.llm_url:  # a chat model: a conversation with cited answers
            conversation_panel(pipelines, warmup)
        else:
            search_panel(pipelines, warmup)
    finally:
        with recent_slot:
            recent_panel()
        # after the page is drawn, and a moment later still: the browser needs the CPU to show it
        warmup.start(after=SETTLE_SECONDS)


def search_panel(pipelines: Pipelines, warmup: ModelWarmup) -> None:
    """The question box, the result cards and, when a chat model is set, the answer above them."""
    settings = pipelines.settings
    documents = pipelines.store.documents()
    if not documents:
        st.info(
            "まだ文書がありません。左の「文書を追加」から PDF やテキストをアップロードし、「取り込む」を押してください。"
        )
        return
    question = st.text_input("質問", key="question", placeholder="例: 有給休暇は入社後いつから取れますか？")
    k, mode, chosen = search_options(settings, documents)
    if not question.strip() or not model_ready(warmup):
        return
    try:
        hits = pipelines.searcher.search(question, k, sources=chosen or None, mode=mode)
    except RagError as error:
        st.error(escape_markdown(str(error)))
        return
    remember(question)
    if not hits:
        st.warning("該当する箇所は見つかりませんでした。文書の選択を外すか、言い方を変えてみてください。")
        return
    no_answer_note()
    order_caption(pipelines, mode)
    terms = query_terms(question)
    emphases = pipelines.searcher.best_sentences(question, hits)
    for hit, emphasis in zip(hits, emphases, strict=True):
        show_hit(pipelines, hit, terms, emphasis)


def search_options(settings: Settings, documents: list[StoredDocument]) -> tuple[int, Mode, list[str]]:
    """How many passages, how to order them, and which documents to search (all when none is chosen)."""
    left, middle, right = st.columns([1, 1, 2])
    k = left.slider("表示する件数", min_value=1, max_value=20, value=settings.top_k)
    mode: Mode = middle.radio(
        "検索方式", MODES, index=MODES.index(settings.retrieval_mode), format_func=MODE_LABELS.__getitem__
    )
    chosen = right.multiselect(
        "検索する文書（選ばなければすべて）", [d.source for d in documents], placeholder="すべての文書"
    )
    return k, mode, chosen


def order_caption(pipelines: Pipelines, mode: Mode) -> None:
    """The rule the cards are ordered by, and what each score on them means."""
    st.caption(
        f"並び順（{MODE_LABELS[mode]}）: {pipelines.searcher.rule(mode)}  \n"
        "類似度は質問と各箇所の埋め込みのコサイン類似度（1 に近いほど似ている）、BM25 は質問の語の一致度"
        "（0 は共通の語なし）、意味・キーワードの順位はそれぞれの候補リストでの順位です。"
        "色付きは質問の語、太字は質問に最も近い文です。"
    )


# The conversation (when a chat model is configured): each turn is a question, the question searched
# (a follow-up rewritten to stand alone), the answer with its sources and the cards; 👍/👎 on the
# answer and on each card go to the query log. The turns live in this session's state.


def current_chat() -> Conversation:
    """This session's conversation (a class from an imported module: the script's own are new each run)."""
    chat = st.session_state.get("chat")
    if not isinstance(chat, Conversation):
        chat = st.session_state["chat"] = Conversation()
    return chat


def _new_chat() -> None:
    st.session_state["chat"] = Conversation()


def _ask_again_in_chat(question: str) -> None:
    """Ask the last question again (its answer failed): the turn goes, the question comes back."""
    chat = current_chat()
    if chat.turns:
        chat.turns.pop()
    st.session_state["pending"] = question


def conversation_panel(pipelines: Pipelines, warmup: ModelWarmup) -> None:
    """Earlier turns, the question box at the bottom, 「新しい会話」 and 「会話を保存」 above."""
    documents = pipelines.store.documents()
    if not documents:
        st.info(
            "まだ文書がありません。左の「文書を追加」から PDF やテキストをアップロードし、「取り込む」を押してください。"
        )
        return
    k, mode, chosen = search_options(pipelines.settings, documents)
    chat = current_chat()
    toolbar = st.container()  # filled last: the download holds this run's turn too
    for number, turn in enumerate(chat.turns):
        show_turn(pipelines, chat, number, turn)
    typed = st.chat_input("質問を入力してください（続けて質問すると、それまでの会話を踏まえて検索します）")
    # a recent question from the sidebar, or a failed one asked again
    question = typed or st.session_state.pop("pending", None) or st.session_state.pop("question", None)
    with toolbar:
        chat_toolbar(chat)
    if not question or not question.strip() or not model_ready(warmup):
        return
    if ask_in_chat(pipelines, chat, question, k, mode, chosen):
        st.rerun()  # the whole conversation again, the new turn with its cards and feedback


def chat_toolbar(chat: Conversation) -> None:
    left, right = st.columns(2)
    left.button("新しい会話", on_click=_new_chat, disabled=not chat.turns)
    right.download_button(
        "会話を保存",
        data=chat.markdown(),
        file_name=f"会話-{chat.started[:10]}.md",
        mime="text/markdown",
        on_click="ignore",
        disabled=not chat.turns,
        help="質問・検索した質問・回答と出典（ファイル名と場所）を Markdown で保存します。",
    )


def ask_in_chat(pipelines: Pipelines, chat: Conversation, question: str, k: int, mode: Mode, chosen: list[str]) -> bool:
    """One turn: the question made standalone, searched, logged and answered as it streams; False when it failed."""
    answerer, rewriter = pipelines.answerer, pipelines.rewriter
    # the page is a conversation only with a chat model
    assert answerer is not None
    assert rewriter is not None
    with st.chat_message("user"):
        st.markdown(escape_markdown(question))
    with st.chat_message("assistant"):
        history = chat.turns
        standalone = question
        if history:
            try:
                with st.spinner("それまでの会話を踏まえて、検索する質問を考えています…"):
                    standalone = rewriter.standalone(question, history)
            except GenerationError as error:
                st.warning(f"質問を書き換えられなかったため、入力どおりに検索します。{escape_markdown(str(error))}")
        if standalone != question:
            st.caption(f"検索した質問: {escape_markdown(standalone)}")
        try:
            hits = pipelines.searcher.search(standalone, k, sources=chosen or None, mode=mode)
        except RagError as error:
            st.error(escape_markdown(str(error)))
            return False
        remember(question)
        query_id = _log_turn(pipelines, chat, question, standalone, hits, k, mode, chosen)
        result = stream_answer(answerer, standalone, hits)
    if isinstance(result, Answer):
        _guarded(pipelines.querylog.record_answer, query_id, result.text, [c.to_dict() for c in result.citations])
    emphases = tuple(pipelines.searcher.best_sentences(standalone, hits))
    chat.turns.append(Turn.answering(question, standalone, result, hits, query_id=query_id, emphases=emphases))
    return True


def _log_turn(
    pipelines: Pipelines,
    chat: Conversation,
    question: str,
    standalone: str,
    hits: list[Hit],
    k: int,
    mode: Mode,
    chosen: list[str],
) -> int | None:
    settings = pipelines.settings
    logged = LoggedQuery(
        question=question,
        standalone_question=standalone,
        hits=hits,
        mode=mode,
        k=k,
        face="page",
        conversation=chat.id,
        turn=len(chat.turns),
        sources=chosen,
        embedding_model=settings.embedding_model,
        collection=settings.collection,
    )
    return _guarded(pipelines.querylog.record, logged)


def _guarded(write: Callable[..., object], *args: object) -> int | None:
    """A write to the query log; when the log cannot be written, the conversation goes on and says so."""
    try:
        result = write(*args)
    except RagError as error:
        st.toast(f"質問の記録に書けませんでした。{error}")
        return None
    return result if isinstance(result, int) else None


def show_turn(pipelines: Pipelines, chat: Conversation, number: int, turn: Turn) -> None:
    """A turn of the conversation: the question, what was searched, the answer and its sources, the cards."""
    key = f"{chat.id[:8]}-{number}-"
    with st.chat_message("user"):
        st.markdown(escape_markdown(turn.question))
    with st.chat_message("assistant"):
        if turn.rewritten:
            st.caption(f"検索した質問: {escape_markdown(turn.standalone_question)}")
        hits = list(turn.hits)
        show_answer(turn, hits, key)
        if turn.error and number == len(chat.turns) - 1:
            st.button("もう一度回答を作る", key=f"{key}retry", on_click=_ask_again_in_chat, args=(turn.question,))
        feedback(pipelines.querylog, turn.query_id, "answer", 0, f"{key}answer-")
        if not hits:
            st.warning("該当する箇所は見つかりませんでした。文書の選択を外すか、言い方を変えてみてください。")
            return
        terms = query_terms(turn.standalone_question)

        def judge(hit: Hit) -> None:
            feedback(pipelines.querylog, turn.query_id, "hit", hit.rank, f"{key}hit-{hit.rank}-")

        for hit, emphasis in zip(hits, turn.emphases, strict=True):
            show_hit(pipelines, hit, terms, emphasis, key, judge)


def feedback(querylog: QueryLog, query_id: int | None, target: Target, rank: int, key: str) -> None:
    """👍/👎 and an optional comment on an answer or a card, kept in the query log (none when the log is off)."""
    if not querylog.enabled or query_id is None:
        return
    left, right = st.columns([1, 4], vertical_alignment="center")
    with left:
        st.feedback("thumbs", key=f"{key}rating", on_change=_judged, args=(querylog, query_id, target, rank, key))
    with right.popover("コメント", width="content"):
        st.text_input(
            "コメント（任意）",
            key=f"{key}comment",
            on_change=_judged,
            args=(querylog, query_id, target, rank, key),
            placeholder="例: 2 ページ目の表が答えです",
        )


def _judged(querylog: QueryLog, query_id: int, target: Target, rank: int, key: str) -> None:
    """The rating and comment of one answer or card, as they now stand, into the log."""
    value = st.session_state.get(f"{key}rating")
    rating = None if value is None else (1 if value == 1 else -1)  # st.feedback: 1 is 👍, 0 is 👎
    comment = st.session_state.get(f"{key}comment")
    _guarded(querylog.feedback, query_id, target, rating, comment, rank)


# The view of a passage in its original file (「原文を開く」), opened from a card, a citation or a link.
#
# The view is addressed by query parameters (?doc=…&chunk=…&page=…), so the browser's address is a link
# that reopens it, for a colleague too. Every parameter is checked against the store: the name must be a
# stored document's (a label, never a path), the chunk and page numbers within it. What is shown is
# escaped text, or an image the server rendered.

PARAMS = ("doc", "chunk", "page", "collection")


def _view_params(source: str, chunk: int, page: int | None) -> dict[str, str]:
    """The query parameters that address a passage's view (and its collection, unless it is the default)."""
    collection = st.session_state.get("collection", DEFAULT)
    return {
        "doc": source,
        "chunk": str(chunk),
        **({"page": str(page)} if page else {}),
        **({"collection": collection} if collection != DEFAULT else {}),
    }


def open_view(source: str, chunk: int, page: int | None) -> None:
    """Point the address at a passage's view (a button's callback: the page then reruns and shows it)."""
    st.query_params.from_dict(_view_params(source, chunk, page))


def close_view() -> None:
    for key in PARAMS:
        st.query_params.pop(key, None)


def link(source: str, chunk: int, page: int | None) -> str:
    """The relative link that reopens a view."""
    return "?" + urllib.parse.urlencode(_view_params(source, chunk, page))


def download_name(source: str) -> str:
    """The file name a download is saved under: the document's own, without the folders it was found in."""
    return PurePosixPath(source).name or "document"


def _focus_number(hit: Hit, offset: int) -> int | None:
    """The page (or slide) of the character at ``offset`` of a hit's text."""
    place = hit.place_at(offset)
    return place.page or place.slide


def card_actions(pipelines: Pipelines, hit: Hit, focus: int, key: str = "") -> None:
    """A card's doors into the original: open it at the sentence closest to the question, and download it."""
    kept = pipelines.originals.path(hit.content_hash) is not None
    left, right = st.columns(2)
    left.button(
        "原文を開く",
        key=f"{key}open-{hit.rank}",
        on_click=open_view,
        args=(hit.source, hit.chunk_index, _focus_number(hit, focus)),
        disabled=not kept,
        help=None if kept else _NOT_KEPT,
    )
    right.download_button(
        "元のファイルをダウンロード",
        data=lambda: pipelines.originals.get(hit.content_hash) or b"",
        file_name=download_name(hit.source),
        key=f"{key}download-{hit.rank}",
        on_click="ignore",
        disabled=not kept,
        help=None if kept else _NOT_KEPT,
    )


_NOT_KEPT = (
    "この文書の元のファイルは保存されていません（保存を始める前に取り込まれた文書です）。取り込み直すと保存されます。"
)


def _number(raw: str | None) -> int | None:
    """A query parameter that must be a small positive whole number; None for anything else."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 7:
        return None
    return int(raw)


def viewer_panel(pipelines: Pipelines) -> None:
    """The view the address asks for, when it asks for one; each refusal says why."""
    params = st.query_params
    if "doc" not in params:
        return
    with st.container(border=True, key="viewer"):
        source = params.get("doc", "")
        st.subheader(f"原文: {source}", anchor=False)
        document = next((d for d in pipelines.store.documents() if d.source == source), None)
        chunk_index = _number(params.get("chunk"))
        chunk = _chunk(pipelines, document, chunk_index)
        if document is None:
            st.warning(
                f"「{escape_markdown(source)}」は登録されていません。削除されたか、名前が変わった可能性があります。"
            )
        elif chunk is None:
            st.warning("リンクの箇所（chunk）がこの文書にありません。文書が取り込み直された可能性があります。")
        else:
            _show(pipelines, document, chunk, _number(params.get("page")))
        st.button("閉じる", key="close-view", on_click=close_view)


def _chunk(pipelines: Pipelines, document: StoredDocument | None, index: int | None) -> StoredChunk | None:
    if document is None or index is None or index >= document.chunks:
        return None
    found = pipelines.store.chunks_at(document.source, document.version, [index])
    return found[0] if found else None


def _show(pipelines: Pipelines, document: StoredDocument, chunk: StoredChunk, page: int | None) -> None:
    data = pipelines.originals.get(document.content_hash)
    if data is None:
        st.warning(_NOT_KEPT)
        return
    st.caption(
        f"{escape_markdown(document.source)} ・ {escape_markdown(describe(chunk.place, chunk.place_end))}"
        f" ・ チャンク {chunk.chunk_index}"
    )
    limits = pipelines.indexer.limits
    kind = view_for(document.kind or kind_of(document.source))  # stored before kinds were kept: by name
    try:
        if kind == "page":
            ocr = OcrOptions(mode=pipelines.settings.ocr, langs=pipelines.settings.ocr_langs)
            _page_view(document, chunk, data, page, limits, ocr)
        elif kind == "rows":
            view = rows_view(
                document.source, data, chunk.char_start, chunk.char_end, limits=limits, expected=chunk.text
            )
            for sheet in view.sheets:  # each sheet the passage runs over, named
                rows = [{"行": n, "内容": text, "該当": "●" if marked else ""} for n, text, marked in sheet.rows]
                if sheet.sheet:
                    st.caption(f"シート {escape_markdown(sheet.sheet)}")
                st.table(rows)  # plain cells: escaped text, readable by a screen reader
        elif kind == "slide":
            slide = slide_view(
                document.source, data, chunk.char_start, chunk.char_end, limits=limits, expected=chunk.text, slide=page
            )
            st.caption(f"スライド {slide.slide}")
            st.markdown("  \n".join(_mark(line) if marked else escape_markdown(line) for line, marked in slide.lines))
        else:
            # a few lines either side, so that the passage shows without scrolling; the download has the rest
            text = document_view(
                document.source, data, chunk.char_start, chunk.char_end, limits=limits, expected=chunk.text, context=400
            )
            if text.place.heading:
                st.caption(escape_markdown(" > ".join(text.place.heading)))
            with st.container(height=480, key="view-text"):
                st.markdown(
                    escape_markdown(text.before)
                    + ("  \n" if text.before else "")
                    + _mark(text.passage)
                    + ("  \n" if text.after else "")
                    + escape_markdown(text.after)
                )
    except (IngestError, ValueError, OSError) as error:
        st.error(f"原文を表示できません。{escape_markdown(str(error))}")
    st.markdown(f"[この箇所へのリンク]({link(document.source, chunk.chunk_index, page)})")
    st.download_button(
        "元のファイルをダウンロード",
        data=data,
        file_name=download_name(document.source),
        key="view-download",
        on_click="ignore",
    )


def _mark(text: str) -> str:
    """Passage text, marked: each line highlighted (Markdown's background colour, escaped inside)."""
    return "  \n".join(f":orange-background[{escape_markdown(line)}]" for line in text.split("\n") if line)


def _page_view(
    document: StoredDocument, chunk: StoredChunk, data: bytes, page: int | None, limits: Limits, ocr: OcrOptions
) -> None:
    first = chunk.place.page or 1
    last = chunk.place_end.page or first
    number = page if page is not None and page >= 1 else first
    image = render_page(document.source, data, number, chunk.text, limits=limits, ocr=ocr)
    before, after = st.columns(2)
    before.button(
        "前のページ",
        key="view-previous",
        disabled=image.page <= 1,
        on_click=open_view,
        args=(document.source, chunk.chunk_index, image.page - 1),
    )
    after.button(
        "次のページ",
        key="view-next",
        disabled=image.page >= image.pages,
        on_click=open_view,
        args=(document.source, chunk.chunk_index, image.page + 1),
    )
    if not first <= image.page <= last:
        st.caption(f"この箇所は {describe(chunk.place, chunk.place_end)} にあります。")
    elif image.boxes == 0:
        st.caption("このページでは箇所に印を付けられませんでした。")
    st.image(image.png, alt=image.alt, caption=image.alt, width=760)  # a page as large as a screen shows it


if __name__ == "__main__":
    main()
