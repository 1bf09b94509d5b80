"""Errors raised while turning a file into text.

IngestError                 a file cannot become text; the message names the file and what to do
├── UnsupportedFileError    the extension is not one the loaders read
├── EmptyDocumentError      the file holds no text (empty, blank, or a PDF without a text layer)
├── EncodingError           a text file in an encoding that cannot be detected
├── FileTooLargeError       the file is larger than RAG_MAX_UPLOAD_MB
├── ResourceLimitError      reading the file would pass a limit (pages, characters, pixels, ZIP contents)
│   └── FileTimeoutError    reading the file took longer than RAG_SECONDS_PER_FILE (ingest/isolation.py)
├── ReaderCrashedError      the child process reading the file died or ran out of its memory bound
├── PdfError                a PDF that cannot be read (broken, truncated, or password-protected)
├── FormatError             a Word, Excel, PowerPoint, HTML or CSV file its library cannot read
└── MissingToolError        the file needs a program that is not installed (Tesseract, LibreOffice)
"""


class IngestError(Exception):
    """A file could not be turned into text; ``str(error)`` is a message for the person who gave it."""


class UnsupportedFileError(IngestError):
    """The file's extension is not supported."""


class EmptyDocumentError(IngestError):
    """The file contains no text to index."""


class EncodingError(IngestError):
    """A text file whose character encoding could not be determined."""


class FileTooLargeError(IngestError):
    """The file is larger than the configured limit."""


class ResourceLimitError(IngestError):
    """Reading the file would pass one of the limits in ``ingest.limits.Limits``; the message names its setting."""


class FileTimeoutError(ResourceLimitError):
    """Reading the file did not end within its time; the reading process was stopped."""


class ReaderCrashedError(IngestError):
    """The process reading the file died (native crash) or passed its memory bound; the file is refused."""


class PdfError(IngestError):
    """A PDF file that pypdf cannot read."""


class FormatError(IngestError):
    """A file that its format's library cannot read (damaged, or not what its extension says)."""


class MissingToolError(IngestError):
    """Reading the file needs a program that is not installed; the message names the package to install."""
