"""The release gate: a policy file (gate.toml) applied to a report's numbers, and the diff to a baseline.

Every rule that fails becomes one ``Failure`` with the rule's name, where it applies (target,
precision, output), the measured value and the limit; ``run_gate`` returns them as one ``Verdict``.
The gate never re-measures anything: it judges the numbers ``report.json`` holds, so the same report
and policy always give the same verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .core.errors import BadInputError
from .core.vocab import PRECISIONS, STATUSES, exit_code_of
from .core.vocab import TARGETS as TARGET_NAMES
from .report import Report, TargetResult

SELECTORS = ("target", "precision", "output")
PARITY_KEYS = ("atol", "rtol", "min_cosine", "min_snr_db", "min_top1_agreement", "min_topk_agreement")
LATENCY_KEYS = ("max_p50_ms", "max_p90_ms", "max_p99_ms", "max_ratio_to_source")
SIZE_KEYS = ("max_bytes",)
# Defaults chosen so that run-to-run noise on a shared CI machine does not fail a release (docs/gating.md).
REGRESSION_DEFAULTS = {
    "err_growth": 2.0,
    "err_floor": 0.1,
    "snr_drop_db": 6.0,
    "snr_floor_db": 80.0,
    "latency_pct": 10.0,
    "size_growth_pct": 5.0,
}
GATE_SCHEMA_VERSION = 1


class PolicyError(BadInputError):
    """A gate.toml that cannot be used: unknown key, wrong type, value out of range."""


@dataclass(frozen=True)
class Policy:
    """A validated gate.toml; an empty Policy requires every target in the report to have passed."""

    targets: tuple = ()
    precisions: tuple = ("fp32",)
    statuses: tuple | None = None
    parity: tuple = ()
    latency: tuple = ()
    size: tuple = ()
    regression: dict = field(default_factory=lambda: dict(REGRESSION_DEFAULTS))
    path: str | None = None
    # [compatibility]: {"require": {target: (backend, ...)}, "min_coverage": {(target, backend): share}}
    compatibility: dict = field(default_factory=dict)

    def thresholds(self, section: str, target: str, precision: str, output: str | None = None) -> dict:
        """The merged limits of every ``[[section]]`` rule that matches; more specific rules win."""
        rules = [r for r in getattr(self, section) if _matches(r, target, precision, output)]
        rules.sort(key=lambda r: sum(k in r for k in SELECTORS))  # stable: file order within a specificity
        merged = {}
        for rule in rules:
            merged.update({k: v for k, v in rule.items() if k not in SELECTORS})
        return merged


def _matches(rule: dict, target: str, precision: str, output: str | None) -> bool:
    if rule.get("target", target) != target or rule.get("precision", precision) != precision:
        return False
    return "output" not in rule or rule["output"] == output


# ---- loading and validating gate.toml -------------------------------------------------------------


def load_policy(path) -> Policy:
    """Read and validate a gate.toml; any problem is a PolicyError (exit 2) naming the key."""
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"policy not found: {path}") from None
    except IsADirectoryError:
        raise PolicyError(f"policy {path} is a folder; give the gate.toml file") from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, ValueError) as exc:  # ValueError: bad UTF-8, a 5000-digit integer
        raise PolicyError(f"policy {path} is not valid TOML: {exc}") from exc
    except RecursionError:
        raise PolicyError(f"policy {path} nests too deeply to be a gate policy") from None
    return policy_from_dict(data, str(path), path=str(path))


def policy_from_dict(data: dict, where: str = "policy", path: str | None = None) -> Policy:
    """Validate a parsed policy; ``where`` prefixes every error message."""
    _known(data, ("require", "parity", "latency", "size", "regression", "compatibility"), where)
    require = _table(data, "require", where)
    _known(require, ("targets", "precisions", "statuses"), f"{where}: [require]")
    targets = _names(require, "targets", TARGET_NAMES, f"{where}: [require]")
    precisions = _names(require, "precisions", PRECISIONS, f"{where}: [require]")
    if precisions and not targets:
        raise PolicyError(f"{where}: [require] precisions needs require.targets (which targets at those precisions)")
    statuses = _names(require, "statuses", STATUSES, f"{where}: [require]")
    regression = _table(data, "regression", where)
    _known(regression, tuple(REGRESSION_DEFAULTS), f"{where}: [regression]")
    for key, value in regression.items():
        _number(value, f"{where}: [regression] {key}", minimum=0.0)
    return Policy(
        tuple(targets or ()),
        tuple(precisions or ("fp32",)),
        tuple(statuses) if statuses is not None else None,
        _rules(data, "parity", PARITY_KEYS, where),
        _rules(data, "latency", LATENCY_KEYS, where),
        _rules(data, "size", SIZE_KEYS, where),
        {**REGRESSION_DEFAULTS, **regression},
        path,
        _compatibility_policy(data, where),
    )


def _compatibility_policy(data: dict, where: str) -> dict:
    """``[compatibility]``: backends each target's artifacts must run on, and the share of ops they must take.

    ``min_coverage`` is one number for every listed backend, or a table per target (a number, or a
    table per backend); without it a backend must take every op.
    """
    from ondevice.validators.compatibility import all_backends

    table, at = _table(data, "compatibility", where), f"{where}: [compatibility]"
    known = all_backends()
    _known(table, (*known, "min_coverage"), at)
    required = {t: tuple(_names(table, t, known[t], at) or ()) for t in known if t in table}
    required = {t: b for t, b in required.items() if b}
    coverage = table.get("min_coverage")
    if coverage is not None and not required:
        raise PolicyError(f'{at} min_coverage needs a backend list, e.g. tflite = ["gpu"]')
    limits = {}
    if isinstance(coverage, dict):
        _known(coverage, tuple(required), f"{at} min_coverage")
        for target, value in coverage.items():
            per = value if isinstance(value, dict) else dict.fromkeys(required[target], value)
            _known(per, required[target], f"{at} min_coverage.{target}")
            for backend, share in per.items():
                limits[(target, backend)] = _number(share, f"{at} min_coverage.{target}.{backend}", 0.0, 1.0)
    elif coverage is not None:
        share = _number(coverage, f"{at} min_coverage", 0.0, 1.0)
        limits = {(t, b): share for t, backends in required.items() for b in backends}
    return {"require": required, "min_coverage": limits} if required else {}


def _known(table: dict, allowed, where: str) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(allowed)}")


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: {key!r} must be a table ([{key}])")
    return value


def _names(table: dict, key: str, allowed, where: str):
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} {key} must be a list of strings")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise PolicyError(f"{where} {key}: unknown value {bad[0]!r}; choose from {', '.join(allowed)}")
    return value


def _number(value, where: str, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:20]}..."
        raise PolicyError(f"{where} must be a finite number, not {shown}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise PolicyError(f"{where} = {value} is outside [{minimum}, {maximum if maximum is not None else 'inf'}]")
    return float(value)


_RANGES = {
    "min_cosine": (-1.0, 1.0),
    "min_top1_agreement": (0.0, 1.0),
    "min_topk_agreement": (0.0, 1.0),
    "min_snr_db": (None, None),
}


def _rules(data: dict, section: str, keys, where: str) -> tuple:
    """``[section]`` (one table) or ``[[section]]`` (several) -> a tuple of validated rule dicts."""
    value = data.get(section, [])
    rules = [value] if isinstance(value, dict) else value
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise PolicyError(f"{where}: {section!r} must be a table or an array of tables ([[{section}]])")
    selectors = SELECTORS if section == "parity" else SELECTORS[:2]
    out = []
    for index, rule in enumerate(rules):
        at = f"{where}: [{section}]" if isinstance(value, dict) else f"{where}: [[{section}]] #{index + 1}"
        _known(rule, (*selectors, *keys), at)
        if not any(k in rule for k in keys):
            raise PolicyError(f"{at} sets no limit; give one of {', '.join(keys)}")
        for key in ("target", "precision"):
            allowed = TARGET_NAMES if key == "target" else PRECISIONS
            if key in rule and rule[key] not in allowed:
                raise PolicyError(f"{at} {key}: unknown value {rule[key]!r}; choose from {', '.join(allowed)}")
        if "output" in rule and not isinstance(rule["output"], str):
            raise PolicyError(f"{at} output must be a string (an output name)")
        for key in keys:
            if key in rule:
                low, high = _RANGES.get(key, (0.0, None))
                _number(rule[key], f"{at} {key}", low, high)
        out.append(dict(rule))
    return tuple(out)


# ---- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One failed rule: its name, where it applies, the measured value and the limit it broke."""

    rule: str
    message: str
    target: str | None = None
    precision: str | None = None
    output: str | None = None
    actual: float | str | None = None
    limit: float | str | None = None
    baseline: float | str | None = None
    exit_code: int = 1

    def where(self) -> str:
        if self.target is None:
            return ""
        return f"{self.target}[{self.precision}]" + (f" {self.output}" if self.output else "")

    def line(self) -> str:
        """``rule where: message`` for the terminal and the reports."""
        return f"{self.rule} {self.where()}: {self.message}".replace(" :", ":")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict: every failed rule of one gate run, and the notes; truthy when none failed."""

    failures: tuple[Failure, ...]
    checks: int
    notes: tuple[str, ...] = ()
    report: str | None = None
    baseline: str | None = None
    policy: str | None = None

    @property
    def exit_code(self) -> int:
        return max((f.exit_code for f in self.failures), default=0)

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        return {
            "schema_version": GATE_SCHEMA_VERSION,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "report": self.report,
            "baseline": self.baseline,
            "policy": self.policy,
            "checks": self.checks,
            "failed": [f.to_json() for f in self.failures],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        """The verdict ``to_json`` gave (gate.json); its pass and exit code are derived again, never read."""
        return cls(
            tuple(Failure(**f) for f in data["failed"]),
            data["checks"],
            tuple(data.get("notes", ())),
            data.get("report"),
            data.get("baseline"),
            data.get("policy"),
        )

    def summary(self) -> str:
        """The text inside the verdict's parentheses."""
        against = f"; baseline {self.baseline}" if self.baseline else ""
        if self.passed:
            return f"gate: {self.checks} rules passed{against}"
        named = "; ".join(f"{f.rule} {f.where()}".strip() for f in self.failures[:6])
        more = f"; +{len(self.failures) - 6} more" if len(self.failures) > 6 else ""
        return f"gate: {len(self.failures)} of {self.checks} rules failed: {named}{more}"

    def verdict(self, path=None) -> str:
        """The one line the gate command ends with."""
        where = f" - report: {path}" if path else ""
        return f"{'PASSED' if self.passed else 'FAILED'} ({self.summary()}){where}"


class _Tally:
    def __init__(self):
        self.failures, self.notes, self.checks = [], [], 0

    def judge(self, ok: bool, rule: str, t: TargetResult | None = None, **details) -> bool:
        self.checks += 1
        if not ok:
            where: dict[str, Any] = {"target": t.target, "precision": precision_of(t)} if t is not None else {}
            self.failures.append(Failure(rule, **where, **details))
        return ok


def precision_of(t: TargetResult) -> str:
    """A target's precision name: its quantization, or fp32."""
    return t.quantize or "fp32"


def _key(t: TargetResult) -> tuple:
    return t.target, precision_of(t)


def _allowed(report: Report, policy: Policy) -> tuple:
    if policy.statuses is not None:
        return policy.statuses
    return ("passed", "inconclusive") if report.allow_inconclusive else ("passed",)


# ---- the gate --------------------------------------------------------------------------------------


def run_gate(
    report: Report, policy: Policy | None = None, baseline: Report | None = None, report_path=None, baseline_path=None
) -> Verdict:
    """Apply ``policy`` (default: every target passed) to ``report``; with ``baseline``, flag regressions."""
    policy = policy or Policy()
    tally = _Tally()
    _required(report, policy, tally)
    allowed = _allowed(report, policy)
    for t in report.targets:
        status_ok = tally.judge(
            t.status in allowed,
            "status",
            t,
            actual=t.status,
            limit=", ".join(allowed),
            exit_code=max(1, exit_code_of(t.status)),
            message=f"status {t.status}, allowed: {', '.join(allowed)}" + (f" ({t.error})" if t.error else ""),
        )
        # A target that did not convert or run has no numbers; its status failure already says so.
        _parity(t, policy, tally, quiet_missing=not status_ok)
        _latency(t, policy, tally, quiet_missing=not status_ok)
        _size(t, policy, tally, quiet_missing=not status_ok)
        _compatible(t, policy, tally, quiet_missing=not status_ok)
    _compatibility_targets(report, policy, tally)
    if baseline is not None:
        _regressions(report, baseline, policy, allowed, tally)
    return Verdict(
        tuple(tally.failures),
        tally.checks,
        tuple(tally.notes),
        None if report_path is None else str(report_path),
        None if baseline_path is None else str(baseline_path),
        policy.path,
    )


def _required(report: Report, policy: Policy, tally: _Tally) -> None:
    if not report.targets:
        tally.judge(False, "require.target", message="the report has no targets", exit_code=2)
    present = {_key(t) for t in report.targets}
    for target in policy.targets:
        for precision in policy.precisions:
            tally.judge(
                (target, precision) in present,
                "require.target",
                target=target,
                precision=precision,
                message=f"{target} at {precision} is required but not in the report",
            )


def _missing(tally: _Tally, quiet: bool, rule: str, t: TargetResult, what: str, output=None) -> None:
    if not quiet:
        tally.judge(False, rule, t, output=output, message=f"not measured: the report has no {what}")


def _parity(t: TargetResult, policy: Policy, tally: _Tally, quiet_missing: bool) -> None:
    precision = precision_of(t)
    outputs = (t.parity or {}).get("outputs") or []
    if not outputs:
        if policy.thresholds("parity", t.target, precision):
            _missing(tally, quiet_missing, "parity", t, "parity results")
        return
    names = {o["name"] for o in outputs}
    for rule in policy.parity:
        if "output" in rule and rule["output"] not in names and _matches(rule, t.target, precision, rule["output"]):
            tally.judge(
                False,
                "parity.output",
                t,
                output=rule["output"],
                message=f"the policy names output {rule['output']!r}; the report has {', '.join(sorted(names))}",
            )
    for out in outputs:
        limits = policy.thresholds("parity", t.target, precision, out["name"])
        if "atol" in limits or "rtol" in limits:
            _tolerance(t, out, limits.get("atol", 0.0), limits.get("rtol", 0.0), tally)
        _at_least(t, out, "min_cosine", out.get("cosine"), limits, tally, "cosine")
        _at_least(t, out, "min_snr_db", out.get("snr_db"), limits, tally, "SNR (dB)")
        # Only classifier-like outputs carry agreement; asking for it elsewhere fails as "not measured".
        _at_least(t, out, "min_top1_agreement", out.get("top1_agreement"), limits, tally, "top-1 agreement")
        _at_least(t, out, "min_topk_agreement", out.get("topk_agreement"), limits, tally, "top-k agreement")


def _tolerance(t, out, atol: float, rtol: float, tally: _Tally) -> None:
    """Elementwise |err| <= atol + rtol*|ref|, proven from the report's summary numbers or not at all."""
    judged_tighter = out.get("passed") and out.get("atol", math.inf) <= atol and out.get("rtol", math.inf) <= rtol
    ok = out["max_abs_err"] <= atol or out.get("max_rel_err", math.inf) <= rtol or bool(judged_tighter)
    tally.judge(
        ok,
        "parity.tolerance",
        t,
        output=out["name"],
        actual=out["max_abs_err"],
        limit=f"atol {atol:g} + rtol {rtol:g}*|ref|",
        message=f"max abs err {out['max_abs_err']:.3g} > atol {atol:g} and max rel err "
        f"{out.get('max_rel_err', math.inf):.3g} > rtol {rtol:g}, and the report was judged at "
        f"atol {out.get('atol', math.nan):g} / rtol {out.get('rtol', math.nan):g}"
        + ("" if out.get("passed") else " and failed"),
    )


def _at_least(t, out, key: str, value, limits: dict, tally: _Tally, label: str) -> None:
    if key not in limits:
        return
    if value is None:
        tally.judge(
            False,
            f"parity.{key}",
            t,
            output=out["name"],
            limit=limits[key],
            message=f"not measured: the report has no {label} for this output",
        )
        return
    tally.judge(
        value >= limits[key],
        f"parity.{key}",
        t,
        output=out["name"],
        actual=value,
        limit=limits[key],
        message=f"{label} {value:.6g} < {limits[key]:g}",
    )


def _latency(t: TargetResult, policy: Policy, tally: _Tally, quiet_missing: bool) -> None:
    limits = policy.thresholds("latency", t.target, precision_of(t))
    if not limits:
        return
    if not t.latency:
        _missing(tally, quiet_missing, "latency", t, "latency")
        return
    for pct in ("p50", "p90", "p99"):
        key = f"max_{pct}_ms"
        if key in limits:
            value = t.latency[f"{pct}_ms"]
            tally.judge(
                value <= limits[key],
                f"latency.{key}",
                t,
                actual=value,
                limit=limits[key],
                message=f"{pct} {value:.3g} ms > {limits[key]:g} ms",
            )
    if "max_ratio_to_source" in limits:
        source = (t.source_latency or {}).get("p50_ms")
        if not source:
            _missing(tally, False, "latency.max_ratio_to_source", t, "source model latency")
            return
        ratio = t.latency["p50_ms"] / source
        tally.judge(
            ratio <= limits["max_ratio_to_source"],
            "latency.max_ratio_to_source",
            t,
            actual=ratio,
            limit=limits["max_ratio_to_source"],
            message=f"p50 {t.latency['p50_ms']:.3g} ms is {ratio:.2f}x the source model's "
            f"{source:.3g} ms (limit {limits['max_ratio_to_source']:g}x)",
        )


def _size(t: TargetResult, policy: Policy, tally: _Tally, quiet_missing: bool) -> None:
    limits = policy.thresholds("size", t.target, precision_of(t))
    if "max_bytes" not in limits:
        return
    if t.size_bytes is None:
        _missing(tally, quiet_missing, "size.max_bytes", t, "artifact size")
        return
    tally.judge(
        t.size_bytes <= limits["max_bytes"],
        "size.max_bytes",
        t,
        actual=t.size_bytes,
        limit=limits["max_bytes"],
        message=f"{t.size_bytes} bytes > {int(limits['max_bytes'])} bytes",
    )


def _compatible(t: TargetResult, policy: Policy, tally: _Tally, quiet_missing: bool) -> None:
    """Each backend ``[compatibility]`` requires for this target takes every op (or ``min_coverage`` of them)."""
    from ._compat import describe

    backends = (policy.compatibility.get("require") or {}).get(t.target, ())
    if not backends:
        return
    if not t.compatibility:
        _missing(tally, quiet_missing, "compatibility", t, "compatibility results")
        return
    for backend in backends:
        entry, rule = t.compatibility.get(backend), f"compatibility.{backend}"
        limit = policy.compatibility["min_coverage"].get((t.target, backend))
        if not isinstance(entry, dict) or not entry.get("checked"):
            why = entry.get("reason") if isinstance(entry, dict) else "the report has no result for it"
            tally.judge(False, rule, t, limit=limit, message=f"{backend}: not checked ({why}): cannot be proven")
            continue
        coverage = entry["ops_supported"] / entry["ops_total"] if entry.get("ops_total") else 0.0
        ok = bool(entry.get("supported")) if limit is None else coverage >= limit
        wanted = "every op" if limit is None else f"coverage >= {limit:g}"
        tally.judge(
            ok,
            rule,
            t,
            actual=round(coverage, 4),
            limit=1.0 if limit is None else limit,
            message=f"{describe(backend, entry)} (coverage {coverage:.2f}; required: {wanted})",
        )


def _compatibility_targets(report: Report, policy: Policy, tally: _Tally) -> None:
    """A target whose backends the policy requires must be in the report: absent, nothing was proven."""
    present = {t.target for t in report.targets}
    for target, backends in (policy.compatibility.get("require") or {}).items():
        if target not in present:
            tally.judge(
                False,
                f"compatibility.{backends[0]}",
                message=f"[compatibility] requires {target} on "
                f"{', '.join(backends)}, and the report has no {target} artifact",
            )


# ---- against a baseline ----------------------------------------------------------------------------


def _regressions(report: Report, baseline: Report, policy: Policy, allowed: tuple, tally: _Tally) -> None:
    reg = policy.regression
    _compare_context(report, baseline, tally)
    now = {_key(t): t for t in report.targets}
    for old in baseline.targets:
        new = now.get(_key(old))
        if old.status not in allowed:
            continue  # it did not pass before: nothing it could regress from
        if new is None:
            tally.judge(
                False,
                "regression.missing_target",
                target=old.target,
                precision=precision_of(old),
                baseline=old.status,
                message="passed in the baseline and is missing from this report",
            )
            continue
        tally.judge(
            new.status in allowed,
            "regression.newly_failing",
            new,
            actual=new.status,
            baseline=old.status,
            message=f"passed in the baseline, now {new.status}" + (f" ({new.error})" if new.error else ""),
        )
        _parity_regression(new, old, reg, tally)
        _latency_regression(new, old, reg["latency_pct"], tally)
        if new.size_bytes is not None and old.size_bytes:
            limit = old.size_bytes * (1 + reg["size_growth_pct"] / 100)
            tally.judge(
                new.size_bytes <= limit,
                "regression.size",
                new,
                actual=new.size_bytes,
                baseline=old.size_bytes,
                limit=limit,
                message=f"{new.size_bytes} bytes, baseline {old.size_bytes} "
                f"(+{100 * (new.size_bytes / old.size_bytes - 1):.1f}%, "
                f"limit +{reg['size_growth_pct']:g}%)",
            )


def _compare_context(report: Report, baseline: Report, tally: _Tally) -> None:
    if report.inputs.get("sha256") != baseline.inputs.get("sha256"):
        tally.notes.append(
            "the baseline judged different inputs (inputs.sha256 differs): parity is compared across different samples"
        )
    isa = [(r.environment.get("cpu") or {}).get("isa_class") for r in (report, baseline)]
    if isa[0] != isa[1]:
        tally.notes.append(
            f"the runs were measured on different CPU classes (now {isa[0] or 'unrecorded'}, "
            f"baseline {isa[1] or 'unrecorded'}): latency changes are not regressions of the "
            "model, and int8 numerics may differ by kernel"
        )
    threads = report.environment.get("threads"), baseline.environment.get("threads")
    if threads[0] != threads[1]:
        tally.notes.append(
            f"threads differ (now {threads[0]}, baseline {threads[1]}): latency comparisons are between unlike runs"
        )


def _parity_regression(new: TargetResult, old: TargetResult, reg: dict, tally: _Tally) -> None:
    before = {o["name"]: o for o in (old.parity or {}).get("outputs") or []}
    for out in (new.parity or {}).get("outputs") or []:
        prev = before.get(out["name"])
        if prev is None:
            continue
        # Errors far below the tolerance wobble between converter versions; only growth that matters counts.
        limit = max(prev["max_abs_err"] * reg["err_growth"], reg["err_floor"] * out.get("atol", 0.0))
        tally.judge(
            out["max_abs_err"] <= limit,
            "regression.parity_max_abs_err",
            new,
            output=out["name"],
            actual=out["max_abs_err"],
            baseline=prev["max_abs_err"],
            limit=limit,
            message=f"max abs err {out['max_abs_err']:.3g}, baseline {prev['max_abs_err']:.3g} "
            f"(limit {limit:.3g}: {reg['err_growth']:g}x the baseline)",
        )
        if out.get("snr_db") is not None and prev.get("snr_db") is not None:
            ok = out["snr_db"] >= prev["snr_db"] - reg["snr_drop_db"] or out["snr_db"] >= reg["snr_floor_db"]
            tally.judge(
                ok,
                "regression.parity_snr_db",
                new,
                output=out["name"],
                actual=out["snr_db"],
                baseline=prev["snr_db"],
                limit=prev["snr_db"] - reg["snr_drop_db"],
                message=f"SNR {out['snr_db']:.1f} dB, baseline {prev['snr_db']:.1f} dB (dropped "
                f"{prev['snr_db'] - out['snr_db']:.1f} dB; at most {reg['snr_drop_db']:g} dB "
                f"allowed below {reg['snr_floor_db']:g} dB)",
            )


def p50_ci(latency: dict) -> tuple[float, float]:
    """The 95% confidence interval of the median; a report without one gives [p50, p50]."""
    ci = latency.get("p50_ci95_ms")
    if not ci or len(ci) != 2:
        return latency["p50_ms"], latency["p50_ms"]
    return float(ci[0]), float(ci[1])


def _latency_regression(new: TargetResult, old: TargetResult, pct: float, tally: _Tally) -> None:
    if not new.latency or not old.latency:
        return
    now, before = new.latency["p50_ms"], old.latency["p50_ms"]
    (now_lo, now_hi), (old_lo, old_hi) = p50_ci(new.latency), p50_ci(old.latency)
    slower = now > before * (1 + pct / 100)
    # Noise alone must not fail a release: each median must lie outside the other run's interval.
    outside = now > old_hi and before < now_lo
    change = 100 * (now / before - 1) if before else math.inf
    text = (
        f"p50 {now:.3g} ms, baseline {before:.3g} ms ({change:+.0f}%, limit +{pct:g}%); 95% CI now "
        f"[{now_lo:.3g}, {now_hi:.3g}], baseline [{old_lo:.3g}, {old_hi:.3g}]"
    )
    tally.judge(
        not (slower and outside),
        "regression.latency_p50",
        new,
        actual=now,
        baseline=before,
        limit=before * (1 + pct / 100),
        message=text,
    )
    if slower and not outside:
        tally.notes.append(f"{new.target}[{precision_of(new)}] {text}: within the runs' noise, not counted")
