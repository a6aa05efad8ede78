#!/usr/bin/env bash
# make gpu-check: on a machine with an NVIDIA GPU, install the CUDA build of TensorFlow,
# confirm TensorFlow sees the GPU, time training of the celeba architecture in mixed
# float16 (bench train), train one short epoch on the demo faces, and print one JSON line.
#
# The CUDA build goes into its own venv (.venv-gpu), not into .venv: tensorflow-cpu and
# tensorflow[and-cuda] both install the `tensorflow` package, so swapping one for the other
# in .venv would leave make test and the notebooks on a build requirements.txt does not pin,
# and a failed CUDA download would break the working CPU venv. .venv-gpu gets the same pins
# as requirements.txt, with tensorflow[and-cuda] at the pinned tensorflow-cpu version.
#
# Environment: PYTHON (python3), GPU_VENV (.venv-gpu); GPU_CHECK_DETECT_ONLY=1 stops after
# the GPU detection (step 1), before anything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "gpu-check: $*" >&2
  exit 1
}
say() { echo "gpu-check: $*" >&2; }

# 1. An NVIDIA GPU that its driver lists.
if ! command -v nvidia-smi >/dev/null 2>&1; then
  fail "no NVIDIA GPU here: nvidia-smi is not installed. Run this on a machine with an" \
    "NVIDIA GPU and its driver; the CPU setup needs none of it (make test)."
fi
if ! gpus=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) \
  || [ -z "$gpus" ]; then
  fail "no NVIDIA GPU visible; nvidia-smi says: ${gpus:-nothing}." \
    "Check that the driver is loaded (nvidia-smi must list the GPU) and CUDA_VISIBLE_DEVICES."
fi
say "nvidia-smi lists: $gpus"
if [ "${GPU_CHECK_DETECT_ONLY:-0}" = 1 ]; then
  exit 0
fi

# 2. The CUDA build of TensorFlow at the pinned version, in its own venv.
python=${PYTHON:-python3}
venv=${GPU_VENV:-.venv-gpu}
tf_version=$(sed -n 's/^tensorflow-cpu==\([^;[:space:]]*\).*/\1/p' requirements.txt)
[ -n "$tf_version" ] || fail "requirements.txt pins no tensorflow-cpu version to match"
stamp="$venv/.installed-$(cksum <requirements.txt | cut -d' ' -f1)"
if [ ! -e "$stamp" ]; then
  say "installing tensorflow[and-cuda]==$tf_version and the pinned packages into $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  grep -Ev '^tensorflow(-cpu)?==' requirements.txt >"$venv/requirements-gpu.txt"
  "$venv/bin/python" -m pip install --quiet -r "$venv/requirements-gpu.txt" \
    "tensorflow[and-cuda]==$tf_version" || fail "pip could not install tensorflow[and-cuda]==$tf_version into $venv (see its message above)"
  touch "$stamp"
fi
py="$venv/bin/python"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# 3. TensorFlow sees the GPU.
seen=$("$py" -c 'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))') \
  || fail "TensorFlow does not import in $venv (see its message above); remove $venv and run again"
seen=$(echo "$seen" | tail -n 1)
[ "${seen:-0}" -ge 1 ] || fail "TensorFlow $tf_version in $venv sees no GPU although nvidia-smi" \
  "lists one: the driver may be too old for the CUDA version this TensorFlow needs (nvidia-smi" \
  "shows the newest CUDA version the driver supports); see TensorFlow's GPU install notes."
say "TensorFlow $tf_version sees $seen GPU(s)"

# 4. Training speed of the celeba architecture (64x64, widths 64-512) in mixed float16.
bench=$("$py" -m resvae_keras bench train --profile celeba --mixed-precision mixed_float16 \
  --batch-size 128 --json) || fail "bench train failed (see its message above)"
bench=$(echo "$bench" | tail -n 1)

# 5. One short epoch on the demo faces: data, training, checkpoints and grids on the GPU.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/resvae-gpu-check.XXXXXX")
trap 'rm -rf "$run_dir"' EXIT
start=$(date +%s)
"$py" -m resvae_keras train --profile demo --epochs 1 --mixed-precision mixed_float16 \
  --run-dir "$run_dir/demo" --verbose 2 >&2 || fail "the demo epoch failed (see its message above)"
seconds=$(($(date +%s) - start))

# 6. One JSON line.
"$py" - "$run_dir/demo/history.csv" "$bench" "$gpus" "$seconds" "$tf_version" <<'EOF'
import csv
import datetime
import json
import math
import sys

history, bench, gpus, seconds, tf_version = sys.argv[1:]
epoch = list(csv.DictReader(open(history)))[-1]
name, driver, memory = (part.strip() for part in gpus.splitlines()[0].split(","))
result = {
    "date": datetime.date.today().isoformat(),
    "gpu": name,
    "gpus": len(gpus.splitlines()),
    "driver": driver,
    "gpu_memory": memory,
    "tensorflow": tf_version,
    "bench_train_celeba_mixed_float16": json.loads(bench),
    "demo_epoch": {
        "wall_s": int(seconds),
        "epoch_time_s": float(epoch["epoch_time_s"]),
        "loss": float(epoch["loss"]),
        "val_loss": float(epoch["val_loss"]),
    },
}
print(json.dumps(result))
if not all(math.isfinite(result["demo_epoch"][k]) for k in ("loss", "val_loss")):
    sys.exit("gpu-check: the demo epoch's loss is not finite")
EOF
