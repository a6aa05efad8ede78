"""Small file and process helpers shared by the data modules."""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from ..config import project_root


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the project root, for messages and notebook output.

    Folders beside the checkout keep one ``../`` (``../shared/data``); a path further
    away is shown absolute, as the user gave it.
    """
    path = Path(path)
    try:
        relative = Path(os.path.relpath(path.resolve(), project_root()))
    except ValueError:  # another drive on Windows
        return str(path)
    if relative.parts[:2] == ("..", ".."):
        return str(path.resolve())
    return relative.as_posix()


class DiskFullError(OSError):
    """Too little free space for what is about to be written; the message says how much."""


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Raise ``DiskFullError`` (errno ENOSPC) before writing ``needed`` bytes into ``folder``
    when its disk has less free space; ``what`` names the file(s) for the message."""
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
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def process_pool(workers: int):
    """A process pool; fork on Linux (no re-import, starts in milliseconds), spawn elsewhere."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method).Pool(workers)


def temp_dir_beside(target: Path) -> Path:
    """A new empty folder ``.<name>.tmp-<pid>-<random>`` next to ``target`` (normal permissions)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def remove_stale_temp_dirs(target: Path) -> None:
    """Delete ``temp_dir_beside(target)`` folders whose process is gone (a killed run)."""
    for folder in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            os.kill(int(folder.name.rsplit("-", 2)[-2]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, OSError):  # not ours, or alive under another user
            continue


def replace_dir(new: Path, target: Path) -> None:
    """Move folder ``new`` to ``target`` with renames only, replacing any old ``target``.

    A crash between the two renames leaves no ``target`` (so it gets rebuilt), never a
    half-written one.
    """
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
