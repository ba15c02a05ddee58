"""Run by test_mirrored.py in its own process: splits the CPU into 2 logical devices and runs
every two-replica check under MirroredStrategy against one device with the same global batch
(float64), printing one JSON line per check: {"check", "worst", ...}. A check passes when its
worst relative difference is below 1e-9 (1e-12 for the optimizers).

    python tests/mirrored_check.py [CHECK ...]     # default: all of CHECKS

- exact: two MW-Net steps, each its own call (`make_train_step`);
- head: `--meta_scope=head`, two steps in one `compile_loop` call;
- interval: `--meta_interval=2`, four steps in one `compile_loop` call (the trainer's loop);
- sampled: FaMUS's sampler (`--meta_scope=sampled`, its auxiliary losses on) every other
  step, four steps in one `compile_loop` call; the samplers compared too;
- cmwnet: CMW-Net's class-aware weight net (a head per class group) with its normalization
  (`batch_detached`), two steps in one `compile_loop` call;
- cmwnet_sl: CMW-Net-SL's steps (`methods.cmwnet_sl`): the EMA copy's pseudo-labels, mixup,
  its objective and the EMA update, a meta step every other step, four steps in one
  `compile_loop` call; mixup pairs samples within each replica's part of the batch, so the one
  device mixes each half of its batch with the same permutation; the EMA copy compared too;
- l2rw: two L2RW steps (the meta-gradient crosses the all-reduced virtual step, the weights
  are normalized over the global batch);
- optimizers: TorchSGD (Nesterov) and TorchAdam with weight decay applied to per-replica
  gradients equal torch's rules on the summed gradients.
"""

import contextlib
import json
import os
import sys
import traceback

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402

keras.config.set_floatx("float64")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mwnet_tf.methods import layer_gates, optim, steps  # noqa: E402
from mwnet_tf.methods.l2rw import l2rw_step  # noqa: E402
from mwnet_tf.models import build_class_weight_net, build_classifier, build_weight_net  # noqa: E402

N, NM, D, C = 8, 6, 5, 3
CHECKS = ("exact", "head", "interval", "sampled", "cmwnet", "cmwnet_sl", "l2rw", "optimizers")


_STRATEGY = []


def _strategy():
    """One MirroredStrategy for every check: a second one in the same process would reuse
    the first one's collective instance keys (TensorFlow aborts on their shape mismatch)."""
    if not _STRATEGY:
        _STRATEGY.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
        assert _STRATEGY[0].num_replicas_in_sync == 2
    return _STRATEGY[0]


def _batches():
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(N, D)), "y": rng.integers(0, C, N),
             "corrupted": rng.random(N) < 0.5}
    meta_batch = {"x": rng.normal(size=(NM, D)), "y": rng.integers(0, C, NM)}
    return batch, meta_batch


def _worst(pairs, outs, keys):
    worst = 0.0
    for a, b in pairs:
        a, b = a.numpy(), b.numpy()
        worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3))))
    for k in keys:
        a, b = float(outs[0][k]), float(outs[1][k])
        worst = max(worst, abs(a - b) / (abs(a) + 1e-3))
    return worst


def mwnet(variant: str) -> dict:
    batch, meta_batch = _batches()
    batch.pop("corrupted")
    options = steps.StepOptions(N, NM, weight_norm="batch_detached" if variant == "cmwnet"
                                else "batch")
    strategy = _strategy()

    def setup():
        clf = build_classifier("tiny", C, (D,), synchronized_bn=True, seed=0)
        wnet = (build_class_weight_net(np.array([0, 1, 1], np.int32), seed=1)
                if variant == "cmwnet" else build_weight_net(seed=1))
        # torch.optim's rules with coupled L2, applied once to the replica-summed gradients.
        opt = optim.TorchSGD(0.3, momentum=0.9, weight_decay=5e-4)
        meta_opt = optim.TorchAdam(1e-2, weight_decay=1e-4)
        opt.build(clf.trainable_variables)
        meta_opt.build(wnet.trainable_variables)
        gates = (layer_gates.SampledGates(clf.trainable_variables, 4, seed=2)
                 if variant == "sampled" else None)
        return clf, wnet, opt, meta_opt, gates

    def run(models, distributed):
        clf, wnet, opt, meta_opt, gates = models
        ds = tf.data.Dataset.from_tensors((batch, meta_batch)).repeat(4)
        if distributed:
            ds = strategy.experimental_distribute_dataset(ds)
        if variant == "exact":
            step = steps.make_train_step(clf, opt, options, weight_net=wnet,
                                        meta_optimizer=meta_opt,
                                        strategy=strategy if distributed else None)
            for b, mb in list(ds)[:2]:
                out = step(b, mb)
            return out
        head = steps.split_head(clf) if variant == "head" else None
        full = lambda b, mb: steps.mwnet_step(clf, wnet, opt, meta_opt, b, mb,  # noqa: E731
                                             options, head=head, gates=gates)
        if variant in ("interval", "sampled"):
            with strategy.scope() if distributed else contextlib.nullcontext():
                counter = tf.Variable(0, dtype=tf.int64)
            plain = lambda b, mb: {**steps.weighted_step(clf, wnet, opt, b, options),  # noqa
                                   **({"meta_layers": tf.constant(0.0)} if gates else {})}
            full = steps.Alternating(full, plain, 2, counter)
        loop = steps.compile_loop(full, strategy if distributed else None)
        return loop(iter(ds), tf.constant(4 if variant in ("interval", "sampled") else 2))

    one = setup()
    out_one = run(one, False)
    with strategy.scope():
        two = setup()
    out_two = run(two, True)
    pairs = list(zip(one[0].variables + one[1].variables, two[0].variables + two[1].variables))
    if variant == "sampled":
        pairs += list(zip(one[4].variables, two[4].variables))
    worst = _worst(pairs, (out_one, out_two), ("loss_sum", "meta_loss", "weight_sum"))
    moved = max(float(np.max(np.abs(v.numpy() - w.numpy())))
                for v, w in zip(one[1].variables, setup()[1].variables))
    return {"worst": worst, "weight_net_moved": moved}


def cmwnet_sl() -> dict:
    """The replica step of `ClassAwareMetaWeightNetSL` rebuilt from its parts (its
    pseudo-labels and EMA update called as they are), the one-device run mixing each half of
    its batch as a replica mixes its part."""
    from types import SimpleNamespace

    from mwnet_tf.methods.cmwnet_sl import OBJECTIVE, ClassAwareMetaWeightNetSL, mix_lambda, mixup

    batch, meta_batch = _batches()
    batch.pop("corrupted")
    options = steps.StepOptions(N, NM, weight_norm="none")
    strategy = _strategy()

    def setup():
        clf = build_classifier("tiny", C, (D,), synchronized_bn=True, seed=0)
        ema = build_classifier("tiny", C, (D,), synchronized_bn=True, seed=3)
        wnet = build_class_weight_net(np.array([0, 1, 1], np.int32), seed=1)
        opt = optim.TorchSGD(0.3, momentum=0.9, weight_decay=5e-4)
        meta_opt = optim.TorchAdam(1e-2, weight_decay=1e-4)
        opt.build(clf.trainable_variables)
        meta_opt.build(wnet.trainable_variables)
        counter = tf.Variable(0, dtype=tf.int64)
        return clf, wnet, opt, meta_opt, ema, counter

    def run(models, distributed):
        clf, wnet, opt, meta_opt, ema, counter = models
        sl = SimpleNamespace(ema=ema, hp={"sl_ema": 0.9}, ctx=SimpleNamespace(classifier=clf))

        def mix(part, alpha, salt):
            seed = tf.stack([tf.constant(salt, tf.int64), counter])
            lam = mix_lambda(alpha, seed)
            if distributed:  # the method's own mixup, on this replica's part
                return mixup(part, lam, seed + tf.constant([0, 1000], tf.int64))
            halves = []  # the permutation each replica draws, applied to each half
            for h in range(2):
                n = tf.shape(part["y"])[0] // 2
                local = {k: v[h * n:(h + 1) * n] for k, v in part.items()}
                halves.append(mixup(local, lam, seed + tf.constant([0, 1000], tf.int64)))
            n = tf.shape(halves[0]["perm"])[0]
            return {**part, "x": tf.concat([halves[0]["x"], halves[1]["x"]], 0), "lam": lam,
                    "perm": tf.concat([halves[0]["perm"], halves[1]["perm"] + n], 0)}

        def prepared(b):
            pseudo = ClassAwareMetaWeightNetSL._pseudo_labels(sl, b["x"])
            return {**mix(b, 0.5, 11), "pseudo": pseudo}

        def meta(b, mb):
            out = steps.mwnet_step(clf, wnet, opt, meta_opt, prepared(b), mix(mb, 1.0, 13),
                                   options, objective=OBJECTIVE)
            ClassAwareMetaWeightNetSL._update_ema(sl)
            return out

        def plain(b, mb):
            out = steps.weighted_step(clf, wnet, opt, prepared(b), options, objective=OBJECTIVE)
            ClassAwareMetaWeightNetSL._update_ema(sl)
            return {**out, "meta_loss": tf.constant(0.0, out["loss_sum"].dtype)}

        ds = tf.data.Dataset.from_tensors((batch, meta_batch)).repeat(4)
        if distributed:
            ds = strategy.experimental_distribute_dataset(ds)
        loop = steps.compile_loop(steps.Alternating(meta, plain, 2, counter),
                                  strategy if distributed else None)
        return loop(iter(ds), tf.constant(4))

    one = setup()
    out_one = run(one, False)
    with strategy.scope():
        two = setup()
    out_two = run(two, True)
    pairs = [pair for i in (0, 1, 4) for pair in zip(one[i].variables, two[i].variables)]
    worst = _worst(pairs, (out_one, out_two), ("loss_sum", "weight_sum"))
    fresh = setup()
    moved = max(float(np.max(np.abs(v.numpy() - w.numpy())))
                for v, w in zip(one[1].variables, fresh[1].variables))
    ema_moved = max(float(np.max(np.abs(v.numpy() - w.numpy())))
                    for v, w in zip(one[4].trainable_variables, fresh[4].trainable_variables))
    return {"worst": worst, "weight_net_moved": moved, "ema_moved": ema_moved}


def l2rw() -> dict:
    batch, meta_batch = _batches()
    options = steps.StepOptions(N, NM)

    def setup():
        clf = build_classifier("tiny", C, (D,), synchronized_bn=True, seed=0)
        opt = optim.TorchSGD(0.3, momentum=0.9, weight_decay=5e-4)
        opt.build(clf.trainable_variables)
        return clf, opt

    one = setup()
    step = steps.compile_step(lambda b, mb: l2rw_step(one[0], one[1], b, mb, options))
    for _ in range(2):
        out_one = step(batch, meta_batch)
    strategy = _strategy()
    with strategy.scope():
        two = setup()
    dstep = steps.compile_step(lambda b, mb: l2rw_step(two[0], two[1], b, mb, options), strategy)
    ds = tf.data.Dataset.from_tensors((batch, meta_batch)).repeat(2)
    for b, mb in strategy.experimental_distribute_dataset(ds):
        out_two = dstep(b, mb)
    worst = _worst(zip(one[0].variables, two[0].variables), (out_one, out_two),
                   ("loss_sum", "meta_loss", "weight_sum", "weight_sum_corrupted"))
    return {"worst": worst, "weight_sum_corrupted": float(out_one["weight_sum_corrupted"])}


def _replica_apply(strategy, opt, var):
    """A tf.function applying replica r's gradient `grads[r]` to `var` on each replica."""
    @tf.function
    def step(grads):
        def fn():
            ctx = tf.distribute.get_replica_context()
            opt.apply([tf.gather(grads, ctx.replica_id_in_sync_group)], [var])
        strategy.run(fn)
    return step


def optimizers() -> dict:
    import test_optim as t

    rng = np.random.default_rng(7)
    w0 = rng.normal(size=(5,))
    per_replica = rng.normal(size=(t.STEPS, 2, 5))  # step, replica
    strategy = _strategy()
    lrs = [t.lr_at(k) for k in range(t.STEPS)]
    summed = list(per_replica.sum(axis=1))
    cases = [
        (lambda: optim.TorchSGD(t.schedule(), momentum=0.9, nesterov=True, weight_decay=t.WD),
         t.torch_sgd_reference(w0, summed, lrs, 0.9, True, t.WD)),
        (lambda: optim.TorchAdam(t.schedule(), weight_decay=t.WD),
         t.torch_adam_reference(w0, summed, lrs, weight_decay=t.WD)),
    ]
    errors = {}
    for make, want in cases:
        with strategy.scope():
            var = keras.Variable(w0, dtype="float64")
            opt = make()
            opt.build([var])

        step = _replica_apply(strategy, opt, var)
        for k in range(t.STEPS):
            step(tf.constant(per_replica[k]))
        errors[type(opt).__name__] = float(
            np.max(np.abs(var.numpy() - want)) / np.max(np.abs(want - w0)))
    return {"worst": max(errors.values()), "errors": errors}


def main(names) -> int:
    runs = {"exact": lambda: mwnet("exact"), "head": lambda: mwnet("head"),
            "interval": lambda: mwnet("interval"), "sampled": lambda: mwnet("sampled"),
            "cmwnet": lambda: mwnet("cmwnet"), "cmwnet_sl": cmwnet_sl,
            "l2rw": l2rw, "optimizers": optimizers}
    for name in names:
        try:
            out = {"check": name, **runs[name]()}
        except Exception:  # reported to the test of this check; the others still run
            out = {"check": name, "error": traceback.format_exc()}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or CHECKS))
