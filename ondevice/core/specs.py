"""Input specifications (name, shape, dtype) and the seeded sample data built from them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import BadInputError

_DTYPES = {
    "float32",
    "float16",
    "float64",
    "int8",
    "uint8",
    "int16",
    "int32",
    "int64",
    "bool",
}
_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.\-/]*):(?P<shape>[^:]+)(?::(?P<dtype>\w+))?$")


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: shape (None for a dynamic axis) and numpy dtype name.

    ``low``/``high`` bound the values sampled for it: integer inputs are drawn in
    [low, high] (inclusive), float inputs are drawn around ``mean`` with ``std``. ``step`` keeps the
    example's 0/1 steps: "down" for rows of ones then zeros (a right-padded attention mask), "up" for
    zeros then ones (left padding, segment ids); each sample moves the step, keeping at least one 1.
    """

    name: str
    shape: tuple[Any, ...]  # int, or None (or a symbol's name) for a dynamic axis
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None
    step: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @property
    def is_integer(self) -> bool:
        return bool(np.issubdtype(np.dtype(self.dtype), np.integer)) or self.dtype == "bool"


def parse_input_spec(text: str) -> TensorSpec:
    """Parse ``NAME:1x3x224x224[:float32]``; a clear BadInputError otherwise."""
    match = _SPEC_RE.match(text.strip())
    if not match:
        raise BadInputError(f"bad --input {text!r}: expected NAME:DIMxDIM[:DTYPE], e.g. x:1x3x224x224:float32")
    dims = []
    for dim in match["shape"].lower().split("x"):
        if not dim.isdigit() or int(dim) <= 0:
            raise BadInputError(f"bad --input {text!r}: dimension {dim!r} is not a positive integer")
        dims.append(int(dim))
    dtype = match["dtype"] or "float32"
    if dtype not in _DTYPES:
        raise BadInputError(f"bad --input {text!r}: dtype {dtype!r} is not one of {', '.join(sorted(_DTYPES))}")
    spec = TensorSpec(match["name"], tuple(dims), dtype)
    check_inputs([spec], f"--input {text}")
    return spec


# Runtimes index dimensions with 32-bit integers (TFLite, most ONNX kernels).
MAX_DIM = 2**31 - 1


def nbytes(spec: TensorSpec) -> int:
    """Bytes one sample of ``spec`` takes (dynamic axes at 1); Python integers, so no overflow."""
    count = 1
    for d in concrete_shape(spec):
        count *= d
    return count * np.dtype(spec.dtype).itemsize


def memory_budget() -> int:
    """Bytes the samples of a run may take: half the memory available now."""
    try:
        import psutil

        return int(psutil.virtual_memory().available) // 2
    except Exception:  # no psutil, or no /proc: assume a small machine
        return 2**31


def _size(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def check_inputs(specs: Iterable[TensorSpec], where: str, count: int = 1) -> None:
    """Refuse shapes no runtime takes and sample sets that cannot fit in memory, before allocating."""
    specs = list(specs)
    for spec in specs:
        big = [d for d in spec.shape if isinstance(d, int) and d > MAX_DIM]
        if big:
            raise BadInputError(
                f"{where}: input {spec.name!r} has dimension {big[0]}, above 2^31-1 that "
                "runtimes can index; give a smaller shape with --input"
            )
    total = sum(nbytes(spec) for spec in specs) * count
    budget = memory_budget()
    if total > budget:
        shapes = ", ".join(f"{s.name} {'x'.join(map(str, concrete_shape(s)))} {s.dtype}" for s in specs)
        raise BadInputError(
            f"{where}: {count} sample(s) of {shapes} need {_size(total)}, more than the "
            f"{_size(budget)} this machine can spare; give smaller shapes with --input"
            + (" or fewer --samples" if count > 1 else "")
        )


def spec_from_array(name: str, array: np.ndarray) -> TensorSpec:
    """A spec whose sampling range follows the example array (never outside a vocabulary)."""
    array = np.asarray(array)
    if array.dtype.kind in "iub":
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 1)
        return TensorSpec(name, tuple(array.shape), str(array.dtype), low=low, high=high, step=_step(array))
    values = array.astype(np.float64)
    mean = float(values.mean()) if values.size else 0.0
    std = float(values.std()) if values.size else 1.0
    lo = float(values.min()) if values.size else None
    hi = float(values.max()) if values.size else None
    return TensorSpec(name, tuple(array.shape), str(array.dtype), low=lo, high=hi, mean=mean, std=std or 1.0)


def _step(array: np.ndarray) -> str | None:
    """ "down" when every row (last axis) of a 0/1 array is ones then zeros, "up" for zeros then ones.

    Such a row is a padding mask or a segment id, where elementwise random values are no input a model
    meets: a causal model's row whose first position is masked attends to nothing at all, and what it
    outputs there is each runtime's own choice.
    """
    if array.ndim < 1 or array.shape[-1] < 2 or array.size == 0 or not np.isin(array, (0, 1)).all():
        return None
    values = array.astype(np.int8)
    if values.min() == values.max():
        return None  # constant: sampled as the constant it is
    steps = np.diff(values, axis=-1)
    if (steps <= 0).all() and (values[..., 0] == 1).all():
        return "down"
    if (steps >= 0).all() and (values[..., -1] == 1).all():
        return "up"
    return None


def merge_specs(declared: Iterable[TensorSpec], inferred: list[TensorSpec]) -> list[TensorSpec]:
    """Inferred specs overridden by declared ones, matched by name; a name the model lacks is refused."""
    declared = list(declared)
    if not declared:
        return inferred
    if not inferred:
        return declared
    by_name = {spec.name: spec for spec in declared}
    known = [spec.name for spec in inferred]
    unknown = [name for name in by_name if name not in known]
    if unknown:
        # An ignored --input would leave the run judging shapes the user did not ask for.
        raise BadInputError(
            f"--input {unknown[0]}: the model has no input {unknown[0]!r}; its inputs are {', '.join(known)}"
        )
    out = []
    for spec in inferred:
        d = by_name.get(spec.name)
        out.append(spec if d is None else replace(spec, name=d.name, shape=d.shape, dtype=d.dtype))
    return out


def concrete_shape(spec: TensorSpec) -> tuple[int, ...]:
    """The spec's shape with dynamic axes fixed to 1."""
    return tuple(
        1 if (d is None or (isinstance(d, int) and d < 0) or isinstance(d, str)) else int(d) for d in spec.shape
    )


def sample_one(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    """One random tensor for ``spec``."""
    shape = concrete_shape(spec)
    if spec.step is not None and shape and shape[-1] > 1:
        return _stepped(spec.step, shape, spec.dtype, rng)
    if spec.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if spec.is_integer:
        low = 0 if spec.low is None else int(spec.low)
        high = 1 if spec.high is None else int(spec.high)
        return rng.integers(low, high + 1, size=shape).astype(spec.dtype)
    mean = 0.0 if spec.mean is None else spec.mean
    std = 1.0 if spec.std is None else spec.std
    values = rng.normal(mean, std, size=shape)
    if spec.low is not None and spec.high is not None and spec.high > spec.low:
        # Stay within the range the example showed (e.g. images in [0, 1]).
        values = np.clip(values, spec.low, spec.high)
    return values.astype(spec.dtype)


def make_samples(
    specs: list[TensorSpec], count: int, seed: int, example: Mapping[str, np.ndarray] | None = None
) -> list[dict[str, np.ndarray]]:
    """``count`` seeded input sets; the example inputs, when given, are the first."""
    check_inputs(specs, "samples", count)
    rng = np.random.default_rng(seed)
    samples = []
    if example:
        samples.append({spec.name: np.asarray(example[spec.name]) for spec in specs})
    while len(samples) < count:
        samples.append({spec.name: sample_one(spec, rng) for spec in specs})
    return samples[:count]


def load_samples(path: str, specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    """Samples from an ``.npz``: one array per input name, the first axis indexing the sample.

    Each array's header is read before its data: object (pickled) arrays are refused, never loaded,
    and an array too large for memory is refused before it is allocated.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BadInputError(f"inputs file not found: {path}") from None
    except Exception as exc:  # numpy raises several types for a bad file
        raise BadInputError(f"cannot read inputs file {path}: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise BadInputError(f"inputs file {path} is a single .npy array, not an .npz with one array per input")
    with data:
        missing = [s.name for s in specs if s.name not in data.files]
        if missing:
            raise BadInputError(
                f"inputs file {path} lacks arrays for {', '.join(missing)} (has {', '.join(data.files) or 'none'})"
            )
        arrays = {s.name: _npz_array(data, s, path) for s in specs}
    counts = {a.shape[0] for a in arrays.values()}
    if len(counts) != 1:
        raise BadInputError(f"inputs file {path}: arrays disagree on the sample count (first axis)")
    n = counts.pop()
    try:
        return [{s.name: np.asarray(arrays[s.name][i]).astype(s.dtype) for s in specs} for i in range(n)]
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadInputError(f"inputs file {path}: cannot convert to the inputs' dtypes: {exc}") from exc


def _npz_array(data: Any, spec: TensorSpec, path: object) -> np.ndarray:
    """One array of an .npz, its header checked first (dtype, rank, size)."""
    try:
        with data.zip.open(f"{spec.name}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(handle)
    except Exception as exc:
        raise BadInputError(f"inputs file {path}: array {spec.name!r} is unreadable: {exc}") from exc
    if dtype.hasobject or dtype.kind not in "biuf":
        raise BadInputError(
            f"inputs file {path}: array {spec.name!r} has dtype {dtype} (pickled objects or "
            "text); ondevice never unpickles input files: save plain numeric arrays"
        )
    if len(shape) < 1:
        raise BadInputError(
            f"inputs file {path}: array {spec.name!r} is a scalar; the first axis must index the samples"
        )
    size = dtype.itemsize
    for d in shape:
        size *= d
    if size > memory_budget():
        raise BadInputError(
            f"inputs file {path}: array {spec.name!r} of shape {list(shape)} needs {_size(size)}, "
            "more than this machine can spare"
        )
    try:
        array: np.ndarray = data[spec.name]
        return array
    except Exception as exc:
        raise BadInputError(f"inputs file {path}: array {spec.name!r} is unreadable: {exc}") from exc


def samples_digest(samples: list[dict[str, np.ndarray]]) -> str:
    """sha256 over the samples, so a report names exactly which inputs it judged."""
    digest = hashlib.sha256()
    for sample in samples:
        for name in sorted(sample):
            arr = np.ascontiguousarray(sample[name])
            digest.update(name.encode())
            digest.update(str(arr.dtype).encode())
            digest.update(str(arr.shape).encode())
            digest.update(arr.tobytes())
    return digest.hexdigest()


def clean_name(name: str) -> str:
    """A tensor name without runtime decorations (``serving_default_x:0`` -> ``x``)."""
    name = re.sub(r":\d+$", "", name)
    return re.sub(r"^serving_default_", "", name)


def _stepped(step: str, shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Rows of ones then zeros ("down") or zeros then ones ("up"), each with 1 to n ones at random."""
    n = shape[-1]
    ones = rng.integers(1, n + 1, size=(*shape[:-1], 1))
    position = np.arange(n)
    rows = position < ones if step == "down" else position >= n - ones
    return rows.astype(dtype)
