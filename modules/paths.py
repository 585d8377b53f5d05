"""Where things live, derived once from the command-line flags (no module-level mutable state)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    data_dir: Path           # config.json, outputs/, cache.json
    models_dir: Path         # models/ (Stable-diffusion, VAE, Lora)
    ckpt_dirs: tuple[Path, ...]   # scanned for checkpoints, in order
    vae_dir: Path
    lora_dir: Path
    embeddings_dir: Path
    extensions_dir: Path
    extensions_builtin_dir: Path
    styles_file: Path

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.json"

    @property
    def cache_file(self) -> Path:
        return self.data_dir / "cache.json"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @classmethod
    def from_args(cls, args) -> "Paths":
        data = Path(args.data_dir).resolve()
        models = data / "models"
        ckpt_dirs = [models / "Stable-diffusion"]
        if data != ROOT:
            # the shipped demo model stays visible when the data lives elsewhere
            ckpt_dirs.append(ROOT / "models" / "Stable-diffusion")
        if args.ckpt_dir:
            ckpt_dirs.append(Path(args.ckpt_dir).resolve())
        return cls(
            data_dir=data,
            models_dir=models,
            ckpt_dirs=tuple(dict.fromkeys(ckpt_dirs)),
            vae_dir=Path(args.vae_dir).resolve() if args.vae_dir else models / "VAE",
            lora_dir=Path(args.lora_dir).resolve() if args.lora_dir else models / "Lora",
            embeddings_dir=Path(args.embeddings_dir).resolve() if args.embeddings_dir else data / "embeddings",
            extensions_dir=data / "extensions",
            extensions_builtin_dir=ROOT / "extensions-builtin",
            styles_file=Path(args.styles_file).resolve() if args.styles_file else data / "styles.csv",
        )

    def check_writable(self) -> None:
        """Raise PermissionError with a clear message when the data dir can't be written."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.data_dir, prefix=".write-test-"):
                pass
        except OSError as e:
            raise PermissionError(
                f"the data dir {self.data_dir} is not writable ({e.strerror}): "
                "choose another with --data-dir or fix its permissions") from None
        for d in (self.models_dir / "Stable-diffusion", self.vae_dir, self.lora_dir, self.embeddings_dir,
                  self.outputs_dir):
            os.makedirs(d, exist_ok=True)


def __getattr__(name: str):
    """A1111's names (script_path, data_path, models_path, extensions_dir...) for extensions:
    modules/plugins/compat/paths.py; the engine never uses them."""
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.plugins.compat import paths as a1111
    return a1111.attribute("modules.paths", name)
