"""Saving outputs: names, never overwriting, atomic writes, metadata in PNG/JPEG/WEBP, grids, previews."""
import datetime
import io
import threading
from types import SimpleNamespace

import piexif
import piexif.helper
import pytest
import torch
from PIL import Image, PngImagePlugin

from modules import images
from modules.image_metadata import decode_user_comment, encode_user_comment

INFO = 'a cat, "quoted"\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, Seed: 5, Size: 64x64, Note: 猫 🐱'


def img(color=(200, 10, 10), size=(64, 64)):
    return Image.new("RGB", size, color)


def today():
    return datetime.datetime.now().strftime("%Y-%m-%d")


def test_default_names_count_up_in_a_dated_folder(tmp_path):
    first, _ = images.save_image(img(), tmp_path, seed=42, prompt="a cat", info=INFO)
    second, _ = images.save_image(img(), tmp_path, seed=43, prompt="a cat", info=INFO)
    assert first == str(tmp_path / today() / "00000-42.png")
    assert second == str(tmp_path / today() / "00001-43.png")
    (tmp_path / today() / "00017-999.png").write_bytes(b"someone else's file")
    third, _ = images.save_image(img(), tmp_path, seed=44)
    assert third.endswith("00018-44.png")


def test_grids_and_flat_folders(tmp_path):
    grid, _ = images.save_image(img(), tmp_path, seed=1, grid=True)
    assert grid == str(tmp_path / today() / "grid-0000.png")
    flat, _ = images.save_image(img(), tmp_path, seed=7, prompt="red: box/one", save_to_dirs=False)
    assert flat == str(tmp_path / "00000-7-red_ box_one.png")


def test_filename_pattern_tokens_are_sanitised(tmp_path):
    opts = SimpleNamespace(samples_filename_pattern="[seed]-[prompt_spaces]-[steps]-[unknown]-[datetime<%Y>]",
                           directories_filename_pattern="[prompt_words]", samples_format="png")
    p = SimpleNamespace(steps=20, all_seeds=[3])
    path, _ = images.save_image(img(), tmp_path, seed=3, prompt='a "cat": <sitting>/on\\a mat?', opts=opts, p=p)
    year = datetime.datetime.now().year
    assert path == str(tmp_path / "a cat sitting on a mat" / f"00000-3-a _cat__ _sitting__on_a mat_-20-[unknown]-{year}.png")


def test_pattern_cannot_escape_the_output_folder(tmp_path):
    opts = SimpleNamespace(directories_filename_pattern="../../elsewhere")
    with pytest.raises(ValueError, match="outside the output folder"):
        images.save_image(img(), tmp_path / "out", seed=1, opts=opts)


def test_never_overwrites(tmp_path):
    target = tmp_path / "taken.png"
    target.write_bytes(b"precious")
    assert images.write_new_file(target, b"new") is False
    assert target.read_bytes() == b"precious"
    with pytest.raises(FileExistsError, match="never overwritten"):
        images.save_image(img(), tmp_path, forced_filename="taken", save_to_dirs=False)
    assert target.read_bytes() == b"precious"


def test_concurrent_saves_get_distinct_files_and_leave_no_temp_files(tmp_path):
    paths = []
    threads = [threading.Thread(target=lambda s=s: paths.append(images.save_image(img(), tmp_path, seed=s)[0]))
               for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 8
    names = sorted(p.name for p in (tmp_path / today()).iterdir())
    assert len(names) == 8 and not any(n.startswith(".tmp") for n in names)
    for path in paths:
        Image.open(path).verify()  # every file complete


def test_failed_encode_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="unsupported image format"):
        images.save_image(img(), tmp_path, seed=1, extension="bmpx")
    assert list((tmp_path / today()).iterdir()) == []


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_metadata_round_trip(tmp_path, fmt):
    path, _ = images.save_image(img(), tmp_path, seed=1, info=INFO, extension=fmt)
    with Image.open(path) as opened:
        info, items = images.read_info_from_image(opened)
        assert opened.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[fmt]
    assert info == INFO and items == {}


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_exif_is_what_piexif_and_a1111_read(tmp_path, fmt):
    """A1111 reads EXIF with piexif: our files must decode there, and A1111's must decode here."""
    path, _ = images.save_image(img(), tmp_path, seed=1, info=INFO, extension=fmt)
    with Image.open(path) as opened:
        comment = piexif.load(opened.info["exif"])["Exif"][piexif.ExifIFD.UserComment]
    assert piexif.helper.UserComment.load(comment) == INFO

    # written the way A1111's images.save_image_with_geninfo does for JPEG
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(INFO, encoding="unicode")}})
    buf = io.BytesIO()
    img().save(buf, "JPEG", exif=exif)
    buf.seek(0)
    assert images.read_info_from_image(Image.open(buf))[0] == INFO


def test_reads_a1111_png_and_keeps_other_items():
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text("parameters", INFO)
    pnginfo.add_text("extra", "kept")
    buf = io.BytesIO()
    img().save(buf, "PNG", pnginfo=pnginfo)
    buf.seek(0)
    assert images.read_info_from_image(Image.open(buf)) == (INFO, {"extra": "kept"})
    assert images.read_info_from_image(img()) == (None, {})


def test_user_comment_encodings():
    assert decode_user_comment(encode_user_comment("héllo")) == "héllo"
    assert decode_user_comment(b"ASCII\0\0\0plain") == "plain"
    assert decode_user_comment(b"\0" * 8 + "ütf8".encode()) == "ütf8"


def test_save_callbacks_can_edit_and_see_the_file(tmp_path):
    seen = []

    def before(params):
        params.pnginfo["parameters"] = "changed"

    callbacks = SimpleNamespace(on_before_image_saved=[before], on_image_saved=[lambda p: seen.append(p.filename)])
    path, _ = images.save_image(img(), tmp_path, seed=1, info=INFO, callbacks=callbacks)
    assert seen == [path] and images.read_info_from_image(Image.open(path))[0] == "changed"


def test_pnginfo_can_be_disabled(tmp_path):
    path, _ = images.save_image(img(), tmp_path, seed=1, info=INFO, opts=SimpleNamespace(enable_pnginfo=False))
    assert images.read_info_from_image(Image.open(path))[0] is None


def test_grid_layout_like_a1111():
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    four = [img(c, (8, 8)) for c in colors]
    grid = images.image_grid(four)
    assert grid.size == (16, 16)
    assert [grid.getpixel(xy) for xy in [(0, 0), (8, 0), (0, 8), (8, 8)]] == colors
    three = images.image_grid(four[:3])  # round(sqrt(3)) = 2 rows, 2 columns, one empty cell
    assert three.size == (16, 16) and three.getpixel((12, 12)) == (255, 255, 255)
    assert images.image_grid([img(size=(8, 8))] * 6, prevent_empty_spots=True).size == (24, 16)
    assert images.image_grid([img(size=(8, 8))] * 6, batch_size=3, n_rows=0).size == (16, 24)
    assert images.image_grid([img(size=(8, 8))] * 2, rows=5).size == (8, 16)
    mixed = images.image_grid([img((255, 0, 0), (8, 8)), img((0, 255, 0), (4, 4))])
    assert mixed.size == (16, 8) and mixed.getpixel((9, 1)) == (255, 255, 255) and mixed.getpixel((10, 4)) == (0, 255, 0)


def test_image_size_limits():
    images.check_image_size(512, 768, 4096)
    with pytest.raises(ValueError, match="limit of 4096 pixels per side"):
        images.check_image_size(5000, 512, 4096)
    with pytest.raises(ValueError, match="more than the limit"):
        images.check_image_size(4000, 4000, 4096, max_pixels=8_000_000)
    with pytest.raises(ValueError, match="empty"):
        images.check_image_size(0, 10, 4096)


def test_approx_preview_is_the_linear_projection():
    latent = torch.zeros(2, 4, 8, 6)
    latent[0, 3] = 1.0  # the 4th channel alone
    rgb = images.approx_latent_to_rgb(latent)
    expected = (torch.tensor([-0.184, -0.271, -0.473]) + 1) / 2
    assert torch.allclose(rgb[0, :, 0, 0], expected) and torch.allclose(rgb[1], torch.full((3, 8, 6), 0.5))
    preview = images.approx_latent_preview(latent)
    assert preview.size == (12, 8)  # two 6x8 previews side by side
    assert images.approx_latent_preview(latent[:1]).getpixel((0, 0)) == tuple(round(float(v) * 255) for v in expected)
    with pytest.raises(ValueError, match="SD latents"):
        images.approx_latent_to_rgb(torch.zeros(1, 3, 8, 8))
