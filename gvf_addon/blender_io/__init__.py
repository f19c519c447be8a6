"""Headless Blender I/O scripts, run in a Python that has ``bpy`` (the bpy module or ``blender -b``).

Each module is a command-line program, started as a subprocess by the bpy-free library
(``gvf_core.data.imported``); they talk to it through files (npz in, npz/PNG out), a
non-zero exit code and one ``GVF_ERROR: ...`` line on stderr.

- :mod:`.extract_animation`: animated glTF/GLB/FBX -> per-action world-space vertex tracks.
- :mod:`.render_frames`: vertex tracks + an OpenCV camera -> RGBA PNGs (Workbench or Cycles).

Importing this package does not import ``bpy``; the modules import it when run.
"""

ERROR_PREFIX = "GVF_ERROR: "
"""Prefix of the one-line error message the scripts print on stderr before exiting with 2."""
