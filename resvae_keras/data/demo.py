"""Synthetic demo faces, written in the official CelebA layout (178x218 JPEGs and
annotation files), so the course runs without CelebA; figures made from them say
"(demo data)". Attributes drawn: Male, Mustache/No_Beard, Wearing_Lipstick, Smiling,
Eyeglasses, one hair colour, Bangs, Wearing_Hat, Pale_Skin; every other one is -1. Faces
stay inside the crop box; image ``i`` depends only on ``(seed, i)`` (byte-identical files).
"""

from __future__ import annotations

import colorsys
import contextlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ._io import cpu_count, folder_in_place, process_pool
from .celeba import ATTRIBUTE_NAMES

DEMO_VERSION = 2
DEMO_SEED = 0  # the demo faces' seed, whatever the training seed
DEMO_MARKER = "demo_faces.json"
WIDTH, HEIGHT = 178, 218
_SUPERSAMPLE = 2  # draw at 2x and downsample, for smooth edges
_JPEG_QUALITY = 90

# Eyeglass frames are the only saturated blue that can reach the eye region: backgrounds,
# hats, skin, hair and irises never have blue above max(red, green).
_GLASSES_RGB = (25, 45, 165)
_HAIR_RGB = {
    "Black_Hair": (28, 22, 20),
    "Brown_Hair": (105, 62, 35),
    "Blond_Hair": (222, 190, 120),
    "Gray_Hair": (172, 170, 166),
}
_PALE_SKIN = ((250, 232, 220), (244, 224, 210), (238, 220, 214))
_SKIN = ((232, 190, 160), (214, 160, 120), (190, 135, 95), (160, 108, 72), (120, 80, 52),
         (88, 58, 40))
_IRIS = ((92, 58, 32), (52, 36, 26), (72, 108, 62), (124, 92, 48))


def _rgb(values) -> tuple[int, int, int]:
    return tuple(min(255, max(0, round(float(v)))) for v in values)


def _not_blue_colour(rng: np.random.Generator, saturation, value, half) -> tuple[int, int, int]:
    """A random colour whose blue never exceeds max(red, green); two colours of one ``half``
    (0: blue <= red, 1: blue <= green) never give a blue gradient."""
    hue = (rng.uniform(-1 / 6, 1 / 3) % 1.0) if half == 0 else rng.uniform(1 / 6, 1 / 2)
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value))
    return _rgb((255 * r, 255 * g, 255 * b))


class _Face:
    """Geometry (178x218 pixels, eye line near y = 112 as in CelebA), colours and the pen;
    ``box`` and ``pts`` scale 178x218 coordinates to the supersampled layer."""

    k = _SUPERSAMPLE

    def __init__(self, rng: np.random.Generator, attrs: dict[str, bool], layer: Image.Image):
        self.attrs = attrs
        self.draw = ImageDraw.Draw(layer)
        fw = rng.uniform(74, 90)  # face width
        self.a = fw / 2  # half the face width (the eye distance is 31-38 px, as in CelebA)
        self.fh = fw * rng.uniform(1.25, 1.35)  # face height
        self.cx = 89 + rng.uniform(-5, 5)  # centre of the face
        self.ye = 112 + rng.uniform(-4, 4)  # eye line
        self.yaw = rng.uniform(-1, 1) * 0.12 * (fw / 2)  # sideways shift: a turned head
        self.roll = rng.uniform(-6, 6)  # in-plane rotation, degrees
        self.top = self.ye - 0.46 * self.fh
        self.bottom = self.top + self.fh
        pale = attrs["Pale_Skin"]
        pick = _PALE_SKIN[rng.integers(3)] if pale else _SKIN[rng.integers(len(_SKIN))]
        self.skin = _rgb(np.array(pick, float) + rng.uniform(-6, 6, 3))
        self.shade = _rgb(np.array(self.skin) * 0.8)  # ears, neck, creases
        hair_name = next(n for n in _HAIR_RGB if attrs.get(n))
        self.hair = _rgb(np.array(_HAIR_RGB[hair_name]) + rng.uniform(-10, 10, 3))
        light = hair_name in ("Blond_Hair", "Gray_Hair")
        self.brow = _rgb(np.array(self.hair) * (0.7 if light else 0.9))  # brows and moustache

    def box(self, x0, y0, x1, y1) -> list[float]:
        return [x0 * self.k, y0 * self.k, x1 * self.k, y1 * self.k]

    def pts(self, *xy) -> list[tuple[float, float]]:
        return [(x * self.k, y * self.k) for x, y in xy]


def _draw_head(f: _Face, rng: np.random.Generator):
    """Hair behind the head (short for men, long for women), neck, shirt, ears, f."""
    d, box, a, fh, cx, top, bottom = f.draw, f.box, f.a, f.fh, f.cx, f.top, f.bottom
    width, above, below = (1.1, 0.1, 0.6) if f.attrs["Male"] else (1.3, 0.12, 1.25)
    d.ellipse(box(cx - width * a, top - above * fh, cx + width * a, top + below * fh), fill=f.hair)
    hsv = (rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.9))
    shirt = _rgb(np.array(colorsys.hsv_to_rgb(*hsv)) * 255)
    d.rectangle(box(cx - 0.42 * a, bottom - 0.15 * fh, cx + 0.42 * a, HEIGHT), fill=f.shade)
    d.ellipse(box(cx - 2.5 * a, bottom + 0.1 * fh, cx + 2.5 * a, bottom + 1.1 * fh), fill=shirt)
    for side in (-1, 1):
        d.ellipse(box(cx + side * a - 0.16 * a, f.ye - 0.02 * fh,
                      cx + side * a + 0.16 * a, f.ye + 0.2 * fh), fill=f.shade)
    d.ellipse(box(cx - a, top, cx + a, bottom), fill=f.skin)


def _draw_eyes(f: _Face, rng: np.random.Generator):
    """White, iris and pupil of both eyes, an upper lid crease, and the brows."""
    d, box, k, a, fh, ye = f.draw, f.box, f.k, f.a, f.fh, f.ye
    iris = _IRIS[rng.integers(len(_IRIS))]
    yb = ye - 0.1 * fh
    for side in (-1, 1):
        ex = f.cx + f.yaw + side * 0.42 * a
        for rx, ry, colour in ((0.19, 0.09, (240, 238, 232)), (0.09, 0.09, iris),
                               (0.045, 0.045, (15, 12, 12))):  # white, iris, pupil
            d.ellipse(box(ex - rx * a, ye - ry * a, ex + rx * a, ye + ry * a), fill=colour)
        d.arc(box(ex - 0.2 * a, ye - 0.11 * a, ex + 0.2 * a, ye + 0.11 * a), 190, 350,
              fill=f.shade, width=k)
        bw = (0.1 if f.attrs["Male"] else 0.065) * a
        brow = f.pts((ex - side * 0.22 * a, yb + 0.02 * fh), (ex, yb - 0.012 * fh),
                     (ex + side * 0.24 * a, yb + 0.012 * fh))
        d.line(brow, fill=f.brow, width=max(2, round(bw * k)), joint="curve")


def _draw_nose(f: _Face):
    """The bridge line and two nostrils."""
    d, k, a, fh = f.draw, f.k, f.a, f.fh
    ny = f.top + 0.68 * fh
    nx = f.cx + 1.5 * f.yaw
    d.line(f.pts((nx - 0.02 * a, f.ye + 0.06 * fh), (nx + 0.05 * a, ny - 0.02 * fh)),
           fill=f.shade, width=k)
    for side in (-1, 1):
        d.ellipse(f.box(nx + side * 0.12 * a - 0.06 * a, ny - 0.025 * fh,
                        nx + side * 0.12 * a + 0.06 * a, ny + 0.01 * fh), fill=f.shade)


def _draw_mouth(f: _Face):
    """An open smile with teeth or closed lips (red with lipstick), and the moustache."""
    d, box, pts, k, a, fh, attrs = f.draw, f.box, f.pts, f.k, f.a, f.fh, f.attrs
    my = f.top + 0.81 * fh
    mx = f.cx + f.yaw
    lips = ((185, 40, 62) if attrs["Wearing_Lipstick"]
            else _rgb(np.array(f.skin) * (0.82, 0.58, 0.58)))
    if attrs["Smiling"]:
        d.chord(box(mx - 0.36 * a, my - 0.07 * fh, mx + 0.36 * a, my + 0.07 * fh), 0, 180,
                fill=(110, 28, 38), outline=lips, width=2 * k)
        d.chord(box(mx - 0.28 * a, my - 0.035 * fh, mx + 0.28 * a, my + 0.035 * fh), 0, 180,
                fill=(245, 245, 240))
        d.line(pts((mx - 0.37 * a, my - 0.01 * fh), (mx + 0.37 * a, my - 0.01 * fh)),
               fill=lips, width=2 * k)
    else:
        d.ellipse(box(mx - 0.28 * a, my - 0.03 * fh, mx + 0.28 * a, my + 0.035 * fh), fill=lips)
        d.line(pts((mx - 0.29 * a, my), (mx, my + 0.006 * fh), (mx + 0.29 * a, my)),
               fill=_rgb(np.array(lips) * 0.55), width=k)
    if attrs["Mustache"]:
        ny = f.top + 0.68 * fh  # under the nose
        d.polygon(pts((mx - 0.4 * a, my - 0.02 * fh), (mx - 0.3 * a, ny + 0.03 * fh),
                      (mx + 0.3 * a, ny + 0.03 * fh), (mx + 0.4 * a, my - 0.02 * fh),
                      (mx, my - 0.045 * fh)), fill=f.brow)


def _draw_front_hair(f: _Face):
    """Hair over the forehead: a cap down to the hairline, jagged for bangs."""
    d, box, a, fh, cx, top, bangs = f.draw, f.box, f.a, f.fh, f.cx, f.top, f.attrs["Bangs"]
    hairline = top + (0.3 if bangs else 0.17) * fh
    cap_top = top - 0.1 * fh
    d.chord(box(cx - 1.08 * a, cap_top, cx + 1.08 * a, 2 * hairline - cap_top), 180, 360,
            fill=f.hair)
    if bangs:
        teeth = 9
        xs = np.linspace(cx - 0.95 * a, cx + 0.95 * a, 2 * teeth + 1)
        ys = [hairline + (0.06 * fh if j % 2 else -0.01 * fh) for j in range(len(xs))]
        d.polygon(f.pts((xs[0], hairline - 0.05 * fh), *zip(xs, ys, strict=True),
                        (xs[-1], hairline - 0.05 * fh)), fill=f.hair)
    else:
        d.ellipse(box(cx - 0.62 * a, hairline - 0.07 * fh, cx + 0.62 * a, hairline + 0.25 * fh),
                  fill=f.skin)


def _draw_glasses(f: _Face, rng: np.random.Generator):
    """Thick blue frames around both eyes, a bridge and the temples."""
    d, a, ye, cx, yaw = f.draw, f.a, f.ye, f.cx, f.yaw
    frame = _rgb(np.array(_GLASSES_RGB) + rng.uniform(-10, 10, 3))
    fwid = max(3, round(0.13 * a * f.k))
    for side in (-1, 1):
        ex = cx + yaw + side * 0.42 * a
        d.rounded_rectangle(f.box(ex - 0.3 * a, ye - 0.2 * a, ex + 0.3 * a, ye + 0.2 * a),
                            radius=0.1 * a * f.k, outline=frame, width=fwid)
        d.line(f.pts((ex + side * 0.3 * a, ye - 0.08 * a), (cx + side * 0.98 * a, ye - 0.1 * a)),
               fill=frame, width=fwid)
    d.line(f.pts((cx + yaw - 0.12 * a, ye - 0.06 * a), (cx + yaw + 0.12 * a, ye - 0.06 * a)),
           fill=frame, width=fwid)


def _draw_hat(f: _Face, rng: np.random.Generator):
    """Crown and brim over the top of the head, inside the crop box."""
    d, box, a, fh, cx, top = f.draw, f.box, f.a, f.fh, f.cx, f.top
    hat = _not_blue_colour(rng, (0.1, 0.8), (0.15, 0.85), rng.integers(2))
    base = top + 0.07 * fh  # where the crown meets the brim
    crown_top = max(top - 0.2 * fh, 43.0)  # stays inside the crop box
    d.chord(box(cx - 0.98 * a, crown_top, cx + 0.98 * a, 2 * base - crown_top), 180, 360, fill=hat)
    d.rectangle(box(cx - 0.97 * a, base - 0.05 * fh, cx + 0.97 * a, base),
                fill=_rgb(np.array(hat) * 0.6))
    d.ellipse(box(cx - 1.4 * a, base - 0.035 * fh, cx + 1.4 * a, base + 0.065 * fh), fill=hat)


def draw_demo_face(seed: int, index: int) -> tuple[Image.Image, dict[str, bool]]:
    """One synthetic face, an RGB 178x218 PIL image, and its attributes; depends only on
    ``(seed, index)``: every random number comes from one generator, in this order."""
    rng = np.random.default_rng([int(seed), int(index)])
    male = rng.random() < 0.45
    hair = rng.choice(list(_HAIR_RGB), p=[0.3, 0.3, 0.12, 0.28] if male else [0.3, 0.3, 0.25, 0.15])
    moustache = bool(male and rng.random() < 0.4)
    attrs = {
        "Male": male,
        "Smiling": rng.random() < 0.5,
        "Eyeglasses": rng.random() < 0.25,
        hair: True,
        "Bangs": rng.random() < (0.15 if male else 0.35),
        "Mustache": moustache,
        "No_Beard": not moustache,
        "Wearing_Hat": rng.random() < 0.12,
        "Pale_Skin": rng.random() < 0.2,
        "Wearing_Lipstick": bool(not male and rng.random() < 0.5),
    }
    k = _SUPERSAMPLE
    # the background: a vertical gradient between two colours that are never blue
    half = rng.integers(2)
    top_c = np.array(_not_blue_colour(rng, (0.05, 0.6), (0.35, 0.95), half), float)
    bottom_c = np.array(_not_blue_colour(rng, (0.05, 0.6), (0.3, 0.9), half), float)
    t = np.linspace(0.0, 1.0, HEIGHT * k)[:, None]
    column = ((1 - t) * top_c + t * bottom_c + 0.5).astype(np.uint8)
    canvas = Image.fromarray(np.repeat(column[:, None, :], WIDTH * k, axis=1), "RGB")
    layer = Image.new("RGBA", (WIDTH * k, HEIGHT * k), (0, 0, 0, 0))
    f = _Face(rng, attrs, layer)
    _draw_head(f, rng)
    _draw_eyes(f, rng)
    _draw_nose(f)
    _draw_mouth(f)
    _draw_front_hair(f)
    if attrs["Eyeglasses"]:
        _draw_glasses(f, rng)
    if attrs["Wearing_Hat"]:
        _draw_hat(f, rng)
    # nearest neighbour, smoothed by the 2x downsample
    layer = layer.rotate(f.roll, resample=Image.Resampling.NEAREST, center=(f.cx * k, f.ye * k))
    canvas.paste(layer, (0, 0), layer)
    image = canvas.reduce(k)  # box filter: each pixel averages a 2x2 block
    # light: an overall gain times a left-right ramp (side light)
    gain = rng.uniform(0.8, 1.15)
    side_light = rng.uniform(-0.25, 0.25)
    ramp = gain * (1 + side_light * (np.arange(WIDTH) - WIDTH / 2) / (WIDTH / 2))
    lit = np.asarray(image, np.float32) * ramp[None, :, None].astype(np.float32)
    image = Image.fromarray(np.clip(lit + 0.5, 0, 255).astype(np.uint8), "RGB")
    return image, {name: bool(attrs.get(name, False)) for name in ATTRIBUTE_NAMES}


def _write_faces(args) -> list[str]:
    """Save faces ``indices`` into ``images_dir``; returns their ``list_attr_celeba`` lines."""
    images_dir, seed, indices = args
    lines = []
    for i in indices:
        image, attrs = draw_demo_face(seed, i)
        name = f"{i + 1:06d}.jpg"
        image.save(images_dir / name, quality=_JPEG_QUALITY)
        lines.append(name + " " + " ".join(" 1" if attrs[a] else "-1" for a in ATTRIBUTE_NAMES))
    return lines


def write_demo_dataset(
    out_dir: str | os.PathLike, n: int = 3000, seed: int = 0, progress: bool = False
) -> Path:
    """Write ``n`` synthetic faces to ``out_dir`` in the official CelebA layout, with a
    ``demo_faces.json`` marker; returns ``out_dir``. Built in a temporary sibling and renamed
    into place; an existing ``out_dir`` is replaced only if it holds demo data."""
    from tqdm import tqdm

    if n < 1:
        raise ValueError(f"n={n!r}: the demo dataset needs at least 1 image")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / DEMO_MARKER).is_file():
        raise FileExistsError(
            f"out_dir={str(out)!r} exists and does not hold demo data (no {DEMO_MARKER}); "
            "choose an empty or new folder so nothing else is overwritten"
        )
    parallel = cpu_count() > 1 and n >= 400
    with folder_in_place(out) as tmp:
        (tmp / "img_align_celeba").mkdir()
        jobs = [(tmp / "img_align_celeba", seed, range(s, min(s + 100, n)))
                for s in range(0, n, 100)]
        lines = [str(n), " ".join(ATTRIBUTE_NAMES)]
        with (
            tqdm(total=n, desc="drawing demo faces", unit="img", disable=not progress) as bar,
            process_pool(2) if parallel else contextlib.nullcontext() as pool,
        ):
            for part in (pool.imap if parallel else map)(_write_faces, jobs):
                lines += part
                bar.update(len(part))
        (tmp / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        n_eval = round(0.1 * n)  # partition: 80% train, then 10% val, 10% test
        partition = np.repeat([0, 1, 2], [n - 2 * n_eval, n_eval, n_eval])
        (tmp / "list_eval_partition.txt").write_text(
            "".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(partition))
        )
        (tmp / "README.md").write_text(
            "# Synthetic demo faces (not CelebA)\n\n"
            f"Drawn by `resvae_keras.data.write_demo_dataset(n={n}, seed={seed})` in the official "
            "CelebA layout. Regenerate them any time; nothing here is real data.\n"
        )
        marker = {"generator": "resvae_keras.data.write_demo_dataset", "version": DEMO_VERSION,
                  "n": n, "seed": seed}
        (tmp / DEMO_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return out


def demo_marker(root: str | os.PathLike) -> dict | None:
    """The ``demo_faces.json`` contents of a demo dataset root, or ``None`` for real data."""
    path = Path(root) / DEMO_MARKER
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def detect_demo_eyeglasses(images, min_pixels: int = 20) -> np.ndarray:
    """Which cropped 64x64 demo faces wear glasses, bool (N,): at least ``min_pixels`` pixels
    of the eye band whose blue exceeds red and green by 0.12. Not for real photographs."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1:] != (64, 64, 3):
        raise ValueError(f"images shape {x.shape}: expected (N, 64, 64, 3) cropped demo faces")
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    band = x[:, 22:42, 14:50, :]  # the eye band: it holds the glasses frames in every pose
    blue_margin = band[..., 2] - np.maximum(band[..., 0], band[..., 1])
    return (blue_margin > 0.12).sum(axis=(1, 2)) >= min_pixels
