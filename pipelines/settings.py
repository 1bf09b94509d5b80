"""Settings: read once, when asked, from ``RAG_*`` environment variables, with overrides from flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.limits import DEFAULT_LIMITS, Limits
from pipelines.choices import (
    AUTHS,
    MODES,
    OCR_MODES,
    PRECISIONS,
    QUERY_PRECISIONS,
    Auth,
    Mode,
    OcrMode,
    Precision,
    QueryPrecision,
)
from pipelines.errors import SettingsError

DEFAULT_MODEL = "pkshatech/GLuCoSE-base-ja"
ENV_PREFIX = "RAG_"
# the folder of this product in the user's cache directory
CACHE_FOLDER = "japanese-document-search"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# settings whose values form a closed set (pipelines/choices.py)
CHOICES: dict[str, tuple[str, ...]] = {
    "retrieval_mode": MODES,
    "precision": PRECISIONS,
    "query_precision": QUERY_PRECISIONS,
    "ocr": OCR_MODES,
    "auth": AUTHS,
}
# settings that are fields of ingest.limits.Limits, under the same names
LIMITS = tuple(field.name for field in dataclasses.fields(Limits))
# a field's metadata for a value that is a secret (a key, a token): set or not is shown, never the value
SECRET = {"secret": True}
HIDDEN = "***"


@dataclass(frozen=True)
class Settings:
    """Every setting of the product; field ``x`` is read from ``RAG_X``."""

    embedding_model: str = DEFAULT_MODEL
    data_dir: Path = Path("data")
    # the collection (library) to use: any name; "default" is the store's collection from before collections
    collection: str = "default"
    # each document's file as it was given, by content hash; None: RAG_DATA_DIR/originals. App machines
    # sharing a Chroma server point it at one shared directory
    originals_dir: Path | None = None
    chunk_tokens: int = 128
    chunk_overlap: int = 32
    # each chunk embedded and keyword-indexed with its document's title and heading path before it
    chunk_context: bool = True
    batch_size: int = 16
    device: str = ""
    # CPU threads of torch and ONNX Runtime; 0: as many as the CPUs this process may use
    threads: int = 0
    # precision verdicts and int8 exports of the model, kept between starts and shared by every data
    # directory and process of this machine; None: the user's cache directory (``machine_cache_dir``)
    cache_dir: Path | None = None
    top_k: int = 5
    # hybrid (keyword and meaning together), dense (meaning only) or keyword (words only)
    retrieval_mode: Mode = "hybrid"
    # how many chunks each of the dense and keyword lists contributes before ordering
    candidates: int = 50
    # hybrid mode's share of the keyword score: w·bm25/max + (1 − w)·(cosine − min)/(max − min) over the candidates
    keyword_weight: float = 0.5
    # a sentence-transformers CrossEncoder that reorders the first rerank_candidates hits; empty: off
    reranker: str = ""
    rerank_candidates: int = 20
    # a hit's best sentence: how many of its sentences, the closest by the vectors pooled at ingest, are
    # embedded alone at search time to choose among (0: the pooled vectors choose alone; docs/speed.md)
    sentence_check: int = 0
    # shown hits' pooled sentences embedded alone when no search is using the model, and kept (exact from then on)
    sentence_refine: bool = True
    # a faster precision the first start's check left for later (bfloat16, which needs torch) is checked in a
    # serving process's background; one-shot commands leave it to the next serving process
    background_checks: bool = True
    # an OpenAI-compatible embeddings endpoint instead of the in-process model, e.g. http://127.0.0.1:8080/v1
    embedding_url: str = ""
    embedding_api_key: str = field(default="", metadata=SECRET)
    # a local tokenizer (hub name or directory) that counts the remote model's tokens, where the server
    # has no /tokenize; empty: the ratio learned from the server's usage figures, else characters
    embedding_tokenizer: str = ""
    # None: the built-in profile of the model (pipelines/model/profiles.py); "" means no prefix
    query_prefix: str | None = None
    document_prefix: str | None = None
    # a Chroma server instead of the embedded store in data_dir
    chroma_host: str = ""
    chroma_port: int = 8000
    chroma_ssl: bool = False
    chroma_token: str = field(default="", metadata=SECRET)
    # auto: of int8 and bfloat16 (native only; float16 on a GPU), the fastest here that reproduces float32
    precision: Precision = "auto"
    # questions: auto is int8 on a CPU where it reproduces float32 on calibration texts, else as passages
    query_precision: QueryPrecision = "auto"
    # the largest file a person may upload or ingest
    max_upload_mb: int = 50
    # what one file may hold (ingest/limits.py): PDF pages, characters, pixels of an image or rendered
    # page, uncompressed MB, entries and compression ratio of a ZIP-based file; the seconds a file may
    # take to read and the memory of the child process that reads it
    max_pages: int = DEFAULT_LIMITS.max_pages
    max_chars: int = DEFAULT_LIMITS.max_chars
    max_pixels: int = DEFAULT_LIMITS.max_pixels
    max_zip_mb: int = DEFAULT_LIMITS.max_zip_mb
    max_zip_entries: int = DEFAULT_LIMITS.max_zip_entries
    max_zip_ratio: int = DEFAULT_LIMITS.max_zip_ratio
    max_merged_cells: int = DEFAULT_LIMITS.max_merged_cells
    seconds_per_file: int = DEFAULT_LIMITS.seconds_per_file
    reader_memory_mb: int = DEFAULT_LIMITS.reader_memory_mb
    # scanned PDF pages and images through Tesseract: auto (pages without a usable text layer), off, force
    ocr: OcrMode = "auto"
    # Tesseract's languages, as its -l option takes them
    ocr_langs: str = "jpn+jpn_vert+eng"
    # answers: an OpenAI-compatible chat endpoint (…/v1) and its model; empty: no answers, search only
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: str = field(default="", metadata=SECRET)
    # the passages' share of the prompt, in tokens estimated as one per character (pipelines/answers/answer.py)
    llm_context_tokens: int = 3000
    # seconds to wait for the chat model's response (and between streamed pieces)
    llm_timeout: int = 60
    # a conversation's earlier turns sent to rewrite a follow-up question, in tokens estimated as for passages
    llm_history_tokens: int = 1000
    # the query and feedback log in RAG_DATA_DIR (pipelines/service/querylog.py); off: nothing is written
    query_log: bool = True
    # days the audit log (RAG_DATA_DIR/audit.sqlite3, pipelines/service/audit.py) keeps a row; 0: forever
    audit_days: int = 365
    # the HTTP API (``serve``): one key that may read and write every collection, and a file of keys
    # with their collections and rights (lines ``KEY COLLECTION-PATTERN RIGHTS``, pipelines/service/keys.py)
    api_key: str = field(default="", metadata=SECRET)
    api_keys_file: Path | None = None
    # who may do what to which collections once people sign in: lines ``PRINCIPAL COLLECTION-PATTERN
    # RIGHTS`` (``user:NAME`` or ``group:NAME``, a glob, ``read,download,write,admin``), reread as it changes
    policy_file: Path | None = None
    # how people sign in to the page (docs/signin.md): none (the page serves this machine only), ldap,
    # or oidc (the page: [auth] in .streamlit/secrets.toml; the API: the provider's tokens)
    auth: Auth = "none"
    # the LDAP directory: ldap://host or ldaps://host; a person's DN with {user} where the user name goes;
    # where the groups are (a group's members in ``member``, its name its ``cn``; empty: no groups)
    ldap_url: str = ""
    ldap_user_dn: str = ""
    ldap_group_base: str = ""
    # STARTTLS on an ldap:// connection before the password is sent
    ldap_starttls: bool = False
    # the authority the directory's certificate chains to (a company's own CA), instead of the system's
    ldap_ca_file: Path | None = None
    # Active Directory and directories whose DNs cannot be written from the user name: a service account
    # (RAG_LDAP_BIND_DN / _PASSWORD) searches RAG_LDAP_SEARCH_BASE with RAG_LDAP_SEARCH_FILTER for the person
    ldap_search_base: str = ""
    ldap_search_filter: str = "(sAMAccountName={user})"
    ldap_bind_dn: str = ""
    ldap_bind_password: str = field(default="", metadata=SECRET)
    # minutes a sign-in to the page lasts
    session_minutes: int = 480
    # the API with RAG_AUTH=oidc: the provider's metadata (…/.well-known/openid-configuration), the
    # client id, and the audience a token must be for (empty: the client id)
    oidc_metadata_url: str = ""
    oidc_client_id: str = ""
    oidc_audience: str = ""
    # the page's address as people open it (https://docs.example.jp/): the MCP face links each passage it
    # returns to the page's view of it there; empty: no links
    page_url: str = ""
    # ``mcp`` over stdio: a key of RAG_API_KEY / RAG_API_KEYS_FILE whose rights the assistant gets;
    # empty: every right, as the CLI (the machine's own user)
    mcp_key: str = field(default="", metadata=SECRET)
    # sources kept in sync (docs/sources.md): the password of an SMB source's user (unless the source
    # names a --password-file); seconds to wait for an SMB server; the share of a source's files one sync
    # may delete before it holds the deletions back for a person to confirm (0 to 1)
    smb_password: str = field(default="", metadata=SECRET)
    smb_timeout: int = 30
    sync_max_delete_share: float = 0.3

    def __repr__(self) -> str:
        """Every setting, a secret as ``'***'`` when set (``''`` when not): a log or traceback shows no key."""
        shown = []
        for each in dataclasses.fields(self):
            value = getattr(self, each.name)
            if each.metadata.get("secret") and value:
                value = HIDDEN
            shown.append(f"{each.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise SettingsError(f"RAG_CHUNK_TOKENS は 16 以上にしてください（現在 {self.chunk_tokens}）。")
        if not 0 <= self.chunk_overlap <= self.chunk_tokens // 2:
            raise SettingsError(
                f"RAG_CHUNK_OVERLAP は 0 以上、RAG_CHUNK_TOKENS の半分（{self.chunk_tokens // 2}）以下にしてください"
                f"（現在 {self.chunk_overlap}）。"
            )
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise SettingsError(
                    f"{ENV_PREFIX}{name.upper()} は {'、'.join(allowed)} のどれかにしてください"
                    f"（現在 {getattr(self, name)!r}）。"
                )
        for name in ("batch_size", "top_k", "candidates", "rerank_candidates", *LIMITS):
            if getattr(self, name) < 1:
                raise SettingsError(f"RAG_{name.upper()} は 1 以上にしてください（現在 {getattr(self, name)}）。")
        if not 0.0 <= self.keyword_weight <= 1.0:
            raise SettingsError(f"RAG_KEYWORD_WEIGHT は 0 以上 1 以下にしてください（現在 {self.keyword_weight}）。")
        if self.sentence_check < 0:
            raise SettingsError(f"RAG_SENTENCE_CHECK は 0 以上にしてください（現在 {self.sentence_check}）。")
        if self.threads < 0:
            raise SettingsError(f"RAG_THREADS は 0（自動）以上にしてください（現在 {self.threads}）。")
        if self.max_upload_mb < 1:
            raise SettingsError(f"RAG_MAX_UPLOAD_MB は 1 以上にしてください（現在 {self.max_upload_mb}）。")
        if self.chroma_host and not self.chroma_token and self.chroma_host not in LOOPBACK:
            raise SettingsError(
                f"Chroma サーバー（{self.chroma_host}）がこのマシンの外にあるのに RAG_CHROMA_TOKEN がありません。"
                "認証なしで文書を送ることはしません。サーバーの前の認証プロキシのトークンを設定してください。"
            )
        if self.llm_url and not self.llm_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"RAG_LLM_URL は http:// か https:// で始まる URL にしてください（現在 {self.llm_url!r}）。"
                "例: http://127.0.0.1:11434/v1"
            )
        if self.llm_url and not self.llm_model.strip():
            raise SettingsError(
                "RAG_LLM_URL があるのに RAG_LLM_MODEL が空です。サーバーでのモデル名を指定してください"
                "（例: Ollama なら qwen2.5:7b、llama-server なら任意の名前）。"
            )
        if self.llm_context_tokens < 100:
            raise SettingsError(f"RAG_LLM_CONTEXT_TOKENS は 100 以上にしてください（現在 {self.llm_context_tokens}）。")
        if self.llm_history_tokens < 100:
            raise SettingsError(f"RAG_LLM_HISTORY_TOKENS は 100 以上にしてください（現在 {self.llm_history_tokens}）。")
        if self.audit_days < 0:
            raise SettingsError(f"RAG_AUDIT_DAYS は 0（無期限）以上にしてください（現在 {self.audit_days}）。")
        if self.llm_timeout < 1:
            raise SettingsError(f"RAG_LLM_TIMEOUT は 1 秒以上にしてください（現在 {self.llm_timeout}）。")
        if self.session_minutes < 1:
            raise SettingsError(f"RAG_SESSION_MINUTES は 1 以上にしてください（現在 {self.session_minutes}）。")
        if not 0 <= self.sync_max_delete_share <= 1:
            raise SettingsError(
                f"RAG_SYNC_MAX_DELETE_SHARE は 0 から 1 の間にしてください（現在 {self.sync_max_delete_share}）。"
            )
        if self.smb_timeout < 1:
            raise SettingsError(f"RAG_SMB_TIMEOUT は 1 以上にしてください（現在 {self.smb_timeout}）。")
        if self.auth == "ldap":
            self._check_ldap()
        if self.auth == "oidc" and self.policy_file is None:
            raise SettingsError(
                "RAG_AUTH=oidc には、誰がどのコレクションを使えるかを書いた RAG_POLICY_FILE が必要です（docs/signin.md）。"
            )
        if self.oidc_metadata_url and not self.oidc_metadata_url.startswith(("http://", "https://")):
            raise SettingsError(
                "RAG_OIDC_METADATA_URL は http:// か https:// で始まる URL にしてください"
                f"（例: https://login.example.jp/.well-known/openid-configuration、現在 {self.oidc_metadata_url!r}）。"
            )
        if self.page_url and not self.page_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"RAG_PAGE_URL は http:// か https:// で始まるページの URL にしてください（例: https://docs.example.jp/、現在 {self.page_url!r}）。"
            )
        if not self.embedding_model.strip():
            raise SettingsError("RAG_EMBEDDING_MODEL が空です。モデル名かモデルのディレクトリを指定してください。")

    def _check_ldap(self) -> None:
        """What sign-in against an LDAP directory needs: where it is, a person's DN, and a policy."""
        if not self.ldap_url.startswith(("ldap://", "ldaps://")):
            raise SettingsError(
                f"RAG_AUTH=ldap には RAG_LDAP_URL を ldap:// か ldaps:// で始まる URL にしてください（現在 {self.ldap_url!r}）。"
                "例: ldaps://ldap.example.jp"
            )
        if self.ldap_starttls and self.ldap_url.startswith("ldaps://"):
            raise SettingsError("RAG_LDAP_STARTTLS は ldap:// の URL にだけ使えます（ldaps:// は初めから TLS です）。")
        if self.ldap_search_base:
            if self.ldap_search_filter.count("{user}") != 1 or not self.ldap_search_filter.startswith("("):
                raise SettingsError(
                    "RAG_LDAP_SEARCH_FILTER はユーザー名の入る所に {user} を一つだけ書いた LDAP のフィルターにしてください"
                    f"（例: (sAMAccountName={{user}})、現在 {self.ldap_search_filter!r}）。"
                )
            if not self.ldap_bind_dn or not self.ldap_bind_password:
                raise SettingsError(
                    "RAG_LDAP_SEARCH_BASE で人を探すには、探すためのサービスアカウント RAG_LDAP_BIND_DN と "
                    "RAG_LDAP_BIND_PASSWORD が必要です（docs/signin.md）。"
                )
        elif self.ldap_user_dn.count("{user}") != 1 or "{" in self.ldap_user_dn.replace("{user}", ""):
            raise SettingsError(
                "RAG_LDAP_USER_DN はユーザー名の入る所に {user} を一つだけ書いた DN にしてください"
                f"（例: uid={{user}},ou=people,dc=example,dc=jp、現在 {self.ldap_user_dn!r}）。"
            )
        if self.policy_file is None:
            raise SettingsError(
                "RAG_AUTH=ldap には、誰がどのコレクションを使えるかを書いた RAG_POLICY_FILE が必要です（docs/signin.md）。"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (``os.environ`` by default); overrides that are not None win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for each in dataclasses.fields(cls):
            convert = _converter(each.name, each.type)  # every field's, set or not: an unknown type fails at once
            override = overrides.get(each.name)
            raw = override if override is not None else environ.get(ENV_PREFIX + each.name.upper())
            if raw is None or (raw == "" and convert is not _text):
                continue  # unset, or set to nothing: the default (a text may be empty)
            values[each.name] = convert(each.name, raw)
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        return cls(**values)


def machine_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where this machine's precision verdicts and int8 exports are kept when ``RAG_CACHE_DIR`` is unset:
    ``$XDG_CACHE_HOME/japanese-document-search``, else ``~/.cache/japanese-document-search``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME", "")
    root = (
        Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    )  # the XDG rule: relative is ignored
    return root / CACHE_FOLDER


def _text(name: str, raw: Any) -> str:
    return str(raw)


def _integer(name: str, raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{ENV_PREFIX}{name.upper()} は整数で指定してください（現在 {raw!r}）。") from None


def _number(name: str, raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{ENV_PREFIX}{name.upper()} は数値で指定してください（現在 {raw!r}）。") from None


def _path(name: str, raw: Any) -> Path:
    return Path(raw).expanduser()


def _flag(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{ENV_PREFIX}{name.upper()} は on か off（true か false）で指定してください（現在 {raw!r}）。")


# How a setting is parsed, by its annotation as written (``from __future__ import annotations``): the
# closed sets are texts here, checked against pipelines/choices.py in ``Settings.__post_init__``.
CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "str": _text,
    "str | None": _text,
    "Mode": _text,
    "Auth": _text,
    "Precision": _text,
    "QueryPrecision": _text,
    "OcrMode": _text,
    "int": _integer,
    "float": _number,
    "bool": _flag,
    "Path": _path,
    "Path | None": _path,
}


def _converter(name: str, kind: Any) -> Callable[[str, Any], Any]:
    """The parser of field ``name`` annotated ``kind``; a type with none is a programming error, raised at once."""
    try:
        return CONVERTERS[str(kind)]
    except KeyError:
        raise TypeError(
            f"Settings.{name}: no parser for the type {kind!r}; add one to pipelines.settings.CONVERTERS"
        ) from None
