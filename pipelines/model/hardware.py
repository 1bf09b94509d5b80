"""This machine as the embedder sees it: whether it may have a GPU, which device torch computes on, its usable CPUs."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def maybe_gpu() -> bool:
    """Whether this machine may have a GPU for torch: a GPU's device file, or a Mac (Metal)."""
    gpu_files = ("/dev/nvidia0", "/dev/kfd", "/dev/dxg")
    return sys.platform == "darwin" or any(Path(f).exists() for f in gpu_files)


def choose_device() -> str:
    """A GPU where torch finds one, else ``cpu``.

    Without a GPU's device file, torch is not imported to ask (a start with a kept int8 verdict
    never imports it).
    """
    if not maybe_gpu():
        return "cpu"
    import torch

    mps = getattr(torch.backends, "mps", None)
    return "cuda" if torch.cuda.is_available() else "mps" if mps is not None and mps.is_available() else "cpu"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it), at least one."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
