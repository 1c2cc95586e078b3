"""Input specifications (name, shape, dtype) and the seeded sample data built from them."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from .errors import BadInputError

_DTYPES = {
    "float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
}
_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z_][\w.\-/]*):(?P<shape>[^:]+)(?::(?P<dtype>\w+))?$")


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: shape (None for a dynamic axis) and numpy dtype name.

    ``low``/``high`` bound the values sampled for it: integer inputs are drawn in
    [low, high] (inclusive), float inputs are drawn around ``mean`` with ``std``.
    """

    name: str
    shape: tuple
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.integer) or self.dtype == "bool"


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
    return TensorSpec(match["name"], tuple(dims), dtype)


def spec_from_array(name: str, array: np.ndarray) -> TensorSpec:
    """A spec whose sampling range follows the example array (never outside a vocabulary)."""
    array = np.asarray(array)
    if array.dtype.kind in "iub":
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 1)
        return TensorSpec(name, tuple(array.shape), str(array.dtype), low=low, high=high)
    values = array.astype(np.float64)
    mean = float(values.mean()) if values.size else 0.0
    std = float(values.std()) if values.size else 1.0
    lo = float(values.min()) if values.size else None
    hi = float(values.max()) if values.size else None
    return TensorSpec(name, tuple(array.shape), str(array.dtype), low=lo, high=hi, mean=mean, std=std or 1.0)


def merge_specs(declared: Iterable[TensorSpec], inferred: list[TensorSpec]) -> list[TensorSpec]:
    """Inferred specs overridden by declared ones (matched by name, else by position)."""
    declared = list(declared)
    if not declared:
        return inferred
    if not inferred:
        return declared
    by_name = {spec.name: spec for spec in declared}
    if set(by_name) & {spec.name for spec in inferred}:
        out = []
        for spec in inferred:
            d = by_name.get(spec.name)
            out.append(spec if d is None else TensorSpec(d.name, d.shape, d.dtype, spec.low, spec.high, spec.mean, spec.std))
        return out
    if len(declared) != len(inferred):
        raise BadInputError(
            f"{len(declared)} --input given but the model takes {len(inferred)} inputs "
            f"({', '.join(s.name for s in inferred)})"
        )
    return [TensorSpec(spec.name, d.shape, d.dtype, spec.low, spec.high, spec.mean, spec.std)
            for d, spec in zip(declared, inferred)]


def concrete_shape(spec: TensorSpec) -> tuple:
    """The spec's shape with dynamic axes fixed to 1."""
    return tuple(1 if (d is None or (isinstance(d, int) and d < 0) or isinstance(d, str)) else int(d) for d in spec.shape)


def sample_one(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    """One random tensor for ``spec``."""
    shape = concrete_shape(spec)
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


def make_samples(specs: list[TensorSpec], count: int, seed: int,
                 example: Mapping[str, np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
    """``count`` seeded input sets; the example inputs, when given, are the first."""
    rng = np.random.default_rng(seed)
    samples = []
    if example:
        samples.append({spec.name: np.asarray(example[spec.name]) for spec in specs})
    while len(samples) < count:
        samples.append({spec.name: sample_one(spec, rng) for spec in specs})
    return samples[:count]


def load_samples(path: str, specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    """Samples from an ``.npz``: one array per input name, the first axis indexing the sample."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BadInputError(f"inputs file not found: {path}") from None
    except Exception as exc:  # numpy raises several types for a bad file
        raise BadInputError(f"cannot read inputs file {path}: {exc}") from None
    missing = [s.name for s in specs if s.name not in data.files]
    if missing:
        raise BadInputError(f"inputs file {path} lacks arrays for {', '.join(missing)} (has {', '.join(data.files)})")
    counts = {data[s.name].shape[0] for s in specs}
    if len(counts) != 1:
        raise BadInputError(f"inputs file {path}: arrays disagree on the sample count (first axis)")
    n = counts.pop()
    return [{s.name: np.asarray(data[s.name][i]).astype(s.dtype) for s in specs} for i in range(n)]


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
