"""Which CPU ran the checks: vendor, model, cores and the ISA features that change numerics or speed.

int8 kernels differ by instruction set (x86 without VNNI multiplies u8 x s8 into 16-bit sums that
can saturate; AMX and VNNI do not), so a report names the CPU that proved it, and the gate can tell
two reports measured on different ISA classes apart. Read from /proc/cpuinfo; nothing imported.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag -> the name reports use. Only features that change int8/fp16/bf16 numerics or speed.
_X86_FEATURES = {
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "amx_tile": "amx",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
}
_ARM_FEATURES = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
    "sve2": "sve2",
    "fphp": "fp16",
    "asimdhp": "fp16",
    "bf16": "bf16",
}


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """``{"vendor", "model", "cores", "arch", "isa": [...], "isa_class"}`` for this machine.

    ``cpuinfo`` is the text of /proc/cpuinfo (read when None; absent on non-Linux systems, where
    only the architecture and core count are known).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields = _first_block(cpuinfo)
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    table = _ARM_FEATURES if "Features" in fields and "flags" not in fields else _X86_FEATURES
    isa = sorted({name for flag, name in table.items() if flag in flags})
    arch = platform.machine() or "unknown"
    return {
        "vendor": fields.get("vendor_id") or fields.get("CPU implementer") or "unknown",
        "model": fields.get("model name") or fields.get("Hardware") or platform.processor() or arch,
        "cores": os.cpu_count() or 1,
        "arch": arch,
        "isa": isa,
        "isa_class": isa_class(isa, arch),
    }


def isa_class(isa: list[str], arch: str = "x86_64") -> str:
    """The coarse class that decides which int8 kernels a runtime picks.

    x86: ``amx`` > ``avx512-vnni`` > ``avx-vnni`` > ``avx512`` > ``avx2`` > ``baseline``;
    ARM: ``i8mm`` > ``dotprod`` > ``neon``. Two reports of one class ran the same kernel family.
    """
    have = set(isa)
    if arch.lower() in ("aarch64", "arm64") or "neon" in have:
        for name in ("i8mm", "dotprod", "neon"):
            if name in have:
                return name
        return "baseline"
    for name, needs in (
        ("amx", {"amx_int8"}),
        ("avx512-vnni", {"avx512_vnni"}),
        ("avx-vnni", {"avx_vnni"}),
        ("avx512", {"avx512f", "avx512bw"}),
        ("avx2", {"avx2"}),
    ):
        if needs <= have:
            return name
    return "baseline"


def has_vnni(info: dict[str, Any]) -> bool:
    """True when int8 dot products accumulate in 32 bits (VNNI, AMX, ARM dotprod/i8mm)."""
    return info["isa_class"] in ("amx", "avx512-vnni", "avx-vnni", "i8mm", "dotprod")


# qemu's user-mode emulator runs one process on a named CPU model; its CPUID is what every runtime
# reads to pick kernels. Haswell is the AVX2 + FMA class without AVX-512 or VNNI, the class where
# 8-bit int8 weights saturate; qemu's translator implements AVX2 but no AVX-512, so it can only
# cap downwards.
EMULATED_CPU = {"isa_class": "avx2", "model": "Haswell", "emulator": "qemu-x86_64"}


def emulator_command(native: dict[str, Any]) -> tuple[list[str] | None, str]:
    """The command prefix that runs a process on an emulated AVX2 CPU, or None and why not."""
    import shutil

    if native.get("arch") not in ("x86_64", "AMD64"):
        return None, f"no AVX2 emulation on {native.get('arch')} CPUs"
    qemu = shutil.which(EMULATED_CPU["emulator"])
    if qemu is None:
        return None, "qemu-x86_64 is not installed (apt-get install qemu-user)"
    return [qemu, "-cpu", EMULATED_CPU["model"]], "emulated"


def describe(info: dict[str, Any]) -> str:
    """One line for reports: ``AMD EPYC, 2 cores, avx512-vnni (avx2 avx512f ...)``."""
    if not info:
        return "unknown CPU"
    features = " ".join(info.get("isa") or []) or "no listed features"
    return f"{info.get('model', '?')}, {info.get('cores', '?')} cores, {info.get('isa_class', '?')} ({features})"


def _first_block(text: str) -> dict[str, str]:
    """The key: value pairs of the first processor in /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields
