"""The results tables: finished runs loaded and checked, then rendered as Markdown text.

These functions read runs and return text; they write nothing and parse no command line
(`mwnet_tf.report` is the command line, the pages' blocks and --keep, built on them). A run is
`(folder, results)`, its results.json read and checked by `read_results`. The tables:

    comparison  final test accuracy per method (rows) and setting (columns), mean ± sample std
                over seeds, best of each column in bold; then best accuracy, wall time, noise
    curves      the learned weight at each loss (`weight_curve`), mean over seeds
    summarize   one row per setting and method, rendered by `markdown` (the long table)
    paper       paper vs ours for the CIFAR cells of the paper's Tables 1-3, with the paper's
                figures from `mwnet_tf/paper_tables.json` (`paper_tables`) and its method names
                mapped to ours by `PAPER_NAMES`

`comparison` and `curves` list methods in the registry's order (`config.METHODS`), then
alphabetically; the runs of one cell (method and setting) must share one protocol, their
configs differing only in the `VOLATILE` fields (the seed among them), or `ReportError`.
`paper` keeps the paper's rows and takes, of several protocols, the one nearest the paper's.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import textwrap
from collections import Counter, defaultdict

import numpy as np

from mwnet_tf import config as config_lib
from mwnet_tf import files, protocols
from mwnet_tf.errors import ReportError
from mwnet_tf.methods import registry

BENCH = "bench"  # runs/reference/bench: benchmark results (mwnet_tf.reporting.bench_tables)
FIGURES = "figures"  # runs/reference/figures: the docs' PNGs (python -m mwnet_tf.plot)
KEY_FIELDS = ("dataset", "noise", "rate", "imbalance", "model", "method")
# Config fields that do not change what a run computes (the seed among them, averaged over).
VOLATILE = config_lib.VOLATILE
# Method hyperparameters added after runs were kept: a kept run without one ran with its default.
# They are also the method's approximations: runs that change one get a row of their own
# (`row_name`).
ADDED_LATER = {m: {p.name: p.default for p in ps if p.added} for m, ps in registry.PARAMS.items()}
# Config fields added after runs were kept, with the value those runs had.
ADDED_FIELDS = config_lib.ADDED_FIELDS
# The weight net's flags change only the runs of the methods that train one: runs of other
# methods that differ in them alone are one protocol.
WEIGHT_NET = config_lib.WEIGHT_NET
PAPER_NAMES = {"BaseModel": "ce", "Focal Loss": "focal", "Class-Balanced": "class_balanced",
               "Fine-tuning": "fine_tune", "L2RW": "l2rw", "MW-Net": "mwnet",
               "Reed-Hard": "reed_hard", "Self-paced": "self_paced", "Co-teaching": "co_teaching",
               "GLC": "glc"}
# Paper table -> (key in paper_tables.json, label noise of its cells, what it varies).
PAPER_TABLES = {1: ("table1_long_tailed_resnet32", "none", "long-tailed, no label noise"),
                2: ("table2_uniform_noise_wrn28_10", "uniform", "uniform label noise"),
                3: ("table3_flip_noise_resnet32", "flip", "flip label noise")}


# ---------------------------------------------------------------- runs


def read_results(path: str) -> dict:
    """The results.json at `path`, checked for the fields that the tables read."""
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
    paths = [os.path.join(f, files.RESULTS) for f in folders]
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
        if not os.path.exists(os.path.join(run, files.RESULTS)):
            raise ReportError(f"{run} has no results.json")
        runs.append((run, read_results(os.path.join(run, files.RESULTS))))
    if not runs:
        raise ReportError(f"{folder} holds no runs")
    return runs


def load_reference(reference: str) -> list[tuple[str, dict]]:
    """Every kept run of every table (none when the folder does not exist yet); `bench/`
    and `figures/` hold benchmark results and figures, not runs."""
    if not os.path.isdir(reference):
        return []
    return [run for name in sorted(os.listdir(reference))
            if not name.startswith(".") and name not in (BENCH, FIGURES)
            and os.path.isdir(os.path.join(reference, name))
            for run in load_table(os.path.join(reference, name))]


def setting(config: dict) -> tuple[str, float, float]:
    """(noise, rate, imbalance), with a zero rate and noise `none` both meaning no noise;
    human noise is `human <label set>` (its rate is the file's, not a setting)."""
    noise, rate = config["noise"], float(config["rate"])
    if noise == "human":
        noise, rate = f"human {config.get('noise_label_set') or 'file'}", 0.0
    elif noise == "none" or rate == 0:
        noise, rate = "none", 0.0
    return noise, rate, float(config.get("imbalance", 1.0))


def setting_label(noise: str, rate: float, imbalance: float) -> str:
    parts = ([] if noise == "none" else [noise] if noise.startswith("human")
             else [f"{noise} {rate:g}"])
    if imbalance > 1:
        parts.append(f"long-tail {imbalance:g}")
    return ", ".join(parts) or "clean"


def _filled(config: dict) -> dict:
    """The config with the values that runs kept before a field existed ran with."""
    return {**ADDED_FIELDS, **ADDED_LATER.get(config.get("method"), {}), **config}


def protocol_fields(config: dict) -> dict:
    """The config without the seed and the fields that do not change the result."""
    config = _filled(config)
    ignored = _ignored(config)
    return {k: v for k, v in config.items() if k not in ignored}


def _protocol(config: dict) -> str:
    """`protocol_fields` as a key."""
    return json.dumps(protocol_fields(config), sort_keys=True)


def _ignored(config: dict) -> frozenset:
    """Config fields that do not change what a run of this method computes."""
    weight_net = config.get("method") in registry.WEIGHT_NET_METHODS
    return VOLATILE if weight_net else VOLATILE | WEIGHT_NET


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
    c0 = _filled(r0["config"])
    for path, r in rest:
        c = _filled(r["config"])
        differ = sorted(k for k in set(c0) & set(c) - _ignored(c) if c0[k] != c[k])
        if differ:
            raise ReportError(f"{path0} and {path} differ in {', '.join(differ)}: keep them "
                              "in different tables")
    return [r for _, r in sorted(by_seed.values(), key=lambda pr: pr[1]["config"]["seed"])]


def row_name(config: dict) -> str:
    """The method, and the approximations it was run with (rows of their own):
    "mwnet", "mwnet (meta_scope=head)", "mwnet (meta_interval=10)", and a meta set selected
    from the training set: "mwnet (meta_source=selected)"."""
    method = config["method"]
    parts = [f"{k}={config[k]}" for k, default in ADDED_LATER.get(method, {}).items()
             if config.get(k, default) != default and k != "weight_fn"]
    if config.get("meta_source", "trusted") != "trusted":  # a meta set chosen by the method
        parts.append(f"meta_source={config['meta_source']}")
    if config.get("weight_fn"):  # a frozen weight function, named after the run it came from
        source = os.path.basename(os.path.dirname(os.path.normpath(config["weight_fn"])))
        parts.append(f"frozen weight_fn of {source}")
    return f"{method} ({', '.join(parts)})" if parts else method


def _cells(runs: list[tuple[str, dict]]) -> dict[tuple, list[dict]]:
    """Runs per (row, column); a row is a method (`row_name`), a column is (dataset, model,
    noise, rate, imbalance)."""
    groups = defaultdict(list)
    for path, r in runs:
        c = r["config"]
        groups[(row_name(c), (c["dataset"], c["model"], *setting(c)))].append((path, r))
    return {key: _per_seed(members) for key, members in groups.items()}


def _method_order(names) -> list[str]:
    """In `config.METHODS` order, a method's approximations after it; unknown names last."""
    methods = config_lib.METHODS  # looked up at call time (tests replace it)

    def key(name):
        base = name.split(" ", 1)[0]
        return (methods.index(base) if base in methods else len(methods), base, name)
    return sorted(set(names), key=key)


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


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1,
           text_last: bool = False) -> str:
    """A Markdown table padded to align in a terminal; numbers right-aligned, text (the first
    `text_columns` columns, and the last with `text_last`) left-aligned."""
    widths = [max(3, *(len(r[i]) for r in [header, *rows])) for i in range(len(header))]
    text = {i for i in range(len(header)) if i < text_columns or (text_last and
                                                                   i == len(header) - 1)}

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i in text else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = ["-" * w if i in text else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *map(line, rows)])


# ---------------------------------------------------------------- tables


def comparison(runs: list[tuple[str, dict]]) -> str:
    """Final accuracy per method and setting (best per column in bold), then the details."""
    cells = _cells(runs)
    columns = sorted({col for _, col in cells}, key=_column_order)
    methods = _method_order({m for m, _ in cells})
    labels = _column_labels(columns)
    counts = [len(g) for g in cells.values()]  # seeds per cell
    usual = _usual(counts)
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
    over = _over(counts, "mean ± sample std") + which
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
    counts = [len(g) for g in cells.values()]  # seeds per cell
    usual = _usual(counts)
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
    over = _over(counts, "mean")
    if spread:
        over += f" (each seed within ±{math.ceil(spread * 100 - 1e-9) / 100:.2f} of it)"
    return "\n".join([_wrap(f"Learned weight at each loss (`weight_curve` of results.json), "
                            f"{over}; the peak of each row in bold."), "",
                      _table(["loss", *losses], rows)])


def paper_tables() -> dict:
    """The paper's Tables 1-4 (`mwnet_tf/paper_tables.json`)."""
    text = importlib.resources.files("mwnet_tf.reporting").joinpath("paper_tables.json").read_text()
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
    data = paper_tables()
    tables = []  # (title, column labels, rows of (name, [(paper, ours or None, notes)]))
    for number in numbers:
        key, noise, what = PAPER_TABLES[number]
        for dataset, cells in data[key]["results"].items():
            defaults = protocols.paper_defaults(dataset, noise, 10.0 if number == 1 else 1.0)
            protocol = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
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
    counts = [len(ours) for *_, rows in tables for _, cells in rows for _, ours, _ in cells
              if ours]
    usual = _usual(counts)

    def text(value, ours, notes):
        if ours is None:
            return value
        if not ours:
            return f"{value} / not run"
        notes = "; ".join(n for n in (_seeds_note(len(ours), usual), notes) if n)
        mean = np.mean([r["test_accuracy"] for r in ours])
        return f"{value} / {mean:.2f}" + (f" ({notes})" if notes else "")

    missing = sorted({name for *_, rows in tables for name, _ in rows} - set(PAPER_NAMES))
    over = _over(counts, "mean")
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
