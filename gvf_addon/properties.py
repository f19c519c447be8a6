"""The panel's settings, stored on the scene as ``scene.gvf`` (saved with the .blend)."""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .jobs import JobSettings

MODES = [("SHAPE_KEYS", "Shape Keys", "One shape key per frame on a copy of the mesh (most portable: glTF, FBX)"),
         ("MESH_CACHE", "Mesh Cache (PC2)", "A PC2 file beside the .blend read by a Mesh Cache modifier (small .blend)"),
         ("POINT_CLOUD", "Point Cloud", "The animated Gaussians' centres as points (Mesh to Points)")]
REFINE = [("auto", "Auto", "Fast, on a GPU and on the CPU (measured choice, see docs/models.md)"),
          ("off", "Off", "The diffusion model's motion as sampled"),
          ("fast", "Fast", "The asset's surface points fitted to where the video's optical flow takes them, their "
                           "neighbour distances kept (about 7 s per 24 frames on the CPU)"),
          ("best", "Best", "As Fast, with a longer, more outlier-tolerant fit of the asset's overall rigid motion and "
                           "a longer point fit that keeps each small patch of the surface rigidly turned (about 20 s "
                           "per 24 frames on the CPU; a little more accurate than Fast on validation, level on test, "
                           "see docs/models.md)")]
BATCH_SOURCES = [("SELECTED", "Selected objects", "Animate every selected mesh with the same video"),
                 ("FOLDER", "Folder of assets", "Run the headless batch command on every mesh file of a folder")]


def _is_mesh(_self, obj):
    return obj.type == "MESH" and not obj.get("gvf_source")


def _is_camera(_self, obj):
    return obj.type == "CAMERA"


class GVF_SceneSettings(bpy.types.PropertyGroup):
    target: PointerProperty(name="Mesh", type=bpy.types.Object, poll=_is_mesh,
                            description="The mesh to animate (default: the active object)")
    video_path: StringProperty(name="Video", subtype="FILE_PATH", default="",
                               description="Driving video (.mp4 .gif .webm) or a folder of PNG frames, seen from the camera")
    first_frame: IntProperty(name="First frame", default=0, min=0, description="First video frame used (0 = the first)")
    frames: IntProperty(name="Frames", default=0, min=0, description="Video frames used (0 = all from the first frame on)")
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera,
                            description="The camera the video was seen from (default: the scene's active camera)")
    strength: FloatProperty(name="Strength", default=1.0, min=0.05, max=4.0,
                            description="Scales the motion read from the video (1 = as shown)")
    steps: IntProperty(name="Steps", default=JobSettings.steps, min=1, max=128,
                       description="Diffusion sampler steps (2: the model's best estimate; more: sharper, less exact motion)")
    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed: the same seed gives the same motion")
    mode: EnumProperty(name="Output", items=MODES, default="SHAPE_KEYS")
    appearance_views: IntProperty(name="Appearance views", default=0, min=0, max=32,
                                  description="Render the mesh from this many views (Workbench) and fit the Gaussians' "
                                              "colours to them before animating (0 = use the sampled vertex colours)")
    refine: EnumProperty(name="Refine", items=REFINE, default="auto",
                         description="Test-time refinement: fit the generated motion to the video")
    reference_path: StringProperty(name="Reference", subtype="FILE_PATH", default="//gvf_reference.png",
                                   description="Where Render Reference Frame writes its PNG (// = beside the .blend)")
    batch_source: EnumProperty(name="Batch", items=BATCH_SOURCES, default="SELECTED")
    batch_assets: StringProperty(name="Assets", subtype="DIR_PATH", default="", description="Folder of mesh files")
    batch_out: StringProperty(name="Output", subtype="DIR_PATH", default="//gvf_batch/",
                              description="Where the batch writes one .blend, PC2 file and PLY sequence per asset")
    # runtime state shown in the panel
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(default="")


def job_settings(scene, prefs=None) -> JobSettings:
    """The :class:`JobSettings` of the scene's GVF settings (and the add-on preferences)."""
    s = scene.gvf
    return JobSettings(
        video_path=s.video_path, first_frame=s.first_frame, frames=s.frames, steps=s.steps, seed=s.seed,
        strength=s.strength, refine=s.refine, mode=s.mode, frame_start=scene.frame_start,
        appearance_views=s.appearance_views,
        device=prefs.device if prefs is not None else "auto",
        model_dir=bpy.path.abspath(prefs.model_dir) if prefs is not None and prefs.model_dir else "",
    )


CLASSES = (GVF_SceneSettings,)


def register_properties() -> None:
    bpy.types.Scene.gvf = PointerProperty(type=GVF_SceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.gvf
