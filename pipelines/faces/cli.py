"""The command line: ``python -m pipelines ingest|search|ask|documents|delete|log|audit|collections|sources|sync|sentences|serve|mcp|evaluate``.

Each command parses its arguments (pipelines/faces/cli_args.py), calls the service as the machine's own
user (``Caller("cli", "cli:USER")``: every right, named in the logs by the OS user) and prints what it
returns, in the catalogue's words.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from ingest.errors import IngestError
from ingest.loaders import SUPPORTED_SUFFIXES
from pipelines import evaluation
from pipelines.errors import RagError
from pipelines.faces.cli_args import parser, settings_from
from pipelines.model.embedder import Progress
from pipelines.search.retrieval import Hit
from pipelines.service import words
from pipelines.service.compose import build, make_embedder
from pipelines.service.library import Library
from pipelines.service.results import (
    Answered,
    AnswerFailed,
    Caller,
    Delta,
    Found,
    Ingested,
    Question,
    RewriteFailed,
    Rewritten,
    Searched,
    machine_caller,
)
from pipelines.service.service import Service
from pipelines.settings import Settings
from pipelines.store.collections import CollectionInfo
from pipelines.store.indexing import FileReport

if TYPE_CHECKING:  # LangChain takes a second to import: only the commands that answer import it
    pass


def cli_caller() -> Caller:
    """The machine's own user, with every right, named in the logs ``cli:USER`` by the OS user."""
    return machine_caller("cli")


class Meter:
    """Progress on a terminal, in Japanese (「就業規則.pdf: 埋め込み 12/40 チャンク」), rewritten in place.

    Nothing is written when the stream is not a terminal (a file, a pipe, a test), so the report lines
    that follow are never mixed with progress.
    """

    def __init__(self, stream: TextIO, label: str, unit: str = "") -> None:
        self.stream = stream
        self.label = label
        self.unit = unit
        self.shown = False
        self.live = bool(getattr(stream, "isatty", lambda: False)())

    def update(self, done: int, total: int) -> None:
        if not self.live:
            return
        self.stream.write(f"\r\x1b[K{self.label} {done}/{total}{self.unit}")
        self.stream.flush()
        self.shown = True
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def _service(settings: Settings) -> Service:
    # a command ends with its answer: no idle time to embed shown sentences or check bfloat16 in (a serving
    # process has it; a check cut short by the command's end would be wasted)
    return Service(Library(dataclasses.replace(settings, sentence_refine=False, background_checks=False)))


def _ingest(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    # The model loads at the first file to embed, before anything is written (a model that cannot load
    # writes nothing); files that are unchanged or duplicates need none.
    service = _service(settings)

    def progress(source: str) -> Progress:
        return Meter(err, f"{source}: 埋め込み", " チャンク").update

    try:
        result = service.ingest_paths(cli_caller(), settings.collection, args.paths, progress)
    finally:
        service.close()  # the reader's child process ends here, not in the interpreter's exit
    reports = result.reports
    if args.json:
        _dump(result.to_dict(), out)
    elif result.error:  # the store or the model refused: the files read before it, then why
        _print_reports(reports, out)
    else:
        _print_summary(result, out, err)
    if result.error:
        err.write(f"エラー: {result.error}\n")
        return 2
    if all(r.status == "skipped" for r in reports):
        err.write(words.NO_FILES_FOUND.format(suffixes="、".join(SUPPORTED_SUFFIXES)) + "\n")
        return 1
    return 1 if any(r.status == "failed" for r in reports) else 0


def _print_summary(result: Ingested, out: TextIO, err: TextIO) -> None:
    """A line per file, the totals, what embedding took, and the precisions computed in."""
    _print_reports(result.reports, out)
    counts: Counter[str] = Counter(r.status for r in result.reports)
    totals = "、".join(f"{label} {counts[s]}" for s, label in words.STATUS_LABELS.items() if counts[s])
    out.write(f"合計: {totals or 'ファイルなし'}\n")
    if result.embedded_texts:
        out.write(
            f"埋め込み: {result.embedded_texts} チャンク、{result.embedded_tokens:,} トークン、"
            f"{result.embedding_seconds:.1f} 秒（{result.tokens_per_second:,.0f} トークン/秒）、"
            f"全体 {result.seconds:.1f} 秒\n"
        )
    if result.precision is None:
        out.write(f"精度: {words.NOTHING_TO_EMBED}\n")
    else:
        out.write(f"精度: {result.precision.passages_label}（{result.precision.passages_reason}）\n")
        out.write(f"質問の精度: {result.precision.questions_label}（{result.precision.questions_reason}）\n")
        out.write(f"トークンの数え方: {result.token_counting}\n")
        if result.precision.preparing:
            err.write(f"{words.FINISHING_PREPARATION}\n")
    for warning in result.warnings:
        err.write(f"注意: {warning}\n")


def _print_reports(reports: Sequence[FileReport], out: TextIO) -> None:
    for report in reports:
        label = words.STATUS_LABELS[report.status]
        detail = f"{report.chunks} チャンク" if report.status in ("added", "replaced", "unchanged") else report.message
        notes = "".join(f"（{note}）" for note in report.notes)
        out.write(f"{label}\t{report.source}\t{detail}{notes}\n")


def _question(args: argparse.Namespace, settings: Settings) -> Question:
    return Question(args.question, settings.top_k, settings.retrieval_mode)


def _said(found: Found, as_json: bool, err: TextIO) -> None:
    """What the CLI says beside the hits: no documents yet, the ordering rule, a log that could not be written."""
    if not found.stored:
        err.write(words.no_documents("cli", found.collection) + "\n")
    elif not as_json:
        err.write(f"並び順（{words.MODE_LABELS[found.mode]}）: {found.rule}\n")
    if found.log_error:
        err.write(f"注意: {found.log_error}\n")


def _hit_line(hit: Hit) -> str:
    page = hit.chunk.location or "-"
    ocr = "（OCR）" if hit.chunk.ocr else ""
    keyword = f"BM25 {hit.keyword_score:.2f}" if hit.keyword_score is not None else "BM25 -"
    places = f"意味 {words.place(hit.dense_rank)}・キーワード {words.place(hit.keyword_rank)}"
    rerank = f"  再ランキング {hit.rerank_score:.3f}" if hit.rerank_score is not None else ""
    return (
        f"{hit.rank}. 類似度 {hit.cosine:.4f}  {keyword}  （{places}）{rerank}  {hit.chunk.source}  {page}{ocr}"
        f"  （チャンク {hit.chunk.chunk_index}）\n"
    )


def _search(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    found = _service(settings).search(cli_caller(), settings.collection, _question(args, settings))
    _said(found, args.json, err)
    if args.json:
        _dump(found.hits_json(), out)
        return 0
    if not found.hits and found.stored:
        out.write(words.NO_HITS + "\n")
    for hit in found.hits:
        out.write(_hit_line(hit))
        out.write("   " + hit.chunk.text.replace("\n", "\n   ") + "\n\n")
    return 0


def _ask(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from pipelines.answers.answer import failed_answer_json
    from pipelines.answers.conversation import load_history, save_history

    conversation = load_history(args.history) if args.history else None
    turns = conversation.turns if conversation else []
    events = _service(settings).ask(
        cli_caller(), settings.collection, _question(args, settings), turns, conversation.id if conversation else ""
    )
    found: Found | None = None
    result: dict[str, Any] = {"question": args.question, "standalone_question": args.question}
    failed = ""
    for event in events:
        if isinstance(event, RewriteFailed):
            err.write(f"注意: {event.message}\n")
        elif isinstance(event, Rewritten):
            result["standalone_question"] = event.question
            if not args.json:
                out.write(words.SEARCHED_AS.format(question=event.question) + "\n")
        elif isinstance(event, Searched):
            found = event.found
            _said(found, args.json, err)
            if not args.json:
                out.write("回答:\n")
        elif isinstance(event, Delta):
            if not args.json:
                out.write(event.text)
                out.flush()
        elif isinstance(event, Answered):
            result |= event.answer.to_dict() | {"question": args.question, "error": None}
            if conversation is not None and args.history:
                conversation.turns.append(event.turn)
                save_history(args.history, conversation)
            if not args.json:
                _print_sources(event, found, out)
        elif isinstance(event, AnswerFailed):
            failed = event.message
            result |= failed_answer_json(args.question, failed)
    if args.json:
        _dump(result | {"hits": found.hits_json() if found else []}, out)
    if failed:
        if not args.json:
            out.write("\n")
            _print_found(found.hits if found else [], out)
        err.write(f"エラー: {words.ANSWER_FAILED}{failed}\n")
        return 1
    return 0


def _print_sources(event: Answered, found: Found | None, out: TextIO) -> None:
    answer = event.answer
    out.write("\n\n出典:\n" if answer.citations else "\n")
    for citation in answer.citations:
        page = citation.location or "-"
        out.write(
            f"[{citation.n}] {citation.source}  {page}  （{citation.rank} 位、チャンク {citation.chunk_index}）\n"
        )
    if answer.dropped:
        out.write(f"注意: {words.dropped_citations(answer.dropped)}\n")
    if not answer.citations:
        _print_found(found.hits if found else [], out)


def _print_found(hits: Sequence[Hit], out: TextIO) -> None:
    out.write("\n検索で見つかった箇所:\n" if hits else f"\n{words.NO_HITS}\n")
    for hit in hits:
        out.write(_hit_line(hit))


def _documents(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    documents = _service(settings).documents(cli_caller(), settings.collection)
    if args.json:
        _dump([asdict(d) for d in documents], out)
    elif not documents:
        out.write("文書はまだありません。\n")
    for document in [] if args.json else documents:
        unit = "スライド" if document.kind == "pptx" else "ページ"
        pages = f"{document.pages} {unit}" if document.pages else "ページなし"
        out.write(f"{document.source}\t{pages}\t{document.chunks} チャンク\t{words.local_time(document.added_at)}\n")
    return 0


def _delete(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    document = _service(settings).delete_document(cli_caller(), settings.collection, args.name)
    if args.json:
        _dump(asdict(document), out)
    else:
        out.write(f"削除しました: {document.source}（{document.chunks} チャンク）\n")
    return 0


def _log_command(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    service = _service(settings)  # reading the log needs no model and no store
    queries = service.log(cli_caller())
    if args.json:
        _dump(queries, out)
        return 0
    if not queries:
        state = "" if service.logging else "（RAG_QUERY_LOG=off のため記録していません）"
        out.write(f"質問の記録はまだありません{state}。\n")
    for query in queries:
        searched = (
            f"\t（検索: {query['standalone_question']}）" if query["standalone_question"] != query["question"] else ""
        )
        ratings = Counter(f["rating"] for f in query["feedback"])
        judged = f"\t👍 {ratings[1]} 👎 {ratings[-1]}" if query["feedback"] else ""
        when = words.local_time(query["created_at"])
        out.write(f"{query['id']}\t{when}\t{query['face']}\t{query['question']}{searched}{judged}\n")
    return 0


def _audit(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    entries = _service(settings).audit(cli_caller(), args.since)  # needs no model and no store
    if args.json:
        _dump([entry.to_dict() for entry in entries], out)
        return 0
    if not entries:
        out.write(words.NO_AUDIT_ENTRIES + "\n")
    for entry in entries:
        out.write("\t".join(field.replace("\t", " ").replace("\n", " ") for field in words.audit_fields(entry)) + "\n")
    return 0


def _collections(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    service = _service(settings)
    if args.action == "create":
        _report(service.create_collection(cli_caller(), args.name), "作成しました", args.json, out)
        return 0
    if args.action == "delete":
        if not args.yes:
            info = service.collection(cli_caller(), args.name)
            err.write(
                f"コレクション「{info.name}」（{info.documents} 文書、{info.chunks} チャンク）を、キーワード索引と"
                "元のファイルごと削除します。よければ --yes を付けてもう一度実行してください。\n"
            )
            return 2
        _report(service.delete_collection(cli_caller(), args.name), "削除しました", args.json, out)
        return 0
    infos = service.collections(cli_caller())
    if args.json:
        _dump([info.to_dict() for info in infos], out)
    for info in [] if args.json else infos:
        out.write(f"{info.name}\t{info.documents} 文書\t{info.chunks} チャンク\n")
    return 0


def _sources(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    service = _service(settings)
    if args.action == "add":
        info = service.add_source(
            cli_caller(), settings.collection, args.source, args.include, args.exclude, args.password_file
        )
        if args.json:
            _dump(info.to_dict(), out)
        else:
            out.write(f"同期元 {info.id} を加えました: {info.collection} ← {info.location}\n")
            err.write(f"最初の同期: python -m pipelines sync --collection {info.collection}\n")
        return 0
    if args.action == "remove":
        info = service.remove_source(cli_caller(), settings.collection, args.number, args.delete_documents)
        if args.json:
            _dump(info.to_dict(), out)
        else:
            kept = "文書も削除しました" if args.delete_documents else "取り込んだ文書は残しています"
            out.write(f"同期元 {info.id}（{info.location}）をやめました。{kept}。\n")
        return 0
    infos = service.sources(cli_caller(), args.collection)
    if args.json:
        _dump([info.to_dict() for info in infos], out)
        return 0
    if not infos:
        err.write(words.NO_SOURCES + "\n")
    for info in infos:
        synced = words.local_time(info.synced_at) if info.synced_at else "-"
        state = words.SYNC_OUTCOMES.get(info.outcome, info.outcome)
        out.write(
            f"{info.id}\t{info.collection}\t{info.location}\t{info.files} ファイル\t{synced} {state}"
            f"\t{words.sync_summary(info.counts) if info.counts else ''}\n"
        )
        if info.message:
            out.write(f"\t{info.message}\n")
    return 0


def _sync(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from pipelines.faces.cli_args import WATCH_SECONDS

    every = WATCH_SECONDS if args.watch else args.every
    service = _service(settings)
    try:
        while True:
            status = _sync_once(service, args, out, err)
            if every is None:
                return status
            time.sleep(every)
    except KeyboardInterrupt:
        return 0
    finally:
        service.close()


def _sync_once(service: Service, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """One sync of the sources asked for; 0 every file handled, 1 some failed, 2 deletions held back."""
    meter = Meter(err, "同期")
    reports = service.sync(
        cli_caller(),
        args.collection,
        args.source_number,
        allow_deletions=args.allow_deletions,
        progress=lambda name, done, total: meter.update(done, total),
    )
    meter.close()
    if args.json:
        _dump([report.to_dict() for report in reports], out)
    else:
        if not reports:
            err.write(words.NO_SOURCES + "\n")
        for report in reports:
            out.write(f"{report.collection} ← {report.location}: {words.sync_summary(report.counts())}\n")
            for old, new in report.moved:
                out.write(f"  移動: {old} → {new}\n")
            for name, reason in report.failed:
                out.write(f"  失敗: {name}: {reason}\n")
            if report.held:
                err.write(f"注意: {report.held}\n")
            if report.error:
                err.write(f"エラー: {report.error}\n")
    if any(report.held for report in reports):
        return 2
    return 1 if any(report.outcome != "ok" for report in reports) else 0


def _report(info: CollectionInfo, done: str, as_json: bool, out: TextIO) -> None:
    if as_json:
        _dump(info.to_dict(), out)
    else:
        out.write(f"{done}: {info.name}（{info.documents} 文書、{info.chunks} チャンク）\n")


def _serve(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from pipelines.faces.api import serve  # FastAPI and uvicorn: only for this command

    serve(settings, host=args.host, port=args.port)
    return 0


def _mcp(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from pipelines.faces.mcp_face import serve_stdio  # the MCP SDK: only for this command

    serve_stdio(settings)
    return 0


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
        meter = Meter(err, "埋め込み")
        sts = evaluation.evaluate_sts(embedder, pairs, meter.update)
        meter.close()
        if args.json:
            _dump(sts.to_dict(), out)
        else:
            out.write(evaluation.sts_table(sts, markdown=args.markdown))
        return 0
    meters: dict[str, Meter] = {}

    def step(what: str, done: int, total: int) -> None:
        meters.setdefault(what, Meter(err, what)).update(done, total)

    if parts is not None:
        judged = parts.querylog.judged_questions()
        qa = evaluation.evaluate_log(parts, judged[: args.limit] if args.limit else judged, ks=args.ks, step=step)
    else:
        articles, questions = evaluation.load_qa(args.file)
        if args.limit:
            questions = questions[: args.limit]
        qa = evaluation.evaluate_qa(settings, embedder, articles, questions, ks=args.ks, step=step)
    for meter in meters.values():
        meter.close()
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


def _sentences(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    """``sentences refine``: at the lowest CPU priority, since it is work for a quiet hour (a night's timer)."""
    os.nice(19)
    service = _service(settings)
    meter = Meter(err, f"{settings.collection}: 文を一つずつ埋め込み", " 文章")
    try:
        report = service.refine_sentences(cli_caller(), settings.collection, progress=meter.update)
    finally:
        meter.close()
        service.close()
    if args.json:
        _dump(report.to_dict(), out)
    else:
        out.write(words.REFINED.format(**report.to_dict()) + "\n")
    return 0


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
    "audit": _audit,
    "evaluate": _evaluate,
    "collections": _collections,
    "serve": _serve,
    "mcp": _mcp,
    "sources": _sources,
    "sync": _sync,
    "sentences": _sentences,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 some files failed, 2 refused with a message)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)
    try:
        settings = settings_from(args)
        return COMMANDS[args.command](args, settings, out, err)
    except (RagError, IngestError) as error:
        err.write(f"エラー: {error}\n")
        return 2


def run() -> None:
    """Console-script entry point (``jdocs``)."""
    raise SystemExit(main())
