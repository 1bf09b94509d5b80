"""The MCP face: the service's search, answers, collections and passages as Model Context Protocol tools.

``python -m pipelines mcp`` serves it over stdio, for an assistant on this machine (Claude Desktop,
VS Code, Cursor, …), and the API server (``serve``) at ``/mcp`` over Streamable HTTP, for assistants
elsewhere (pipelines/faces/api.py), both on the official SDK's ``MCPServer``:

    search            collection, question, k, mode, documents → the passages of ``search --json``,
                      each with its ``uri`` (the passage's id) and ``link`` (its view on the page)
    ask               the same → an answer with its citations (``ask --json``), where a chat model is set
    list_collections  the collections the caller may read, with their counts
    list_documents    a collection's documents
    read_passage      a passage by the ``uri`` a search gave, with the text just before and after it

    resource  rag://passage/{collection}/{source}/{chunk}   a passage's text (each part percent-encoded)

Who calls: over stdio the machine's own user, with every right like the CLI, unless ``--key`` /
``RAG_MCP_KEY`` names a key whose rights it gets; over HTTP whoever the request's key, token or
password names, as for the API. The service checks the rights and writes the audit row of every
call (face ``mcp``, the client's name and version from its ``initialize``); this module only parses
arguments and renders what the service returns. A refusal or failure is a tool error (``isError``)
with the service's Japanese message; bad arguments one in the catalogue's words; anything else a
generic Japanese message, logged here, never a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer, ResourceSecurity
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import AnyUrl, BaseModel, ConfigDict, Field, ValidationError

from ingest.errors import IngestError
from pipelines.choices import Mode
from pipelines.errors import AuthenticationError, DocumentNotFoundError, ModelLoadError, RagError
from pipelines.model.warmup import REQUEST_WAIT_SECONDS, ModelWarmup
from pipelines.service import words
from pipelines.service.keys import Keys
from pipelines.service.library import Library
from pipelines.service.links import viewer_link
from pipelines.service.results import Caller, Question, machine_caller
from pipelines.service.service import Service
from pipelines.settings import Settings
from pipelines.store.collections import canonical_name

logger = logging.getLogger(__name__)

NAME = "japanese-document-search"
SCHEME = "rag"
PASSAGE_TEMPLATE = f"{SCHEME}://passage/{{collection}}/{{source}}/{{chunk}}"
INSTRUCTIONS = (
    "社内の日本語文書（PDF、Word、Excel、PowerPoint、テキストなど）を検索し、出典付きで答えるためのサーバーです。"
    "まず list_collections でコレクションを確かめ、search で質問に近い箇所を探し、答えには各箇所の source と "
    "location（ページなど）を出典として示してください。箇所の前後は read_passage で読めます。\n"
    "Searches a team's Japanese documents. Call list_collections, then search; cite each passage's source "
    "and location. read_passage gives the text around a passage by the uri a search returned."
)


# -- the tools' arguments (their input schemas) -----------------------------------------------------

CollectionArg = Annotated[
    str,
    Field(
        description="コレクション名（既定は RAG_COLLECTION、ふつう default。list_collections で一覧） / collection name"
    ),
]
QuestionArg = Annotated[
    str, Field(min_length=1, max_length=2000, description="質問（日本語で） / the question, in Japanese")
]
KArg = Annotated[int | None, Field(ge=1, le=100, description="件数（既定 RAG_TOP_K） / how many passages")]
ModeArg = Annotated[Mode | None, Field(description="hybrid（既定）・dense（意味）・keyword（単語） / retrieval mode")]
DocumentsArg = Annotated[
    list[str] | None, Field(description="この文書だけから探す（文書名） / search only these documents")
]


# -- what the tools return (their output schemas) --------------------------------------------------


class Passage(BaseModel):
    """A passage found: every field of ``search --json``'s hits, with its id and its link on the page."""

    model_config = ConfigDict(extra="allow")

    uri: str = Field(description="この箇所の ID（read_passage とリソースの URI） / the passage's id and resource URI")
    link: str | None = Field(
        description="ページの原文ビューで開くリンク（RAG_PAGE_URL がなければ null） / opens it on the page"
    )
    rank: int = Field(description="順位 / rank")
    source: str = Field(description="文書名 / document")
    location: str = Field(
        description="場所の表示（3 ページ、スライド 2、シート「売上」5 行目など） / where, as a label"
    )
    page: int | None = Field(description="始まりのページ / first page")
    page_end: int | None = Field(description="終わりのページ / last page")
    slide: int | None = Field(description="スライド / slide")
    sheet: str | None = Field(description="シート / sheet")
    row: int | None = Field(description="始まりの行 / first row")
    row_end: int | None = Field(description="終わりの行 / last row")
    chunk_index: int = Field(description="文書の中のチャンク番号 / chunk number in the document")
    text: str = Field(description="本文 / the passage's text")
    cosine: float = Field(description="意味の類似度 / cosine similarity")
    keyword_score: float | None = Field(description="BM25 のスコア / BM25 score")
    rerank_score: float | None = Field(description="再ランキングのスコア / reranker's score")


class Found(BaseModel):
    """The passages a search found, in order."""

    collection: str = Field(description="コレクション / collection")
    question: str = Field(description="質問 / question")
    mode: Mode = Field(description="検索方式 / retrieval mode")
    rule: str = Field(description="並び順の規則 / how the passages are ordered")
    message: str = Field(
        description="文書がない・見つからないときの説明（ほかは空） / why nothing was found, else empty"
    )
    hits: list[Passage]


class Cited(BaseModel):
    """An answer written from the passages found, with its citations (``ask --json``)."""

    model_config = ConfigDict(extra="allow")

    question: str
    answer: str = Field(description="回答（[1] などは citations の n） / the answer, [n] citing citations")
    answered: bool = Field(description="資料に答えがあったか / whether the passages held an answer")
    citations: list[dict[str, Any]] = Field(description="出典: n、source、page、location、rank / the sources cited")
    hits: list[Passage]


class CollectionItem(BaseModel):
    """A collection the caller may read."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="コレクション名 / name")
    documents: int = Field(description="文書数 / documents")
    chunks: int = Field(description="チャンク数 / chunks")


class Collections(BaseModel):
    collections: list[CollectionItem]


class DocumentItem(BaseModel):
    """A stored document, as ``documents --json`` lists it."""

    model_config = ConfigDict(extra="allow")

    source: str = Field(description="文書名 / name")
    pages: int = Field(description="ページ数（スライド数） / pages or slides")
    chunks: int = Field(description="チャンク数 / chunks")
    added_at: str = Field(description="取り込んだ日時（UTC） / when it was added (UTC)")
    kind: str = Field(description="形式（pdf、docx、…） / format")


class Documents(BaseModel):
    collection: str
    documents: list[DocumentItem]


class PassageRead(BaseModel):
    """A passage by its id, with the document's text just before and after it."""

    uri: str
    link: str | None
    collection: str
    source: str = Field(description="文書名 / document")
    chunk_index: int
    location: str = Field(description="場所の表示 / where, as a label")
    page: int | None
    page_end: int | None
    before: str = Field(description="直前の本文 / the text just before")
    text: str = Field(description="この箇所の本文 / the passage")
    after: str = Field(description="直後の本文 / the text just after")


# -- passage ids -----------------------------------------------------------------------------------


def passage_uri(collection: str, source: str, chunk: int) -> str:
    """A passage's id: ``rag://passage/COLLECTION/SOURCE/CHUNK``, each part percent-encoded (UTF-8)."""
    quoted = [urllib.parse.quote(part, safe="") for part in (collection, source)]
    return f"{SCHEME}://passage/{quoted[0]}/{quoted[1]}/{chunk}"


def parse_passage_uri(uri: str) -> tuple[str, str, int]:
    """The collection, document and chunk of a passage's id (refused, in Japanese, when it is none)."""
    parts = urllib.parse.urlsplit(uri.strip())
    segments = parts.path.split("/")[1:]
    # a client that decoded the id leaves a document's own slashes: the first part and the last are fixed
    if parts.scheme != SCHEME or parts.netloc != "passage" or len(segments) < 3 or not segments[-1].isdigit():
        raise DocumentNotFoundError(words.PASSAGE_ID_INVALID.format(uri=uri))
    collection, source = (urllib.parse.unquote(part) for part in (segments[0], "/".join(segments[1:-1])))
    return collection, source, int(segments[-1])


# -- the server ------------------------------------------------------------------------------------


class RagServer(MCPServer):
    """The SDK's server, whose failures reach the client as Japanese tool errors (and resource errors)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            return CallToolResult(content=[TextContent(type="text", text=_tool_failure(name, error))], is_error=True)

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        try:
            return await super().read_resource(uri, context)
        except UnexpectedResourceError as error:
            cause = error.__cause__
            if isinstance(cause, RagError | IngestError):
                raise ResourceNotFoundError(str(cause)) from cause
            logger.error("MCP resource %s failed", uri, exc_info=cause)
            raise ResourceError(words.MCP_FAILED) from cause
        except ResourceNotFoundError as error:
            raise ResourceNotFoundError(words.PASSAGE_ID_INVALID.format(uri=uri)) from error


def _tool_failure(name: str, error: ToolError) -> str:
    """A tool's failure in Japanese: the service's refusal as it is, bad arguments in the catalogue's words."""
    cause = error.__cause__
    if isinstance(cause, RagError | IngestError):
        return str(cause)
    if isinstance(cause, ValidationError):
        return words.invalid_arguments(name, [words.validation_problem(e) for e in cause.errors()])
    if cause is None and not isinstance(error, UnexpectedToolError):
        return words.MCP_NO_TOOL.format(name=name)
    logger.error("MCP tool %s failed", name, exc_info=cause or error)
    return words.MCP_FAILED


class McpFace:
    """The tools and resources over one service.

    ``local`` is the caller of a stdio server (None over HTTP, where each request carries its own,
    set by the API as ``request.state.caller``); ``ready`` waits for the model (refused when it cannot
    load); ``page_url`` is where the page's viewer is (``RAG_PAGE_URL``).
    """

    def __init__(self, service: Service, local: Caller | None, ready: Callable[[], None], page_url: str) -> None:
        self.service = service
        self.local = local
        self.ready = ready
        self.page_url = page_url
        self.server = RagServer(NAME, title="日本語文書検索", instructions=INSTRUCTIONS, version="1")
        self._tools()
        self.server.resource(
            PASSAGE_TEMPLATE,
            name="passage",
            title="検索で見つかった箇所",
            description="箇所の本文。URI は search の hits[].uri / A passage's text; the URI is a search hit's uri.",
            mime_type="text/plain",
            # the document's name is a label the service looks up in the store, never a path
            security=ResourceSecurity(exempt_params={"source"}),
        )(self._passage_resource)

    # -- who calls ---------------------------------------------------------------------------------

    def caller(self, context: Context[Any, Any]) -> Caller:
        """This request's caller, with the client it came through (its ``initialize``'s name and version)."""
        request = context.request_context.request
        state = getattr(request, "state", None)
        base = getattr(state, "caller", None) if state is not None else self.local
        if not isinstance(base, Caller):  # a request the API did not identify: never served
            raise RagError(words.SIGN_IN_NEEDED)
        params = context.request_context.session.client_params
        info = params.client_info if params is not None else None
        client = " ".join(part for part in (info.name, info.version) if part) if info is not None else ""
        return dataclasses.replace(base, face="mcp", client=client)

    # -- tools -------------------------------------------------------------------------------------

    def _tools(self) -> None:
        service, default = self.service, self.service.settings.collection
        reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)

        @self.server.tool(
            title="文書を検索 / Search documents",
            description=(
                "質問に近い箇所を社内文書から探します。各箇所に文書名・ページなどの場所・本文・スコア・ID（uri）・"
                "ページで開くリンクが付きます。答えるときは source と location を出典として示してください。\n"
                "Finds the passages of the team's documents closest to a question, each with its document, "
                "page/slide/sheet and rows, text, scores, id (uri) and a link that opens it in the page's viewer."
            ),
            annotations=reads,
        )
        def search(
            question: QuestionArg,
            context: Context[Any, Any],
            collection: CollectionArg = default,
            k: KArg = None,
            mode: ModeArg = None,
            documents: DocumentsArg = None,
        ) -> Found:
            caller = self.caller(context)
            service.require(caller, collection, "read")  # refused before it waits for the model
            self.ready()
            found = service.search(caller, collection, Question(question, k, mode, tuple(documents or ())))
            message = (
                "" if found.hits else words.no_documents("mcp", found.collection) if not found.stored else words.NO_HITS
            )
            return Found(
                collection=found.collection,
                question=found.question,
                mode=found.mode,
                rule=found.rule,
                message=message,
                hits=[self._passage(found.collection, hit) for hit in found.hits_json()],
            )

        @self.server.tool(
            title="出典付きで回答 / Answer with citations",
            description=(
                "質問に近い箇所を探し、それだけを資料に言語モデルが出典付きで答えます（サーバーにチャットモデルが"
                "設定されているときだけ。ないときはエラーになるので search を使ってください）。\n"
                "Searches, then has the server's chat model answer from those passages only, citing them "
                "([n] in the answer). Only where a chat model is configured; otherwise use search."
            ),
            annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True),
        )
        def ask(
            question: QuestionArg,
            context: Context[Any, Any],
            collection: CollectionArg = default,
            k: KArg = None,
            mode: ModeArg = None,
        ) -> Cited:
            from pipelines.faces.api import collect_answer  # the API's rendering of ask's events, as ``ask --json``

            caller = self.caller(context)
            events = service.ask(caller, collection, Question(question, k, mode))  # refused here without a chat model
            self.ready()
            result = collect_answer(question, events)
            if result["error"]:
                raise RagError(f"{words.ANSWER_FAILED}{result['error']}")
            name = canonical_name(collection)
            return Cited.model_validate(result | {"hits": [self._passage(name, hit) for hit in result["hits"]]})

        @self.server.tool(
            title="コレクションの一覧 / List collections",
            description=(
                "読めるコレクション（文書のまとまり）と、それぞれの文書数・チャンク数。\n"
                "The collections (document libraries) you may read, with their counts."
            ),
            annotations=reads,
        )
        def list_collections(context: Context[Any, Any]) -> Collections:
            infos = service.collections(self.caller(context), recorded=True)
            return Collections(collections=[CollectionItem.model_validate(info.to_dict()) for info in infos])

        @self.server.tool(
            title="文書の一覧 / List documents",
            description="コレクションの文書（名前、ページ数、チャンク数、取り込んだ日時）。\nA collection's documents.",
            annotations=reads,
        )
        def list_documents(context: Context[Any, Any], collection: CollectionArg = default) -> Documents:
            caller = self.caller(context)
            listed = service.documents(caller, collection, recorded=True)
            return Documents(
                collection=canonical_name(collection),
                documents=[DocumentItem.model_validate(dataclasses.asdict(d)) for d in listed],
            )

        @self.server.tool(
            title="箇所を前後と読む / Read a passage",
            description=(
                "search が返した箇所の ID（uri）から、その本文と直前・直後の本文を返します。\n"
                "A passage by the id (uri) a search returned, with the document's text just before and after it."
            ),
            annotations=reads,
        )
        def read_passage(
            uri: Annotated[str, Field(min_length=1, description="search の hits[].uri / a search hit's uri")],
            context: Context[Any, Any],
        ) -> PassageRead:
            read = service.passage_text(self.caller(context), *parse_passage_uri(uri))
            stored, name = read.chunk, read.collection
            return PassageRead(
                uri=passage_uri(name, stored.source, stored.chunk_index),
                link=viewer_link(self.page_url, name, stored.source, stored.chunk_index, stored.page),
                collection=name,
                source=stored.source,
                chunk_index=stored.chunk_index,
                location=stored.location,
                page=stored.page,
                page_end=stored.page_end,
                before=read.before,
                text=stored.text,
                after=read.after,
            )

    def _passage(self, collection: str, hit: dict[str, Any]) -> Passage:
        """A hit of ``search --json`` with its id and its link (to the page its best sentence is on)."""
        source, chunk = hit["source"], hit["chunk_index"]
        page = hit.get("best_page") or hit.get("best_slide")
        return Passage.model_validate(
            hit
            | {
                "uri": passage_uri(collection, source, chunk),
                "link": viewer_link(self.page_url, collection, source, chunk, page),
            }
        )

    def _passage_resource(self, collection: str, source: str, chunk: str, context: Context[Any, Any]) -> str:
        if not chunk.isdigit():
            uri = PASSAGE_TEMPLATE.format(collection=collection, source=source, chunk=chunk)
            raise DocumentNotFoundError(words.PASSAGE_ID_INVALID.format(uri=uri))
        return self.service.passage_text(self.caller(context), collection, source, int(chunk)).chunk.text


# -- the two transports ----------------------------------------------------------------------------


def stdio_caller(settings: Settings) -> Caller:
    """Who a stdio server serves: the key ``RAG_MCP_KEY`` (``--key``) names, with its rights, or else the
    machine's own user with every right, as the CLI (whoever can start the server can run the CLI)."""
    if not settings.mcp_key:
        return machine_caller("mcp")
    keys = Keys.from_settings(settings.api_key, settings.api_keys_file)
    authorization = f"Bearer {settings.mcp_key}"
    if not keys.knows(authorization):
        raise AuthenticationError(words.MCP_KEY_UNKNOWN)
    return keys.caller(authorization, "mcp")


def serve_stdio(settings: Settings) -> None:
    """Serve MCP over this process's stdin and stdout until the client closes them."""
    caller = stdio_caller(settings)  # an unknown key is refused before anything starts
    library = Library(settings)
    library.pipelines(settings.collection)  # the store opens, or its error shows, before the client waits
    warmup = ModelWarmup(library.embedder).start()
    service = Service(library)

    def ready() -> None:
        if not warmup.wait(REQUEST_WAIT_SECONDS):
            raise ModelLoadError(words.MODEL_WAITING.format(stage=warmup.stage))

    try:
        McpFace(service, caller, ready, settings.page_url).server.run("stdio")
    finally:
        service.close()


def http_sessions(face: McpFace, loopback_only: bool) -> StreamableHTTPSessionManager:
    """The Streamable HTTP sessions of ``face`` for the API to mount at ``/mcp`` (it runs them in its lifespan).

    ``loopback_only`` (a server without keys or sign-in, which listens on loopback only): requests must
    name this machine as their host and origin, so that a web page cannot reach the server through DNS
    rebinding.
    """
    security = (
        TransportSecuritySettings(
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        if loopback_only
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    face.server.streamable_http_app(streamable_http_path="/mcp", transport_security=security)
    return face.server.session_manager
