"""A1111's `modules.ui_extra_networks` path, for extensions: the ExtraNetworksPage base class and
register_page. Pages are recorded (ctx.services.scripts.extra_pages) and noted on the Extensions
tab; no extra networks browser shows them yet (issue 18 builds it). Nothing in the project imports
this module."""
from __future__ import annotations

from modules.script_callbacks import current_scope


class ExtraNetworksPage:
    def __init__(self, title: str):
        self.title = title
        self.name = title.lower()
        self.id_page = self.name.replace(" ", "_")
        self.items: dict = {}
        self.allow_negative_prompt = False

    def refresh(self) -> None: ...

    def list_items(self):
        return []

    def create_item(self, name: str, index=None):
        return None

    def allowed_directories_for_previews(self) -> list[str]:
        return []


def register_page(page: ExtraNetworksPage) -> None:
    scope = current_scope()
    service = scope.ctx.services.scripts
    if service is not None:
        service.extra_pages.append(page)
    note = f"registers the extra networks page '{page.title}'; no extra networks browser shows it yet"
    notes = scope.registry.notes.setdefault(scope.extension, [])
    if note not in notes:
        notes.append(note)
