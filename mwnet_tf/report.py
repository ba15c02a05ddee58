"""Results tables from finished runs, and the README tables regenerated from kept runs.

Runs quoted in the README are kept as `runs/reference/<table>/<run>/results.json` and
`flags.cfg`; git tracks exactly these two files of a run (see `runs/README.md`).

    python -m mwnet_tf.report runs/digits/*                        # long table of any runs
    python -m mwnet_tf.report --keep runs/digits/* --table digits  # keep the finished ones
    python -m mwnet_tf.report --render digits                      # print one block
    python -m mwnet_tf.report --readme README.md                   # rewrite the marked blocks
    python -m mwnet_tf.report --readme README.md --check           # exit 1 and diff if stale

A README block is the text between two marker lines, each on a line of its own:
`<!-- report:NAME -->` and `<!-- /report -->`. NAME is one of
    TABLE         runs/reference/TABLE: final test accuracy per method (rows) and setting
                  (columns), mean ± sample std over seeds, then best accuracy, wall time, noise
    curves:TABLE  the learned weight functions of runs/reference/TABLE, mean over seeds
    runs:TABLE    the long table of runs/reference/TABLE, one row per setting and method
    paper         paper vs ours for the paper's Tables 1-3 (CIFAR), from every kept run;
                  paper:1, paper:2 or paper:3 for one of them
    bench:...     benchmark results kept in runs/reference/bench/*.json (mwnet_tf.bench
                  --json): bench:steps:NAME (time and memory of each step, beside the goals),
                  bench:pairs (plain vs MW-Net step of every ResNet-32 run and the PyTorch
                  anchor), bench:loop, bench:profile:NAME, bench:jit (each step without
                  and with XLA, from mwnet_tf.benchmarking.jit --json)
`--reference DIR` replaces `runs/reference` (default: next to the README for --readme, in the
current folder otherwise).
"""

# The tables themselves are made in mwnet_tf/reporting/tables.py; this module is the command
# line, the README blocks and --keep. (The docstring above is the --help text.)

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import shutil
import sys
import tempfile
from collections import Counter

from mwnet_tf.reporting import tables
from mwnet_tf.reporting.tables import ReportError

# Still importable from here, as before the tables moved to reporting/tables.py (tests use them
# as report.X).
from mwnet_tf.reporting.tables import _method_order as _method_order
from mwnet_tf.reporting.tables import paper_tables as paper_tables
from mwnet_tf.reporting.tables import setting as setting
from mwnet_tf.reporting.tables import setting_label as setting_label

KEPT_FILES = ("results.json", "flags.cfg")
REFERENCE = os.path.join("runs", "reference")
START = re.compile(r"^<!-- report:(\S+) -->$", re.M)
BLOCK = re.compile(r"^<!-- report:(\S+) -->$(.*?)^<!-- /report -->$", re.M | re.S)
LOOSE_START = re.compile(r"^\s*<!--\s*report", re.M)
LOOSE_END = re.compile(r"^\s*<!--\s*/report", re.M)


# ---------------------------------------------------------------- README and --keep


def _table_folder(reference: str, name: str) -> str:
    if not re.fullmatch(r"\w[\w.-]*", name):
        raise ReportError(f"bad table name {name!r} (letters, digits, _ . - only)")
    return os.path.join(reference, name)


def render(block: str, reference: str) -> str:
    """The Markdown of one README block (see the module docstring for the names)."""
    kind, _, name = block.rpartition(":")
    if block.startswith("bench:"):
        from mwnet_tf.reporting import bench_tables
        return bench_tables.render(block[len("bench:"):], _table_folder(reference, "bench"))
    if block == "paper":
        return tables.paper(tables.load_reference(reference))
    if kind == "paper":
        if name not in ("1", "2", "3"):
            raise ReportError(f"unknown report block {block!r} (paper:1, paper:2 or paper:3)")
        return tables.paper(tables.load_reference(reference), (int(name),))
    makers = {"": tables.comparison, "curves": tables.curves,
              "runs": lambda runs: tables.markdown(tables.summarize([r for _, r in runs]))}
    if kind not in makers:
        raise ReportError(f"unknown report block {block!r}")
    folder = _table_folder(reference, name)
    try:
        return makers[kind](tables.load_table(folder))
    except ReportError as e:
        raise ReportError(f"block {block!r}: {e}") from None


def regenerate(text: str, reference: str) -> str:
    """`text` with every marked block rendered anew from the runs under `reference`."""
    blocks = BLOCK.findall(text)
    if not (len(blocks) == len(START.findall(text)) == len(LOOSE_START.findall(text))
            == len(LOOSE_END.findall(text))):
        raise ReportError("malformed report markers: each `<!-- report:NAME -->` line needs a "
                          "`<!-- /report -->` line after it, none nested")
    if any(START.search(body) for _, body in blocks):
        raise ReportError("nested report markers")
    return BLOCK.sub(lambda m: f"<!-- report:{m.group(1)} -->\n\n"
                               f"{render(m.group(1), reference)}\n\n<!-- /report -->", text)


def readme_diff(path: str, reference: str) -> str:
    """Unified diff from the README to its regenerated text ('' when up to date)."""
    old = _read_text(path)
    new = regenerate(old, reference)
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), path,
                                        f"{path} (regenerated)"))


def write_readme(path: str, reference: str) -> bool:
    """Rewrites the marked blocks of the README in place; True when anything changed."""
    old = _read_text(path)
    new = regenerate(old, reference)
    if new != old:
        _atomic_write(path, new.encode())
    return new != old


def keep(run_dirs: list[str], table: str, reference: str) -> tuple[list[str], list[str]]:
    """Copies results.json and flags.cfg of the finished runs to `reference/table/<run>/`.

    Returns the destination folders and the runs skipped for lack of a results.json.
    """
    folder = _table_folder(reference, table)
    finished, skipped = [], []
    for run in run_dirs:
        if not os.path.isdir(run):
            raise ReportError(f"no run folder {run}")
        if os.path.exists(os.path.join(run, "results.json")):
            tables.read_results(os.path.join(run, "results.json"))
            finished.append(run)
        else:
            skipped.append(run)
    names = [os.path.basename(os.path.normpath(run)) for run in finished]
    twice = sorted(n for n, count in Counter(names).items() if count > 1)
    if twice:
        raise ReportError(f"several runs named {twice[0]}: keep them in different tables")
    kept = []
    for run, name in zip(finished, names):
        dest = os.path.join(folder, name)
        os.makedirs(dest, exist_ok=True)
        for f in KEPT_FILES:
            if os.path.exists(os.path.join(run, f)):
                with open(os.path.join(run, f), "rb") as src:
                    _atomic_write(os.path.join(dest, f), src.read())
            elif os.path.exists(os.path.join(dest, f)):
                os.remove(os.path.join(dest, f))  # a stale copy from an earlier run
        kept.append(dest)
    return kept, skipped


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror}") from None


def _atomic_write(path: str, data: bytes) -> None:
    """Writes a temporary file next to `path`, then renames it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if os.path.exists(path):
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


def main(argv: list[str]) -> int:
    parser = _Parser(prog="python -m mwnet_tf.report", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run folders")
    parser.add_argument("--keep", action="store_true",
                        help="copy results.json and flags.cfg of finished RUN_DIRs to "
                             "runs/reference/NAME/")
    parser.add_argument("--table", metavar="NAME", help="the table that --keep adds to")
    parser.add_argument("--readme", metavar="PATH", help="rewrite the marked blocks of PATH")
    parser.add_argument("--check", action="store_true",
                        help="with --readme: write nothing, exit 1 and print a diff if stale")
    parser.add_argument("--render", metavar="BLOCK", help="print one block, e.g. curves:digits")
    parser.add_argument("--reference", metavar="DIR", help="instead of runs/reference")
    try:
        args = parser.parse_intermixed_args(argv)
        modes = [m for m in ("keep", "readme", "render") if getattr(args, m)]
        if len(modes) > 1:
            raise _UsageError(f"--{modes[0]} and --{modes[1]} exclude each other")
        if args.check and not args.readme:
            raise _UsageError("--check needs --readme")
        if bool(args.table) != bool(args.keep):
            raise _UsageError("--keep needs --table NAME, and --table goes with --keep")
        if (args.readme or args.render) and args.runs:
            raise _UsageError("run folders go with --keep or alone")
        if not args.runs and not (args.readme or args.render):
            raise _UsageError("no run folders given (python -m mwnet_tf.report --help)")
    except _UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args) -> int:
    if args.readme:
        reference = args.reference or os.path.join(
            os.path.dirname(os.path.abspath(args.readme)), REFERENCE)
        if args.check:
            diff = readme_diff(args.readme, reference)
            print(diff, end="")
            return 1 if diff else 0
        print(f"{args.readme}: " + ("rewritten" if write_readme(args.readme, reference)
                                    else "up to date"))
        return 0
    reference = args.reference or REFERENCE
    if args.render:
        print(render(args.render, reference))
        return 0
    if args.keep:
        kept, skipped = keep(args.runs, args.table, reference)
        for run in skipped:
            print(f"skipped {run}: no results.json (not finished)", file=sys.stderr)
        for dest in kept:
            print(f"kept {dest}")
        return 0 if kept else 1
    results = tables.load_results(args.runs)
    if not results:
        raise ReportError("none of the folders holds a results.json")
    print(tables.markdown(tables.summarize(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
