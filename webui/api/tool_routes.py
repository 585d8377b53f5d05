"""/sdapi/v1 routes of the model tools: the upscaler and face restorer folders (A1111's
/realesrgan-models, /face-restorers) and textual inversion (/create/embedding, /train/embedding).

Installed by webui.api.routes.install on the same router (same auth, same error handling)."""
from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter
from pydantic import BaseModel

from modules.context import AppContext
from webui.api.errors import ApiError


class CreateEmbedding(BaseModel):
    name: str
    num_vectors_per_token: int = 1
    overwrite_old: bool = False
    init_text: str = "*"


class TrainEmbedding(BaseModel):
    """A1111's fields (those it has that do not apply here are accepted and ignored)."""

    embedding_name: str
    learn_rate: str = "0.005"
    batch_size: int = 1
    gradient_step: int = 1
    data_root: str
    log_directory: Optional[str] = None
    training_width: int = 512
    training_height: int = 512
    steps: int = 100000
    create_image_every: int = 500
    save_embedding_every: int = 500
    template_filename: str = "subject_filewords.txt"
    latent_sampling_method: str = "once"
    preview_prompt: str = ""

    model_config = {"extra": "allow"}


def install(router: APIRouter, ctx: AppContext) -> None:
    @router.get("/realesrgan-models")
    def get_realesrgan_models() -> list[dict]:
        service = ctx.services.model_upscalers
        return service.realesrgan_models() if service is not None else []

    @router.get("/face-restorers")
    def get_face_restorers() -> list[dict]:
        service = ctx.services.face_restorers
        return service.as_api() if service is not None else []

    @router.post("/create/embedding")
    def create_embedding(req: CreateEmbedding) -> dict[str, Any]:
        from modules.textual_inversion import service
        try:
            path = service.create(ctx, req.name, req.num_vectors_per_token, req.init_text, req.overwrite_old)
        except ValueError as e:
            raise ApiError(422, str(e)) from None
        return {"info": f"create embedding filename: {path}"}

    @router.post("/train/embedding")
    def train_embedding(req: TrainEmbedding) -> dict[str, Any]:
        from modules.textual_inversion import service
        if not ctx.localhost_only:
            raise ApiError(403, "training from a folder on the server is off when it listens beyond localhost")
        try:
            path = service.train(ctx, req.model_dump())
        except ValueError as e:
            raise ApiError(422, str(e)) from None
        return {"info": f"train embedding complete: filename: {path} error: none"}
