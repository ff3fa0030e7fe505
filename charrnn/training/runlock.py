"""The lock that keeps one process at a time training into a run directory.

`fcntl.flock` on the directory's `.lock` file, which names its holder: the kernel drops the lock
of a process that dies, so a stale lock is simply taken over. Others may look without writing
(`RunLock.holder`): a fine-tuning run reading a parent that is still training is refused.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ..errors import CharRNNError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs are not locked there
    fcntl = None

LOCK = ".lock"


class RunInUse(CharRNNError):
    """Another process is training into this run directory."""


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def acquire(self) -> None:
        """Take the lock, or raise RunInUse naming the holder; an OSError if it cannot be
        written."""
        if fcntl is None or self._handle is not None:
            return
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunInUse(
                f"{self.path.parent} is in use by {holder}: wait for it to finish or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"charrnn pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor drops the flock
            self._handle = None

    @staticmethod
    def holder(directory: str | os.PathLike) -> str | None:
        """Who holds the lock of run directory `directory` now, or None. Looks without writing:
        a shared lock is refused while a run holds its exclusive one."""
        path = Path(directory) / LOCK
        if fcntl is None or not path.is_file():
            return None
        try:
            handle = open(path)
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read().strip() or "another process"
        return None
