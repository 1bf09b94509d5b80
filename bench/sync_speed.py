"""Sync of a 10,000-file share: the first sync, an unchanged one (sizes and times only), and one after 1 % changed.

    .venv/bin/python bench/sync_speed.py [--files 10000] [--changed 0.01] [--rounds 3] [--model DIR] [--out FILE]

Builds a folder tree like a department share (100 folders of 100 small Japanese text files, each one
a different 規程 of two or three sentences), attaches it to a fresh data directory as a source, and
times, through the service the CLI uses (``Service.sync``): the first sync (every file read, embedded
and stored); ``--rounds`` unchanged syncs (the listing's sizes and times against the sync's records:
no file read, nothing embedded); then ``--changed`` of the files rewritten and synced (those read,
re-embedded and replaced). The first sync runs in ``--setup-dir`` (``/dev/shm`` where there is one:
on this machine's disk each of the store's writes waits for an fsync, and 10,000 first ingests would
take an hour); its data directory is then copied to ``--dir`` (a temporary folder on the disk by default),
where the syncs that are measured run. The model is the offline test model (``testkit/offline_model.py``,
GLuCoSE's architecture at a fraction of its size) unless ``--model`` names another: the unchanged
sync embeds nothing, so its time does not depend on the model; the changed one does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.service.library import Library  # noqa: E402
from pipelines.service.results import Caller  # noqa: E402
from pipelines.service.service import Service  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from testkit.offline_model import build_offline_model  # noqa: E402

ADMIN = Caller("cli", "cli:bench")
PER_FOLDER = 100


def text(number: int, version: int = 0) -> str:
    """A small, distinct 規程: two or three sentences naming its number (and its revision)."""
    revised = f"改定{version}回目。" if version else ""
    return (
        f"第{number}号規程。{revised}この規程は部署{number // PER_FOLDER}の手続き{number}について定める。"
        f"申請は{number % 30 + 1}日前までに上長へ提出する。"
    )


def build_tree(root: Path, files: int) -> list[Path]:
    paths = []
    for number in range(files):
        path = root / f"部署{number // PER_FOLDER:03d}" / f"規程{number:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text(number), encoding="utf-8")
        paths.append(path)
    return paths


def timed_sync(service: Service, say_every: int = 0) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()

    def progress(name: str, done: int, total: int) -> None:
        if say_every and done and done % say_every == 0:
            print(f"  {done}/{total} files, {time.perf_counter() - started:.0f} s", flush=True)

    [report] = service.sync(ADMIN, "default", progress=progress)
    seconds = time.perf_counter() - started
    if report.outcome != "ok":
        raise SystemExit(f"sync ended {report.outcome}: {report.error or report.held or report.failed[:3]}")
    return seconds, report.counts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of the files changed before the last sync")
    parser.add_argument("--rounds", type=int, default=3, help="unchanged syncs timed (the median is reported)")
    parser.add_argument("--model", help="embedding model (default: the offline test model)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--setup-dir", type=Path, help="where the tree and the first sync's store go (default /dev/shm)"
    )
    parser.add_argument("--dir", type=Path, help="where the measured syncs' store goes (default: a temporary folder)")
    args = parser.parse_args()

    shm = Path("/dev/shm")
    setup_base = args.setup_dir or (shm if shm.is_dir() else None)
    with (
        tempfile.TemporaryDirectory(prefix="sync-bench-", dir=setup_base) as setup,
        tempfile.TemporaryDirectory(prefix="sync-bench-", dir=args.dir) as scratch,
    ):
        model = args.model or str(build_offline_model(Path(scratch) / "model"))
        share = Path(setup) / "共有"
        paths = build_tree(share, args.files)
        service = Service(Library(Settings.from_env(data_dir=Path(setup) / "data", embedding_model=model)))
        try:
            service.add_source(ADMIN, "default", str(share))
            first, first_counts = timed_sync(service, say_every=1000)
        finally:
            service.close()
        print(
            f"first sync: {args.files} files in {first:.1f} s ({first_counts['added']} added, in {setup})", flush=True
        )
        data = Path(scratch) / "data"
        shutil.copytree(Path(setup) / "data", data)  # the measured syncs write to the disk, as a service's would
        service = Service(Library(Settings.from_env(data_dir=data, embedding_model=model)))
        service.embedder.load()  # as in a scheduled sync (--every), whose model stays loaded between rounds
        try:
            unchanged = [timed_sync(service) for _ in range(args.rounds)]
            still = statistics.median(seconds for seconds, _ in unchanged)
            assert all(counts["unchanged"] == args.files for _, counts in unchanged)
            print(f"unchanged sync: {still:.3f} s (median of {args.rounds})", flush=True)
            step = max(1, round(1 / args.changed)) if args.changed else 0
            changed = paths[::step] if step else []
            embedded_before = service.embedder.stats.texts
            for number, path in enumerate(changed):
                path.write_text(text(number * step, version=1), encoding="utf-8")
            after, after_counts = timed_sync(service)
            embedded = service.embedder.stats.texts - embedded_before
            print(
                f"after {len(changed)} changed: {after:.2f} s ({after_counts['replaced']} replaced, "
                f"{after_counts['unchanged']} unchanged, {embedded} texts embedded)",
                flush=True,
            )
        finally:
            service.close()
    result = {
        "files": args.files,
        "first_sync_in": str(setup_base or "a temporary folder"),
        "model": args.model or "offline test model",
        "first_sync_s": round(first, 2),
        "unchanged_sync_s": round(still, 3),
        "unchanged_rounds_s": [round(seconds, 3) for seconds, _ in unchanged],
        "changed_files": len(changed),
        "changed_sync_s": round(after, 2),
        "changed_counts": after_counts,
        "texts_embedded_for_changes": embedded,
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
