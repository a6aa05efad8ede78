"""Small file and process helpers shared by the data modules."""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

from ..config import project_root


def display_path(path: str | os.PathLike) -> str:
    """``path`` for messages and saved outputs: relative to the project root (one ``../``
    at most), else under ``~``, else absolute."""
    path = Path(path)
    try:
        absolute = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: shown as given, never a crash
        absolute = Path(os.path.abspath(path))
    try:
        relative = Path(os.path.relpath(absolute, project_root()))
    except ValueError:  # another drive on Windows
        return str(path)
    if relative.parts[:1] != ("..",):
        return relative.as_posix()
    home = Path.home().resolve()
    in_home = home != Path(home.anchor) and absolute.is_relative_to(home)
    # beside the checkout; but a home folder apart from the checkout's (a temporary one, or
    # checkouts under /tmp) names its files from ~
    if relative.parts[:2] != ("..", "..") and not (
            in_home and not project_root().resolve().is_relative_to(home)):
        return relative.as_posix()
    if in_home:
        return ("~/" + absolute.relative_to(home).as_posix()).removesuffix("/.")
    return str(absolute)


def blas_threads():
    """A context capping numpy's BLAS threads at 1 on at most 4 cores, where they spin against
    TensorFlow's threads and slow the sample metrics several times."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1 if (os.cpu_count() or 1) <= 4 else None, user_api="blas")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Yields a temporary path beside ``path`` (``last.keras`` -> ``.last.tmp-<pid>.keras``,
    suffixes kept for Keras and h5py), renamed onto ``path`` if the block ends without error."""
    path = Path(path)
    stem, dot, suffixes = path.name.partition(".")
    tmp = path.with_name(f".{stem}.tmp-{os.getpid()}{dot}{suffixes}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def process_is_gone(pid: int) -> bool:
    """True when no process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive under another user
        pass
    return False


def remove_stale_temp_files(folder: str | os.PathLike) -> None:
    """Delete ``atomic_write``'s temporary files in ``folder`` whose process is gone."""
    for path in Path(folder).glob(".*.tmp-*"):
        match = re.match(r"\.[^.]*\.tmp-(\d+)(\.|$)", path.name)
        if match and path.is_file() and process_is_gone(int(match.group(1))):
            path.unlink(missing_ok=True)


class DiskFullError(OSError):
    """Too little free space for what is about to be written; the message says how much."""


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Raise ``DiskFullError`` when ``folder``'s disk has less than ``needed`` bytes free."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DiskFullError(
            errno.ENOSPC,
            f"{what} needs {needed / 1e6:,.1f} MB in {display_path(folder)}, "
            f"{free / 1e6:,.1f} MB free: free some space (or choose a folder on another disk) "
            "and run the command again",
        )


def cpu_count() -> int:
    """CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS, Windows


def _quiet_worker() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops the pool; SIGTERM ends them at
    once, even when the parent installed a handler before forking."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def process_pool(workers: int):
    """A process pool (fork on Linux, spawn elsewhere) whose workers ignore Ctrl-C."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method).Pool(workers, initializer=_quiet_worker)


@contextlib.contextmanager
def folder_in_place(target: Path):
    """Yields a new folder beside ``target``, renamed onto it if the block ends without error,
    deleted otherwise; such folders left by a killed process are deleted first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for folder in target.parent.glob(f".{target.name}.tmp-*"):
        pid = folder.name.rsplit("-", 2)[-2]
        if pid.isdigit() and folder.is_dir() and process_is_gone(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
