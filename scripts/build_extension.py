"""Build the Blender extension zip: wheels from pinned requirements, then Blender's own builder.

    python scripts/build_extension.py [--out dist] [--no-download]

1. wheels/: ``pip wheel`` of wheels/requirements.txt (pinned, no dependencies) and a wheel of
   ``gvf_core`` (the library with the shipped model), named gvf_animate_core, at the
   project's version;
2. a staging folder: the add-on package (gvf_addon/ as the extension's root module), the
   wheels, and blender_manifest.toml with its ``wheels = [...]`` list filled in;
3. ``blender_ext.py build`` (bl_pkg's command-line builder, found inside the bpy module or
   next to a Blender binary given with --blender) writes ``dist/gvf_animate-<version>.zip``.

Prints the zip's path. Needs the bpy module (pip install -e ".[blender]") or --blender.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "wheels"


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


def blender_ext_script(blender: str | None) -> list[str]:
    """The command that runs bl_pkg's builder."""
    if blender:
        return [blender, "--command", "extension"]
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("build_extension: needs the bpy module (pip install -e '.[blender]') or --blender PATH")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit(f"build_extension: bl_pkg's blender_ext.py not found under {Path(spec.origin).parent}")
    return [sys.executable, str(found[-1])]


def build_core_wheel(out: Path, version: str) -> Path:
    """A wheel holding only gvf_core (and its shipped weights and sample assets)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "core"
        shutil.copytree(ROOT / "gvf_core", src / "gvf_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (src / "pyproject.toml").write_text(f'''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "gvf-animate-core"
version = "{version}"
requires-python = ">=3.11,<3.12"
license = {{ text = "GPL-3.0-or-later" }}

[tool.setuptools.packages.find]
include = ["gvf_core*"]

[tool.setuptools.package-data]
gvf_core = ["assets/*.md", "assets/*/*", "weights/*.md", "weights/*/*"]
''')
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                        str(src)], check=True)
    return next(out.glob(f"gvf_animate_core-{version}-*.whl"))


def build_wheels(download: bool = True) -> list[Path]:
    version = project_version()
    for old in WHEELS.glob("*.whl"):
        old.unlink()
    if download:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(WHEELS), "-r",
                        str(WHEELS / "requirements.txt")], check=True)
    build_core_wheel(WHEELS, version)
    return sorted(WHEELS.glob("*.whl"))


def stage(wheels: list[Path], folder: Path) -> Path:
    shutil.copytree(ROOT / "gvf_addon", folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (folder / "wheels").mkdir()
    for w in wheels:
        shutil.copy2(w, folder / "wheels" / w.name)
    manifest = (ROOT / "blender_manifest.toml").read_text()
    listing = "wheels = [\n" + "".join(f'  "./wheels/{w.name}",\n' for w in wheels) + "]\n"
    manifest = re.sub(r"(?ms)^# @wheels@.*?^# @end-wheels@\n", "# @wheels@ (filled in by scripts/build_extension.py)\n"
                      + listing + "# @end-wheels@\n", manifest)
    (folder / "blender_manifest.toml").write_text(manifest)
    shutil.copy2(ROOT / "LICENSE", folder / "LICENSE") if (ROOT / "LICENSE").exists() else None
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "dist")
    p.add_argument("--blender", default=None, help="a Blender binary to build with (default: the bpy module's builder)")
    p.add_argument("--no-download", action="store_true", help="bundle only the gvf_core wheel (no index access)")
    args = p.parse_args(argv)
    wheels = build_wheels(download=not args.no_download)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = stage(wheels, Path(tmp) / "gvf_animate")
        cmd = blender_ext_script(args.blender) + ["build", "--source-dir", str(folder), "--output-dir", str(args.out)]
        subprocess.run(cmd, check=True)
    zips = sorted(args.out.glob(f"gvf_animate-{project_version()}*.zip"), key=lambda z: z.stat().st_mtime)
    print(zips[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
