"""Results tables: statistics, layout, --keep, README regeneration; the README is up to date."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from mwnet_tf import config as config_lib
from mwnet_tf import report
from mwnet_tf.reporting import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_BLOCK = "intro\n<!-- report:{} -->\nwhatever was here\n<!-- /report -->\noutro\n"


def write_run(folder, acc, best=None, wall=100.0, curve=None, **config):
    """A finished run folder with a synthetic results.json and flags.cfg."""
    c = dict(dataset="digits", noise="uniform", rate=0.4, imbalance=1.0, model="mlp",
             method="mwnet", seed=0, epochs=30)
    c.update(config)
    results = {"test_accuracy": acc, "best_test_accuracy": acc + 1 if best is None else best,
               "realized_noise_rate": 0.355 if c["noise"] != "none" else 0.0,
               "wall_seconds_this_session": wall, "train": {"loss": 1.0}, "config": c}
    if curve is not None:
        results["weight_curve"] = curve
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(results, f)
    with open(os.path.join(folder, "flags.cfg"), "w") as f:
        f.write(f"--method={c['method']}\n--seed={c['seed']}\n")
    return str(folder)


def rows_of(table_text):
    """{first cell: [other cells]} of the first Markdown table in the text."""
    lines = [ln for ln in table_text.split("\n\n") if ln.startswith("|")][0].splitlines()
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return {row[0]: row[1:] for row in cells}


def run_main(argv, capsys):
    rc = report.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def digits(tmp_path):
    """runs/reference/digits: ce 3 seeds in two settings, mwnet 3 seeds and 1 seed."""
    table = tmp_path / "reference" / "digits"
    for seed, (ce_u, mw_u, ce_f) in enumerate([(80, 90, 70), (82, 91, 71), (84, 92, 72)]):
        write_run(table / f"u-ce-s{seed}", ce_u, wall=100, method="ce", seed=seed)
        write_run(table / f"u-mw-s{seed}", mw_u, wall=200 + seed, seed=seed,
                  curve={"0": 0.2 + 0.2 * seed, "1": 0.6 + 0.2 * seed, "4": 0.1})
        write_run(table / f"f-ce-s{seed}", ce_f, method="ce", seed=seed, noise="flip")
    write_run(table / "f-mw-s0", 85.123, seed=0, noise="flip", curve={"0": 0.5, "1": 0.2})
    return tmp_path / "reference"


def test_comparison_mean_std_bold_and_seed_count(digits):
    text = report.render("digits", str(digits))
    rows = rows_of(text)
    assert rows["method"] == ["flip 0.4", "uniform 0.4"]
    # Sample std (ddof=1) over the three seeds; best of each column in bold; a cell with
    # another number of seeds than the table's usual 3 says so, a single seed has no std.
    assert rows["ce"] == ["71.00 ± 1.00", "82.00 ± 2.00"]
    assert rows["mwnet"] == ["**85.12** (1 seed)", "**91.00 ± 1.00**"]
    assert list(rows)[2:] == [m for m in config_lib.METHODS if m in ("ce", "mwnet")]
    assert "over 3 seeds (0, 1, 2)" not in text  # one cell has seed 0 only
    details = text.split("\n\n")[-1]
    lines = details.splitlines()
    assert "| uniform 0.4 | mwnet  |     3 |       92.00 ± 1.00 |        201 s |" in details
    assert "35.5%" in details
    # Padded for a terminal: every line of a table has the same length.
    assert len({len(ln) for ln in lines}) == 1


def test_setting_labels_and_no_noise_forms():
    assert report.setting_label("uniform", 0.4, 1.0) == "uniform 0.4"
    assert report.setting_label("none", 0.0, 20.0) == "long-tail 20"
    assert report.setting_label("flip", 0.2, 10.0) == "flip 0.2, long-tail 10"
    assert report.setting_label("none", 0.0, 1.0) == "clean"
    assert report.setting({"noise": "uniform", "rate": 0.0}) == ("none", 0.0, 1.0)
    assert report.setting({"noise": "none", "rate": 0.4, "imbalance": 10}) == ("none", 0.0, 10.0)


def test_method_order_follows_config_then_alphabet(monkeypatch):
    monkeypatch.setattr(config_lib, "METHODS", ("ce", "focal", "mwnet"))
    assert report._method_order({"zeta", "mwnet", "alpha", "ce", "mwnet (meta_scope=head)",
                                 "ce (x=1)"}) == [
        "ce", "ce (x=1)", "mwnet", "mwnet (meta_scope=head)", "alpha", "zeta"]


def test_single_seed_table_and_datasets_in_headers(tmp_path):
    table = tmp_path / "reference" / "mixed"
    write_run(table / "a", 60.0, dataset="cifar10", model="resnet32", noise="none", rate=0.0,
              imbalance=20.0)
    write_run(table / "b", 50.0, dataset="cifar100", model="resnet32", noise="flip", rate=0.2,
              imbalance=10.0, method="ce")
    text = report.render("mixed", str(tmp_path / "reference"))
    rows = rows_of(text)
    assert rows["method"] == ["cifar10 long-tail 20", "cifar100 flip 0.2, long-tail 10"]
    assert rows["mwnet"] == ["60.00", "–"]  # alone in its column: not bold, no seed note
    assert "one seed" in text


def test_weight_curve_means(digits):
    text = report.render("curves:digits", str(digits))
    rows = rows_of(text)
    assert rows["loss"] == ["0", "1", "4"]
    assert rows["uniform 0.4"] == ["0.400", "**0.800**", "0.100"]
    assert rows["flip 0.4 (1 seed)"] == ["**0.500**", "0.200", "–"]
    assert "ce" not in " ".join(rows)  # cross-entropy runs have no weight curve
    assert "within ±0.20" in text.replace("\n", " ")


def test_long_table_block_and_old_usage(digits, capsys):
    assert "| digits | uniform 0.4 | ce | mlp | 3 | 82.00 ± 2.00 | 83.00 ± 2.00 | 100 s |" in (
        report.render("runs:digits", str(digits)))
    runs = sorted(str(p) for p in (digits / "digits").iterdir())
    rc, out, _ = run_main([*runs, str(digits / "nothing-here")], capsys)
    assert rc == 0
    assert "| digits | flip 0.4 | mwnet | mlp | 1 | 85.12 | 86.12 | 100 s |" in out


def test_paper_table_matches_cifar_runs(tmp_path):
    ref = tmp_path / "reference"
    for seed, acc in enumerate([88.0, 89.0]):
        write_run(ref / "cifar" / f"u-mw-s{seed}", acc, dataset="cifar10", model="wrn28_10",
                  epochs=40, seed=seed)
    write_run(ref / "cifar" / "flip-ce", 70.0, dataset="cifar10", model="tiny", epochs=2,
              noise="flip", rate=0.4, method="ce")
    write_run(ref / "lt" / "lt-ce", 55.0, dataset="cifar100", model="resnet32", epochs=100,
              noise="none", rate=0.0, imbalance=10.0, method="ce")
    text = report.render("paper", str(ref))
    tables = {part.split("**")[0]: rows_of(part) for part in text.split("\n\n**")[1:]}
    t2 = tables["Table 2, cifar10"]
    assert t2["method"] == ["clean", "uniform 0.4", "uniform 0.6"]
    assert t2["MW-Net"] == ["94.52 / not run", "89.27 / 88.50 (2 seeds)", "84.07 / not run"]
    assert t2["BaseModel"][1] == "68.07 / not run"
    assert t2["S-Model"] == ["83.79", "79.58", "fails"]  # not implemented: paper only
    assert "Not implemented here (paper only): D2L, MentorNet, S-Model." in text.replace(
        "\n", " ")
    t3 = tables["Table 3, cifar10"]
    assert t3["BaseModel"][2] == "70.77 / 70.00 (tiny, 2 ep)"
    assert tables["Table 1, cifar100"]["BaseModel"][4] == "55.71 / 55.00"
    assert tables["Table 1, cifar10"]["BaseModel"][4] == "86.39 / not run"
    one = report.render("paper:2", str(ref))
    assert "Table 2, cifar100" in one and "Table 1" not in one and "Table 3" not in one


def test_paper_table_without_any_runs(tmp_path):
    text = report.render("paper:3", str(tmp_path / "missing"))
    assert "| BaseModel   | 92.89 / not run | 76.83 / not run | 70.77 / not run |" in text
    assert report.paper_tables()["table4_clothing1m_resnet50"]["results"]["MW-Net"] == 73.72


def test_keep_copies_exactly_two_files(tmp_path, capsys):
    done = write_run(tmp_path / "runs" / "u-mw-s0", 90.0)
    for extra in ("checkpoints/ckpt-1.index", "events.out.tfevents.1", "weight_fn/saved.pb"):
        os.makedirs(os.path.dirname(os.path.join(done, extra)), exist_ok=True)
        open(os.path.join(done, extra), "w").close()
    unfinished = tmp_path / "runs" / "u-ce-s0"
    (unfinished / "checkpoints").mkdir(parents=True)
    ref = tmp_path / "reference"
    rc, out, err = run_main(["--keep", done, str(unfinished), "--table", "digits",
                             "--reference", str(ref)], capsys)
    assert rc == 0
    assert "skipped" in err and "u-ce-s0" in err
    assert sorted(os.listdir(ref)) == ["digits"]
    assert sorted(os.listdir(ref / "digits")) == ["u-mw-s0"]
    assert sorted(os.listdir(ref / "digits" / "u-mw-s0")) == ["flags.cfg", "results.json"]
    for name in ("flags.cfg", "results.json"):
        with open(os.path.join(done, name)) as a, open(ref / "digits" / "u-mw-s0" / name) as b:
            assert a.read() == b.read()
    rc, _, err = run_main(["--keep", str(unfinished), "--table", "digits", "--reference",
                           str(ref)], capsys)
    assert rc == 1  # nothing finished to keep
    rc, _, err = run_main(["--keep", done, "--table", "../up", "--reference", str(ref)], capsys)
    assert (rc, err.startswith("error: bad table name")) == (1, True)


def test_readme_write_and_check(digits, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README_BLOCK.format("digits") + README_BLOCK.format("curves:digits"))
    argv = ["--readme", str(readme), "--reference", str(digits)]
    rc, out, _ = run_main([*argv, "--check"], capsys)
    assert rc == 1 and "-whatever was here" in out
    assert run_main(argv, capsys)[0] == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- report:digits -->\n\nFinal-epoch") and "outro" in text
    assert "**0.800**" in text
    assert run_main([*argv, "--check"], capsys) == (0, "", "")
    # A figure changed by hand, and a changed run, are both caught.
    readme.write_text(text.replace("82.00 ± 2.00", "82.10 ± 2.00"))
    rc, out, _ = run_main([*argv, "--check"], capsys)
    assert rc == 1 and "-| ce     |       71.00 ± 1.00 |     82.10 ± 2.00 |" in out
    assert "+| ce     |       71.00 ± 1.00 |     82.00 ± 2.00 |" in out
    readme.write_text(text)
    write_run(digits / "digits" / "u-ce-s0", 80.3, method="ce", seed=0)
    assert run_main([*argv, "--check"], capsys)[0] == 1
    assert readme.read_text() == text  # --check writes nothing


@pytest.mark.parametrize("block, message", [
    ("nope", "no table folder"),
    ("curves:", "bad table name"),
    ("plot:digits", "unknown report block"),
    ("paper:4", "unknown report block"),
    ("broken", "unreadable results"),
])
def test_errors_are_one_line(digits, tmp_path, capsys, block, message):
    os.makedirs(digits / "broken" / "r")
    (digits / "broken" / "r" / "results.json").write_text("{not json")
    readme = tmp_path / "README.md"
    readme.write_text(README_BLOCK.format(block))
    rc, out, err = run_main(["--readme", str(readme), "--reference", str(digits)], capsys)
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_usage_and_marker_errors(digits, tmp_path, capsys):
    assert run_main([], capsys)[0] == 2
    assert run_main(["--check"], capsys)[0] == 2
    rc, _, err = run_main(["--keep", "x"], capsys)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    readme = tmp_path / "README.md"
    readme.write_text("<!-- report:digits -->\nno end marker\n")
    rc, _, err = run_main(["--readme", str(readme), "--reference", str(digits)], capsys)
    assert rc == 1 and "malformed report markers" in err
    # A marker quoted inside a line of prose is not a block.
    readme.write_text("Tables sit between `<!-- report:NAME -->` and `<!-- /report -->`.\n")
    assert run_main(["--readme", str(readme), "--check"], capsys)[0] == 0


def test_one_cell_of_two_protocols_is_an_error(tmp_path):
    table = tmp_path / "reference" / "t"
    write_run(table / "a", 80.0, seed=0)
    write_run(table / "b", 81.0, seed=1, epochs=10)
    with pytest.raises(report.ReportError, match="differ in epochs"):
        report.render("t", str(tmp_path / "reference"))
    shutil.rmtree(table / "b")
    write_run(table / "c", 81.0, seed=0)
    with pytest.raises(report.ReportError, match="two different runs with seed 0"):
        report.render("t", str(tmp_path / "reference"))


def test_gitignore_tracks_only_results_and_flags_of_reference_runs():
    def ignored(path):
        return subprocess.run(["git", "-C", REPO, "check-ignore", "--no-index", "-q", path],
                              check=False).returncode == 0
    for path in ("runs/reference/digits/mwnet-s0/results.json",
                 "runs/reference/digits/mwnet-s0/flags.cfg", "runs/README.md"):
        assert not ignored(path), path
    for path in ("runs/digits/mwnet-s0/results.json", "runs/reference/README.md",
                 "runs/reference/digits/results.json",
                 "runs/reference/digits/mwnet-s0/checkpoints/ckpt-1.index",
                 "runs/reference/digits/mwnet-s0/events.out.tfevents.1",
                 "runs/reference/digits/mwnet-s0/weight_fn/saved_model.pb",
                 "runs/reference/digits/mwnet-s0/.results.json.x.tmp"):
        assert ignored(path), path


def doc_pages():
    """README.md and every docs/*.md: the pages whose blocks `--pages README.md docs` keeps."""
    return report.pages([os.path.join(REPO, "README.md"), os.path.join(REPO, "docs")])


def test_readme_tables_match_the_kept_runs():
    """Every page's marked tables (README.md, docs/*.md) are exactly what runs/reference/ gives
    (no hand-typed figure). A marker naming a table folder that does not exist fails here too.
    """
    names = [os.path.relpath(p, REPO) for p in doc_pages()]
    assert "README.md" in names and os.path.join("docs", "results.md") in names
    stale = {}
    for page in doc_pages():
        diff = report.readme_diff(page, os.path.join(REPO, "runs", "reference"))
        if diff:
            stale[os.path.relpath(page, REPO)] = diff
    assert not stale, ("pages differ from runs/reference/; regenerate them with "
                       "`python -m mwnet_tf.report --pages README.md docs`:\n"
                       + "".join(stale.values()))


def test_pages_regenerates_and_checks_every_page(digits, tmp_path, capsys):
    """--pages takes files and folders (their *.md); each page is rewritten and checked, and a
    page one level down finds runs/reference in the folder above it."""
    repo = tmp_path / "repo"
    shutil.copytree(digits, repo / "runs" / "reference")
    (repo / "docs").mkdir()
    readme, page = repo / "README.md", repo / "docs" / "results.md"
    readme.write_text(README_BLOCK.format("digits"))
    page.write_text(README_BLOCK.format("curves:digits"))
    (repo / "docs" / "notes.txt").write_text(README_BLOCK.format("no_such_table"))  # not a page
    assert report.page_reference(str(page)) == str(repo / "runs" / "reference")
    rc, out, _ = run_main(["--pages", str(readme), str(repo / "docs"), "--check"], capsys)
    assert rc == 1 and "whatever was here" in out
    rc, out, _ = run_main(["--pages", str(readme), str(repo / "docs")], capsys)
    assert rc == 0 and out.count("rewritten") == 2
    assert "| mwnet" in readme.read_text() and "| loss" in page.read_text()
    assert run_main(["--pages", str(readme), str(repo / "docs"), "--check"], capsys)[0] == 0
    page.write_text(page.read_text().replace("| loss", "| losses"))
    rc, out, _ = run_main(["--readme", str(readme), str(repo / "docs"), "--check"], capsys)
    assert rc == 1 and "results.md" in out and "README.md" not in out
    rc, _, err = run_main(["--pages", str(repo / "nowhere.md")], capsys)
    assert rc == 1 and "no page or folder" in err


def test_only_mwnet_builds_a_weight_net_so_its_flags_may_differ_for_other_methods(tmp_path):
    """tables.WEIGHT_NET is ignored when grouping other methods' runs: that is right only while
    no method outside registry.WEIGHT_NET_METHODS builds the weight-net ("meta") optimizer or
    reads weight_norm."""
    methods_dir = os.path.join(os.path.dirname(os.path.dirname(__file__)), "mwnet_tf", "methods")
    from mwnet_tf.methods import registry
    for name in registry.METHODS:
        if name not in registry.WEIGHT_NET_METHODS:
            with open(os.path.join(methods_dir, name + ".py")) as f:
                text = f.read()
            assert 'new_optimizer("meta")' not in text, name
            assert "options.weight_norm" not in text and "normalized(" not in text, name
    a = {"method": "ce", "seed": 0, "meta_lr": 1e-3, "epochs": 3}
    assert tables._protocol(a) == tables._protocol({**a, "meta_lr": 1e-5, "seed": 1})
    assert tables._protocol({**a, "method": "mwnet"}) != tables._protocol(
        {**a, "method": "mwnet", "meta_lr": 1e-5})
    assert tables._protocol(a) != tables._protocol({**a, "epochs": 4})


def test_runs_kept_before_a_hyperparameter_existed_count_with_its_default(tmp_path):
    assert tables.ADDED_LATER["mwnet"] == {
        "meta_scope": "full", "meta_interval": 1, "weight_fn": None, "meta_layers": 15,
        "famus_k": 4.0, "famus_count_factor": 0.1, "famus_match_factor": 0.1, "famus_lr": 0.1}
    table = tmp_path / "reference" / "t"
    write_run(table / "old", 80.0, seed=0)  # kept before meta_scope and meta_interval existed
    write_run(table / "new", 82.0, seed=1, meta_scope="full", meta_interval=1)
    assert "81.00 ± 1.41" in report.render("t", str(tmp_path / "reference"))
    # an approximation is a row of its own, named after it, after the exact method
    write_run(table / "head", 83.0, seed=2, meta_scope="head", meta_interval=1)
    write_run(table / "k10", 79.0, seed=0, meta_interval=10)
    text = report.render("t", str(tmp_path / "reference"))
    rows = [line.split("|")[1].strip() for line in text.splitlines()
            if line.startswith("| mwnet")]
    assert rows[:3] == ["mwnet", "mwnet (meta_interval=10)", "mwnet (meta_scope=head)"]
    head_row = next(line for line in text.splitlines()
                    if line.startswith("| mwnet (meta_scope=head)"))
    assert "81.00 ± 1.41" in text and "83.00" in head_row
    # Config fields added later: kept runs without them ran with the default
    assert tables.ADDED_FIELDS == {k: getattr(config_lib.Config(), k)
                                   for k in tables.ADDED_FIELDS}
    write_run(table / "bf16", 70.0, seed=0, meta_scope="head", mixed_precision="bfloat16")
    with pytest.raises(report.ReportError, match="differ in mixed_precision"):
        report.render("t", str(tmp_path / "reference"))


def test_bench_blocks_render_kept_benchmark_results_beside_the_goals(tmp_path):
    bench = tmp_path / "reference" / "bench"
    bench.mkdir(parents=True)
    common = {"model": "resnet32", "parameters": 464154, "batch_size": 100,
              "tensorflow": "2.21.0", "keras": "3.15.1", "cpu_count": 2, "date": "d",
              "command": "python -m mwnet_tf.bench", "jit_compile": False,
              "mixed_precision": "none"}
    steps = [{"variant": "ce", "label": "plain (cross-entropy)", "step_s": 1.0, "vs_first": 1.0},
             {"variant": "mwnet", "label": "MW-Net, exact", "step_s": 3.0, "vs_first": 3.0},
             {"variant": "mwnet_head", "label": "MW-Net, --meta_scope=head", "step_s": 1.2,
              "vs_first": 1.2}]
    probes = {v: {"peak_rss": p * 2 ** 20, "peak_rss_before_steps": 500 * 2 ** 20}
              for v, p in (("ce", 1000), ("mwnet", 1500), ("mwnet_head", 1100))}
    memory = {"probes": probes, "rss_ratio": {"ce": 1.0, "mwnet": 1.5, "mwnet_head": 1.1},
              "step_rss_ratio": {"ce": 1.0, "mwnet": 2.0, "mwnet_head": 1.2}}
    (bench / "a.json").write_text(json.dumps({
        **common, "steps": steps, "memory": memory, "plain_step_s": 1.0, "mwnet_step_s": 3.0,
        "ratio": 3.0, "loop": [{"method": "mwnet", "steps_per_call": 10, "step_s": 3.15,
                                "vs_bare_step": 1.05}],
        "profile": {"mwnet": {"op_seconds_per_step": 5.0, "phases": {
            "forward": {"share": 0.3}, "backward": {"share": 0.5},
            "second-order backward": {"share": 0.2}},
            "op_types": [{"type": "Conv2DBackpropFilter", "share": 0.4}]}}}))
    (bench / "b.json").write_text(json.dumps({
        "implementation": "torch_anchor", "plain_step_s": 0.7, "mwnet_step_s": 2.9,
        "ratio": 2.9 / 0.7}))
    ref = str(tmp_path / "reference")
    text = report.render("bench:steps:a", ref)
    assert "| MW-Net, exact" in text and "≤ 2.5x: missed by 20%" in text
    assert "≤ 1.3x: met" in text and "1500 MiB" in text and "≤ 2x: met" in text
    pairs = report.render("bench:pairs", ref)
    assert "PyTorch anchor (b)" in pairs and "4.14x" in pairs and "mwnet_tf (a)" in pairs
    assert "≤ 1.1x: met" in report.render("bench:loop", ref)
    assert "Conv2DBackpropFilter 40%" in report.render("bench:profile:a", ref)
    with pytest.raises(report.ReportError, match="unknown report block"):
        report.render("bench:nothing", ref)
    with pytest.raises(report.ReportError, match="no jit measurements"):
        report.render("bench:jit", ref)
    # python -m mwnet_tf.bench_jit: a row per step, a step XLA could not run "fails"
    (bench / "jit_cnn.json").write_text(json.dumps({
        "kind": "jit", "model": "cnn", "replicas": 2, "date": "d2",
        "rows": [{"variant": "ce", "jit_compile": False, "step_s": 0.03},
                 {"variant": "ce", "jit_compile": True, "step_s": 0.015},
                 {"variant": "mwnet", "jit_compile": False, "step_s": 0.1},
                 {"variant": "mwnet", "jit_compile": True, "error": "InvalidArgumentError"}],
        "jit_ratio": {"ce": 0.5}, "loadavg_before_after": [1.5, 1, 1, 1, 1, 1]}))
    lines = report.render("bench:jit", ref).splitlines()
    ce = next(line for line in lines if "| ce" in line)
    mwnet = next(line for line in lines if "| mwnet" in line)
    assert "cnn, 2 replicas (MirroredStrategy)" in ce and "0.50x" in ce and "1.5" in ce
    assert "0.1000 s" in mwnet and "fails" in mwnet and "(jit_cnn)" in mwnet
    # the other blocks pass over it
    assert report.render("bench:pairs", ref) == pairs


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`mwnet-report --render ... | head -1`: no traceback when the pipe closes."""
    proc = subprocess.Popen([sys.executable, "-m", "mwnet_tf.report", "--render", "digits"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=0)
    proc.stdout.close()  # the reader leaves before the command writes: its write fails
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_flagfiles_mode_checks_and_rewrites_the_defaults_below_the_marker(tmp_path, capsys):
    src = os.path.join(os.path.dirname(os.path.dirname(__file__)), "flags", "quickstart.cfg")
    good = open(src).read()
    (tmp_path / "quickstart.cfg").write_text(good.replace("--model=mlp", "--model=cnn"))
    rc, out, _ = run_main(["--flagfiles", str(tmp_path), "--check"], capsys)
    assert rc == 1 and "-model=cnn" in out and "+model=mlp" in out.replace("+--", "+")
    rc, out, _ = run_main(["--flagfiles", str(tmp_path)], capsys)
    assert rc == 0 and "rewritten" in out and (tmp_path / "quickstart.cfg").read_text() == good
    rc, _, err = run_main(["--flagfiles", str(tmp_path / "none")], capsys)
    assert rc == 1 and "no flagfiles" in err
