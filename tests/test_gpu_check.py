"""scripts/gpu_check.sh (make gpu-check): its GPU detection, with a stand-in nvidia-smi.

Every run stops at the detection step (GPU_CHECK_DETECT_ONLY=1, or a failure there), so
nothing is installed and nothing touches the network.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="the GPU check is a bash script")


def _run(tmp_path, nvidia_smi=None, inherit_path=True):
    """Run the script with ``nvidia_smi`` (a bash body, or None for none at all) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!{BASH}\n{nvidia_smi}\n")
        fake.chmod(0o755)
    if not inherit_path:  # only what the script runs before the detection
        for tool in ("dirname",):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}" if inherit_path else str(bin_dir)
    env = {**os.environ, "PATH": path, "GPU_CHECK_DETECT_ONLY": "1",
           "GPU_VENV": str(tmp_path / "venv")}
    result = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True,
                            timeout=60)
    assert not (tmp_path / "venv").exists()  # nothing installed
    return result


def test_a_machine_without_nvidia_smi_fails_with_a_clear_message(tmp_path):
    result = _run(tmp_path, nvidia_smi=None, inherit_path=False)
    assert result.returncode == 1
    assert "no NVIDIA GPU here: nvidia-smi is not installed" in result.stderr


def test_a_driver_that_lists_no_gpu_fails_and_shows_what_it_said(tmp_path):
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    result = _run(tmp_path, nvidia_smi=f'echo "{message}"; exit 9')
    assert result.returncode == 1
    assert "no NVIDIA GPU visible" in result.stderr and message in result.stderr


def test_a_listed_gpu_passes_the_detection(tmp_path):
    result = _run(tmp_path, nvidia_smi='echo "NVIDIA H200, 570.86.15, 143771 MiB"')
    assert result.returncode == 0, result.stderr
    assert "nvidia-smi lists: NVIDIA H200" in result.stderr
