"""Legacy Office files (.doc, .xls, .ppt) converted by LibreOffice to the formats the Office readers read.

Each conversion runs ``soffice --headless`` in a temporary directory of its own, with its own
LibreOffice profile and ``HOME`` there, so that conversions can run side by side and as any user
(root included), and nothing of them stays behind. The file is written there under a fixed name,
never the uploaded one. LibreOffice starts a process of its own (``soffice.bin``) under the one run
here, so the whole process group is killed when the time is up.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import FormatError, MissingToolError
from ingest.limits import Limits

# How much of the end of LibreOffice's own output a failure quotes, in characters.
_STDERR_TAIL = 600


@dataclass(frozen=True)
class _Target:
    suffix: str  # what the file becomes, without the dot (LibreOffice's --convert-to)
    package: str  # the Debian package that converts it
    application: str


_TARGETS = {
    ".doc": _Target("docx", "libreoffice-writer-nogui", "Word"),
    ".xls": _Target("xlsx", "libreoffice-calc-nogui", "Excel"),
    ".ppt": _Target("pptx", "libreoffice-impress-nogui", "PowerPoint"),
}
LEGACY_SUFFIXES = tuple(_TARGETS)


def libreoffice() -> str | None:
    """The path of LibreOffice's ``soffice`` (or ``libreoffice``) program, or None if it is not installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def _tail(output: bytes) -> str:
    # every run without Java warns that it could not start javaldx: noise, not the reason
    lines = output.decode("utf-8", "replace").splitlines()
    text = "\n".join(line for line in lines if "javaldx" not in line).strip()
    return text[-_STDERR_TAIL:] if text else "LibreOffice は何も出力しませんでした"


def _run(command: list[str], home: Path, seconds: float) -> tuple[int | None, bytes]:
    """Run LibreOffice; the exit status (None if it ran out of time) and what it wrote to stdout and stderr."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOME": str(home)},
        cwd=home,
        start_new_session=True,  # its own process group, so soffice.bin goes with it
    )
    try:
        output, _ = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        output, _ = process.communicate()
        return None, output
    _kill_group(process.pid)  # soffice.bin may outlive the launcher that started it
    return process.returncode, output


def _kill_group(leader: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group has already ended
        os.killpg(leader, signal.SIGKILL)


def convert_legacy(name: str, data: bytes, limits: Limits, seconds: float = 120) -> tuple[str, bytes]:
    """Convert a .doc, .xls or .ppt file to .docx, .xlsx or .pptx with LibreOffice: the new name and bytes.

    ``報告書.doc`` becomes ``報告書.docx``. The conversion may take ``seconds``, and no longer than the
    file's own time (``limits.seconds_per_file``). Raises ``MissingToolError`` naming the package to
    install when LibreOffice is not, and ``FormatError`` with LibreOffice's words when the conversion
    fails, runs out of time or writes nothing. ``ValueError`` for a name of another type (a caller's bug).
    """
    suffix = Path(name).suffix.lower()
    target = _TARGETS.get(suffix)
    if target is None:
        raise ValueError(f"not a legacy Office file: {name!r} (expected {', '.join(LEGACY_SUFFIXES)})")
    program = libreoffice()
    if program is None:
        raise MissingToolError(
            f"{name}: 古い {target.application} 形式（{suffix}）を読むには LibreOffice が必要ですが、"
            f"インストールされていないため、このファイルは追加していません。"
            f"管理者に LibreOffice（Debian/Ubuntu ではパッケージ {target.package}）のインストールを依頼するか、"
            f"{target.application} で .{target.suffix} 形式に保存し直してからアップロードしてください。"
        )
    seconds = min(seconds, limits.seconds_per_file)
    new_name = name[: -len(suffix)] + "." + target.suffix
    with tempfile.TemporaryDirectory(prefix="jdocs-legacy-") as temp:
        home = Path(temp)
        source = home / f"input{suffix}"
        source.write_bytes(data)
        outdir = home / "out"
        command = [
            program,
            f"-env:UserInstallation={(home / 'profile').as_uri()}",
            "--headless",
            "--norestore",
            "--nologo",
            "--nolockcheck",
            "--convert-to",
            target.suffix,
            "--outdir",
            str(outdir),
            str(source),
        ]
        # coreutils' timeout kills the whole group a little after our own deadline: it still does when
        # this process is killed first (ingest.isolation stops a reader that runs past its file's time)
        timeout = shutil.which("timeout")
        if timeout is not None:
            command = [timeout, "--signal=KILL", str(math.ceil(seconds) + 5), *command]
        status, output = _run(command, home, seconds)
        converted = outdir / f"input.{target.suffix}"
        if status is None:
            reason = f"{seconds:g} 秒以内に終わりませんでした"
        elif status != 0:
            reason = f"LibreOffice が終了コード {status} で止まりました: {_tail(output)}"
        elif not converted.is_file() or converted.stat().st_size == 0:
            reason = f"変換後のファイルができませんでした: {_tail(output)}"
        else:
            return new_name, converted.read_bytes()
    raise FormatError(
        f"{name}: LibreOffice で .{target.suffix} 形式に変換できません（{reason}）。"
        f"ファイルが壊れているか、パスワードで保護されています。{target.application} で開いて "
        f".{target.suffix} 形式で保存し直してからアップロードしてください。"
    )
