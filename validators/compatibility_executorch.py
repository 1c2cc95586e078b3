"""ExecuTorch's compatibility check: how much of a .pte runs inside XNNPACK, read from the file.

Registered through ``validators.compatibility.CHECKER_MODULES``. The ops counted are the nodes of
each XNNPACK delegate's graph (taken) and the kernel calls the program makes outside any delegate
(not taken, named by kernel); ``partitions`` is the number of XNNPACK subgraphs, each a hand-over
between XNNPACK and the portable kernels. The manifest's ``delegation`` counts the same split in ATen
ops at lowering time; this one works on any .pte, whoever lowered it.
"""

from __future__ import annotations

from pathlib import Path

from .compatibility import BackendCompatibility, checker, measured, not_checked


@checker("executorch", ("xnnpack",))
def _executorch(path: Path) -> dict[str, BackendCompatibility]:
    from ._pte import read_program

    program = read_program(path)
    xnnpack = [d for d in program.delegates if "xnnpack" in d.backend.lower()]
    if any(not d.decoded for d in xnnpack):
        return {"xnnpack": not_checked("xnnpack", "an XNNPACK delegate payload could not be decoded")}
    ops: list[str] = []
    taken: list[bool] = []
    for delegate in xnnpack:
        for kind, count in delegate.nodes.items():
            ops += [kind] * count
            taken += [True] * count
    for kernel, count in program.kernels.items():
        ops += [kernel] * count
        taken += [False] * count
    others = sorted({d.backend for d in program.delegates} - {d.backend for d in xnnpack})
    details: dict[str, object] = {"method": "XNNPACK delegate graphs and portable kernel calls read from the .pte"}
    if others:
        details["other_delegates"] = others
    return {"xnnpack": measured("xnnpack", ops, taken, len(xnnpack), **details)}
