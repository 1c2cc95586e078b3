"""``--keep-float``: int8 artifacts that pass, by leaving the layers that break parity in float.

``auto``: when the int8 artifact misses the int8 tolerances (with a margin) on the calibration samples
and generated held-out ones, explain's per-layer table against the float source (validators.divergence)
ranks the layers by the SNR they lose; the worst one not yet kept is mapped to the float artifact's nodes
(the same pairing, run on the float artifact, then the graph between that layer's output and its
neighbours') and the target's own quantizer runs again with those nodes left in float. Repeat until
parity passes, no layer that fits under the cap (a share of the model's weight bytes) is left, or
MAX_ROUNDS.
``LAYER,...``: those layers, by the user's own names, kept in float in one quantization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core.errors import BadInputError, first_line
from .core.quiet import quiet

AUTO = "auto"
DEFAULT_CAP = 0.10
MAX_ROUNDS = 8  # re-quantizations per target; each one costs a quantizer run
# Held-out samples the search judges on beside the calibration set, drawn like validation's generated
# inputs with a seed of their own: int8 ranges fitted to a small calibration set pass on that very set
# (the family Transformer calibrated on 2 examples did) and clip on the next input.
HELD_OUT_SAMPLES, HELD_OUT_SEED = 8, 4321
# The search stops at an artifact that meets the int8 tolerance with room to spare, so that validation's
# own samples, drawn apart, do not fail it by chance: element errors within this share of the int8 bounds,
# SNR this many dB above the int8 minimum (cosine to match). The family Transformer calibrated on 2
# examples gave SNR 21.9 dB on the search's samples and 19.9 dB on validation's.
MARGIN_ERROR, MARGIN_SNR_DB = 0.75, 3.0
LATENCY_RUNS = 30  # cost: timed runs per artifact (after a warm-up)


@dataclass(frozen=True)
class KeepFloat:
    """What to keep in float: ``auto`` (search) or the user's layer names, and the weight-bytes cap."""

    layers: tuple = ()
    auto: bool = False
    cap: float = DEFAULT_CAP

    def to_json(self) -> dict:
        return {"mode": AUTO if self.auto else "layers", "requested": list(self.layers), "cap": self.cap}


def parse(value, cap: float | None = None) -> KeepFloat | None:
    """``"auto"``, ``"a,b"`` or a list of layer names (None: off); ``cap`` is a fraction in (0, 1]."""
    cap = DEFAULT_CAP if cap is None else float(cap)
    if not 0 < cap <= 1:
        raise BadInputError(f"--keep-float-cap {cap:g} must be a fraction of the weight bytes in (0, 1]")
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise BadInputError("--keep-float needs auto or layer names")
    if AUTO in names and len(names) > 1:
        raise BadInputError("--keep-float takes auto or layer names, not both")
    return KeepFloat((), True, cap) if names == [AUTO] else KeepFloat(tuple(names), False, cap)


def check_request(keep: KeepFloat | None, precisions: list, source, threads: int) -> None:
    """Refuse, before any export, --keep-float without int8 and layer names the source does not have."""
    if keep is None:
        return
    if "int8" not in precisions:
        raise BadInputError("--keep-float applies to full-integer models: add --quantize int8")
    if keep.auto:
        return
    from .explain import source_tensors

    with quiet():
        known = [t.name for t in source_tensors(source, source.example_feeds())]
    unknown = [name for name in keep.layers if name not in known]
    if unknown:
        shown = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
        raise BadInputError(f"--keep-float: no layer named {', '.join(unknown)} in the source; its layers: {shown}")


# ---- the float artifact's layers ---------------------------------------------------------------


@dataclass
class LayerMap:
    """Source layer -> the float artifact's nodes that compute it and the float weights they read."""

    nodes: dict = field(default_factory=dict)  # layer -> tuple of node names
    weights: dict = field(default_factory=dict)  # layer -> {constant: bytes}
    total: int = 0  # every float weight byte of the model

    def bytes_of(self, layers) -> int:
        seen = {}
        for layer in layers:
            seen.update(self.weights.get(layer, {}))
        return int(sum(seen.values()))

    def node_names(self, layers) -> tuple:
        return tuple(dict.fromkeys(n for layer in layers for n in self.nodes.get(layer, ())))


def map_layers(source, float_artifact, sample: dict, threads: int) -> LayerMap:
    """Pair the source's layers with the float artifact (explain's pairing), then take each paired
    tensor's share of the graph: the nodes between it and the other paired tensors. A layer left
    unpaired (fused) is found by its name in the node names, where the converter kept it."""
    from ondevice.validators.divergence import name_patterns

    from .explain import explain_artifact
    from .runtimes import graph

    divergence = explain_artifact(source, float_artifact, sample, threads)
    nodes = graph.read(float_artifact.path, float_artifact.target)
    paired = {layer.source_layer: layer.artifact_tensor for layer in divergence.layers}
    # Tensors of fused and rewritten layers bound the regions too: they are other layers' outputs.
    bounds = set(paired.values()) | {e["artifact_tensor"] for e in divergence.unpaired if e.get("artifact_tensor")}
    found = LayerMap(total=graph.total_weight_bytes(nodes))
    for layer, tensor in paired.items():
        region = graph.region(nodes, tensor, bounds - {tensor})
        found.nodes[layer] = tuple(n.name for n in region)
        found.weights[layer] = {k: v for n in region for k, v in n.weights.items()}
    for entry in divergence.unpaired:
        patterns = name_patterns(entry["source_layer"])
        named = [n for n in nodes if any(p.search(n.name) for p in patterns)]
        if named and entry["source_layer"] not in found.nodes:
            found.nodes[entry["source_layer"]] = tuple(n.name for n in named)
            found.weights[entry["source_layer"]] = {k: v for n in named for k, v in n.weights.items()}
    return found


# ---- the search --------------------------------------------------------------------------------


@dataclass
class Search:
    """One target's keep-float run: the float artifact, calibration samples (source layout), and
    ``requantize(node_names) -> Artifact`` (the target's own quantizer). Candidates are judged on the
    calibration samples and HELD_OUT_SAMPLES generated ones, against the source's outputs on them."""

    keep: KeepFloat
    source: Any
    float_artifact: Any
    samples: list
    requantize: Callable[[tuple], Any]
    threads: int = 1
    reference: list = field(default_factory=list)
    rounds: list = field(default_factory=list)
    judged_on: str = ""

    def run(self, plain):
        """The artifact to install (``plain``, or one with layers kept in float), its record attached."""
        from .core.specs import make_samples
        from .reference import reference_runner

        calibration = len(self.samples)
        self.samples = [*self.samples, *make_samples(self.source.inputs, HELD_OUT_SAMPLES, HELD_OUT_SEED)]
        self.judged_on = (
            f"{calibration} calibration and {HELD_OUT_SAMPLES} generated held-out samples, the int8 "
            f"tolerance with a margin (errors x{MARGIN_ERROR:g}, SNR +{MARGIN_SNR_DB:g} dB)"
        )
        with quiet():
            runner = reference_runner(self.source, self.threads)
            self.reference = [runner.run(s) for s in self.samples]
        layers = map_layers(self.source, self.float_artifact, self.samples[0], self.threads)
        judged = self._judge(plain, [], layers, None)
        if self.keep.auto:
            chosen, stopped = self._search(plain, judged, layers)
        else:
            chosen, stopped = self._requested(plain, judged, layers)
        record = self._record(layers, chosen, stopped)
        record["missing"] = [name for name in self.keep.layers if not layers.nodes.get(name)]
        if chosen[0] is not plain:
            record["cost"] = cost(self.float_artifact, plain, chosen[0], sample=self.samples[0], threads=self.threads)
        chosen[0].keep_float = record
        return chosen[0]

    def _requested(self, plain, judged, layers: LayerMap):
        missing = [name for name in self.keep.layers if not layers.nodes.get(name)]
        kept = [name for name in self.keep.layers if layers.nodes.get(name)]
        where = (
            f"no node of the {self.float_artifact.target} artifact computes {', '.join(missing)} alone (fused "
            "into other layers)"
        )
        if not kept:
            return (plain, [], judged), where
        artifact, judged = self._attempt(kept, layers, kept[-1])
        if artifact is None:
            return (plain, [], self.rounds[0]), judged["problem"]
        return (artifact, kept, judged), where if missing else "as requested"

    def _attempt(self, kept, layers: LayerMap, added, skipped=()):
        """Re-quantize with ``kept`` in float and judge it; (None, row) when the quantizer refused."""
        try:
            artifact = self.requantize(layers.node_names(kept))
        except Exception as exc:  # a quantizer that cannot honour the request ends the search, not the export
            text = first_line(exc)
            row = {
                "round": len(self.rounds),
                "added": added,
                "kept": list(kept),
                "passed": False,
                "problem": f"re-quantization failed: {text}",
            }
            self.rounds.append(row)
            return None, row
        return artifact, self._judge(artifact, kept, layers, added=added, skipped=skipped)

    def _search(self, plain, judged, layers: LayerMap):
        kept: list[str] = []
        best: tuple = (plain, kept, judged)
        current: tuple = (plain, judged)
        while not judged["passed"]:
            if len(self.rounds) > MAX_ROUNDS:
                return best, f"{MAX_ROUNDS} re-quantizations tried"
            layer, skipped = self._next_layer(current[0], judged, kept, layers)
            if layer is None:
                return best, (
                    f"cap reached: keeping {', '.join(skipped)} in float would pass {self.keep.cap:.0%} "
                    "of the weight bytes"
                    if skipped
                    else "no layer left that loses SNR and maps to nodes"
                )
            kept = [*kept, layer]
            artifact, judged = self._attempt(kept, layers, layer, skipped)
            if artifact is None:
                return best, judged["problem"]
            current = (artifact, judged)
            if _score(judged) > _score(best[2]):
                best = (artifact, kept, judged)
        return (current[0], kept, judged), "passed"

    def _next_layer(self, artifact, judged, kept, layers: LayerMap):
        """The worst layer by SNR lost (explain on the worst sample) not yet kept and under the cap.

        A layer already in float that still loses SNR is fed a tensor quantized by the layer before it
        (the quantizer quantizes a node's output too): that layer is the next candidate then.
        """
        from ondevice.validators.divergence import snr_lost

        from .explain import explain_artifact

        divergence = explain_artifact(self.source, artifact, self.samples[judged["worst_sample"]], self.threads)
        order = [layer.source_layer for layer in divergence.layers]
        before = dict(zip(order[1:], order[:-1], strict=True))
        covered = set(layers.node_names(kept))
        done = lambda name: name in kept or set(layers.nodes.get(name) or ()) <= covered  # noqa: E731
        skipped = []
        for entry in snr_lost(divergence.layers):
            name = entry["source_layer"]
            if entry["snr_lost_db"] <= 0:
                break
            while name is not None and layers.nodes.get(name) and done(name):
                name = before.get(name)
            if name is None or not layers.nodes.get(name) or name in skipped:
                continue
            if layers.bytes_of([*kept, name]) > self.keep.cap * layers.total:
                skipped.append(name)
                continue
            return name, skipped
        return None, skipped

    def _judge(self, artifact, kept, layers: LayerMap, added, skipped=()) -> dict:
        """Parity of ``artifact`` on the calibration samples by the int8 tolerance; one row of the table."""
        from ondevice.validators.parity import compare

        from .artifacts import ArtifactRunner

        with quiet():
            runner = ArtifactRunner(artifact, self.threads)
            actual = [runner.run(s) for s in self.samples]
        parity = compare(self.reference, actual, search_tolerance())
        outputs = parity.outputs
        row = {
            "round": len(self.rounds),
            "added": added,
            "kept": list(kept),
            "skipped_over_cap": list(skipped),
            "float_weight_bytes": layers.bytes_of(kept),
            "float_weight_fraction": round(layers.bytes_of(kept) / max(layers.total, 1), 5),
            "max_abs_err_of_peak": max((o.max_abs_err / o.peak if o.peak else o.max_abs_err) for o in outputs),
            "snr_db": min(o.snr_db for o in outputs),
            "cosine": min(o.cosine for o in outputs),
            "passed": parity.passed,
            "problem": next(iter(parity.problems()), None),
            "worst_sample": _worst_sample(self.reference, actual),
        }
        self.rounds.append(row)
        return row

    def _record(self, layers: LayerMap, chosen, stopped: str) -> dict:
        _, kept, judged = chosen
        return {
            **self.keep.to_json(),
            "judged_on": self.judged_on,
            "passed": bool(judged["passed"]),
            "stopped": stopped,
            "layers": [
                {
                    "layer": name,
                    "nodes": list(layers.nodes[name]),
                    "weight_bytes": layers.bytes_of([name]),
                    "same_nodes_as": [
                        other for other, nodes in layers.nodes.items() if other != name and nodes == layers.nodes[name]
                    ],
                }
                for name in kept
            ],
            "float_weight_bytes": layers.bytes_of(kept),
            "weight_bytes": layers.total,
            "float_weight_fraction": round(layers.bytes_of(kept) / max(layers.total, 1), 5),
            "installed_round": judged["round"],
            "rounds": [{k: v for k, v in r.items() if k != "worst_sample"} for r in self.rounds],
        }


def search_tolerance():
    """The int8 tolerance with the search's margin (MARGIN_ERROR, MARGIN_SNR_DB)."""
    from dataclasses import replace

    from ondevice.validators.parity import Tolerance

    base = Tolerance.default("int8")
    snr = (base.min_snr_db or 0.0) + MARGIN_SNR_DB
    return replace(
        base,
        atol=base.atol * MARGIN_ERROR,
        rtol=base.rtol * MARGIN_ERROR,
        min_snr_db=snr,
        min_cosine=1 - 0.5 * 10 ** (-snr / 10),
    )


def _score(judged: dict) -> tuple:
    return (judged["passed"], judged["snr_db"])


def _worst_sample(reference: list, actual: list) -> int:
    """The sample with the most error energy against its signal: the one explain looks at."""

    def noise(ref: dict, act: dict) -> float:
        num = sum(
            float(np.sum((np.asarray(act[k], np.float64) - np.asarray(v, np.float64)) ** 2)) for k, v in ref.items()
        )
        den = sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in ref.values())
        return num / max(den, 1e-30)

    return int(np.argmax([noise(r, a) for r, a in zip(reference, actual, strict=True)]))


# ---- what keeping layers in float cost -----------------------------------------------------------


def cost(float_artifact, plain, mixed, sample: dict, threads: int) -> dict:
    """File bytes and p50 latency of the float, pure-int8 and mixed artifacts, measured alike: each in a
    fresh process of its own (as validation's workers; OpenVINO models compiled in one process contend
    for the cores), through the runner's timed path, LATENCY_RUNS runs after a warm-up, on one sample."""
    from .artifacts import ArtifactRunner, runtime_for
    from .core.errors import InternalError
    from .core.isolate import IsolatedFailure, call_isolated
    from .core.samples import save_samples
    from .core.scratch import current

    named = {"float": float_artifact, "int8": plain, "mixed": mixed}
    p50: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    scratch = current()
    if scratch is None:
        raise InternalError("keep-float timing runs inside an export's scratch space")
    for key, artifact in named.items():
        with quiet():
            feeds = ArtifactRunner(artifact, threads).feeds(sample)
        path = scratch.folder(f"keep-float-timing-{artifact.target}-{key}") / "feeds.npz"
        save_samples(path, [feeds])
        kwargs = {
            "runtime": runtime_for(artifact.target),
            "path": str(Path(artifact.path).absolute()),
            "feeds_path": str(path),
            "threads": threads,
            "runs": LATENCY_RUNS,
        }
        try:
            p50[key] = call_isolated("ondevice.keep_float:time_worker", kwargs, timeout=300)
        except IsolatedFailure as exc:  # the figure is missing, said so; the artifact is not at fault
            p50[key], errors[key] = None, exc.reason
    return {
        "size_bytes": {k: _size(a) for k, a in named.items()},
        "p50_ms": p50,
        **({"errors": errors} if errors else {}),
        "measured": f"at export, each artifact in a fresh process, {threads} threads, {LATENCY_RUNS} timed runs "
        "after a warm-up, on the first calibration sample",
    }


def time_worker(runtime: str, path: str, feeds_path: str, threads: int, runs: int) -> float:
    """Runs in a fresh process: the p50 in ms of one artifact on the saved feeds (validation's timed path)."""
    from ondevice.validators import latency

    from .core.samples import load_samples_file
    from .runtimes import get_runner_class

    runner = get_runner_class(runtime)(path, threads=threads)
    feeds = load_samples_file(Path(feeds_path))[0]
    with quiet():
        return latency.measure(runner.timed_call(feeds), threads, runs).p50_ms


def _size(artifact) -> int:
    return int(sum(Path(p).stat().st_size for p in [artifact.path, *artifact.files]))


# ---- the record as text --------------------------------------------------------------------------


def summary_lines(record: dict) -> list[str]:
    """What was kept in float, every round tried, and the cost: for the terminal and report.md."""
    kept = ", ".join(entry["layer"] for entry in record.get("layers", [])) or "nothing"
    verdict = "int8 parity reached" if record.get("passed") else "int8 parity NOT reached"
    cap = f", cap {record.get('cap', DEFAULT_CAP):.0%}" if record.get("mode") == AUTO else ""  # auto's bound only
    lines = [
        f"keep-float {record.get('mode')}: {kept} in float ({record.get('float_weight_fraction', 0):.1%} of the "
        f"weight bytes{cap}); {verdict} on {record.get('judged_on')}: {record.get('stopped')}"
    ]
    lines.append(
        f"{'round':>5}  {'layer added':24} {'float weights':>13} {'err/peak':>9} {'SNR dB':>7} {'cosine':>8}  parity"
    )
    for row in record.get("rounds", []):
        if "snr_db" not in row:  # the quantizer refused this round
            lines.append(f"{row['round']:>5}  {row.get('added')!s:24} {row.get('problem')}")
            continue
        lines.append(
            f"{row['round']:>5}  {row.get('added') or '(plain int8)'!s:24} "
            f"{row['float_weight_fraction']:>13.1%} {row['max_abs_err_of_peak']:>9.3f} "
            f"{row['snr_db']:>7.1f} {row['cosine']:>8.5f}  {'passed' if row['passed'] else 'failed'}"
            + (f"  (over the cap: {', '.join(row['skipped_over_cap'])})" if row.get("skipped_over_cap") else "")
        )
    cost_ = record.get("cost")
    if cost_:
        size, p50 = cost_["size_bytes"], cost_["p50_ms"]
        lines.append(
            f"cost: {size['mixed'] / 1024:.1f} KiB vs {size['int8'] / 1024:.1f} KiB pure int8, "
            f"{size['float'] / 1024:.1f} KiB float; p50 {_ms(p50['mixed'])} vs {_ms(p50['int8'])} "
            f"pure int8, {_ms(p50['float'])} float ({cost_['measured']})"
        )
    return lines


def _ms(value) -> str:
    return "-" if value is None else f"{value:.4g} ms"
