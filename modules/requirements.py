"""Which pinned requirements are missing, read from installed metadata (standard library only).

launch.py calls this on every start: it must answer in milliseconds and never run pip when
everything is already there.
"""
from __future__ import annotations

import importlib.metadata as metadata
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pin:
    name: str
    version: str | None  # None: any installed version will do

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}=={self.version}"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> list[Pin]:
    """Lines `name==version` (comments, blank lines and `-r`/`--` options are skipped)."""
    pins = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        pins.append(Pin(name.strip(), version.strip() if sep else None))
    return pins


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _same_version(installed: str, wanted: str) -> bool:
    # torch reports "2.14.1+cu130" for the pin "2.14.1": a local build tag is still that release.
    return installed == wanted or installed.split("+", 1)[0] == wanted


def missing(pins: list[Pin]) -> list[Pin]:
    out = []
    for pin in pins:
        have = installed_version(pin.name)
        if have is None or (pin.version is not None and not _same_version(have, pin.version)):
            out.append(pin)
    return out
