"""Results tables from finished runs, and the tables of the README and docs/ regenerated from
kept runs.

Runs quoted in the docs are kept as `runs/reference/<table>/<run>/results.json` and
`flags.cfg`; git tracks exactly these two files of a run (see `runs/README.md`).

    python -m mwnet_tf.report runs/digits/*                        # long table of any runs
    python -m mwnet_tf.report --keep runs/digits/* --table digits  # keep the finished ones
    python -m mwnet_tf.report --render digits                      # print one block
    python -m mwnet_tf.report --pages README.md docs               # rewrite the marked blocks
    python -m mwnet_tf.report --pages README.md docs --check       # exit 1 and diff if stale
    python -m mwnet_tf.report --flagfiles flags --check           # the flagfiles' defaults

A block is the text between two marker lines, each on a line of its own:
`<!-- report:NAME -->` and `<!-- /report -->`. NAME is one of
    TABLE         runs/reference/TABLE: final test accuracy per method (rows) and setting
                  (columns), mean ± sample std over seeds, then best accuracy, wall time, noise
    curves:TABLE  the learned weight functions of runs/reference/TABLE, mean over seeds
    runs:TABLE    the long table of runs/reference/TABLE, one row per setting and method
    detection:TABLE  how well each method's label_issues.csv ranking finds the wrong labels
                  (AUROC, precision at k) in the runs of runs/reference/TABLE
    memorization:TABLE  per setting of runs/reference/TABLE: accuracy on the noisy training
                  labels, best and final test accuracy, whether it memorizes the noisy labels
    cost:TABLE    accuracy against wall time relative to cross-entropy, per setting: MW-Net's
                  cheap meta steps beside the exact one, and the cheapest within 0.5 points
    spread:TABLE  runs differing in one part of their randomness (--meta_seed, --noise_seed,
                  --init_seed, --order_seed) or in --seed: accuracy of each, mean, std, range
    paper         paper vs ours for the paper's Tables 1-3 (CIFAR), from every kept run;
                  paper:1, paper:2 or paper:3 for one of them
    bench:...     benchmark results kept in runs/reference/bench/*.json (mwnet_tf.bench
                  --json): bench:steps:NAME (time and memory of each step, beside the goals),
                  bench:pairs (plain vs MW-Net step of every ResNet-32 run and the PyTorch
                  anchor), bench:loop, bench:profile:NAME, bench:jit (each step without
                  and with XLA, from mwnet_tf.bench_jit --json)
`--reference DIR` replaces `runs/reference` (default: the one in a page's folder or a folder
above it for --pages, in the current folder otherwise). `--readme` is another name of
`--pages`.
"""

# The tables themselves are made in mwnet_tf/reporting/tables.py; this module is the command
# line, the pages' blocks and --keep. (The docstring above is the --help text.)

from __future__ import annotations

import difflib
import glob
import os
import re
import sys
from collections import Counter

from absl import flags

from mwnet_tf import files, protocols
from mwnet_tf.cli import commandline
from mwnet_tf.reporting import bench_tables, cost, detection, memorization, spread, tables
from mwnet_tf.reporting.tables import ReportError

# Still importable from here, as before the tables moved to reporting/tables.py (tests use them
# as report.X).
from mwnet_tf.reporting.tables import _method_order as _method_order
from mwnet_tf.reporting.tables import paper_tables as paper_tables
from mwnet_tf.reporting.tables import setting as setting
from mwnet_tf.reporting.tables import setting_label as setting_label

KEPT_FILES = (files.RESULTS, files.FLAGS)
FLAGS = flags.FLAGS
REFERENCE = os.path.join("runs", "reference")
START = re.compile(r"^<!-- report:(\S+) -->$", re.M)
BLOCK = re.compile(r"^<!-- report:(\S+) -->$(.*?)^<!-- /report -->$", re.M | re.S)
LOOSE_START = re.compile(r"^\s*<!--\s*report", re.M)
LOOSE_END = re.compile(r"^\s*<!--\s*/report", re.M)


# ---------------------------------------------------------------- pages and --keep


def _table_folder(reference: str, name: str) -> str:
    if not re.fullmatch(r"\w[\w.-]*", name):
        raise ReportError(f"bad table name {name!r} (letters, digits, _ . - only)")
    return os.path.join(reference, name)


def render(block: str, reference: str) -> str:
    """The Markdown of one block (see the module docstring for the names)."""
    kind, _, name = block.rpartition(":")
    if block.startswith("bench:"):
        return bench_tables.render(block[len("bench:"):], _table_folder(reference, "bench"))
    if block == "paper":
        return tables.paper(tables.load_reference(reference))
    if kind == "paper":
        if name not in ("1", "2", "3"):
            raise ReportError(f"unknown report block {block!r} (paper:1, paper:2 or paper:3)")
        return tables.paper(tables.load_reference(reference), (int(name),))
    makers = {"": tables.comparison, "curves": tables.curves, "spread": spread.spread,
              "detection": detection.detection, "memorization": memorization.memorization,
              "cost": cost.cost,
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
    """Unified diff from a page to its regenerated text ('' when up to date)."""
    old = _read_text(path)
    new = regenerate(old, reference)
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), path,
                                        f"{path} (regenerated)"))


def pages(paths: list[str]) -> list[str]:
    """The Markdown pages named by `paths`: a file as given, a folder as its *.md files."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".md"))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise ReportError(f"no page or folder {path}")
    return found


def page_reference(path: str) -> str:
    """`runs/reference` of the repository a page is in: beside the page or in a folder above
    it (docs/*.md are one level down); beside the page when there is none."""
    folder = here = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.isdir(os.path.join(here, REFERENCE)):
            return os.path.join(here, REFERENCE)
        parent = os.path.dirname(here)
        if parent == here:
            return os.path.join(folder, REFERENCE)
        here = parent


def write_readme(path: str, reference: str) -> bool:
    """Rewrites the marked blocks of a page in place; True when anything changed."""
    old = _read_text(path)
    new = regenerate(old, reference)
    if new != old:
        files.write_bytes(path, new.encode())
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
        if os.path.exists(os.path.join(run, files.RESULTS)):
            tables.read_results(os.path.join(run, files.RESULTS))
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
                    files.write_bytes(os.path.join(dest, f), src.read())
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


def define_flags() -> None:
    flags.DEFINE_bool("keep", False, "Copy results.json and flags.cfg of the finished RUN_DIRs "
                      "to runs/reference/NAME/.")
    flags.DEFINE_string("table", None, "The table that --keep adds to (NAME).")
    flags.DEFINE_string("pages", None, "Rewrite the marked blocks of this page PATH (a folder: "
                        "its *.md files); the arguments after it are further pages, e.g. "
                        "--pages README.md docs.")
    flags.DEFINE_alias("readme", "pages")
    flags.DEFINE_string("flagfiles", None, "Rewrite the setting's defaults below the marker "
                        "line of every *.cfg in this folder (DIR), from protocols.paper_defaults.")
    flags.DEFINE_bool("check", False, "With --pages or --flagfiles: write nothing, exit 1 and "
                      "print a diff if stale.")
    flags.DEFINE_string("render", None, "Print one block (BLOCK), e.g. curves:digits.")
    flags.DEFINE_string("reference", None, "Instead of runs/reference (DIR).")


def main(argv: list[str]) -> int:
    """The command on `argv` (the arguments after the program's name); returns the exit
    status: 0, 1 (stale pages with --check, or a report error) or 2 (a bad command line)."""
    if "keep" not in FLAGS:
        define_flags()
    FLAGS.unparse_flags()  # each call parses afresh (tests call it several times)
    try:
        runs = commandline.parse(["mwnet_tf.report", *argv], __doc__)[1:]
        _check_modes(runs)
    except commandline.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _run(runs)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _check_modes(runs: list[str]) -> None:
    modes = [m for m in ("keep", "pages", "render", "flagfiles") if FLAGS[m].value]
    if len(modes) > 1:
        raise commandline.UsageError(f"--{modes[0]} and --{modes[1]} exclude each other")
    if FLAGS.check and not (FLAGS.pages or FLAGS.flagfiles):
        raise commandline.UsageError("--check needs --pages (or --readme) or --flagfiles")
    if bool(FLAGS.table) != FLAGS.keep:
        raise commandline.UsageError("--keep needs --table NAME, and --table goes with --keep")
    if FLAGS.render and runs:
        raise commandline.UsageError("run folders go with --keep or alone")
    if FLAGS.flagfiles and runs:
        raise commandline.UsageError("--flagfiles takes one folder, no run folders")
    if not runs and not (FLAGS.pages or FLAGS.render or FLAGS.flagfiles):
        raise commandline.UsageError("no run folders given (python -m mwnet_tf.report --help)")


def _flagfiles(folder: str, check: bool) -> int:
    """Each *.cfg of `folder` with its defaults made anew (`protocols.flagfile_text`)."""
    paths = sorted(glob.glob(os.path.join(folder, "*.cfg")))
    if not paths:
        raise ReportError(f"{folder}: no flagfiles (*.cfg)")
    stale = False
    for path in paths:
        old = _read_text(path)
        new = protocols.flagfile_text(old)
        if check:
            diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                path, path + " (made anew)"))
            print(diff, end="")
            stale = stale or bool(diff)
        elif new != old:
            files.write_text(path, new)
            print(f"{path}: rewritten")
    return 1 if stale else 0


def _run(runs: list[str]) -> int:
    if FLAGS.flagfiles:
        return _flagfiles(FLAGS.flagfiles, FLAGS.check)
    if FLAGS.pages:
        stale = False
        for page in pages([FLAGS.pages, *runs]):  # after --pages: pages
            reference = FLAGS.reference or page_reference(page)
            if FLAGS.check:
                diff = readme_diff(page, reference)
                print(diff, end="")
                stale = stale or bool(diff)
            else:
                print(f"{page}: " + ("rewritten" if write_readme(page, reference)
                                     else "up to date"))
        return 1 if stale else 0
    reference = FLAGS.reference or REFERENCE
    if FLAGS.render:
        print(render(FLAGS.render, reference))
        return 0
    if FLAGS.keep:
        kept, skipped = keep(runs, FLAGS.table, reference)
        for run in skipped:
            print(f"skipped {run}: no results.json (not finished)", file=sys.stderr)
        for dest in kept:
            print(f"kept {dest}")
        return 0 if kept else 1
    results = tables.load_results(runs)
    if not results:
        raise ReportError("none of the folders holds a results.json")
    print(tables.markdown(tables.summarize(results)))
    return 0


def run() -> None:
    """The entry point of `python -m mwnet_tf.report` and of the `mwnet-report` script."""
    try:
        code = main(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, a shell's status for a writer whose reader left
    sys.exit(code)


if __name__ == "__main__":
    run()
