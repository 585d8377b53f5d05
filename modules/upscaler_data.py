"""A1111's `shared.sd_upscalers` view of the upscaler table: entries with `.name`, `.data_path`,
`.scale`, `.model_name` and `.scaler.upscale(image, scale, data_path)`, as A1111's scripts (SD
upscale) and extensions call them. The table (modules.upscalers) stays the one source."""
from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from modules.upscalers import UpscalerTable


@dataclass
class _Scaler:
    table: UpscalerTable
    name: str
    model_name: str | None

    def upscale(self, image: Image.Image, scale: float, selected_path=None) -> Image.Image:
        """image scaled by `scale` through this entry (A1111's Upscaler.upscale)."""
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        return self.table.upscale(image, self.name, width, height)


@dataclass
class UpscalerData:
    name: str
    data_path: str | None
    scale: float
    scaler: _Scaler
    model_name: str | None = None


def sd_upscalers(table: UpscalerTable) -> list[UpscalerData]:
    return [UpscalerData(u.name, u.model_path, float(u.scale or 4), _Scaler(table, u.name, u.model_name),
                         u.model_name) for u in table.entries()]
