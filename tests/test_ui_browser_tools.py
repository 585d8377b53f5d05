"""The model tools in a real browser, as a user goes through them: the Checkpoint Merger writes a file
that loads and generates, extra network cards edit the prompt and switch the checkpoint, and the Train
tab trains an embedding for a few steps and writes it (tiny models: each takes seconds)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from modules.embeddings import Embedding, load_embedding
from modules.textual_inversion.training import save_embedding
from tests.api_support import gradient
from tests.browser_support import (
    SHOTS,
    choose,
    generate,
    open_tab,
    set_slider,
    wait_for_gallery,
    wait_for_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROMPT = "#txt2img_prompt textarea"


@pytest.fixture(scope="module")
def app(browser_app):
    """The session's server, on a freshly loaded page (earlier tests leave values in the fields)."""
    ctx, url, page = browser_app
    page.goto(url)
    page.wait_for_selector(PROMPT)
    return browser_app


def last_infotext(page) -> str:
    return page.locator("#txt2img_generation_info textarea").input_value()


def gallery_image_size(page) -> list[int]:
    image = page.locator("#txt2img_gallery img").first
    image.wait_for()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return image.evaluate("img => [img.naturalWidth, img.naturalHeight]")


def test_merger_writes_the_average_which_loads_from_the_top_bar_and_generates(app):
    ctx, url, page = app
    open_tab(page, "tab_modelmerger")
    choose(page, "modelmerger_primary_model_name", "tiny-a")
    choose(page, "modelmerger_secondary_model_name", "tiny-b")
    page.fill("#modelmerger_custom_name textarea", "tiny-ab")
    set_slider(page, "modelmerger_interp_amount", 0.5)
    page.click("#modelmerger_merge")
    folder = ctx.paths.ckpt_dirs[0]
    assert str(folder / "tiny-ab.safetensors") in wait_for_text(page, "#modelmerger_result", "Checkpoint saved to")

    a, b = load_file(folder / "tiny-a.safetensors"), load_file(folder / "tiny-b.safetensors")
    merged = load_file(folder / "tiny-ab.safetensors")
    assert merged.keys() == a.keys()
    weights = [k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k])]
    assert len(weights) > 100  # the two random models differ in (nearly) every weight
    for key in weights:
        torch.testing.assert_close(merged[key], (a[key] + b[key]) / 2, rtol=0, atol=1e-6, msg=key)

    choose(page, "setting_sd_model_checkpoint", "tiny-ab")  # the top bar lists the new file at once
    wait_for_text(page, "#sd_model_status", "tiny-ab")
    assert ctx.models.current.info.name_for_extra == "tiny-ab"
    open_tab(page, "tab_txt2img")
    generate(page, "txt2img", "a merged model", steps=2)
    infotext = wait_for_gallery(page, "txt2img")
    assert infotext.startswith("a merged model") and "Model: tiny-ab" in infotext
    assert gallery_image_size(page) == [64, 64]


def write_lora(path) -> None:
    """A tiny kohya LoRA on one cross-attention projection of the tiny v1 UNet (32 -> 32)."""
    g = torch.Generator().manual_seed(0)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{key}.lora_down.weight": torch.randn(4, 32, generator=g) * 0.3,
               f"{key}.lora_up.weight": torch.randn(32, 4, generator=g) * 0.3, f"{key}.alpha": torch.tensor(2.0)},
              str(path))


def click_card(page, kind: str, name: str) -> None:
    open_tab(page, f"txt2img_{kind}_tab")
    page.click(f"#txt2img_{kind}_cards_html .extra-network-card[data-name='{name}']")


def wait_for_prompt(page, text: str) -> None:
    page.wait_for_function("([sel, text]) => document.querySelector(sel).value === text", arg=[PROMPT, text])


def test_cards_add_a_lora_and_an_embedding_to_the_prompt_and_switch_the_checkpoint(app):
    ctx, url, page = app
    ctx.paths.lora_dir.mkdir(parents=True, exist_ok=True)
    write_lora(ctx.paths.lora_dir / "ink.safetensors")
    save_embedding(Embedding("ember", torch.randn(1, 32, generator=torch.Generator().manual_seed(1))),
                   ctx.paths.embeddings_dir / "ember.pt", step=0)
    open_tab(page, "tab_txt2img")
    page.fill(PROMPT, "")
    counter = "document.querySelector('#txt2img_token_counter').innerText"
    page.wait_for_function(f"() => {counter} === '0/75'")
    page.click("#txt2img_extra_networks .label-wrap")  # opening the browser lists the files as they are now
    click_card(page, "lora", "ink")
    wait_for_prompt(page, "<lora:ink:1>")
    click_card(page, "textual_inversion", "ember")
    wait_for_prompt(page, "<lora:ink:1>, ember")
    page.wait_for_function(f"() => /^[1-9]\\d*\\/75$/.test({counter})")  # counted: the embedding's vector
    page.screenshot(path=str(SHOTS / "extra-networks.png"), full_page=True)

    previous = last_infotext(page)
    generate(page, "txt2img", None, steps=2)  # what the cards wrote is what the engine understands
    infotext = wait_for_gallery(page, "txt2img", previous)
    assert "Lora hashes: \"ink: " in infotext and "TI hashes: \"ember: " in infotext, infotext

    click_card(page, "checkpoints", "tiny-b")
    wait_for_text(page, "#sd_model_status", "tiny-b")
    assert ctx.models.current.info.name_for_extra == "tiny-b"
    page.wait_for_function("() => document.querySelector('#setting_sd_model_checkpoint input').value"
                           ".startsWith('tiny-b')")  # the top bar's dropdown follows


def write_dataset(folder, n: int = 2):
    folder.mkdir()
    for i in range(n):
        gradient(64, 64).rotate(90 * i).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"picture {i}")
    return folder


def test_train_tab_creates_and_trains_an_embedding_with_progress(app, tmp_path):
    ctx, url, page = app
    data = write_dataset(tmp_path / "pictures")
    open_tab(page, "tab_train")
    page.fill("#train_new_embedding_name textarea", "zqxw")
    page.click("#train_create_embedding")
    wait_for_text(page, "#ti_output", "Created")
    path = ctx.paths.embeddings_dir / "zqxw.pt"
    created = load_embedding(path)
    assert created.step == 0

    page.locator("#train_tabs").get_by_role("tab", name="Train", exact=True).click()
    page.wait_for_function("() => document.querySelector('#train_embedding input').value === 'zqxw'")
    page.fill("#train_embedding_learn_rate textarea", "0.05")
    page.fill("#train_dataset_directory textarea", str(data))
    set_slider(page, "train_training_width", 64)
    set_slider(page, "train_training_height", 64)
    for elem_id, value in (("train_steps", 3), ("train_create_image_every", 0), ("train_save_embedding_every", 0)):
        page.fill(f"#{elem_id} input", str(value))
    # the progress line is replaced by the outcome at the end: record every text it showed
    page.evaluate("""() => { window.tiProgress = []; const e = document.querySelector('#ti_progress');
        new MutationObserver(() => window.tiProgress.push(e.innerText))
            .observe(e, {subtree: true, childList: true, characterData: true}); }""")
    page.click("#train_train_embedding")
    assert str(path) in wait_for_text(page, "#ti_output", "Training finished")
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)
    shown = page.evaluate("() => window.tiProgress")
    assert any("/3, loss" in text and "ETA" in text for text in shown), shown

    trained = load_embedding(path)
    assert trained.step == 3 and trained.vec.shape == created.vec.shape
    assert not torch.allclose(trained.vec, created.vec)
