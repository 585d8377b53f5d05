"""A1111's `/file=<path>` route for extensions' javascript: Gradio 3 served files by path there, and
extensions fetch their own data that way (e.g. tag autocompletion's CSV files, `file=tmp/...` files
their Python wrote). Served: files inside an extension folder or in the checkout's tmp/ (A1111's
temp folder for extensions), read-only; hidden files and folders, and everything else, 404. With
--gradio-auth the route is off (its files would be outside the login)."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from modules.context import AppContext
from modules.paths import ROOT


def allowed_roots(ctx: AppContext) -> list[Path]:
    roots = [ROOT / "tmp", ctx.paths.extensions_dir, ctx.paths.extensions_builtin_dir]
    return [r.resolve() for r in roots]


def resolve(ctx: AppContext, path: str) -> Path | None:
    """The file `path` names (relative paths are relative to the checkout, as A1111's cwd), or None
    when it is not one that may be served."""
    candidate = Path(path.split("?", 1)[0])
    candidate = (candidate if candidate.is_absolute() else ROOT / candidate).resolve()
    for root in allowed_roots(ctx):
        if candidate.is_relative_to(root):
            inside = candidate.relative_to(root).parts
            if candidate.is_file() and not any(part.startswith(".") for part in inside):
                return candidate
    return None


def install(app: FastAPI, ctx: AppContext) -> None:
    if getattr(ctx.args, "gradio_auth", None):
        return

    @app.get("/file={path:path}", include_in_schema=False)
    def extension_file(path: str):
        found = resolve(ctx, path)
        if found is None:
            raise HTTPException(404, f"file={path}: not a file of an extension")
        return FileResponse(found)
