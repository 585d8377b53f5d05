"""Prompt styles: `styles.csv` with columns name, prompt, negative_prompt (A1111's format).

A style's text containing `{prompt}` wraps the user's prompt; otherwise it is appended after ", ".
Applying several styles applies them in order. `extract_styles_from_prompt` undoes that: it finds
which styles a prompt was built from and returns the prompt without them.

Saving writes a temporary file and renames it over the old one (a crash never leaves half a file).
A file that cannot be read is copied to `<name>.corrupt-<time>.bak` before anything is written, so
the user's styles are never lost.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("name", "prompt", "negative_prompt")


@dataclass
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """Put `prompt` into a style's text.

    >>> merge_prompts("masterpiece, {prompt}, 4k", "a cat")
    'masterpiece, a cat, 4k'
    >>> merge_prompts("oil painting", "a cat ")
    'a cat, oil painting'
    """
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, style_texts: list[str]) -> str:
    for text in style_texts:
        prompt = merge_prompts(text, prompt)
    return prompt


def extract_style_text_from_prompt(style_text: str, prompt: str) -> tuple[bool, str]:
    """(True, prompt without the style) when `prompt` is what applying `style_text` gives."""
    prompt, style_text = prompt.strip(), style_text.strip()
    if "{prompt}" in style_text:
        left, _, right = style_text.partition("{prompt}")
        if prompt.startswith(left) and prompt.endswith(right) and len(prompt) >= len(left) + len(right):
            return True, prompt[len(left):len(prompt) - len(right)]
        return False, prompt
    if prompt.endswith(style_text):
        rest = prompt[:len(prompt) - len(style_text)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


class StyleDatabase:
    """The styles of one csv file, by name (ordered as in the file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.styles: dict[str, PromptStyle] = {}
        self.messages: list[str] = []
        self.reload()

    def reload(self) -> None:
        self.styles, self.messages = {}, []
        if not self.path.exists():
            return
        try:
            self.styles = self._parse(self.path.read_text(encoding="utf-8-sig"))
        except (UnicodeDecodeError, csv.Error, ValueError) as e:
            backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.bak")
            shutil.copy2(self.path, backup)
            self.messages.append(f"{self.path.name} could not be read ({e}); kept as {backup.name}, starting empty")

    @staticmethod
    def _parse(text: str) -> dict[str, PromptStyle]:
        reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
        if reader.fieldnames is None:
            return {}
        if "name" not in reader.fieldnames:
            raise ValueError(f"no 'name' column (columns: {', '.join(reader.fieldnames)})")
        styles = {}
        for row in reader:
            name = (row.get("name") or "").strip()
            if not name or None in row:  # None: more cells than columns
                if None in row:
                    raise ValueError(f"row {reader.line_num} has more cells than the header")
                continue
            prompt = row.get("prompt", row.get("text")) or ""  # "text" is the oldest format's column
            styles[name] = PromptStyle(name, prompt, row.get("negative_prompt") or "")
        return styles

    def save(self) -> None:
        """Write all styles atomically (temporary file in the same folder, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                writer.writeheader()
                for style in self.styles.values():
                    writer.writerow({"name": style.name, "prompt": style.prompt,
                                     "negative_prompt": style.negative_prompt})
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ---- editing -------------------------------------------------------------------------------

    def set(self, name: str, prompt: str = "", negative_prompt: str = "") -> PromptStyle:
        name = name.strip()
        if not name:
            raise ValueError("a style needs a name")
        self.styles[name] = PromptStyle(name, prompt, negative_prompt)
        return self.styles[name]

    def delete(self, name: str) -> None:
        self.styles.pop(name, None)

    # ---- applying (A1111's names) ----------------------------------------------------------------

    def _get(self, names: list[str]) -> list[PromptStyle]:
        return [self.styles[n] for n in names if n in self.styles]

    def unknown(self, names: list[str]) -> list[str]:
        return [n for n in names if n not in self.styles]

    def apply_styles_to_prompt(self, prompt: str, names: list[str]) -> str:
        return apply_styles_to_prompt(prompt, [s.prompt for s in self._get(names)])

    def apply_negative_styles_to_prompt(self, prompt: str, names: list[str]) -> str:
        return apply_styles_to_prompt(prompt, [s.negative_prompt for s in self._get(names)])

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """(style names in the order they were applied, prompt, negative prompt without them)."""
        extracted: list[str] = []
        candidates = list(self.styles.values())
        while True:
            for style in candidates:
                if not style.prompt and not style.negative_prompt:
                    continue
                ok, new_prompt = extract_style_text_from_prompt(style.prompt, prompt)
                ok_neg, new_negative = extract_style_text_from_prompt(style.negative_prompt, negative_prompt)
                if ok and ok_neg:
                    prompt, negative_prompt = new_prompt, new_negative
                    candidates.remove(style)
                    extracted.append(style.name)
                    break
            else:
                return list(reversed(extracted)), prompt, negative_prompt

    def as_api(self) -> list[dict]:
        """GET /sdapi/v1/prompt-styles: [{name, prompt, negative_prompt}]."""
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in self.styles.values()]
