"""Image files on disk as both commands find and open them: the one walk of a folder (`train`'s
`--dataset=folder` class folders, `predict`'s folders) and the checks made before an image
file is opened and decoded.

The rule (docs/data.md, "Image files"):

* Names starting with `.` (hidden files and folders: `.DS_Store`, `.git/`, `._x.png`) are
  ignored everywhere.
* Every other file found must be an image by its extension (`IMAGE_EXTENSIONS`, any case) and
  a regular file; anything else (`notes.txt`, a FIFO, socket or device named `x.png`) is an
  error naming it. Only regular files are opened: the type is checked with `os.stat` first,
  and the file is opened without blocking and checked again (`os.fstat`) before it is read.
* Symlinks are followed inside the data folder only: each one is resolved, one leading out
  of it is an error (as for a CSV table's paths), and a folder is never entered twice (by its
  `(st_dev, st_ino)`): a symlink loop, or two ways to one folder, is an error.
* Before an image is decoded its header is read (PIL reads only the header): the format by its
  first bytes (JPEG, PNG, BMP or GIF) and its declared size, at most `MAX_PIXELS` pixels.
"""

from __future__ import annotations

import os
import re
import stat
import warnings

from mwnet_tf.errors import data_error

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# The largest image read: 8192 x 8192 pixels (67,108,864; a 64-megapixel image decodes to
# 192 MiB of RGB bytes). A header declaring more is refused before anything is decoded.
MAX_PIXELS = 8192 * 8192
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
          (b"GIF89a", "GIF"), (b"BM", "BMP"))
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def has_image_extension(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise data_error(path, f"a broken symlink (to {os.readlink(path)})") from None
        raise data_error(path, "no such file") from None
    except OSError as e:
        raise data_error(path, f"cannot be read ({e.strerror or e})") from None


def regular_file(path: str) -> os.stat_result:
    """`os.stat(path)`, checked to be a regular file (a FIFO is never opened)."""
    st = _stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise data_error(path, f"{_kind(st.st_mode)}, not a regular file: only image files are "
                    "read")
    return st


def resolved_inside(path: str, root: str, real_root: str | None = None) -> str:
    """`path` resolved (symlinks followed), checked to stay inside the data folder `root`
    (`real_root`: its resolved path, when known)."""
    real_root = os.path.realpath(root) if real_root is None else real_root
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_root]) != real_root:
        raise data_error(path, f"leads out of the data folder {root} through a symlink (to {real})")
    return real


def walk_images(folder: str, root: str | None = None, seen: dict | None = None) -> list[str]:
    """The image files under `folder`, sub-folders included, by the module's rule: paths as
    found (`folder` joined with the names), each folder's files (sorted) before its sub-folders
    (sorted). `root` (default `folder`) is the data folder no path may resolve out of; `seen`
    ({(st_dev, st_ino): path} of the folders entered) is shared by the walks of one data
    folder, so that no folder is entered twice. Every problem is a `DataUnavailableError`."""
    root = folder if root is None else root
    real_root = os.path.realpath(root)
    seen = {} if seen is None else seen
    resolved_inside(folder, root, real_root)
    out = []
    stack = [(folder, ())]  # (a folder to enter, the (dev, ino) of the folders above it)
    while stack:
        path, above = stack.pop()
        st = _stat(path)
        key = (st.st_dev, st.st_ino)
        if key in above:
            raise data_error(path, f"a symlink loop: it leads back to {seen[key]}")
        if key in seen:
            raise data_error(path, f"the folder {seen[key]} again (through a symlink): a folder "
                        "may be reached one way only")
        seen[key] = path
        try:
            entries = sorted((e for e in os.scandir(path) if not is_hidden(e.name)),
                             key=lambda e: e.name)
        except OSError as e:
            raise data_error(path, f"cannot be listed ({e.strerror or e})") from None
        files, folders = [], []
        for entry in entries:
            if entry.is_symlink():
                resolved_inside(entry.path, root, real_root)
                mode = _stat(entry.path).st_mode
            elif entry.is_dir(follow_symlinks=False):  # the listing's type: no stat needed
                mode = stat.S_IFDIR
            elif entry.is_file(follow_symlinks=False):
                mode = stat.S_IFREG
            else:
                mode = _stat(entry.path).st_mode
            if stat.S_ISDIR(mode):
                folders.append(entry.path)
            elif not stat.S_ISREG(mode):
                raise data_error(entry.path, f"{_kind(mode)}, not a regular file: only image files "
                            "are read")
            elif not has_image_extension(entry.name):
                raise data_error(entry.path, "not an image file: images are "
                            f"{', '.join(IMAGE_EXTENSIONS)} files (hidden files, '.name', are "
                            "ignored)")
            else:
                files.append(entry.path)
        out.extend(files)
        stack.extend((f, (*above, key)) for f in reversed(folders))
    return out


def read_header(path: str) -> tuple[str, str, tuple[int, int]]:
    """(format, PIL mode, (width, height)) of an image file from its header, before anything is
    decoded: a regular file (checked before and after opening it without blocking), a JPEG,
    PNG, BMP or GIF by its first bytes, a readable header, at most `MAX_PIXELS` pixels."""
    from PIL import Image, UnidentifiedImageError

    regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise data_error(path, f"cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):  # replaced since the os.stat
            raise data_error(path, f"{_kind(mode)}, not a regular file: only image files are read")
        try:
            head = f.read(8)
        except OSError as e:
            raise data_error(path, f"cannot be read ({e.strerror or e})") from None
        fmt = next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)
        if fmt is None:
            raise data_error(path, "not an image: not a JPEG, PNG, BMP or GIF file by its first "
                        "bytes")
        f.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as image:
                    info = image.mode, tuple(int(v) for v in image.size)
        except Image.DecompressionBombError as e:
            declared = re.search(r"\((\d+) pixels\)", str(e))
            raise data_error(path, f"{fmt} image too large: its header declares "
                        f"{int(declared[1]) if declared else 'more than'} pixels, more than "
                        f"the {MAX_PIXELS} pixels an image may have") from None
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
            raise data_error(path, f"damaged {fmt} image: its header cannot be read ({e})") \
                from None
    mode, (width, height) = info
    if width * height > MAX_PIXELS:
        raise data_error(path, f"{fmt} image too large: its header declares {width} x {height} = "
                    f"{width * height} pixels, more than the {MAX_PIXELS} pixels an image may "
                    "have")
    return fmt, mode, (width, height)
