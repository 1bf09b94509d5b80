"""Streamlit page: upload Japanese documents, ask in Japanese, browse the passages found, and read a cited answer.

The page parses what a person does and renders what the service returns (pipelines/service/service.py);
its parts live in page/: the cards, the conversation and the viewer of originals.
"""

from __future__ import annotations

import streamlit as st

from ingest.loaders import SUPPORTED_SUFFIXES
from page.audit import audit_panel
from page.cards import show_hit
from page.chat import conversation_panel, remember
from page.common import ZWSP, Here, escape_markdown, render_passage
from page.signin import page_caller
from page.sources import sources_panel
from page.viewer import viewer_panel
from pipelines.choices import MODES, Mode
from pipelines.errors import RagError, SettingsError
from pipelines.model.embedder import Progress
from pipelines.model.remote import RemoteEmbedder
from pipelines.model.warmup import ModelWarmup
from pipelines.search.highlight import query_terms
from pipelines.service import words
from pipelines.service.library import Library
from pipelines.service.results import Caller, Question
from pipelines.service.service import Service
from pipelines.settings import Settings
from pipelines.store.collections import DEFAULT, clean_name
from pipelines.store.indexing import mixed_precisions
from pipelines.store.records import StoredDocument

__all__ = ["ZWSP", "escape_markdown", "render_passage"]  # the page's text helpers, tested from here

# seconds between drawing the page and starting to load the model (sooner when an action needs it)
SETTLE_SECONDS = 3.0


@st.cache_resource(show_spinner=False)
def open_service(settings: Settings) -> tuple[Service, ModelWarmup]:
    """The service over the collections, shared by every session of this server process, and the model loading behind it.

    Opening reads the store's list of collections and loads no model, so the page draws at once; the
    model (one for every collection) then loads in a background thread, and what needs it waits for it.
    """
    library = Library(settings)
    return Service(library), ModelWarmup(library.embedder)  # started once the page is drawn (main)


def collection_panel(service: Service, caller: Caller) -> Here:
    """The collection selector at the top of the sidebar: the collections the person may read; uploads, the
    library and searches use the chosen one."""
    names = service.collection_names(caller)
    if not names:  # a signed-in person the policy gives no collection
        st.info("読めるコレクションがありません。権限は管理者に確かめてください。")
        st.stop()
    linked = st.query_params.get("collection")
    if linked and "collection" not in st.session_state and linked in names:
        st.session_state["collection"] = linked  # a view's link, opened in a new session, opens its collection
    if st.session_state.get("collection") not in names:  # first run, or deleted by another session
        chosen = clean_name(service.settings.collection)
        st.session_state["collection"] = chosen if chosen in names else DEFAULT if DEFAULT in names else names[0]
        if chosen not in names and caller.grants is None:  # missing; not merely closed to this person
            st.session_state["collection-missing"] = chosen
    here = Here(service, st.selectbox("コレクション", names, key="collection"), caller)
    missing = st.session_state.get("collection-missing")
    if missing and missing in names:  # made since (in the sidebar below, or by another session)
        del st.session_state["collection-missing"]
    elif missing:
        st.warning(
            f"RAG_COLLECTION のコレクション「{escape_markdown(missing)}」がないため、{DEFAULT} を開いています。"
            "下の「コレクションの作成・削除」で作れます。"
        )
    return here


def manage_collections(here: Here) -> None:
    """Create a collection, or delete the chosen one with everything in it once confirmed."""
    if not here.may("admin"):
        return
    with st.expander("コレクションの作成・削除"):
        st.text_input("新しいコレクションの名前", key="new-collection", placeholder="例: 人事規程")
        st.button("作成", key="create-collection", on_click=_create_collection, args=(here,))
        name = here.collection
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
            args=(here,),
        )
    said = st.session_state.pop("collection-said", None)
    if said is not None:
        (st.success if said[0] else st.error)(escape_markdown(said[1]))


def _create_collection(here: Here) -> None:
    try:
        made = here.service.create_collection(here.caller, st.session_state.get("new-collection", ""))
    except RagError as error:
        st.session_state["collection-said"] = (False, str(error))
        return
    st.session_state["collection"] = made.name  # a callback runs before the widgets: the selector shows it
    st.session_state["new-collection"] = ""
    st.session_state["collection-said"] = (True, f"コレクション「{made.name}」を作りました。")


def _delete_collection(here: Here) -> None:
    st.session_state["confirm-collection"] = False
    try:
        removed = here.service.delete_collection(here.caller, here.collection)
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


def loading_notice(service: Service, seconds: float, stage: str) -> str:
    """What loading is doing: a model from the hub may be downloaded first; an embeddings server downloads nothing."""
    name = escape_markdown(service.settings.embedding_model)
    if isinstance(service.embedder, RemoteEmbedder):
        return (
            f"埋め込みサーバー（{escape_markdown(service.settings.embedding_url)}）のモデル「{name}」に接続しています"
            f"（{seconds:.0f} 秒、{stage}）。文書のアップロードと一覧はこのまま使えます。"
        )
    return (
        f"埋め込みモデル「{name}」を読み込んでいます（{seconds:.0f} 秒、{stage}）。初回はモデル（約 0.5 GB）を"
        "ダウンロードするため、数分かかることがあります。文書のアップロードと一覧はこのまま使えます。"
    )


def model_status(service: Service, warmup: ModelWarmup) -> None:
    """The model and its precisions once loaded; while it loads, its progress, redrawn every second.

    When loading ends, the fragment draws the outcome in its own place. It does not rerun the whole page:
    a rerun the page starts by itself can swallow a click or an upload the person makes in that instant.
    """
    if warmup.finished:
        model_outcome(service, warmup)
        return

    @st.fragment(run_every=1.0)
    def progress() -> None:
        if warmup.finished:
            model_outcome(service, warmup)
            return
        st.info(loading_notice(service, warmup.seconds, warmup.stage))

    progress()


def model_outcome(service: Service, warmup: ModelWarmup) -> None:
    """The loaded model's line, or why it could not be loaded and a button to try again."""
    if warmup.ready:
        model_caption(service)
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
        open_service.clear()
        st.rerun()


def model_caption(service: Service) -> None:
    """The model, the precision passages and questions are computed in, and how tokens are counted (reasons on hover)."""
    choice = service.embedder.precision
    counting = service.embedder.counting
    st.caption(
        f"埋め込みモデル: {escape_markdown(service.settings.embedding_model)} ・ "
        f"計算精度: 文書 {choice.passages_label}、質問 {choice.questions_label} ・ "
        f"トークンの数え方: {escape_markdown(counting)}",
        help=escape_markdown(
            f"文書: {choice.passages_reason}\n\n質問: {choice.questions_reason}\n\nトークンの数え方: {counting}"
        ),
    )


def upload_panel(here: Here, warmup: ModelWarmup) -> None:
    if not here.may("write"):
        return
    st.subheader("文書を追加")
    limit = here.service.settings.max_upload_mb
    files = st.file_uploader(
        "PDF・Word・Excel・PowerPoint・HTML・CSV・テキスト・Markdown・画像（複数可）",
        type=[suffix.lstrip(".") for suffix in SUPPORTED_SUFFIXES],
        accept_multiple_files=True,
        max_upload_size=limit,  # the browser refuses a larger file before sending it, as the ingest would
    )
    st.html(uploader_words(limit))
    if not st.button("取り込む", disabled=not files, type="primary") or not model_ready(warmup):
        return
    files = files or []
    bar = st.progress(0.0, text="取り込みを始めます…")
    started: list[str] = []

    def progress(name: str) -> Progress:
        number = len(started)
        started.append(name)
        bar.progress(number / len(files), text=f"{name} を読み込んでいます…")

        def embedded(done: int, total: int) -> None:
            share = (number + done / max(total, 1)) / len(files)
            bar.progress(min(share, 1.0), text=f"{name}: 埋め込み {done}/{total} チャンク")

        return embedded

    def waiting() -> None:
        bar.progress(0.0, text="順番待ち: ほかの取り込みが終わるのを待っています。検索はこのまま使えます。")

    try:
        result = here.service.upload(
            here.caller,
            here.collection,
            [(f.name, f.getvalue()) for f in files],
            progress,
            waiting,
        )
    except RagError as error:  # the collection was deleted while this waited, or cannot be written
        st.error(escape_markdown(str(error)))
        return
    bar.progress(1.0, text="取り込みが終わりました")
    for report in result.reports:
        line = f"{escape_markdown(report.source)}: {words.STATUS_LABELS[report.status]}"
        notes = "".join(f"（{escape_markdown(note)}）" for note in report.notes)
        if report.status in ("added", "replaced"):
            st.success(f"{line}（{report.chunks} チャンク）{notes}")
        elif report.status == "failed":
            st.error(f"{line}。{escape_markdown(report.message)}")
        else:
            st.info(f"{line}。{escape_markdown(report.message)}" if report.message else line)
    if result.error:  # the store or the model refused: the files after it did not go in
        st.error(escape_markdown(result.error))


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


def library_panel(here: Here) -> None:
    documents = here.service.documents(here.caller, here.collection)
    st.subheader(f"登録済みの文書（{len(documents)} 件）")
    for document in documents:
        unit = "スライド" if document.kind == "pptx" else "ページ"
        pages = f"{document.pages} {unit}・" if document.pages else ""
        added = words.local_time(document.added_at)
        st.caption(f"{escape_markdown(document.source)} — {pages}{document.chunks} チャンク・{added}")
    if not documents:
        return
    mixed = mixed_precisions(documents)
    if mixed:
        st.warning(escape_markdown(mixed))
    if not here.may("write"):
        return
    name = st.selectbox("削除する文書", [d.source for d in documents], index=None, placeholder="選んでください")
    confirmed = st.checkbox("この文書を削除してよい", disabled=name is None)
    if st.button("削除", disabled=not (name and confirmed)) and name:
        removed = here.service.delete_document(here.caller, here.collection, name)
        st.success(f"{escape_markdown(removed.source)} を削除しました（{removed.chunks} チャンク）")
        st.rerun()


def no_answer_note() -> None:
    """Without a chat model the page searches only; say how answers and conversations are turned on."""
    st.caption(
        "回答の生成は設定されていません。RAG\\_LLM\\_URL と RAG\\_LLM\\_MODEL を設定すると、"
        "見つかった箇所から出典付きの回答を作り、続けて質問できる会話になります。"
    )


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


def main() -> None:
    st.set_page_config(page_title="日本語文書検索", layout="wide")
    st.title("日本語文書検索")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        st.error(f"設定に誤りがあります。\n\n{escape_markdown(str(error))}")
        st.stop()
        raise  # st.stop() ends the run; this line only satisfies the type checker
    service, warmup = open_service(settings)
    caller = page_caller(settings, service)  # a sign-in form, or a refusal to serve beyond this machine, stops here
    try:
        with st.sidebar:
            here = collection_panel(service, caller)
    except RagError as error:  # the store cannot be opened
        st.error(escape_markdown(str(error)))
        st.stop()
        raise
    model_status(service, warmup)
    with st.sidebar:
        upload_panel(here, warmup)
        library_panel(here)
        recent_slot = st.container()  # filled last, so that it lists this run's question too
        manage_collections(here)
        sources_panel(here)
        audit_panel(here)
    try:
        viewer_panel(here)
        questions_panel(here, warmup)
    finally:
        with recent_slot:
            recent_panel()
        # after the page is drawn, and a moment later still: the browser needs the CPU to show it
        warmup.start(after=SETTLE_SECONDS)


def questions_panel(here: Here, warmup: ModelWarmup) -> None:
    """With a chat model, a conversation with cited answers; without, the question box and the cards."""
    documents = here.service.documents(here.caller, here.collection)
    if not documents:
        st.info(words.no_documents("page", here.collection))
        return
    if here.service.settings.llm_url:
        k, mode, chosen = search_options(here.service.settings, documents)
        conversation_panel(here, k, mode, chosen, lambda: model_ready(warmup))
        return
    question = st.text_input("質問", key="question", placeholder="例: 有給休暇は入社後いつから取れますか？")
    k, mode, chosen = search_options(here.service.settings, documents)
    if not question.strip() or not model_ready(warmup):
        return
    try:
        found = here.service.search(here.caller, here.collection, Question(question, k, mode, tuple(chosen)))
    except RagError as error:
        st.error(escape_markdown(str(error)))
        return
    remember(question)
    if found.log_error:
        st.toast(found.log_error)
    if not found.hits:
        st.warning(words.NO_HITS + words.NO_HITS_HINT)
        return
    no_answer_note()
    st.caption(
        f"並び順（{words.MODE_LABELS[mode]}）: {found.rule}  \n"
        "類似度は質問と各箇所の埋め込みのコサイン類似度（1 に近いほど似ている）、BM25 は質問の語の一致度"
        "（0 は共通の語なし）、意味・キーワードの順位はそれぞれの候補リストでの順位です。"
        "色付きは質問の語、太字は質問に最も近い文です。"
    )
    terms = query_terms(question)
    for hit in found.hits:
        show_hit(here, hit, terms, found.emphasis(hit.rank))


def search_options(settings: Settings, documents: list[StoredDocument]) -> tuple[int, Mode, list[str]]:
    """How many passages, how to order them, and which documents to search (all when none is chosen)."""
    left, middle, right = st.columns([1, 1, 2])
    k = left.slider("表示する件数", min_value=1, max_value=20, value=settings.top_k)
    mode: Mode = middle.radio(
        "検索方式", MODES, index=MODES.index(settings.retrieval_mode), format_func=words.MODE_LABELS.__getitem__
    )
    chosen = right.multiselect(
        "検索する文書（選ばなければすべて）", [d.source for d in documents], placeholder="すべての文書"
    )
    return k, mode, chosen


if __name__ == "__main__":
    main()
