"""Run by test_meta.py in its own process: splits the CPU into 2 logical devices, runs one
MW-Net step (float64) under MirroredStrategy and on one device with the same global batch, exits
non-zero unless the classifier, its batch-norm statistics and the weight net agree."""

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


def main() -> int:
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(N, D)).astype("float64"), "y": rng.integers(0, C, N)}
    meta_batch = {"x": rng.normal(size=(NM, D)).astype("float64"), "y": rng.integers(0, C, NM)}
    options = meta.StepOptions(N, NM)

    one = setup()
    step = meta.make_train_step("mwnet", one[0], one[2], options, weight_net=one[1],
                                meta_optimizer=one[3])
    for _ in range(2):
        out_one = step(batch, meta_batch)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        two = setup()
    dstep = meta.make_train_step("mwnet", two[0], two[2], options, weight_net=two[1],
                                 meta_optimizer=two[3], strategy=strategy)
    ds = tf.data.Dataset.from_tensors((batch, meta_batch)).repeat(2)
    for b, mb in strategy.experimental_distribute_dataset(ds):
        out_two = dstep(b, mb)

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
    sys.exit(main())
