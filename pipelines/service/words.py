"""The catalogue: every Japanese label and message that a face shows, so the page, the CLI and the API say the same thing.

Errors raised by the engine (a file that cannot be read, a store that cannot be opened) carry their own
message, written once where they are raised; every face shows that message as it is. What is here is
what the faces themselves would otherwise each have written: statuses, places, modes, the messages of
the service's outcomes (nothing stored, nothing found, no chat model), the API's validation errors, and
how a time is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipelines.choices import Mode

if TYPE_CHECKING:
    from pipelines.service.audit import AuditEntry

# what ingesting a file did (FileReport.status), the same word on every face
STATUS_LABELS: Mapping[str, str] = {
    "added": "追加",
    "replaced": "置換",
    "unchanged": "変更なし",
    "duplicate": "重複",
    "failed": "失敗",
    "skipped": "スキップ",
}

# the retrieval modes (pipelines.choices.Mode) as the page's radio and the CLI's rule line name them
MODE_LABELS: Mapping[Mode, str] = {
    "hybrid": "ハイブリッド",
    "dense": "意味（ベクトル）",
    "keyword": "キーワード",
}

# what the audit log records (pipelines.service.audit.Action) and how it ended, as people read them
AUDIT_ACTIONS: Mapping[str, str] = {
    "sign_in": "サインイン",
    "sign_in_failed": "サインイン失敗",
    "refused": "拒否",
    "list": "一覧",
    "search": "検索",
    "ask": "回答",
    "view": "表示",
    "download": "ダウンロード",
    "upload": "取り込み",
    "delete_document": "削除",
    "create_collection": "コレクション作成",
    "delete_collection": "コレクション削除",
    "policy_reloaded": "権限の再読み込み",
    "feedback": "評価",
    "add_source": "同期元の追加",
    "remove_source": "同期元の削除",
    "sync": "同期",
    "refine_sentences": "文ベクトルの精密化",
}
REFINED = "{refined} 件の文章の文を一つずつ埋め込みました（済み {already} 件、{sentences} 文）"
AUDIT_OUTCOMES: Mapping[str, str] = {"ok": "", "refused": "拒否", "failed": "失敗"}
NO_AUDIT_ENTRIES = "監査ログはまだありません。"
AUDIT_COLUMNS = ("日時", "だれが", "操作", "コレクション", "文書", "内容")

NOT_LISTED = "候補外"
NO_DOCUMENTS = "まだ文書がありません。"
NO_DOCUMENTS_HINT = {
    "page": "左の「文書を追加」から PDF やテキストをアップロードし、「取り込む」を押してください。",
    "cli": "先に `python -m pipelines ingest{where} ファイル` で取り込んでください。",
    "api": "先に POST /v1/collections/{name}/documents で取り込んでください。",
    "mcp": "ページ、CLI（python -m pipelines ingest{where} ファイル）か API で取り込むと検索できます。",
}
NO_HITS = "該当する箇所は見つかりませんでした。"
NO_HITS_HINT = "文書の選択を外すか、言い方を変えてみてください。"
NO_FILES_FOUND = "取り込めるファイルが見つかりませんでした（対応形式: {suffixes}）。"
NO_CHAT_MODEL = (
    "回答を作る言語モデルが設定されていません。RAG_LLM_URL と RAG_LLM_MODEL に OpenAI 互換のチャットサーバーを"
    "指定してください（例: http://127.0.0.1:11434/v1。CLI では --llm-url と --llm-model でも指定できます）。"
    "検索だけなら search を使ってください。"
)
REWRITE_FAILED = "質問を書き換えられなかったため、入力どおりに検索します。"
ANSWER_FAILED = "回答を作れませんでした。"
SEARCHED_AS = "検索した質問: {question}"
LOG_FAILED = "質問の記録に書けませんでした。"
DROPPED_CITATIONS = "回答にある {numbers} は渡した箇所にない番号のため、出典から外しました。"
COLLECTION_DELETED = "コレクション「{name}」は削除されました。"
DOCUMENT_MISSING = "「{source}」は登録されていません。削除されたか、名前が変わった可能性があります。"
CHUNK_MISSING = "リンクの箇所（chunk）がこの文書にありません。文書が取り込み直された可能性があります。"
ORIGINAL_NOT_KEPT = (
    "この文書の元のファイルは保存されていません（保存を始める前に取り込まれた文書です）。取り込み直すと保存されます。"
)
SIGN_IN_NEEDED = (
    "サインインが必要です。API キー（Authorization: Bearer キー）、RAG_AUTH=ldap ならディレクトリのユーザー名と"
    "パスワード（Authorization: Basic）、RAG_AUTH=oidc ならプロバイダーのトークン（Bearer）を付けてください。"
)
VIEW_FAILED = "原文を表示できません。"
NO_DOWNLOAD = "このコレクションの元のファイルをダウンロードする権限がありません。"
MODEL_WAITING = "埋め込みモデルを読み込んでいます（{stage}）。しばらくしてから、もう一度送ってください。"
PASSAGE_ID_INVALID = (
    "「{uri}」は箇所の ID ではありません。search の結果の uri（rag://passage/コレクション/文書/番号）を渡してください。"
)
MCP_NO_TOOL = "ツール「{name}」はありません。tools/list で一覧を確かめてください。"
MCP_KEY_UNKNOWN = (
    "RAG_MCP_KEY（--key）のキーが RAG_API_KEY にも RAG_API_KEYS_FILE にもありません。管理者に確かめてください。"
)
MCP_FAILED = "予期しないエラーで処理できませんでした。サーバーのログを確かめてください。"
NOTHING_TO_EMBED = "なし（ベクトルにする文章がなく、モデルを読み込んでいません）"
# a command that ends while the first start on this machine still prepares the faster precision
FINISHING_PREPARATION = (
    "より速い計算精度の準備を終えてから終了します（この PC で一度だけです。次からは初めから使います）"
)


def place(rank: int | None) -> str:
    """A passage's place in one candidate list: 「3 位」, or 候補外 when it was not in that list."""
    return f"{rank} 位" if rank is not None else NOT_LISTED


def no_documents(face: str, collection: str) -> str:
    """What to say when the collection holds no document yet, with how to add one on this face."""
    where = "" if collection == "default" else f" --collection {collection}"
    hint = NO_DOCUMENTS_HINT.get(face, "").format(where=where, name=collection)
    return NO_DOCUMENTS + hint


def local_time(iso: str, with_time: bool = True, seconds: bool = False) -> str:
    """A stored UTC time (ISO 8601) as this machine's local time, 「2026-12-07 23:32」 (``seconds``: 「23:32:05」);
    unreadable text as it is."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime(("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") if with_time else "%Y-%m-%d")


def audit_fields(entry: AuditEntry) -> list[str]:
    """An audit row as people read it: local time, who (from where, through which program), the act (and how
    it ended, unless done), collection, document, detail."""
    action = AUDIT_ACTIONS.get(entry.action, entry.action)
    ended = AUDIT_OUTCOMES.get(entry.outcome, entry.outcome)
    if ended and ended != action:
        action += f"（{ended}）"
    where = "、".join(part for part in (entry.address, entry.client) if part)
    who = f"{entry.who}（{where}）" if where else entry.who
    return [local_time(entry.at, seconds=True), who, action, entry.collection, entry.document, entry.detail]


def dropped_citations(numbers: Sequence[int], escape: bool = False) -> str:
    """The warning about cited numbers that no passage had (``escape``: brackets escaped for Markdown)."""
    shown = "".join(f"\\[{n}\\]" if escape else f"[{n}]" for n in numbers)
    return DROPPED_CITATIONS.format(numbers=shown)


# The HTTP API's validation errors, by pydantic's error type, in Japanese (``{...}`` from the error's ctx).
_PROBLEMS: Mapping[str, str] = {
    "missing": "必須です",
    "extra_forbidden": "この項目は使えません",
    "string_too_short": "{min_length} 文字以上にしてください",
    "string_too_long": "{max_length} 文字以内にしてください",
    "string_type": "文字列にしてください",
    "int_parsing": "整数にしてください",
    "int_type": "整数にしてください",
    "int_from_float": "整数にしてください",
    "bool_parsing": "true か false にしてください",
    "bool_type": "true か false にしてください",
    "greater_than_equal": "{ge} 以上にしてください",
    "less_than_equal": "{le} 以下にしてください",
    "literal_error": "{expected} のどれかにしてください",
    "list_type": "リストにしてください",
    "dict_type": "オブジェクトにしてください",
    "model_type": "オブジェクトにしてください",
    "model_attributes_type": "オブジェクトにしてください",
    "json_invalid": "JSON として読めません",
    "too_long": "{max_length} 件以内にしてください",
}


def validation_problem(error: Mapping[str, Any]) -> tuple[str, str]:
    """One pydantic validation error as (where, what is wrong), both for a Japanese reader.

    ``where`` drops the ``body`` prefix (``body.question`` → ``question``); a message our own validator
    raised (type ``value_error``) is shown as it was written.
    """
    location = [str(part) for part in error.get("loc", ())]
    if location and location[0] in ("body", "query", "path"):
        location = location[1:]
    where = ".".join(location) or "本文"
    kind = str(error.get("type", ""))
    if kind == "value_error":
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        return where, message
    template = _PROBLEMS.get(kind)
    if template is None:
        return where, "値が正しくありません"
    context = {key: _shown(value) for key, value in (error.get("ctx") or {}).items()}
    try:
        return where, template.format(**context)
    except (KeyError, IndexError):
        return where, "値が正しくありません"


def _shown(value: Any) -> str:
    """A constraint from pydantic's ctx as a reader sees it (``'hybrid', 'dense' or 'keyword'`` → 「hybrid・dense・keyword」)."""
    text = str(value)
    if "'" in text:
        names = [part for part in text.replace(" or ", ", ").split(", ") if part]
        return "・".join(name.strip("'") for name in names)
    return text


def invalid_request(problems: Sequence[tuple[str, str]]) -> str:
    """The API's message for a request whose body, path or query is not as documented."""
    listed = "、".join(f"{where}（{what}）" for where, what in problems)
    return f"リクエストの内容が正しくありません: {listed}。/docs で形を確かめてください。"


def invalid_arguments(tool: str, problems: Sequence[tuple[str, str]]) -> str:
    """An MCP tool's message for arguments that are not as its schema says."""
    listed = "、".join(f"{where}（{what}）" for where, what in problems)
    return f"ツール「{tool}」の引数が正しくありません: {listed}。"


# -- sources kept in sync (pipelines/service/sources.py) ------------------------------------------------

SOURCE_KINDS: Mapping[str, str] = {"folder": "フォルダー", "smb": "SMB 共有"}
SYNC_OUTCOMES: Mapping[str, str] = {
    "": "未同期",
    "ok": "完了",
    "failed": "一部失敗",
    "held": "削除を保留",
    "unreachable": "接続できず",
}
SYNC_COUNTS: Mapping[str, str] = {
    "added": "追加",
    "replaced": "置換",
    "moved": "移動",
    "removed": "削除",
    "unchanged": "変更なし",
    "duplicates": "重複",
    "failed": "失敗",
    "skipped": "対象外",
    "withheld": "削除保留",
}
SYNC_SOME_FAILED = "読めないファイルがありました。次の同期でもう一度試します"
SYNC_NOW = "今すぐ同期"
SYNC_CONFIRM_DELETIONS = "削除を確認して同期"
NO_SOURCES = (
    "同期元はまだありません。`python -m pipelines sources add --collection 名前 フォルダーか smb://…` で追加します。"
)
SOURCE_ADD_MACHINE_ONLY = (
    "同期元を加えられるのは、このサーバーの利用者だけです（python -m pipelines sources add）。"
    "同期元はサーバーのフォルダーを読み、サーバーのパスワードで共有に接続するためです。"
)
SOURCES_TITLE = "同期元（フォルダー・共有）"
ORIGIN_LABEL = "共有の場所"


def sync_summary(counts: Mapping[str, int]) -> str:
    """A sync's figures in a line: 「追加 3、置換 1、削除 2、変更なし 120」 (those that are zero left out)."""
    shown = [f"{label} {counts[key]}" for key, label in SYNC_COUNTS.items() if counts.get(key)]
    return "、".join(shown) or "変更なし"
