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

# Every A1111 module name this web UI offers, imported the way extensions import them, plus the
# hooks whose data A1111 defines: component callbacks, CFG denoiser params, the image save path,
# opts.onchange, settings with a section of their own, scripts_data, remove_current_script_callbacks.
A1111_SURFACE = {
    "scripts/surface.py": '''
        import os

        import gradio as gr
        import launch
        import modules.scripts as scripts
        from ldm.models.diffusion.ddpm import LatentDiffusion  # A1111 puts the LDM repository on sys.path
        from ldm.modules.attention import CrossAttention
        from modules import (devices, errors, extensions, extra_networks, generation_parameters_copypaste, hashes,
                             images, infotext_utils, paths, paths_internal, processing, prompt_parser, script_callbacks,
                             sd_hijack, sd_models, sd_samplers, sd_vae, shared, ui_extra_networks)
        from modules.processing import (Processed, StableDiffusionProcessing, StableDiffusionProcessingImg2Img,
                                        StableDiffusionProcessingTxt2Img, create_infotext, fix_seed, get_fixed_seed,
                                        process_images)
        from modules.prompt_parser import SdConditioning
        from modules.script_callbacks import CFGDenoiserParams, ImageSaveParams
        from modules.shared import cmd_opts, opts, state
        from modules.ui_components import FormRow, InputAccordion, ToolButton

        seen = {"components": {}, "before": [], "cfg": [], "changes": [], "saved": [], "names": {}}

        def gone(*args, **kwargs):
            seen["gone"] = True   # removed by remove_current_script_callbacks: never called

        script_callbacks.on_before_image_saved(gone)
        script_callbacks.on_cfg_denoiser(gone)
        script_callbacks.remove_current_script_callbacks()

        def after_component(component, **kwargs):
            if kwargs.get("elem_id"):
                seen["components"][kwargs["elem_id"]] = type(component).__name__
            if kwargs.get("elem_id") == "txt2img_prompt":
                gr.HTML("<p id='surface_after_prompt'>after the prompt</p>", elem_id="surface_after_prompt")

        def before_component(component, **kwargs):
            if kwargs.get("elem_id") == "txt2img_neg_prompt":
                seen["before"].append("txt2img_neg_prompt")
                gr.HTML("<p>before the negative prompt</p>", elem_id="surface_before_neg")

        def cfg_denoiser(params: CFGDenoiserParams):
            seen["cfg"].append((params.sampling_step, params.total_sampling_steps, tuple(params.x.shape),
                                tuple(params.text_cond.shape), tuple(params.text_uncond.shape), tuple(params.sigma.shape)))

        def before_saved(params: ImageSaveParams):
            seen["saved"].append(params.filename)
            if params.p is not None and params.p.prompt == "rename me":
                params.filename = os.path.join(os.path.dirname(params.filename), "renamed-by-extension.png")

        def settings():
            section = ("surface", "Surface test")
            shared.opts.add_option("surface_word", shared.OptionInfo("plain", "Surface word", gr.Textbox,
                                                                     section=section))
            shared.opts.add_option("surface_mode", shared.OptionInfo("a", "Surface mode", gr.Radio,
                                                                     {"choices": ["a", "b"]}, section=section))
            shared.opts.onchange("surface_word", lambda: seen["changes"].append(shared.opts.surface_word))

        def names():
            seen["names"] = {
                "tiles": sd_models.checkpoint_tiles(), "model": isinstance(shared.sd_model, LatentDiffusion),
                "attn2": sum(isinstance(m, CrossAttention) for m in shared.sd_model.model.diffusion_model.modules()),
                "tokens": shared.sd_model.cond_stage_model.tokenize_line("a red circle")[1],
                "device": str(devices.device), "samplers": "Euler a" in sd_samplers.all_samplers_map,
                "upscalers": [u.name for u in shared.sd_upscalers][:3], "data_path": paths.data_path,
                "models_path": paths_internal.models_path, "active": [e.name for e in extensions.active()],
                "scripts_data": sorted({os.path.basename(s.path) for s in scripts.scripts_data}),
                "module_name": [s.script_class.__module__ for s in scripts.scripts_data if s.path.endswith("surface.py")],
                "basedir": os.path.basename(scripts.basedir()), "cmd_api": cmd_opts.api, "lora_dir": bool(cmd_opts.lora_dir),
                "paste": infotext_utils.parse_generation_parameters("a cat\\nSteps: 5, Sampler: Euler, Seed: 3")["Steps"],
                "extra": extra_networks.parse_prompt("a <lora:x:0.5> cat")[0],
                "cond": SdConditioning(["a"], width=64).width, "fixed": get_fixed_seed(5),
                "old_name": generation_parameters_copypaste.parse_generation_parameters is not None,
                "installed": launch.is_installed("torch"),
            }

        script_callbacks.on_after_component(after_component)
        script_callbacks.on_before_component(before_component)
        script_callbacks.on_cfg_denoiser(cfg_denoiser)
        script_callbacks.on_before_image_saved(before_saved)
        script_callbacks.on_ui_settings(settings)
        script_callbacks.on_model_loaded(lambda sd_model: names())

        class Surface(scripts.Script):
            def title(self):
                return "Surface"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def after_component(self, component, **kwargs):
                if kwargs.get("elem_id") in ("txt2img_width", "img2img_width"):
                    self.width_slider = component

            def ui(self, is_img2img):
                with InputAccordion(False, label="Surface", elem_id=self.elem_id("enable")) as enable:
                    with FormRow():
                        word = gr.Textbox(label="Surface word", value="surfaceword", elem_id=self.elem_id("word"))
                        ToolButton("x", elem_id=self.elem_id("tool"))
                self.infotext_fields = [(word, "Surface word")]
                return [enable, word]

            def process(self, p, enable, word):
                if enable:
                    p.extra_generation_params["Surface word"] = word
                    seen["width_slider"] = type(getattr(self, "width_slider", None)).__name__
    ''',
}

# UI code written for Gradio 3.41 (what A1111 1.10 ships): `_js=`, `.style()`, `gr.Box`,
# `Component.update(...)`, `show_progress=False`, a hidden textbox its javascript fills, a tab.
GRADIO3_STYLE = {
    "scripts/g3.py": '''
        import gradio as gr
        from modules import script_callbacks, scripts

        class Gradio3Style(scripts.Script):
            def title(self):
                return "Gradio 3 style"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                tab = "img2img" if is_img2img else "txt2img"
                with gr.Box():
                    with gr.Row().style(equal_height=True):
                        enabled = gr.Checkbox(label="G3 enabled", value=False, elem_id=f"g3_{tab}_enabled")
                        word = gr.Textbox(label="G3 word", value="quiet", elem_id=f"g3_{tab}_word").style(container=False)
                        shout = gr.Button("Shout", elem_id=f"g3_{tab}_shout").style(full_width=False)
                        hide = gr.Button("Hide word", elem_id=f"g3_{tab}_hide")
                    secret = gr.Textbox(value="", visible=False, elem_id=f"g3_{tab}_secret")
                shout.click(fn=None, _js="(w) => w.toUpperCase()", inputs=[word], outputs=[word], show_progress=False)
                hide.click(fn=lambda: gr.Textbox.update(visible=False), outputs=[word])
                return [enabled, word, secret]

            def process(self, p, enabled, word, secret):
                if enabled:
                    p.extra_generation_params["G3 word"] = word
                    p.extra_generation_params["G3 secret"] = secret or "none"

        def tab():
            with gr.Blocks(analytics_enabled=False) as block:
                with gr.Box():
                    choice = gr.Dropdown(["one", "two"], label="G3 choice", elem_id="g3_choice")
                    more = gr.Button("More choices", elem_id="g3_more")
                    out = gr.Textbox(label="G3 out", elem_id="g3_out")
                more.click(fn=lambda: gr.Dropdown.update(choices=["one", "two", "three"], value="three"),
                           outputs=[choice])
                choice.change(fn=lambda c: f"chose {c}", inputs=[choice], outputs=[out], api_name="g3_choose")
            return [(block, "G3 tab", "g3_tab")]

        script_callbacks.on_ui_tabs(tab)
    ''',
    # the extension's javascript fills the hidden textbox with A1111's helpers once the UI is loaded
    "javascript/g3.js": """
        onUiLoaded(function () {
            var box = gradioApp().querySelector("#g3_txt2img_secret > label > textarea");
            if (!box) return;
            box.value = "from-js-" + get_uiCurrentTab().textContent.trim();
            updateInput(box);
            window.g3Loaded = true;
        });
    """,
}

# Gradio 3 code with no Gradio 6 equivalent: its controls are skipped, with the reason on the
# Extensions tab; the page is built without them.
GRADIO3_SKETCH = {
    "scripts/sketch.py": '''
        import gradio as gr
        from modules import scripts

        class Sketchy(scripts.Script):
            def title(self):
                return "Sketchy"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                before = gr.Textbox(label="Sketchy note", elem_id="sketchy_note")
                canvas = gr.Image(source="canvas", tool="sketch", type="pil")
                return [before, canvas]
    ''',
}
