"""gvf train vae / eval vae / data encode on a tiny data set."""

import json

from safetensors import safe_open

from gvf_core.cli import main
from gvf_core.data.make import make_dataset
from gvf_core.data.sample import SampleConfig
from gvf_core.models.vae import VAE_PRESETS

SMALL = SampleConfig(frames=6, num_gaussians=512, num_points=2048, image_size=32, extra_views=1, extra_frames=2)


def test_train_eval_encode(tmp_path, capsys):
    data = tmp_path / "data"
    make_dataset(data, split="train", count=2, start=0, config=SMALL, workers=1, shard_size=2)
    make_dataset(data, split="val", count=1, config=SMALL, workers=1)
    out = tmp_path / "vae"
    assert main(["train", "vae", "--preset", "tiny", "--data", str(data), "--out", str(out), "--steps", "2",
                 "--batch-size", "1", "--frames", "2", "--gaussians", "64", "--device", "cpu"]) == 0
    assert (out / "vae.safetensors").exists() and (out / "training_state.safetensors").exists()
    # resuming a finished run does nothing more
    assert main(["train", "vae", "--preset", "tiny", "--data", str(data), "--out", str(out), "--steps", "2",
                 "--batch-size", "1", "--frames", "2", "--gaussians", "64", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["eval", "vae", "--model", str(out), "--data", str(data), "--json", "--limit", "1", "--device", "cpu"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["samples"] == 1
    assert 0 <= figures["vertex_error"] and figures["vertex_error_static"] > 0
    assert figures["vertex_error_writeback_ceiling"] < 0.005
    assert main(["data", "encode", "--data", str(data), "--model", str(out / "vae.safetensors"), "--splits", "train", "--device", "cpu"]) == 0
    latents = sorted((data / "latents").glob("train-*.safetensors"))
    assert len(latents) == 1
    tiny = VAE_PRESETS["tiny"]
    with safe_open(str(latents[0]), framework="pt") as f:
        mean = f.get_tensor("0001/mean")
        assert tuple(mean.shape) == (SMALL.frames, tiny.num_latents, tiny.latent_channels)
        assert (f.get_tensor("0001/std") > 0).all()


def test_eval_with_a_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "vae", "--model", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
