#!/usr/bin/env bash
# Prepare, on this machine, what scripts/device_checks.sh needs on a bare GPU machine that reaches
# no network (docs/gpu_checks.md):
#   .whl/          the wheels its Python image lacks: gsplat (CUDA renderer, compiled there with
#                  nvcc on first use) and trimesh; both are pure-Python wheels
#   data/device/   the first shard (16 clips) of the validation split, with its encoded latents
#                  and a manifest that lists only that shard (the GPU time per clip is measured on it)
# Both paths are git-ignored; name them in the device call's `carry`.
#
# Usage: bash scripts/device_prepare.sh [DATA_DIR]   (default data/gvf2000; its val split must exist:
#        `gvf data make --split val --out DATA_DIR` and `gvf data encode`, see docs/data.md)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/gvf2000}
PY=${PYTHON:-.venv/bin/python}

mkdir -p .whl
# py3-none-any wheels: the platform and Python version of the GPU machine (3.12) do not matter
"$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl "gsplat==1.5.3" "trimesh==$("$PY" -c 'import trimesh; print(trimesh.__version__)')"

rm -rf data/device && mkdir -p data/device/latents
"$PY" - "$DATA" <<'EOF'
import json, shutil, sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path("data/device")
manifest = json.loads((src / "manifest.json").read_text())
val = [s for s in manifest["shards"] if s["split"] == "val"]
if not val:
    sys.exit(f"{src} has no val split: make it first (gvf data make --split val, then gvf data encode)")
first = val[0]
manifest["shards"] = [first]
(dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
shutil.copy2(src / first["file"], dst / first["file"])
latents = src / "latents" / first["file"]
if latents.exists():
    shutil.copy2(latents, dst / "latents" / first["file"])
print(f"data/device: {first['file']} ({first['count']} clips){'' if latents.exists() else ', no encoded latents'}")
EOF
du -sh .whl data/device
echo 'device call: run(command="bash scripts/device_checks.sh", carry=[".whl", "data/device"], timeout_s=560)'
