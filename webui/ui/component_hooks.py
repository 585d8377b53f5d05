"""A1111's on_before_component / on_after_component (and Script.before_component/after_component)
for every block of the page as it is built: ours and the extensions', layouts included, each with
its constructor arguments (elem_id among them), the way A1111 calls them.

Gradio has no creation hook, and we do not patch its classes. Instead, while the page is built,
the page's Blocks (and each extension tab's Blocks, see gradio3_compat) keep their registry of
blocks in a dict that tells us when a block is registered - Gradio registers a block at the end of
its constructor's Block part, once it has its place in the layout:
- "before" callbacks run then; what they create is moved in front of the block (A1111's order);
- "after" callbacks run once the block's constructor has returned (at the next registration, or
  when the build ends); what they create is placed right after the block, in the block's parent.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator

from gradio.blocks import Block, BlockContext
from gradio.context import get_render_context, set_render_context

_active: ContextVar["ComponentHooks | None"] = ContextVar("sdwebui_component_hooks", default=None)


class _RegistryWatch(dict):
    """A Blocks' id -> block registry that reports new blocks to the hooks."""

    def __init__(self, data: dict, hooks: "ComponentHooks"):
        super().__init__(data)
        self.hooks = hooks

    def __setitem__(self, key, block) -> None:
        new = key not in self
        super().__setitem__(key, block)
        if new and isinstance(block, Block):
            self.hooks.registered(block)


def _kwargs(block: Block) -> dict:
    """A1111 passes the constructor's keyword arguments; elem_id is always there."""
    recorded = getattr(block, "_constructor_args", None) or [{}]
    kwargs = dict(recorded[0])  # what the caller passed (Gradio records the outermost class first)
    kwargs.setdefault("elem_id", getattr(block, "elem_id", None))
    return kwargs


@contextlib.contextmanager
def _building_in(parent: BlockContext | None) -> Iterator[None]:
    previous = get_render_context()
    set_render_context(parent)
    try:
        yield
    finally:
        set_render_context(previous)


class ComponentHooks:
    """Calls service.component_created(block, kwargs, "before"/"after") for the page's blocks."""

    def __init__(self, service):
        self.service = service
        self.pending: list[Block] = []

    @contextlib.contextmanager
    def active(self) -> Iterator["ComponentHooks"]:
        token = _active.set(self)
        try:
            yield self
        finally:
            self.flush()
            _active.reset(token)

    def watch(self, blocks) -> None:
        """Report the blocks registered in `blocks` (a gr.Blocks) from now on."""
        config = blocks.default_config
        if not isinstance(config.blocks, _RegistryWatch):
            config.blocks = _RegistryWatch(config.blocks, self)

    def registered(self, block: Block) -> None:
        self.flush()  # the earlier blocks' constructors have returned by now
        self._call(block, "before", after=False)
        self.pending.append(block)

    def flush(self) -> None:
        while self.pending:
            self._call(self.pending.pop(0), "after", after=True)

    def _call(self, block: Block, phase: str, after: bool) -> None:
        parent = block.parent
        before = {id(c) for c in parent.children} if parent is not None else set()
        # blocks the callbacks make are registered (and reported) like any other
        with _building_in(parent if parent is not None else get_render_context()):
            self.service.component_created(block, _kwargs(block), phase)
        if parent is None:
            return
        made = [c for c in parent.children if id(c) not in before and c is not block]
        if not made:
            return
        rest = [c for c in parent.children if id(c) in before or c is block]
        at = rest.index(block) + (1 if after else 0)
        parent.children[:] = rest[:at] + made + rest[at:]


def watch_if_building(blocks) -> None:
    """For an extension's own gr.Blocks (an on_ui_tabs tab) made while the page is built."""
    hooks = _active.get()
    if hooks is not None:
        hooks.watch(blocks)
