"""Extensions written the way A1111 authors write them, as files in a data dir's extensions/ folder."""
from __future__ import annotations

import textwrap
from pathlib import Path


def write_extension(data_dir: Path, name: str, files: dict[str, str]) -> Path:
    root = Path(data_dir) / "extensions" / name
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


# An AlwaysVisible script that edits the prompt in process() and records its value in the infotext.
PROMPT_SUFFIX = {
    "scripts/suffix.py": '''
        import gradio as gr
        from modules import scripts

        class PromptSuffix(scripts.Script):
            def title(self):
                return "Prompt suffix"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                with gr.Accordion("Prompt suffix", open=False):
                    enabled = gr.Checkbox(label="Suffix enabled", value=False, elem_id=self.elem_id("enabled"))
                    suffix = gr.Textbox(label="Suffix text", value=", masterpiece")
                return [enabled, suffix]

            def process(self, p, enabled, suffix):
                if not enabled:
                    return
                p.all_prompts = [x + suffix for x in p.all_prompts]
                p.extra_generation_params["Prompt suffix"] = suffix.strip(", ")
    ''',
}

# A dropdown script whose run() calls process_images several times (named controls).
REPEAT_SEEDS = {
    "scripts/repeat.py": '''
        import gradio as gr
        from modules import scripts
        from modules.processing import Processed, process_images

        class RepeatSeeds(scripts.Script):
            def title(self):
                return "Repeat with seeds"

            def ui(self, is_img2img):
                return {"count": gr.Slider(1, 4, value=2, step=1, label="Repeat count")}

            def run(self, p, count):
                images, infotexts, seeds = [], [], []
                base = int(p.seed) if int(p.seed) >= 0 else 1
                for i in range(int(count)):
                    p.seed = base + 100 * i
                    proc = process_images(p)
                    images += proc.images
                    infotexts += proc.infotexts
                    seeds.append(proc.seed)
                return Processed(p, images, seed=seeds[0], all_seeds=seeds, infotexts=infotexts,
                                 info=infotexts[0])
    ''',
}

# on_ui_tabs, on_before_image_saved (PNG text), on_cfg_denoiser, on_ui_settings and shared.opts.
CALLBACKS = {
    "scripts/hooks.py": '''
        import gradio as gr
        from modules import script_callbacks, shared

        calls = {"cfg": 0, "saved": []}

        def make_tab():
            with gr.Blocks(analytics_enabled=False) as tab:
                box = gr.Textbox(value="hello from an extension", elem_id="hooks_box")
                out = gr.Textbox(elem_id="hooks_out")
                gr.Button("Shout", elem_id="hooks_button").click(lambda x: x.upper(), inputs=box, outputs=out,
                                                                 api_name="hooks_shout")
            return [(tab, "Hooks tab", "hooks_tab")]

        def add_png_text(params):
            params.pnginfo["hooks"] = "tag=" + shared.opts.hooks_tag

        def on_saved(params):
            calls["saved"].append(params.filename)

        def denoiser(params):
            calls["cfg"] += 1
            params.text_uncond = params.text_uncond * 0  # a visible change of the result

        def settings():
            shared.opts.add_option("hooks_tag", shared.OptionInfo("abc", "Hooks tag", section=("hooks", "Hooks")))

        script_callbacks.on_ui_tabs(make_tab)
        script_callbacks.on_before_image_saved(add_png_text)
        script_callbacks.on_image_saved(on_saved)
        script_callbacks.on_cfg_denoiser(denoiser)
        script_callbacks.on_ui_settings(settings)
        script_callbacks.on_list_optimizers(lambda optimizers: None)
    ''',
    "javascript/hooks.js": "window.hooksExtensionLoaded = true;\n",
    "style.css": "#hooks_box { border: 1px solid red; }\n",
}

# Broken in every way: a syntax error, a raising process(), a raising callback.
BROKEN = {
    "scripts/syntax.py": "def broken(:\n    pass\n",
    "scripts/raising.py": '''
        from modules import script_callbacks, scripts

        class Raising(scripts.Script):
            def title(self):
                return "Raising"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def process(self, p, *args):
                raise RuntimeError("process exploded")

            def postprocess_image(self, p, pp, *args):
                raise KeyError("postprocess_image exploded")

        def bad_callback(params):
            raise ZeroDivisionError("callback exploded")

        script_callbacks.on_cfg_denoiser(bad_callback)
        script_callbacks.on_before_image_saved(bad_callback)
    ''',
}
