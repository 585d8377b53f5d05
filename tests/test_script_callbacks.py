"""script_callbacks through real jobs: on_before_image_saved adds PNG text, on_cfg_denoiser changes
the result, on_model_loaded, a raising callback is reported once and the job goes on."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import processing, startup
from modules.plugins.manager import load_extensions
from modules.processing import objects as pt
from tests.api_support import make_context, make_data_dir
from tests.extensions_support import BROKEN, CALLBACKS, write_extension

MODEL_LOADED = {"scripts/loaded.py": '''
    from modules import script_callbacks
    seen = []
    script_callbacks.on_model_loaded(lambda sd_model: seen.append(type(sd_model).__name__))
    script_callbacks.on_model_loaded(lambda sd_model: 1 / 0)
'''}


def _p(ctx, **kw):
    p = pt.StableDiffusionProcessingTxt2Img(prompt="a cat", negative_prompt="ugly", width=64, height=64, seed=3,
                                            steps=3, **kw)
    p.sd_model = startup.current_model(ctx).model
    p.env = pt.ProcessingEnv.from_context(ctx)
    return p


@pytest.fixture()
def data(tmp_path):
    return make_data_dir(tmp_path)


def test_image_saved_hooks_and_cfg_denoiser_change_the_job(data):
    plain = make_context(data)
    plain.opts.set("samples_save", False)
    reference = processing.process_images(_p(plain)).images[0]
    write_extension(data, "hooks", CALLBACKS)
    write_extension(data, "broken", BROKEN)
    ctx = make_context(data)
    load_extensions(ctx, run_installers=False)
    ctx.opts.set("hooks_tag", "xyz")
    processed = processing.process_images(_p(ctx))
    # the hook zeroes the negative conditioning: another picture
    assert not np.array_equal(np.asarray(processed.images[0]), np.asarray(reference))
    saved = sorted((data / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(saved) == 1
    with Image.open(saved[0]) as im:
        assert im.info["hooks"] == "tag=xyz" and im.info["parameters"] == processed.infotexts[0]
    import sys
    hooks = next(m for n, m in sys.modules.items() if n.startswith("sdwebui_extension_hooks"))
    assert hooks.calls["cfg"] == 3 and hooks.calls["saved"] == [str(saved[0])]
    broken = [p.where for p in ctx.extensions.problems_of("broken")]
    assert broken.count("callback on_cfg_denoiser (bad_callback)") == 1
    assert broken.count("callback on_before_image_saved (bad_callback)") == 1


def test_model_loaded_callbacks_are_isolated(data):
    write_extension(data, "loaded", MODEL_LOADED)
    ctx = make_context(data)
    load_extensions(ctx, run_installers=False)
    startup.current_model(ctx)
    import sys
    module = next(m for n, m in sys.modules.items() if n.startswith("sdwebui_extension_loaded"))
    assert module.seen == ["LatentDiffusion"]
    assert [p.message for p in ctx.extensions.problems_of("loaded")] == ["ZeroDivisionError: division by zero"]


def test_infotext_pasted_unload_and_remove_callbacks(data):
    write_extension(data, "paste", {"scripts/paste.py": '''
        from modules import script_callbacks

        def pasted(infotext, params):
            params["Steps"] = "99"

        script_callbacks.on_infotext_pasted(pasted)
        script_callbacks.on_script_unloaded(lambda: unloaded.append(1))
        unloaded = []
    '''})
    ctx = make_context(data)
    load_extensions(ctx, run_installers=False)
    service = ctx.services.scripts
    assert service.infotext_pasted("a\nSteps: 5", {"Steps": "5"}) == {"Steps": "99"}
    service.unload()
    import sys
    module = next(m for n, m in sys.modules.items() if n.startswith("sdwebui_extension_paste"))
    assert module.unloaded == [1]
    service.registry.remove_extension("paste")
    assert service.infotext_pasted("", {"Steps": "5"}) == {"Steps": "5"}
