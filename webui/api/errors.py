"""How the API reports problems: never a traceback, never a dead server.

- `field_error(field, msg)`: a 422 in FastAPI's own validation shape (`detail[i].loc` names the
  field), for checks that need the settings or the catalog (image size, sampler names...).
- `ApiError(status, msg)`: 400 / 404 / 409 with `{"error", "detail"}`.
- `SafeRoute`: every /sdapi/v1 route is wrapped so an unexpected exception is logged with its
  traceback and answered with a JSON 500 that carries only the exception's type and message.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("sdwebui.api")


class ApiError(HTTPException):
    def __init__(self, status_code: int, detail: str, headers: dict | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)


def field_error(field: str | tuple, msg: str) -> RequestValidationError:
    loc = ("body", *((field,) if isinstance(field, str) else field))
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])


def _short_errors(errors: list[dict]) -> list[dict[str, Any]]:
    """FastAPI's validation errors without `input` (which may be a megabyte of base64) and `ctx`
    objects that are not JSON."""
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "value_error")}
        out.append(item)
    return out


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": "ValidationError", "detail": _short_errors(exc.errors())})


async def http_error_handler(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, headers=getattr(exc, "headers", None),
                        content={"error": _ERROR_NAMES.get(exc.status_code, "HTTPException"), "detail": exc.detail})


_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 409: "Conflict", 413: "TooLarge",
                422: "ValidationError", 500: "InternalError", 503: "Unavailable"}


def internal_error_response(exc: BaseException) -> JSONResponse:
    return JSONResponse(status_code=500, content={
        "error": type(exc).__name__,
        "detail": f"internal error: {exc}" if str(exc) else "internal error",
    })


class SafeRoute(APIRoute):
    """An APIRoute whose handler turns unexpected exceptions into a JSON 500 (and logs them)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def safe_handler(request: Request):
            try:
                return await handler(request)
            except (StarletteHTTPException, RequestValidationError):
                raise
            except Exception as exc:  # the whole point: no request can take the server down
                log.exception("API %s %s failed", request.method, request.url.path)
                return internal_error_response(exc)

        return safe_handler


def install_handlers(app) -> None:
    """422 without echoed inputs, JSON bodies for HTTP errors, and a last-resort 500 handler."""
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    async def last_resort(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return internal_error_response(exc)

    app.add_exception_handler(Exception, last_resort)
