"""CMW-Net: class groups, the class-aware weight net, its exact meta-gradient (Eq. 6 with a
head per class group), its export and read-back, and its runs (stages, resume)."""

import glob
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradients import per_sample_gradients  # (tests/gradients.py)

from mwnet_tf.config import Config
from mwnet_tf.errors import WeightFnError
from mwnet_tf.methods import steps
from mwnet_tf.methods.cmwnet import balanced_subset, class_groups
from mwnet_tf.models import (
    build_class_weight_net,
    build_classifier,
    build_weight_net,
    weight_function,
)
from mwnet_tf.training import loop

N, NM, D, C, LR = 8, 6, 5, 3, 0.3
BIN = os.path.dirname(sys.executable)
SMALL = dict(dataset="digits", model="tiny", noise="uniform", rate=0.4, epochs=2,
             batch_size=100, meta_batch_size=50, lr_decay_epochs=(1,), progress_seconds=0.0,
             seed=3, tensorboard_images=False, method="cmwnet")


# --- class groups ------------------------------------------------------------------------------

def test_class_groups_cluster_long_tail_counts_numbered_from_the_rarest():
    counts = [500, 300, 180, 100, 60, 35, 20, 12, 7, 5]  # CIFAR-10-LT-like, imbalance 100
    groups = class_groups(counts)
    assert groups.dtype == np.int32 and set(groups) == {0, 1, 2}
    assert groups[0] == 2 and groups[-1] == 0  # the largest class in the last group
    assert np.all(np.diff(groups) <= 0)  # groups follow the counts
    # the same counts in another class order: the same group for each count
    order = np.random.default_rng(0).permutation(10)
    np.testing.assert_array_equal(class_groups(np.asarray(counts)[order]), groups[order])
    np.testing.assert_array_equal(class_groups(counts), groups)  # deterministic


def test_class_groups_of_tied_and_near_equal_counts():
    # balanced: every count equal -> one group (one head, MW-Net's function of the loss)
    np.testing.assert_array_equal(class_groups([120] * 10), np.zeros(10))
    # two distinct counts -> two groups, the smaller first
    np.testing.assert_array_equal(class_groups([50, 200, 50, 200]), [0, 1, 0, 1])
    # near-equal but not equal counts are clustered as given (the authors' rule): 3 groups
    near = [178, 180, 179, 181, 177, 182, 180, 176, 183, 179]
    groups = class_groups(near)
    assert set(groups) == {0, 1, 2}
    assert max(np.asarray(near)[groups == 0]) < min(np.asarray(near)[groups == 2])


def test_balanced_subset_cuts_every_class_to_the_smallest_and_is_seeded():
    labels = np.repeat(np.arange(4), [30, 9, 15, 4])
    rows = balanced_subset(labels, 4, seed=1, epoch=0)
    assert np.all(np.bincount(labels[rows], minlength=4) == 4)
    np.testing.assert_array_equal(rows, balanced_subset(labels, 4, seed=1, epoch=0))
    assert not np.array_equal(rows, balanced_subset(labels, 4, seed=1, epoch=1))


def test_the_methods_defaults_are_their_authors_normalization_and_meta_source():
    from mwnet_tf import protocols
    for method, norm in (("mwnet", "batch"), ("cmwnet", "batch_detached"),
                         ("cmwnet_sl", "none")):
        d = protocols.paper_defaults("digits", "uniform", 1.0, method)
        assert d["weight_norm"] == norm
        assert d.get("meta_source", "trusted") == ("selected" if method == "cmwnet_sl"
                                                   else "trusted")
    # a flagfile does not write them: a --method given after it takes its own
    text = protocols.flagfile_text("--dataset=digits\n--method=cmwnet\n")
    assert "--weight_norm" not in text and "--meta_source" not in text


# --- the class-aware weight net ----------------------------------------------------------------

def test_class_weight_net_gives_each_class_its_groups_head():
    groups = np.array([2, 0, 1, 0, 2], np.int32)
    net = build_class_weight_net(groups, seed=4)
    assert len(net.trainable_variables) == 4
    assert [tuple(v.shape) for v in net.trainable_variables] == [(1, 100), (100,), (100, 3), (3,)]
    w1, b1, w2, b2 = (v.numpy().astype(np.float64) for v in net.trainable_variables)
    assert np.abs(w1).max() <= 1.0 and np.abs(w2).max() <= 0.1  # torch.nn.Linear's bounds
    losses = np.array([0.1, 2.0, 0.5, 5.0, 1.0])
    classes = np.array([0, 1, 2, 3, 4])
    got = net([losses[:, None].astype(np.float32), classes[:, None].astype(np.int32)]).numpy()
    h = np.maximum(losses[:, None] @ w1 + b1, 0)
    want = 1 / (1 + np.exp(-(h @ w2 + b2)))[np.arange(5), groups[classes]]
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5)


def _eq6_class_aware(clf, wnet, batch, meta_batch, weight_norm):
    """Eq. 6 from per-sample gradients one by one, each sample's weight the head of its
    class's group: d meta / d theta = -lr sum_j (g_meta . grad_w l_j) d c_j / d theta, with
    c_j = v_j / n ("none"), v_j / sum v ("batch") or v_j / [sum v] with the sum a constant
    ("batch_detached", CMW-Net's code)."""
    tv, ntv, losses, grads_l = per_sample_gradients(clf, batch)
    theta = wnet.trainable_variables
    v, dv = [], []
    for j in range(N):
        with tf.GradientTape() as t2:
            vj = wnet([tf.reshape(tf.stop_gradient(losses[j]), (1, 1)),
                       tf.constant([[int(batch["y"][j])]], tf.int32)])[0, 0]
        v.append(float(vj))
        dv.append([np.zeros(t.shape) if g is None else g.numpy()
                   for g, t in zip(t2.gradient(vj, theta), theta)])
    v = np.array(v)
    s = v.sum()
    dsum = [sum(dv[k][i] for k in range(N)) for i in range(len(theta))]
    if weight_norm == "none":
        coef, dcoef = v / N, [[g / N for g in dv[j]] for j in range(N)]
    elif weight_norm == "batch":
        coef = v / s
        dcoef = [[dv[j][i] / s - v[j] / s ** 2 * dsum[i] for i in range(len(theta))]
                 for j in range(N)]
    else:
        coef, dcoef = v / s, [[g / s for g in dv[j]] for j in range(N)]
    w_hat = [w - LR * sum(coef[j] * grads_l[j][i] for j in range(N)) for i, w in enumerate(tv)]
    with tf.GradientTape() as t3:
        t3.watch(w_hat)
        meta_logits, _ = clf.stateless_call(w_hat, ntv, meta_batch["x"], training=True)
        meta_loss = tf.reduce_mean(steps.per_sample_ce(meta_logits, meta_batch["y"]))
    g_meta = t3.gradient(meta_loss, w_hat)
    dots = [sum(float(tf.reduce_sum(a * b)) for a, b in zip(g_meta, grads_l[j]))
            for j in range(N)]
    return [-LR * sum(dots[j] * dcoef[j][i] for j in range(N)) for i in range(len(theta))]


@pytest.mark.parametrize("weight_norm", ["none", "batch", "batch_detached"])
def test_class_aware_weight_net_gradient_matches_eq6(float64, weight_norm):
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(N, D)), "y": np.array([0, 1, 2, 0, 1, 2, 0, 1])}
    meta_batch = {"x": rng.normal(size=(NM, D)), "y": rng.integers(0, C, NM)}
    clf = build_classifier("tiny", C, (D,), seed=0)
    wnet = build_class_weight_net(np.array([0, 1, 1], np.int32), seed=1)
    expected = _eq6_class_aware(clf, wnet, batch, meta_batch, weight_norm)
    before = [v.numpy().copy() for v in wnet.trainable_variables]
    steps.mwnet_step(clf, wnet, keras.optimizers.SGD(LR), keras.optimizers.SGD(1.0), batch,
                     meta_batch, steps.StepOptions(N, NM, weight_norm=weight_norm))
    got = [b - v.numpy() for b, v in zip(before, wnet.trainable_variables)]
    flat_e = np.concatenate([e.ravel() for e in expected])
    flat_g = np.concatenate([g.ravel() for g in got])
    assert np.linalg.norm(flat_e) > 1e-8
    # both heads learned (each from its own classes' samples)
    assert np.all(np.abs(got[3]) > 1e-12)
    np.testing.assert_allclose(flat_g, flat_e, rtol=1e-6, atol=1e-12 * np.abs(flat_e).max())


def test_detached_normalization_differs_from_the_differentiated_one(float64):
    rng = np.random.default_rng(1)
    batch = {"x": rng.normal(size=(N, D)), "y": rng.integers(0, C, N)}
    meta_batch = {"x": rng.normal(size=(NM, D)), "y": rng.integers(0, C, NM)}
    clf = build_classifier("tiny", C, (D,), seed=0)
    wnet = build_class_weight_net(np.array([0, 1, 2], np.int32), seed=1)
    a = _eq6_class_aware(clf, wnet, batch, meta_batch, "batch")
    b = _eq6_class_aware(clf, wnet, batch, meta_batch, "batch_detached")
    assert not np.allclose(np.concatenate([x.ravel() for x in a]),
                           np.concatenate([x.ravel() for x in b]), rtol=1e-3)


# --- export and read-back ----------------------------------------------------------------------

def test_export_takes_loss_and_class_and_reads_back_as_data(tmp_path):
    groups = np.array([0, 2, 1, 2], np.int32)
    net = build_class_weight_net(groups, seed=5)
    path = weight_function.export_weight_fn(net, str(tmp_path / "weight_fn"))
    losses = np.array([[0.1], [3.0], [1.0], [0.5]], np.float32)
    classes = np.array([[0], [1], [2], [3]], np.int32)
    want = net([losses, classes]).numpy()
    sig = tf.saved_model.load(path).signatures["serving_default"]
    got = sig(losses=tf.constant(losses), classes=tf.constant(classes))["weights"].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    back = weight_function.read_class_weight_net(path, groups)
    np.testing.assert_allclose(back([losses, classes]).numpy(), want, rtol=1e-6)
    # another data's classes, grouped by the same rule: the heads apply to its groups
    other = weight_function.read_class_weight_net(path, np.array([2, 1, 0], np.int32))
    assert other.get_layer("group_select").class_groups.numpy().tolist() == [2, 1, 0]
    with pytest.raises(WeightFnError, match="3 heads.*1 group"):
        weight_function.read_class_weight_net(path, np.zeros(4, np.int32))
    # MW-Net's reader refuses it, and CMW-Net's refuses MW-Net's export, in one line each
    with pytest.raises(WeightFnError, match="--method=cmwnet"):
        weight_function.read_weight_net(path)
    plain = weight_function.export_weight_fn(build_weight_net(seed=1), str(tmp_path / "mw"))
    with pytest.raises(WeightFnError, match="--method=mwnet"):
        weight_function.read_class_weight_net(plain, groups)


@pytest.mark.e2e
def test_saved_model_cli_runs_the_class_aware_export(tmp_path):
    net = build_class_weight_net(np.array([0, 1], np.int32), seed=2)
    path = weight_function.export_weight_fn(net, str(tmp_path / "weight_fn"))
    proc = subprocess.run(
        [os.path.join(BIN, "saved_model_cli"), "run", "--dir", path, "--tag_set", "serve",
         "--signature_def", "serving_default",
         "--input_exprs", "losses=[[0.1],[3.0]];classes=[[0],[1]]"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout.split("Result for output key weights:", 1)[1]
    got = np.array([float(x) for x in out.replace("[", " ").replace("]", " ").split()])
    want = net([np.array([[0.1], [3.0]], np.float32), np.array([[0], [1]], np.int32)]).numpy()
    np.testing.assert_allclose(got, want.ravel(), rtol=1e-5)


# --- runs --------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_long_tail_protocol_plain_stage_then_meta_stage_on_a_balanced_training_subset(
        tmp_path, monkeypatch):
    from mwnet_tf.training import epoch
    seen = []
    real = epoch.make_train_dataset

    def spy(stage_data, **kwargs):
        seen.append((kwargs["epoch"], stage_data, kwargs["with_meta"]))
        return real(stage_data, **kwargs)

    monkeypatch.setattr(epoch, "make_train_dataset", spy)
    config = Config(**dict(SMALL, epochs=3, imbalance=5.0, lr_decay_epochs=(2,),
                           lr_decay_factor=0.01, meta_batch_size=20, tensorboard_images=True,
                           method_params={"cmw_plain_epochs": 2, "cmw_meta_set": "balanced"}))
    logs = []
    results = loop.train_and_evaluate(config, str(tmp_path), log=logs.append)
    assert [s["name"] for s in results["stages"]] == ["plain", "meta"]
    assert [w for _, _, w in seen] == [False, False, True]
    _, meta_data, _ = seen[2]
    train_y = meta_data.train_y
    counts = np.bincount(train_y, minlength=10)
    assert counts.max() > 3 * counts.min()  # a long tail
    # the meta set: training images, every class cut to the smallest class's count
    assert np.isin(meta_data.meta_index, meta_data.train_index).all()
    assert np.all(np.bincount(meta_data.meta_y, minlength=10) == counts.min())
    assert any(" lr 0.001 " in line for line in logs if line.startswith("epoch 3/3"))
    assert len(results["weight_curves"]) == 3
    assert all(set(c) >= {"0", "1", "8"} for c in results["weight_curves"].values())
    assert len(results["class_groups"]) == 10
    assert os.path.isdir(tmp_path / "weight_fn")
    # the per-group functions in results.json and in TensorBoard's figure
    assert len(results["weight_function"]["groups"]) == 3
    tags = set()
    for f in glob.glob(str(tmp_path / "train" / "events.*")):
        for e in tf.compat.v1.train.summary_iterator(f):
            tags.update(v.tag for v in e.summary.value)
    assert "weight_function" in tags


@pytest.mark.e2e
def test_a_frozen_class_aware_weight_function_trains_without_meta_steps(tmp_path):
    """--weight_fn with --method=cmwnet: an exported class-aware net (three heads, as digits'
    near-equal counts make three groups) applied frozen, no meta batch, the heads unchanged."""
    from mwnet_tf.training import epoch
    net = build_class_weight_net(np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], np.int32), seed=7)
    path = weight_function.export_weight_fn(net, str(tmp_path / "wfn"))
    seen = []
    real = epoch.make_train_dataset

    def spy(stage_data, **kwargs):
        seen.append(kwargs["with_meta"])
        return real(stage_data, **kwargs)

    import unittest.mock
    with unittest.mock.patch.object(epoch, "make_train_dataset", spy):
        results = loop.train_and_evaluate(
            Config(**dict(SMALL, method_params={"weight_fn": path})), str(tmp_path / "run"),
            log=lambda s: None)
    assert seen == [False, False]
    assert results["train"]["meta_loss"] == 0.0
    back = weight_function.read_class_weight_net(str(tmp_path / "run" / "weight_fn"),
                                                 np.array(results["class_groups"], np.int32))
    for a, b in zip(net.trainable_variables, back.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.e2e
def test_single_class_is_refused(tmp_path):
    from mwnet_tf.data import load_dataset, make_biased_data
    data = make_biased_data(load_dataset("digits"), noise="none", rate=0.0, meta_per_class=10,
                            seed=0)
    data = data.__class__(**{**data.__dict__, "train_y": np.zeros_like(data.train_y)})
    with pytest.raises(ValueError, match="single class"):
        loop.train_and_evaluate(Config(**SMALL), str(tmp_path / "run"), data=data,
                                log=lambda s: None)


def _stop_at(call):
    """A stop request (signal 15) at the `call`-th poll: a checkpoint inside an epoch."""
    polls = [0]

    def stop():
        polls[0] += 1
        return 15 if polls[0] == call else None
    return stop


@pytest.mark.e2e
@pytest.mark.parametrize("method,params", [
    ("cmwnet", {"cmw_plain_epochs": 1}),
    ("cmwnet_sl", {"sl_warmup_epochs": 1, "sl_meta_interval": 3}),
])
def test_resumed_inside_the_meta_stage_ends_bitwise_equal(tmp_path, method, params):
    from mwnet_tf.errors import Interrupted
    source = "selected" if method == "cmwnet_sl" else "trusted"
    config = Config(**dict(SMALL, method=method, epochs=3, steps_per_call=2,
                           deterministic=True, method_params=params, meta_source=source))
    full = loop.train_and_evaluate(config, str(tmp_path / "full"), log=lambda s: None)
    # 11 steps per epoch, calls of 2: poll 9 is inside epoch 2 (the first meta epoch)
    with pytest.raises(Interrupted):
        loop.train_and_evaluate(config, str(tmp_path / "cut"), log=lambda s: None,
                                stop_requested=_stop_at(9))
    resumed = loop.train_and_evaluate(config, str(tmp_path / "cut"), log=lambda s: None)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["train"] == full["train"]
    assert resumed["weight_curves"] == full["weight_curves"]
    for key in ("ema_test_accuracy",):
        assert resumed.get(key) == full.get(key)
    a = tf.train.load_checkpoint(str(tmp_path / "full" / "checkpoints"))
    b = tf.train.load_checkpoint(str(tmp_path / "cut" / "checkpoints"))
    names = [n for n in a.get_variable_to_shape_map() if "save_counter" not in n
             and n != "_CHECKPOINTABLE_OBJECT_GRAPH"
             and "OPTIMIZER_SLOT" not in n]
    assert any("ema" in n for n in names) == (method == "cmwnet_sl")
    for n in names:
        np.testing.assert_array_equal(a.get_tensor(n), b.get_tensor(n), err_msg=n)
