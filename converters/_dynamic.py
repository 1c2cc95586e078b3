"""Dynamic axes (``--dynamic NAME:0,1``) on the converter side: what was asked, what was kept.

A strategy never reports an axis as dynamic because it was asked to: it reads the axes back from
what it made (the traced program, the ONNX graph's inputs, the IR's ports) and reports those in
``Converted.dynamic_kept``. Every requested axis that did not survive gets a note naming the size
it was fixed to and why, so the manifest can say so.
"""

from __future__ import annotations

from ondevice.core.errors import BadInputError
from ondevice.core.specs import concrete_shape


def check_dynamic(dynamic: dict, inputs) -> dict:
    """``{input name: sorted axes}`` after checking every name and axis against the source inputs."""
    by_name = {spec.name: spec for spec in inputs}
    checked = {}
    for name, axes in (dynamic or {}).items():
        if name not in by_name:
            raise BadInputError(
                f"--dynamic {name}: the model has no input {name!r} (inputs: {', '.join(by_name) or 'none'})"
            )
        rank = len(by_name[name].shape)
        bad = [a for a in axes if not isinstance(a, int) or not 0 <= a < rank]
        if bad:
            raise BadInputError(f"--dynamic {name}: axis {bad[0]} is out of range for a rank-{rank} input")
        checked[name] = sorted(set(axes))
    return checked


def requested(job) -> dict:
    """The job's dynamic axes, checked against its source's inputs."""
    return check_dynamic(job.dynamic, job.source.inputs)


def example_size(job, name: str, axis: int) -> int:
    """The size the example gives an axis: what an axis that cannot stay dynamic is fixed to."""
    spec = next(s for s in job.source.inputs if s.name == name)
    return concrete_shape(spec)[axis]


def kept_from_shapes(job, shapes: dict, why_fixed: str) -> tuple[dict, list[str]]:
    """Compare the requested axes with the artifact's input shapes (None or a string: dynamic).

    Returns ``(dynamic_kept, notes)``; each requested axis the artifact holds static gets a note
    ending with ``why_fixed``.
    """
    kept, notes = {}, []
    for name, axes in requested(job).items():
        shape = shapes.get(name)
        dynamic = [a for a in axes if shape is not None and a < len(shape) and not isinstance(shape[a], int)]
        if dynamic:
            kept[name] = dynamic
        for axis in axes:
            if axis not in dynamic:
                notes.append(f"input {name!r} axis {axis} fixed to {example_size(job, name, axis)}: {why_fixed}")
    return kept, notes


def all_fixed(job, why: str) -> tuple[dict, list[str]]:
    """For targets that cannot keep any axis dynamic: no axis kept, one note per requested axis."""
    return {}, [
        f"input {name!r} axis {axis} fixed to {example_size(job, name, axis)}: {why}"
        for name, axes in requested(job).items()
        for axis in axes
    ]


def onnx_input_shapes(onnx_path) -> dict:
    """ONNX graph input shapes by name: an int per static axis, the dim's name (or None) per dynamic one."""
    from ondevice.core.lazy import require

    onnx = require("onnx")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return {
        v.name: [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim
        ]
        for v in graph.input
        if v.name not in initializers
    }


def ov_input_shapes(ov_model, names: list[str]) -> dict:
    """An OpenVINO model's input shapes, keyed by the source's names in port order (None: dynamic)."""
    return {
        name: [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        for name, port in zip(names, ov_model.inputs, strict=True)
    }
