"""Old Office files for tests, saved by LibreOffice from the files testkit.office makes, and a guard for outside programs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def require_program(*names: str, install: str = "") -> str:
    """The path of the first of ``names`` installed; the test is skipped without it, or fails under CI.

    A test that needs an outside program (LibreOffice, Tesseract) is skipped on a machine without it;
    CI (the ``CI`` environment variable set) must have every program, so there a missing one fails
    the test instead of skipping it quietly. ``install``: how to install it, for the message.
    """
    import pytest  # testkit is imported by benchmarks too, which do not need pytest

    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    reason = f"{' or '.join(names)} is not installed" + (f" ({install})" if install else "")
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run every test", pytrace=False)
    pytest.skip(reason)


def require_libreoffice() -> str:
    """LibreOffice's ``soffice``, as ``require_program`` finds it."""
    packages = "libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"
    return require_program("soffice", "libreoffice", install=f"apt-get install {packages}")


def save_as(data: bytes, suffix: str, to: str, soffice: str, seconds: float = 120) -> bytes:
    """``data`` (a file with ``suffix``, e.g. ".docx") saved by LibreOffice in the format ``to`` ("doc", "xls", "ppt")."""
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        source = folder / f"source{suffix}"
        source.write_bytes(data)
        subprocess.run(
            [
                soffice,
                f"-env:UserInstallation={(folder / 'profile').as_uri()}",
                "--headless",
                "--norestore",
                "--convert-to",
                to,
                "--outdir",
                str(folder / "out"),
                str(source),
            ],
            check=True,
            capture_output=True,
            timeout=seconds,
            env={**os.environ, "HOME": temp},
        )
        return (folder / "out" / f"source.{to}").read_bytes()
