"""The extra networks browser's cards: previews, descriptions, insert text, search and sort."""
from __future__ import annotations

import json

import torch
from PIL import Image
from safetensors.torch import save_file

from modules import network_cards
from tests.api_support import make_context, write_tiny_checkpoint


def test_cards_of_each_kind(tmp_path):
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "alpha", "tiny-v1")
    lora = tmp_path / "models" / "Lora"
    lora.mkdir(parents=True)
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, lora / "inked.safetensors",
              metadata={"ss_training_comment": "line art"})
    (lora / "inked.json").write_text(json.dumps({"activation text": "ink style", "preferred weight": 0.7}))
    Image.new("RGB", (8, 8)).save(lora / "inked.preview.png")
    emb = tmp_path / "embeddings"
    emb.mkdir()
    torch.save({"string_to_param": {"*": torch.zeros(1, 32)}}, emb / "zqxw.pt")
    (emb / "zqxw.json").write_text(json.dumps({"description": "a blue circle"}))
    ctx = make_context(tmp_path)
    [card] = network_cards.list_cards(ctx, "lora")
    assert card.insert == "<lora:inked:0.7> ink style" and card.description == "line art"
    assert card.preview.endswith("inked.preview.png")
    [card] = network_cards.list_cards(ctx, "textual inversion")
    assert (card.insert, card.description, card.preview) == ("zqxw", "a blue circle", None)
    [card] = network_cards.list_cards(ctx, "checkpoints")
    assert card.insert is None and card.title == ctx.models.catalog.get("alpha").title
    cards = network_cards.list_cards(ctx, "lora") + network_cards.list_cards(ctx, "textual inversion")
    assert [c.name for c in network_cards.filter_and_sort(cards, "blue")] == ["zqxw"]
    assert [c.name for c in network_cards.filter_and_sort(cards, sort="Name", descending=True)] == ["zqxw", "inked"]
