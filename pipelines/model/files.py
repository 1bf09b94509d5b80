"""Where one model's files are: its source (a directory or the hub), its directory here, its folder in the verdict cache."""

from __future__ import annotations

from pathlib import Path

from pipelines.model import hub
from pipelines.model.precision import VerdictCache, model_files


class ModelFiles:
    """The files of the model ``name``, located once; ``cache`` keeps its verdicts and int8 export (None: none kept)."""

    def __init__(self, name: str, cache: VerdictCache | None) -> None:
        self.name = name
        self.cache = cache
        self._source: hub.ModelSource | None = None

    def source(self) -> hub.ModelSource:
        """Where the model loads from; fails in seconds when it is neither here nor reachable."""
        if self._source is None:
            self._source = hub.locate(self.name, hub.EMBEDDING)
        return self._source

    def directory(self) -> Path | None:
        """The model's files on this machine: its directory, or its snapshot in the Hugging Face cache."""
        path = Path(self.source().target).expanduser()
        if path.is_dir():
            return path
        from huggingface_hub import snapshot_download

        try:
            with hub.quiet():
                return Path(snapshot_download(self.name, local_files_only=True))
        except (OSError, ValueError):  # not downloaded yet
            return None

    def cache_folder(self) -> Path | None:
        """This model's folder in the cache, named by its files; None without a cache or files yet."""
        if self.cache is None:
            return None
        directory = self.directory()
        if directory is None:
            return None
        return self.cache.model_dir(self.name, model_files(directory))
