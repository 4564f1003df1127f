"""What this machine can do: CPU model, ISA flags that decide which techniques pay, accelerators. Cheap, no torch."""

from __future__ import annotations

import os
import platform
from functools import lru_cache

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    """CPU model name, logical cores and the ISA flags the lab cares about (read from /proc/cpuinfo on Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "flags": {flag: flag in flags for flag in ISA_FLAGS}}


INT8_FAST_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # 32-bit accumulation of u8 x s8 products


def int8_fast(flags: dict) -> bool:
    """Whether a CPU with these ISA flags (``cpu_info()["flags"]``) has the int8 fast path (VNNI/AMX): int8 matmuls
    pay there, and 8-bit activations are safe (products accumulate in 32 bits, not saturating 16)."""
    return any(flags.get(f) for f in INT8_FAST_FLAGS)


def cpu_has_fast_bf16() -> bool:
    flags = cpu_info()["flags"]
    return flags["avx512_bf16"] or flags["amx_bf16"]


def bf16_enabled(setting: str) -> bool:
    """Resolve a ``bf16: auto|on|off`` setting for training on this machine."""
    if setting in ("on", "off"):
        return setting == "on"
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def package_versions(*packages: str) -> dict[str, str]:
    """Python's and the given installed packages' versions (missing ones are left out)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out
