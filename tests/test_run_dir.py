import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from resvae_keras import data
from resvae_keras.config import Config
from resvae_keras.run_dir import (
    LOCK_FILE,
    SPLIT_FILE,
    RunDirError,
    RunLockedError,
    check_run_split,
    load_history,
    record_split,
    resume_point,
    run_lock,
)
from resvae_keras.train import train

ROOT = Path(__file__).resolve().parents[1]


def _tiny(demo_root, folder: Path, **overrides) -> Config:
    """One stage, no residual block, 32x32: 6 steps of 8 per epoch on the 60 demo faces."""
    return Config(profile="celeba-subset", data_dir=str(demo_root),
                  cache_dir=str(folder / "cache"), run_dir=str(folder / "run"), image_size=32,
                  widths=(8,), blocks_per_stage=0, latent_dim=4, batch_size=8, epochs=2,
                  two_stage_epochs=0).replace(**overrides)


def _dead_pid() -> int:
    """The PID of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _checkpoint_with_steps(path: Path, steps: int) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((steps, 2)), np.zeros((steps, 1)), batch_size=1, verbose=0)
    model.save(path)


def test_a_history_with_a_cut_off_last_row_names_the_file(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.5\n1,1.2\n2,1.")
    with pytest.raises(RunDirError, match=r"last row of .*history.csv is cut off.*Delete"):
        load_history(tmp_path)
    (tmp_path / "history.csv").write_text('epoch,loss\n0,"1.5\n')  # an open quote
    with pytest.raises(RunDirError, match="history.csv cannot be read"):
        load_history(tmp_path)


def test_resume_point_reads_the_epochs_from_the_checkpoint(tmp_path):
    _checkpoint_with_steps(tmp_path / "last.keras", 8)
    with pytest.raises(RunDirError, match=r"history.csv is missing, but .*last.keras holds 4 "
                                          r"epochs.*Restore history.csv"):
        resume_point(tmp_path, tmp_path / "backup", False, steps_per_epoch=2)
    (tmp_path / "history.csv").write_text("epoch,loss\n" + "".join(f"{e},1\n" for e in range(4)))
    history, continued = resume_point(tmp_path, tmp_path / "backup", False, steps_per_epoch=2)
    assert continued and len(history) == 4
    (tmp_path / "last.keras").unlink()
    with pytest.raises(RunDirError, match="last.keras is missing, but the run dir holds a "
                                          "trained run"):
        resume_point(tmp_path, tmp_path / "backup", False, steps_per_epoch=2)
    (tmp_path / "last.keras").write_bytes(b"not a zip")
    with pytest.raises(RunDirError, match="last.keras is damaged"):
        resume_point(tmp_path, tmp_path / "backup", False, steps_per_epoch=2)


def test_an_emptied_history_never_trains_over_the_model(demo_root, tmp_path):
    config = _tiny(demo_root, tmp_path)
    train(config, verbose=0)
    model_bytes = (config.run_path / "model.keras").read_bytes()
    (config.run_path / "history.csv").write_text("")
    with pytest.raises(RunDirError, match="history.csv is empty, but .*last.keras holds 2 epochs"):
        train(config.replace(epochs=3), verbose=0)
    assert (config.run_path / "model.keras").read_bytes() == model_bytes
    assert json.loads((config.run_path / SPLIT_FILE).read_text())["split_counts"]["train"] == 48


_HOLD_LOCK = textwrap.dedent("""
    import sys
    from resvae_keras.run_dir import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
""")


def test_one_trainer_per_run_dir_and_a_stale_lock_is_taken_over(demo_root, tmp_path, capsys):
    config = _tiny(demo_root, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(config.run_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"another train command \(PID {holder.pid}\)"):
            train(config, verbose=0)
        assert not (config.run_path / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    stale = config.run_path / f".last.tmp-{holder.pid}.keras"  # a kill during a save
    stale.write_bytes(b"half a model")
    with run_lock(config.run_path):
        assert (config.run_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert f"left by process {holder.pid}, which is no longer running" in capsys.readouterr().err
    assert not stale.exists()
    assert not (config.run_path / LOCK_FILE).exists()  # a clean end leaves no lock file


def test_stale_temp_files_of_a_live_process_stay(tmp_path):
    mine = tmp_path / f".model.tmp-{os.getpid()}.keras"
    gone = tmp_path / f".metrics.tmp-{_dead_pid()}.json"
    mine.write_text("x")
    gone.write_text("x")
    with run_lock(tmp_path):
        pass
    assert mine.exists() and not gone.exists()


def test_a_changed_split_is_refused_and_an_unrecorded_one_passes(demo_cache, demo_copy,
                                                                  tmp_path):
    assert not check_run_split(tmp_path, demo_cache, "evaluate")  # nothing recorded
    record_split(tmp_path, demo_cache)
    assert check_run_split(tmp_path, demo_cache, "evaluate")
    for image in sorted((demo_copy / "img_align_celeba").iterdir())[:6]:
        image.unlink()
    smaller = data.prepare(demo_copy, size=64, cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(RunDirError, match=r"the data changed since training: .*split.json.*"
                                          r"the source images changed.*To evaluate it, restore"):
        check_run_split(tmp_path, smaller, "evaluate")
    shutil.rmtree(tmp_path / "cache")
