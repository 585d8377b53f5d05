"""/sdapi/v1 routes of the model tools: the upscaler and face restorer folders (A1111's
/realesrgan-models, /face-restorers) and textual inversion (/create/embedding, /train/embedding).

Installed by webui.api.routes.install on the same router (same auth, same error handling)."""
from __future__ import annotations

from fastapi import APIRouter

from modules.context import AppContext


def install(router: APIRouter, ctx: AppContext) -> None:
    @router.get("/realesrgan-models")
    def get_realesrgan_models() -> list[dict]:
        service = ctx.services.model_upscalers
        return service.realesrgan_models() if service is not None else []

    @router.get("/face-restorers")
    def get_face_restorers() -> list[dict]:
        service = ctx.services.face_restorers
        return service.as_api() if service is not None else []
