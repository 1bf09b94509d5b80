"""The HTTP API: ``python -m pipelines serve``, FastAPI on uvicorn over the same service as the page and the CLI.

    GET    /v1/health                                   up or not; with a key also model, store, precision; 200 once ready
    GET    /v1/collections                              the collections the key may read, with counts
    POST   /v1/collections/{name}                       create a collection (201)
    DELETE /v1/collections/{name}                       delete it, with its documents, keyword index, originals
    GET    /v1/collections/{name}/documents             documents, as ``documents --json``
    POST   /v1/collections/{name}/documents             multipart upload (field ``files``), reports as ``ingest --json``
    DELETE /v1/collections/{name}/documents/{source}    delete one document
    POST   /v1/collections/{name}/search                {"question", "k", "mode", "documents"} → {"hits", "rule"}
    POST   /v1/collections/{name}/ask                   the same (and "stream", "history") → ``ask --json``, or events
    *      /mcp                                         MCP over Streamable HTTP (pipelines/faces/mcp_face.py)
    GET    /v1/collections/{name}/sources               the folders and SMB shares it keeps in sync, as ``sources list --json``
    POST   /v1/collections/{name}/sources               {"location", "include", "exclude", "password_file"}: add one (201)
    DELETE /v1/collections/{name}/sources/{number}      stop following one (``?delete_documents=true``: its documents too)
    POST   /v1/collections/{name}/sync                  {"source", "allow_deletions"} → the reports, as ``sync --json``

Every route but the health check and the docs (``/docs``, ``/openapi.json``), ``/mcp`` included, wants
``Authorization: Bearer KEY`` once a key is configured (pipelines/service/keys.py; the health check
without one says only whether the service is up); with none, the server listens on loopback only.
With ``RAG_AUTH=oidc`` a bearer that is no configured key is a token of the OpenID Connect provider
(pipelines/service/oidc.py), and the person it names has the rights of ``RAG_POLICY_FILE``. The API identifies the key as a ``Caller``; the service checks its rights. Errors are JSON ``{"status", "code", "message"}`` with the message in
Japanese. A request body over its limit (``RAG_MAX_UPLOAD_MB`` for uploads, 1 MB otherwise) is
refused from its ``Content-Length`` before it is read, and counted as it is read when it has none.
Handlers that touch the model or the store run in worker threads: searches run side by side, writes
to a collection one at a time (``Library``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from ingest.errors import FileTooLargeError, IngestError
from pipelines.answers.answer import failed_answer_json
from pipelines.answers.conversation import Turn
from pipelines.choices import Mode
from pipelines.errors import (
    AuditError,
    AuthenticationError,
    CollectionExistsError,
    CollectionNameError,
    CollectionNotFoundError,
    DirectoryError,
    DocumentNotFoundError,
    GenerationError,
    ModelLoadError,
    ModelMismatchError,
    NoChatModelError,
    PermissionDeniedError,
    RagError,
    SettingsError,
    SourceError,
    SourceNotFoundError,
    StoreError,
)
from pipelines.faces.http import MULTIPART_SLACK, BodyLimit, Receive, Scope, Send, error_body, sse
from pipelines.faces.mcp_face import McpFace, http_sessions
from pipelines.model.warmup import REQUEST_WAIT_SECONDS, ModelWarmup
from pipelines.service import words
from pipelines.service.keys import Keys
from pipelines.service.library import Library
from pipelines.service.oidc import TokenVerifier
from pipelines.service.results import (
    Answered,
    AnswerFailed,
    AskEvent,
    Caller,
    Delta,
    Face,
    Found,
    Question,
    Rewritten,
    Searched,
)
from pipelines.service.service import Service
from pipelines.settings import LOOPBACK, Settings

# a search or ask body is a question and a few options
JSON_LIMIT = 1024 * 1024
MAX_FILES = 100

# each refusal's status and code (the most specific class first)
STATUSES: list[tuple[type[Exception], int, str]] = [
    (AuthenticationError, 401, "unauthenticated"),
    (PermissionDeniedError, 403, "forbidden"),
    (DirectoryError, 503, "sign_in_unavailable"),
    (CollectionNameError, 400, "bad_collection_name"),
    (CollectionNotFoundError, 404, "collection_not_found"),
    (DocumentNotFoundError, 404, "document_not_found"),
    (SourceNotFoundError, 404, "source_not_found"),
    (SourceError, 400, "bad_source"),
    (CollectionExistsError, 409, "collection_conflict"),
    (ModelMismatchError, 409, "model_mismatch"),
    (FileTooLargeError, 413, "too_large"),
    (StoreError, 503, "store_unavailable"),
    (ModelLoadError, 503, "model_unavailable"),
    (GenerationError, 503, "generation_failed"),
    (NoChatModelError, 503, "no_chat_model"),
    (AuditError, 503, "audit_unavailable"),
    (SettingsError, 400, "bad_request"),
    (IngestError, 400, "bad_file"),
    (RagError, 400, "bad_request"),
]
HTTP_MESSAGES = {
    404: "そのパスはありません。/docs で API の一覧を確かめてください。",
    405: "このパスではそのメソッドは使えません。/docs で確かめてください。",
}


def _refusal(error: Exception) -> JSONResponse:
    status, code = next((s, c) for kind, s, c in STATUSES if isinstance(error, kind))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, code, str(error)), status_code=status, headers=headers)


class Query(BaseModel):
    """A question to one collection: the search's body, and the answer's with ``stream``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, description="質問（日本語）")
    k: int | None = Field(default=None, ge=1, le=100, description="件数（既定は RAG_TOP_K）")
    mode: Mode | None = Field(default=None, description="hybrid・dense・keyword（既定は RAG_RETRIEVAL_MODE）")
    documents: list[str] | None = Field(default=None, description="この文書だけから探す（文書名の一覧）")
    best_sentences: bool = Field(
        default=True,
        description="各 hit の質問に最も近い文（best_*）を求める（取り込み時に計算した文ごとのベクトルで。数ミリ秒）; false で省く",
    )

    def question_of(self) -> Question:
        """The service's question."""
        return Question(self.question, self.k, self.mode, tuple(self.documents or ()), self.best_sentences)

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("質問が空白だけです")
        return value


class SourceBody(BaseModel):
    """A folder or SMB share for a collection to keep in sync (its password stays on the server)."""

    model_config = ConfigDict(extra="forbid")

    location: str = Field(
        min_length=1,
        max_length=2000,
        description="フォルダーのパス、または smb://ユーザー@サーバー[:ポート]/共有/フォルダー",
    )
    include: list[str] = Field(default_factory=list, description="対象にするファイルのパターン（*.pdf、規程/* など）")
    exclude: list[str] = Field(default_factory=list, description="除くファイルやフォルダーのパターン")
    password_file: str | None = Field(
        default=None, description="SMB のパスワードを書いた、サーバー上のファイル（なければ RAG_SMB_PASSWORD）"
    )


class SyncBody(BaseModel):
    """Which sources of the collection to sync, and whether deletions held back are confirmed."""

    model_config = ConfigDict(extra="forbid")

    source: int | None = Field(default=None, description="この番号の同期元だけ（既定はすべて）")
    allow_deletions: bool = Field(default=False, description="安全のため止めた削除を確認して行う")


class EarlierTurn(BaseModel):
    """A turn of the conversation so far, as ``ask --json`` returned it."""

    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1, max_length=2000)
    answer: str = Field(default="", max_length=20000)
    standalone_question: str = Field(default="", max_length=2000)


class AskQuery(Query):
    stream: bool = Field(default=False, description="true: server-sent events（hits、delta、answer か error）")
    history: list[EarlierTurn] = Field(
        default_factory=list,
        max_length=50,
        description="それまでの会話（古い順）。続けての質問は、これを踏まえて書き換えてから検索する",
    )
    conversation: str = Field(
        default="", max_length=100, description="会話の ID（質問の記録で同じ会話の質問をまとめる）"
    )


ASK_EVENTS = "event: hits（{hits, rule}）、delta（{text}）の繰り返し、最後に answer（ask --json と同じ）か error"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            }
        },
    }
}


# the key of a request (FastAPI resolves the annotations of the handlers by name in this module)
Credentials = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(
        HTTPBearer(
            auto_error=False,
            description="RAG_API_KEY か RAG_API_KEYS_FILE のキー、RAG_AUTH=oidc ならプロバイダーのトークン（JWT）",
        )
    ),
]


def create_app(
    service: Service,
    keys: Keys,
    warmup: ModelWarmup,
    tokens: TokenVerifier | None = None,
) -> FastAPI:
    """The API over the service's collections, for the callers ``keys`` identify, and with ``tokens``
    the people whose provider's tokens it verifies, with the rights the service's policy gives them."""
    settings = service.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with mcp_sessions.run():
            yield
        # at shutdown, before uvicorn raises a SIGTERM it caught again (which skips exit hooks): the
        # file reader's child process ends with the server
        await run_in_threadpool(service.close)

    app = FastAPI(
        title="日本語文書検索 API",
        version="1",
        description="コレクションごとの文書の取り込み・検索・回答。認証は Authorization: Bearer キー。",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, upload=settings.max_upload_mb * 1024 * 1024 + MULTIPART_SLACK, other=JSON_LIMIT)

    @app.exception_handler(RagError)
    @app.exception_handler(IngestError)
    async def refused(request: Request, error: Exception) -> JSONResponse:
        return _refusal(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        found = [words.validation_problem(e) for e in error.errors()]
        problems = [{"where": where, "problem": what} for where, what in found]
        body = error_body(422, "invalid_request", words.invalid_request(found), problems=problems)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = HTTP_MESSAGES.get(error.status_code, f"リクエストを処理できません（{error.detail}）。")
        body = error_body(error.status_code, "http_error", message)
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    def who(header: str | None, address: str, face: Face = "api") -> Caller:
        """The caller an ``Authorization`` header makes: a key, a person's directory password (``RAG_AUTH=ldap``,
        HTTP Basic) or a provider's token (``RAG_AUTH=oidc``). With sign-in configured, nobody is let in
        without one of them, keys or not."""
        scheme = (header or "").partition(" ")[0].lower()
        if scheme == "basic" and settings.auth == "ldap":
            user, password = basic_credentials(header or "")
            return service.sign_in(face, user, password, address)  # audited there, either way
        if keys.knows(header):
            return keys.caller(header, face, address)
        if tokens is not None and scheme == "bearer":
            return service.person(face, tokens.person(header), address)
        if settings.auth != "none" and not keys.configured:
            raise AuthenticationError(words.SIGN_IN_NEEDED)
        return keys.caller(header, face, address)

    def caller(request: Request, credentials: HTTPAuthorizationCredentials | None, face: Face = "api") -> Caller:
        """Who sends the request (401 for a missing or unknown key, token or password); the service checks what they may do."""
        header = request.headers.get("authorization")
        address = request.client.host if request.client else ""
        try:
            return who(header, address, face)
        except AuthenticationError as error:
            if (header or "").partition(" ")[0].lower() != "basic":  # a password's refusal is recorded by sign_in
                service.sign_in_refused(Caller(face, Keys.label(header), address), str(error))
            raise

    def model() -> None:
        if not warmup.wait(REQUEST_WAIT_SECONDS):
            raise ModelLoadError(
                words.MODEL_WAITING.format(stage=warmup.stage) + "/v1/health が ready になってから送ってください。"
            )

    # MCP over Streamable HTTP: the same service, each request's caller identified as the API's
    mcp_face = McpFace(service, None, model, settings.page_url)
    mcp_sessions = http_sessions(mcp_face, loopback_only=settings.auth == "none" and not keys.configured)

    async def mcp(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            scope.setdefault("state", {})["caller"] = await run_in_threadpool(caller, request, None, "mcp")
        except (RagError, IngestError) as error:  # 401 as on /v1 (503 when the directory cannot be reached)
            await _refusal(error)(scope, receive, send)
            return
        await mcp_sessions.handle_request(scope, receive, send)

    app.router.routes.append(Route("/mcp", Asgi(mcp), include_in_schema=False))

    @app.get("/v1/health", summary="準備ができているか（キーがあればモデル、ストア、精度も）")
    def health(credentials: Credentials) -> JSONResponse:
        status = "ready" if warmup.ready else "failed" if warmup.error is not None else "loading"
        code = 200 if status == "ready" else 503
        try:
            who(f"Bearer {credentials.credentials}" if credentials else None, "")
        except (AuthenticationError, DirectoryError):  # without a valid key or token: only whether it is up
            return JSONResponse({"status": status}, status_code=code)
        embedder = service.embedder
        body = {
            "status": status,
            "model": settings.embedding_model,
            "store": service.library.collections.root.location,
            "precision": asdict(embedder.precision) if warmup.ready else None,
            "message": str(warmup.error) if warmup.error is not None else warmup.stage,
        }
        return JSONResponse(body, status_code=code)

    @app.get("/v1/collections", summary="コレクションの一覧（文書数・チャンク数）")
    def collections(request: Request, credentials: Credentials) -> list[dict[str, Any]]:
        return [info.to_dict() for info in service.collections(caller(request, credentials))]

    @app.post("/v1/collections/{name}", status_code=201, summary="コレクションを作る")
    def create(name: str, request: Request, credentials: Credentials) -> dict[str, Any]:
        return service.create_collection(caller(request, credentials), name).to_dict()

    @app.delete("/v1/collections/{name}", summary="コレクションを、文書・キーワード索引・元のファイルごと削除する")
    def delete(name: str, request: Request, credentials: Credentials) -> dict[str, Any]:
        return service.delete_collection(caller(request, credentials), name).to_dict()

    @app.get("/v1/collections/{name}/documents", summary="文書の一覧（documents --json と同じ）")
    def documents(name: str, request: Request, credentials: Credentials) -> list[dict[str, Any]]:
        return [asdict(d) for d in service.documents(caller(request, credentials), name)]

    @app.post(
        "/v1/collections/{name}/documents",
        summary="ファイルを取り込む（multipart、フィールド files、複数可）",
        openapi_extra=UPLOAD_BODY,
    )
    async def upload(name: str, request: Request, credentials: Credentials) -> JSONResponse:
        who = caller(request, credentials)
        # the right and the collection are checked before the body is read
        await run_in_threadpool(service.require, who, name, "write")
        form = await request.form(max_files=MAX_FILES)
        try:
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            if not files:
                raise RagError("ファイルがありません。multipart/form-data のフィールド files で送ってください。")
            return await run_in_threadpool(ingest, who, name, files)
        finally:
            await form.close()

    def ingest(who: Caller, name: str, files: list[UploadFile]) -> JSONResponse:
        model()
        given = [(f.filename or "名前なし", f.file.read()) for f in files]
        result = service.upload(who, name, given)
        if result.error:  # the store or the model refused: the files before it went in, the rest did not
            body = result.to_dict() | error_body(503, "store_unavailable", result.error)
            return JSONResponse(body, status_code=503)
        return JSONResponse(result.to_dict())

    @app.delete("/v1/collections/{name}/documents/{source:path}", summary="文書を一つ削除する")
    def delete_document(name: str, source: str, request: Request, credentials: Credentials) -> dict[str, Any]:
        return asdict(service.delete_document(caller(request, credentials), name, source))

    @app.get(
        "/v1/collections/{name}/sources",
        summary="同期元（フォルダー・SMB 共有）と前回の同期（sources list --json と同じ）",
    )
    def sources(name: str, request: Request, credentials: Credentials) -> list[dict[str, Any]]:
        return [info.to_dict() for info in service.sources(caller(request, credentials), name)]

    @app.post("/v1/collections/{name}/sources", status_code=201, summary="フォルダーか SMB 共有を同期元に加える")
    def add_source(name: str, body: SourceBody, request: Request, credentials: Credentials) -> dict[str, Any]:
        password_file = Path(body.password_file) if body.password_file else None
        who = caller(request, credentials)
        return service.add_source(who, name, body.location, body.include, body.exclude, password_file).to_dict()

    @app.delete("/v1/collections/{name}/sources/{number}", summary="同期元をやめる（既定では文書は残す）")
    def remove_source(
        name: str, number: int, request: Request, credentials: Credentials, delete_documents: bool = False
    ) -> dict[str, Any]:
        return service.remove_source(caller(request, credentials), name, number, delete_documents).to_dict()

    @app.post("/v1/collections/{name}/sync", summary="同期元の変更を取り込む（sync --json と同じ報告）")
    def sync(name: str, body: SyncBody, request: Request, credentials: Credentials) -> list[dict[str, Any]]:
        who = caller(request, credentials)
        service.require(who, name, "admin")  # refused before it waits for the model
        model()
        reports = service.sync(who, name, body.source, allow_deletions=body.allow_deletions)
        return [report.to_dict() for report in reports]

    @app.post("/v1/collections/{name}/search", summary="質問に近い箇所を探す（search --json と同じ hits）")
    def search(name: str, query: Query, request: Request, credentials: Credentials) -> dict[str, Any]:
        who = caller(request, credentials)
        service.require(who, name, "read")  # refused before it waits for the model
        model()
        found = service.search(who, name, query.question_of())
        return {"hits": found.hits_json(), "rule": found.rule}

    @app.post(
        "/v1/collections/{name}/ask",
        summary="見つかった箇所から出典付きの回答を作る（ask --json と同じ）",
        description=f"stream が true なら text/event-stream: {ASK_EVENTS}。",
        response_model=None,
    )
    def ask(
        name: str, query: AskQuery, request: Request, credentials: Credentials
    ) -> dict[str, Any] | JSONResponse | StreamingResponse:
        who = caller(request, credentials)
        history = [Turn(t.question, t.standalone_question or t.question, t.answer) for t in query.history]
        events = service.ask(who, name, query.question_of(), history, query.conversation)  # refused here, before a byte
        model()
        if query.stream:
            # up to the hits before the response starts: a search that fails is an error response, not a cut stream
            head = list(_until_searched(events))
            stream = answer_events(query.question, itertools.chain(head, events))
            return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        result = collect_answer(query.question, events)
        if result["error"]:
            body = result | error_body(503, "generation_failed", result["error"])
            return JSONResponse(body, status_code=503)
        return result

    return app


class Asgi:
    """An ASGI callable as a route's endpoint (Starlette wraps a plain function as a request handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _until_searched(events: Iterator[AskEvent]) -> Iterator[AskEvent]:
    for event in events:
        yield event
        if isinstance(event, Searched):
            return


def collect_answer(question: str, events: Iterator[AskEvent]) -> dict[str, Any]:
    """A conversation turn's events as one ``ask --json`` result."""
    result: dict[str, Any] = {"question": question, "standalone_question": question}
    found: Found | None = None
    for event in events:
        if isinstance(event, Rewritten):
            result["standalone_question"] = event.question
        elif isinstance(event, Searched):
            found = event.found
        elif isinstance(event, Answered):
            result |= event.answer.to_dict() | {"question": question, "error": None}
        elif isinstance(event, AnswerFailed):
            result |= failed_answer_json(question, event.message)
    return result | {"hits": found.hits_json() if found else []}


def answer_events(question: str, events: Iterator[AskEvent]) -> Iterator[str]:
    """Server-sent events of one turn: ``hits`` (with the question searched), ``delta`` pieces, then ``answer`` or ``error``."""
    for event in events:
        if isinstance(event, Searched):
            found = event.found
            yield sse("hits", {"hits": found.hits_json(), "rule": found.rule, "standalone_question": found.searched})
        elif isinstance(event, Delta):
            yield sse("delta", {"text": event.text})
        elif isinstance(event, Answered):
            yield sse("answer", {"question": question} | event.answer.to_dict() | {"error": None})
        elif isinstance(event, AnswerFailed):
            failed = failed_answer_json(question, event.message)
            yield sse("error", failed | error_body(503, "generation_failed", event.message))


def basic_credentials(header: str) -> tuple[str, str]:
    """The user name and password of an ``Authorization: Basic`` header (refused when it cannot be read)."""
    try:
        decoded = base64.b64decode(header.partition(" ")[2].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as error:
        raise AuthenticationError(words.SIGN_IN_NEEDED) from error
    user, colon, password = decoded.partition(":")
    if not colon:
        raise AuthenticationError(words.SIGN_IN_NEEDED)
    return user.strip(), password


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API until interrupted; without any key, only on loopback."""
    keys = Keys.from_settings(settings.api_key, settings.api_keys_file)
    tokens = TokenVerifier.from_settings(settings) if settings.auth == "oidc" else None
    if tokens is not None and not (settings.oidc_metadata_url and (settings.oidc_audience or settings.oidc_client_id)):
        raise SettingsError(
            "RAG_AUTH=oidc の API には RAG_OIDC_METADATA_URL（プロバイダーの …/.well-known/openid-configuration）と "
            "RAG_OIDC_CLIENT_ID（か RAG_OIDC_AUDIENCE）が必要です（docs/signin.md）。"
        )
    if settings.auth == "none" and not keys.configured and host not in LOOPBACK:
        raise SettingsError(
            f"API キーがないまま {host} で待ち受けることはしません（このマシンの外から誰でも読み書きできてしまいます）。"
            "RAG_API_KEY か RAG_API_KEYS_FILE を設定するか、--host 127.0.0.1 にしてください。"
        )
    library = Library(settings)
    library.pipelines(settings.collection)  # the store opens, or its error shows, before the server starts
    warmup = ModelWarmup(library.embedder).start()
    app = create_app(Service(library), keys, warmup, tokens)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
