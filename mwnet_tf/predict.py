"""Predictions of a trained run's classifier on new inputs, one CSV row per input.

    python -m mwnet_tf.predict RUN --data_dir=INPUTS --out predictions.csv

RUN is a run folder holding `classifier.keras` and `classifier.json`
(`serving.export_classifier`). INPUTS is a CSV table of `path,label[,split]` rows (paths
relative to it, labels the run's classes: the `--dataset=csv` format, split optional), a
folder in the training layout (`train/`, `meta/`, optional `test/` class folders: the
`--dataset=folder` format), both listed by the own-data code, which adds the columns `split`
and `given_class`; an .npz file with an array `x` (or `x_test`): uint8
images [N, H, W, C] of the data set's shape ([N, H, W] for one channel), any size for data
read from files, or float features [N, ...]; or a folder of images searched recursively (PNG,
JPEG, BMP, GIF: the first frame; hidden files and folders ignored, any other file that is not
a regular image file an error, as for `--dataset=folder`: `data.image_files`), each decoded,
converted to the data set's channels and resized to its images (data read from files: as
the test set's, `pipeline.decode_image` for own image folders, resized and center-cropped for
Clothing1M). The inputs are then normalized
as in training. The classifier's config is checked as data (`keras_file`), then it is
read with `keras.saving.load_model(..., safe_mode=True)`: no SavedModel graph and no Python
code from the file are run.

Writes `--out` (replaced atomically, never half-written): `index` (npz) or `path` (relative to
the folder), `predicted_label`, `predicted_class` (the name in classifier.json) and
`probability` (of the predicted class). An `--out` that would replace an input (the input
file, a file in the input folder or one a table lists) or a file of the run folder, by its
path, through a symlink or as a hard link, is refused before anything is read. Bad input is a
one-line `error: ...` and exit 1 (exit 2 for a bad command line or a refused `--out`).
"""

from __future__ import annotations

from absl import flags

from mwnet_tf.cli import commandline
from mwnet_tf.errors import OutputError, PredictError

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("data_dir", None, "The inputs: an .npz file with an array x (or "
                        "x_test), a CSV table (path,label[,split]), a train/meta/test folder "
                        "of class folders, or a folder of images (PNG, JPEG, BMP, GIF; "
                        "recursively).")
    flags.DEFINE_string("out", "predictions.csv", "The CSV file to write.")
    flags.DEFINE_integer("batch_size", 256, "Inputs per forward pass.", lower_bound=1)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or not FLAGS.data_dir:
        commandline.fail("give one run folder and the inputs: python -m mwnet_tf.predict RUN "
                         "--data_dir=FILE.npz|FOLDER --out predictions.csv", 2)
    try:
        # TensorFlow's C++ start-up lines (CUDA probing, oneDNN) silenced, as train's are
        with commandline.quiet_stderr():
            from mwnet_tf.outputs import prediction
            n = prediction.predict(argv[1], FLAGS.data_dir, FLAGS.out, FLAGS.batch_size)
    except OutputError as e:  # (mwnet_tf.errors: importing it loads no TensorFlow)
        commandline.fail(str(e), 2)
    except PredictError as e:
        commandline.fail(str(e), 1)
    print(f"{n} predictions written to {FLAGS.out}")


def run() -> None:
    """The entry point of `python -m mwnet_tf.predict` and of the `mwnet-predict` script."""
    commandline.run(main, define_flags, __doc__)


if __name__ == "__main__":
    run()
