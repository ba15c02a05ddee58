"""The memorization block: runs grouped by setting, and whether each setting memorizes."""

import pytest

from mwnet_tf import report
from mwnet_tf.errors import ReportError
from mwnet_tf.reporting.memorization import memorization, memorizes


def _run(train, best, final, seed=0, n=2000, noise=0.4, wall=60.0, **config):
    c = dict(method="ce", dataset="npz", noise="flip", rate=0.4, imbalance=1.0, model="mlp",
             epochs=60, lr_decay_epochs=[40, 50], weight_decay=0.0, augment=False, seed=seed,
             data_dir=f"/data/n{n}-s{seed}/fashion.npz")
    c.update(config)
    return (f"run-{seed}", {"config": c, "train": {"accuracy": train},
                            "best_test_accuracy": best, "test_accuracy": final,
                            "realized_noise_rate": noise, "own_data": {"train": n},
                            "wall_seconds_this_session": wall})


def _rows(text):
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")][2:]


def test_a_run_memorizes_when_it_fits_wrong_labels_and_its_test_accuracy_drops():
    assert memorizes(_run(99.0, 70.0, 66.0)[1])
    assert not memorizes(_run(59.0, 70.0, 60.0)[1])  # fits no more than the clean 60%
    assert not memorizes(_run(99.0, 70.0, 67.5)[1])  # falls 2.5 points only
    assert memorizes(_run(75.0, 70.0, 60.0, noise=0.3)[1])  # 70% of the labels are right
    kept = _run(75.0, 70.0, 60.0)[1]
    kept["kept_noise_rate"] = 0.2  # trains on a kept part, 80% right: 75% fits no wrong label
    assert not memorizes(kept)


def test_settings_are_rows_seeds_and_data_paths_are_not():
    runs = [_run(99.0, 70.0, 60.0, seed=s) for s in (0, 1, 2)]  # one setting, three files
    runs += [_run(90.0, 72.0, 71.0, seed=s, weight_decay=5e-4) for s in (0, 1)]
    runs += [_run(99.0, 75.0, 70.0, n=5000), _run(80.0, 75.0, 74.0, n=5000, seed=1)]
    rows = _rows(memorization(runs))
    header = [c.strip() for c in next(line for line in memorization(runs).splitlines()
                                      if line.startswith("|")).strip("|").split("|")]
    assert header[:3] == ["train images", "weight decay", "seeds"]  # only what varies
    assert [r[:3] for r in rows] == [["2000", "0", "0,1,2"], ["2000", "0.0005", "0,1"],
                                     ["5000", "0", "0,1"]]
    memorize = header.index("memorizes")
    assert [r[memorize] for r in rows] == ["yes", "no", "1 of 2 seeds"]
    assert rows[0][header.index("drop")] == "10.00 ± 0.00"
    assert rows[0][header.index("clean labels (%)")] == "60.0"
    assert rows[0][header.index("minutes per run")] == "1.0"


def test_the_same_seed_twice_in_one_setting_is_refused():
    with pytest.raises(ReportError, match="seed 0"):
        memorization([_run(99.0, 70.0, 60.0), _run(98.0, 70.0, 61.0)])


def test_the_block_renders_from_a_reference_folder(tmp_path):
    import json
    for i, (_, r) in enumerate([_run(99.0, 70.0, 60.0, seed=s) for s in (0, 1)]):
        folder = tmp_path / "mem" / f"run{i}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(r))
    text = report.render("memorization:mem", str(tmp_path))
    assert _rows(text)[0][0] == "2000" and "yes" in _rows(text)[0]


def test_a_built_in_run_trains_on_all_images_and_comes_last():
    built_in = _run(54.0, 85.0, 85.0, dataset="fashion_mnist", model="cnn", weight_decay=5e-4)
    del built_in[1]["own_data"]
    text = memorization([built_in, _run(99.0, 70.0, 60.0)])
    rows = _rows(text)
    assert [r[:3] for r in rows] == [["2000", "npz", "mlp"], ["all", "fashion_mnist", "cnn"]]
    assert rows[1][-2] == "no"
