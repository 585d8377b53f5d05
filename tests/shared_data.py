"""The read-only reference data beside the checkout (../shared, as laid out for developers and CI)."""
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
MANIFESTS = SHARED / "ldm" / "manifests"
CONFIGS = SHARED / "ldm" / "configs"
