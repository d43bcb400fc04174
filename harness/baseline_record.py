"""A baseline entry's repro recorded by hand: one program, at one point, by one variant.

An entry written from a bug report, or whose campaign findings are long gone, has no
finding to take its repro from (``record_repros``); its maintainer has the program and
the point in the note ("sum(tanh(x)) at x = 50"). ``hand_finding`` runs exactly that case
as ``hessdiff check`` does (the same oracle and judge, ``engine.check_case``), blames it
as a campaign blames a finding (``blame.blame``) and makes the finding with the
campaign's own ``Record.finding``, so a repro recorded by hand is the finding a campaign
would have recorded on that case.

It is kept only if the variant fails there as the entry says (the entry's kind, in the
entry's dtype) and the entry covers the finding's signature (``BaselineEntry.matches``):
a repro that does not show the entry's fault would have ``hessdiff baseline check`` call
a fault fixed that it never saw. Otherwise ``ReproError`` says, in one line, what the
variant did instead.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np

from hessdiff.harness.api import InputError, case_of
from hessdiff.harness.baseline import Baseline, BaselineEntry
from hessdiff.harness.baseline_replay import repro_of
from hessdiff.harness.blame import blame
from hessdiff.harness.campaign_records import Record
from hessdiff.harness.case import Case
from hessdiff.harness.engine import check_case
from hessdiff.harness.findings import Finding, Kind
from hessdiff.harness.outcomes import HarnessError
from hessdiff.harness.verdicts import CaseResult

__all__ = ["ReproError", "default_variant", "entry_named", "hand_finding", "record_by_hand", "record_entry"]

HAND = "recorded by hand (hessdiff baseline record --entry): not shrunk by hessdiff"


class ReproError(ValueError):
    """The case does not show the entry's fault; one line saying what it shows instead.
    (A case that cannot be judged at all, a variant the entry does not cover or an entry
    that does not exist is bad input: ``api.InputError``.)"""


def entry_named(baseline: Baseline, signature: str) -> BaselineEntry:
    """The entry whose signature is exactly ``signature`` (its text, wildcards and all)."""
    for entry in baseline.entries:
        if entry.signature == signature:
            return entry
    raise InputError(f"{baseline.path or 'the baseline'} has no entry {signature!r} "
                     "(give an entry's signature exactly as the file spells it)")


def entry_kind(entry: BaselineEntry) -> tuple[Kind, str]:
    """The kind and dtype an entry speaks of (its third and fourth parts)."""
    kind, dtype = entry.signature.split("|", 4)[2:4]
    return Kind(kind), dtype


def default_variant(entry: BaselineEntry, names: list[str]) -> str | None:
    """The first of ``names`` (the registry's order) that the entry covers: ``torch:func``
    for ``torch:*``, ``mlx:fwdrev`` for ``mlx:fwdrev*``."""
    return next((name for name in names if entry.covers_variant(name)), None)


def hand_finding(entry: BaselineEntry, case: Case, variant: Any) -> Finding:
    """The finding ``variant`` (a ``BackendVariant`` or a worker ``Runner``) makes on
    ``case``, blamed, if it shows ``entry``'s fault; ``ReproError`` if it does not."""
    kind, dtype = entry_kind(entry)
    name = variant.name
    if not entry.covers_variant(name):
        raise InputError(f"{name} is not a variant the entry covers ({entry.where})")
    if case.dtype != dtype:
        raise InputError(f"the entry speaks of {dtype}, not {case.dtype}")
    result = check_case(case, [variant])
    if result.status != "judged":
        raise InputError(f"the oracle cannot judge this case ({result.status}: {_line(result.note)})")
    verdict = next((v for v in result.verdicts if v.variant == name and v.kind is kind), None)
    if verdict is None:
        raise ReproError(f"{name} {_did(result, name)}; not {kind.value}")
    finding = Record(case, result, verdict, case.program.size).finding({variant.backend.name: variant.backend.version()})
    finding.minimised = HAND
    try:
        finding.blame = blame(case, variant).to_json()
    except HarnessError:
        finding.blame = None  # as a campaign does: an unblamed finding still matches a four-part entry
    if not entry.matches(finding.signature):
        raise ReproError(f"{name} fails as {kind.value}, but its finding {finding.signature!r} "
                         f"is not one the entry covers")
    return finding


def record_by_hand(baseline: Baseline, signature: str, case: Case, variant: Any) -> tuple[Baseline, Finding]:
    """``baseline`` with the entry ``signature``'s repro replaced by the finding
    ``variant`` makes on ``case`` (``hand_finding``), and that finding. A repro already
    there is replaced: the maintainer named this entry and this case."""
    entry = entry_named(baseline, signature)
    finding = hand_finding(entry, case, variant)
    entries = tuple(replace(e, repro=repro_of(finding)) if e is entry else e for e in baseline.entries)
    return replace(baseline, entries=entries), finding


def record_entry(baseline: Baseline, signature: str, program: str, x: Any,
                 variant: str | None = None) -> tuple[Baseline, Finding]:
    """``record_by_hand`` as ``hessdiff baseline record --entry`` runs it: ``program``
    (text) at ``x`` in the entry's dtype, by ``variant`` (default: the first installed
    variant the entry covers), in a worker process, so a fault that kills its framework
    is that variant's crash, not the command's end."""
    from hessdiff.harness.run import UsageError, select_variants
    from hessdiff.harness.worker import isolate

    entry = entry_named(baseline, signature)
    _, dtype = entry_kind(entry)
    case = case_of(program, x, dtype)
    if variant is None:
        installed = [v.name for v in select_variants(None, err=io.StringIO())]
        variant = default_variant(entry, installed)
        if variant is None:
            raise InputError(f"no installed variant is one the entry covers ({entry.where}); name one with --variant")
    try:
        chosen = select_variants(variant, err=io.StringIO())
    except UsageError as exc:
        raise InputError(str(exc)) from None
    if len(chosen) != 1:
        raise InputError(f"--variant {variant!r} names {len(chosen)} variants; name one, like {chosen[0].name}")
    runners = isolate(chosen)
    try:
        return record_by_hand(baseline, signature, case, runners[0])
    finally:
        for runner in runners:
            runner.close()


def _did(result: CaseResult, name: str) -> str:
    """What variant ``name`` did on a judged case, when not the fault looked for."""
    other = next((v for v in result.verdicts if v.variant == name), None)
    if other is not None:
        return f"is judged {other.kind.value}: {_line(other.explanation)}"
    outcome = result.outcomes.get(name)
    if outcome is None:
        return "was not run"
    if outcome.hessian is None:
        return f"returned no Hessian ({outcome.status}: {_line(outcome.error)})"
    truth = result.oracle.hessian_float() if result.oracle is not None else None
    # no verdict: right, or excused by the judge (a NaN where intermediates underflow, an
    # entry within a kink's range of conventions), which the values beside each other show
    return f"passes: returns {_short(outcome.hessian)}, the oracle {_short(truth)}"


def _short(h: Any) -> str:
    if h is None:
        return "nothing"
    return np.array2string(np.asarray(h, dtype=np.float64), precision=6, separator=", ",
                           max_line_width=10_000, threshold=16).replace("\n", "")


def _line(text: str, limit: int = 300) -> str:
    first = " ".join(text.split())
    return first if len(first) <= limit else first[:limit - 3] + "..."
