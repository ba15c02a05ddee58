"""One process per run folder: a lock file `<workdir>/.lock` holding the owner's PID and host.

A second process is refused while the owner lives; a lock whose process is gone (same host,
no such PID) is taken over. On another host liveness cannot be checked: such a lock is
refused with the command that removes it.
"""

from __future__ import annotations

import json
import os
import socket
import time

from mwnet_tf import files
from mwnet_tf.errors import LockError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class RunLock:
    """`acquire()` takes the lock of `workdir` (which must exist) or raises `LockError`;
    `release()` removes it if it is still ours."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, files.LOCK)
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        self.held = False

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._take_over()
        else:
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
        self.held = True
        return self

    def _take_over(self) -> None:
        owner = _owner(self.path)
        if owner is not None:
            pid, host = owner.get("pid"), owner.get("host")
            if host != self.me["host"]:
                raise LockError(f"{os.path.dirname(self.path)} is in use by process {pid} on "
                                f"{host}; if that run is gone, remove {self.path}")
            if isinstance(pid, int) and _alive(pid):
                since = time.strftime("%Y-%m-%d %H:%M",
                                      time.localtime(owner.get("since", 0)))
                raise LockError(f"{os.path.dirname(self.path)} is in use by process {pid} "
                                f"(since {since}); wait for it or pick another --workdir")
        # the owner is gone (or never finished writing the lock): take it over
        files.write_json(self.path, self.me)
        if _owner(self.path) != self.me:  # another process took it over at the same moment
            raise LockError(f"{os.path.dirname(self.path)} was just taken by another process")

    def release(self) -> None:
        if self.held and _owner(self.path) == self.me:
            os.remove(self.path)
        self.held = False
