"""Run a bench as a CPU with AVX2 and FMA only would: AVX-512, AMX and VNNI hidden from CPUID.

    from bench import cpu_mask
    cpu_mask.run_masked()       # first thing in a bench's main(): runs the bench again under the mask
    cpu_mask.describe()         # the features this process sees, for the output

    .venv/bin/python bench/cpu_mask.py [COMMAND ...]   # the features seen, or COMMAND run under the mask

``bench/cpu_mask.c``, compiled here with gcc into ``bench-out/`` (again when the source is newer), is
an LD_PRELOAD shim: it makes the CPUID instruction fault (Linux ``arch_prctl(ARCH_SET_CPUID, 0)``, on
CPUs with CPUID faulting) and answers it from a signal handler with the real values less the bits of
AVX-512, AMX, AVX-VNNI and AVX512-BF16 and less the AVX-512 and AMX register state. numpy, torch
(oneDNN) and ONNX Runtime (MLAS) choose their kernels from CPUID, so they take their AVX2 paths; child
processes inherit LD_PRELOAD and are masked too. What it does not change: the cores, caches, memory
and clocks of this machine (an AVX2 kernel may run faster here than on a real AVX2-only CPU),
/proc/cpuinfo, and glibc's own string functions, chosen before the shim loads.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path(__file__).with_name("cpu_mask.c")
LIBRARY = REPO / "bench-out" / "cpu_mask.so"
# what the output reports (numpy's names); VNNI is AVX512VNNI in numpy 2
FEATURES = ("AVX2", "FMA3", "AVX512F", "AVX512VNNI", "AVX512BF16", "AVX512FP16")
# the kernel's flags that decide the fast paths, as /proc/cpuinfo names them
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "cpuid_fault")
NOTE = "the mask changes the instructions the libraries use, not the cores, caches, memory or clocks of this machine"

SYS_ARCH_PRCTL = 158  # x86-64
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012


def _arch_prctl(code: int, value: int) -> tuple[int, int]:
    """The syscall's result and errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(ctypes.c_long(SYS_ARCH_PRCTL), ctypes.c_long(code), ctypes.c_long(value))
    return int(result), ctypes.get_errno()


def cannot_mask() -> str | None:
    """Why this machine cannot mask CPUID; None when it can."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"CPUID can only be masked on Linux x86-64 (this is {sys.platform} {platform.machine()})"
    result, error = _arch_prctl(ARCH_GET_CPUID, 0)
    if result < 0:
        return f"arch_prctl(ARCH_GET_CPUID) failed ({os.strerror(error)}): this kernel cannot mask CPUID"
    # setting the current state again is harmless, and fails where the CPU (or hypervisor) lacks CPUID faulting
    result, error = _arch_prctl(ARCH_SET_CPUID, result)
    if result < 0:
        return f"arch_prctl(ARCH_SET_CPUID) failed ({os.strerror(error)}): this CPU or VM has no CPUID faulting"
    return None


def cpuid_faults() -> bool:
    """Whether CPUID faults in this thread, that is whether the shim is loaded here."""
    result, _ = _arch_prctl(ARCH_GET_CPUID, 0)
    return result == 0


def build() -> Path:
    """The compiled shim, compiled now when missing or older than its source."""
    if LIBRARY.exists() and LIBRARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return LIBRARY
    LIBRARY.parent.mkdir(parents=True, exist_ok=True)
    command = ["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(LIBRARY), str(SOURCE)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("cpu mask: gcc is not installed; it compiles bench/cpu_mask.c (apt install gcc)") from None
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"cpu mask: {' '.join(command)} failed:\n{error.stderr}") from None
    return LIBRARY


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) with the shim preloaded."""
    env = dict(os.environ if base is None else base)
    library = str(build())
    preload = [p for p in env.get("LD_PRELOAD", "").split() if p != library]
    env["LD_PRELOAD"] = " ".join([library, *preload])
    return env


def run_masked() -> None:
    """Run this program again, under the mask, in place of this process; return at once when already masked."""
    if cpuid_faults():
        return
    reason = cannot_mask()
    if reason:
        raise SystemExit(f"cpu mask: {reason}")
    env = environment()
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def features() -> dict[str, bool]:
    """The ``FEATURES`` as numpy detected them with CPUID in this process (masked under the shim)."""
    from numpy._core._multiarray_umath import __cpu_features__

    return {name: bool(__cpu_features__.get(name, False)) for name in FEATURES}


def kernel_flags() -> set[str]:
    """The CPU flags the kernel lists in /proc/cpuinfo (not masked: the kernel reads CPUID itself)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def describe() -> str:
    """One paragraph: the CPU, the features this process sees, and whether it runs under the mask."""
    seen = " ".join(f"{name}{'+' if present else '-'}" for name, present in features().items())
    flags = kernel_flags()
    listed = " ".join(flag for flag in FLAGS if flag in flags) or "none"
    missing = " ".join(flag for flag in FLAGS if flag not in flags)
    line = f"CPU: {cpu_name()}; features seen (numpy, CPUID): {seen}; /proc/cpuinfo lists: {listed}"
    if missing:
        line += f"; not: {missing}"
    if cpuid_faults():
        line += f"\nCPU MASKED to AVX2 and FMA (bench/cpu_mask.c; /proc/cpuinfo is not masked): {NOTE}"
    return line


def main() -> None:
    if len(sys.argv) > 1:
        os.execvpe(sys.argv[1], sys.argv[1:], environment())
    print(describe())
    if not cpuid_faults() and cannot_mask() is None:
        masked = subprocess.run(
            [sys.executable, str(Path(__file__).resolve())], env=environment(), capture_output=True, text=True
        )
        print(f"under the mask:\n{masked.stdout.strip()}{masked.stderr.strip()}")


if __name__ == "__main__":
    main()
