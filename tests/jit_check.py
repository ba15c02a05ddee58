"""The training steps with and without XLA (`jit_compile`), for tests/test_jit.py: `steps(...)`
runs a few steps of a fresh model and returns its variables and metrics. Run as a script
(by test_jit.py, in its own process) it splits the CPU into 2 logical devices and compares
the two under MirroredStrategy (float64), one JSON line per check: {"check", "worst"} or
{"check", "error"}.

    python tests/jit_check.py [CHECK ...]     # default: mirrored_ce mirrored_mwnet
"""

import json
import sys
import traceback

import numpy as np
import tensorflow as tf

MODELS = {"mlp": (8, 8, 1), "cnn": (28, 28, 1), "resnet32": (8, 8, 3)}
N, NM, C, STEPS = 4, 4, 3, 2


def batches(shape, dtype):
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(N, *shape)).astype(dtype),
             "y": rng.integers(0, C, N).astype("int32")}
    meta_batch = {"x": rng.normal(size=(NM, *shape)).astype(dtype),
                  "y": rng.integers(0, C, NM).astype("int32")}
    return batch, meta_batch


def steps(model: str, method: str, jit: bool, strategy=None):
    """`STEPS` steps of `method` ("ce" or "mwnet") on a fresh `model` (seeded) with the
    trainer's optimizers: (variables of classifier and weight net, metrics of the last step)."""
    import keras

    from mwnet_tf.methods import optim
    from mwnet_tf.methods import steps as steps_lib
    from mwnet_tf.models import build_classifier, build_weight_net

    shape = MODELS[model]
    scope = strategy.scope() if strategy else tf.init_scope()
    with scope:
        clf = build_classifier(model, C, shape, seed=0)
        wnet = build_weight_net(seed=1)
        opt = optim.TorchSGD(0.1, momentum=0.9, weight_decay=5e-4)
        meta_opt = optim.TorchAdam(1e-3, weight_decay=1e-4)
        opt.build(clf.trainable_variables)
        meta_opt.build(wnet.trainable_variables)
    mwnet = {"weight_net": wnet, "meta_optimizer": meta_opt} if method == "mwnet" else {}
    step = steps_lib.make_train_step(clf, opt, steps_lib.StepOptions(N, NM), **mwnet,
                                     strategy=strategy, jit_compile=jit)
    data = batches(shape, keras.config.floatx())
    if strategy:
        ds = tf.data.Dataset.from_tensors(data).repeat()
        data = next(iter(strategy.experimental_distribute_dataset(ds)))
    for _ in range(STEPS):
        out = step(*data)
    return ([v.numpy() for v in clf.variables + wnet.variables],
            {k: float(v) for k, v in out.items()})


def worst(a, b) -> float:
    """The largest relative difference between two `steps` results."""
    (va, oa), (vb, ob) = a, b
    diffs = [float(np.max(np.abs(x - y) / (np.abs(x) + 1e-3))) for x, y in zip(va, vb)]
    diffs += [abs(oa[k] - ob[k]) / (abs(oa[k]) + 1e-3) for k in oa]
    return max(diffs)


def main(names) -> int:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras

    keras.config.set_floatx("float64")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name in names:
        method = name.split("_", 1)[1]
        try:
            plain = steps("mlp", method, False, strategy)
            out = {"check": name, "worst": worst(plain, steps("mlp", method, True, strategy))}
        except Exception:  # reported to the test of this check; the others still run
            out = {"check": name, "error": traceback.format_exc()[-1500:]}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["mirrored_ce", "mirrored_mwnet"]))
