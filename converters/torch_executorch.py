"""PyTorch -> ExecuTorch (.pte): torch.export lowered with the XNNPACK delegate, else to portable kernels."""

from __future__ import annotations

from ._dynamic import all_fixed
from ._executorch import export, write_program
from ._torch import example_args
from .registry import ConversionJob, Converted, strategy

# Memory planning needs an upper bound on every dynamic size; the route does not guess one, so a
# .pte from it keeps the example's sizes.
_STATIC = "the ExecuTorch strategies convert at the example's sizes (memory is planned for them)"


def _convert(job: ConversionJob, delegate: bool) -> Converted:
    program = export(job.source.model, example_args(job.source))
    converted = write_program(program, job.source, job.workdir / "model.pte", delegate)
    converted.dynamic_kept, fixed = all_fixed(job, _STATIC)
    converted.notes += fixed
    return converted


@strategy(
    "torch",
    "executorch",
    "torch-executorch-xnnpack",
    order=10,
    summary="torch.export, to_edge_transform_and_lower with the XNNPACK partitioner; the rest on portable kernels",
)
def convert_xnnpack(job: ConversionJob) -> Converted:
    """An XNNPACK-delegated program: the ops XNNPACK supports run in its subgraphs."""
    return _convert(job, delegate=True)


@strategy(
    "torch",
    "executorch",
    "torch-executorch-portable",
    order=20,
    summary="torch.export lowered to ExecuTorch's portable kernels only (no delegate)",
)
def convert_portable(job: ConversionJob) -> Converted:
    """An undelegated program: slower, but every op ExecuTorch has a portable kernel for runs."""
    return _convert(job, delegate=False)
