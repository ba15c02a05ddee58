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
`--reference DIR` replaces `runs/reference` (default: next to the README for --readme, in the
current folder otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.resources
import json
import math
import os
import re
import shutil
import sys
import tempfile
import textwrap
from collections import Counter, defaultdict

import numpy as np

KEY_FIELDS = ("dataset", "noise", "rate", "imbalance", "model", "method")
KEPT_FILES = ("results.json", "flags.cfg")
REFERENCE = os.path.join("runs", "reference")
# Config fields that do not change what a run computes (plus the seed, averaged over).
VOLATILE = frozenset({"seed", "data_dir", "strategy", "jit_compile", "deterministic",
                      "keep_checkpoints", "progress_seconds", "eval_batch_size"})
START = re.compile(r"^<!-- report:(\S+) -->$", re.M)
BLOCK = re.compile(r"^<!-- report:(\S+) -->$(.*?)^<!-- /report -->$", re.M | re.S)
LOOSE_START = re.compile(r"^\s*<!--\s*report", re.M)
LOOSE_END = re.compile(r"^\s*<!--\s*/report", re.M)
PAPER_NAMES = {"BaseModel": "ce", "Focal Loss": "focal", "Class-Balanced": "class_balanced",
               "Fine-tuning": "fine_tune", "L2RW": "l2rw", "MW-Net": "mwnet",
               "Reed-Hard": "reed_hard", "Self-paced": "self_paced", "Co-teaching": "co_teaching",
               "GLC": "glc"}
# Paper table -> (key in paper_tables.json, label noise of its cells, what it varies).
PAPER_TABLES = {1: ("table1_long_tailed_resnet32", "none", "long-tailed, no label noise"),
                2: ("table2_uniform_noise_wrn28_10", "uniform", "uniform label noise"),
                3: ("table3_flip_noise_resnet32", "flip", "flip label noise")}


class ReportError(Exception):
    """A one-line problem with the runs or the README (printed as `error: ...`)."""


# ---------------------------------------------------------------- runs


def read_results(path: str) -> dict:
    try:
        with open(path) as f:
            r = json.load(f)
        float(r["test_accuracy"]), float(r["best_test_accuracy"])
        [r["config"][k] for k in (*KEY_FIELDS, "seed")]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReportError(f"{path}: unreadable results ({type(e).__name__}: {e})") from None
    return r


def load_results(folders: list[str]) -> list[dict]:
    """results.json of every folder that has one (folders without are skipped)."""
    paths = [os.path.join(f, "results.json") for f in folders]
    return [read_results(p) for p in paths if os.path.exists(p)]


def load_table(folder: str) -> list[tuple[str, dict]]:
    """(run folder, results) of every run kept in `folder` (a `runs/reference/<table>`)."""
    if not os.path.isdir(folder):
        raise ReportError(f"no table folder {folder}")
    runs = []
    for name in sorted(os.listdir(folder)):
        run = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isdir(run):
            continue
        if not os.path.exists(os.path.join(run, "results.json")):
            raise ReportError(f"{run} has no results.json")
        runs.append((run, read_results(os.path.join(run, "results.json"))))
    if not runs:
        raise ReportError(f"{folder} holds no runs")
    return runs


def load_reference(reference: str) -> list[tuple[str, dict]]:
    """Every kept run of every table (none when the folder does not exist yet)."""
    if not os.path.isdir(reference):
        return []
    return [run for name in sorted(os.listdir(reference))
            if not name.startswith(".") and os.path.isdir(os.path.join(reference, name))
            for run in load_table(os.path.join(reference, name))]


def setting(config: dict) -> tuple[str, float, float]:
    """(noise, rate, imbalance), with a zero rate and noise `none` both meaning no noise."""
    noise, rate = config["noise"], float(config["rate"])
    if noise == "none" or rate == 0:
        noise, rate = "none", 0.0
    return noise, rate, float(config.get("imbalance", 1.0))


def setting_label(noise: str, rate: float, imbalance: float) -> str:
    parts = [] if noise == "none" else [f"{noise} {rate:g}"]
    if imbalance > 1:
        parts.append(f"long-tail {imbalance:g}")
    return ", ".join(parts) or "clean"


def _protocol(config: dict) -> str:
    """The config without the seed and the fields that do not change the result."""
    return json.dumps({k: v for k, v in config.items() if k not in VOLATILE}, sort_keys=True)


def _per_seed(members: list[tuple[str, dict]]) -> list[dict]:
    """One run per seed, all of one protocol; the same run kept twice counts once."""
    by_seed: dict = {}
    for path, r in members:
        seed = r["config"]["seed"]
        if seed in by_seed:
            other_path, other = by_seed[seed]
            if (_protocol(other["config"]), other["test_accuracy"]) != (
                    _protocol(r["config"]), r["test_accuracy"]):
                raise ReportError(f"{other_path} and {path}: two different runs with seed "
                                  f"{seed} in one cell")
            continue
        by_seed[seed] = (path, r)
    (path0, r0), *rest = by_seed.values()
    for path, r in rest:
        differ = sorted(k for k in set(r0["config"]) & set(r["config"]) - VOLATILE
                        if r0["config"][k] != r["config"][k])
        if differ:
            raise ReportError(f"{path0} and {path} differ in {', '.join(differ)}: keep them "
                              "in different tables")
    return [r for _, r in sorted(by_seed.values(), key=lambda pr: pr[1]["config"]["seed"])]


def _cells(runs: list[tuple[str, dict]]) -> dict[tuple, list[dict]]:
    """Runs per (method, column); a column is (dataset, model, noise, rate, imbalance)."""
    groups = defaultdict(list)
    for path, r in runs:
        c = r["config"]
        groups[(c["method"], (c["dataset"], c["model"], *setting(c)))].append((path, r))
    return {key: _per_seed(members) for key, members in groups.items()}


def _method_order(methods) -> list[str]:
    from mwnet_tf.config import METHODS
    known = [m for m in METHODS if m in methods]
    return known + sorted(set(methods) - set(known))


def _column_order(col: tuple) -> tuple:
    dataset, model, noise, rate, imbalance = col
    return dataset, model, noise != "none", noise, rate, imbalance


def _column_labels(columns: list[tuple]) -> list[str]:
    """Setting labels, prefixed by dataset and model only where these vary in the table."""
    varies = [len({c[i] for c in columns}) > 1 for i in (0, 1)]
    return [" ".join([*(c[i] for i in (0, 1) if varies[i]), setting_label(*c[2:])])
            for c in columns]


def _usual(counts) -> int:
    """The most common number of seeds per cell (the larger one on a tie)."""
    counter = Counter(counts)
    return max(counter, key=lambda n: (counter[n], n)) if counter else 0


def _over(counts: list[int], statistic: str) -> str:
    """How many seeds a table's figures come from, for its caption."""
    usual = _usual(counts)
    if usual > 1:
        return f"{statistic} over {usual} seeds"
    return "one seed" + ("" if set(counts) <= {1} else
                         f" ({statistic} over the seeds where a cell gives their number)")


def _seeds_note(n: int, usual: int) -> str:
    return "" if n == usual else f"{n} seed" + ("s" if n != 1 else "")


def _mean_std(values) -> str:
    values = np.asarray(values, float)
    spread = f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else ""
    return f"{values.mean():.2f}{spread}"


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "–"
    if seconds < 1000:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"


def _wrap(text: str) -> str:
    return textwrap.fill(text, 100, break_long_words=False, break_on_hyphens=False)


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A Markdown table padded to align in a terminal; numbers right-aligned."""
    widths = [max(3, *(len(r[i]) for r in [header, *rows])) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i < text_columns else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = ["-" * w if i < text_columns else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *map(line, rows)])


# ---------------------------------------------------------------- tables


def comparison(runs: list[tuple[str, dict]]) -> str:
    """Final accuracy per method and setting (best per column in bold), then the details."""
    cells = _cells(runs)
    columns = sorted({col for _, col in cells}, key=_column_order)
    methods = _method_order({m for m, _ in cells})
    labels = _column_labels(columns)
    usual = _usual(len(g) for g in cells.values())
    rows = []
    for m in methods:
        row = [m]
        for col in columns:
            runs_ = cells.get((m, col))
            if not runs_:
                row.append("–")
                continue
            means = [float(f"{np.mean([r['test_accuracy'] for r in g]):.2f}")
                     for (_, c), g in cells.items() if c == col]
            text = _mean_std([r["test_accuracy"] for r in runs_])
            if len(means) > 1 and float(text.split()[0]) == max(means):
                text = f"**{text}**"
            note = _seeds_note(len(runs_), usual)
            row.append(f"{text} ({note})" if note else text)
        rows.append(row)
    seed_sets = {tuple(r["config"]["seed"] for r in g) for g in cells.values()}
    seeds = ", ".join(map(str, seed_sets.pop())) if len(seed_sets) == 1 else ""
    which = f" ({'seeds' if ',' in seeds else 'seed'} {seeds})" if seeds else ""
    over = _over([len(g) for g in cells.values()], "mean ± sample std") + which
    details = []
    for col, label in zip(columns, labels):
        for m in methods:
            if (m, col) in cells:
                g = cells[(m, col)]
                wall = np.array([r.get("wall_seconds_this_session", np.nan) for r in g], float)
                noise = [100 * r["realized_noise_rate"] for r in g if "realized_noise_rate" in r]
                details.append([label, m, str(len(g)),
                                _mean_std([r["best_test_accuracy"] for r in g]),
                                _duration(float(np.mean(wall))),
                                f"{np.mean(noise):.1f}%" if noise else "–"])
    return "\n".join([
        _wrap(f"Final-epoch test accuracy (%), {over}; the best of each column in bold."), "",
        _table(["method", *labels], rows), "",
        _wrap("Best-epoch test accuracy (%), wall time of a run (its last session only, if it "
              "was resumed) and realized label noise, means over seeds:"), "",
        _table(["setting", "method", "seeds", "best test acc. (%)", "wall per run",
                "realized noise"], details, text_columns=2)])


def curves(runs: list[tuple[str, dict]]) -> str:
    """Mean learned weight at each loss, one row per method and setting with a weight_curve."""
    cells = {k: [r for r in g if r.get("weight_curve")] for k, g in _cells(runs).items()}
    cells = {k: g for k, g in cells.items() if g}
    if not cells:
        raise ReportError("no run of the table has a weight_curve")
    losses = sorted({loss for g in cells.values() for r in g for loss in r["weight_curve"]},
                    key=float)
    methods = _method_order({m for m, _ in cells})
    columns = sorted({col for _, col in cells}, key=_column_order)
    labels = dict(zip(columns, _column_labels(columns)))
    usual = _usual(len(g) for g in cells.values())
    rows, spread = [], 0.0
    for m in methods:
        for col in (c for c in columns if (m, c) in cells):
            g = cells[(m, col)]
            w = np.array([[r["weight_curve"].get(k, np.nan) for k in losses] for r in g], float)
            have = ~np.isnan(w).all(axis=0)
            mean = np.full(len(losses), np.nan)
            mean[have] = np.nanmean(w[:, have], axis=0)
            if len(g) > 1:
                spread = max(spread, float(np.nanmax(np.abs(w - mean))))
            texts = ["–" if np.isnan(v) else f"{v:.3f}" for v in mean]
            peak = max(t for t in texts if t != "–")
            texts = [f"**{t}**" if t == peak else t for t in texts]
            label = labels[col] if len(methods) == 1 else f"{m}, {labels[col]}"
            note = _seeds_note(len(g), usual)
            rows.append([f"{label} ({note})" if note else label, *texts])
    over = _over([len(g) for g in cells.values()], "mean")
    if spread:
        over += f" (each seed within ±{math.ceil(spread * 100 - 1e-9) / 100:.2f} of it)"
    return "\n".join([_wrap(f"Learned weight at each loss (`weight_curve` of results.json), "
                            f"{over}; the peak of each row in bold."), "",
                      _table(["loss", *losses], rows)])


def paper_tables() -> dict:
    """The paper's Tables 1-4 (`mwnet_tf/paper_tables.json`)."""
    text = importlib.resources.files("mwnet_tf").joinpath("paper_tables.json").read_text()
    return json.loads(text)


def _paper_value(cell: dict, name: str) -> str:
    if name not in cell:
        return "–"
    v = cell[name]
    if v is None:
        return "fails"
    return f"{v[0] if isinstance(v, list) else v:.2f}"


def _ours(runs: list[tuple[str, dict]], dataset: str, method: str, wanted: tuple,
          protocol: dict) -> tuple[list[dict], str]:
    """Our runs for one paper cell: of several protocols, the one nearest the paper's."""
    groups = defaultdict(list)
    for path, r in runs:
        c = r["config"]
        if (c["dataset"], c["method"], setting(c)) == (dataset, method, wanted):
            groups[_protocol(c)].append((path, r))
    if not groups:
        return [], ""

    def deviations(members):
        c = members[0][1]["config"]
        return sum(k in c and json.dumps(c[k]) != json.dumps(v) for k, v in protocol.items())

    chosen = _per_seed(min(groups.values(), key=lambda g: (deviations(g), -len(g))))
    c = chosen[0]["config"]
    notes = [c["model"]] if c["model"] != protocol["model"] else []
    notes += [f"{c['epochs']} ep"] if c.get("epochs", protocol["epochs"]) != protocol[
        "epochs"] else []
    return chosen, ", ".join(notes)


def paper(runs: list[tuple[str, dict]], numbers=(1, 2, 3)) -> str:
    """Paper / ours for the CIFAR cells of the paper's Tables 1-3, one table per dataset."""
    from mwnet_tf.config import paper_defaults
    data = paper_tables()
    tables = []  # (title, column labels, rows of (name, [(paper, ours or None, notes)]))
    for number in numbers:
        key, noise, what = PAPER_TABLES[number]
        for dataset, cells in data[key]["results"].items():
            protocol = {k: list(v) if isinstance(v, tuple) else v for k, v in paper_defaults(
                dataset, noise, 10.0 if number == 1 else 1.0).items()}
            wanted = [("none", 0.0, float(k)) if number == 1 else
                      setting({"noise": noise, "rate": k}) for k in cells]
            rows = []
            for name in dict.fromkeys(n for cell in cells.values() for n in cell):
                rows.append((name, [
                    (_paper_value(cell, name), *(
                        _ours(runs, dataset, PAPER_NAMES[name], want, protocol)
                        if name in PAPER_NAMES else (None, "")))
                    for cell, want in zip(cells.values(), wanted)]))
            tables.append((f"**Table {number}, {dataset}**: {what}, {protocol['model']}, "
                           f"{protocol['epochs']} epochs", [setting_label(*w) for w in wanted],
                           rows))
    usual = _usual(len(ours) for *_, rows in tables for _, cells in rows
                   for _, ours, _ in cells if ours)

    def text(value, ours, notes):
        if ours is None:
            return value
        if not ours:
            return f"{value} / not run"
        notes = "; ".join(n for n in (_seeds_note(len(ours), usual), notes) if n)
        mean = np.mean([r["test_accuracy"] for r in ours])
        return f"{value} / {mean:.2f}" + (f" ({notes})" if notes else "")

    missing = sorted({name for *_, rows in tables for name, _ in rows} - set(PAPER_NAMES))
    over = _over([len(ours) for *_, rows in tables for _, cells in rows
                  for _, ours, _ in cells if ours], "mean")
    lines = [_wrap(
        "Test accuracy (%), paper / ours. Paper: Shu et al. 2019 (Tables 2-3: mean of 5 runs); "
        "`fails`: the paper reports that the method fails. Ours: final-epoch accuracy, "
        f"{over}, of the runs kept under `runs/reference/`; `not run`: none yet; in brackets "
        "our model and epochs where they differ from the paper's."
        + (f" Not implemented here (paper only): {', '.join(missing)}." if missing else ""))]
    for title, labels, rows in tables:
        lines += ["", title, "", _table(["method", *labels],
                                        [[name, *(text(*c) for c in cells)]
                                         for name, cells in rows])]
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The long table of `summarize` rows: one row per setting and method."""
    lines = ["| dataset | noise | method | model | seeds | final test acc. (%) | "
             "best test acc. (%) | wall per run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        noise = f"{r['noise']} {r['rate']:g}" + (f", imbalance {r['imbalance']:g}"
                                                 if r["imbalance"] > 1 else "")
        spread = (lambda s: f" ± {s:.2f}" if np.isfinite(s) else "")
        lines.append(f"| {r['dataset']} | {noise} | {r['method']} | {r['model']} | "
                     f"{len(r['seeds'])} | {r['final_mean']:.2f}{spread(r['final_std'])} | "
                     f"{r['best_mean']:.2f}{spread(r['best_std'])} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


def summarize(results: list[dict]) -> list[dict]:
    """One row per setting: mean and sample std of final and best test accuracy."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        groups[tuple(r["config"][k] for k in KEY_FIELDS)].append(r)
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        final = np.array([r["test_accuracy"] for r in runs])
        best = np.array([r["best_test_accuracy"] for r in runs])
        wall = np.array([r.get("wall_seconds_this_session", np.nan) for r in runs])
        std = (lambda a: float(a.std(ddof=1)) if len(a) > 1 else float("nan"))
        rows.append({**dict(zip(KEY_FIELDS, key)),
                     "seeds": sorted(r["config"]["seed"] for r in runs),
                     "final_mean": float(final.mean()), "final_std": std(final),
                     "best_mean": float(best.mean()), "best_std": std(best),
                     "wall_s": float(np.nanmean(wall))})
    return rows


# ---------------------------------------------------------------- README and --keep


def _table_folder(reference: str, name: str) -> str:
    if not re.fullmatch(r"\w[\w.-]*", name):
        raise ReportError(f"bad table name {name!r} (letters, digits, _ . - only)")
    return os.path.join(reference, name)


def render(block: str, reference: str) -> str:
    """The Markdown of one README block (see the module docstring for the names)."""
    kind, _, name = block.rpartition(":")
    if block == "paper":
        return paper(load_reference(reference))
    if kind == "paper":
        if name not in ("1", "2", "3"):
            raise ReportError(f"unknown report block {block!r} (paper:1, paper:2 or paper:3)")
        return paper(load_reference(reference), (int(name),))
    makers = {"": comparison, "curves": curves,
              "runs": lambda runs: markdown(summarize([r for _, r in runs]))}
    if kind not in makers:
        raise ReportError(f"unknown report block {block!r}")
    folder = _table_folder(reference, name)
    try:
        return makers[kind](load_table(folder))
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
            read_results(os.path.join(run, "results.json"))
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
    results = load_results(args.runs)
    if not results:
        raise ReportError("none of the folders holds a results.json")
    print(markdown(summarize(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
