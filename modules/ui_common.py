"""A1111's `modules.ui_common` path, for extensions only: plaintext_to_html, create_refresh_button,
A1111's button symbols (webui/ui/extension_components.py). A1111's create_output_panel and
update_generation_info are not available.

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
    plaintext_to_html,
    refresh_symbol,
    restore_progress_symbol,
    save_style_symbol,
    switch_values_symbol,
)
