"""A labelled grid: column labels on top, row labels on the left, one grid per Z value."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def labelled_grid(cells: list[list[Image.Image]], col_labels: list[str], row_labels: list[str],
                  title: str = "", legend: bool = True) -> Image.Image:
    """cells[row][col]; each cell centred in the largest cell size."""
    rows, cols = len(cells), len(cells[0])
    cw = max(im.width for row in cells for im in row)
    ch = max(im.height for row in cells for im in row)
    font = _font(max(10, min(cw, ch) // 6))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    has_cols = legend and any(col_labels)
    has_rows = legend and any(row_labels)
    line_h = _text_size(probe, "Ag", font)[1] + 6
    top = line_h * ((1 if has_cols else 0) + (1 if title and legend else 0))
    left = (max(_text_size(probe, t, font)[0] for t in row_labels) + 12) if has_rows else 0
    grid = Image.new("RGB", (left + cols * cw, top + rows * ch), "white")
    draw = ImageDraw.Draw(grid)
    if title and legend:
        draw.text((left + 4, 2), title, fill="black", font=font)
    for c, text in enumerate(col_labels if has_cols else []):
        w, _ = _text_size(draw, text, font)
        draw.text((left + c * cw + (cw - w) // 2, top - line_h + 2), text, fill="black", font=font)
    for r, text in enumerate(row_labels if has_rows else []):
        _, h = _text_size(draw, text, font)
        draw.text((4, top + r * ch + (ch - h) // 2), text, fill="black", font=font)
    for r, row in enumerate(cells):
        for c, im in enumerate(row):
            grid.paste(im, (left + c * cw + (cw - im.width) // 2, top + r * ch + (ch - im.height) // 2))
    return grid
