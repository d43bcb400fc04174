"""The ``hessdiff`` command line (also ``python -m hessdiff``).

Only ``main`` turns outcomes into exit codes; nothing else here or in the library calls
``sys.exit``:

- 0: success (``run``: no new failing finding; ``replay``: nothing reproduces; ``check``:
  no variant is judged wrong).
  ``bisect``: the table is printed and some release reproduces (1: none does);
  ``merge``: no new failing finding in the merged report (1: there are).
  ``report``: the HTML pages were written again.
  ``baseline check``: every entry that could run reproduces; ``baseline record``,
  ``baseline upgrade``: written.
- 1: ``run`` found failures not in the baseline; ``replay``: a finding still reproduces;
  ``check``: some variant is judged wrong; ``baseline check``: some entry is fixed;
  ``baseline record --entry``: the case does not show the entry's fault (one line says
  what the variant did instead; nothing written).
- 2: bad input (unknown command, bad flag, unknown backend, bad budget, unreadable
  finding file or report folder, a folder to write (``--out``, ``--resume``, ``--cache``,
  a report folder) that cannot be written, missing framework, ``report`` without jinja2
  and matplotlib, malformed program text or a point where it is undefined); one line on
  stderr.
- 3: ``run`` hit errors of hessdiff itself (reported apart from framework findings).
- 70: an internal error of hessdiff itself; one line on stderr, no traceback
  (set ``HESSDIFF_DEBUG=1`` to let the traceback through).
- 130: interrupted (Ctrl-C).
- 141: stdout was closed early (``hessdiff ops | head``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from hessdiff.harness.baseline import Baseline

__all__ = ["EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

_COMMANDS = ("run", "replay", "backends", "ops", "check", "bisect", "merge", "triage", "report", "baseline")


class _UsageError(Exception):
    """The command line is wrong; the message is the one line to print."""


class _ParserExit(Exception):
    """argparse finished early (``--help``, ``--version``) with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hessdiff`` command line.

    Arguments:
        argv: the arguments after the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit code (see the module docstring). Never raises, never exits.
    """
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except _UsageError as exc:
        print(_one_line(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    except _ParserExit as exc:
        return exc.status
    except KeyboardInterrupt:
        print("hessdiff: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away; point stdout at devnull so the interpreter's final
        # flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the one place internal errors become a code
        if os.environ.get("HESSDIFF_DEBUG"):
            raise
        message = _one_line(f"{type(exc).__name__}: {exc}")
        print(f"hessdiff: internal error: {message}", file=sys.stderr)
        return EXIT_INTERNAL


def _main(argv: list[str]) -> int:
    parser = _build_parser()
    # Unknown arguments are reported before a missing command, so that
    # ``hessdiff --bogus`` names --bogus.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error(f"a command is required, one of: {', '.join(_COMMANDS)}")
    command: Callable[[argparse.Namespace, TextIO], int] = args.run
    return command(args, sys.stdout)


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="hessdiff",
        description="Differential testing of Hessians across autodiff frameworks.",
        epilog="Set HESSDIFF_DEBUG=1 to see the traceback of an internal error.",
    )
    parser.add_argument("--version", action="version", version=f"hessdiff {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="search for wrong Hessians and write a report")
    run.add_argument("--backends", default=None, metavar="LIST",
                     help="comma-separated backends or variants (jax,torch:func); default: all available")
    run.add_argument("--budget", default="60s", help="how long to search: 60s, 5m, 1h (default 60s)")
    run.add_argument("--rounds", type=int, default=None, metavar="N",
                     help="stop after N rounds (or at the budget): the same seed then finds the same "
                          "faults on a slow or loaded machine")
    run.add_argument("--seed", type=int, default=0, help="campaign seed; the same seed finds the same faults")
    run.add_argument("--dtype", default="float64,float32",
                     help="float64, float32 or both comma-separated (default both)")
    run.add_argument("--out", default=None, metavar="DIR", help="report folder (default reports/run-<time>)")
    run.add_argument("--baseline", default="reports/baseline.json", metavar="FILE",
                     help="known-issues baseline (default reports/baseline.json)")
    run.add_argument("--ops", default=None, metavar="LIST", help="restrict generation to these ops")
    run.add_argument("--max-ops", type=int, default=6, help="ops per generated program (default 6)")
    run.add_argument("--resume", default=None, metavar="DIR",
                     help="continue the run in DIR (reports/<run>): same seed and settings, its "
                          "findings not reported again")
    run.add_argument("--timeout", default="120s",
                     help="per-call limit for one backend's Hessian; a hang is a timeout finding (default 120s)")
    run.add_argument("--points", type=int, default=16,
                     help="points checked per generated program, batched in one call per backend (default 16)")
    run.add_argument("--judges", type=int, default=None, metavar="N",
                     help="processes judging a program's points in parallel (default: one per core, "
                          "at most 4; 1 judges in the campaign's own process)")
    run.add_argument("--database", default=os.environ.get("HESSDIFF_DATABASE"), metavar="DIR",
                     help="replay the failing cases saved in DIR first; save this run's (default $HESSDIFF_DATABASE)")
    run.add_argument("--no-isolate", action="store_true",
                     help="run the frameworks in this process (faster start; a segfault ends the run)")
    run.set_defaults(run=_cmd_run)

    replay = commands.add_parser("replay", help="re-run findings against the installed versions")
    replay.add_argument("finding", metavar="FINDING.json",
                        help="a finding.json or a findings.json of a report")
    replay.set_defaults(run=_cmd_replay)

    check = commands.add_parser(
        "check", help="one program at one point: every variant's Hessian beside the oracle's, judged"
    )
    check.add_argument("program", metavar="PROGRAM",
                       help="the program: 'sum(tanh(x))', or 'v1 = tanh(x); v2 = sum(v1)' as a finding prints it")
    check.add_argument("--at", required=True, metavar="X",
                       help="the point, comma-separated: 50,0.5 (a leading minus needs --at=-1,2)")
    check.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                       help="the precision the frameworks compute in (default float64)")
    check.add_argument("--variants", default=None, metavar="LIST",
                       help="comma-separated backends or variants (jax,torch:func); default: all")
    check.set_defaults(run=_cmd_check)

    backends = commands.add_parser(
        "backends", help="list every backend variant, its version and whether it is available"
    )
    backends.set_defaults(run=_cmd_backends)

    ops = commands.add_parser(
        "ops", help="list the op catalogue and which backends lower each op"
    )
    ops.add_argument("--domains", action="store_true",
                     help="per op with a restricted domain: the catalogue's, the mathematical one, and why they differ")
    ops.set_defaults(run=_cmd_ops)

    bisect = commands.add_parser(
        "bisect", help="replay a finding in one environment per release: which broke it, which fixed it"
    )
    bisect.add_argument("finding", metavar="FINDING.json", help="a finding.json (or a findings.json with --index)")
    bisect.add_argument("--package", required=True, help="the PyPI package to bisect (equinox; mlx[cpu] for MLX's CPU build)")
    bisect.add_argument("--versions", required=True, metavar="A..B",
                        help="the releases to try, both ends included (0.11.0..0.11.6)")
    bisect.add_argument("--with", dest="pins", action="append", default=[], metavar="REQ",
                        help="a companion requirement for every environment (repeatable): --with jax==0.4.26")
    bisect.add_argument("--cache", default=None, metavar="DIR",
                        help="where the environments are kept (default ~/.cache/hessdiff/bisect)")
    bisect.add_argument("--index", type=int, default=None, metavar="N",
                        help="which finding of a findings.json (1 = the first)")
    bisect.set_defaults(run=_cmd_bisect)

    merge = commands.add_parser("merge", help="combine shard reports into one, deduplicated by signature")
    merge.add_argument("reports", nargs="+", metavar="FINDINGS.json", help="reports/*/findings.json")
    merge.add_argument("--out", default="reports/merged", metavar="DIR",
                       help="the merged report's folder (default reports/merged)")
    merge.add_argument("--baseline", default="reports/baseline.json", metavar="FILE",
                       help="known-issues baseline (default reports/baseline.json)")
    merge.set_defaults(run=_cmd_merge)

    triage = commands.add_parser("triage", help="bug-report drafts for a report's failures, per framework")
    triage.add_argument("report", metavar="REPORT_DIR", help="a report folder (holding findings.json)")
    triage.add_argument("--out", default=None, metavar="DIR", help="where the drafts go (default REPORT_DIR/triage)")
    triage.set_defaults(run=_cmd_triage)

    report = commands.add_parser("report", help="render a report's HTML pages again from its findings.json")
    report.add_argument("report", metavar="REPORT_DIR", help="a report folder (holding findings.json)")
    report.add_argument("--baseline", default="reports/baseline.json", metavar="FILE",
                        help="known-issues baseline, for each known finding's entry (default reports/baseline.json)")
    report.set_defaults(run=_cmd_report)

    baseline = commands.add_parser("baseline", help="the known-issues baseline: replay its entries, record repros")
    actions = baseline.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser, required=True)
    bcheck = actions.add_parser("check", help="replay every entry's repro: reproduces / fixed / cannot run")
    brecord = actions.add_parser("record", help="record repros: each entry without one gets the smallest finding "
                                 "of runs it matches, or one entry gets one case by hand (--entry)")
    brecord.add_argument("reports", nargs="*", metavar="FINDINGS.json", help="findings.json of runs (or report folders)")
    brecord.add_argument("--entry", metavar="SIGNATURE", help="the entry to give a hand repro, its signature as "
                         "written; with --program and --at, judged in the entry's dtype (replaces its repro)")
    brecord.add_argument("--program", metavar="TEXT", help="with --entry: the program, as 'hessdiff check' reads it")
    brecord.add_argument("--at", metavar="X", help="with --entry: the point, comma-separated (--at=-1,2)")
    brecord.add_argument("--variant", metavar="VARIANT",
                         help="with --entry: the variant to run (default: the first installed one the entry covers)")
    bupgrade = actions.add_parser("upgrade", help="rewrite entries in the older 'variant|kind|dtype|ops' form "
                                  "as 'framework|route|kind|dtype|ops', covering the same variants")
    for sub in (bcheck, brecord, bupgrade):
        sub.add_argument("--baseline", default="reports/baseline.json", metavar="FILE",
                         help="known-issues baseline (default reports/baseline.json)")
    baseline.set_defaults(run=_cmd_baseline)
    return parser


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    import datetime as dt

    from hessdiff.harness.ops import CATALOGUE
    from hessdiff.harness.run import UsageError, parse_budget, run
    from hessdiff.harness.strategies import DEFAULT_OPS

    try:
        budget = parse_budget(args.budget)
        dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
        bad = [d for d in dtypes if d not in ("float32", "float64")]
        if bad or not dtypes:
            raise UsageError(f"--dtype={args.dtype!r}, but it must be float32, float64 or both.")
        ops = DEFAULT_OPS
        if args.ops:
            ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
            unknown = [o for o in ops if o not in CATALOGUE]
            if unknown:
                raise UsageError(f"--ops: unknown ops {unknown}; see 'hessdiff ops'.")
        if args.points < 1:
            raise UsageError(f"--points={args.points}, but it must be at least 1.")
        if args.rounds is not None and args.rounds < 1:
            raise UsageError(f"--rounds={args.rounds}, but it must be at least 1.")
        if args.max_ops < 1:
            raise UsageError(f"--max-ops={args.max_ops}, but it must be at least 1.")
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        try:
            timeout = parse_budget(args.timeout)
        except UsageError:
            raise UsageError(f"--timeout={args.timeout!r}, but it must be a positive duration like "
                             "30s or 2m.") from None
        if args.resume and args.out and Path(args.out) != Path(args.resume):
            raise UsageError(f"--out={args.out!r} with --resume={args.resume!r}: a resumed run "
                             "writes into the folder it resumes; drop --out.")
        target = Path(args.resume or args.out or Path("reports") / f"run-{stamp}")
        _check_writable("run", f"{'--resume' if args.resume else '--out'}={str(target)!r}", target)
        return run(
            backends=args.backends, budget=budget, seed=args.seed, dtypes=dtypes,
            out=target, baseline_path=Path(args.baseline), ops=ops, max_ops=args.max_ops, stdout=out,
            isolate=not args.no_isolate, timeout=timeout, resume=bool(args.resume), points=args.points,
            database=Path(args.database) if args.database else None, rounds=args.rounds,
            judges=_judges(args.judges),
        )
    except UsageError as exc:
        raise _UsageError(f"hessdiff run: error: {exc}") from None


def _cmd_baseline(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.harness.baseline import BaselineError, load_baseline, write_baseline
    from hessdiff.harness.baseline_replay import print_replays, record_repros, replay_baseline
    from hessdiff.harness.findings import load_findings

    command = f"hessdiff baseline {args.action}"
    if args.action in ("check", "upgrade") and not Path(args.baseline).is_file():
        raise _UsageError(f"{command}: error: --baseline {args.baseline} is not a file.")
    if args.action == "upgrade":
        from hessdiff.harness.baseline_upgrade import upgrade_baseline_file

        try:
            changed = upgrade_baseline_file(args.baseline)
        except BaselineError as exc:
            raise _UsageError(f"{command}: error: {_one_line(str(exc))}") from None
        print(f"{args.baseline}: {changed} entries rewritten", file=out)
        return EXIT_OK
    try:
        baseline = load_baseline(Path(args.baseline))
        if args.action == "check":
            return 1 if print_replays(replay_baseline(baseline), out) else EXIT_OK
        if args.entry is not None or args.program is not None or args.at is not None:
            return _record_by_hand(args, baseline, out)
        if not args.reports:
            raise _UsageError(f"{command}: error: give runs' findings (FINDINGS.json...) or --entry, --program, --at.")
        findings = []
        for report in args.reports:
            path = Path(report) / "findings.json" if Path(report).is_dir() else Path(report)
            findings += load_findings(str(path))
    except (BaselineError, ValueError, OSError) as exc:
        raise _UsageError(f"{command}: error: {_one_line(str(exc))}") from None
    recorded, filled = record_repros(baseline, findings)
    try:
        write_baseline(recorded, args.baseline)
    except OSError as exc:
        raise _UsageError(f"{command}: error: cannot write {args.baseline}: {exc.strerror or exc}") from None
    missing = sum(e.repro is None for e in recorded.entries)
    print(f"{len(filled)} entries got a repro; {missing} of {len(recorded.entries)} have none yet", file=out)
    return EXIT_OK


def _record_by_hand(args: argparse.Namespace, baseline: Baseline, out: TextIO) -> int:
    from hessdiff.harness.api import InputError
    from hessdiff.harness.baseline import write_baseline
    from hessdiff.harness.baseline_record import ReproError, record_entry
    from hessdiff.harness.ir import ProgramError

    command = "hessdiff baseline record"
    if args.reports or None in (args.entry, args.program, args.at):
        raise _UsageError(f"{command}: error: a hand repro takes --entry, --program and --at together, "
                          "and no FINDINGS.json.")
    point = _point_arg(command, args.at)
    try:
        recorded, finding = record_entry(baseline, args.entry, args.program, point, args.variant)
    except ReproError as exc:
        print(f"not recorded: {_one_line(str(exc))}", file=out)
        return 1
    except (InputError, ProgramError) as exc:
        raise _UsageError(f"{command}: error: {_one_line(str(exc))}") from None
    try:
        write_baseline(recorded, args.baseline)
    except OSError as exc:
        raise _UsageError(f"{command}: error: cannot write {args.baseline}: {exc.strerror or exc}") from None
    print(f"recorded: {finding.signature} reproduces {args.entry}", file=out)
    return EXIT_OK


def _point_arg(command: str, text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise _UsageError(f"{command}: error: --at={text!r}, but it must be comma-separated numbers "
                          "like 50,0.5.") from None


def _cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.harness.run import UsageError, replay

    try:
        return replay(Path(args.finding), stdout=out)
    except UsageError as exc:
        raise _UsageError(f"hessdiff replay: error: {exc}") from None


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.harness.api import InputError, check
    from hessdiff.harness.ir import ProgramError

    point = _point_arg("hessdiff check", args.at)
    names = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    try:
        result = check(args.program, point, dtype=args.dtype, variants=names, isolated=True)
    except (ProgramError, InputError) as exc:
        raise _UsageError(f"hessdiff check: error: {exc}") from None
    if result.oracle is None:
        raise _UsageError(f"hessdiff check: error: the program is undefined at this point: {result.note}")
    out.write(result.table())
    return 1 if result.wrong else EXIT_OK


def _cmd_backends(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.backends import all_backends, campaign_variants
    from hessdiff.backends.registry import broken_plugins, variant_route

    rows = []
    for backend in all_backends():
        status = backend.availability()
        if status.available:
            state = f"available (warned: {status.reason})" if status.reason else "available"
        else:
            state = f"unavailable: {status.reason}"
        # The variants, then the probes ``hessdiff run`` checks beside them (campaign=True).
        for variant in campaign_variants([backend.name]):
            rows.append([backend.name, variant.variant, variant_route(variant.name), variant.description,
                         status.version or "-", state])
    for broken in broken_plugins():  # listed, not fatal: the other backends still work
        source = broken.source
        where = f"plugin from {source.distribution} ({source.value})" if source.distribution else f"plugin ({source.value})"
        rows.append([source.name, "-", "-", where, source.version or "-", f"broken: {broken.problem}"])
    out.write(_table(["backend", "variant", "route", "description", "version", "status"], rows))
    return EXIT_OK


def _cmd_ops(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.backends import Absent, all_backends
    from hessdiff.harness.ops import CATALOGUE

    if args.domains:
        from hessdiff.harness.domains import domain_rows

        out.write(_table(["op", "generated on", "defined and twice differentiable on", "why they differ"],
                         domain_rows()))
        return EXIT_OK
    backends = all_backends()
    _report_broken_plugins()
    rows = []
    for spec in CATALOGUE.values():
        row = [spec.name, spec.group]
        for backend in backends:
            lowering = backend.installed_lowerings().get(spec.name)
            if lowering is None:
                row.append("missing")
            elif isinstance(lowering, Absent):
                row.append(f"absent({lowering.reason})")
            else:
                row.append("lowered")
        rows.append(row + [spec.doc])
    out.write(_table(["op", "group", *(b.name for b in backends), "doc"], rows))
    return EXIT_OK


def _report_broken_plugins() -> None:
    """One line on stderr for each installed plugin that could not be registered."""
    from hessdiff.backends.registry import broken_plugins

    for broken in broken_plugins():
        print(f"hessdiff: skipping {_one_line(str(broken))}", file=sys.stderr)


def _cmd_bisect(args: argparse.Namespace, out: TextIO) -> int:
    import json

    from hessdiff.harness import bisect as b
    from hessdiff.harness.findings import FindingError, load_findings

    try:
        low, high = b.parse_range(args.versions)
        findings = load_findings(args.finding)
        if args.index is not None and not 1 <= args.index <= len(findings):
            raise b.BisectError(f"--index={args.index}, but {args.finding} holds {len(findings)} finding(s).")
        if args.index is None and len(findings) != 1:
            raise b.BisectError(f"{args.finding} holds {len(findings)} findings; choose one with --index N.")
        finding = findings[(args.index or 1) - 1]
        cache = Path(args.cache) if args.cache else b.default_cache()
        _check_writable("bisect", f"--cache={str(cache)!r}", cache)
        source = Path(args.finding)
        if source.name == "finding.json":  # a report's finding folder: bisect.json goes beside it
            _check_writable("bisect", f"the folder of {args.finding} (for bisect.json)", source.parent)
        versions = b.select_versions(b.pypi_versions(args.package), low, high)
    except (b.BisectError, FindingError) as exc:
        raise _UsageError(f"hessdiff bisect: error: {exc}") from None
    print(f"hessdiff bisect: {finding.signature}: {args.package} {', '.join(versions)}", file=sys.stderr)

    def progress(row: b.VersionRow) -> None:
        print(f"  {args.package} {row.version}: {row.outcome}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="hessdiff-bisect-") as scratch:
        result = b.bisect(finding, Path(scratch), package=args.package, versions=versions,
                          pins=args.pins, cache=cache, on_row=progress)
    out.write(b.render_table(result))
    if source.name == "finding.json":  # a report's finding folder: triage reads it there
        (source.parent / "bisect.json").write_text(json.dumps(b.result_json(result, args.pins), indent=2) + "\n")
    return EXIT_OK if result.first_bad else 1


def _cmd_merge(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.harness.baseline import load_baseline
    from hessdiff.harness.html_folder import merged_coverage
    from hessdiff.harness.html_report import html_note
    from hessdiff.harness.merge import MergeError, merge_reports

    _check_writable("merge", f"--out={args.out!r}", Path(args.out))
    try:
        baseline = load_baseline(Path(args.baseline))
        merged, paths = merge_reports(args.reports, args.out, baseline=baseline)
    except (MergeError, ValueError) as exc:
        raise _UsageError(f"hessdiff merge: error: {exc}") from None
    new = [m for m in merged if m.finding.kind.is_failure and baseline.entry_for(m.finding) is None]
    print(f"hessdiff merge: {len(args.reports)} report(s), {len(merged)} distinct finding(s) "
          f"({len(new)} new failing); report: {paths.summary_md}", file=out)
    for problem in paths.problems:
        print(f"hessdiff merge: report problem: {problem}", file=sys.stderr)
    html = html_note(args.out, baseline=baseline, coverage=merged_coverage(args.reports), trend_from=args.reports)
    print(f"hessdiff merge: {html}", file=sys.stderr if html.startswith("report problem") else out)
    return 1 if new else EXIT_OK


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.harness.baseline import BaselineError, load_baseline
    from hessdiff.harness.html_folder import HtmlError
    from hessdiff.harness.html_report import INSTALL_HINT, missing_dependencies, write_html

    missing = missing_dependencies()
    if missing:
        raise _UsageError(f"hessdiff report: error: the HTML report needs {' and '.join(missing)}: {INSTALL_HINT}")
    if Path(args.report).is_dir():  # the pages are written into it (a missing one: write_html says so)
        _check_writable("report", f"REPORT_DIR={args.report!r}", Path(args.report))
    try:
        baseline = load_baseline(Path(args.baseline))
        paths = write_html(args.report, baseline=baseline)
    except (HtmlError, BaselineError) as exc:
        raise _UsageError(f"hessdiff report: error: {exc}") from None
    print(f"hessdiff report: {len(paths.finding_pages)} finding page(s); open {paths.index}", file=out)
    for problem in paths.problems:
        print(f"hessdiff report: problem: {problem}", file=sys.stderr)
    return EXIT_OK


def _cmd_triage(args: argparse.Namespace, out: TextIO) -> int:
    from hessdiff.harness.triage import TriageError, triage

    if args.out:
        _check_writable("triage", f"--out={args.out!r}", Path(args.out))
    elif Path(args.report).is_dir():  # the drafts go into REPORT_DIR/triage
        _check_writable("triage", f"REPORT_DIR={args.report!r}", Path(args.report) / "triage")
    try:
        index, items = triage(args.report, args.out)
    except TriageError as exc:
        raise _UsageError(f"hessdiff triage: error: {exc}") from None
    frameworks = sorted({item.finding.backend for item in items})
    print(f"hessdiff triage: {len(items)} draft(s) for {', '.join(frameworks) or 'no framework'}: {index}",
          file=out)
    return EXIT_OK


def _judges(given: int | None) -> int:
    """``--judges``: as given (at least 1), or one per core."""
    from hessdiff.harness.judge_pool import default_judges
    from hessdiff.harness.run import UsageError

    if given is None:
        return default_judges()
    if given < 1:
        raise UsageError(f"--judges={given}, but it must be at least 1.")
    return given


def _check_writable(command: str, what: str, folder: Path) -> None:
    """A usage error unless ``folder`` can be made a folder hessdiff writes in.

    Checked before the work, so that a report folder nobody can write is one line and exit
    code 2 at once, not an internal error after the search. Nothing is created: the
    nearest folder that exists on the way to ``folder`` is probed with a temporary file.
    """
    existing = folder
    try:
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        why = "" if existing.is_dir() else f"{existing} is not a folder"
        if not why:
            tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        why = f"cannot write in {existing} ({exc.strerror or exc})"
    if why:
        raise _UsageError(f"hessdiff {command}: error: {what}, but it must be a folder hessdiff can write in: "
                          f"{why}.")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, a dashed rule under the header, two spaces between columns."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    lines = [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _version() -> str:
    try:
        return importlib.metadata.version("hessdiff")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
