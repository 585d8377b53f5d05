"""Face restoration: RetinaFace detection (decoding, NMS), FFHQ alignment and paste-back, the restorer
folders and their messages, the detector download; GFPGAN with random weights on a face crop (slow)."""
from __future__ import annotations

import http.server
import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.face_restoration import align, retinaface
from modules.face_restoration.service import DETECTOR_FILE, FaceRestorers
from tests.api_support import make_context
from tests.face_support import OFFSETS, rigged_detector


def synthetic_face(size: int = 96) -> Image.Image:
    """A cartoon face: skin disc, two eyes, a nose, a mouth, on a grey background."""
    image = Image.new("RGB", (size, size), (90, 90, 100))
    d = ImageDraw.Draw(image)
    s = size / 96
    d.ellipse([20 * s, 12 * s, 76 * s, 84 * s], fill=(225, 180, 150))
    for x in (37, 59):
        d.ellipse([(x - 5) * s, 36 * s, (x + 5) * s, 44 * s], fill=(40, 30, 30))
    d.polygon([(48 * s, 46 * s), (44 * s, 58 * s), (52 * s, 58 * s)], fill=(200, 140, 120))
    d.chord([36 * s, 60 * s, 60 * s, 72 * s], 0, 180, fill=(150, 40, 50))
    return image


def test_similarity_transform_recovers_a_rotation_scale_and_shift():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.array([[10, 20], [40, 22], [25, 35], [14, 50], [38, 49]], float)
    matrix = align.similarity_transform(src, src @ rot.T + shift)
    assert np.allclose(matrix[:, :2], rot, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-9)


def test_the_crop_puts_the_landmarks_on_the_ffhq_template_and_pasting_an_unchanged_crop_keeps_the_image():
    image = synthetic_face(192)
    landmarks = np.array([[74, 80], [118, 80], [96, 104], [80, 128], [112, 128]], float)
    crop, matrix = align.crop_face(image, landmarks)
    assert crop.size == (512, 512)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - align.FFHQ_TEMPLATE).max() < 12  # a similarity fits 5 points closely
    back = np.asarray(align.paste_face(image, crop, matrix), np.float32)
    original = np.asarray(image, np.float32)
    assert back.shape == original.shape and np.abs(back - original).mean() < 2.0
    # a crop painted red comes back red in the middle of the face only
    red = align.paste_face(image, Image.new("RGB", (512, 512), (255, 0, 0)), matrix)
    centre, corner = np.asarray(red)[100, 96], np.asarray(red)[2, 2]
    assert tuple(centre) == (255, 0, 0) and tuple(corner) == tuple(np.asarray(image)[2, 2])


def test_priors_follow_the_heads_order():
    anchors = retinaface.priors(64, 96)
    assert anchors.shape == ((8 * 12 + 4 * 6 + 2 * 3) * 2, 4)
    assert torch.allclose(anchors[0], torch.tensor([4 / 96, 4 / 64, 16 / 96, 16 / 64]))
    assert torch.allclose(anchors[1], torch.tensor([4 / 96, 4 / 64, 32 / 96, 32 / 64]))
    assert torch.allclose(anchors[-1], torch.tensor([80 / 96, 48 / 64, 512 / 96, 512 / 64]))


def test_detection_decodes_boxes_and_landmarks_and_keeps_one_of_overlapping_faces():
    image = np.asarray(synthetic_face(96))
    faces = retinaface.detect(rigged_detector(), image, resize=None)
    assert len(faces) == 1  # nine 512 px anchors over a 96 px image: NMS keeps one
    face = faces[0]
    assert face.score > 0.99
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    expected = np.array([[cx + 0.1 * 512 * dx, cy + 0.1 * 512 * dy] for dx, dy in OFFSETS])
    assert np.allclose(face.landmarks, expected, atol=1e-3)
    assert face.box[2] - face.box[0] == pytest.approx(512, abs=1e-3)
    assert retinaface.detect(rigged_detector(faces=False), image, resize=None) == []


def test_missing_restorers_are_refused_naming_the_folder(tmp_path):
    from modules import generation
    from modules.errors import RequestError

    ctx = make_context(tmp_path)
    assert ctx.services.face_restorers.available() == []
    with pytest.raises(RequestError, match="Codeformer") as e:
        generation.prepare(ctx, generation.GenerationRequest("txt2img", {"restore_faces": True}))
    assert e.value.field == "restore_faces" and str(tmp_path / "models" / "Codeformer") in str(e.value)
    with pytest.raises(RequestError, match="GFPGANv1.4.pth") as e:
        generation.prepare(ctx, generation.GenerationRequest("extras", {
            "image": synthetic_face(), "gfpgan_visibility": 0.5}))
    assert e.value.field == "gfpgan_visibility"
    with ctx.opts.override({"face_restoration": True}):  # the setting alone asks for it too
        with pytest.raises(RequestError, match="face restoration with CodeFormer"):
            generation.prepare(ctx, generation.GenerationRequest("txt2img", {}))
    api = {r["name"]: r["cmd_dir"] for r in ctx.services.face_restorers.as_api()}
    assert api == {"CodeFormer": None, "GFPGAN": None}


class _RunsCode:
    def __reduce__(self):
        return (print, ("downloaded pickle ran",))


@pytest.fixture
def file_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_detector_is_read_from_models_or_downloaded_once_and_checked(tmp_path, file_server, capsys):
    served, url = file_server
    ctx = make_context(tmp_path)
    target = tmp_path / "models" / "GFPGAN" / DETECTOR_FILE
    offline = FaceRestorers(ctx, detector_url=f"{url}/nothing-here.pth")
    with pytest.raises(ValueError, match=f"put {DETECTOR_FILE} .* into {target.parent}"):
        offline.detector()
    assert not target.exists()
    torch.save({"evil": _RunsCode()}, served / "evil.pth")
    with pytest.raises(ValueError, match="would run code"):
        FaceRestorers(ctx, detector_url=f"{url}/evil.pth").detector()
    assert not target.exists() and "downloaded pickle ran" not in capsys.readouterr().out
    rigged = rigged_detector()
    torch.save({f"module.{k}": v.half() for k, v in rigged.state_dict().items()}, served / "good.pth")
    service = FaceRestorers(ctx, detector_url=f"{url}/good.pth")
    net = service.detector()
    assert target.is_file()  # kept for next time
    assert torch.equal(net.ClassHead[2].conv1x1.bias, rigged.ClassHead[2].conv1x1.bias)
    again = FaceRestorers(ctx, detector_url=None)  # now it reads the file, no download
    assert isinstance(again.detector(), retinaface.RetinaFace)


@pytest.mark.slow
def test_gfpgan_with_random_weights_restores_a_synthetic_face_in_txt2img_and_extras(tmp_path):
    """~60 s on one CPU thread: a full-size GFPGAN (86M parameters) is the smallest spandrel detects."""
    from safetensors.torch import save_file
    from spandrel.architectures.GFPGAN import GFPGAN

    from modules import generation
    from tests.api_support import write_tiny_checkpoint

    torch.manual_seed(0)
    folder = tmp_path / "models" / "GFPGAN"
    folder.mkdir(parents=True)
    save_file({k: v.half().contiguous() for k, v in GFPGAN().state_dict().items()}, folder / "GFPGANv1.4.safetensors")
    torch.save(rigged_detector().state_dict(), folder / DETECTOR_FILE)
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "tiny", "tiny-v1")
    ctx = make_context(tmp_path)
    service = ctx.services.face_restorers
    service.detect_size = None
    assert service.available() == ["GFPGAN"]
    face = synthetic_face(96)
    crop = service.restore_crop("GFPGAN", face.resize((512, 512)))
    assert crop.size == (512, 512) and np.abs(np.asarray(crop, float) - np.asarray(face.resize((512, 512)))).mean() > 5
    restored = service.restore(face, "GFPGAN")
    assert restored.size == face.size and not np.array_equal(np.asarray(restored), np.asarray(face))
    out = generation.run(ctx, generation.GenerationRequest("extras", {
        "image": face, "upscaler_1": "None", "gfpgan_visibility": 0.5}))
    half = np.asarray(Image.blend(face, restored, 0.5), np.int16)
    assert np.abs(np.asarray(out.images[0], np.int16) - half).max() <= 1
    assert "GFPGAN visibility: 0.5" in out.infotext
    with ctx.opts.override({"face_restoration_model": "GFPGAN"}):
        result = generation.run(ctx, generation.GenerationRequest("txt2img", {
            "prompt": "a face", "steps": 2, "width": 64, "height": 64, "seed": 1, "restore_faces": True,
            "do_not_save_samples": True}))
        plain = generation.run(ctx, generation.GenerationRequest("txt2img", {
            "prompt": "a face", "steps": 2, "width": 64, "height": 64, "seed": 1, "do_not_save_samples": True}))
    assert "Face restoration: GFPGAN" in result.infotext and "Face restoration" not in plain.infotext
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(plain.images[0]))
