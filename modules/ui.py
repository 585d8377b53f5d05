"""A1111's `modules.ui` path, for extensions only: the few helpers extensions import from it
(gr_show, plaintext_to_html, create_refresh_button, the button symbols; webui/ui/extension_components.py).
A1111's create_ui and the rest of its ui.py are not available.

This is UI code at A1111's module path: it imports gradio, so nothing in modules/ (the engine) may
import it.
"""
from webui.ui.extension_components import (  # noqa: F401
    ToolButton,
    apply_style_symbol,
    clear_prompt_symbol,
    create_refresh_button,
    detect_image_size_symbol,
    extra_networks_symbol,
    folder_symbol,
    gr_show,
    plaintext_to_html,
    refresh_symbol,
    restore_progress_symbol,
    save_style_symbol,
    switch_values_symbol,
)
