"""A1111's `modules.ui_components`, `modules.ui_common` and `modules.ui` names for extensions, in
Gradio 6: FormRow, FormColumn, FormGroup, FormHTML, FormColorPicker, ToolButton, ResizeHandleRow,
DropdownMulti, DropdownEditable, InputAccordion; plaintext_to_html, create_refresh_button, gr_show and
A1111's button symbols. The facades modules/ui_components.py, modules/ui_common.py and
modules/ui.py re-export them (nothing in modules/ imports those facades: they are UI code).
Our own UI does not use these classes.
"""
from __future__ import annotations

import html
import inspect

import gradio as gr

refresh_symbol = "\U0001f504"  # 🔄
folder_symbol = "\U0001f4c2"  # 📂
save_style_symbol = "\U0001f4be"  # 💾
apply_style_symbol = "\U0001f4cb"  # 📋
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
extra_networks_symbol = "\U0001f3b4"  # 🎴
switch_values_symbol = "\U000021c5"  # ⇅
restore_progress_symbol = "\U0001f300"  # 🌀
detect_image_size_symbol = "\U0001f4d0"  # 📐


def _with_defaults(cls: type, defaults: dict, classes: list[str]) -> type:
    """Give a subclass of a Gradio class other defaults. Its __init__ is set after the class is made
    (Gradio's metaclass would drop positional arguments of a wrapped one) and keeps the base's
    signature: Gradio builds a component's config from it."""
    base = cls.__base__
    signature = inspect.signature(base.__init__)

    def __init__(self, *args, **kwargs):  # noqa: N807
        bound = signature.bind_partial(self, *args, **kwargs).arguments
        bound.pop("self", None)
        for key, value in defaults.items():
            bound.setdefault(key, value)
        if classes:
            given = bound.get("elem_classes") or []
            bound["elem_classes"] = [*([given] if isinstance(given, str) else given), *classes]
        base.__init__(self, **bound)

    __init__.__signature__ = signature
    cls.__init__ = __init__
    return cls


class ToolButton(gr.Button):
    """A small square button next to a control (A1111's 🔄, 📂...)."""
    is_template = True


class FormRow(gr.Row):
    """A row of form controls."""
    is_template = True


class FormColumn(gr.Column):
    """A column of form controls."""
    is_template = True


class FormGroup(gr.Group):
    """A group of form controls."""
    is_template = True


class FormHTML(gr.HTML):
    """HTML among form controls."""
    is_template = True


class FormColorPicker(gr.ColorPicker):
    """A colour picker among form controls."""
    is_template = True


class ResizeHandleRow(gr.Row):
    """A1111's resizable row (a plain row here)."""
    is_template = True


class DropdownMulti(gr.Dropdown):
    """A multi-select dropdown."""
    is_template = True


class DropdownEditable(gr.Dropdown):
    """A dropdown that also takes typed values."""
    is_template = True


_with_defaults(ToolButton, {"scale": 0, "min_width": 40}, ["tool"])
for _cls in (FormRow, FormColumn, FormGroup):
    _with_defaults(_cls, {}, ["form"])
_with_defaults(FormHTML, {}, [])
_with_defaults(FormColorPicker, {}, [])
_with_defaults(ResizeHandleRow, {}, ["resize-handle-row"])
_with_defaults(DropdownMulti, {"multiselect": True}, [])
_with_defaults(DropdownEditable, {"allow_custom_value": True}, [])

_checkbox_signature = inspect.signature(gr.Checkbox.__init__)


class InputAccordion(gr.Checkbox):
    """A1111's InputAccordion: an accordion whose value is a checkbox (enabled or not).

        with InputAccordion(False, label="My feature") as enabled:   # `enabled` is the input
            strength = gr.Slider(...)

    The checkbox sits right above its accordion; ticking it opens the accordion.
    """

    is_template = True

    def __init__(self, value=False, label=None, *, elem_id=None, visible=True, open=None, **kwargs):  # noqa: A002
        label = label if label is not None else kwargs.pop("label", "")
        kwargs.pop("render", None)
        super().__init__(value=bool(value), label=label, elem_id=elem_id, visible=visible,
                         elem_classes=["input-accordion-checkbox"],
                         **{k: v for k, v in kwargs.items() if k in _checkbox_signature.parameters})
        self.accordion_id = f"{elem_id}-accordion" if elem_id else None
        self.accordion = gr.Accordion(label, open=bool(value) if open is None else open, elem_id=self.accordion_id,
                                      visible=visible, elem_classes=["input-accordion"])
        self.change(lambda on: gr.update(open=True) if on else gr.skip(), inputs=self, outputs=self.accordion,
                    queue=False, show_progress="hidden", api_visibility="private")

    def extra(self):
        """A1111 puts these controls in the accordion's title bar; here they open its content."""
        return gr.Row(elem_classes=["input-accordion-extra"])

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, *exc):
        return self.accordion.__exit__(*exc)

    def get_block_name(self) -> str:
        return "checkbox"


InputAccordion.__init__.__signature__ = _checkbox_signature


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    content = "<br>\n".join(html.escape(x) for x in (text or "").split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


def gr_show(visible: bool = True) -> dict:
    return {"visible": visible, "__type__": "update"}


def create_refresh_button(refresh_component, refresh_method, refreshed_args, elem_id: str):
    """A 🔄 button: calls refresh_method(), then updates the component(s) with refreshed_args
    (a dict, or a function returning one), as A1111's does."""
    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]

    def refresh():
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        args = dict(args or {})
        for component in components:
            for key, value in args.items():
                setattr(component, key, value)
        updates = [gr.update(**args) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id)
    button.click(fn=refresh, inputs=[], outputs=components, api_visibility="private")
    return button
