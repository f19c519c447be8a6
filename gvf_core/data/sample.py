"""One training sample: an animated mesh → canonical Gaussians, points, video, views.

``make_sample(seed, config, source)`` is a pure function of its arguments: the same
seed and config give the same arrays. The mesh animation comes from a
:class:`MotionSource` — procedural (random asset + random motion), or a clip of an
imported animation, or a user's static mesh with a random motion. Everything is then
brought into the model frame of the **first frame** (bounding box centred, longest
side 1); the first frame is the canonical pose, as in the paper (its displacement
field is "point at frame t minus its frame-0 position") and as in the product (the
driving video starts from the asset's reference render).

Array keys and shapes are listed in docs/data.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from gvf_core.cameras import Cameras
from gvf_core.canonical import Binding, BoundGaussians, mesh_to_gaussians, sample_surface, surface_points
from gvf_core.mesh import MeshData
from gvf_core.normalize import Normalization
from gvf_core.render import rasterize


@dataclass(frozen=True)
class SampleConfig:
    """How every sample of a data set is made (stored in the manifest)."""

    frames: int = 24
    """T, frames per sample."""
    fps: float = 24.0
    """Training frame rate; motions and imported clips are sampled at it."""
    num_gaussians: int = 4096
    """Canonical Gaussians per sample (blue-noise samples on the first-frame mesh)."""
    num_points: int = 8192
    """VAE point samples per frame (area-weighted, same face/barycentrics in every frame)."""
    image_size: int = 128
    """Driving-video and extra-view resolution (square), pixels."""
    extra_views: int = 3
    """Extra cameras for render losses."""
    extra_frames: int = 4
    """Frames (evenly spaced, first and last included) rendered from the extra cameras."""
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    """Driving-camera azimuth range around the object (0 = looking from −Y)."""
    elevation_deg: tuple[float, float] = (-10.0, 40.0)
    """Driving-camera elevation range."""
    fov_deg: tuple[float, float] = (30.0, 55.0)
    """Driving-camera field of view range (across the image)."""
    fill: tuple[float, float] = (0.55, 0.95)
    """Fraction of the image the motion's bounding sphere spans; sets the distance."""
    white_background_prob: float = 0.5
    """Probability of a white RGB video (alpha 255); otherwise RGBA on transparent."""
    max_vertices: int = 3000
    """Upper bound on procedural mesh vertices."""
    asset_prob: float = 0.5
    """With imported or user assets available, probability a sample uses one."""
    renderer: str = "splat"
    """Driving-video renderer: "splat" (the Gaussians, torch backend), or Blender's
    "workbench" / "cycles" on the mesh (needs bpy; ~2–4 s more per sample), so the model
    also sees the look of real renders. Extra views are always splatted."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SampleConfig":
        d = dict(d)
        for key in ("azimuth_deg", "elevation_deg", "fov_deg", "fill"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class Animation:
    """A mesh animation in world units: what a motion source produces."""

    mesh: MeshData  # rest mesh with colours (its vertices are not used as frame 0)
    vertices: np.ndarray  # [T, V, 3]
    info: dict = field(default_factory=dict)


class _Clock:
    """Adds the seconds since the previous call to ``timings[stage]`` (no-op without a dict)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
        self.last = now


def _camera_distance(radius: float, fov_deg: float, fill: float) -> float:
    """Distance at which a sphere of ``radius`` spans ``fill`` of the image."""
    half = math.radians(fov_deg) / 2
    return radius / (math.sin(half) * fill)


def _orbit_camera(rng: np.random.Generator, config: SampleConfig, radius: float, azimuth=None) -> tuple[Cameras, dict]:
    az = float(rng.uniform(*config.azimuth_deg)) if azimuth is None else float(azimuth)
    el = float(rng.uniform(*config.elevation_deg))
    fov = float(rng.uniform(*config.fov_deg))
    fill = float(rng.uniform(*config.fill))
    dist = _camera_distance(radius, fov, fill)
    size = config.image_size
    cam = Cameras.orbit([az], elevation_deg=el, distance=dist, fov_deg=fov, width=size, height=size)
    return cam, {"azimuth_deg": az, "elevation_deg": el, "fov_deg": fov, "distance": dist, "fill": fill}


def _rgba(rgb: torch.Tensor, alpha: torch.Tensor, white: bool) -> np.ndarray:
    """rgb rendered over black, alpha coverage → uint8 RGBA.

    white: RGB over white with alpha 255 (an RGB video on a plain background);
    otherwise straight-alpha RGBA on transparent.
    """
    if white:
        color = rgb + (1 - alpha)
        a = torch.ones_like(alpha)
    else:
        color = torch.where(alpha > 1e-6, rgb / alpha.clamp(min=1e-6), torch.zeros_like(rgb))
        a = alpha
    out = torch.cat([color, a], dim=-1).clamp(0, 1)
    return (out * 255 + 0.5).to(torch.uint8).numpy()


def _vertex_colors(mesh: MeshData) -> np.ndarray:
    """[V, 3] colour at every vertex, from whatever colour source the mesh has."""
    from gvf_core.mesh import sample_colors

    V = len(mesh.vertices)
    face_of = np.zeros(V, dtype=np.int64)
    corner_of = np.zeros(V, dtype=np.int64)
    for corner in range(3):  # any face touching the vertex will do
        face_of[mesh.faces[:, corner]] = np.arange(len(mesh.faces))
        corner_of[mesh.faces[:, corner]] = corner
    bary = np.eye(3)[corner_of]
    return sample_colors(mesh, face_of, bary)


def _blender_video(model_vertices: np.ndarray, mesh0: MeshData, cam: Cameras, engine: str, white: bool) -> np.ndarray:
    """Driving video rendered by Blender (Workbench or Cycles) from the mesh, as uint8 RGBA."""
    from gvf_core.data.imported import render_blender

    if engine not in ("workbench", "cycles"):
        raise ValueError(f"SampleConfig.renderer must be 'splat', 'workbench' or 'cycles', got {engine!r}")
    K = cam.K[0].double().numpy()
    size = int(round(2 * K[0, 2]))
    camera = {"width": size, "height": size, "fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
              "world_to_camera": cam.world_to_camera[0].double().numpy()}
    rgba = render_blender(model_vertices, mesh0.faces, camera, colors=_vertex_colors(mesh0), engine=engine)
    if not white:
        return rgba
    rgb = rgba[..., :3].astype(np.float32) / 255
    a = rgba[..., 3:].astype(np.float32) / 255
    out = np.concatenate([rgb * a + (1 - a), np.ones_like(a)], axis=-1)
    return (out * 255 + 0.5).astype(np.uint8)


def build_sample(
    animation: Animation, seed: int, config: SampleConfig, timings: dict | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Everything one training sample holds, from a world-unit mesh animation.

    ``timings``, when given, receives seconds per stage (added to existing entries).
    """
    clock = _Clock(timings)
    rng = np.random.default_rng([seed, 1])
    verts = np.asarray(animation.vertices, dtype=np.float64)
    T, V, _ = verts.shape
    if T != config.frames:
        raise ValueError(f"animation has {T} frames, the config asks for {config.frames}")
    if not np.isfinite(verts).all():
        raise ValueError(f"animation {animation.info.get('source', '')} has non-finite vertices")

    norm = Normalization.fit(verts[0])
    model = norm.apply(verts)  # [T, V, 3]
    mesh0 = animation.mesh.with_vertices(model[0])
    faces = mesh0.faces

    clock("normalize")
    bound = mesh_to_gaussians(mesh0, n=config.num_gaussians, seed=seed)
    clock("canonical_gaussians")
    pts_face, pts_bary = sample_surface(mesh0, config.num_points, seed=seed + 1, method="area")
    pts = surface_points(model, faces, pts_face, pts_bary)  # [T, P, 3]
    diag = float(np.linalg.norm(model[0].max(0) - model[0].min(0)))
    magnitude = float(np.linalg.norm(pts - pts[:1], axis=-1).mean() / diag)
    clock("points")

    # driving camera: the sphere around the origin that holds the whole motion
    radius = float(np.linalg.norm(model, axis=-1).max())
    cam, cam_info = _orbit_camera(rng, config, radius)
    white = bool(rng.uniform() < config.white_background_prob)
    extra = []
    for k in range(config.extra_views):
        az = cam_info["azimuth_deg"] + 360.0 * (k + 1) / (config.extra_views + 1) + float(rng.uniform(-20, 20))
        extra.append(_orbit_camera(rng, config, radius, azimuth=az)[0])
    extra_cams = Cameras.cat(extra) if extra else None
    extra_frames = np.unique(np.linspace(0, T - 1, config.extra_frames).round().astype(np.int64))

    size = config.image_size
    with torch.no_grad():
        states = bound.gaussians_at(torch.as_tensor(model, dtype=torch.float32))  # [T, N]
        if config.renderer == "splat":
            video = rasterize(states, cam, size, size, background=0.0, backend="torch")
            video_rgba = _rgba(video.rgb[:, 0], video.alpha[:, 0], white)  # [T, H, W, 4]
        else:
            video_rgba = _blender_video(model, mesh0, cam, config.renderer, white)
        clock("render_video")
        if extra_cams is not None:
            views = rasterize(states[torch.as_tensor(extra_frames)], extra_cams, size, size, background=0.0, backend="torch")
            extra_rgba = _rgba(views.rgb, views.alpha, white=False)  # [Fe, E, H, W, 4]
        else:
            extra_rgba = np.zeros((len(extra_frames), 0, size, size, 4), np.uint8)
        clock("render_extra_views")

    g = bound.to_dict()
    arrays = {
        "rest_vertices": model[0].astype(np.float32),
        "faces": faces.astype(np.int32),
        "vertices": model.astype(np.float32),
        "gs_face_idx": g["face_idx"].numpy().astype(np.int32),
        "gs_bary": g["bary"].numpy().astype(np.float32),
        "gs_offset": g["offset"].numpy().astype(np.float32),
        "gs_local_angle": g["local_angle"].numpy().astype(np.float32),
        "gs_local_log_scales": g["local_log_scales"].numpy().astype(np.float32),
        "gs_opacity_logits": g["opacity_logits"].numpy().astype(np.float32),
        "gs_sh0": g["sh0"].numpy().astype(np.float32),
        "pts_face_idx": pts_face.astype(np.int32),
        "pts_bary": pts_bary.astype(np.float32),
        "motion_magnitude": np.asarray(magnitude, dtype=np.float32),
        "video": video_rgba,
        "camera_K": cam.K[0].numpy().astype(np.float32),
        "camera_w2c": cam.world_to_camera[0].numpy().astype(np.float32),
        "extra_K": (extra_cams.K if extra_cams is not None else torch.zeros(0, 3, 3)).numpy().astype(np.float32),
        "extra_w2c": (extra_cams.world_to_camera if extra_cams is not None else torch.zeros(0, 4, 4)).numpy().astype(np.float32),
        "extra_frames": extra_frames.astype(np.int32),
        "extra_images": extra_rgba,
    }
    meta = {
        "seed": int(seed),
        "frames": T,
        "fps": config.fps,
        "num_vertices": V,
        "num_faces": int(len(faces)),
        "motion_magnitude": magnitude,
        "background": "white" if white else "transparent",
        "camera": cam_info,
        "normalization": norm.to_dict(),
        **{k: v for k, v in animation.info.items()},
    }
    return arrays, meta


def bound_from_sample(arrays: dict) -> BoundGaussians:
    """The canonical Gaussians of a stored sample (model frame, bound to its first-frame mesh).

    Accepts numpy arrays or torch tensors.
    """

    def t(key):
        v = arrays[key]
        return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))

    return BoundGaussians(
        binding=Binding(t("gs_face_idx").long(), t("gs_bary").float(), t("gs_offset").float()),
        local_angle=t("gs_local_angle").float(),
        local_log_scales=t("gs_local_log_scales").float(),
        opacity_logits=t("gs_opacity_logits").float(),
        sh0=t("gs_sh0").float(),
        faces=t("faces").long(),
        rest_vertices=t("rest_vertices").float(),
    )
