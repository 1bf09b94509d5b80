"""The command line's arguments: every command, its flags, and the settings they override."""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.choices import MODES
from pipelines.evaluation import DEFAULT_KS
from pipelines.settings import Settings

MODE_OPTION: dict[str, Any] = {
    "dest": "retrieval_mode",
    "choices": MODES,
    "help": "検索方式: hybrid（既定、キーワードと意味）、dense（意味だけ）、keyword（単語だけ） [RAG_RETRIEVAL_MODE]",
}


def parser() -> argparse.ArgumentParser:
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
    audit = commands.add_parser("audit", parents=[common], help="監査ログ（だれが・いつ・どこから・何をしたか）")
    audit.add_argument(
        "--since", type=since, help="この日（2026-12-01、この機械の時刻）か、この日数前（7d）からの記録だけ"
    )

    collections = commands.add_parser(
        "collections", parents=[common], help="コレクションの一覧（文書数・チャンク数）、作成、削除"
    )
    actions = collections.add_subparsers(dest="action")
    create = actions.add_parser("create", parents=[common], help="空のコレクションを作る")
    create.add_argument("name", help="コレクション名（日本語も可）")
    drop = actions.add_parser("delete", parents=[common], help="コレクションを中の文書ごと削除する")
    drop.add_argument("name", help="コレクション名")
    drop.add_argument("--yes", action="store_true", help="確認: 文書・キーワード索引・元のファイルをすべて削除する")
    sources = commands.add_parser(
        "sources", parents=[common], help="同期元（フォルダーや SMB 共有）の一覧、追加、削除（docs/sources.md）"
    )
    source_actions = sources.add_subparsers(dest="action")
    add = source_actions.add_parser("add", parents=[common], help="フォルダーか SMB 共有を同期元に加える")
    add.add_argument(
        "source",
        metavar="SOURCE",
        help="フォルダーのパス、または smb://ユーザー@サーバー[:ポート]/共有/フォルダー（パスワードは RAG_SMB_PASSWORD）",
    )
    add.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="対象にするファイル（*.pdf、規程/* など、繰り返し可）",
    )
    add.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN", help="除くファイルやフォルダー（繰り返し可）"
    )
    add.add_argument(
        "--password-file", type=Path, help="SMB のパスワードを書いたファイル（このサービスだけが読めること: chmod 600）"
    )
    source_actions.add_parser("list", parents=[common], help="同期元と前回の同期の結果")
    remove = source_actions.add_parser("remove", parents=[common], help="同期元をやめる（文書は残す）")
    remove.add_argument("number", type=int, help="同期元の番号（sources list に表示される）")
    remove.add_argument("--delete-documents", action="store_true", help="この同期元から取り込んだ文書も削除する")
    sync = commands.add_parser("sync", parents=[common], help="同期元の変更を取り込む（追加・変更・移動・削除）")
    sync.add_argument("--source", type=int, dest="source_number", help="この番号の同期元だけ（--collection と一緒に）")
    sync.add_argument(
        "--allow-deletions",
        action="store_true",
        help="安全のため止めた削除を確認して行う（同期元が空になった、消えたファイルが多すぎる）",
    )
    repeat = sync.add_mutually_exclusive_group()
    repeat.add_argument("--every", type=interval, metavar="INTERVAL", help="この間隔で同期を続ける（15m、1h、90s）")
    repeat.add_argument(
        "--watch", action="store_true", help=f"変更を見張る: {WATCH_SECONDS} 秒ごとに大きさと時刻だけを確かめる"
    )
    sentences = commands.add_parser(
        "sentences",
        parents=[common],
        help="文ごとのベクトル: refine で全文章の文を一つずつ埋め込み、最適な文を正確にする",
    )
    sentences.add_argument(
        "action", choices=["refine"], help="refine: まだ正確でない文章の文を一つずつ埋め込む（夜間向け）"
    )
    serve = commands.add_parser("serve", parents=[common], help="HTTP API を起動する（FastAPI、/docs に説明）")
    serve.add_argument("--host", default="127.0.0.1", help="待ち受けるアドレス（既定 127.0.0.1）")
    serve.add_argument("--port", type=int, default=8000, help="ポート（既定 8000）")
    serve.add_argument(
        "--api-keys-file", type=Path, help="キーのファイル（行: キー パターン read|write） [RAG_API_KEYS_FILE]"
    )
    serve.add_argument("--max-upload-mb", type=int, help="アップロードの上限 MB [RAG_MAX_UPLOAD_MB]")
    serve.add_argument("--page-url", help="MCP が返す各箇所のリンクを開くページの URL [RAG_PAGE_URL]")
    serve.add_argument("-k", "--top-k", type=int, dest="top_k", help="既定の件数 [RAG_TOP_K]")
    serve.add_argument("--mode", **MODE_OPTION)

    mcp = commands.add_parser(
        "mcp",
        parents=[common],
        help="MCP サーバー（stdio）: Claude Desktop や VS Code などのアシスタントから検索する（docs/mcp.md）",
    )
    mcp.add_argument(
        "--key",
        dest="mcp_key",
        help="このキー（RAG_API_KEY か RAG_API_KEYS_FILE の）の権限だけで答える。既定はこのマシンのユーザーとしてすべて [RAG_MCP_KEY]",
    )
    mcp.add_argument("--api-keys-file", type=Path, help="キーのファイル（行: キー パターン 権限） [RAG_API_KEYS_FILE]")
    mcp.add_argument("--page-url", help="各箇所のリンクを開くページの URL [RAG_PAGE_URL]")
    mcp.add_argument("-k", "--top-k", type=int, dest="top_k", help="既定の件数 [RAG_TOP_K]")
    mcp.add_argument("--mode", **MODE_OPTION)

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


# how often ``sync --watch`` looks: a listing of sizes and times, no file read (docs/sources.md)
WATCH_SECONDS = 30


def interval(text: str) -> float:
    """``--every``: seconds, minutes or hours (``90s``, ``15m``, ``1h``; a bare number is minutes)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhSMH秒分時]?)\S*\s*", text)
    if not found or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"「{text}」は間隔（90s、15m、1h）にしてください。")
    unit = found.group(2).lower()
    scale = {"s": 1, "秒": 1, "h": 3600, "時": 3600}.get(unit, 60)
    return float(found.group(1)) * scale


def since(text: str) -> datetime:
    """``--since``: a date or time (ISO 8601, this machine's time unless it says its zone) or days back (``7d``)."""
    days = re.fullmatch(r"\s*(\d+)\s*[dD日]\s*", text)
    if days:
        return datetime.now(UTC) - timedelta(days=int(days.group(1)))
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"「{text}」は日付（2026-12-01）か日数（7d）にしてください。") from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the flags this command was given (a flag left out is None)."""
    flags = vars(args)
    return Settings.from_env(**{field.name: flags.get(field.name) for field in dataclasses.fields(Settings)})
