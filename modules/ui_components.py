"""A1111's `modules.ui_components` path, for extensions only: FormRow, FormColumn, FormGroup,
FormHTML, FormColorPicker, ToolButton, ResizeHandleRow, DropdownMulti, DropdownEditable,
InputAccordion (Gradio 6 versions in webui/ui/extension_components.py).

This is UI code at A1111's module path: it imports gradio, so nothing in modules/ (the engine) may
import it (tests/test_extension_surface.py checks that the engine imports no gradio).
"""
from webui.ui.extension_components import (  # noqa: F401
    DropdownEditable,
    DropdownMulti,
    FormColorPicker,
    FormColumn,
    FormGroup,
    FormHTML,
    FormRow,
    InputAccordion,
    ResizeHandleRow,
    ToolButton,
)
