"""The extra networks browser under the prompt (A1111's cards): a tab per kind with search, sort,
refresh and card size; clicking a card adds its text to the prompt (textual inversion, LoRA) or
switches the checkpoint. Renders modules.network_cards."""
from __future__ import annotations

import base64
import html
import io
import json
from functools import lru_cache

import gradio as gr
from PIL import Image

from modules import network_cards
from modules.context import AppContext
from webui.ui import top_bar

CSS = """
.extra-network-cards { display: flex; flex-wrap: wrap; gap: 8px; }
.extra-network-card { position: relative; border-radius: 8px; overflow: hidden; cursor: pointer;
  background: #555 center / cover no-repeat; box-shadow: 0 0 2px #0006; }
.extra-network-card .actions { position: absolute; bottom: 0; left: 0; right: 0; padding: 6px;
  background: linear-gradient(transparent, #000c); }
.extra-network-card .actions * { color: #fff !important; }  /* over Gradio's prose colours */
.extra-network-card .name { font-weight: bold; word-break: break-word; font-size: 0.95em; }
.extra-network-card .description { font-size: 0.8em; opacity: 0.85; max-height: 3.6em; overflow: hidden; }
.extra-network-hidden { display: none !important; }
"""

JS_INSERT = ("(function(tab, text){const t=document.querySelector('#'+tab+'_prompt textarea');"
             "if(!t)return;const v=t.value.replace(/[\\s,]*$/,'');"
             "t.value=v.includes(text)?v:(v?v+', ':'')+text;"
             "t.dispatchEvent(new Event('input',{bubbles:true}));})")
# Gradio's .input fires on typing only, so the title goes into a hidden box and a hidden button sends it
JS_SWITCH = ("(function(tab, title){const t=document.querySelector('#'+tab+'_extra_networks_checkpoint textarea');"
             "const b=document.querySelector('#'+tab+'_extra_networks_switch');if(!t||!b)return;"
             "t.value=title;t.dispatchEvent(new Event('input',{bubbles:true}));setTimeout(()=>b.click(),0);})")


@lru_cache(maxsize=512)
def _thumbnail(path: str, mtime: float, side: int = 256) -> str:
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((side, side))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
    except OSError:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def cards_html(tab: str, cards: list[network_cards.Card], size: int) -> str:
    if not cards:
        return "<p class='extra-network-empty'>Nothing here: put files into the folder and press refresh.</p>"
    parts = []
    for card in cards:
        preview = _thumbnail(card.preview, card.mtime) if card.preview else ""
        style = f"width:{size}px;height:{int(size * 1.5)}px;" + (f"background-image:url('{preview}');" if preview else "")
        if card.insert is not None:
            action = f"{JS_INSERT}({json.dumps(tab)}, {json.dumps(card.insert)})"
        else:
            action = f"{JS_SWITCH}({json.dumps(tab)}, {json.dumps(card.title)})"
        parts.append(
            f"<div class='extra-network-card' data-name='{html.escape(card.name, quote=True)}' style=\"{style}\" "
            f"onclick=\"{html.escape(action, quote=True)}\" title='{html.escape(card.filename, quote=True)}'>"
            f"<div class='actions'><div class='name'>{html.escape(card.name)}</div>"
            f"<div class='description'>{html.escape(card.description)}</div></div></div>")
    return f"<div class='extra-network-cards'>{''.join(parts)}</div>"


def create(ctx: AppContext, tab: str, ui=None) -> None:
    """The browser for one generation tab (`tab`: txt2img / img2img); checkpoint cards switch the model
    and update ui's top bar (its status line and checkpoint dropdown)."""
    views = []
    with gr.Accordion("Extra networks", open=False, elem_id=f"{tab}_extra_networks") as accordion:
        with gr.Tabs(elem_id=f"{tab}_extra_tabs"):
            for kind, title in network_cards.KINDS.items():
                slug = kind.replace(" ", "_")
                with gr.Tab(title, elem_id=f"{tab}_{slug}_tab"):
                    with gr.Row():
                        search = gr.Textbox(placeholder="Search...", show_label=False, scale=4,
                                            elem_id=f"{tab}_{slug}_extra_search")
                        sort = gr.Dropdown(list(network_cards.SORTS), value="Default", show_label=False, scale=2,
                                           elem_id=f"{tab}_{slug}_extra_sort")
                        descending = gr.Checkbox(False, label="Descending", scale=1,
                                                 elem_id=f"{tab}_{slug}_extra_sortorder")
                        size = gr.Slider(80, 320, value=160, step=10, label="Card size", scale=2,
                                         elem_id=f"{tab}_{slug}_extra_card_size")
                        refresh = gr.Button("\U0001f504", size="sm", min_width=40, scale=0,
                                            elem_id=f"{tab}_{slug}_extra_refresh")
                    cards = gr.HTML(elem_id=f"{tab}_{slug}_cards_html")

                    def render(text, order, desc, width, kind=kind):
                        found = network_cards.filter_and_sort(network_cards.list_cards(ctx, kind), text, order, desc)
                        return cards_html(tab, found, int(width))
                    inputs = [search, sort, descending, size]
                    for event in (search.input, sort.change, descending.change, size.release, refresh.click):
                        event(render, inputs=inputs, outputs=cards, api_visibility="private",
                              show_progress="hidden", queue=False)
                    views.append((render, inputs, cards))
    for render, inputs, cards in views:  # drawn when the browser is opened (files may have changed)
        accordion.expand(render, inputs=inputs, outputs=cards, api_visibility="private", show_progress="hidden",
                         queue=False)
    switch = gr.Textbox(elem_id=f"{tab}_extra_networks_checkpoint", elem_classes=["extra-network-hidden"],
                        show_label=False, container=False)
    switch_button = gr.Button(elem_id=f"{tab}_extra_networks_switch", elem_classes=["extra-network-hidden"])
    status, dropdown = getattr(ui, "status", None), getattr(ui, "checkpoint", None)
    if status is not None:
        outputs = [status] if dropdown is None else [status, dropdown]

        def do_switch(title):
            if not title:
                return [gr.skip()] * len(outputs)
            text = top_bar.switch_checkpoint(ctx, title)
            return [text] if dropdown is None else [text, top_bar.checkpoint_update(ctx, ui)]
        switch_button.click(do_switch, inputs=switch, outputs=outputs, api_visibility="private",
                            concurrency_id="generation", concurrency_limit=None)

