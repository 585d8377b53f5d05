"""Image inputs that turn an unreadable upload into a message naming the file, not Gradio's
"Could not preprocess input component ..." text with a PIL exception inside."""
from __future__ import annotations

from pathlib import Path

import gradio as gr


def _not_an_image(payload, e: Exception) -> gr.Error:
    name = Path(str(getattr(payload, "orig_name", None) or getattr(payload, "path", "") or "the file")).name
    return gr.Error(f"The uploaded file {name!r} is not an image that can be read ({type(e).__name__}): "
                    "upload a PNG, JPEG or WEBP file")


class UploadImage(gr.Image):
    is_template = True  # rendered by Gradio's own Image front end

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
            raise _not_an_image(payload, e) from None


class UploadImageEditor(gr.ImageEditor):
    is_template = True

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (OSError, ValueError, SyntaxError) as e:
            raise _not_an_image(getattr(payload, "background", None), e) from None
