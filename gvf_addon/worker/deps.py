"""What the worker's Python needs, and the command that installs what is missing.

Standard library only: the add-on calls this from Blender's Python, which may lack torch.
The pins follow pyproject.toml.
"""

from __future__ import annotations

import shlex
from pathlib import Path

TORCH_INDEX_CPU = "https://download.pytorch.org/whl/cpu"

REQUIREMENTS = {
    # import name: pip requirement
    "torch": "torch==2.13.0",
    "numpy": "numpy>=1.24,<2",
    "scipy": "scipy>=1.10",
    "safetensors": "safetensors>=0.4",
    "trimesh": "trimesh>=4.0",
    "cv2": "opencv-python-headless>=4.8",
    "PIL": "pillow>=10.0",
}


def gvf_core_root() -> Path | None:
    """The folder that holds the add-on's copy of ``gvf_core``: the repository root, the add-on
    folder when gvf_core is bundled inside it, or the site-packages folder the extension's
    wheel was installed into; None when there is no copy to be found."""
    here = Path(__file__).resolve()
    for folder in (here.parents[1], here.parents[2]):
        if (folder / "gvf_core" / "__init__.py").is_file():
            return folder
    import importlib.util

    try:
        spec = importlib.util.find_spec("gvf_core")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parents[1]
    return None


def install_commands(python: str, missing: list[str], target: str | None = None, has_pip: bool = True) -> list[str]:
    """Shell commands that install the modules ``missing`` (import names) into ``python``
    (into the folder ``target`` when the worker uses a private dependency folder)."""
    py = shlex.quote(str(python))
    into = f" --target {shlex.quote(str(target))}" if target else ""
    cmds = [] if has_pip else [f"{py} -m ensurepip --upgrade"]
    if "torch" in missing:
        cmds.append(f"{py} -m pip install{into} {REQUIREMENTS['torch']} --index-url {TORCH_INDEX_CPU}")
    rest = [REQUIREMENTS[m] for m in missing if m in REQUIREMENTS and m != "torch"]
    if rest:
        cmds.append(f"{py} -m pip install{into} " + " ".join(shlex.quote(r) for r in rest))
    return cmds


def fix_message(python: str, missing: list[str], target: str | None = None, has_pip: bool = True) -> str:
    """"missing: ...; run: ..." with the commands, and where gvf_core comes from when it is missing."""
    lines = [f"{python} lacks: {', '.join(missing)}."]
    cmds = install_commands(python, missing, target, has_pip)
    if cmds:
        lines.append("Run:\n  " + "\n  ".join(cmds))
        if "torch" in missing:
            lines.append(f"(that is the CPU build of torch; for an NVIDIA GPU replace {TORCH_INDEX_CPU} by the CUDA index "
                         "for your driver, see https://pytorch.org/get-started/locally/)")
    if "gvf_core" in missing:
        lines.append("gvf_core ships with the add-on; if it is not found, put the folder that holds gvf_core/ on "
                     f"PYTHONPATH or run: {shlex.quote(str(python))} -m pip install -e <the gvf-animate source folder>")
    return "\n".join(lines)
