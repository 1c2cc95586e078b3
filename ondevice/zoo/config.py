"""The zoo file: which models a zoo run checks, each with ``check``'s options.

Two forms (docs/zoo.md):

* TOML: ``[[model]]`` tables with ``source`` (required), optional ``name`` and any of ``check``'s long
  options by name (``to``, ``quantize``, ``inputs``, ``calibration``, ``policy``, ``samples``, ...),
  and the model's own ``timeout`` (seconds) and ``memory`` (MiB) limits; an optional ``[defaults]``
  table holds options for every model.
* A Python module whose ``MODELS`` list names the models: a factory of the module by name (``"cnn"``),
  the factory itself, a SOURCE string, or a dict like a ``[[model]]`` table; an optional ``DEFAULTS``
  dict. The module is read in a process of its own: its import runs user code.

A model's own options win over the defaults, which win over the command line's; ``check``'s defaults
fill the rest. Paths (``source``, ``inputs``, ``calibration``, ``policy``) are relative to the zoo file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BadInputError

# check options a zoo cannot set per model: the zoo owns the output folder, the run's timeout and output.
NOT_PER_MODEL = ("out", "quiet", "artifact", "io_map", "precision", "report", "debug")
LIMITS = ("timeout", "memory")  # the model's own --timeout-per-model (seconds) and --memory-per-model (MiB)
PATH_OPTIONS = ("inputs", "calibration", "policy")
COMMA_LISTS = ("to", "quantize")  # a list value is written as one comma-separated argument
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: its folder name, SOURCE and the check options it or the defaults set."""

    name: str
    source: str
    options: dict  # argparse names (dests) -> values, as ``check`` parsed them; only those given
    timeout_s: float | None = None  # None: the zoo's --timeout-per-model
    memory_mb: float | None = None  # None: the zoo's --memory-per-model

    def digest(self) -> str:
        """What decides this model's result: a finished model is skipped on --resume only if unchanged."""
        text = json.dumps({"source": self.source, "options": self.options}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Zoo:
    path: Path
    models: tuple


OptionParser = Callable[[list, str], dict]  # (argv tokens, where) -> the options given, parsed


def load_zoo(path, parse_options: OptionParser) -> Zoo:
    """Read a zoo file (.toml or .py); ``parse_options`` validates a model's options as ``check`` would."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"zoo file not found: {path}" if not path.exists() else f"zoo {path} is not a file")
    if path.suffix == ".toml":
        entries, defaults = _read_toml(path)
    elif path.suffix == ".py":
        entries, defaults = _read_module(path)
    else:
        raise BadInputError(f"zoo {path}: expected a .toml file or a Python module (.py)")
    base = path.resolve().parent
    defaults = _checked_options(defaults, f"zoo {path}: [defaults]")
    models, names = [], set()
    for index, entry in enumerate(entries, 1):
        model = _model(entry, defaults, base, f"zoo {path}: model #{index}", parse_options)
        if model.name in names:
            raise BadInputError(f"zoo {path}: two models are named {model.name!r}; give each a distinct name")
        names.add(model.name)
        models.append(model)
    if not models:
        raise BadInputError(f"zoo {path} lists no models")
    return Zoo(path, tuple(models))


def _read_toml(path: Path) -> tuple[list, dict]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise BadInputError(f"zoo {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise BadInputError(f"cannot read zoo {path}: {exc.strerror or exc}") from exc
    unknown = [k for k in data if k not in ("model", "defaults")]
    if unknown:
        raise BadInputError(f"zoo {path}: unknown key {unknown[0]!r}; a zoo file has [[model]] tables and [defaults]")
    entries, defaults = data.get("model", []), data.get("defaults", {})
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BadInputError(f"zoo {path}: 'model' must be an array of tables ([[model]])")
    if not isinstance(defaults, dict):
        raise BadInputError(f"zoo {path}: 'defaults' must be a table ([defaults])")
    return entries, defaults


def _read_module(path: Path) -> tuple[list, dict]:
    """MODELS and DEFAULTS of a Python module, read in a subprocess (its import may be slow or crash)."""
    from ..core.isolate import IsolatedFailure, call_isolated

    try:
        data = call_isolated(
            "ondevice.zoo.config:read_module",
            {"path": str(path.resolve())},
            timeout=300,
            cwd=str(path.resolve().parent),
        )
    except IsolatedFailure as failure:
        raise BadInputError(f"zoo {path}: reading its MODELS failed: {failure.reason}") from failure
    return data["models"], data["defaults"]


def read_module(path: str) -> dict:
    """In a subprocess: import the zoo module and describe MODELS / DEFAULTS as JSON-able entries."""
    import importlib.util
    import sys

    module_spec = importlib.util.spec_from_file_location("_ondevice_zoo_module", path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"{path} cannot be imported as a module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    sys.path.insert(0, str(Path(path).parent))
    module_spec.loader.exec_module(module)
    models = getattr(module, "MODELS", None)
    if not isinstance(models, (list, tuple)):
        raise ValueError(f"{path} has no MODELS list")
    defaults = getattr(module, "DEFAULTS", {})
    if not isinstance(defaults, dict):
        raise ValueError("DEFAULTS must be a dict of check options")
    return {"models": [_module_entry(module, path, item) for item in models], "defaults": _jsonable(defaults)}


def _module_entry(module, path: str, item) -> dict:
    if callable(item):
        name = getattr(item, "__name__", "")
        if getattr(module, name, None) is not item:
            raise ValueError(f"MODELS lists {item!r}, which is not a top-level function of the module")
        return {"source": f"{path}:{name}", "name": name}
    if isinstance(item, str):
        if item.isidentifier() and callable(getattr(module, item, None)):
            return {"source": f"{path}:{item}", "name": item}
        return {"source": item}
    if isinstance(item, dict):
        entry = _jsonable(item)
        factory = item.get("factory")
        if factory is not None:  # {"factory": fn or "fn", ...}: a function of this module
            entry.pop("factory")
            entry.update(_module_entry(module, path, factory), **({"name": item["name"]} if "name" in item else {}))
        return entry
    raise ValueError(f"MODELS entries are factory names, functions, SOURCE strings or dicts, not {type(item).__name__}")


def _jsonable(data: dict) -> dict:
    try:
        return json.loads(json.dumps({k: v for k, v in data.items() if not callable(v)}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"options must be strings, numbers, booleans or lists of them: {exc}") from exc


def _checked_options(options: dict, where: str) -> dict:
    """Option names normalised to check's (``allow-inconclusive`` and ``allow_inconclusive`` alike)."""
    normal = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name in NOT_PER_MODEL:
            raise BadInputError(f"{where}: {key!r} is set by the zoo command for every model, not in a zoo file")
        normal[name] = value
    return normal


def _model(entry: dict, defaults: dict, base: Path, where: str, parse_options: OptionParser) -> ZooModel:
    entry = dict(entry)
    source = entry.pop("source", None)
    if not isinstance(source, str) or not source.strip():
        raise BadInputError(f"{where}: 'source' (a SOURCE string) is required")
    name = entry.pop("name", None)
    source = resolve_source(source, base)
    name = name if name is not None else default_name(source)
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise BadInputError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    where = f"{where.rsplit(':', 1)[0]}: model {name!r}"
    merged = {**defaults, **_checked_options(entry, where)}
    limits = [_limit(merged.pop(key, None), key, where) for key in LIMITS]
    for key in PATH_OPTIONS:
        if isinstance(merged.get(key), str):
            merged[key] = str(base / merged[key])
    return ZooModel(name, source, parse_options(to_argv(merged, where), where), *limits)


def _limit(value, key: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise BadInputError(f"{where}: {key} must be a positive number ({'seconds' if key == 'timeout' else 'MiB'})")
    return float(value)


def resolve_source(source: str, base: Path) -> str:
    """A SOURCE with its file part made absolute against the zoo file's folder (module names stay)."""
    target, colon, attr = source.rpartition(":")
    if colon and target.endswith(".py"):
        return f"{base / target}:{attr}"
    if colon and not Path(source).exists():
        return source  # package.module:factory
    return str(base / source)


def default_name(source: str) -> str:
    """``file.py:cnn`` -> ``cnn``; ``models/resnet.onnx`` -> ``resnet``."""
    target, colon, attr = source.rpartition(":")
    if colon and (target.endswith(".py") or not Path(source).exists()):
        return re.sub(r"[^A-Za-z0-9._-]", "_", attr)
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(source.rstrip("/")).stem) or "model"


def to_argv(options: dict, where: str) -> list[str]:
    """Options as ``check`` would get them on its command line: ``samples = 2`` -> ``--samples 2``."""
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list) and key in COMMA_LISTS:
            argv += [flag, ",".join(map(str, value))]
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, (str, int, float)):
            argv += [flag, str(value)]
        else:
            raise BadInputError(
                f"{where}: option {key!r} has a value of type {type(value).__name__}; "
                "use a string, number, boolean or list"
            )
    return argv
