"""Run by test_meta.py in its own process: splits the CPU into 2 logical devices, runs MW-Net
steps (float64) under MirroredStrategy and on one device with the same global batch, exits
non-zero unless the classifier, its batch-norm statistics and the weight net agree.

    python tests/mirrored_check.py [exact|head|interval]

exact: two steps, each its own call (`make_train_step`); head: `--meta_scope=head`; interval:
`--meta_interval=2`, four steps in one `compile_loop` call (the trainer's loop)."""

import contextlib
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402

keras.config.set_floatx("float64")
import numpy as np  # noqa: E402

from mwnet_tf import meta, optim  # noqa: E402
from mwnet_tf.models import build_classifier, build_weight_net  # noqa: E402

N, NM, D, C = 8, 6, 5, 3


def setup():
    clf = build_classifier("tiny", C, (D,), synchronized_bn=True, seed=0)
    wnet = build_weight_net(seed=1)
    # torch.optim's rules with coupled L2, applied once to the replica-summed gradients.
    opt = optim.TorchSGD(0.3, momentum=0.9, weight_decay=5e-4)
    meta_opt = optim.TorchAdam(1e-2, weight_decay=1e-4)
    opt.build(clf.trainable_variables)
    meta_opt.build(wnet.trainable_variables)
    return clf, wnet, opt, meta_opt


def main(variant: str) -> int:
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(N, D)).astype("float64"), "y": rng.integers(0, C, N)}
    meta_batch = {"x": rng.normal(size=(NM, D)).astype("float64"), "y": rng.integers(0, C, NM)}
    options = meta.StepOptions(N, NM)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2

    def run(models, distributed):
        clf, wnet, opt, meta_opt = models
        ds = tf.data.Dataset.from_tensors((batch, meta_batch)).repeat(4)
        if distributed:
            ds = strategy.experimental_distribute_dataset(ds)
        if variant == "exact":
            step = meta.make_train_step("mwnet", clf, opt, options, weight_net=wnet,
                                        meta_optimizer=meta_opt,
                                        strategy=strategy if distributed else None)
            for b, mb in list(ds)[:2]:
                out = step(b, mb)
            return out
        head = meta.split_head(clf) if variant == "head" else None
        full = lambda b, mb: meta.mwnet_step(clf, wnet, opt, meta_opt, b, mb,  # noqa: E731
                                             options, head=head)
        if variant == "interval":
            with strategy.scope() if distributed else contextlib.nullcontext():
                counter = tf.Variable(0, dtype=tf.int64)
            plain = lambda b, mb: meta.weighted_step(clf, wnet, opt, b, options)  # noqa: E731
            full = meta.Alternating(full, plain, 2, counter)
        loop = meta.compile_loop(full, strategy if distributed else None)
        return loop(iter(ds), tf.constant(4 if variant == "interval" else 2))

    one = setup()
    out_one = run(one, False)
    with strategy.scope():
        two = setup()
    out_two = run(two, True)

    worst = 0.0
    pairs = list(zip(one[0].variables + one[1].variables, two[0].variables + two[1].variables))
    for a, b in pairs:
        a, b = a.numpy(), b.numpy()
        worst = max(worst, float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3))))
    for k in ("loss_sum", "meta_loss", "weight_sum"):
        a, b = float(out_one[k]), float(out_two[k])
        worst = max(worst, abs(a - b) / (abs(a) + 1e-3))
    moved = max(float(np.max(np.abs(v.numpy() - w.numpy())))
                for v, w in zip(one[1].variables, setup()[1].variables))
    print(f"max relative difference {worst:.2e}; weight net moved by {moved:.2e}")
    return 0 if worst < 1e-9 and moved > 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "exact"))
