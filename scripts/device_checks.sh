#!/usr/bin/env bash
# The GPU checks of the diffusion pipeline and of test-time refinement, in one call on a bare GPU
# machine that reaches no network (docs/gpu_checks.md). Prepare first, here:
#   bash scripts/device_prepare.sh            # .whl/ (gsplat, trimesh) and data/device/ (16 val clips)
# then on the GPU machine, from the repository root, with .whl and data/device carried:
#   bash scripts/device_checks.sh             # writes $OUT (default out/device_checks)
#
# Steps, most needed first, each inside what is left of BUDGET seconds (default 540):
#   1. gvf bench animate --device cuda        stage timings: shipped tiny model, and the paper
#                                             presets at 8192 Gaussians (random weights, speed only)
# then gsplat compiles its kernels in the background (nvcc, TORCH_CUDA_ARCH_LIST, default 9.0;
# MAX_JOBS, default 8) while
#   2. CUDA tests, torch renderer             tests/test_render.py, tests/test_motion_refine.py -k cuda
#   3. gvf eval animate --refine fast         CLIPS validation clips on the GPU: time per clip, errors
# and when gsplat works:
#   4. the same tests with gsplat             gsplat/torch parity, refinement with each backend
#   5. gvf bench render                       torch vs gsplat renderer speed
#   6. scripts/refine_preset_probe.py         rendered refinement (the image phase, gsplat) on CLIPS_BEST clips
# Files in $OUT (8 at most come back from the device tool): summary.txt (environment, one line per
# step: exit status and seconds), log.txt (stderr of every step, gsplat's build), the step outputs.
#
# Dry run without a GPU: DEVICE=cpu PYTHON=.venv/bin/python CLIPS=1 bash scripts/device_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/device_checks}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-540}
CLIPS=${CLIPS:-8}
CLIPS_BEST=${CLIPS_BEST:-2}
DATA=${DATA:-data/device}
SITE=/tmp/gvf_site
GSPLAT_SITE=/tmp/gvf_gsplat
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# the same build settings in every process: each one that imports gsplat regenerates its ninja file,
# and different nvcc flags (an unset arch list means "detect") would rebuild the kernels from scratch
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/gvf_torch_extensions}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-8}
# torch's extension builder takes CUDA_HOME, when unset, from the folder above the `nvcc` on the PATH.
# On this workplace's images that is a wrapper script, /usr/local/bin/nvcc, so CUDA_HOME became
# /usr/local: nvcc still found its headers but g++ did not (gsplat's .cpp files: "fatal error:
# cuda_runtime.h: No such file or directory", seen with nvcc 13.0 and torch 2.11). Take the first
# folder that holds CUDA's headers.
if [[ -z ${CUDA_HOME:-} ]]; then
  NVCC_REAL=$(readlink -f "$(command -v nvcc 2>/dev/null)" 2>/dev/null)
  for dir in /usr/local/cuda "${NVCC_REAL%/bin/nvcc}" /usr/local/cuda-*; do
    if [[ -n $dir && -f $dir/include/cuda_runtime.h ]]; then
      export CUDA_HOME=$dir
      break
    fi
  done
fi
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
LOG=$OUT/log.txt
: > "$SUMMARY"
: > "$LOG"

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME CAP OUTFILE CMD...: CMD's stdout to OUTFILE, its stderr to the log, within CAP seconds
# and what is left of the budget; skipped when under 20 s are left
step() {
  local name=$1 cap=$2 out=$3
  shift 3
  local left=$((BUDGET - SECONDS - 15))
  local limit=$((cap < left ? cap : left))
  if ((limit < 20)); then
    note "$name: skipped, ${left} s of the budget left"
    return 1
  fi
  echo "=== $name: $*" >> "$LOG"
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" > "$out" 2>> "$LOG" || rc=$?
  note "$name: rc=$rc, $((SECONDS - t0)) s (limit $limit s)$( ((rc == 124)) && echo ', TIMED OUT')"
  return $rc
}

install_wheels() {  # install_wheels TARGET PATTERN: carried pure-Python wheels into TARGET
  local wheels=(.whl/$2)
  [[ -e ${wheels[0]} ]] || return 1
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$1" "${wheels[@]}" >> "$LOG" 2>&1
}

install_wheels "$SITE" 'trimesh-*.whl' || note "no trimesh wheel in .whl: using the Python's own"
HAVE_GSPLAT_WHEEL=0
install_wheels "$GSPLAT_SITE" 'gsplat-*.whl' && HAVE_GSPLAT_WHEEL=1
export PYTHONPATH=$PWD:$SITE
"$PY" - "$DEVICE" >> "$SUMMARY" 2>> "$LOG" <<'EOF'
import os, platform, subprocess, sys
import numpy, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"asked device {sys.argv[1]}, cuda available {torch.cuda.is_available()}, "
      f"CUDA_HOME {os.environ.get('CUDA_HOME', 'unset')}")
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
    try:
        print("nvcc:", subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1])
    except OSError:
        print("nvcc: not found")
EOF
cat "$SUMMARY"

# first, alone on the machine: its timings are the figures the pipeline issue asks for
step bench_animate 240 "$OUT/bench_animate.json" "$PY" -m gvf_core.cli bench animate --device "$DEVICE" --json

BUILD=
BUILD_LIMIT=$((BUDGET - SECONDS - 120))  # leaves two minutes for the gsplat steps
if [[ $DEVICE == cuda && $HAVE_GSPLAT_WHEEL == 1 ]] && ((BUILD_LIMIT < 60)); then
  note "no time left to compile gsplat (${BUILD_LIMIT} s): the gsplat steps are skipped"
elif [[ $DEVICE == cuda && $HAVE_GSPLAT_WHEEL == 1 ]]; then
  (
    export PYTHONPATH=$PYTHONPATH:$GSPLAT_SITE VERBOSE=1  # gsplat: the compiler output, into log.txt
    t0=$SECONDS
    timeout "$BUILD_LIMIT" "$PY" -c "
import sys
from gvf_core.render import _gsplat_backend
ok = _gsplat_backend.available('cuda')
print('gsplat available:', ok)
sys.exit(0 if ok else 1)" > "$OUT/gsplat_build.tmp" 2>&1
    echo "gsplat build: rc=$?, $((SECONDS - t0)) s" >> "$OUT/gsplat_build.tmp"
  ) &
  BUILD=$!
  note "gsplat compiles in the background (arch $TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS of $(nproc) cores) during tests_torch and eval_fast"
elif [[ $DEVICE == cuda ]]; then
  note "no gsplat wheel in .whl (bash scripts/device_prepare.sh): the gsplat steps are skipped"
fi

step tests_torch 180 "$OUT/tests_torch.txt" "$PY" -m pytest -q -p no:cacheprovider -rs \
  tests/test_render.py tests/test_motion_refine.py -k "cuda or gsplat"
step eval_fast 240 "$OUT/eval_fast.json" "$PY" -m gvf_core.cli eval animate --data "$DATA" --device "$DEVICE" \
  --refine fast --limit "$CLIPS" --no-images --per-clip --json

if [[ -n $BUILD ]]; then
  wait "$BUILD"
  cat "$OUT/gsplat_build.tmp" >> "$LOG" && rm -f "$OUT/gsplat_build.tmp"
  note "$(grep '^gsplat build' "$LOG" | tail -1)"
  if grep -q 'gsplat available: True' "$LOG"; then
    export PYTHONPATH=$PYTHONPATH:$GSPLAT_SITE
    step tests_gsplat 150 "$OUT/tests_gsplat.txt" "$PY" -m pytest -q -p no:cacheprovider -rs \
      tests/test_render.py tests/test_motion_refine.py -k "cuda or gsplat"
    step bench_render 90 "$OUT/bench_render.json" "$PY" -m gvf_core.cli bench render --json
    # no preset renders frames since 2026-12-07: fast's point fit followed by 40 image iterations
    step eval_images 240 "$OUT/eval_images.json" "$PY" scripts/refine_preset_probe.py images \
      '{"iterations": 40, "backend": "gsplat"}' --data "$DATA" --split val --limit "$CLIPS_BEST" --device "$DEVICE"
  else
    note "gsplat did not build or run here: see log.txt"
  fi
fi
note "total: $SECONDS s"
