"""What ondevice refuses to run: pickles inside a ``.pt2`` archive and SavedModel graphs with file-system
or process ops, unless the user trusts the file (``--trust-pickle``, ``--trust-graph``).

Both checks read the file as data (zip members and JSON, the graph's protocol buffer) before any
framework loader sees it. docs/security.md states the trust model.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile

from .core.errors import BadInputError, first_line


class UntrustedInput(BadInputError):
    """A model file that would run code or touch files outside its folder if loaded; refused (exit 2)."""


# ---- .pt2 (torch.export.save) ---------------------------------------------------------------------

# Members of a torch.export.save archive (torch 2.13) whose reading involves no unpickling. Weights
# and constants are raw bytes described by JSON configs; sample inputs are a torch.save file that is
# checked separately (torch falls back to full unpickling when weights_only loading fails).
_PT2_MEMBERS = [
    re.compile(p)
    for p in (
        r"archive_format",
        r"archive_version",
        r"byteorder",
        r"\.data/version",
        r"\.data/serialization_id",
        r"models/[\w.\-]+\.json",
        r"data/weights/[\w.\-]+_weights_config\.json",
        r"data/weights/weight_\d+",
        r"data/constants/[\w.\-]+_constants_config\.json",
        r"data/constants/tensor_\d+",
        r"data/sample_inputs/[\w.\-]+\.pt",
        r"extra/[\w.\-]+",
    )
]
_PT2_HINT = "re-run with --trust-pickle only if you trust its author (loading runs its code)"
# Guard expressions torch compiles with exec(); only shape arithmetic on the inputs may appear.
_GUARD_NODES = (
    ast.Expression,
    ast.Compare,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Subscript,
    ast.Name,
    ast.Attribute,
    ast.Call,
    ast.Load,
    ast.operator,
    ast.boolop,
    ast.cmpop,
    ast.unaryop,
    ast.Tuple,
    ast.Slice,
)
_GUARD_NAMES = {"L", "math", "inf", "IsNonOverlappingAndDenseIndicator", "cast_symbool_to_symint_guardless"}
_GUARD_ATTRS = {
    "size",
    "stride",
    "storage_offset",
    "numel",
    "dim",
    "shape",
    "isnan",
    "inf",
    "floor",
    "ceil",
    "trunc",
    "sqrt",
    "log2",
}
_PT2_DENIED_OPS = ("from_file",)  # aten ops that read files named in the graph


def check_pt2(data: bytes, spec: str) -> bytes | None:
    """Refuse a .pt2 archive with a pickle-bearing member; returns its sample-inputs file to check with torch."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise BadInputError(f"malformed or truncated .pt2 file {spec}: {exc}") from exc
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        raise BadInputError(f"malformed .pt2 file {spec}: not one torch.export archive folder")
    root = roots.pop()
    sample = None
    for name in names:
        member = name[len(root) + 1 :]
        if member.endswith("/"):
            continue
        if (member.endswith(".pt") and not member.startswith("data/sample_inputs/")) or "_obj_" in member:
            raise UntrustedInput(f"{spec} holds a pickled member {member!r}; {_PT2_HINT}")
        if not any(p.fullmatch(member) for p in _PT2_MEMBERS):
            raise UntrustedInput(
                f"{spec} holds {member!r}, which is not part of a torch.export archive; refused ({_PT2_HINT})"
            )
        if member.endswith("_config.json"):
            _check_payload_config(_json_member(archive, name, spec), member, spec)
        elif member.startswith("models/"):
            _check_program(_json_member(archive, name, spec), member, spec)
        elif member.startswith("data/sample_inputs/"):
            sample = archive.read(name)
    return sample


def _json_member(archive: zipfile.ZipFile, name: str, spec: str):
    try:
        return json.loads(archive.read(name))
    except (ValueError, RecursionError, zipfile.BadZipFile, OSError) as exc:
        raise BadInputError(f"malformed .pt2 file {spec}: member {name!r}: {exc}") from exc


def _check_payload_config(config, member: str, spec: str) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise BadInputError(f"malformed .pt2 file {spec}: {member} has no config table")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise UntrustedInput(f"{spec}: {fqn!r} in {member} is stored as a pickle; {_PT2_HINT}")
        if not re.fullmatch(r"(weight|tensor)_\d+", str(meta.get("path_name"))):
            raise UntrustedInput(
                f"{spec}: {fqn!r} in {member} is stored as {meta.get('path_name')!r}, not a raw tensor; {_PT2_HINT}"
            )


def _check_program(program, member: str, spec: str) -> None:
    """Node targets and guard code of a serialized ExportedProgram (guards are compiled with exec)."""
    for key, value in _walk(program):
        if key == "target" and isinstance(value, str) and any(op in value for op in _PT2_DENIED_OPS):
            raise UntrustedInput(f"{spec}: the program in {member} calls {value}, which reads files; refused")
        if key == "guards_code":
            for code in value if isinstance(value, list) else [value]:
                if not _plain_guard(code):
                    raise UntrustedInput(
                        f"{spec}: {member} carries guard code {str(code)[:80]!r} that is not "
                        f"a shape check (torch runs it with exec); {_PT2_HINT}"
                    )


def _walk(value, depth: int = 0):
    if depth > 200:
        raise BadInputError("malformed .pt2 file: program nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, depth + 1)


def _plain_guard(code) -> bool:
    if not isinstance(code, str) or len(code) > 2000:
        return False
    try:
        tree = ast.parse(code, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _GUARD_NODES):
            return False
        if isinstance(node, ast.Name) and node.id not in _GUARD_NAMES:
            return False
        if isinstance(node, ast.Attribute) and node.attr not in _GUARD_ATTRS:
            return False
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
            return False
    return True


def check_sample_inputs(torch, data: bytes | None, spec: str) -> None:
    """torch.export.load unpickles sample inputs fully when its safe loader fails: refuse those first."""
    if not data:
        return
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:
        raise UntrustedInput(
            f"{spec}: its sample inputs are not plain tensors (the safe loader says: "
            f"{first_line(exc, 160)}); "
            f"{_PT2_HINT}"
        ) from exc


# ---- SavedModel graphs -----------------------------------------------------------------------------

# Ops that read or write files, reach the network or call back into Python. Checkpoint ops are allowed
# only in the functions that nothing but the SavedModel's own saver reaches.
FILE_OPS = frozenset(
    {
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "MatchingFilesDataset",
        "ImmutableConst",
        "Save",
        "SaveV2",
        "SaveSlices",
        "Restore",
        "RestoreV2",
        "RestoreSlice",
        "MergeV2Checkpoints",
        "WholeFileReader",
        "WholeFileReaderV2",
        "TextLineReader",
        "TextLineReaderV2",
        "FixedLengthRecordReader",
        "FixedLengthRecordReaderV2",
        "TFRecordReader",
        "TFRecordReaderV2",
        "LMDBReader",
        "ReaderReadV2",
        "TFRecordDataset",
        "TFRecordDatasetV2",
        "TextLineDataset",
        "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2",
        "CSVDataset",
        "CSVDatasetV2",
        "ExperimentalCSVDataset",
        "SqlDataset",
        "ExperimentalSqlDataset",
        "LMDBDataset",
        "ExperimentalLMDBDataset",
        "SaveDataset",
        "SaveDatasetV2",
        "LoadDataset",
        "SnapshotDataset",
        "SnapshotDatasetV2",
        "CacheDataset",
        "CacheDatasetV2",
        "InitializeTableFromTextFile",
        "InitializeTableFromTextFileV2",
        "LoadAndRemapMatrix",
        "GenerateVocabRemapping",
        "CreateSummaryFileWriter",
        "CreateSummaryDbWriter",
        "WriteSummary",
        "WriteScalarSummary",
        "WriteHistogramSummary",
        "WriteImageSummary",
        "WriteAudioSummary",
        "WriteGraphSummary",
        "WriteRawProtoSummary",
        "ImportEvent",
        "DebugIdentity",
        "DebugIdentityV2",
        "DebugIdentityV3",
        "DebugNanCount",
        "DebugNumericSummary",
        "DebugNumericSummaryV2",
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "Rpc",
        "TryRpc",
        "RemoteCall",
        "DataServiceDataset",
        "DataServiceDatasetV2",
        "DataServiceDatasetV3",
        "DataServiceDatasetV4",
        "RegisterDataset",
        "RegisterDatasetV2",
    }
)
SAVE_OPS = frozenset({"Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints"})
RESTORE_OPS = frozenset({"Restore", "RestoreV2", "RestoreSlice"})


def check_saved_model(path, spec: str) -> None:
    """Refuse a SavedModel whose graph reads or writes files, reaches the network or calls Python."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:  # protobuf's DecodeError, or an unreadable file
        raise BadInputError(f"malformed SavedModel {spec}: saved_model.pb: {exc}") from exc
    found = sorted({hit for meta in saved.meta_graphs for hit in _denied_ops(meta)})
    if found:
        listed = ", ".join(f"{op} in {where}" for op, where in found[:4]) + (" ..." if len(found) > 4 else "")
        raise UntrustedInput(
            f"SavedModel {spec} runs file-system, network or Python ops ({listed}): running "
            "it would touch files outside its folder. Re-run with --trust-graph only if you "
            "trust its author"
        )


def _denied_ops(meta) -> list[tuple[str, str]]:
    """(op, where) for every denied op; checkpoint ops pass only where nothing but the saver reaches them."""
    graph = meta.graph_def
    nodes = {n.name: n for n in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}
    save = _closure([meta.saver_def.save_tensor_name] if meta.saver_def.save_tensor_name else [], [], nodes, functions)
    restore = _closure([meta.saver_def.restore_op_name] if meta.saver_def.restore_op_name else [], [], nodes, functions)
    other = _closure(
        [n for n in nodes if n not in save[0] | restore[0]],
        [f for f in functions if f not in save[1] | restore[1]],
        nodes,
        functions,
    )

    def allowed(name, kind: int) -> frozenset:
        if name in other[kind]:
            return frozenset()
        return (SAVE_OPS if name in save[kind] else SAVE_OPS | RESTORE_OPS) & (
            RESTORE_OPS if name in restore[kind] else SAVE_OPS | RESTORE_OPS
        )

    found = [(op, "the graph") for name, node in nodes.items() for op in _bad(node, allowed(name, 0))]
    for name, function in functions.items():
        found += [(op, name) for nd in function.node_def for op in _bad(nd, allowed(name, 1))]
    return found


def _bad(node, allowed) -> list[str]:
    if node.op in FILE_OPS and node.op not in allowed:
        return [node.op]
    stream = node.attr["output_stream"].s if node.op == "PrintV2" and "output_stream" in node.attr else b""
    return [f"{node.op} to {stream.decode(errors='replace')}"] if stream.startswith(b"file://") else []


def _closure(start_nodes, start_fns, nodes: dict, functions: dict):
    """Graph nodes and library functions reachable from the start points (inputs, called functions)."""
    seen_nodes, seen_fns = set(), set()
    stack = [("n", _node_name(n)) for n in start_nodes] + [("f", f) for f in start_fns]
    while stack:
        kind, name = stack.pop()
        if kind == "n" and name in nodes and name not in seen_nodes:
            seen_nodes.add(name)
            stack += [("n", _node_name(i)) for i in nodes[name].input]
            stack += [("f", f) for f in _calls(nodes[name], functions)]
        elif kind == "f" and name in functions and name not in seen_fns:
            seen_fns.add(name)
            stack += [("f", f) for nd in functions[name].node_def for f in _calls(nd, functions)]
    return seen_nodes, seen_fns


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _calls(node, functions: dict) -> list[str]:
    called = [node.op] if node.op in functions else []
    for value in node.attr.values():
        if value.func.name:
            called.append(value.func.name)
        called += [f.name for f in value.list.func]
    return called
