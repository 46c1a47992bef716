"""Embedded glyphs: procedurally generated 32x32 RGB shape images, deterministic, built in seconds.

The embedded digits are real but tiny (900 8x8 scans per task): a sanity check that cannot tell
one ViT shape from another. The glyphs follow the paper's protocol at a scale that can: an
upstream classification task of 24 shape classes (24,000 training and 4,800 test images) and a
few-shot task of 12 other classes (a pool of 1,200 and a test split of 2,400).

A class is a structure, never a colour. Upstream classes are single shapes (filled and outlined
polygons, stars, a disk, a ring, an arc, a crescent, a plus, striped and checkered disks,
spokes, L, T and V strokes, a bullseye, a double ring, a half disk); few-shot classes are new
compositions of the same vocabulary (a triangle in a ring, a holed square, two disks, a plus
outline, an arrow, a striped square, a wheel, three dots, a comb, a crossed box, a moon and dot,
an H), so that upstream features transfer, as ImageNet-21k features transfer to the paper's
few-shot datasets. No few-shot class matches an upstream one at any rotation.

Each image draws, independently of its class (`Variation` holds the ranges): the glyph's
position, size (radius 8-14 pixels), rotation (any angle), aspect (0.9-1.1) and stroke width;
a glyph colour and a background colour, uniform in RGB but at least 0.3 apart in luma, the
background with a gentle linear gradient; up to 3 background strokes or blobs of random
colours; in one image of 5, a stroke drawn over the glyph; and pixel noise (std 0.01-0.06).
Shapes are signed distance fields evaluated on the pixel grid and anti-aliased to one pixel,
rendered in batches with numpy (the 24,000 training images take about 2-3 CPU seconds).

Examples are generated in blocks of `BLOCK_SIZE` with one seed per (seed, task, split, block), so
any slice of a split is reproducible on its own; `split_arrays` keeps whole splits in memory once
built. Labels cycle through the classes (example i has class i mod C), so every split is exactly
balanced.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable

import numpy as np

UPSTREAM, FEWSHOT = 'embedded_glyphs_v1', 'embedded_glyphs_fewshot_v1'
IMAGE_SIZE = 32
BLOCK_SIZE = 1000
SEED = 0
SPLIT_SIZES = {
  UPSTREAM: {'train': 24_000, 'test': 4_800},
  FEWSHOT: {'train': 1_200, 'test': 2_400},
}

Array = np.ndarray
# A glyph's signed distance (negative inside) in its own frame, where the glyph spans about the
# unit disk: (u, v, half stroke width) -> distance, arrays [n, H, W] (width [n, 1, 1]).
Distance = Callable[[Array, Array, Array], Array]

# ---------------------------------------------------------------------------------------------
# Signed distances (numpy, broadcasting; lengths in glyph units).


def _length(u: Array, v: Array) -> Array:
  return np.sqrt(u * u + v * v)


def _circle(u: Array, v: Array, radius: float, cu: float = 0.0, cv: float = 0.0) -> Array:
  return _length(u - cu, v - cv) - radius


def _star(u: Array, v: Array, points: int, inner: float, radius: float = 1.0) -> Array:
  """A star with `points` tips at `radius` and inner corners at `inner * radius`; an inner
  ratio of cos(pi / points) makes the regular polygon."""
  sector = 2 * np.pi / points
  rho = _length(u, v) / radius
  angle = np.abs(np.mod(np.arctan2(v, u) + sector / 2, sector) - sector / 2)
  pu, pv = rho * np.cos(angle) - 1.0, rho * np.sin(angle)
  eu, ev = inner * np.cos(sector / 2) - 1.0, inner * np.sin(sector / 2)
  t = np.clip((pu * eu + pv * ev) / (eu * eu + ev * ev), 0.0, 1.0)
  distance = _length(pu - t * eu, pv - t * ev) * radius
  return np.where(eu * pv - ev * pu > 0, -distance, distance)


def _polygon(u: Array, v: Array, sides: int, radius: float = 1.0) -> Array:
  return _star(u, v, sides, np.cos(np.pi / sides), radius)


def _segment(u: Array, v: Array, a: tuple[float, float], b: tuple[float, float],
             half_width: Array) -> Array:
  pu, pv = u - a[0], v - a[1]
  eu, ev = b[0] - a[0], b[1] - a[1]
  t = np.clip((pu * eu + pv * ev) / (eu * eu + ev * ev), 0.0, 1.0)
  return _length(pu - t * eu, pv - t * ev) - half_width


def _strokes(u: Array, v: Array, points: list[tuple[float, float]], half_width: Array,
             pairs: list[tuple[int, int]]) -> Array:
  return functools.reduce(np.minimum, [_segment(u, v, points[i], points[j], half_width)
                                       for i, j in pairs])


def _spokes(u: Array, v: Array, count: int, length: float, half_width: Array) -> Array:
  ends = [(length * np.cos(a), length * np.sin(a))
          for a in np.pi / 2 + 2 * np.pi * np.arange(count) / count]
  return functools.reduce(np.minimum, [_segment(u, v, (0.0, 0.0), e, half_width) for e in ends])


def _box(u: Array, v: Array, half_u: float, half_v: float) -> Array:
  qu, qv = np.abs(u) - half_u, np.abs(v) - half_v
  return _length(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)


def _arc(u: Array, v: Array, radius: float, span: float, half_width: Array) -> Array:
  """A circular arc of `span` radians centred on the +u axis."""
  v = np.abs(v)
  end_u, end_v = radius * np.cos(span / 2), radius * np.sin(span / 2)
  on_arc = np.arctan2(v, u) <= span / 2
  return np.where(on_arc, np.abs(_length(u, v) - radius), _length(u - end_u, v - end_v)) - (
    half_width)


def _stripes(u: Array, frequency: float) -> Array:
  """Negative on alternate bands across u (`frequency` periods per glyph unit)."""
  return (np.abs(np.mod(u * frequency, 1.0) - 0.5) - 0.25) / frequency


def _checker(u: Array, v: Array, frequency: float) -> Array:
  su, sv = _stripes(u, frequency), _stripes(v, frequency)
  return np.where(su * sv > 0, -1.0, 1.0) * np.minimum(np.abs(su), np.abs(sv))


def _outline(distance: Array, half_width: Array) -> Array:
  return np.abs(distance) - half_width


def _plus(u: Array, v: Array, arm: float = 0.3) -> Array:
  return np.minimum(_box(u, v, 1.0, arm), _box(u, v, arm, 1.0))


def _crescent(u: Array, v: Array) -> Array:
  return np.maximum(_circle(u, v, 1.0), -_circle(u, v, 0.85, cu=0.5))


# ---------------------------------------------------------------------------------------------
# The classes.


@dataclasses.dataclass(frozen=True)
class Glyph:
  """One class: a name and its signed distance in the glyph frame."""

  name: str
  distance: Distance


_C3, _C4, _C6 = np.cos(np.pi / 3), np.cos(np.pi / 4), np.cos(np.pi / 6)

UPSTREAM_GLYPHS = (
  Glyph('triangle', lambda u, v, w: _polygon(u, v, 3)),
  Glyph('square', lambda u, v, w: _polygon(u, v, 4)),
  Glyph('pentagon', lambda u, v, w: _polygon(u, v, 5)),
  Glyph('hexagon', lambda u, v, w: _polygon(u, v, 6)),
  Glyph('disk', lambda u, v, w: _circle(u, v, 0.9)),
  Glyph('triangle_outline', lambda u, v, w: _outline(_polygon(u, v, 3), w)),
  Glyph('square_outline', lambda u, v, w: _outline(_polygon(u, v, 4), w)),
  Glyph('pentagon_outline', lambda u, v, w: _outline(_polygon(u, v, 5), w)),
  Glyph('ring', lambda u, v, w: _outline(_circle(u, v, 0.85), w)),
  Glyph('star4', lambda u, v, w: _star(u, v, 4, 0.4)),
  Glyph('star5', lambda u, v, w: _star(u, v, 5, 0.45)),
  Glyph('plus', lambda u, v, w: _plus(u, v)),
  Glyph('crescent', lambda u, v, w: _crescent(u, v)),
  Glyph('arc', lambda u, v, w: _arc(u, v, 0.8, 1.5 * np.pi, w)),
  Glyph('striped_disk', lambda u, v, w: np.maximum(_circle(u, v, 0.95), _stripes(u, 2.0))),
  Glyph('checker_disk', lambda u, v, w: np.maximum(_circle(u, v, 0.95), _checker(u, v, 1.5))),
  Glyph('three_spokes', lambda u, v, w: _spokes(u, v, 3, 0.95, 1.3 * w)),
  Glyph('six_spokes', lambda u, v, w: _spokes(u, v, 6, 0.95, w)),
  Glyph('ell', lambda u, v, w: _strokes(u, v, [(-0.5, 0.9), (-0.5, -0.8), (0.6, -0.8)],
                                       1.3 * w, [(0, 1), (1, 2)])),
  Glyph('tee', lambda u, v, w: _strokes(u, v, [(-0.8, 0.7), (0.8, 0.7), (0.0, 0.7), (0.0, -0.9)],
                                       1.3 * w, [(0, 1), (2, 3)])),
  Glyph('chevron', lambda u, v, w: _strokes(u, v, [(-0.7, 0.7), (0.0, -0.6), (0.7, 0.7)],
                                           1.3 * w, [(0, 1), (1, 2)])),
  Glyph('bullseye', lambda u, v, w: np.minimum(_outline(_circle(u, v, 0.85), w),
                                               _circle(u, v, 0.3))),
  Glyph('double_ring', lambda u, v, w: np.minimum(_outline(_circle(u, v, 0.9), w),
                                                  _outline(_circle(u, v, 0.5), w))),
  Glyph('half_disk', lambda u, v, w: np.maximum(_circle(u, v + 0.4, 1.0), -(v + 0.4))),
)

FEWSHOT_GLYPHS = (
  Glyph('triangle_in_ring', lambda u, v, w: np.minimum(_outline(_circle(u, v, 0.95), w),
                                                       _polygon(u, v, 3, 0.6))),
  Glyph('holed_square', lambda u, v, w: np.maximum(_polygon(u, v, 4), -_circle(u, v, 0.4))),
  Glyph('two_disks', lambda u, v, w: np.minimum(_circle(u, v, 0.42, cu=-0.5),
                                                _circle(u, v, 0.42, cu=0.5))),
  Glyph('plus_outline', lambda u, v, w: _outline(_plus(u, v, 0.33), w)),
  Glyph('arrow', lambda u, v, w: _strokes(u, v, [(-0.9, 0), (0.9, 0), (0.35, 0.55), (0.35, -0.55)],
                                         1.3 * w, [(0, 1), (1, 2), (1, 3)])),
  Glyph('striped_square', lambda u, v, w: np.maximum(_box(u, v, 0.75, 0.75), _stripes(u, 2.0))),
  Glyph('wheel', lambda u, v, w: np.minimum(_outline(_circle(u, v, 0.9), w),
                                            _spokes(u, v, 4, 0.9, w))),
  Glyph('three_dots', lambda u, v, w: functools.reduce(np.minimum, [
    _circle(u, v, 0.28, 0.62 * np.cos(a), 0.62 * np.sin(a))
    for a in np.pi / 2 + 2 * np.pi * np.arange(3) / 3])),
  Glyph('comb', lambda u, v, w: _strokes(
    u, v, [(-0.6, 0.8), (-0.6, -0.8), (0.6, 0.8), (0.5, 0.0), (0.6, -0.8), (-0.6, 0.0)],
    1.3 * w, [(0, 1), (0, 2), (5, 3), (1, 4)])),
  Glyph('crossed_box', lambda u, v, w: np.minimum(
    _outline(_box(u, v, 0.72, 0.72), w),
    _strokes(u, v, [(-0.72, -0.72), (0.72, 0.72), (-0.72, 0.72), (0.72, -0.72)], w,
             [(0, 1), (2, 3)]))),
  Glyph('moon_and_dot', lambda u, v, w: np.minimum(_crescent(u, v), _circle(u, v, 0.2, cu=0.6))),
  Glyph('aitch', lambda u, v, w: _strokes(
    u, v, [(-0.6, 0.8), (-0.6, -0.8), (0.6, 0.8), (0.6, -0.8), (-0.6, 0.0), (0.6, 0.0)],
    1.3 * w, [(0, 1), (2, 3), (4, 5)])),
)

GLYPHS = {UPSTREAM: UPSTREAM_GLYPHS, FEWSHOT: FEWSHOT_GLYPHS}


def class_names(task: str) -> tuple[str, ...]:
  """The class names of a glyph task, in label order."""
  return tuple(g.name for g in _glyphs(task))


def _glyphs(task: str) -> tuple[Glyph, ...]:
  if task not in GLYPHS:
    raise ValueError(f'unknown glyph task {task!r}; valid: {", ".join(GLYPHS)}')
  return GLYPHS[task]


# ---------------------------------------------------------------------------------------------
# Rendering.


@dataclasses.dataclass(frozen=True)
class Variation:
  """How much the nuisance factors vary; every range is sampled uniformly per image."""

  radius: tuple[float, float] = (0.5, 0.85)  # glyph radius, in half image widths
  stretch: tuple[float, float] = (0.9, 1.1)  # aspect ratio of the glyph frame
  half_width: tuple[float, float] = (0.1, 0.15)  # half stroke width, glyph units
  min_contrast: float = 0.3  # luma difference (0-1) of glyph and background colours
  gradient: float = 0.1  # std of the background's change from edge to edge, per channel
  clutter: tuple[int, int] = (0, 3)  # background strokes and blobs per image
  clutter_length: tuple[float, float] = (0.0, 0.5)  # in half image widths
  clutter_width: tuple[float, float] = (0.03, 0.08)  # half widths, in half image widths
  occluder_probability: float = 0.2  # a stroke drawn over the glyph
  occluder_length: tuple[float, float] = (0.6, 1.6)  # in half image widths
  noise: tuple[float, float] = (0.01, 0.06)  # pixel noise standard deviation (0-1 scale)


VARIATION = Variation()


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> Array:
  return rng.uniform(*bounds, n).astype(np.float32)


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _colour_pairs(rng: np.random.Generator, n: int, min_contrast: float) -> tuple[Array, Array]:
  """Glyph and background colours [n, 3], uniform in RGB among the pairs whose luma differs by
  at least `min_contrast` (so the shape shows in grey levels too, whatever the hues)."""
  tries = 64
  fg = rng.uniform(0, 1, (tries, n, 3)).astype(np.float32)
  bg = rng.uniform(0, 1, (tries, n, 3)).astype(np.float32)
  ok = np.abs((fg - bg) @ _LUMA) >= min_contrast
  first = np.argmax(ok, axis=0)
  fg, bg = fg[first, np.arange(n)], bg[first, np.arange(n)]
  # No pair passed (about 1e-9 per image at 0.3): black or white, whichever is further.
  none = ~ok.any(axis=0)
  fg[none] = np.where(bg[none] @ _LUMA > 0.5, 0.0, 1.0)[:, None]
  return fg, bg


def _paint(canvas: Array, alpha: Array, colour: Array, rows: Array | None = None) -> None:
  """Paints colour [n, 3] with coverage alpha [m, H, W] over canvas [3, n, H, W] in place (on
  `rows` only when given, m = len(rows))."""
  for c in range(3):
    plane = canvas[c] if rows is None else canvas[c, rows]
    tint = colour[:, c] if rows is None else colour[rows, c]
    plane += alpha * (tint[:, None, None] - plane)
    if rows is not None:
      canvas[c, rows] = plane


def _random_capsules(rng: np.random.Generator, n: int, length: tuple[float, float],
                   width: tuple[float, float]) -> Array:
  """Parameters [n, 5] of one random capsule per image: centre u, v, angle, length, half width
  (a short capsule is a blob)."""
  centre = rng.uniform(-1, 1, (n, 2))
  angle = rng.uniform(0, np.pi, (n, 1))
  sizes = np.stack([rng.uniform(*length, n), rng.uniform(*width, n)], axis=1)
  return np.concatenate([centre, angle, sizes], axis=1).astype(np.float32)


def _stroke_coverage(x: Array, y: Array, strokes: Array, pixels: float) -> Array:
  """Anti-aliased coverage [m, H, W] of capsules [m, 5] (from `_random_capsules`)."""
  cu, cv, angle, length, half_width = (strokes[:, i, None, None] for i in range(5))
  du, dv = length / 2 * np.cos(angle), length / 2 * np.sin(angle)
  pu, pv = x - (cu - du), y - (cv - dv)
  t = np.clip((pu * du + pv * dv) / (2 * (du * du + dv * dv) + 1e-9), 0, 1)
  distance = _length(pu - 2 * t * du, pv - 2 * t * dv) - half_width
  return np.clip(0.5 - distance * pixels, 0, 1)


def render(task: str, labels: Array, rng: np.random.Generator, image_size: int = IMAGE_SIZE,
           variation: Variation = VARIATION) -> Array:
  """uint8 images [n, S, S, 3] of the classes `labels` of `task`, every nuisance drawn from rng.

  Draws happen in a fixed order that does not depend on the labels' values, so the same rng
  state and labels always give the same bytes.
  """
  glyphs = _glyphs(task)
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= len(glyphs)):
    raise ValueError(f'labels of {task} must be in [0, {len(glyphs)}) (class_names lists '
                     f'them), got {labels.min()}..{labels.max()}')
  n, var = len(labels), variation
  pixels = image_size / 2  # pixels per half image width
  grid = ((np.arange(image_size, dtype=np.float32) + 0.5) / pixels - 1.0)
  x, y = grid[None, None, :], grid[None, :, None]
  col = lambda a: a[:, None, None]  # noqa: E731  ([n] -> [n, 1, 1])

  # Background: a colour with a gentle linear gradient; channels first while painting.
  fg, bg = _colour_pairs(rng, n, var.min_contrast)
  slope = rng.normal(0, var.gradient, (2, 3, n)).astype(np.float32)
  canvas = (bg.T[:, :, None, None] + slope[0, :, :, None, None] * x / 2
            + slope[1, :, :, None, None] * y / 2)

  count = rng.integers(var.clutter[0], var.clutter[1] + 1, n)
  for slot in range(var.clutter[1]):
    colour = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    strokes = _random_capsules(rng, n, var.clutter_length, var.clutter_width)
    opacity = rng.uniform(0.5, 1.0, n).astype(np.float32)
    rows = np.flatnonzero(slot < count)
    alpha = _stroke_coverage(x, y, strokes[rows], pixels) * col(opacity[rows])
    _paint(canvas, alpha, colour, rows)

  radius = _uniform(rng, var.radius, n)
  margin = 1.0 - 0.85 * radius
  cu = rng.uniform(-1, 1, n).astype(np.float32) * margin
  cv = rng.uniform(-1, 1, n).astype(np.float32) * margin
  angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
  stretch = _uniform(rng, var.stretch, n)
  half_width = _uniform(rng, var.half_width, n)
  du, dv = x - col(cu), y - col(cv)
  cos, sin = col(np.cos(angle)), col(np.sin(angle))
  u = (cos * du + sin * dv) / col(radius * stretch)
  v = (cos * dv - sin * du) * col(stretch / radius)
  distance = np.empty((n, image_size, image_size), np.float32)
  for label, glyph in enumerate(glyphs):
    rows = np.flatnonzero(labels == label)
    if rows.size:
      distance[rows] = glyph.distance(u[rows], v[rows], col(half_width[rows]))
  _paint(canvas, np.clip(0.5 - distance * col(radius) * pixels, 0, 1), fg)

  occluded = rng.uniform(0, 1, n) < var.occluder_probability
  colour = rng.uniform(0, 1, (n, 3)).astype(np.float32)
  strokes = _random_capsules(rng, n, var.occluder_length, var.clutter_width)
  rows = np.flatnonzero(occluded)
  _paint(canvas, _stroke_coverage(x, y, strokes[rows], pixels), colour, rows)

  # Uniform pixel noise with std sigma (several times cheaper to draw than Gaussian).
  sigma = _uniform(rng, var.noise, n) * np.float32(2 * np.sqrt(3))
  canvas += (rng.random(canvas.shape, dtype=np.float32) - np.float32(0.5)) * col(sigma)
  np.clip(canvas, 0, 1, out=canvas)
  return np.round(canvas.transpose(1, 2, 3, 0) * 255).astype(np.uint8)


def silhouettes(task: str, size: int = 64, angles: int = 1, half_width: float = 0.12) -> Array:
  """Clean coverage masks [C, angles, size, size] in [0, 1] of every class of `task`, centred,
  filling 80% of the image, rotated by 2 pi k / angles: the shapes without any nuisance."""
  grid = (np.arange(size, dtype=np.float32) + 0.5) / (size / 2) - 1.0
  turn = 2 * np.pi * np.arange(angles, dtype=np.float32)[:, None, None] / angles
  x, y = grid[None, None, :] / 0.8, grid[None, :, None] / 0.8
  u, v = np.cos(turn) * x + np.sin(turn) * y, np.cos(turn) * y - np.sin(turn) * x
  width = np.full((angles, 1, 1), half_width, np.float32)
  return np.stack([np.clip(0.5 - g.distance(u, v, width) * 0.8 * size / 2, 0, 1)
                   for g in _glyphs(task)])


# ---------------------------------------------------------------------------------------------
# Splits.


def split_size(task: str, split: str) -> int:
  """Number of examples in a split of a glyph task."""
  _glyphs(task)
  if split not in SPLIT_SIZES[task]:
    raise ValueError(f'unknown split {split!r} for {task}; valid splits: '
                     f'{", ".join(SPLIT_SIZES[task])}')
  return SPLIT_SIZES[task][split]


def labels_of(task: str, split: str, start: int = 0, stop: int | None = None) -> Array:
  """int64 labels of examples [start, stop) of a split: example i has class i mod C."""
  stop = split_size(task, split) if stop is None else stop
  return np.arange(start, stop, dtype=np.int64) % len(_glyphs(task))


def _block(task: str, split: str, block: int, seed: int, image_size: int) -> Array:
  size = split_size(task, split)
  start, stop = block * BLOCK_SIZE, min((block + 1) * BLOCK_SIZE, size)
  key = zlib.crc32(f'{task}/{split}'.encode())
  rng = np.random.default_rng(np.random.SeedSequence([seed, key, block]))
  return render(task, labels_of(task, split, start, stop), rng, image_size)


def generate(task: str, split: str, start: int = 0, stop: int | None = None, seed: int = SEED,
             image_size: int = IMAGE_SIZE) -> tuple[Array, Array]:
  """uint8 images [n, S, S, 3] and int64 labels of examples [start, stop) of a split.

  Only the blocks that cover the slice are rendered; a slice equals the same rows of the whole
  split, whatever the slicing.
  """
  size = split_size(task, split)
  stop = size if stop is None else stop
  if not 0 <= start <= stop <= size:
    raise ValueError(f'slice [{start}, {stop}) is outside {task}/{split} of {size} examples; '
                     f'pick 0 <= start <= stop <= {size}')
  first, last = start // BLOCK_SIZE, -(-stop // BLOCK_SIZE)
  blocks = [_block(task, split, b, seed, image_size) for b in range(first, last)]
  images = (np.concatenate(blocks) if blocks
            else np.zeros((0, image_size, image_size, 3), np.uint8))
  offset = first * BLOCK_SIZE
  return images[start - offset:stop - offset], labels_of(task, split, start, stop)


@functools.lru_cache(maxsize=8)
def split_arrays(task: str, split: str) -> tuple[Array, Array]:
  """A whole split (default seed and size), built once per process and kept read-only."""
  images, labels = generate(task, split)
  images.flags.writeable = False
  labels.flags.writeable = False
  return images, labels
