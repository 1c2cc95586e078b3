"""The ``ondevice`` command line. Every command ends with one verdict line and a documented exit code (docs/cli.md)."""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from .core.errors import BadInputError, OndeviceError

# --to defaults to DEFAULT_TARGETS: ExecuTorch is opted into (it comes with its own extra, and only
# PyTorch sources reach it).
from .core.vocab import DEFAULT_TARGETS, QUANTIZED, TARGETS, ExitCode


def _targets(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown target(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TARGETS)}"
        )
    return names


def _tolerance_value(text: str) -> float:
    """--atol/--rtol: a finite number >= 0 (NaN would make every comparison fail or pass by accident)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in (0, 1]")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors end, like every other failure, with the verdict line (exit 2)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print(_one_line(f"FAILED (bad invocation: {self.prog}: {message}; see {self.prog} --help)"), flush=True)
        raise SystemExit(2)


def _one_line(text) -> str:
    """``text`` on one line, control characters shown as escapes: names from a model or a report file
    must not break the verdict line or forge one of their own."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text
    )


def _precisions(text: str) -> list[str]:
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in names if t not in QUANTIZED]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown precision(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(QUANTIZED)}"
        )
    return names


def _dynamic(text: str) -> tuple[str, list[int]]:
    name, _, axes = text.partition(":")
    try:
        return name, [int(a) for a in axes.split(",") if a != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --dynamic {text!r}: expected NAME:0,1") from None


def _source_args(p):
    p.add_argument("source", help="file.py:factory, package.module:factory, model.keras|.h5|.pt2|.pt|.onnx")
    _source_options(p)


def _source_options(p):
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME:SHAPE[:DTYPE]",
        help="input name, shape (1x3x224x224) and dtype (default float32); repeat per input",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow pickles in the source (a torch.save model, pickled .pt2 members): runs their code",
    )
    p.add_argument(
        "--trust-graph",
        action="store_true",
        help="allow a SavedModel whose graph has file-system or process ops (they run)",
    )
    p.add_argument(
        "--threads", type=_int_at_least(1), default=None, help="threads for every runtime (default: cores, at most 4)"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop the whole run after this long: FAILED, exit 4",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the verdict line (no progress on stderr, no per-target summary)",
    )
    p.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the converters' scratch folder (OUT/.work) after the run, for debugging",
    )


def _export_args(p):
    p.add_argument(
        "--to",
        type=_targets,
        default=list(DEFAULT_TARGETS),
        help="comma-separated: onnx,tflite,openvino,executorch (default: onnx,tflite,openvino)",
    )
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--dynamic", type=_dynamic, action="append", default=[], metavar="NAME:AXES")
    p.add_argument(
        "--quantize",
        type=_precisions,
        default=None,
        metavar="fp16,dynamic-int8,int8",
        help="also make a quantized artifact per target and precision from the float one "
        "(model.<precision>.<ext>); comma-separated for several",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="int8 calibration inputs (.npz, one array per input, first axis = sample); default: generated",
    )
    p.add_argument("--int8-io", action="store_true", help="full-integer TFLite with int8 inputs and outputs")
    p.add_argument(
        "--int8-kernels",
        choices=("portable", "vnni"),
        default="portable",
        help="int8 exact on every x86 CPU (portable, default: 7-bit weights where 8 bits can "
        "saturate without VNNI) or 8-bit weights for fleets with VNNI/AMX (vnni)",
    )
    p.add_argument(
        "--keep-float",
        default=None,
        metavar="auto|LAYER,...",
        help="int8 only: leave layers in float until int8 passes its tolerances on the calibration "
        "samples (auto: the worst by explain's per-layer SNR lost, one per re-quantization), or "
        "these layers by the source's own names (module path, Keras layer name)",
    )
    p.add_argument(
        "--keep-float-cap",
        type=_fraction,
        default=None,
        metavar="FRACTION",
        help="with --keep-float auto: the largest share of the weight bytes left in float (default 0.1)",
    )
    p.add_argument("--strategy", default=None, help="force one strategy by name")
    p.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="TARGET:BACKEND[,BACKEND]",
        help="keep the first strategy whose artifact also runs whole on these accelerator backends "
        "(tflite:gpu, onnx:nnapi,coreml, openvino:cpu,gpu,npu); repeat per target",
    )


def _validate_args(p, report_default: bool):
    p.add_argument("--samples", type=_int_at_least(1), default=8)
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--inputs", default=None, help="golden inputs (.npz, one array per input, first axis = sample)")
    p.add_argument("--atol", type=_tolerance_value, default=None, help="absolute tolerance (default 1e-4 at fp32)")
    p.add_argument("--rtol", type=_tolerance_value, default=None, help="relative tolerance (default 1e-3 at fp32)")
    p.add_argument(
        "--runs",
        type=_int_at_least(1),
        help="timed latency runs after the warmup (default: 20 to 50, until the p50's 95%% CI is within 2%% of it)",
    )
    p.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help="do not fail when the source's outputs barely change across samples",
    )
    p.add_argument(
        "--no-emulate-cpu",
        action="store_true",
        help="do not also run int8 artifacts on an emulated AVX2 CPU (recorded as not checked)",
    )
    p.add_argument(
        "--allow-precision-change",
        action="store_true",
        help="do not fail when an artifact's real precision differs from the one requested",
    )
    p.add_argument(
        "--no-explain",
        action="store_true",
        help="do not locate the first diverging layer of a target that fails parity",
    )
    p.add_argument(
        "--policy",
        default=None,
        metavar="gate.toml",
        help="also judge the report by this gate policy (writes gate.json beside the report)",
    )
    if report_default:
        p.add_argument(
            "--report",
            default=None,
            help=f"report path (default: OUT/report.json for an export folder, {BYO_REPORT} for "
            "files made elsewhere, whose manifest ondevice writes beside the report)",
        )


BYO_REPORT = "ondevice-report/report.json"


def _byo_args(p, check: bool):
    """Options for artifact files made by any tool (no manifest)."""
    if check:
        p.add_argument(
            "--artifact",
            action="extend",
            nargs="+",
            default=[],
            metavar="FILE",
            help="validate these .onnx/.tflite/.xml/.pte files (or a folder of them) made by any tool "
            "instead of exporting; reports and ondevice's manifest for them go to -o",
        )
    p.add_argument(
        "--io-map",
        action="append",
        default=[],
        metavar="SRC=ART[:PERM]",
        help="pair a source input/output with an artifact tensor (PERM: source axes in artifact "
        "order, e.g. 0,2,3,1 for NCHW->NHWC, or none); needed where the match is ambiguous",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "dynamic-int8", "int8"),
        default=None,
        help="the precision files made elsewhere are meant to have (default fp32); a file holding "
        "another fails unless --allow-precision-change",
    )


def _gate_args(p, policy_help: str):
    p.add_argument("--policy", default=None, metavar="gate.toml", help=policy_help)
    p.add_argument(
        "--baseline",
        default=None,
        metavar="PREVIOUS.json",
        help="the last release's report.json: flag regressions against it",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ondevice",
        description="Export models to ONNX, TFLite and OpenVINO and prove each artifact matches its source.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks: of internal errors, and the cause behind a user error"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="convert a model to the requested targets")
    _source_args(p)
    _export_args(p)
    p = sub.add_parser("validate", help="check exported artifacts against their source")
    _source_args(p)
    p.add_argument(
        "out",
        nargs="+",
        metavar="ARTIFACTS",
        help="the folder `export` wrote (holds manifest.json), or .onnx/.tflite/.xml/.pte files made by any "
        "tool, or a folder of them",
    )
    _validate_args(p, report_default=True)
    _byo_args(p, check=False)
    p = sub.add_parser("check", help="export, then validate; writes report.json, .md, .html and junit.xml")
    _source_args(p)
    _export_args(p)
    _validate_args(p, report_default=False)
    _byo_args(p, check=True)
    p = sub.add_parser("report", help="render a report.json as Markdown, HTML or JUnit XML")
    p.add_argument("report")
    p.add_argument("--format", choices=("md", "html", "junit", "json"), default="md")
    p.add_argument("-o", "--output", default=None)
    _gate_args(p, "show the verdict of this gate policy in the rendering")
    p = sub.add_parser("gate", help="judge a report.json by a policy and against a baseline report")
    p.add_argument("report", help="the report.json to judge")
    _gate_args(p, "gate.toml (default: every target in the report passed)")
    p.add_argument("--json", default=None, metavar="OUT", help="write every failed rule as JSON (gate.json)")
    p = sub.add_parser("explain", help="first diverging layer between a source and one artifact, per-layer errors")
    _source_args(p)
    p.add_argument("artifact", help="an export folder (pick with --target/--quantize) or one .onnx/.tflite/.xml file")
    p.add_argument("--target", choices=TARGETS, default=None, help="which target of an export folder")
    p.add_argument(
        "--quantize",
        choices=("fp16", "dynamic-int8", "int8"),
        default=None,
        help="which precision of an export folder; for a file, the precision it is meant to have",
    )
    p.add_argument(
        "--io-map",
        action="append",
        default=[],
        metavar="SRC=ART[:PERM]",
        help="pair a source input/output with an artifact tensor (see validate)",
    )
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the one random sample compared")
    p.add_argument("--json", default=None, metavar="OUT", help="write the divergence (every layer) as JSON")
    p.add_argument("--all", action="store_true", help="print every paired layer, not the first 40")
    sub.add_parser("doctor", help="which frameworks, converters and runtimes are usable")
    _zoo_parser(sub)
    return parser


# ---- zoo: many models, each with check's options ----------------------------------------------------

# check options the zoo command keeps for itself (the others apply to every model, where silent).
_ZOO_OWN = ("out", "timeout", "quiet")


class _OptionsParser(_Parser):
    """check's options read from a zoo file: a bad one is the zoo file's error (exit 2, one line)."""

    def error(self, message):
        raise BadInputError(message)


def _check_options(p, given_only: bool) -> None:
    """Every option of check (no SOURCE); ``given_only``: absent from the result unless given."""
    _source_options(p)
    _export_args(p)
    _validate_args(p, report_default=False)
    if given_only:
        for action in p._actions:
            if action.dest not in (*_ZOO_OWN, "help"):
                action.default = argparse.SUPPRESS


def _model_options():
    """(parse, defaults): a zoo model's option tokens parsed as check parses them, and check's defaults."""
    given, full = _OptionsParser(prog="zoo", add_help=False), _OptionsParser(prog="zoo", add_help=False)
    _check_options(given, given_only=True)
    _check_options(full, given_only=False)

    def parse(tokens: list, where: str) -> dict:
        try:
            options = vars(given.parse_args([*tokens, "-o", "-"]))
        except BadInputError as exc:
            raise BadInputError(f"{where}: {exc}") from exc
        return {k: v for k, v in options.items() if k not in _ZOO_OWN}

    defaults = {k: v for k, v in vars(full.parse_args(["-o", "-"])).items() if k not in _ZOO_OWN}
    return parse, defaults


def _zoo_parser(sub) -> None:
    p = sub.add_parser("zoo", help="check every model of a zoo in parallel, resumable and cached; writes a scorecard")
    p.add_argument(
        "zoo",
        help="ZOO.toml ([[model]] tables with source = ... and check's options) or a Python module with a MODELS list",
    )
    _check_options(p, given_only=True)
    p.add_argument(
        "--workers",
        type=_int_at_least(1),
        default=1,
        help="models checked at once (conversions overlap; latency is always measured alone)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the models OUT/zoo-status.json records as finished with the same source and options",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local processes, or Ray tasks (pip install 'ondevice[zoo]')",
    )
    p.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster (auto, or HOST:PORT of its head) instead of starting a private one",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="PREVIOUS/scorecard.json",
        help="a previous zoo's scorecard: flag models and targets that regressed against it",
    )
    p.add_argument(
        "--timeout-per-model",
        type=_seconds,
        default=1800.0,
        metavar="SECONDS",
        help="stop a model after this long running (default 1800); it fails, the others go on",
    )
    p.add_argument(
        "--memory-per-model",
        type=_int_at_least(64),
        default=None,
        metavar="MiB",
        help="stop a model whose processes together hold more resident memory than this",
    )
    p.add_argument(
        "--cache",
        default=None,
        metavar="FOLDER",
        help="the conversion cache (default OUT/.cache); share one folder between runs and output folders",
    )
    p.add_argument("--no-cache", action="store_true", help="convert every model, and keep nothing for next time")
    p.add_argument(
        "--trust-cache",
        action="store_true",
        help="on a cache hit, reuse the report validated when the entry was made (same validation "
        "settings) instead of validating the artifacts again",
    )


def cmd_zoo(args) -> int:
    from .core.errors import MissingDependency
    from .core.lazy import available
    from .zoo import scorecard
    from .zoo.config import load_zoo
    from .zoo.process import Limits
    from .zoo.runner import Interrupted, ZooOptions, run_zoo

    if args.address and args.executor != "ray":
        raise BadInputError("--address names a Ray cluster: add --executor ray")
    if args.executor == "ray" and not available("ray"):
        raise MissingDependency("ray is not installed; install it with: pip install 'ondevice[zoo]' (package ray)")
    parse, defaults = _model_options()
    zoo = load_zoo(args.zoo, parse)
    given = {k: v for k, v in vars(args).items() if k in defaults}
    out = Path(args.out)
    cache = None if args.no_cache else Path(args.cache) if args.cache else out / ".cache"
    if args.trust_cache and cache is None:
        raise BadInputError("--trust-cache reuses reports kept in the cache: it does not go with --no-cache")
    opts = ZooOptions(
        out,
        args.workers,
        args.resume,
        args.executor,
        args.address,
        args.baseline,
        Limits(args.timeout_per_model, args.memory_per_model),
        cache,
        args.quiet,
        bool(given.get("keep_work")),
        args.trust_cache,
    )
    try:
        card, path = run_zoo(zoo, {**defaults, **given}, opts)
    except Interrupted as exc:
        print(_one_line(f"FAILED ({exc})"), flush=True)
        return 130
    for model in card["models"] if not args.quiet else ():
        print(
            _one_line(
                f"{model['name']:24} {model['state']:16} {model.get('seconds') or 0:7.1f} s  "
                f"{model['verdict'] if model['exit_code'] else ''}".rstrip()
            )
        )
    for failure in (card.get("baseline") or {}).get("failures", []):
        print(_one_line(f"baseline: FAIL {failure['line']}"))
    print(_one_line(scorecard.verdict(card, path)), flush=True)
    return card["exit_code"]


def main(argv=None) -> int:
    """The console command. Without ``argv`` the work runs in a supervised child process that cannot end
    without a verdict (see _supervise); ``main([...])`` runs in this process (tests, embedding)."""
    if argv is None:
        from . import _supervise

        if not _supervise.is_child():
            return _supervise.supervise(sys.argv[1:])
        _supervise.run_child(run)
    return run(argv)


def run(argv) -> int:
    """Parse ``argv``, run the command in this process and print its verdict line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already reported with its verdict line (2)
        return exc.code if isinstance(exc.code, int) else 2
    from ._supervise import RunTimedOut, deadline
    from .core.lazy import quiet_environment

    quiet_environment()
    try:
        with deadline(getattr(args, "timeout", None)), _scratch_space(args):
            code = COMMANDS[args.command](args)
    except OndeviceError as exc:
        if args.debug:  # the user's error, and the framework error behind it (its chained cause)
            traceback.print_exc()
        print(_one_line(f"FAILED ({exc})"), flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("FAILED (interrupted)", flush=True)
        return 130
    except RunTimedOut as exc:
        print(f"FAILED ({exc}; the run was stopped and nothing it wrote is a verdict)", flush=True)
        return int(ExitCode.INTERNAL)
    except SystemExit as exc:
        print(
            _one_line(f"FAILED (user code called sys.exit({exc.code!r}) during the run; nothing was checked)"),
            flush=True,
        )
        return int(ExitCode.INTERNAL)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else "; rerun with --debug for a traceback"
        print(_one_line(f"FAILED (internal error: {type(exc).__name__}: {exc}{hint})"), flush=True)
        return int(ExitCode.INTERNAL)
    return code


def _load(args):
    from .api import _source

    return _source(args.source, inputs=args.input, trust_pickle=args.trust_pickle, trust_graph=args.trust_graph)


def _warmed(args, export):
    """While the source loads, the slowest converter's framework already importing in the process that will
    convert (registry.warms), for every framework the source may turn out to be; nothing for ``export`` None."""
    from contextlib import nullcontext

    if export is None:
        return nullcontext()
    from .converters.registry import warmed
    from .sources import frameworks_of_spec

    return warmed(frameworks_of_spec(args.source), export.targets, export.strategy)


def _validate_options(args):
    """validate's and check's flags as one ValidateOptions."""
    from .options import ValidateOptions

    return ValidateOptions.from_flags(vars(args))


def _scratch_space(args):
    """The run's scratch folder, where every converter and runtime works (OUT/.work for export and check,
    the temp folder for validate), from before the source loads until the verdict; none for other commands."""
    from contextlib import nullcontext

    from .core.scratch import run_scratch

    if not hasattr(args, "keep_work"):
        return nullcontext()
    out = args.out if args.command in ("export", "check") else None
    return run_scratch(out, args.keep_work)


def _start_run(out, *names, option: str = "-o") -> Path:
    """A usable -o, emptied of the previous run's report and manifest: a run that fails must not leave
    an old PASSED behind for a CI step to read."""
    from ._paths import REPORT_FILES, clear_previous, output_folder

    folder = output_folder(out, option)
    clear_previous(folder, names or (*REPORT_FILES, "manifest.json"))
    return folder


@contextmanager
def _reading(path):
    """Values in a report file that the gate or a renderer cannot use are the file's fault (exit 2, with or
    without --debug; --debug shows where they broke, as the error's cause)."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, ZeroDivisionError) as exc:
        raise BadInputError(
            f"report {path} holds values ondevice cannot judge ({type(exc).__name__}: {exc}); "
            "regenerate it with `ondevice check`"
        ) from exc


def cmd_export(args) -> int:
    from .exporter import export_source
    from .options import ExportOptions

    _start_run(args.out)
    _requirements(args)
    options = ExportOptions.from_flags(vars(args), keep_float=_keep_float(args))
    with _progress(args), _warmed(args, options):
        artifacts = export_source(_load(args), args.out, options)
    for a in artifacts if not args.quiet else ():
        probe = a.probe.get("max_abs_err")
        print(_one_line(f"{a.target:9} {a.strategy:32} {a.path}  probe max abs err {probe:.3g}"))
        _print_keep_float(a.keep_float)
    problems = [f"{f.target}: {f.error}" for f in artifacts.failures]
    problems += [
        f"{a.target}: quick parity probe failed (max abs err {a.probe.get('max_abs_err'):.3g})"
        for a in artifacts
        if not a.probe.get("passed")
    ]
    problems += [
        f"{a.target}: no strategy made an artifact that runs whole on {backend} (see the manifest's attempts)"
        for a in artifacts
        for backend, met in (a.options.get("require") or {}).items()
        if not met
    ]
    problems += [
        f"{a.target}[int8]: --keep-float: {a.keep_float.get('stopped')}"
        for a in artifacts
        if a.keep_float
        and (a.keep_float.get("missing") or (a.keep_float.get("mode") == "auto" and not a.keep_float.get("passed")))
    ]
    manifest = Path(args.out) / "manifest.json"
    if problems:
        print(_one_line(f"FAILED ({'; '.join(problems)}) - manifest: {manifest}"))
        # A converter that crashed (status "error") is a fault, exit 4; one that refused, exit 3.
        return max((4 if f.status == "error" else 3 for f in artifacts.failures), default=1)
    print(f"PASSED ({', '.join(a.target for a in artifacts)}) - manifest: {manifest}")
    return 0


def _keep_float(args):
    """--keep-float and its cap as one KeepFloat, checked before the source loads (exit 2)."""
    from .keep_float import parse

    if args.keep_float is None and args.keep_float_cap is not None:
        raise BadInputError("--keep-float-cap applies with --keep-float")
    if args.keep_float is not None and "int8" not in (args.quantize or []):
        raise BadInputError("--keep-float applies to full-integer models: add --quantize int8")
    return parse(args.keep_float, args.keep_float_cap)


def _print_keep_float(record, indent: str = "          ") -> None:
    from .keep_float import summary_lines

    for line in summary_lines(record) if record else ():
        print(_one_line(f"{indent}{line}"))


def _requirements(args) -> None:
    """--require checked before the source loads: a misspelt backend costs a second, not an export (exit 2)."""
    from ._compat import parse_requirements

    parse_requirements(args.require, args.to)


def _progress(args):
    """Stage-by-stage progress on stderr for this command, unless --quiet."""
    from .progress import reporting

    return reporting(enabled=not getattr(args, "quiet", False))


def _print_summary(report, quiet: bool = False) -> None:
    labels = [t.label for t in report.targets]
    for t in report.targets if not quiet else ():
        if labels.count(t.label) > 1 and t.artifact:  # several files of one target: say which is which
            print(_one_line(f"{Path(t.artifact).name}:"))
        outs = (t.parity or {}).get("outputs", [])
        err = max((o["max_abs_err"] for o in outs), default=None)
        p50 = (t.latency or {}).get("p50_ms")
        err_text = f"max abs err {err:.3g}" if err is not None else ""
        p50_text = f"p50 {p50:.3f} ms" if p50 is not None else ""
        print(f"{t.label:22} {t.status:16} {err_text:24} {p50_text}".rstrip())
        if t.error:
            print(_one_line(f"          {t.error}"))
        if t.divergence:
            from .render import divergence_line

            print(_one_line(f"          {divergence_line(t.divergence)}"))
        _print_keep_float(t.keep_float)


def _policy(args):
    """The --policy file, validated before any slow work so a typo costs seconds (exit 2)."""
    from .gate import load_policy

    return load_policy(args.policy) if args.policy else None


def _gate(report, policy, path, baseline=None):
    """Run the gate, print each failed rule and note; None without a policy or baseline."""
    from .gate import run_gate
    from .report import load_report

    if policy is None and baseline is None:
        return None
    previous = None
    if baseline is not None:
        try:
            previous = load_report(baseline)
        except OndeviceError as exc:
            raise type(exc)(f"baseline: {exc}") from exc
    result = run_gate(report, policy, previous, path, baseline)
    for failure in result.failures:
        print(_one_line(f"gate: FAIL {failure.line()}"))
    for note in result.notes:
        print(_one_line(f"gate: note: {note}"))
    return result


def _finish(report, gate, path) -> int:
    """Print the verdict line for a report (and its gate); return the worse exit code."""
    from .publish import conclusion

    code, line = conclusion(report, gate, path)
    print(_one_line(line))
    return code


def cmd_validate(args) -> int:
    from .byo import is_export_folder
    from .pipeline import validate_artifacts
    from .publish import publish, published_names

    exported = is_export_folder(args.out)
    report_path = Path(args.report or (Path(args.out[0]) / "report.json" if exported else BYO_REPORT))
    _start_run(
        report_path.parent,
        *published_names(report_path.name),
        *(() if exported else ("manifest.json",)),
        option="--report folder",
    )
    policy = _policy(args)
    options = _validate_options(args)
    with _progress(args):
        source = _load(args)
        artifacts = _artifacts(args, source, args.out, exported, report_path.parent)
        report = validate_artifacts(source, artifacts, options)
    _print_summary(report, args.quiet)
    gate = _gate(report, policy, report_path)
    path = publish(report, report_path.parent, gate, name=report_path.name)
    return _finish(report, gate, path)


def _artifacts(args, source, paths, exported: bool, folder: Path):
    """An export folder's Artifacts, or files made elsewhere described (manifest written in ``folder``)."""
    from .artifacts import Artifacts
    from .byo import prepare
    from .options import default_threads

    if exported:
        if args.io_map or args.precision:
            raise BadInputError(
                f"--io-map and --precision are for files made elsewhere; the manifest in "
                f"{paths[0]} already records how its artifacts match and their precision"
            )
        return Artifacts.load(paths[0])
    return prepare(
        source,
        paths,
        folder,
        hints=args.io_map,
        precision=None if args.precision == "fp32" else args.precision,
        threads=args.threads or default_threads(),
    )


def cmd_check(args) -> int:
    from .options import ExportOptions
    from .pipeline import check_source, validate_artifacts
    from .publish import publish

    _start_run(args.out)
    policy = _policy(args)
    if args.artifact and (
        args.quantize
        or args.strategy
        or args.dynamic
        or args.calibration
        or args.int8_io
        or args.require
        or args.keep_float
    ):
        raise BadInputError(
            "--artifact validates files made elsewhere: --quantize, --strategy, --dynamic, "
            "--calibration, --int8-io, --require and --keep-float are export options and do not "
            "apply"
        )
    export = None if args.artifact else ExportOptions.from_flags(vars(args), keep_float=_keep_float(args))
    _requirements(args)
    if not args.artifact and (args.io_map or args.precision):
        raise BadInputError("--io-map and --precision apply to files given with --artifact")
    validate = _validate_options(args)
    with _progress(args), _warmed(args, export):
        source = _load(args)
        if export is None:
            artifacts = _artifacts(args, source, args.artifact, False, Path(args.out))
            report = validate_artifacts(source, artifacts, validate)
        else:
            report = check_source(source, args.out, export, validate)
    path = Path(args.out) / "report.json"
    _print_summary(report, args.quiet)
    gate = _gate(report, policy, path)
    publish(report, args.out, gate)
    return _finish(report, gate, path)


def cmd_report(args) -> int:
    import json

    from ._paths import writable_file, write_user_file
    from .render import render
    from .report import load_report

    if args.output:
        writable_file(args.output, "-o")
    policy = _policy(args)
    report = load_report(args.report)
    with _reading(args.report):
        gate = _gate(report, policy, args.report, args.baseline)
        text = json.dumps(report.to_json(), indent=2) if args.format == "json" else render(report, args.format, gate)
    if args.output:
        write_user_file(args.output, text, "-o")
    else:
        print(text)
    return _finish(report, gate, args.report)


def cmd_gate(args) -> int:
    from ._paths import writable_file, write_user_file
    from .gate import Policy
    from .report import load_report

    if args.json:
        writable_file(args.json, "--json")
    policy = _policy(args) or Policy()
    report = load_report(args.report)
    with _reading(args.report):
        gate = _gate(report, policy, args.report, args.baseline)
    if args.json:
        import json

        write_user_file(args.json, json.dumps(gate.to_json(), indent=2) + "\n", "--json")
    print(_one_line(gate.verdict(args.report)))
    return gate.exit_code


def cmd_explain(args) -> int:
    import json

    from ._paths import writable_file, write_user_file
    from .core.specs import make_samples
    from .explain import explain_artifact, pick_artifact, table
    from .options import default_threads

    if args.json:
        writable_file(args.json, "--json")
    threads = args.threads or default_threads()
    with _progress(args):
        source = _load(args)
        artifact = pick_artifact(source, args.artifact, args.target, args.quantize, args.io_map, threads=threads)
        sample = make_samples(source.inputs, 1, args.seed, source.example)[0]
        from . import progress

        progress.stage(artifact.target, "running source and artifact with every intermediate tensor kept")
        divergence = explain_artifact(source, artifact, sample, threads)
    if args.json:
        write_user_file(args.json, json.dumps(divergence.to_json(), indent=2) + "\n", "--json")
    if not args.quiet:
        for line in table(divergence, 0 if args.all else 40):
            print(_one_line(line))
        for entry in divergence.unpaired:
            print(_one_line(f"unpaired: {entry['source_layer']} ({entry['source_type']}): {entry['reason']}"))
        if divergence.ranking:
            print(
                f"{divergence.precision}: layers by SNR lost against the layer before them (what --keep-float "
                "auto keeps in float first):"
            )
            for rank, entry in enumerate(divergence.ranking, 1):
                print(
                    _one_line(
                        f"   {rank:>3} {entry['source_layer']:32} lost {entry['snr_lost_db']:7.1f} dB  "
                        f"(SNR {entry['snr_db']:.1f} dB)"
                    )
                )
    return _explain_verdict(divergence, artifact)


def _explain_verdict(divergence, artifact) -> int:
    counts = divergence.counts()
    tally = (
        f"{counts['by_name']} paired by name, {counts['by_value']} by value, {counts['unpaired']} unpaired "
        f"of {counts['source_layers']} source layers"
    )
    first = divergence.first
    if first is None and not divergence.layers:
        print(
            _one_line(
                f"FAILED (nothing to compare: no layer of the source could be paired with a tensor of "
                f"{artifact.path.name}; {tally})"
            )
        )
        return 1
    if first is None:
        # Unpaired layers were not compared: the verdict says so rather than vouching for them.
        hidden = f"; not compared: {counts['unpaired']} unpaired layers" if counts["unpaired"] else ""
        print(_one_line(f"PASSED (no divergence found in {artifact.path.name}: {tally}{hidden})"))
        return 0
    fused = f", fused with {', '.join(first.fused_with)}" if first.fused_with else ""
    print(
        _one_line(
            f"FAILED (first divergence at {first.source_layer} ({first.source_type}{fused}) -> "
            f"{first.artifact_tensor} ({first.op_type}): max abs err {first.max_abs_err:.3g}, cosine "
            f"{first.cosine:.4f}; {tally})"
        )
    )
    return 1


def cmd_doctor(args) -> int:
    from .doctor import doctor

    code, lines = doctor()
    for line in lines:
        print(line)
    return code


COMMANDS = {
    "export": cmd_export,
    "validate": cmd_validate,
    "check": cmd_check,
    "report": cmd_report,
    "gate": cmd_gate,
    "doctor": cmd_doctor,
    "explain": cmd_explain,
    "zoo": cmd_zoo,
}

if __name__ == "__main__":
    sys.exit(main())
