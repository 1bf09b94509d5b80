"""Errors of the pipelines, each with a message a person can act on.

    RagError                    anything the pipelines refuse to do, with the reason and the fix
    ├── SettingsError           a setting (environment variable or flag) has an invalid value
    ├── ModelLoadError          the embedding model cannot be loaded (no network, wrong name, bad files)
    │   ├── TokenizerMismatchError  the tokenizer would not give the ids the model was trained with
    │   └── EmbeddingServiceError   a remote embeddings endpoint refuses, fails or does not answer
    ├── ModelMismatchError      the store was built with another embedding model
    ├── StoreError              Chroma cannot be opened, read or written
    ├── DocumentNotFoundError   no stored document has the given name
    ├── CollectionError         a collection cannot be used as asked
    │   ├── CollectionNameError     a name no collection can have (empty, too long, a slash, …)
    │   ├── CollectionNotFoundError no collection has this name
    │   └── CollectionExistsError   a collection of this name exists already (or cannot be deleted)
    ├── AccessError             a request's key, or a person signing in, is refused
    │   ├── AuthenticationError     no key, a key the server does not know (401), a wrong user name or password
    │   ├── DirectoryError          the sign-in directory (LDAP) or OpenID Connect provider cannot be reached
    │   └── PermissionDeniedError   a known key without the right to this collection or to write (403)
    ├── GenerationError         the chat model for answers refuses, fails or does not answer in time
    ├── NoChatModelError        an answer was asked for, and no chat model is configured (RAG_LLM_URL)
    ├── QueryLogError           the query and feedback log cannot be read or written
    ├── AuditError              the audit log cannot be read or written: the act it would record is refused
    ├── SourceError             a source kept in sync (a folder, an SMB share) cannot be added or used as asked
    │   ├── SourceNotFoundError     no source of the collection has this number
    │   └── SourceUnavailableError  the source cannot be reached or listed (server down, wrong password, no share)
    └── HistoryError            a conversation's history file cannot be read

Errors about a single file (unreadable PDF, unknown encoding) are ``ingest.errors.IngestError``;
the indexer reports them per file and carries on with the others. One of them is raised here:

    IngestError
    └── FileChangedError        a file changed between being read and its original being kept
"""

from ingest.errors import IngestError


class RagError(Exception):
    """Base of the pipelines' errors; ``str(error)`` is meant for the user."""


class SettingsError(RagError):
    """A setting has a value the product cannot use."""


class ModelLoadError(RagError):
    """The embedding model could not be loaded."""


class TokenizerMismatchError(ModelLoadError):
    """The installed tokenizer produces different token ids from the ones the model was trained on."""


class EmbeddingServiceError(ModelLoadError):
    """A remote embeddings endpoint could not give the vectors."""


class FileChangedError(IngestError):
    """A file's bytes changed after it was read: its original would not be what was indexed (pipelines/store/originals.py)."""


class ModelMismatchError(RagError):
    """Vectors from one embedding model were about to be mixed with another model's."""


class StoreError(RagError):
    """The vector store could not be used."""


class DocumentNotFoundError(RagError):
    """No stored document has this name."""


class GenerationError(RagError):
    """No answer could be generated; the passages found are still worth showing."""


class NoChatModelError(RagError):
    """An answer was asked for where no chat model is configured."""


class QueryLogError(RagError):
    """The query and feedback log (pipelines/service/querylog.py) could not be used."""


class AuditError(RagError):
    """The audit log (pipelines/service/audit.py) could not be used; what it would have recorded is not done."""


class SourceError(RagError):
    """A source kept in sync (pipelines/sources/) cannot be added or used as asked."""


class SourceNotFoundError(SourceError):
    """No source of the collection has this number."""


class SourceUnavailableError(SourceError):
    """A source cannot be reached or listed now: a server down, a wrong password, a share or folder missing."""


class HistoryError(RagError):
    """A conversation history file (``ask --history``) could not be read."""


class CollectionError(RagError):
    """A collection cannot be used as asked (pipelines/store/collections.py)."""


class CollectionNameError(CollectionError):
    """A name no collection can have."""


class CollectionNotFoundError(CollectionError):
    """No collection has this name."""


class CollectionExistsError(CollectionError):
    """A collection of this name exists already, or the default collection was to be deleted."""


class AccessError(RagError):
    """The HTTP API refuses a request's key (pipelines/service/keys.py)."""


class AuthenticationError(AccessError):
    """No key was given, or one the server does not know; or a user name and password the directory refuses."""


class DirectoryError(AccessError):
    """The directory people sign in with cannot be reached, or answers with an error."""


class PermissionDeniedError(AccessError):
    """A known key without the right to this collection, or to write to it."""
