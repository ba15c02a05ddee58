"""A tiny Clothing1M folder in the published layout (shared by the test modules)."""

import os

import numpy as np

CLASSES = 14
NAMES = ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
         "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]


def write_clothing1m(root, *, per_class=3, val_per_class=1, test_per_class=1, size=(40, 40),
                     annotations="", seed=0):
    """Writes DIR/{annotation files} (or DIR/annotations/ when `annotations="annotations"`) and
    DIR/images/<d>/<dd>/<name>.jpg as the data set is distributed. The noisy training set has
    `per_class` images per noisy label; the first two of every class also have a clean label
    (the published overlap), one of them a different one. Returns the keys and labels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    notes = os.path.join(root, annotations)
    os.makedirs(notes, exist_ok=True)
    count = [0]

    def image():
        i = count[0]
        count[0] += 1
        key = f"images/{i % 10}/{i % 100:02d}/{i:08x}{seed}.jpg"
        path = os.path.join(root, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        return key

    noisy, clean = {}, {}
    train = []
    for c in range(CLASSES):
        for j in range(per_class):
            key = image()
            train.append(key)
            noisy[key] = c
            if j == 0:
                clean[key] = c
            elif j == 1:
                clean[key] = (c + 1) % CLASSES
    val = [image() for c in range(CLASSES) for _ in range(val_per_class)]
    test = [image() for c in range(CLASSES) for _ in range(test_per_class)]
    for keys in (val, test):
        for i, key in enumerate(keys):
            clean[key] = i % CLASSES
    clean_train = [image() for _ in range(3)]
    for key in clean_train:
        clean[key] = 0

    def write(name, lines):
        with open(os.path.join(notes, name), "w") as f:
            f.write("".join(f"{line}\n" for line in lines))
    write("category_names_eng.txt", NAMES)
    write("noisy_label_kv.txt", [f"{k} {v}" for k, v in noisy.items()])
    write("clean_label_kv.txt", [f"{k} {v}" for k, v in clean.items()])
    write("noisy_train_key_list.txt", train)
    write("clean_train_key_list.txt", clean_train)
    write("clean_val_key_list.txt", val)
    write("clean_test_key_list.txt", test)
    return {"train": train, "val": val, "test": test, "noisy": noisy, "clean": clean}


def write_legacy_h5(path, model, *, include=None):
    """`model`'s weights in Keras 2's `save_weights` HDF5 layout, the layout of Keras'
    published `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`: root attribute
    `layer_names`; per layer a group with attribute `weight_names` (`<layer>/<w>:0`) and the
    datasets at those names. `include(layer)` picks the layers (default: all)."""
    import h5py

    layers = [layer for layer in model.layers if include is None or include(layer)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.path.rsplit('/', 1)[-1]}:0".encode()
                     for w in layer.weights]
            group.attrs["weight_names"] = names
            for name, w in zip(names, layer.weights):
                group.create_dataset(name.decode(), data=np.asarray(w.numpy()))
