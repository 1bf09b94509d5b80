"""The command line driven in-process: a verb's exit status and what it wrote to stdout and stderr."""

from __future__ import annotations

import io

from pipelines.faces.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    """Run ``jdocs ARGV...`` in this process; return its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()
