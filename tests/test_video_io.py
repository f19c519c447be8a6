"""Reading driving videos and writing PNG frames (gvf_core/video.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gvf_core.video import VideoClip, VideoError, read_video, write_png_frames, write_video


def smooth_frames(T: int = 8, H: int = 48, W: int = 64, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8: a colour gradient with a moving square (compresses well)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    frames = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        frames[t, ..., 0] = (x * 255 // (W - 1)).astype(np.uint8)
        frames[t, ..., 1] = (y * 255 // (H - 1)).astype(np.uint8)
        frames[t, ..., 2] = 40 + 20 * t
        x0 = 4 + 4 * t
        frames[t, 10:26, x0 : x0 + 16] = rng.integers(150, 255, size=3, dtype=np.uint8)
    return frames


def rgba_frames(T: int = 5, H: int = 12, W: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(T, H, W, 4), dtype=np.uint8)


# ---------------------------------------------------------------------------------- round trips
def test_mp4_round_trip(tmp_path):
    frames = smooth_frames()
    path = write_video(tmp_path / "clip.mp4", frames, fps=12)
    clip = read_video(path)
    assert isinstance(clip, VideoClip)
    assert clip.frames.dtype == np.uint8
    assert clip.frames.shape == frames.shape  # [T, H, W, 3]
    assert clip.num_frames == 8 and not clip.has_alpha
    assert clip.fps == pytest.approx(12.0)
    assert clip.source == str(path)
    err = np.abs(clip.frames.astype(np.float64) - frames.astype(np.float64)).mean()
    assert err < 12, err  # mp4v is lossy; a BGR/RGB swap would give ~100


@pytest.mark.parametrize("suffix, fourcc", [(".avi", "MJPG"), (".mov", "mp4v")])
def test_other_opencv_containers(tmp_path, suffix, fourcc):
    import cv2

    frames = smooth_frames(T=4)
    path = tmp_path / f"clip{suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 15.0, (frames.shape[2], frames.shape[1]))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV build cannot write {fourcc} {suffix}")
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))  # RGB -> BGR
    writer.release()
    clip = read_video(path)
    assert clip.frames.shape == frames.shape
    assert clip.fps == pytest.approx(15.0)
    assert np.abs(clip.frames.astype(np.float64) - frames.astype(np.float64)).mean() < 12


def test_mp4_max_frames(tmp_path):
    path = write_video(tmp_path / "clip.mp4", smooth_frames(), fps=24)
    assert read_video(path, max_frames=3).frames.shape[0] == 3
    assert read_video(path, max_frames=100).frames.shape[0] == 8
    with pytest.raises(VideoError, match="max_frames"):
        read_video(path, max_frames=1)


def test_gif_round_trip_rgb(tmp_path):
    frames = smooth_frames(T=4)
    path = write_video(tmp_path / "clip.gif", frames, fps=10)
    clip = read_video(path)
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(10.0)
    err = np.abs(clip.frames.astype(np.float64) - frames.astype(np.float64)).mean()
    assert err < 12, err  # GIF palette quantization


def test_gif_with_transparency_is_rgba_and_full_size(tmp_path):
    H, W = 20, 30
    images = []
    for t in range(3):
        a = np.zeros((H, W, 4), np.uint8)
        a[5:15, 5 + t : 15 + t] = (200, 60 * t, 30, 255)
        images.append(Image.fromarray(a))
    path = tmp_path / "alpha.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0, disposal=2)
    clip = read_video(path)
    assert clip.frames.shape == (3, H, W, 4)  # every frame composited to the full canvas
    assert clip.has_alpha
    assert clip.fps == pytest.approx(25.0)
    for t in range(3):
        alpha = clip.frames[t, ..., 3]
        assert (alpha[5:15, 5 + t : 15 + t] == 255).all()
        assert (alpha[:5] == 0).all() and (alpha[:, :5] == 0).all()
        assert tuple(clip.frames[t, 10, 10, :3]) == (200, 60 * t, 30)


def test_png_folder_rgba_round_trip_exact(tmp_path):
    frames = rgba_frames()
    paths = write_png_frames(tmp_path / "frames", frames)
    assert [p.name for p in paths] == [f"frame_{t:04d}.png" for t in range(5)]
    clip = read_video(tmp_path / "frames")
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.frames, frames)
    assert clip.fps == 24.0 and clip.has_alpha


def test_png_folder_rgb_round_trip_exact_and_floats(tmp_path):
    frames = rgba_frames(T=3)[..., :3]
    write_png_frames(tmp_path / "a", frames)
    np.testing.assert_array_equal(read_video(tmp_path / "a").frames, frames)
    write_png_frames(tmp_path / "b", frames.astype(np.float32) / 255.0)  # floats in 0..1
    np.testing.assert_array_equal(read_video(tmp_path / "b").frames, frames)


def test_png_folder_natural_sort_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "frame_33.png", "frame_9.png"]
    order = sorted(names, key=lambda n: int(n[6:-4]))  # 1 2 9 10 33
    for n in names:
        value = order.index(n) * 40
        Image.fromarray(np.full((4, 6, 3), value, np.uint8)).save(folder / n)
    (folder / "notes.txt").write_text("ignored")
    clip = read_video(folder)
    assert clip.frames[:, 0, 0, 0].tolist() == [0, 40, 80, 120, 160]
    assert read_video(folder, max_frames=2).frames[:, 0, 0, 0].tolist() == [0, 40]


def test_png_folder_grey_la_and_mixed_alpha(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.full((4, 6), 100, np.uint8), "L").save(folder / "f0.png")
    Image.fromarray(np.dstack([np.full((4, 6), 50, np.uint8), np.full((4, 6), 7, np.uint8)]), "LA").save(folder / "f1.png")
    Image.fromarray(np.full((4, 6, 3), 9, np.uint8)).save(folder / "f2.png")
    clip = read_video(folder)
    assert clip.frames.shape == (3, 4, 6, 4)  # one frame has alpha -> RGBA for all
    assert tuple(clip.frames[0, 0, 0]) == (100, 100, 100, 255)
    assert tuple(clip.frames[1, 0, 0]) == (50, 50, 50, 7)
    assert tuple(clip.frames[2, 0, 0]) == (9, 9, 9, 255)


def test_write_png_frames_refuses_folder_with_other_pngs(tmp_path):
    write_png_frames(tmp_path / "f", rgba_frames(T=4))
    with pytest.raises(ValueError, match=r"2 other \.png file\(s\) \(e\.g\. frame_0002\.png\)"):
        write_png_frames(tmp_path / "f", rgba_frames(T=2))  # frames 2, 3 would be stale
    write_png_frames(tmp_path / "f", rgba_frames(T=4, seed=1))  # same names: overwritten
    np.testing.assert_array_equal(read_video(tmp_path / "f").frames, rgba_frames(T=4, seed=1))


# ---------------------------------------------------------------------------------- errors
def assert_video_error(path, *fragments, **kwargs):
    with pytest.raises(VideoError) as info:
        read_video(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, ValueError)
    return message


def test_missing_path(tmp_path):
    assert_video_error(tmp_path / "nope.mp4", "does not exist")


def test_unsupported_extension_lists_supported(tmp_path):
    path = tmp_path / "clip.mkv"
    path.write_bytes(b"\0" * 100)
    assert_video_error(path, "'.mkv'", ".mp4", ".webm", ".mov", ".avi", ".gif", "folder of .png")


@pytest.mark.parametrize("name", ["still.png", "still.jpg"])
def test_single_image_file_is_an_error(tmp_path, name):
    path = tmp_path / name
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    assert_video_error(path, "single image", "at least 2 frames")


def test_corrupt_mp4(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_video_error(path, "could not decode", "re-encode")


def test_empty_mp4(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert_video_error(path, "could not decode")


def test_corrupt_gif(tmp_path):
    path = tmp_path / "broken.gif"
    path.write_bytes(b"GIF89a" + bytes(range(40)))
    assert_video_error(path)


def test_empty_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    assert_video_error(folder, "no .png frames")


def test_single_frame_folder(tmp_path):
    write_png_frames(tmp_path / "one", rgba_frames(T=1))
    message = assert_video_error(tmp_path / "one")
    assert message == f"a video needs at least 2 frames; got 1 in {tmp_path / 'one'}"


def test_single_frame_gif(tmp_path):
    path = write_video(tmp_path / "one.gif", smooth_frames(T=1))
    assert_video_error(path, "at least 2 frames; got 1")


def test_png_folder_different_sizes_names_first_offender(tmp_path):
    folder = tmp_path / "frames"
    write_png_frames(folder, rgba_frames(T=3, H=12, W=17))
    Image.fromarray(np.zeros((12, 18, 3), np.uint8)).save(folder / "frame_0001.png")
    Image.fromarray(np.zeros((13, 17, 3), np.uint8)).save(folder / "frame_0002.png")
    message = assert_video_error(folder, "frame_0001.png", "18x12", "17x12", "same size")
    assert "frame_0002.png" not in message


def test_corrupt_png_in_folder(tmp_path):
    folder = tmp_path / "frames"
    write_png_frames(folder, rgba_frames(T=3))
    (folder / "frame_0001.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match="frame_0001.png"):
        read_video(folder)
