"""How `train` (--dataset=folder) and `predict` (its folders) walk folders and open image files
(`mwnet_tf.data.image_files`): one rule for both, each problem one line naming the file.

A FIFO is only ever met in a child process with a timeout, so that a regression (a FIFO
opened) fails the test instead of hanging it."""

import json
import os
import pathlib
import struct
import subprocess
import sys
import zlib

import pytest
from test_own_data import make_folder, one_line_error, write_image  # (tests/)

from mwnet_tf.data.custom.from_files import list_image_folder, load_image_folder
from mwnet_tf.data.image_files import MAX_PIXELS, read_header, walk_images
from mwnet_tf.outputs import prediction

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = {"kind": "images", "raw_shape": [6, 5, 3], "class_names": ["cat", "dog"]}


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels (and one empty data chunk)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def make_bad(folder, case):
    """One problem in `folder` (a train/meta layout's class folder train/cat, or any folder):
    returns the pieces of the expected message."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "x.png")
    if case == "fifo":
        os.mkfifo(path)
        return [path, "named pipe (FIFO)", "not a regular file"]
    if case == "symlink loops":
        os.symlink(".", os.path.join(folder, "a"))
        os.symlink(".", os.path.join(folder, "b"))
        return [os.path.join(folder, "a"), "symlink loop"]
    if case == "not an image":
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("my notes")
        return [os.path.join(folder, "notes.txt"), "not an image file"]
    if case == "bomb":
        with open(path, "wb") as f:
            f.write(png_header(100_000, 100_000))
        return [path, "too large", "10000000000 pixels", str(MAX_PIXELS)]
    if case == "large":
        with open(path, "wb") as f:
            f.write(png_header(10_000, 8_000))
        return [path, "10000 x 8000", "too large"]
    if case == "broken symlink":
        os.symlink(os.path.join(folder, "gone.png"), path)
        return [path, "broken symlink"]
    raise AssertionError(case)


def make_layout_bad(root, case):
    """A train/meta layout under `root` with one problem; returns (data folder, message
    pieces). Cases of `make_bad` (in train/cat) and "class outside" (train/cow a symlink to a
    folder outside the data folder), "twice" (train/cat/more a symlink to ../dog)."""
    root = make_folder(root, {"train": 2, "meta": 2})
    cat = os.path.join(root, "train", "cat")
    if case == "class outside":
        outside = f"{root.rstrip(os.sep)}_outside"
        write_image(os.path.join(outside, "0.png"))
        os.symlink(outside, os.path.join(root, "train", "cow"))
        return root, [os.path.join(root, "train", "cow"), "leads out of the data folder"]
    if case == "split outside":
        outside = make_folder(pathlib.Path(f"{root.rstrip(os.sep)}_elsewhere"), {"test": 1})
        os.symlink(os.path.join(outside, "test"), os.path.join(root, "test"))
        return root, [os.path.join(root, "test"), "leads out of the data folder"]
    if case == "twice":
        os.symlink(os.path.join("..", "dog"), os.path.join(cat, "more"))
        return root, [os.path.join(cat, "more"), "again", os.path.join(root, "train", "dog")]
    return root, make_bad(cat, case)


def test_hidden_files_and_folders_are_ignored_and_the_order_is_files_then_folders(tmp_path):
    write_image(tmp_path / "b.png")
    write_image(tmp_path / "A.JPG", "JPEG")
    write_image(tmp_path / "sub" / "c.gif", "GIF")
    write_image(tmp_path / "a_sub" / "d.bmp", "BMP")
    (tmp_path / ".DS_Store.png").write_bytes(b"\0\0\0\1Bud1")  # not an image, hidden
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]")
    (tmp_path / "sub" / "._c.gif").write_bytes(b"\0\5\26\7")
    os.mkfifo(tmp_path / ".pipe.png")  # hidden: not even looked at
    found = [os.path.relpath(p, tmp_path) for p in walk_images(str(tmp_path))]
    assert found == ["A.JPG", "b.png", os.path.join("a_sub", "d.bmp"),
                     os.path.join("sub", "c.gif")]


def test_a_symlink_inside_the_data_folder_is_followed(tmp_path):
    root = make_folder(tmp_path, {"train": 2, "meta": 2})
    write_image(tmp_path / "extra" / "e.png")
    os.symlink(tmp_path / "extra", tmp_path / "train" / "cat" / "more")
    os.symlink(tmp_path / "extra" / "e.png", tmp_path / "meta" / "dog" / "link.png")
    (tmp_path / "train" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden, in a split
    (tmp_path / "meta" / ".thumbs").mkdir()
    names, splits = list_image_folder(root)
    assert names == ("cat", "dog")
    assert len(splits["train"][0]) == 5 and len(splits["meta"][0]) == 5
    assert os.path.join(root, "train", "cat", "more", "e.png") in splits["train"][0]


@pytest.mark.parametrize("case", ["symlink loops", "not an image", "bomb", "large",
                                  "broken symlink", "class outside", "split outside", "twice"])
def test_bad_files_in_a_class_folder_are_one_line_errors_for_train(tmp_path, case):
    root, parts = make_layout_bad(tmp_path / "data", case)
    one_line_error(load_image_folder, root, image_size=8, match=parts)


@pytest.mark.parametrize("case", ["symlink loops", "not an image", "bomb", "large",
                                  "broken symlink"])
def test_bad_files_in_a_folder_are_one_line_errors_for_predict(tmp_path, case):
    write_image(tmp_path / "in" / "ok.png")
    parts = make_bad(tmp_path / "in", case)
    with pytest.raises(prediction.PredictError) as info:
        prediction.read_inputs(str(tmp_path / "in"), SPEC)
    message = str(info.value)
    assert "\n" not in message and all(p in message for p in parts), message


def test_the_pixel_bound_is_checked_from_the_header_and_an_image_at_the_bound_passes(
        tmp_path):
    side = int(MAX_PIXELS ** 0.5)
    (tmp_path / "edge.png").write_bytes(png_header(side, side))
    assert read_header(str(tmp_path / "edge.png")) == ("PNG", "RGB", (side, side))
    (tmp_path / "over.png").write_bytes(png_header(side, side + 1))
    one_line_error(read_header, str(tmp_path / "over.png"), match=["too large"])


CHILD = """
import json, sys
from mwnet_tf.outputs import prediction
from mwnet_tf.data.custom.from_files import load_csv_table, load_image_folder
from mwnet_tf.errors import DataUnavailableError
try:
    if sys.argv[1] == "train":
        load_image_folder(sys.argv[2], image_size=8)
    elif sys.argv[1] == "csv":
        load_csv_table(sys.argv[2], image_size=8)
    elif sys.argv[1] == "predict":
        prediction.read_inputs(sys.argv[2], json.loads(sys.argv[3]))
    else:
        prediction.read_image(sys.argv[2], json.loads(sys.argv[3]))
    print("no error")
except (DataUnavailableError, prediction.PredictError) as e:
    print(e)
"""


def _child(*argv) -> str:
    """The one line a child process prints (an error's message), within 60 s."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_a_fifo_in_a_class_folder_is_refused_for_train_without_opening_it(tmp_path):
    root, parts = make_layout_bad(tmp_path / "data", "fifo")
    message = _child("train", root)
    assert "\n" not in message and all(p in message for p in parts), message


def test_a_fifo_named_by_a_csv_table_is_refused_without_opening_it(tmp_path):
    write_image(tmp_path / "img" / "a.png")
    os.mkfifo(tmp_path / "img" / "x.png")
    (tmp_path / "data.csv").write_text("path,label,split\nimg/a.png,cat,train\n"
                                       "img/x.png,cat,meta\n")
    message = _child("csv", str(tmp_path / "data.csv"))
    assert "line 3" in message and "img/x.png" in message and "not a file" in message, message


def test_a_fifo_in_predicts_folder_or_named_directly_is_refused_without_opening_it(tmp_path):
    write_image(tmp_path / "in" / "ok.png")
    parts = make_bad(tmp_path / "in", "fifo")
    message = _child("predict", str(tmp_path / "in"), json.dumps(SPEC))
    assert "\n" not in message and all(p in message for p in parts), message
    # the same file given to the image reader (a table's row) and as --data_dir itself
    message = _child("image", parts[0], json.dumps(SPEC))
    assert all(p in message for p in parts), message
    message = _child("predict", parts[0], json.dumps(SPEC))
    assert message == f"{parts[0]}: not a regular file or a folder"


def test_a_socket_in_a_class_folder_is_refused(tmp_path):
    import socket
    root = make_folder(tmp_path, {"train": 2, "meta": 2})
    path = os.path.join(root, "train", "cat", "s.png")
    if len(path) > 100:
        pytest.skip("the temporary path is too long for a socket")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        one_line_error(list_image_folder, root, match=[path, "a socket", "not a regular file"])
