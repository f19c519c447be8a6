"""Pinhole cameras in the OpenCV convention (docs/conventions.md).

Camera axes: x right, y down, z forward. ``world_to_camera`` maps world points to
camera points; intrinsics are pixels with the pixel-centre of pixel (i, j) at
(i + 0.5, j + 0.5). The world is right-handed with +Z up (as in Blender); azimuth 0
looks from -Y towards +Y (Blender's front view), positive azimuth turns the camera
counter-clockwise seen from above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Cameras:
    """C cameras: intrinsics ``K`` [C, 3, 3] and extrinsics ``world_to_camera`` [C, 4, 4]."""

    K: Tensor
    world_to_camera: Tensor

    def __post_init__(self) -> None:
        if self.K.dim() == 2:
            self.K = self.K[None]
        if self.world_to_camera.dim() == 2:
            self.world_to_camera = self.world_to_camera[None]
        C = self.K.shape[0]
        if tuple(self.K.shape) != (C, 3, 3) or tuple(self.world_to_camera.shape) != (C, 4, 4):
            raise ValueError(
                f"Cameras need K [C,3,3] and world_to_camera [C,4,4]; got {tuple(self.K.shape)} and {tuple(self.world_to_camera.shape)}"
            )

    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index) -> "Cameras":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.K[index], self.world_to_camera[index])

    def to(self, *args, **kwargs) -> "Cameras":
        return Cameras(self.K.to(*args, **kwargs), self.world_to_camera.to(*args, **kwargs))

    @property
    def camera_to_world(self) -> Tensor:
        return torch.linalg.inv(self.world_to_camera)

    @property
    def centers(self) -> Tensor:
        """[C, 3] camera centres in world coordinates."""
        R = self.world_to_camera[:, :3, :3]
        t = self.world_to_camera[:, :3, 3]
        return -(R.transpose(1, 2) @ t[..., None])[..., 0]

    @staticmethod
    def cat(items: list["Cameras"]) -> "Cameras":
        return Cameras(torch.cat([c.K for c in items]), torch.cat([c.world_to_camera for c in items]))

    # ------------------------------------------------------------------ builders
    @staticmethod
    def intrinsics(width: int, height: int, fov_deg: float, dtype=torch.float32) -> Tensor:
        """[3, 3] intrinsics with ``fov_deg`` across the larger image side, centred."""
        f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
        return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype)

    @staticmethod
    def look_at_matrix(eye, target, up=(0.0, 0.0, 1.0), dtype=torch.float32) -> Tensor:
        """[4, 4] world-to-camera matrix of a camera at ``eye`` looking at ``target``."""
        eye = torch.as_tensor(eye, dtype=torch.float64)
        target = torch.as_tensor(target, dtype=torch.float64)
        up = torch.as_tensor(up, dtype=torch.float64)
        forward = torch.nn.functional.normalize(target - eye, dim=0)
        right = torch.linalg.cross(forward, up)
        if right.norm() < 1e-9:  # looking straight along `up`: pick any perpendicular
            right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
        right = torch.nn.functional.normalize(right, dim=0)
        down = torch.linalg.cross(forward, right)
        R = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
        M = torch.eye(4, dtype=torch.float64)
        M[:3, :3] = R
        M[:3, 3] = -R @ eye
        return M.to(dtype)

    @classmethod
    def orbit(
        cls,
        azimuths_deg,
        elevation_deg: float = 15.0,
        distance: float = 2.5,
        fov_deg: float = 40.0,
        width: int = 256,
        height: int = 256,
        target=(0.0, 0.0, 0.0),
        dtype=torch.float32,
    ) -> "Cameras":
        """Cameras on a circle around ``target`` (Z up), one per azimuth."""
        target_t = torch.as_tensor(target, dtype=torch.float64)
        el = math.radians(elevation_deg)
        mats = []
        for az_deg in torch.as_tensor(azimuths_deg, dtype=torch.float64).reshape(-1).tolist():
            az = math.radians(az_deg)
            offset = torch.tensor([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)], dtype=torch.float64)
            mats.append(cls.look_at_matrix(target_t + distance * offset, target_t, dtype=dtype))
        K = cls.intrinsics(width, height, fov_deg, dtype=dtype)
        return cls(K.expand(len(mats), 3, 3).clone(), torch.stack(mats))
