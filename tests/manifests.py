"""Key/shape manifests of the official checkpoint layouts, copied into tests/data (see its README)."""
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
MANIFESTS = DATA / "manifests" / "sd"
