"""The plain data that goes into the engine's entry point and comes out of it.

Nothing here refers to a widget, a pydantic model or a socket: a request can be built by the web UI,
the HTTP API, a script, or sent to a remote worker, and the result rendered by any of them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TASKS = ("txt2img", "img2img", "depth2img", "extras")


@dataclass
class GenerationRequest:
    """One job. `params` holds the task's fields by A1111's API names (prompt, steps, sampler_name,
    init_images as PIL images, mask, upscaler_1 ...); a None value means "the default".

    Scripts: the API names a dropdown script and its own arguments (`script_name`, `script_args`)
    and AlwaysVisible scripts by title (`alwayson_scripts`); the web UI sends the whole positional
    list as A1111's ScriptRunner lays it out (`ui_script_args`: [dropdown index or title, *every
    script's controls]). `infotext`: a pasted infotext fills the fields the request left unset and
    adds its settings to `override_settings` (A1111's API field of that name)."""

    task: str = "txt2img"
    params: dict[str, Any] = field(default_factory=dict)
    override_settings: dict[str, Any] = field(default_factory=dict)
    restore_settings: bool = True  # A1111's override_settings_restore_afterwards
    script_name: str | None = None
    script_args: list = field(default_factory=list)
    alwayson_scripts: dict[str, Any] = field(default_factory=dict)
    ui_script_args: list | None = None
    infotext: str | None = None


@dataclass
class GenerationResult:
    """What a job made: images (PIL) with one infotext each, the seeds, A1111's info JSON, and any
    notes for the user (`comments`: warnings such as a rounded size). `extra_images` holds images
    that are not results (depth2img's depth map); `interrupted`: the job was stopped early."""

    images: list = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    info: str = "{}"
    seed: int | None = None
    all_seeds: list[int] = field(default_factory=list)
    subseed: int | None = None
    all_subseeds: list[int] = field(default_factory=list)
    index_of_first_image: int = 0
    comments: str = ""
    extra_images: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def infotext(self) -> str:
        """The first image's infotext ('' without images)."""
        return self.infotexts[0] if self.infotexts else ""

    @classmethod
    def from_processed(cls, processed, interrupted: bool = False, **info_extra) -> "GenerationResult":
        """From modules.processing's Processed (what process_images and dropdown scripts return)."""
        info = json.loads(processed.js())
        for key, value in info_extra.items():
            info.setdefault(key, value)
        infotexts = list(getattr(processed, "infotexts", None) or [])
        images = list(processed.images)
        while len(infotexts) < len(images):
            infotexts.append(processed.info or "")
        comments = processed.comments
        if isinstance(comments, dict):
            comments = "\n".join(comments)
        return cls(images=images, infotexts=infotexts, info=json.dumps(info, default=str), seed=processed.seed,
                   all_seeds=list(getattr(processed, "all_seeds", None) or []), subseed=processed.subseed,
                   all_subseeds=list(getattr(processed, "all_subseeds", None) or []),
                   index_of_first_image=int(getattr(processed, "index_of_first_image", 0) or 0),
                   comments=str(comments or ""), interrupted=interrupted)
