"""Atomic writes: a file is either absent or complete, never half-written.

Every stage writes through these helpers: data goes to a temporary file in the same
folder, is flushed and fsync'ed, then renamed over the target (rename is atomic on POSIX).
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Type

from neuronmoe.errors import InputError, MissingInputError


def current_umask() -> int:
    """The process umask (read from /proc where there is one, so that no other thread sees it change)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(fd_or_path: int | str | os.PathLike, folder: bool = False) -> None:
    """``mkstemp``/``mkdtemp`` create 0600/0700; give the file the mode an ordinary ``open`` would (0666 or
    0777 less the umask), so that colleagues on a shared cluster can read what a stage wrote."""
    mode = (0o777 if folder else 0o666) & ~current_umask()
    try:
        if isinstance(fd_or_path, int):
            os.fchmod(fd_or_path, mode)
        else:
            os.chmod(fd_or_path, mode)
    except OSError:  # pragma: no cover - a filesystem without modes
        pass


def follow_umask_tree(root: str | os.PathLike) -> None:
    """:func:`follow_umask` for ``root`` and everything under it (executable files keep their x bits): for folders
    that libraries fill through their own temporary files (``save_pretrained`` writes ``*.safetensors`` 0600,
    ``mkdtemp`` makes 0700), so that an adapter, a converted model or a package cache is as readable as a file
    written by ``open``. Symbolic links are left alone."""
    mask = current_umask()
    root = Path(root)
    for dirpath, _dirnames, filenames in os.walk(root):
        try:
            os.chmod(dirpath, 0o777 & ~mask)
            for name in filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                if not os.path.islink(p):
                    os.chmod(p, (0o777 if st.st_mode & 0o111 else 0o666) & ~mask)
        except OSError:  # pragma: no cover - a filesystem without modes
            return


#: what the atomic helpers leave behind when a process is killed mid-write
TEMP_SUFFIX = ".tmp"


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove what an interrupted run of the stage writing ``folder`` left: ``.<folder>.*.tmp`` and
    ``.<folder>.old-*`` beside it (:func:`atomic_dir`), ``.*.tmp`` in it and in its subfolders
    (:func:`atomic_write_bytes`, :func:`atomic_open`). Call it only while holding the folder's lock
    (:func:`neuronmoe.utils.lock.output_lock`), which proves that no other run is writing them."""
    folder = Path(folder)
    removed: list[Path] = []
    candidates: list[Path] = []
    if folder.parent.is_dir():
        candidates += [p for p in folder.parent.glob(f".{glob.escape(folder.name)}.*")
                       if p.name.endswith(TEMP_SUFFIX) or ".old-" in p.name]
    if folder.is_dir():
        candidates += [p for p in folder.rglob(f".*{TEMP_SUFFIX}")]
    for p in candidates:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    if removed:
        logging.getLogger("neuronmoe.io").warning("removed %d temporary file(s) left by an interrupted run: %s",
                                                  len(removed), ", ".join(str(p) for p in removed[:5]))
    return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _raise_named(e: BaseException, path: Path) -> None:
    """A write that failed without a file name (``fh.write`` on a full disk: ``[Errno 28]`` alone) is raised
    again naming ``path``; anything else is left to the caller's ``raise``."""
    if isinstance(e, OSError) and e.filename is None and e.errno is not None:
        raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    follow_umask(fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _raise_named(e, path)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    text = json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False, default=json_default)
    return atomic_write_text(path, text + "\n")


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays, paths and sets."""
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serialisable")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file for writing; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    follow_umask(fd)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _raise_named(e, path)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``path`` on success.

    If ``path`` exists and ``overwrite`` is false, raises ``FileExistsError``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    follow_umask(tmp, folder=True)
    try:
        yield tmp
        follow_umask_tree(tmp)  # what libraries wrote into it (save_pretrained: 0600 safetensors) too
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def reserve_file(path: str | os.PathLike, size: int | None = None) -> None:
    """Allocate the blocks of ``path`` (its whole ``size``, default its current length) now, so that writes
    through a memory map cannot meet a full disk later: a full disk while writing through a map is SIGBUS, the
    process dies without a word. A full disk here is an ``OSError`` naming the file and the bytes needed.
    Filesystems without ``fallocate`` are left as they are."""
    import errno

    path = Path(path)
    size = path.stat().st_size if size is None else size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return
        free = shutil.disk_usage(path.parent).free
        raise OSError(e.errno, f"{e.strerror} (needs {size:,} bytes for this file, {free:,} free on its "
                               f"filesystem); free some space or choose another output folder", str(path)) from None
    finally:
        os.close(fd)


def open_memmap_reserved(path: str | os.PathLike, dtype: Any, shape: tuple[int, ...]) -> Any:
    """``numpy.lib.format.open_memmap(path, "w+", dtype, shape)`` with its space reserved (:func:`reserve_file`):
    every memory-mapped output goes through here."""
    import numpy as np

    path = Path(path)
    try:
        m = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    try:
        reserve_file(path)
    except OSError:
        del m
        path.unlink(missing_ok=True)
        raise
    return m


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path``; every problem is one error naming the file (missing, not UTF-8 with the
    byte offset, a folder, unreadable)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise MissingInputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def iter_jsonl(path: str | os.PathLike, error: Type[Exception] = ValueError,
               skip_invalid: bool = False, long_text: bool = False) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSONL file: the one JSONL reader.

    Every problem is raised as ``error`` with a message naming the file (and line): unreadable
    file, invalid JSON, a line that is not an object, text that is not UTF-8. ``skip_invalid``
    passes over lines that are not JSON objects instead (an append-only log whose last line a
    kill may have cut, e.g. ``metrics.jsonl``). ``long_text`` (data files): memory stays bounded for
    any line, whose long string values come as :class:`~neuronmoe.utils.longtext.FileText`
    (:func:`~neuronmoe.utils.longtext.iter_jsonl_long`).
    """
    if long_text:
        from neuronmoe.utils.longtext import iter_jsonl_long

        yield from iter_jsonl_long(path, error)
        return
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    with fh:
        try:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    if skip_invalid:
                        continue
                    raise error(f"{path}:{i}: not valid JSON ({e.msg})") from None
                if not isinstance(rec, dict):
                    if skip_invalid:
                        continue
                    raise error(f"{path}:{i}: expected a JSON object per line")
                yield i, rec
        except UnicodeDecodeError as e:
            raise error(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_texts(path: str | os.PathLike, lang: str | None = None, limit: int | None = None,
               long_text: bool = False) -> list[Any]:
    """The ``"text"`` of every record of a prepared-data JSONL file (``data/<split>/<lang>.jsonl``), in order.

    One policy for every stage: the file must exist and hold at least one text; every record needs a
    non-empty string ``text``; with ``lang``, a record's ``lang`` field (when present) must equal it.
    ``limit``: at most this many texts (None or 0: all). ``long_text``: a text over 1 MiB comes as a
    :class:`~neuronmoe.utils.longtext.FileText` (read in chunks by the caller; memory stays bounded for any line).
    """
    out: list[Any] = []
    for text in iter_texts(path, lang, long_text):
        out.append(text)
        if limit and len(out) >= limit:
            break
    return out


def iter_texts(path: str | os.PathLike, lang: str | None = None, long_text: bool = False) -> Iterator[Any]:
    """:func:`read_texts` one text at a time (for files too large to hold, e.g. ``data/train``): the missing
    file is an error at the first ``next``; a file without texts after the last one."""
    from neuronmoe.utils.longtext import FileText

    path = Path(path)
    of = f" (language {lang!r})" if lang else ""
    if not path.is_file():
        raise MissingInputError(f"{path}: no such data file{of}; run `neuronmoe prepare-data` with this language, "
                                f"or point --data-dir at the prepared data")
    n = 0
    for i, rec in iter_jsonl(path, long_text=long_text):
        text = rec.get("text")
        if not (not text.blank if isinstance(text, FileText) else isinstance(text, str) and text.strip()):
            raise InputError(f"{path}:{i}: expected a JSON object with a 'text' field (a non-empty string)")
        if lang is not None and rec.get("lang", lang) != lang:
            raise InputError(f"{path}:{i}: a text of language {rec.get('lang')!r} in the file of {lang!r}")
        n += 1
        yield text
    if not n:
        raise InputError(f"{path}: no texts{of}")
