"""Errors raised while turning a file into text.

IngestError                 a file cannot become text; the message names the file and what to do
├── UnsupportedFileError    the extension is not one the loaders read
├── EmptyDocumentError      the file holds no text (empty, blank, or a PDF without a text layer)
├── EncodingError           a text file in an encoding that cannot be detected
└── PdfError                a PDF that cannot be read (broken, truncated, or password-protected)
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


class PdfError(IngestError):
    """A PDF file that pypdf cannot read."""
