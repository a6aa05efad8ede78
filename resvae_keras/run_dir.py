"""A run directory's own files: ``.train.lock``, ``history.csv`` and ``split.json``; where a
run resumes, refusing a run dir whose files disagree or whose data now splits differently."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pandas as pd

from resvae_keras import data
from resvae_keras.data._io import (
    atomic_write,
    display_path,
    process_is_gone,
    remove_stale_temp_files,
)

try:
    import fcntl
except ImportError:  # Windows: the PID in the lock file is checked instead
    fcntl = None

LOCK_FILE = ".train.lock"
SPLIT_FILE = "split.json"


class RunDirError(ValueError):
    """A run dir whose files are damaged or disagree; nothing was changed."""


class RunLockedError(ValueError):
    """Another ``train`` process holds the run dir (its PID is in the message)."""


def backup_epoch(backup_dir):
    """The epoch a ``BackupAndRestore`` folder resumes at (0 when it holds none)."""
    path = Path(backup_dir) / "training_metadata.json"
    return int(json.loads(path.read_text())["epoch"]) if path.exists() else 0


def load_history(run_dir):
    """The run's ``history.csv`` (one row per epoch, last write wins); ``RunDirError`` when
    it cannot be read, e.g. its last row was cut off by a kill."""
    path = Path(run_dir) / "history.csv"
    # A run killed before its first epoch ended leaves an empty file behind.
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    if not path.read_bytes().endswith(b"\n"):
        raise RunDirError(
            f"the last row of {display_path(path)} is cut off (the run was stopped while it "
            "wrote that row). Delete that last, incomplete line with a text editor (every "
            "other row is intact) and run the command again."
        )
    try:
        history = pd.read_csv(path)
        return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)
    except (ValueError, KeyError) as error:  # pandas' ParserError is a ValueError
        raise RunDirError(
            f"{display_path(path)} cannot be read ({type(error).__name__}: {error}); restore it "
            "from a copy, or move the run dir away to train it again"
        ) from None


@contextlib.contextmanager
def run_lock(run_dir):
    """One trainer per run dir: a ``flock`` on ``.train.lock``, which holds the PID;
    ``RunLockedError`` while another process trains there. A dead holder's lock and
    temporary files are taken over."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    with open(path, "a+") as lock:
        lock.seek(0)
        holder = lock.read().strip()
        alive = holder.isdigit() and not process_is_gone(int(holder))
        try:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif alive and int(holder) != os.getpid():
                raise BlockingIOError
        except BlockingIOError:
            raise RunLockedError(
                f"{display_path(run_dir)} is in use: another train command (PID "
                f"{holder or 'unknown'}) is training into it. Wait for it to end, stop it "
                f"(kill {holder or '<PID>'}), or train into another folder (--run-dir)."
            ) from None
        if holder.isdigit() and int(holder) != os.getpid():
            print(f"note: {display_path(path)} was left by process {holder}, which "
                  f"{'is no longer running' if not alive else 'holds no lock'}; taking it over",
                  file=sys.stderr, flush=True)
        for folder in (run_dir, run_dir / "backup"):
            remove_stale_temp_files(folder)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield path
        finally:
            lock.seek(0)
            lock.truncate()  # a clean end leaves no PID and no lock file
            path.unlink(missing_ok=True)


def resume_point(state_dir, backup, interrupted: bool, steps_per_epoch: int):
    """``(history, continued)``: ``history.csv`` and whether training continues from
    ``last.keras``; ``RunDirError`` when the two disagree on the epochs."""
    import h5py

    state_dir = Path(state_dir)
    history = load_history(state_dir)
    shown = display_path(state_dir / "history.csv")
    rows = f"holds {len(history)} epochs" if len(history) else (
        "is empty" if (state_dir / "history.csv").exists() else "is missing")
    keep = ("Restore history.csv from a copy; or move model.keras, last.keras and backup/ "
            "elsewhere to start the run over; or train into another folder (--run-dir). "
            "Nothing was changed.")
    if interrupted:
        epochs = backup_epoch(backup)
        if len(history) < epochs:
            raise RunDirError(f"{shown} {rows}, but {display_path(backup)} holds {epochs}: the "
                              f"run dir's files disagree. {keep}")
        return history, False
    last = state_dir / "last.keras"
    if not last.exists():
        if len(history) or (state_dir / "model.keras").exists():
            raise RunDirError(
                f"{display_path(last)} is missing, but the run dir holds a trained run "
                f"(history.csv {rows.replace('holds ', '')}, model.keras "
                f"{'present' if (state_dir / 'model.keras').exists() else 'missing'}): "
                "training would start over and overwrite it. Restore last.keras from a copy, "
                "or move the run dir away (or train into another folder, --run-dir) to start "
                "over. Nothing was changed.")
        return history, False
    try:  # optimizer.iterations, read without building the model
        with zipfile.ZipFile(last) as archive, h5py.File(
                io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            steps = int(weights["optimizer/vars/0"][()])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise RunDirError(
            f"{display_path(last)} is damaged ({type(error).__name__}: {error}), so the run "
            "cannot continue from it. Restore it from a copy, or train into another folder "
            "(--run-dir). Nothing was changed."
        ) from None
    epochs, rest = divmod(steps, steps_per_epoch)
    if rest or epochs != len(history):
        held = (f"{epochs} epochs" if not rest
                else f"{steps} steps, not whole epochs of {steps_per_epoch}")
        raise RunDirError(f"{shown} {rows}, but {display_path(last)} holds {held}: the run "
                          f"dir's files disagree, and training on would overwrite the "
                          f"trained model. {keep}")
    return history, True


def record_split(run_dir, cache) -> None:
    """Write ``split.json`` (``data.split_record``) for a new run into ``run_dir``."""
    with atomic_write(Path(run_dir) / SPLIT_FILE) as tmp:
        tmp.write_text(json.dumps(data.split_record(cache), indent=2) + "\n")


def check_run_split(run_dir, cache, action: str) -> bool:
    """Raise ``RunDirError`` when ``cache`` splits otherwise than the run's ``split.json``;
    False for a run without one. ``action``: "train" or "evaluate", for the message."""
    path = Path(run_dir) / SPLIT_FILE
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text())
    except ValueError as error:
        raise RunDirError(f"{display_path(path)} is not valid JSON ({error}); restore it from "
                          "a copy, or delete it to skip this check") from None
    changes = data.split_changes(recorded, cache)
    if not changes:
        return True
    way_out = {"train": "continue this run", "evaluate": "evaluate it"}.get(action, action)
    raise RunDirError(
        f"the data changed since training: {display_path(path)} records the images the run "
        "was trained, validated and tested on, and the data in "
        f"{cache.manifest.get('source_display')} now splits differently "
        f"({'; '.join(changes)}). Its test split could hold images "
        f"the model trained on. To {way_out}, restore the data folder (and max_images in "
        f"config.json) as they were at training; to use the new data, train a new run into "
        "another folder (--run-dir)."
    )
