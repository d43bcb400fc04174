"""``hessdiff triage``: a report's failures as bug-report drafts, grouped by framework.

For each failing finding of a report this writes a Markdown draft in the shape of the
framework's own bug template (JAX's and PyTorch's issue forms, MLX's template, Equinox's
plain issues): the environment block (the finding's ``env.txt``), the minimal code (its
``repro.py``), observed vs expected, why the expected value is right, and the bisect
table when ``hessdiff bisect`` left a ``bisect.json`` in the finding's folder. Nothing is
filed: a person reads the draft, checks it, and files it (or not). Findings already in
the baseline carry their upstream link, so nobody files the same bug twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hessdiff.harness.findings import Finding, FindingError, finding_from_json

__all__ = ["TEMPLATES", "BugTemplate", "TriageError", "TriageItem", "load_items", "render_draft", "root_cause_key",
           "triage"]


class TriageError(ValueError):
    """The report folder is not a report; the message names what is missing."""


@dataclass(frozen=True)
class BugTemplate:
    """A framework's bug template: where to file, the headings it asks for, how to get
    the environment block.

    Arguments:
        tracker: where a person would file it.
        description / code / expected / environment: the template's own headings for
            the description, the reproducer, the expected behaviour and the versions.
        env_command: the command the maintainers ask for in the environment block.
    """

    tracker: str
    description: str
    code: str
    expected: str
    environment: str
    env_command: str


TEMPLATES: dict[str, BugTemplate] = {
    "jax": BugTemplate(
        "https://github.com/jax-ml/jax/issues/new/choose (Bug report form)",
        "Description", "Description (minimal reproducible example)", "Description (expected behaviour)",
        "System info (python version, jaxlib version, accelerator, etc.)",
        "python -c 'import jax; jax.print_environment_info()'",
    ),
    "equinox": BugTemplate(
        "https://github.com/patrick-kidger/equinox/issues/new",
        "Description", "MWE", "Expected behaviour", "Versions",
        "python -c 'import equinox, jax; print(equinox.__version__, jax.__version__)'",
    ),
    "torch": BugTemplate(
        "https://github.com/pytorch/pytorch/issues/new/choose (Bug Report form)",
        "🐛 Describe the bug", "🐛 Describe the bug (code)", "🐛 Describe the bug (expected)", "Versions",
        "python -m torch.utils.collect_env",
    ),
    "mlx": BugTemplate(
        "https://github.com/ml-explore/mlx/issues/new/choose (Bug report template)",
        "Describe the bug", "To Reproduce", "Expected behavior",
        "Desktop (please complete the following information)",
        "python -c 'import mlx.core as mx, platform; print(mx.__version__, platform.platform())'",
    ),
}
_GENERIC = BugTemplate("the framework's issue tracker", "Description", "Minimal code", "Expected behaviour",
                       "Environment", "pip freeze")


@dataclass(frozen=True)
class TriageItem:
    """One failing finding of a report with the files beside it.

    Arguments:
        folder: its folder in the report (holding repro.py, env.txt, finding.json).
        status: "new" or "known" (in the baseline); ``upstream`` the baseline's link.
        bisect: the ``bisect.json`` record when a bisect was run for it.
    """

    finding: Finding
    number: int
    folder: Path
    status: str
    upstream: str
    bisect: Mapping[str, Any] | None


def load_items(report_dir: str | Path) -> list[TriageItem]:
    """The failing findings of the report in ``report_dir`` (dismissed ones are left out)."""
    root = Path(report_dir)
    path = root / "findings.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TriageError(f"{root} has no findings.json; pass a report folder written by "
                          "'hessdiff run' or 'hessdiff merge'.") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TriageError(f"cannot read {path}: {exc}") from None
    records = data.get("findings") if isinstance(data, Mapping) else None
    if not isinstance(records, list):
        raise TriageError(f"{path} is not a report's findings.json (no 'findings' list).")
    items = []
    for index, record in enumerate(records, start=1):
        try:
            finding = finding_from_json(record)
        except FindingError as exc:
            raise TriageError(f"{path}: finding {index}: {exc}") from None
        if not finding.kind.is_failure:
            continue
        folder = root / str(record.get("folder", ""))
        bisect = None
        if (folder / "bisect.json").is_file():
            try:
                bisect = json.loads((folder / "bisect.json").read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise TriageError(f"cannot read {folder / 'bisect.json'}: {exc}") from None
        items.append(TriageItem(finding, int(record.get("number", index)), folder,
                                str(record.get("status", "new")), str(record.get("upstream", "")), bisect))
    return items


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except OSError:
        return f"({path.name} is missing from the report)"


def _array(value: Any) -> str:
    if value is None:
        return "(nothing: it raised)"
    return np.array2string(np.asarray(value, dtype=np.float64), precision=17, separator=", ")


def _bisect_lines(record: Mapping[str, Any]) -> list[str]:
    package = record.get("package", "?")
    lines = ["| version | outcome |", "| --- | --- |"]
    lines += [f"| {r.get('version')} | {r.get('outcome')} |" for r in record.get("rows", [])]
    lines += ["", f"First bad: {package} {record.get('first_bad') or 'none in the range'}; "
              f"first good: {package} {record.get('first_good') or 'none in the range'}."]
    if record.get("pins"):
        lines.append(f"Companion pins: {', '.join(record['pins'])}.")
    return lines


def root_cause_key(finding: Finding) -> str:
    """What one draft stands for: a blamed finding's framework, rule @ region and kind
    (every variant and dtype that shows the broken rule is one bug upstream); an
    unblamed finding's own signature."""
    if finding.root_cause is None:
        return finding.signature
    return finding.root_cause.rsplit("|", 1)[0]


def render_draft(item: TriageItem, also: Sequence[TriageItem] = ()) -> str:
    """The Markdown draft of one bug report, in the shape of its framework's template;
    ``also``: the other findings of the same root cause (other variants, dtypes,
    programs), listed so one report covers them."""
    f = item.finding
    t = TEMPLATES.get(f.backend, _GENERIC)
    n = f.program.n
    title = (f"`{f.variant}`: {f.kind.value.replace('_', ' ')} Hessian ({f.dtype}) for "
             f"{' + '.join(sorted(f.program.op_names)) or 'a constant'}")
    lines = [
        f"<!-- DRAFT by hessdiff triage: review before filing. File at: {t.tracker}. "
        "hessdiff never files anything itself. -->",
        f"# {title}",
        "",
    ]
    if item.status == "known":
        lines += [f"> Already known (baseline): {item.upstream or 'no upstream link yet'}.", ""]
    if f.root_cause is not None:
        lines += [f"Root cause (hessdiff's blame): the derivative rule `{f.blame.get('root_cause')}` "
                  f"checked alone is wrong ({f.blame.get('kind', f.kind.value)}).", ""]
        modes = _modes_shown([f.variant, *(o.finding.variant for o in also)])
        if modes:
            lines += [f"Differentiation modes it shows in: {modes}.", ""]
    lines += [
        f"## {t.description}",
        "",
        f"The Hessian of a {f.program.size}-op function R^{n} -> R computed with `{f.variant}` is "
        f"wrong ({f.kind.value}, {f.severity} severity): {f.explanation or f.error}",
        "",
        f"## {t.code}",
        "",
        "Standalone; exits 1 while the bug is there, 0 once fixed:",
        "",
        "```python",
        _read(item.folder / "repro.py"),
        "```",
        "",
        f"## Observed vs {t.expected.lower()}",
        "",
        f"Observed (`{f.variant}`):",
        "",
        "```",
        _array(f.observed),
        "```",
        "",
        f"Expected (shape ({n}, {n})):",
        "",
        "```",
        _array(f.expected),
        "```",
        "",
        "## Why the expected value is right",
        "",
        "It comes from an independent oracle that shares no code with any framework: the "
        "same function evaluated at 50 significant digits with mpmath, each op's "
        "derivatives derived by SymPy from its definition and carried through second-order "
        "forward-mode jets.",
    ]
    others = [f"- `{name}`: `{_array(h)}`" for name, h in sorted(f.others.items())]
    if others:
        lines += ["", "Other frameworks and transforms at the same point:", "", *others]
    if also:
        lines += ["", "## The same rule elsewhere", "",
                  "The same root cause also shows in these findings (variant, dtype, program):", ""]
        lines += [f"- `{o.finding.variant}` {o.finding.dtype}: "
                  f"{' + '.join(sorted(o.finding.program.op_names))} ({o.finding.count} hit(s))" for o in also]
    if item.bisect:
        lines += ["", "## Which release", "", *_bisect_lines(item.bisect)]
    lines += [
        "",
        f"## {t.environment}",
        "",
        f"(Maintainers ask for the output of `{t.env_command}`; hessdiff recorded:)",
        "",
        "```",
        _read(item.folder / "env.txt"),
        "```",
        "",
    ]
    return "\n".join(lines)


def _modes_shown(variants: Sequence[str]) -> str:
    """The modes the ``variants`` compose (``Variant.modes``), each with its variants:
    a rule wrong only in fwd-over-fwd is the forward-mode (JVP) rule, one wrong in every
    mode the primitive's derivative itself."""
    from hessdiff.backends.registry import variant_modes

    by_mode: dict[str, set[str]] = {}
    for variant in variants:
        for mode in filter(None, (m.strip() for m in variant_modes(variant).split(","))):
            by_mode.setdefault(mode, set()).add(variant)
    return "; ".join(f"{mode} ({', '.join(f'`{v}`' for v in sorted(names))})" for mode, names in sorted(by_mode.items()))


def triage(report_dir: str | Path, out: str | Path | None = None) -> tuple[Path, list[TriageItem]]:
    """Write the drafts of ``report_dir``'s failures under ``out`` (``REPORT/triage``).

    Returns:
        ``(index, items)``: ``index`` is ``out/README.md``, the findings grouped by
        framework, each with its draft, repro.py, env.txt and bisect result.
    """
    items = load_items(report_dir)
    root = Path(report_dir)
    out = Path(out) if out is not None else root / "triage"
    out.mkdir(parents=True, exist_ok=True)
    by_framework: dict[str, list[TriageItem]] = {}
    for item in items:
        by_framework.setdefault(item.finding.backend, []).append(item)
    lines = ["# Triage drafts", "",
             "Drafts only: a person reviews each, runs its repro.py, and files it (or not).", ""]
    if not items:
        lines.append("No failing finding in this report: nothing to file.")
    for framework in sorted(by_framework):
        group = by_framework[framework]
        template = TEMPLATES.get(framework, _GENERIC)
        causes: dict[str, list[TriageItem]] = {}
        for item in group:
            causes.setdefault(root_cause_key(item.finding), []).append(item)
        lines += [f"## {framework} ({len(causes)} draft(s) for {len(group)} finding(s))", "",
                  f"File at: {template.tracker}", ""]
        (out / framework).mkdir(exist_ok=True)
        for same in causes.values():
            item = min(same, key=lambda i: (i.finding.program.size, i.number))  # the smallest program
            also = [i for i in same if i is not item]
            draft = out / framework / f"{item.folder.name or item.number}.md"
            draft.write_text(render_draft(item, also), encoding="utf-8")
            bisect = item.bisect
            found = (f"first bad {bisect.get('first_bad')}, first good {bisect.get('first_good')}"
                     if bisect else "not bisected")
            known = f" · known: {item.upstream or 'baselined'}" if item.status == "known" else ""
            covers = f" · covers {len(also)} more finding(s) of the same rule" if also else ""
            lines.append(
                f"- `{item.finding.signature}`{covers} — [draft]({_rel(draft, out)}) · "
                f"[repro.py]({_rel(item.folder / 'repro.py', out)}) · [env.txt]({_rel(item.folder / 'env.txt', out)})"
                f" · bisect: {found}{known}")
        lines.append("")
    index = out / "README.md"
    index.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    return index, items


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()

