"""Findings as data: what the diff engine found, serialisable and loadable.

A finding is one fault of one backend variant, found on one (minimal) program at one
point in one dtype, with every backend's Hessian and the oracle's beside it. The same
fault found a thousand times is one finding with a count: its ``signature`` (framework,
route, kind, dtype, and the blamed rule and region, or for a fault no one node shows the
ops of the minimal program) is what deduplicates, baselines and merges.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from hessdiff.backends.registry import variant_route
from hessdiff.harness.ir import Program, program_from_json

__all__ = ["Finding", "FindingError", "Kind", "SEVERITY", "finding_from_json", "latest_findings", "load_findings"]


class FindingError(ValueError):
    """A finding file is unreadable or malformed."""


class Kind(str, Enum):
    """How a backend's Hessian differs from the truth.

    The first five are faults; ``CONVENTION`` and ``NOISE`` are reported, at low
    severity, so a maintainer can see what was dismissed and why.
    """

    WRONG_VALUE = "wrong_value"
    WRONG_SHAPE = "wrong_shape"
    NONFINITE = "nonfinite"
    CRASH = "crash"
    TIMEOUT = "timeout"
    CONVENTION = "convention"
    NOISE = "noise"

    @property
    def is_failure(self) -> bool:
        return SEVERITY[self] in ("high", "medium")


SEVERITY: dict[Kind, str] = {
    Kind.WRONG_VALUE: "high",
    Kind.WRONG_SHAPE: "high",
    Kind.NONFINITE: "high",
    Kind.CRASH: "medium",
    Kind.TIMEOUT: "medium",
    Kind.CONVENTION: "low",
    Kind.NOISE: "info",
}


def _array_json(a: Any) -> Any:
    """NumPy or nested lists to JSON, with NaN/inf as strings (JSON has neither)."""
    if a is None:
        return None
    arr = np.asarray(a, dtype=np.float64)
    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return [conv(u) for u in v]
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return conv(arr.tolist())


def _array_from_json(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return [conv(u) for u in v]
        return float(v)
    return np.asarray(conv(a), dtype=np.float64)


@dataclass
class Finding:
    """One fault, minimal and reproducible.

    Arguments:
        kind: how the Hessian is wrong.
        variant: the backend variant ("equinox:filter_hessian").
        versions: framework name -> version for every framework involved.
        dtype: "float32" or "float64".
        program: the (shrunk) program.
        point: the input point (exactly representable in ``dtype``).
        observed: the variant's Hessian (None when it crashed).
        expected: the oracle's Hessian in float64 (NaN where undefined at a kink).
        others: every other variant's Hessian at the same point (name -> array or None).
        explanation: one paragraph: what differs, by how much, and why the expected value
            is right (or why the difference was dismissed).
        error: the exception text, for a crash.
        max_error: the largest |observed - expected| over defined entries.
        count: how many raw hits this finding stands for.
        minimised: how it was minimised ("hypothesis shrink: 14 ops -> 2 ops").
        first_seen / last_seen: ISO timestamps.
        provisional: logged the moment its first hit was seen, before its round ended and
            it was minimised, so that a kill -9 mid-round loses nothing. A later line
            names it in ``supersedes`` once the minimal finding is made.
        supersedes: signatures of provisional findings this one replaces.
        bound: the largest correct |observed - expected| per entry, as judged (the
            tolerance's bound at the oracle's error scale); None when not recorded (older
            findings, crashes). Written to JSON only when set, so older readers and files
            are unaffected. Undefined entries are the NaNs of ``expected``.
        blame: the derivative rule the fault is blamed on (``hessdiff.harness.blame.Blame.to_json``:
            its "rule", the node, the one-op program that shows it), or None when not
            blamed (a dismissed or baselined finding, an older file).
        recorded_route: the variant's code path as a findings file recorded it ("" for
            a finding made here: ``route`` asks the registry, so a copy with another
            variant, ``dataclasses.replace(f, variant=...)``, never keeps a stale one).
    """

    kind: Kind
    variant: str
    versions: dict[str, str]
    dtype: str
    program: Program
    point: np.ndarray
    observed: np.ndarray | None
    expected: np.ndarray | None
    others: dict[str, np.ndarray | None] = field(default_factory=dict)
    explanation: str = ""
    error: str = ""
    max_error: float = 0.0
    count: int = 1
    minimised: str = ""
    first_seen: str = ""
    last_seen: str = ""
    provisional: bool = False
    supersedes: tuple[str, ...] = ()
    bound: np.ndarray | None = None
    blame: dict[str, Any] | None = None
    recorded_route: str = ""
    # (variant, its route) as last asked of the registry: ``route`` is read for every
    # finding on every verdict (``campaign_records.explaining``) and in every signature.
    _route_asked: tuple[str, str] = field(default=("", ""), init=False, repr=False, compare=False)

    @property
    def route(self) -> str:
        """The variant's code path, its modes and machinery (``registry.variant_route``:
        "rev-over-rev+tape"), as the finding's file recorded it if it was read from one:
        a report read back where its backend is not installed keeps its signatures."""
        if self.recorded_route:
            return self.recorded_route
        if self._route_asked[0] != self.variant:  # keyed by the variant: never stale
            self._route_asked = (self.variant, variant_route(self.variant))
        return self._route_asked[1]

    @property
    def severity(self) -> str:
        return SEVERITY[self.kind]

    @property
    def backend(self) -> str:
        return self.variant.split(":", 1)[0]

    @property
    def signature(self) -> str:
        """Stable identity: framework, route (the modes and machinery of the variant:
        ``registry.variant_route``), kind, dtype, and once blamed on one node its op, rule
        and region (``mlx|fwd-over-rev|nonfinite|float32|exp|exp(T) @ tiny``): one fault
        in two programs, or in two variants of one route, is one finding, and two faults
        a shrink leaves on the same ops are two. Where no single node is blamed (a
        composition, or not blamed yet), the ops of the minimal program stand in for the
        op (``mlx|fwd-over-rev|nonfinite|float32|add+exp+sum|composition``)."""
        cause = self._cause()
        node_op = self.blame.get("op") if self.blame and self.blame.get("node") is not None else None
        ops = node_op or "+".join(sorted(self.program.op_names))
        base = f"{self.backend}|{self.route}|{self.kind.value}|{self.dtype}|{ops}"
        return f"{base}|{cause}" if cause else base

    def _cause(self) -> str | None:
        if not self.blame:
            return None
        return str(self.blame.get("root_cause") or self.blame.get("rule") or "") or None

    @property
    def root_cause(self) -> str | None:
        """What the fault is, across variants and programs: framework, blamed rule and
        region, kind, dtype (``mlx|tanh(T) @ huge|nonfinite|float32``); None when the
        finding is not blamed. One upstream fault shows in every variant of a framework
        that uses the rule, and in every program that carries it: one root cause."""
        cause = self._cause()
        if cause == "composition":  # no one rule: the ops whose interaction shows it
            cause = f"composition({'+'.join(sorted(self.program.op_names))})"
        return None if cause is None else f"{self.backend}|{cause}|{self.kind.value}|{self.dtype}"

    def to_json(self) -> dict[str, Any]:
        data = {
            "signature": self.signature,
            "root_cause": self.root_cause,
            "kind": self.kind.value,
            "severity": self.severity,
            "variant": self.variant,
            "route": self.route,
            "versions": dict(self.versions),
            "dtype": self.dtype,
            "program": self.program.to_json(),
            "program_text": self.program.pretty(),
            "point": [float(v) for v in np.asarray(self.point, dtype=np.float64)],
            "observed": _array_json(self.observed),
            "expected": _array_json(self.expected),
            "others": {k: _array_json(v) for k, v in self.others.items()},
            "explanation": self.explanation,
            "error": self.error,
            "max_error": _array_json(self.max_error),
            "count": self.count,
            "minimised": self.minimised,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "provisional": self.provisional,
            "supersedes": list(self.supersedes),
        }
        if self.bound is not None:
            data["bound"] = _array_json(self.bound)
        if self.blame is not None:
            data["blame"] = dict(self.blame)
        return data


def finding_from_json(data: Mapping[str, Any]) -> Finding:
    """Load a finding written by ``Finding.to_json``; raise ``FindingError`` if malformed."""
    try:
        return Finding(
            kind=Kind(data["kind"]),
            variant=str(data["variant"]),
            versions=dict(data.get("versions", {})),
            dtype=str(data["dtype"]),
            program=program_from_json(data["program"]),
            point=np.asarray(data["point"], dtype=np.float64),
            observed=_array_from_json(data.get("observed")),
            expected=_array_from_json(data.get("expected")),
            others={k: _array_from_json(v) for k, v in data.get("others", {}).items()},
            explanation=str(data.get("explanation", "")),
            error=str(data.get("error", "")),
            max_error=float(_array_from_json(data.get("max_error", 0.0))),
            count=int(data.get("count", 1)),
            minimised=str(data.get("minimised", "")),
            first_seen=str(data.get("first_seen", "")),
            last_seen=str(data.get("last_seen", "")),
            provisional=bool(data.get("provisional", False)),
            supersedes=tuple(str(s) for s in data.get("supersedes", ())),
            bound=_array_from_json(data.get("bound")),
            blame=dict(data["blame"]) if isinstance(data.get("blame"), Mapping) else None,
            recorded_route=str(data.get("route", "")),
        )
    except FindingError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise FindingError(f"malformed finding: {type(exc).__name__}: {exc}") from None


def load_findings(path: str) -> list[Finding]:
    """Findings from a ``findings.json`` (a list, or an object with "findings") or one finding."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise FindingError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise FindingError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, Mapping) and "findings" in data:
        data = data["findings"]
    if isinstance(data, Mapping):
        return [finding_from_json(data)]
    if not isinstance(data, list):
        raise FindingError(f"{path}: expected a finding or a list of findings.")
    return [finding_from_json(d) for d in data]



def latest_findings(logged: Sequence[Finding]) -> list[Finding]:
    """What an append-only log of findings says now, in first-logged order.

    A finding is logged again each time its count grows, so the last line of a signature
    wins; a provisional finding is dropped once a later line names it in ``supersedes``.
    """
    latest = {f.signature: f for f in logged}
    superseded = {s for f in logged for s in f.supersedes}
    return [f for sig, f in latest.items() if sig not in superseded or not f.provisional]
