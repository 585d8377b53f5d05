"""Textual inversion: creating an embedding (A1111's file, init text), the learning-rate schedule,
training a few steps through the API on a tiny model, and (slow) the semantic check on the demo
model: an embedding trained on blue circles makes it draw blue circles when its name is prompted."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules import generation
from modules.embeddings import load_embedding
from modules.textual_inversion import training
from modules.training import image_metrics, shapes
from tests.api_support import make_context, make_data_dir

ROOT = Path(__file__).resolve().parents[1]


def write_shapes(folder: Path, n: int, size: int, color: str = "blue", shape: str = "circle") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(shapes.sample_scenes(np.random.default_rng(0), n)):
        Image.fromarray(shapes.render(replace(scene, color=color, shape=shape), size)).save(folder / f"{i:02d}.png")
        (folder / f"{i:02d}.txt").write_text(f"on the {scene.side}")
    return folder


def test_learn_rate_schedule_is_a1111s():
    s = training.LearnRateSchedule("0.005:100, 1e-3:1000, 1e-5", 5000)
    assert (s.rate(0), s.rate(99), s.rate(100), s.rate(999), s.rate(1000), s.rate(4999)) == (
        0.005, 0.005, 1e-3, 1e-3, 1e-5, 1e-5)
    assert training.LearnRateSchedule("0.1", 10).rate(50) == 0.1
    for bad in ("", "fast", "-1", "0.1:abc"):
        with pytest.raises(ValueError):
            training.LearnRateSchedule(bad, 10)


def test_captions_come_from_text_files_or_file_names(tmp_path):
    (tmp_path / "01-a red car.png").touch()
    (tmp_path / "x.png").touch()
    (tmp_path / "x.txt").write_text("a blue bike\n")
    assert training.caption_for(tmp_path / "01-a red car.png") == "a red car"
    assert training.caption_for(tmp_path / "x.png") == "a blue bike"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("ti-data"))
    ctx = make_context(root)
    from webui.api import routes
    app = FastAPI()
    routes.install(app, ctx)
    return ctx, TestClient(app, raise_server_exceptions=False)


def test_create_and_train_through_the_api(api, tmp_path):
    ctx, client = api
    r = client.post("/sdapi/v1/create/embedding", json={"name": "tok", "num_vectors_per_token": 3,
                                                        "init_text": "red circle"})
    assert r.status_code == 200, r.text
    path = ctx.paths.embeddings_dir / "tok.pt"
    created = load_embedding(path)
    assert created.vectors == 3 and created.step == 0
    clip = ctx.models.current.model.cond_stage_model
    ids = clip.tokenizer.encode("red circle")
    with torch.no_grad():
        expected = clip.embed_tokens(torch.tensor([ids]))[0]
    assert torch.allclose(created.vec[0], expected[0]) and torch.allclose(created.vec[2], expected[1])
    assert client.post("/sdapi/v1/create/embedding", json={"name": "tok"}).status_code == 422  # exists
    data = write_shapes(tmp_path / "data", 3, 64)
    r = client.post("/sdapi/v1/train/embedding", json={
        "embedding_name": "tok", "data_root": str(data), "steps": 4, "batch_size": 2, "gradient_step": 2,
        "learn_rate": "0.05:2, 0.01", "training_width": 64, "training_height": 64, "save_embedding_every": 2,
        "create_image_every": 4, "template_filename": "subject_filewords.txt"})
    assert r.status_code == 200, r.text
    trained = load_embedding(path)
    assert trained.step == 4 and not torch.allclose(trained.vec, created.vec)
    logs = list((ctx.paths.data_dir / "textual_inversion").rglob("*"))
    assert {"tok-2.pt", "tok-4.pt", "tok-4.png"} <= {p.name for p in logs}
    bad = client.post("/sdapi/v1/train/embedding", json={"embedding_name": "tok", "data_root": str(tmp_path / "no")})
    assert bad.status_code == 422 and "does not exist" in bad.json()["detail"]


@pytest.mark.slow
def test_an_embedding_trained_on_blue_circles_draws_blue_circles_on_the_demo_model(tmp_path):
    """About 40 s on one CPU thread: 150 steps of batch 4 at 32x32, then 10 seeds before and after."""
    from modules.startup import DEMO_FILE, create_model_manager
    from modules.textual_inversion import service

    ctx = make_context(tmp_path)
    ctx.models = create_model_manager(ctx, [DEMO_FILE.parent])
    ctx.models.load(ctx.models.catalog.get("demo").title)
    service.create(ctx, "zqxw", 2, "shape")
    data = write_shapes(tmp_path / "circles", 8, 32)

    def draw() -> list:
        out = []
        for seed in range(10):
            result = generation.run(ctx, generation.GenerationRequest("txt2img", {
                "prompt": "a zqxw", "steps": 20, "width": 32, "height": 32, "seed": seed,
                "sampler_name": "DPM++ 2M", "scheduler": "Karras", "do_not_save_samples": True}))
            image = np.asarray(result.images[0])
            out.append((image_metrics.dominant_color(image), image_metrics.shape(image)))
        return out
    before = draw()
    service.train(ctx, {"embedding_name": "zqxw", "data_root": str(data), "steps": 150, "batch_size": 4,
                        "learn_rate": "0.02", "training_width": 32, "training_height": 32,
                        "template_filename": "a_name.txt", "save_embedding_every": 0, "create_image_every": 0})
    after = draw()
    assert sum(c == "blue" for c, _ in before) <= 4, before
    assert sum(c == "blue" for c, _ in after) >= 8, after
    assert sum(s == "circle" for _, s in after) >= 7, after
