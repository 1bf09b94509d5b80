"""The command line: ``python -m pipelines ingest|search|ask|documents|delete|log|collections|serve|evaluate``, thin over the pipelines."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ingest.errors import IngestError
from ingest.loaders import SUPPORTED_SUFFIXES
from pipelines import evaluation
from pipelines.choices import MODE_LABELS, MODES
from pipelines.errors import GenerationError, RagError, SettingsError
from pipelines.evaluation import DEFAULT_KS
from pipelines.model.embedder import Progress, TextEmbedder
from pipelines.search.retrieval import Hit, hits_json
from pipelines.service.compose import Pipelines, build, make_collections, make_embedder, make_querylog
from pipelines.service.querylog import LoggedQuery
from pipelines.settings import Settings
from pipelines.store.collections import CollectionInfo
from pipelines.store.indexing import FileReport, mixed_precisions

if TYPE_CHECKING:  # LangChain takes a second to import: only the commands that answer import it
    from pipelines.answers.answer import Answer
    from pipelines.answers.conversation import Conversation

STATUS_LABELS = {
    "added": "追加",
    "replaced": "置換",
    "unchanged": "変更なし",
    "duplicate": "重複",
    "failed": "失敗",
    "skipped": "スキップ",
}


MODE_OPTION: dict[str, Any] = {
    "dest": "retrieval_mode",
    "choices": MODES,
    "help": "検索方式: hybrid（既定、キーワードと意味）、dense（意味だけ）、keyword（単語だけ） [RAG_RETRIEVAL_MODE]",
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model", dest="embedding_model", help="埋め込みモデル（名前かディレクトリ） [RAG_EMBEDDING_MODEL]"
    )
    common.add_argument("--data-dir", type=Path, help="データディレクトリ [RAG_DATA_DIR]")
    common.add_argument("--collection", help="コレクション（文書のまとまり）の名前、既定は default [RAG_COLLECTION]")
    common.add_argument("--device", help="cpu、cuda など（既定は自動） [RAG_DEVICE]")
    common.add_argument("--embedding-url", help="OpenAI 互換の埋め込みサーバーの URL（…/v1） [RAG_EMBEDDING_URL]")
    common.add_argument("--embedding-api-key", help="埋め込みサーバーの API キー [RAG_EMBEDDING_API_KEY]")
    common.add_argument("--query-prefix", help="質問の前に付ける文字列（既定はモデルごと） [RAG_QUERY_PREFIX]")
    common.add_argument("--document-prefix", help="文書の前に付ける文字列（既定はモデルごと） [RAG_DOCUMENT_PREFIX]")
    common.add_argument("--chroma-host", help="Chroma サーバーのホスト（空なら内蔵ストア） [RAG_CHROMA_HOST]")
    common.add_argument("--chroma-port", type=int, help="Chroma サーバーのポート [RAG_CHROMA_PORT]")
    common.add_argument(
        "--chroma-ssl", action="store_const", const=True, help="Chroma サーバーに TLS で接続する [RAG_CHROMA_SSL]"
    )
    common.add_argument("--chroma-token", help="Chroma サーバーの認証トークン [RAG_CHROMA_TOKEN]")
    common.add_argument("--json", action="store_true", help="結果を JSON で出力する")

    parser = argparse.ArgumentParser(prog="python -m pipelines", description="日本語文書の取り込みと検索")
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", parents=[common], help="ファイルやフォルダを取り込む")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--chunk-tokens", type=int, help="チャンクの最大トークン数 [RAG_CHUNK_TOKENS]")
    ingest.add_argument("--chunk-overlap", type=int, help="チャンクの重なり（トークン） [RAG_CHUNK_OVERLAP]")
    ingest.add_argument("--batch-size", type=int, help="埋め込みのバッチサイズ [RAG_BATCH_SIZE]")
    search = commands.add_parser("search", parents=[common], help="質問に近い箇所を探す")
    search.add_argument("question")
    search.add_argument("-k", "--top-k", type=int, dest="top_k", help="表示する件数 [RAG_TOP_K]")
    search.add_argument("--mode", **MODE_OPTION)
    ask = commands.add_parser("ask", parents=[common], help="見つかった箇所から、出典付きの回答を作る")
    ask.add_argument("question")
    ask.add_argument("-k", "--top-k", type=int, dest="top_k", help="検索する件数 [RAG_TOP_K]")
    ask.add_argument("--mode", **MODE_OPTION)
    ask.add_argument("--llm-url", help="OpenAI 互換のチャットサーバーの URL（…/v1） [RAG_LLM_URL]")
    ask.add_argument("--llm-model", help="チャットサーバーでのモデル名 [RAG_LLM_MODEL]")
    ask.add_argument("--llm-api-key", help="チャットサーバーの API キー [RAG_LLM_API_KEY]")
    ask.add_argument("--llm-context-tokens", type=int, help="資料に使うトークン数の上限 [RAG_LLM_CONTEXT_TOKENS]")
    ask.add_argument("--llm-timeout", type=int, help="応答を待つ秒数 [RAG_LLM_TIMEOUT]")
    ask.add_argument(
        "--history",
        type=Path,
        metavar="FILE",
        help="会話の履歴（JSON）。前の質問と回答を踏まえて質問を書き換えて検索し、この質問と回答を追記する",
    )
    ask.add_argument(
        "--llm-history-tokens", type=int, help="書き換えに渡す前の会話のトークン数の上限 [RAG_LLM_HISTORY_TOKENS]"
    )
    commands.add_parser("documents", parents=[common], help="取り込んだ文書の一覧")
    delete = commands.add_parser("delete", parents=[common], help="文書を削除する")
    delete.add_argument("name", help="文書名（documents に表示される名前）")
    commands.add_parser("log", parents=[common], help="質問の記録（検索した質問・見つかった箇所・回答・👍/👎）")

    collections = commands.add_parser(
        "collections", parents=[common], help="コレクションの一覧（文書数・チャンク数）、作成、削除"
    )
    actions = collections.add_subparsers(dest="action")
    create = actions.add_parser("create", parents=[common], help="空のコレクションを作る")
    create.add_argument("name", help="コレクション名（日本語も可）")
    drop = actions.add_parser("delete", parents=[common], help="コレクションを中の文書ごと削除する")
    drop.add_argument("name", help="コレクション名")
    drop.add_argument("--yes", action="store_true", help="確認: 文書・キーワード索引・元のファイルをすべて削除する")
    serve = commands.add_parser("serve", parents=[common], help="HTTP API を起動する（FastAPI、/docs に説明）")
    serve.add_argument("--host", default="127.0.0.1", help="待ち受けるアドレス（既定 127.0.0.1）")
    serve.add_argument("--port", type=int, default=8000, help="ポート（既定 8000）")
    serve.add_argument(
        "--api-keys-file", type=Path, help="キーのファイル（行: キー パターン read|write） [RAG_API_KEYS_FILE]"
    )
    serve.add_argument("--max-upload-mb", type=int, help="アップロードの上限 MB [RAG_MAX_UPLOAD_MB]")
    serve.add_argument("-k", "--top-k", type=int, dest="top_k", help="既定の件数 [RAG_TOP_K]")
    serve.add_argument("--mode", **MODE_OPTION)

    evaluate = commands.add_parser("evaluate", help="埋め込みモデルと設定の品質を測る（JSTS・JSQuAD 形式）")
    tasks = evaluate.add_subparsers(dest="task", required=True)
    report = argparse.ArgumentParser(add_help=False)
    report.add_argument("--markdown", action="store_true", help="結果を Markdown の表で出力する")
    report.add_argument("--limit", type=int, help="先頭の N 件だけを使う（試し用）")
    report.add_argument("--batch-size", type=int, help="埋め込みのバッチサイズ [RAG_BATCH_SIZE]")
    sts = tasks.add_parser("sts", parents=[common, report], help="JSTS 形式: コサイン類似度と正解ラベルの相関")
    sts.add_argument("file", type=Path, metavar="FILE")
    qa = tasks.add_parser("qa", parents=[common, report], help="JSQuAD/SQuAD 形式: 上位 k 件の正解率と MRR")
    qa.add_argument("file", type=Path, metavar="FILE", nargs="?")
    qa.add_argument(
        "--from-log",
        action="store_true",
        help="ファイルの代わりに、質問の記録で 👍 の付いたカードを正解として、今の文書で測る",
    )
    qa.add_argument(
        "-k", "--k", dest="ks", type=int, nargs="+", default=list(DEFAULT_KS), help="k の値（既定 1 5 10 50）"
    )
    qa.add_argument("--mode", **MODE_OPTION)
    qa.add_argument("--chunk-tokens", type=int, help="チャンクの最大トークン数 [RAG_CHUNK_TOKENS]")
    qa.add_argument("--chunk-overlap", type=int, help="チャンクの重なり（トークン） [RAG_CHUNK_OVERLAP]")
    qa.add_argument("--chart", type=Path, help="k と正解率のグラフを PNG で保存する")
    qa.add_argument("--compare", type=Path, nargs="+", default=[], help="グラフに並べる以前の --json 出力")
    qa.add_argument("--label", help="グラフでのこの実行の名前")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the flags this command was given (a flag left out is None)."""
    flags = vars(args)
    return Settings.from_env(**{field.name: flags.get(field.name) for field in dataclasses.fields(Settings)})


def _progress_bars(stream: TextIO) -> Any:
    from tqdm import tqdm

    def for_file(source: str) -> Progress:
        bars: list[Any] = []  # drawn at the first batch: a file that fails before (no model) draws none

        def update(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(desc=source, unit="chunk", file=stream, leave=False, dynamic_ncols=True))
            bar = bars[0]
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return update

    return for_file


def _ingest(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    # The model loads at the first file to embed, before anything is written (a model that cannot load
    # writes nothing); files that are unchanged or duplicates need none.
    parts = build(settings)
    embedder = parts.embedder
    started = time.perf_counter()
    reports = parts.indexer.ingest_paths(args.paths, progress=_progress_bars(err))
    elapsed = time.perf_counter() - started
    stats = embedder.stats
    mixed = mixed_precisions(parts.store.documents()) if any(r.status in ("added", "replaced") for r in reports) else ""
    if args.json:
        summary = {
            "files": [asdict(r) for r in reports],
            "embedded_texts": stats.texts,
            "embedded_tokens": stats.tokens,
            "embedding_seconds": round(stats.seconds, 3),
            "model_loaded": embedder.loaded,
            "precision": asdict(embedder.precision) if embedder.loaded else None,
            "token_counting": embedder.counting if embedder.loaded else None,
            "warnings": [mixed] if mixed else [],
            "seconds": round(elapsed, 3),
        }
        _dump(summary, out)
    else:
        _print_reports(reports, out)
        counts: Counter[str] = Counter(r.status for r in reports)
        totals = "、".join(f"{STATUS_LABELS[s]} {counts[s]}" for s in STATUS_LABELS if counts[s])
        out.write(f"合計: {totals or 'ファイルなし'}\n")
        if stats.texts:
            out.write(
                f"埋め込み: {stats.texts} チャンク、{stats.tokens:,} トークン、{stats.seconds:.1f} 秒"
                f"（{stats.tokens_per_second:,.0f} トークン/秒）、全体 {elapsed:.1f} 秒\n"
            )
        _print_precision(embedder, out)
        if mixed:
            err.write(f"注意: {mixed}\n")
    if all(r.status == "skipped" for r in reports):
        err.write(f"取り込めるファイルが見つかりませんでした（対応形式: {'、'.join(SUPPORTED_SUFFIXES)}）。\n")
        return 1
    return 1 if any(r.status == "failed" for r in reports) else 0


def _print_precision(embedder: TextEmbedder, out: TextIO) -> None:
    """What passages and questions are computed in, or that no model was needed (nothing new to embed)."""
    if not embedder.loaded:
        out.write("精度: なし（ベクトルにする文章がなく、モデルを読み込んでいません）\n")
        return
    choice = embedder.precision
    out.write(f"精度: {choice.passages}（{choice.passages_reason}）\n")
    out.write(f"質問の精度: {choice.questions}（{choice.questions_reason}）\n")
    out.write(f"トークンの数え方: {embedder.counting}\n")


def _print_reports(reports: Sequence[FileReport], out: TextIO) -> None:
    for report in reports:
        label = STATUS_LABELS[report.status]
        detail = f"{report.chunks} チャンク" if report.status in ("added", "replaced", "unchanged") else report.message
        notes = "".join(f"（{note}）" for note in report.notes)
        out.write(f"{label}\t{report.source}\t{detail}{notes}\n")


def _find(args: argparse.Namespace, parts: Pipelines, err: TextIO, question: str) -> tuple[list[Hit], bool]:
    """The hits for ``question`` (``search`` and ``ask``), and whether the store holds any document."""
    searcher, settings = parts.searcher, parts.settings
    mode = settings.retrieval_mode
    hits = searcher.search(question, settings.top_k, mode=mode)
    stored = bool(searcher.keyword.versions)  # the live documents, as the search just read them
    if not stored:
        where = "" if settings.collection == "default" else f" --collection {settings.collection}"
        err.write(f"まだ文書がありません。先に `python -m pipelines ingest{where} ファイル` で取り込んでください。\n")
    elif not args.json:
        err.write(f"並び順（{MODE_LABELS[mode]}）: {searcher.rule(mode)}\n")
    return hits, stored


def _hit_line(hit: Hit) -> str:
    page = hit.chunk.location or "-"
    ocr = "（OCR）" if hit.chunk.ocr else ""
    keyword = f"BM25 {hit.keyword_score:.2f}" if hit.keyword_score is not None else "BM25 -"
    places = f"意味 {hit.dense_rank or '圏外'}・キーワード {hit.keyword_rank or '圏外'}"
    rerank = f"  再ランキング {hit.rerank_score:.3f}" if hit.rerank_score is not None else ""
    return (
        f"{hit.rank}. 類似度 {hit.cosine:.4f}  {keyword}  （{places}）{rerank}  {hit.chunk.source}  {page}{ocr}"
        f"  （チャンク {hit.chunk.chunk_index}）\n"
    )


def _search(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    parts = build(settings)
    hits, stored = _find(args, parts, err, args.question)
    _log(parts, args, args.question, hits, stored)
    if args.json:
        _dump(hits_json(parts.searcher, args.question, hits), out)
        return 0
    if not hits and stored:
        out.write("該当する箇所は見つかりませんでした。\n")
    for hit in hits:
        out.write(_hit_line(hit))
        out.write("   " + hit.chunk.text.replace("\n", "\n   ") + "\n\n")
    return 0


def _ask(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    parts = build(settings)
    answerer = parts.answerer
    if answerer is None:
        raise SettingsError(
            "回答を作る言語モデルが設定されていません。RAG_LLM_URL と RAG_LLM_MODEL（または --llm-url と "
            "--llm-model）に OpenAI 互換のチャットサーバーを指定してください（例: http://127.0.0.1:11434/v1）。"
            "検索だけなら `python -m pipelines search` を使ってください。"
        )
    from pipelines.answers.conversation import load_history

    conversation = load_history(args.history) if args.history else None
    turns = conversation.turns if conversation else []
    standalone = args.question
    if turns:
        assert parts.rewriter is not None  # there is a chat model
        try:
            standalone = parts.rewriter.standalone(args.question, turns)
        except GenerationError as error:
            err.write(f"注意: 質問を書き換えられなかったため、入力どおりに検索します。{error}\n")
        if standalone != args.question and not args.json:
            out.write(f"検索した質問: {standalone}\n")
    hits, stored = _find(args, parts, err, standalone)
    query_id = _log(parts, args, standalone, hits, stored, conversation.id if conversation else "", len(turns))
    if args.json:
        result: dict[str, Any] = {"question": args.question, "standalone_question": standalone}
        try:
            answer = answerer.answer(standalone, hits)
            result |= answer.to_dict() | {"question": args.question, "error": None}
            _remember(parts, args, conversation, standalone, answer, query_id)
        except GenerationError as error:
            result |= {"answer": None, "answered": False, "citations": [], "dropped_citations": [], "error": str(error)}
        _dump(result | {"hits": hits_json(parts.searcher, standalone, hits)}, out)
        if result["error"]:
            err.write(f"エラー: {result['error']}\n")
        return 1 if result["error"] else 0
    out.write("回答:\n")
    text = ""
    try:
        passages = answerer.passages(hits)
        for piece in answerer.stream(standalone, passages):
            text += piece
            out.write(piece)
            out.flush()
    except GenerationError as error:
        out.write("\n" if text else "")
        err.write(f"エラー: 回答を作れませんでした。{error}\n")
        _print_found(hits, out)
        return 1
    answer = answerer.finish(standalone, passages, text)
    _remember(parts, args, conversation, standalone, answer, query_id)
    out.write("\n\n出典:\n" if answer.citations else "\n")
    for citation in answer.citations:
        page = citation.location or "-"
        out.write(
            f"[{citation.n}] {citation.source}  {page}  （{citation.rank} 位、チャンク {citation.chunk_index}）\n"
        )
    if answer.dropped:
        numbers = "".join(f"[{n}]" for n in answer.dropped)
        out.write(f"注意: 回答にある {numbers} は渡した資料にない番号のため、出典から外しました。\n")
    if not answer.citations:
        _print_found(hits, out)
    return 0


def _log(
    parts: Pipelines,
    args: argparse.Namespace,
    searched: str,
    hits: Sequence[Hit],
    stored: bool,
    conversation: str = "",
    turn: int = 0,
) -> int | None:
    """Log a question that met documents (``RAG_QUERY_LOG``); its id in the log, or None."""
    if not stored:
        return None
    settings = parts.settings
    return parts.querylog.record(
        LoggedQuery(
            question=args.question,
            standalone_question=searched,
            hits=hits,
            mode=settings.retrieval_mode,
            k=settings.top_k,
            face="cli",
            conversation=conversation,
            turn=turn,
            embedding_model=settings.embedding_model,
            collection=settings.collection,
        )
    )


def _remember(
    parts: Pipelines,
    args: argparse.Namespace,
    conversation: Conversation | None,
    standalone: str,
    answer: Answer,
    query_id: int | None,
) -> None:
    """The answer into the log, and the turn appended to the history file (``--history``)."""
    from pipelines.answers.conversation import Turn, save_history

    parts.querylog.record_answer(query_id, answer.text, [c.to_dict() for c in answer.citations])
    if conversation is not None and args.history:
        conversation.turns.append(Turn.answering(args.question, standalone, answer))
        save_history(args.history, conversation)


def _print_found(hits: Sequence[Hit], out: TextIO) -> None:
    out.write("\n検索で見つかった箇所:\n" if hits else "\n該当する箇所は見つかりませんでした。\n")
    for hit in hits:
        out.write(_hit_line(hit))


def _documents(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    documents = build(settings).store.documents()
    if args.json:
        _dump([asdict(d) for d in documents], out)
    elif not documents:
        out.write("文書はまだありません。\n")
    for document in [] if args.json else documents:
        unit = "スライド" if document.kind == "pptx" else "ページ"
        pages = f"{document.pages} {unit}" if document.pages else "ページなし"
        out.write(f"{document.source}\t{pages}\t{document.chunks} チャンク\t{document.added_at}\n")
    return 0


def _delete(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    document = build(settings).indexer.delete(args.name)
    if args.json:
        _dump(asdict(document), out)
    else:
        out.write(f"削除しました: {document.source}（{document.chunks} チャンク）\n")
    return 0


def _log_command(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    querylog = make_querylog(settings)  # reading needs no model and no store
    queries = querylog.export()
    if args.json:
        _dump(queries, out)
        return 0
    if not queries:
        state = "" if querylog.enabled else "（RAG_QUERY_LOG=off のため記録していません）"
        out.write(f"質問の記録はまだありません{state}。\n")
    for query in queries:
        searched = (
            f"\t（検索: {query['standalone_question']}）" if query["standalone_question"] != query["question"] else ""
        )
        ratings = Counter(f["rating"] for f in query["feedback"])
        judged = f"\t👍 {ratings[1]} 👎 {ratings[-1]}" if query["feedback"] else ""
        out.write(f"{query['id']}\t{query['created_at']}\t{query['face']}\t{query['question']}{searched}{judged}\n")
    return 0


def _collections(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    collections = make_collections(settings)
    if args.action == "create":
        info = collections.create(args.name)
        _report(info, "作成しました", args.json, out)
        return 0
    if args.action == "delete":
        if not args.yes:
            info = collections.info(args.name)
            err.write(
                f"コレクション「{info.name}」（{info.documents} 文書、{info.chunks} チャンク）を、キーワード索引と"
                "元のファイルごと削除します。よければ --yes を付けてもう一度実行してください。\n"
            )
            return 2
        _report(collections.delete(args.name), "削除しました", args.json, out)
        return 0
    infos = collections.catalogue()
    if args.json:
        _dump([info.to_dict() for info in infos], out)
    for info in [] if args.json else infos:
        out.write(f"{info.name}\t{info.documents} 文書\t{info.chunks} チャンク\n")
    return 0


def _report(info: CollectionInfo, done: str, as_json: bool, out: TextIO) -> None:
    if as_json:
        _dump(info.to_dict(), out)
    else:
        out.write(f"{done}: {info.name}（{info.documents} 文書、{info.chunks} チャンク）\n")


def _serve(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from pipelines.faces.api import serve  # FastAPI and uvicorn: only for this command

    serve(settings, host=args.host, port=args.port)
    return 0


def _bar(stream: TextIO, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(desc=description, file=stream, leave=False, dynamic_ncols=True)


def _evaluate(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    if args.task == "qa" and args.from_log == bool(args.file):
        raise evaluation.EvaluationError(
            "評価ファイル（JSQuAD/SQuAD 形式）か --from-log（質問の記録の 👍）のどちらか一つを指定してください。"
        )
    parts = build(settings) if args.task == "qa" and args.from_log else None
    # otherwise the evaluation builds its own scratch store
    embedder = parts.embedder if parts is not None else make_embedder(settings)
    embedder.load()
    if args.task == "sts":
        pairs = evaluation.load_sts(args.file)[: args.limit]
        bar = _bar(err, "埋め込み")
        sts = evaluation.evaluate_sts(embedder, pairs, _updater(bar))
        bar.close()
        if args.json:
            _dump(sts.to_dict(), out)
        else:
            out.write(evaluation.sts_table(sts, markdown=args.markdown))
        return 0
    bars: dict[str, Any] = {}

    def step(what: str, done: int, total: int) -> None:
        if what not in bars:
            bars[what] = _bar(err, what)
        _updater(bars[what])(done, total)

    if parts is not None:
        judged = parts.querylog.judged_questions()
        qa = evaluation.evaluate_log(parts, judged[: args.limit] if args.limit else judged, ks=args.ks, step=step)
    else:
        articles, questions = evaluation.load_qa(args.file)
        if args.limit:
            questions = questions[: args.limit]
        qa = evaluation.evaluate_qa(settings, embedder, articles, questions, ks=args.ks, step=step)
    for bar in bars.values():
        bar.close()
    result = qa.to_dict() | ({"label": args.label} if args.label else {})
    if args.json:
        _dump(result, out)
    else:
        out.write(evaluation.qa_table(qa, markdown=args.markdown))
    if qa.left_out:
        err.write(f"注意: 👍 の付いたカードが今の文書にない {qa.left_out} 件の質問は除きました。\n")
    if args.chart:
        runs = [json.loads(path.read_text(encoding="utf-8")) for path in args.compare]
        evaluation.save_chart([*runs, result], args.chart)
        err.write(f"グラフを保存しました: {args.chart}\n")
    return 0


def _updater(bar: Any) -> Progress:
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


def _dump(value: Any, out: TextIO) -> None:
    json.dump(value, out, ensure_ascii=False, indent=2)
    out.write("\n")


COMMANDS = {
    "ingest": _ingest,
    "search": _search,
    "ask": _ask,
    "documents": _documents,
    "delete": _delete,
    "log": _log_command,
    "evaluate": _evaluate,
    "collections": _collections,
    "serve": _serve,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 some files failed, 2 refused with a message)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        return COMMANDS[args.command](args, settings, out, err)
    except (RagError, IngestError) as error:
        err.write(f"エラー: {error}\n")
        return 2


def run() -> None:
    """Console-script entry point (``jdocs``)."""
    raise SystemExit(main())
