"""Sample sets on disk: one .npz holding a list of named-array dicts, read back without pickle.

Every process boundary (validation workers, calibration workers, converters run apart) passes samples this way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def save_samples(path: Path, samples: list[dict[str, Any]]) -> None:
    """Samples (one dict of arrays each) to one .npz, names kept in an index."""
    arrays: dict[str, Any] = {}
    index = []
    for i, sample in enumerate(samples):
        names = list(sample)
        index.append(names)
        for j, name in enumerate(names):
            arrays[f"s{i}_{j}"] = np.asarray(sample[name])
    arrays["__index__"] = np.frombuffer(json.dumps(index).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def load_samples_file(path: Path) -> list[dict[str, Any]]:
    """The samples save_samples wrote, in order (no pickle is ever loaded)."""
    with np.load(path, allow_pickle=False) as data:
        index = json.loads(bytes(data["__index__"]).decode())
        return [{name: data[f"s{i}_{j}"] for j, name in enumerate(names)} for i, names in enumerate(index)]
