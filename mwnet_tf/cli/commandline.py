"""What every command shares: flag parsing
before any heavy import, --help, one-line errors, the flagfiles shipped in the package, and
silence for TensorFlow's C++ start-up lines.

It imports no TensorFlow: a command parses and checks its flags first (`--help`, a misspelled
flag or a bad value answer at once), then imports what it runs in `main`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import sys
from typing import Callable

from absl import app, flags, logging

FLAGS = flags.FLAGS
HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UsageError(Exception):
    """A command line that cannot run: the message is printed as one `error:` line."""


@contextlib.contextmanager
def quiet_stderr():
    """Silences file descriptor 2 unless TF_CPP_MIN_LOG_LEVEL < 2: TensorFlow's C++ start-up
    lines (CUDA probing at import, device discovery) would otherwise bury our one-line errors.
    Python exceptions still reach the caller."""
    if int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) < 2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def shipped_flagfile(name: str) -> str | None:
    """The path of the flagfile `name` shipped in the package (mwnet_tf/flagfiles/NAME.cfg),
    or None when there is none of that name."""
    path = importlib.resources.files("mwnet_tf") / "flagfiles" / f"{name}.cfg"
    return str(path) if path.is_file() else None


def resolve_flagfiles(argv: list[str]) -> list[str]:
    """`--flagfile=NAME` (a bare name: no folder, no .cfg, not a file here) becomes the path of
    the shipped flagfile of that name, so that an installed package finds its own."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if (key in ("--flagfile", "-flagfile") and eq and value and "/" not in value
                and not value.endswith(".cfg") and not os.path.exists(value)):
            arg = f"{key}={shipped_flagfile(value) or value}"
        out.append(arg)
    return out


def flag_sources(argv: list[str]) -> list[dict[str, str]]:
    """Where each flag of a command line was set: one dict (flag name -> value as written) per
    argument given on the command line and per `--flagfile` (its lines, nested flagfiles
    included), in order, so that the last dict naming a flag is where its value came from.
    `argv` is the program's and flags already parsed (`parse`); arguments after `--` and
    values that are not flags are left out."""
    args = resolve_flagfiles(argv[1:argv.index("--")] if "--" in argv else argv[1:])
    out: list[dict[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        key, eq, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-"):
            continue
        if key == "flagfile":
            lines = FLAGS.read_flags_from_files([arg], force_gnu=False)
            out.append({k: v for k, _, v in (a.lstrip("-").partition("=") for a in lines)})
            continue
        if not eq and key in FLAGS and not FLAGS[key].boolean and i < len(args):
            value, i = args[i], i + 1  # `--name value`
        out.append({key: value})
    return out


def help_text(doc: str, full: bool = False) -> str:
    """The module docstring, then the command's flags (all flags with `full`)."""
    modules = FLAGS.flags_by_module_dict()
    own = [f for name, fl in modules.items() if full or not name.startswith("absl.")
           for f in fl]
    lines: list[str] = []
    FLAGS._render_flag_list(own, lines)  # absl's own layout, without a module header
    lines += ["  --flagfile: Read flags from this file, one per line: a path, or the NAME of a",
              "    flagfile shipped in the package (mwnet_tf/flagfiles/NAME.cfg)."]
    return doc.strip() + "\n\nflags:\n" + "\n".join(lines) + "\n"


def parse(argv: list[str], doc: str) -> list[str]:
    """Parses `argv` (argv[0] the program) into FLAGS; returns the arguments left.

    `--help` prints `doc` and the flags and exits 0; a bad flag raises `UsageError`.
    """
    end = argv.index("--") if "--" in argv else len(argv)  # after --: arguments, not flags
    asked = [a for a in argv[1:end] if a in HELP]
    if asked:
        print(help_text(doc, full="--helpfull" in asked), end="")
        sys.exit(0)
    try:
        rest = FLAGS(resolve_flagfiles(argv[:end]) + argv[end:])
    except flags.Error as e:
        message = str(e).splitlines()[0]
        raise UsageError(message.removeprefix("ERROR:: ").replace(
            "Unable to open flagfile", "cannot read the flagfile")) from None
    if "verbosity" in FLAGS and not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # library warnings (tfds) off unless asked for
    return rest


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run(main: Callable[[list[str]], None], define_flags: Callable[[], None], doc: str) -> None:
    """A command's entry point (`python -m mwnet_tf.X` and the `mwnet-X` console script
    alike): defines its flags, parses them with `doc` as the usage text, runs `main`."""
    define_flags()

    def parser(argv: list[str]) -> list[str]:
        try:
            return parse(argv, doc)
        except UsageError as e:
            fail(str(e), 2)

    app.run(main, flags_parser=parser)
