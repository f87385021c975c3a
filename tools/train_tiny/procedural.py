"""Procedural training data for the tiny FLUX: captioned scenes of coloured shapes, drawn on the fly.

Every sample is a pure function of ``(split, seed, index)``: training needs no dataset on disk and
reruns see the same images, while the held-out split draws from a disjoint random stream. Captions
use only words of :data:`fbcache.models.tiny.WORDS`. One scene type draws the harness's default
prompt (a panda next to a "hello world" sign), so the default benchmark image shows something.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fbcache.config import DEFAULT_PROMPT

RGB = tuple[int, int, int]

#: random stream of each split; the seed and the sample index complete the key
SPLITS: dict[str, int] = {"train": 0, "heldout": 1}
#: shapes are drawn this many times larger, then box-filtered: anti-aliased edges, as in photos
SUPERSAMPLE = 4

COLOURS: dict[str, RGB] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
    "white": (245, 245, 245), "black": (20, 20, 20), "orange": (245, 140, 30), "purple": (130, 50, 170),
    "cyan": (40, 200, 220), "magenta": (220, 50, 180),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "ring", "cross", "bar", "dot", "star")
#: size word -> half extent as a fraction of the image side ("" is the unnamed medium size)
SIZES: dict[str, float] = {"small": 0.09, "": 0.14, "big": 0.2, "large": 0.2}
DOT_RADIUS = 0.06
#: 3x3 grid cell (row, column) -> the phrases that name it
POSITIONS: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("at the top left", "in the top left corner", "in the upper left corner"),
    (0, 1): ("at the top", "at the top center"),
    (0, 2): ("at the top right", "in the top right corner", "in the upper right corner"),
    (1, 0): ("on the left", "at the left"),
    (1, 1): ("in the center", "in the middle"),
    (1, 2): ("on the right", "at the right"),
    (2, 0): ("at the bottom left", "in the bottom left corner", "in the lower left corner"),
    (2, 1): ("at the bottom", "at the bottom center"),
    (2, 2): ("at the bottom right", "in the bottom right corner", "in the lower right corner"),
}
#: scene type -> probability
SCENE_TYPES: dict[str, float] = {"panda": 0.2, "one": 0.45, "two": 0.35}


@dataclass(frozen=True)
class Shape:
    """One coloured shape; geometry in fractions of the image side, so any resolution renders it."""

    kind: str
    colour: RGB
    centre: tuple[float, float]
    radius: float


@dataclass(frozen=True)
class Panda:
    """The default prompt's scene: offsets jitter the layout so the model sees a distribution."""

    panda_offset: tuple[float, float]
    sign_offset: tuple[float, float]


@dataclass(frozen=True)
class Scene:
    caption: str
    background: RGB
    #: (direction, amplitude) of a gentle linear brightness ramp: flat fills are unlike real images
    ramp: tuple[float, float]
    shapes: tuple[Shape, ...] = ()
    panda: Panda | None = None


def rng_for(split: str, seed: int, index: int) -> np.random.Generator:
    """Independent, addressable stream per sample: any index can be drawn alone, in any order."""
    return np.random.default_rng([SPLITS[split], seed, index])


def _jitter(rng: np.random.Generator, colour: RGB, amount: int = 12) -> RGB:
    """Nearby shades of one colour name: the model learns a colour, not one exact RGB value."""
    r, g, b = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)
    return r, g, b


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _sample_shape(rng: np.random.Generator, cell: tuple[int, int], background: str) -> tuple[Shape, str]:
    """A shape in a grid cell, with the phrase that describes it."""
    kind = SHAPES[rng.integers(len(SHAPES))]
    colour = str(rng.choice([name for name in COLOURS if name != background]))
    size = "" if kind == "dot" else str(rng.choice(list(SIZES)))
    radius = DOT_RADIUS if kind == "dot" else SIZES[size]
    row, col = cell
    half_width = 1.2 * radius if kind == "bar" else radius
    cx, cy = (float(np.clip((2 * k + 1) / 6 + rng.uniform(-0.04, 0.04), half, 1 - half))
              for k, half in ((col, half_width), (row, radius)))
    words = [w for w in (size, colour, kind) if w]
    where = POSITIONS[cell][rng.integers(len(POSITIONS[cell]))]
    phrase = f"{_article(words[0])} {' '.join(words)} {where}"
    return Shape(kind, _jitter(rng, COLOURS[colour]), (cx, cy), radius), phrase


def _sample_background(rng: np.random.Generator) -> str:
    """White half the time (left unsaid), black a quarter, any other colour the rest."""
    roll = rng.random()
    if roll < 0.5:
        return "white"
    if roll < 0.75:
        return "black"
    return str(rng.choice([name for name in COLOURS if name not in ("white", "black")]))


def sample_scene(rng: np.random.Generator) -> Scene:
    """One scene: the panda with its sign, or one or two shapes in distinct grid cells."""
    ramp = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.12, 0.12)))
    kind = str(rng.choice(list(SCENE_TYPES), p=list(SCENE_TYPES.values())))
    if kind == "panda":
        offsets = rng.uniform(-0.03, 0.03, size=4)
        panda = Panda((float(offsets[0]), float(offsets[1])), (float(offsets[2]), float(offsets[3])))
        return Scene(DEFAULT_PROMPT, _jitter(rng, (150, 200, 240)), ramp, panda=panda)
    background = _sample_background(rng)
    cells = list(POSITIONS)
    chosen = rng.choice(len(cells), size=1 if kind == "one" else 2, replace=False)
    shapes, phrases = zip(*(_sample_shape(rng, cells[i], background) for i in chosen))
    caption = " and ".join(phrases)
    if background != "white":
        caption += f" on {_article(background)} {background} background"
    return Scene(caption, _jitter(rng, COLOURS[background]), ramp, shapes=tuple(shapes))


def _background(scene: Scene, side: int) -> Image.Image:
    """The background colour under a linear brightness ramp, on the supersampled canvas.

    The ramp is computed at the output size and upsampled: it is smooth, and this is the costliest step.
    """
    direction, amplitude = scene.ramp
    axis = (np.arange(side) + 0.5) / side - 0.5
    proj = math.cos(direction) * axis[None, :] + math.sin(direction) * axis[:, None]
    pixels = np.asarray(scene.background, np.float32) * (1 + amplitude * proj[..., None])
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image.resize((side * SUPERSAMPLE,) * 2, Image.BILINEAR)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else 0.45 * r
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, side: int) -> None:
    cx, cy, r = shape.centre[0] * side, shape.centre[1] * side, shape.radius * side
    fill = shape.colour
    if shape.kind in ("circle", "dot"):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape.kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(1, round(0.32 * r)))
    elif shape.kind == "square":
        h = 0.85 * r
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif shape.kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - 0.95 * r, cy + 0.8 * r), (cx + 0.95 * r, cy + 0.8 * r)], fill=fill)
    elif shape.kind == "cross":
        w = 0.3 * r
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif shape.kind == "bar":
        draw.rectangle((cx - 1.2 * r, cy - 0.4 * r, cx + 1.2 * r, cy + 0.4 * r), fill=fill)
    elif shape.kind == "star":
        draw.polygon(_star(cx, cy, r), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape.kind!r}")


def _sign_box(panda: Panda) -> tuple[float, float, float, float]:
    """The sign board (left, top, right, bottom), shared by the drawing and the lettering."""
    dx, dy = panda.sign_offset
    return 0.45 + dx, 0.05 + dy, 0.97 + dx, 0.46 + dy


def _draw_panda(draw: ImageDraw.ImageDraw, panda: Panda, side: int) -> None:
    """Grass, a panda (white face, black ears, eye patches and arm) holding a post with a board."""
    s = float(side)
    black, white, outline = (20, 20, 20), (248, 248, 248), (110, 110, 110)
    draw.rectangle((0, 0.68 * s, s, s), fill=(90, 165, 80))
    left, top, right, bottom = _sign_box(panda)
    post = (left + right) / 2 + 0.04
    draw.rectangle(((post - 0.03) * s, bottom * s, (post + 0.03) * s, s), fill=(120, 80, 40))
    draw.rectangle((left * s, top * s, right * s, bottom * s), fill=(250, 240, 205),
                   outline=(100, 65, 30), width=max(1, round(0.02 * s)))
    px, py = 0.27 + panda.panda_offset[0], 0.55 + panda.panda_offset[1]

    def oval(cx: float, cy: float, rx: float, ry: float, fill: RGB, line: RGB | None = None) -> None:
        draw.ellipse(((cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s), fill=fill,
                     outline=line, width=max(1, round(0.012 * s)))

    oval(px, py + 0.33, 0.2, 0.17, white, outline)
    draw.line(((px + 0.12) * s, (py + 0.27) * s, (post - 0.02) * s, (bottom + 0.12) * s), fill=black,
              width=max(1, round(0.07 * s)))
    for side_sign in (-1, 1):
        oval(px + side_sign * 0.13, py - 0.13, 0.065, 0.065, black)
    oval(px, py, 0.17, 0.155, white, outline)
    for side_sign in (-1, 1):
        oval(px + side_sign * 0.065, py - 0.01, 0.045, 0.055, black)
        oval(px + side_sign * 0.06, py - 0.02, 0.016, 0.016, white)
    oval(px, py + 0.07, 0.03, 0.02, black)


@lru_cache(maxsize=8)
def _lettering(side: int) -> Image.Image:
    """'hello' over 'world' in PIL's built-in bitmap font, scaled with the image (crisp at 64 px)."""
    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    mask = Image.new("L", (30, 22), 0)
    pen = ImageDraw.Draw(mask)
    pen.text((0, 0), "hello", fill=255, font=font)
    pen.text((0, 11), "world", fill=255, font=font)
    scale = side / 64
    size = (max(1, round(30 * scale)), max(1, round(22 * scale)))
    return mask.resize(size, Image.NEAREST if scale >= 1 else Image.BOX)


def _letter_sign(image: Image.Image, panda: Panda) -> None:
    """Write on the board at the final resolution, where the bitmap font is sharp."""
    side = image.size[0]
    mask = _lettering(side)
    left, top, right, bottom = _sign_box(panda)
    x = round((left + right) / 2 * side - mask.size[0] / 2)
    y = round((top + bottom) / 2 * side - mask.size[1] / 2)
    image.paste((30, 30, 30), (x, y), mask)


def render(scene: Scene, side: int) -> np.ndarray:
    """The scene as a ``side`` x ``side`` RGB uint8 array."""
    canvas = _background(scene, side)
    draw = ImageDraw.Draw(canvas)
    if scene.panda is not None:
        _draw_panda(draw, scene.panda, side * SUPERSAMPLE)
    for shape in scene.shapes:
        _draw_shape(draw, shape, side * SUPERSAMPLE)
    image = canvas.reduce(SUPERSAMPLE)
    if scene.panda is not None:
        _letter_sign(image, scene.panda)
    return np.asarray(image)


def sample(split: str, seed: int, index: int, side: int) -> tuple[np.ndarray, str]:
    """Image and caption of one sample."""
    scene = sample_scene(rng_for(split, seed, index))
    return render(scene, side), scene.caption


def batch(split: str, seed: int, start: int, count: int, side: int) -> tuple[np.ndarray, list[str]]:
    """Samples ``start .. start + count - 1`` as an (N, side, side, 3) uint8 array and their captions."""
    images, captions = zip(*(sample(split, seed, start + i, side) for i in range(count)))
    return np.stack(images), list(captions)
