"""Turn a ``gvf animate`` output folder into an animated .blend (used by ``gvf demo``).

    python -m gvf_addon.demo_blend OUT_DIR MESH VIDEO [--mode SHAPE_KEYS|MESH_CACHE|POINT_CLOUD]

Reads ``OUT_DIR/vertices.npy`` (input-file frame and vertex order) and ``OUT_DIR/camera.json``,
builds the mesh from MESH exactly as the pipeline read it (same vertices, faces and colours;
the object carries the file → Blender-world rotation, so the file-frame positions are its
local coordinates), writes the animation back with :func:`gvf_addon.writeback.write_animation`,
adds the video's camera with the driving video as its background, and saves
``OUT_DIR/animated.blend``. Needs bpy and gvf_core (run in the project's Python).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def build(out_dir: Path, mesh_path: Path, video: Path, mode: str = "SHAPE_KEYS") -> Path:
    import bpy

    from gvf_core.mesh import load_mesh, sample_colors

    from .camera import apply_opencv_camera, matrix_world_from_world_to_camera
    from .writeback import write_animation

    vertices = np.load(out_dir / "vertices.npy")
    camera = json.loads((out_dir / "camera.json").read_text())
    mesh = load_mesh(mesh_path)
    file_vertices = mesh.to_file_frame(mesh.vertices)
    if file_vertices.shape != vertices.shape[1:]:
        raise ValueError(f"{out_dir}: vertices.npy has {vertices.shape[1]} vertices but {mesh_path} has {len(file_vertices)}")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.save_version = 0
    scene = bpy.context.scene
    me = bpy.data.meshes.new(mesh_path.stem)
    me.from_pydata(file_vertices.tolist(), [], np.asarray(mesh.faces).tolist())
    faces = np.asarray(mesh.faces)
    face_of = np.zeros(len(file_vertices), np.int64)  # one face per vertex, and the vertex's corner in it
    corner = np.zeros(len(file_vertices), np.int64)
    for k in range(3):
        face_of[faces[:, k]], corner[faces[:, k]] = np.arange(len(faces)), k
    colours = np.asarray(sample_colors(mesh, face_of, np.eye(3)[corner]), dtype=np.float32)[:, :3]
    if colours.shape == (len(file_vertices), 3):
        attr = me.color_attributes.new("Col", "BYTE_COLOR", "POINT")
        attr.data.foreach_set("color_srgb", np.concatenate([colours, np.ones((len(colours), 1), np.float32)], 1).ravel())
        mat = bpy.data.materials.new(f"{mesh_path.stem} colours")
        bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        node = mat.node_tree.nodes.new("ShaderNodeVertexColor")
        node.layer_name = "Col"
        mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
        me.materials.append(mat)
    me.update()
    obj = bpy.data.objects.new(mesh_path.stem, me)
    scene.collection.objects.link(obj)
    R = np.eye(4)
    R[:3, :3] = np.asarray(mesh.to_world_from_file, dtype=np.float64)
    obj.matrix_world = R.T.tolist()

    cam_data = bpy.data.cameras.new("Video Camera")
    apply_opencv_camera(cam_data, camera)
    cam = bpy.data.objects.new("Video Camera", cam_data)
    cam.matrix_world = matrix_world_from_world_to_camera(np.asarray(camera["world_to_camera"])).T.tolist()
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.render.resolution_x, scene.render.resolution_y = int(camera["width"]), int(camera["height"])
    scene.render.resolution_percentage = 100
    try:
        clip = bpy.data.movieclips.load(str(video))
        cam_data.show_background_images = True
        bg = cam_data.background_images.new()
        bg.source, bg.clip = "MOVIE_CLIP", clip
        bg.alpha = 0.5
    except RuntimeError:  # Blender cannot read the video (a PNG folder): no background, the rest stands
        pass
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler = (0.6, 0.2, 0.8)
    scene.collection.objects.link(sun)
    out = out_dir / "animated.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(out))  # first, so a Mesh Cache path is relative to it
    fps = json.loads((out_dir / "report.json").read_text()).get("fps", 24.0) if (out_dir / "report.json").exists() else 24.0
    write_animation(bpy.context, obj, vertices, mode, fps=float(fps), frame_start=1,
                    **({"pc2_path": "//animation.pc2"} if mode == "MESH_CACHE" else {}))
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gvf_addon.demo_blend", description=__doc__.split("\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("mesh", type=Path)
    p.add_argument("video", type=Path)
    p.add_argument("--mode", default="SHAPE_KEYS", choices=("SHAPE_KEYS", "MESH_CACHE", "POINT_CLOUD"))
    args = p.parse_args(argv)
    print(build(args.out_dir, args.mesh, args.video, args.mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
