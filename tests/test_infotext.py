"""Infotext: A1111's "parameters" text, written and read back."""
from modules import infotext

FULL_PARAMS = {
    # given out of order on purpose: create_infotext writes A1111's order
    "Version": "v1.10.1",
    "Hires upscale": 2,
    "Hires steps": 10,
    "Hires upscaler": "Latent",
    "Steps": 20,
    "Sampler": "DPM++ 2M",
    "Schedule type": "Karras",
    "CFG scale": 7.5,
    "Image CFG scale": 1.5,
    "Seed": 1234567890,
    "Face restoration": "CodeFormer",
    "Size": "512x768",
    "Model hash": "6ce0161689",
    "Model": "v1-5-pruned-emaonly",
    "VAE hash": "735e4c3a44",
    "VAE": "vae-ft-mse-840000-ema-pruned.safetensors",
    "Variation seed": 42,
    "Variation seed strength": 0.3,
    "Seed resize from": "640x448",
    "Denoising strength": 0.7,
    "Clip skip": 2,
    "ENSD": 31337,
    "RNG": "CPU",
    "Tiling": "True",
    "Mask blur": 4,
    "Lora hashes": "add_detail: 7c6bad76eb54, style: 0123456789ab",
    "TI hashes": "EasyNegative: c74b4e810b03",
    "Emphasis": "No norm",
    "Eta": 0.5,
    "Note": 'said "hi"\nthen left',
}

EXPECTED_LINE = (
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Image CFG scale: 1.5, "
    "Seed: 1234567890, Face restoration: CodeFormer, Size: 512x768, Model hash: 6ce0161689, "
    "Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, "
    "Variation seed: 42, Variation seed strength: 0.3, Seed resize from: 640x448, Denoising strength: 0.7, "
    "Clip skip: 2, ENSD: 31337, RNG: CPU, Tiling: True, Hires upscale: 2, Hires steps: 10, "
    'Hires upscaler: Latent, Mask blur: 4, Lora hashes: "add_detail: 7c6bad76eb54, style: 0123456789ab", '
    'TI hashes: "EasyNegative: c74b4e810b03", Emphasis: No norm, Eta: 0.5, '
    'Note: "said \\"hi\\"\\nthen left", Version: v1.10.1'
)


def test_create_writes_a1111s_order_and_quoting():
    text = infotext.create_infotext("a cat\non a mat", "blurry, (ugly:1.2)", FULL_PARAMS)
    assert text == "a cat\non a mat\nNegative prompt: blurry, (ugly:1.2)\n" + EXPECTED_LINE


def test_create_without_negative_prompt_and_none_values():
    text = infotext.create_infotext("a cat", "", {"Steps": 20, "Sampler": "Euler a", "Seed": 1, "VAE": None})
    assert text == "a cat\nSteps: 20, Sampler: Euler a, Seed: 1"


def test_round_trip_of_every_field():
    text = infotext.create_infotext("a cat\non a mat", "blurry, (ugly:1.2)\nsecond line", FULL_PARAMS)
    parsed = infotext.parse_generation_parameters(text)
    assert parsed["Prompt"] == "a cat\non a mat"
    assert parsed["Negative prompt"] == "blurry, (ugly:1.2)\nsecond line"
    for key, value in FULL_PARAMS.items():
        if key in ("Size", "Seed resize from"):
            w, h = value.split("x")
            assert (parsed[f"{key}-1"], parsed[f"{key}-2"]) == (w, h)
        else:
            assert parsed[key] == str(value), key
    again = infotext.create_infotext(parsed["Prompt"], parsed["Negative prompt"], {
        **{k: v for k, v in parsed.items() if k in FULL_PARAMS},
        "Size": f"{parsed['Size-1']}x{parsed['Size-2']}",
        "Seed resize from": f"{parsed['Seed resize from-1']}x{parsed['Seed resize from-2']}",
    })
    assert again == text


# An infotext as A1111 v1.9.4 writes it (legacy combined sampler name, hires fix, LoRA/TI hashes,
# emphasis in the prompt, a multi-line prompt).
A1111_EXAMPLE = """masterpiece, (best quality:1.2), 1girl, <lora:add_detail:0.5>
sitting on a bench
Negative prompt: (worst quality, low quality:1.4), EasyNegative
Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3336476451, Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.5, Clip skip: 2, ENSD: 31337, Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "EasyNegative: c74b4e810b03", Version: v1.9.4"""


def test_parse_an_a1111_infotext():
    p = infotext.parse_generation_parameters(A1111_EXAMPLE)
    assert p["Prompt"] == "masterpiece, (best quality:1.2), 1girl, <lora:add_detail:0.5>\nsitting on a bench"
    assert p["Negative prompt"] == "(worst quality, low quality:1.4), EasyNegative"
    assert (p["Sampler"], p["Schedule type"]) == ("DPM++ 2M", "Karras")
    assert (p["Size-1"], p["Size-2"], p["Seed"], p["Steps"]) == ("512", "768", "3336476451", "25")
    assert p["Lora hashes"] == "add_detail: 7c6bad76eb54" and p["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert (p["Hires upscale"], p["Hires steps"], p["Hires upscaler"]) == ("2", "15", "R-ESRGAN 4x+ Anime6B")
    assert p["Clip skip"] == "2" and p["ENSD"] == "31337" and p["Version"] == "v1.9.4"
    assert p["RNG"] == "GPU"  # absent: A1111's default


def test_separate_schedule_type_is_kept():
    p = infotext.parse_generation_parameters(
        "a dog\nSteps: 6, Sampler: DPM++ SDE, Schedule type: Exponential, CFG scale: 2, Seed: 1")
    assert (p["Sampler"], p["Schedule type"]) == ("DPM++ SDE", "Exponential")
    p = infotext.parse_generation_parameters("a dog\nSteps: 6, Sampler: Euler a, CFG scale: 2, Seed: 1")
    assert (p["Sampler"], p["Schedule type"]) == ("Euler a", "Automatic")


def test_text_without_a_params_line_is_all_prompt():
    p = infotext.parse_generation_parameters("just a prompt: with a colon\nand a second line")
    assert p["Prompt"] == "just a prompt: with a colon\nand a second line" and p["Negative prompt"] == ""
    assert "Steps" not in p
    assert infotext.parse_generation_parameters("", defaults=False) == {"Prompt": "", "Negative prompt": ""}


def test_flag_values_are_written_alone():
    text = infotext.create_infotext("x", "", {"Steps": 1, "Sampler": "Euler", "Seed": 2, "NGMS": "NGMS"})
    assert text.endswith("Seed: 2, NGMS")


def test_to_request_converts_types():
    fields, settings = infotext.to_request(infotext.parse_generation_parameters(A1111_EXAMPLE))
    assert fields["prompt"].startswith("masterpiece") and fields["negative_prompt"].startswith("(worst")
    assert (fields["steps"], fields["seed"], fields["width"], fields["height"]) == (25, 3336476451, 512, 768)
    assert fields["cfg_scale"] == 7.0 and fields["denoising_strength"] == 0.5
    assert (fields["sampler_name"], fields["scheduler"]) == ("DPM++ 2M", "Karras")
    assert (fields["hr_scale"], fields["hr_second_pass_steps"], fields["hr_upscaler"]) == (2.0, 15, "R-ESRGAN 4x+ Anime6B")
    assert "hr_sampler_name" not in fields  # "Use same sampler"
    assert fields["inpainting_fill"] == 1 and fields["inpaint_full_res"] is False
    assert settings == {"CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337, "randn_source": "GPU",
                        "sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors", "sd_model_checkpoint": "7f96a1a9ca"}


def test_hires_fix_is_turned_on_by_a_hires_infotext_only():
    hires, _ = infotext.to_request(infotext.parse_generation_parameters(A1111_EXAMPLE))
    assert hires["enable_hr"] is True
    plain = "a cat\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Model: tiny"
    fields, _ = infotext.to_request(infotext.parse_generation_parameters(plain))
    assert "enable_hr" not in fields and fields["steps"] == 4


def test_to_request_skips_values_that_do_not_convert():
    fields, _ = infotext.to_request({"Steps": "many", "Seed": "5"})
    assert fields == {"seed": 5}
