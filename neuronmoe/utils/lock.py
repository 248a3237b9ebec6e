"""One lock per stage output folder: two runs never write into the same folder at once.

:func:`output_lock` takes an advisory lock (``filelock.FileLock``: ``flock`` where the filesystem has
it, filelock's own marker fallback elsewhere) on ``<parent>/.<folder>.lock``, next to the folder
rather than inside it, since some stages build their folder under a temporary name and rename it into
place. Who holds it (host, pid, command, start time) is written beside it in
``.<folder>.lock.json``, so that a second run stops with :class:`OutputLockedError` naming the first.

Stale locks: the kernel releases an ``flock`` when its process dies (``kill -9`` included), so a lock
left by a dead run is simply acquired by the next one; when the owner record left beside it names
another process, the takeover is logged (``previous run ... ended without releasing ...``) and the
leftovers of the interrupted run (temporary ``.*.tmp`` files and folders, see
:func:`neuronmoe.utils.io.remove_stale_temps`) are removed: only the lock holder may delete them.

In a distributed run only the main process (``RANK`` 0, or unset) takes the lock; the other ranks
write only what rank 0's run owns.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from neuronmoe.errors import StateError

log = logging.getLogger("neuronmoe.lock")

LOCK_SUFFIX = ".lock"


class OutputLockedError(StateError, OSError):
    """Another run holds the lock of this output folder (the message names it): a :class:`StateError`, and an
    ``OSError`` (the folder is busy) for callers that catch those."""


def lock_paths(folder: str | os.PathLike) -> tuple[Path, Path]:
    """``(lock file, owner record)`` of an output folder: ``<parent>/.<name>.lock`` and ``.<name>.lock.json``."""
    folder = Path(folder).resolve()
    base = folder.parent / f".{folder.name}{LOCK_SUFFIX}"
    return base, base.with_name(base.name + ".json")


def _owner_record() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def read_owner(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The owner record of ``folder``'s lock (the last run that took it), or None."""
    try:
        rec = json.loads(lock_paths(folder)[1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def describe_owner(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "another run (no owner record)"
    return (f"pid {rec.get('pid')} on {rec.get('host')}, started {rec.get('started')}: "
            f"{rec.get('command') or '?'}")


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, what: str | None = None, *, clean: bool = True,
                file: bool = False) -> Iterator[Path | None]:
    """Hold the lock of the output folder ``folder`` for the block; raise :class:`OutputLockedError` if taken.

    ``what`` names the folder in the message (default: its path). With ``clean``, the temporary leftovers
    of an interrupted earlier run (``.<folder>.*.tmp`` beside it, ``.*.tmp`` inside it) are removed once the
    lock is held. ``file``: the output is one file (e.g. an allocation JSON), not a folder. Yields the lock
    file (None on a non-main rank of a distributed run, which takes no lock).
    """
    from filelock import FileLock, Timeout

    from neuronmoe.utils.io import atomic_write_json, remove_stale_temps

    if not _is_main_process():
        yield None
        return
    folder = Path(folder)
    lock_file, owner_file = lock_paths(folder)
    name = what or str(folder)
    blocked = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None and not (file and blocked == folder):
        raise NotADirectoryError(f"{name}: {blocked} is a file, not a folder; move it away or choose another "
                                 f"--output-dir")
    if file and folder.is_dir():
        raise IsADirectoryError(f"{name}: {folder} is a folder, not a file")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = None
    for _attempt in range(20):
        lock = FileLock(str(lock_file), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise OutputLockedError(
                f"{name} is in use by another run ({describe_owner(read_owner(folder))}); wait for it to finish, "
                f"or write to another --output-dir") from None
        if _still_linked(lock, lock_file):
            break
        lock.release()  # the previous holder removed this file as it released it: lock the new one
    else:  # pragma: no cover - twenty releases in a row between two of our system calls
        raise OutputLockedError(f"{name}: could not take its lock {lock_file}; try again")
    try:
        previous = read_owner(folder)
        if previous and not (previous.get("pid") == os.getpid() and previous.get("host") == socket.gethostname()):
            log.warning("%s: the previous run (%s) ended without releasing its lock (killed?); taking it over",
                        name, describe_owner(previous))
        atomic_write_json(owner_file, _owner_record())
        if clean:
            remove_stale_temps(folder)
        yield lock_file
    finally:
        with contextlib.suppress(OSError):
            owner_file.unlink()
        if _still_linked(lock, lock_file) and getattr(getattr(lock, "_context", None), "lock_file_fd", None) is not None:
            with contextlib.suppress(OSError):
                lock_file.unlink()  # while still held: a waiter that opened it re-checks and retries
        lock.release()


def _still_linked(lock: Any, lock_file: Path) -> bool:
    """Whether the path still names the file whose ``flock`` we hold (a releasing holder unlinks it first, so
    a run that opened the old file before that must not count it as the lock). A lock without a descriptor
    (filelock's marker fallback, which manages its own file) counts as linked."""
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    if fd is None:
        return True
    try:
        return os.stat(lock_file).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False
