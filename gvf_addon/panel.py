"""The "GVF" tab of the 3D Viewport sidebar (N panel)."""

import bpy

from .operators import job_running


class GVF_PT_animate(bpy.types.Panel):
    bl_label = "Animate from Video"
    bl_idname = "GVF_PT_animate"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GVF"

    def draw(self, context):
        s = context.scene.gvf
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        col = layout.column()
        col.prop(s, "target")
        if s.target is None and context.active_object is not None:
            col.label(text=f"Active: {context.active_object.name}", icon="MESH_DATA")
        col.prop(s, "video_path")
        row = col.row(align=True)
        row.prop(s, "first_frame")
        row.prop(s, "frames")
        col.prop(s, "camera")
        if s.camera is None:
            cam = context.scene.camera
            col.label(text=f"Scene camera: {cam.name}" if cam else "No scene camera", icon="CAMERA_DATA")
        col.operator("gvf.add_front_camera", icon="OUTLINER_OB_CAMERA")
        col.separator()
        col.prop(s, "strength")
        col.prop(s, "steps")
        col.prop(s, "seed")
        col.prop(s, "refine")
        col.prop(s, "appearance_views")
        col.prop(s, "mode")

        layout.use_property_split = False
        col = layout.column(align=True)
        col.prop(s, "reference_path", text="")
        col.operator("gvf.render_reference", icon="RENDER_STILL")
        col = layout.column(align=True)
        col.enabled = not job_running()
        col.scale_y = 1.4
        col.operator("gvf.animate", icon="PLAY")
        col = layout.column(align=True)
        col.enabled = not job_running()
        col.operator("gvf.extend", icon="NEXT_KEYFRAME")
        col.operator("gvf.remove_result", icon="X")
        if job_running():
            row = layout.row(align=True)
            row.progress(factor=s.progress, text=s.status or "Running")
            row.operator("gvf.cancel", text="", icon="CANCEL")
        elif s.status:
            layout.label(text=s.status)


class GVF_PT_batch(bpy.types.Panel):
    bl_label = "Batch"
    bl_idname = "GVF_PT_batch"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GVF"
    bl_parent_id = "GVF_PT_animate"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.gvf
        layout = self.layout
        layout.prop(s, "batch_source", expand=True)
        if s.batch_source == "FOLDER":
            layout.prop(s, "batch_assets")
            layout.prop(s, "batch_out")
        col = layout.column()
        col.enabled = not job_running()
        col.operator("gvf.batch", icon="FILE_FOLDER" if s.batch_source == "FOLDER" else "OBJECT_DATA")


CLASSES = (GVF_PT_animate, GVF_PT_batch)
