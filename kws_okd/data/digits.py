"""The embedded image default: scikit-learn's handwritten digits rendered into
synthesised visual domains (a small-scale take on OKD's scalable shift generator).

Each domain is one dominant visual shift applied to its own, disjoint share of the
1 797 8x8 digits, so no digit instance is seen in two domains (a held-out domain
tests unseen styles on unseen instances, as PACS / OfficeHome do). The output is
PNGs in the domain-folder layout ``root/<domain>/<class>/<id>.png`` read by
:mod:`kws_okd.data.images`, plus ``root/_previews/<domain>.png`` grids and
``root/settings.json``. Deterministic for a seed; rebuilt only when the settings
change; built in ``<root>.partial`` and renamed so a crash never leaves half a set.
"""
from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from kws_okd.errors import ConfigError, DataError
from kws_okd.utils.atomic import write_json

FORMAT = "kws-okd-digits/1"  # bump when a renderer changes so old caches are rebuilt
CLASSES = [str(d) for d in range(10)]


def _sample_data_dir() -> Path:
    import matplotlib
    return Path(matplotlib.get_data_path()) / "sample_data"


def _texture_bank(size: int) -> list[np.ndarray]:
    """Photographs bundled with matplotlib, used as MNIST-M-style backgrounds."""
    images = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        path = _sample_data_dir() / name
        if path.exists():
            img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            if min(img.shape[:2]) >= 2 * size:
                images.append(img)
    if not images:
        raise DataError(f"{_sample_data_dir()}: no sample photographs found for the "
                        f"'mnistm' domain's backgrounds (is matplotlib's mpl-data installed?)")
    return images


# -- renderers: each maps one 8x8 digit (float in [0, 1]) to an (S, S, 3) float image ---------

def _upsample(digit: np.ndarray, size: int, inner: float = 0.8) -> np.ndarray:
    """Bicubic upsampling onto a centred square of ``inner`` of the canvas, like MNIST's
    padding, so geometric domains have room to move the digit."""
    side = max(4, int(round(size * inner)))
    img = Image.fromarray((digit * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
    canvas = np.zeros((size, size), dtype=np.float32)
    off = (size - side) // 2
    canvas[off:off + side, off:off + side] = np.asarray(img, dtype=np.float32) / 255.0
    return canvas


def _grey(canvas: np.ndarray) -> np.ndarray:
    return np.repeat(canvas[..., None], 3, axis=2)


def render_clean(digit, size, rng, ctx):
    return _grey(_upsample(digit, size))


def render_mnistm(digit, size, rng, ctx):
    """Digit blended into a random crop of a photograph: absolute difference, so the
    stroke takes the inverse colour of the background (the MNIST-M recipe), then a
    random colour cast."""
    bank = ctx["textures"]
    photo = bank[rng.integers(len(bank))]
    h, w = photo.shape[:2]
    crop = int(rng.integers(size, min(h, w) // 2 + 1))
    y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    patch = Image.fromarray((photo[y:y + crop, x:x + crop] * 255).astype(np.uint8))
    bg = np.asarray(patch.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        bg = bg[:, ::-1]
    bg = bg * rng.uniform(0.6, 1.2, size=3)[None, None, :]
    stroke = _upsample(digit, size)[..., None]
    return np.clip(np.abs(bg - stroke), 0, 1)


def render_thick(digit, size, rng, ctx):
    """Heavier strokes (grey dilation) under an elastic deformation field."""
    canvas = _upsample(digit, size)
    k = int(rng.integers(2, 4))
    canvas = ndimage.grey_dilation(canvas, size=(k, k))
    sigma = size * 0.12
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (size, size)), sigma)
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (size, size)), sigma)
    # A smoothed noise field's amplitude shrinks with sigma; rescaling by its own peak
    # keeps the largest displacement at ``amp`` pixels whatever the image size.
    amp = size * rng.uniform(0.05, 0.1)
    peak = max(np.abs(dy).max(), np.abs(dx).max(), 1e-6)
    dy, dx = dy / peak * amp, dx / peak * amp
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    warped = ndimage.map_coordinates(canvas, [yy + dy, xx + dx], order=1, mode="constant")
    return _grey(np.clip(warped, 0, 1))


def render_inverted(digit, size, rng, ctx):
    """Dark strokes on a light background at a random, reduced contrast."""
    canvas = 1.0 - _upsample(digit, size)
    lo = rng.uniform(0.0, 0.35)
    hi = rng.uniform(0.65, 1.0)
    return _grey(lo + (hi - lo) * canvas)


def render_degraded(digit, size, rng, ctx):
    """Blur, sensor noise and heavy JPEG compression."""
    canvas = _upsample(digit, size)
    img = Image.fromarray((canvas * 255).astype(np.uint8)).convert("RGB")
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.8, 1.6))))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr + rng.normal(0, rng.uniform(0.08, 0.2), size=arr.shape)
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(8, 25)))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def render_jitter(digit, size, rng, ctx):
    """Random rotation, scale, shear and translation."""
    canvas = _upsample(digit, size)
    angle = np.deg2rad(rng.uniform(-35, 35))
    scale = rng.uniform(0.7, 1.15)
    shear = rng.uniform(-0.3, 0.3)
    shift = rng.uniform(-0.12, 0.12, size=2) * size
    c, s = np.cos(angle), np.sin(angle)
    # Inverse map (output -> input) about the image centre, as ndimage.affine_transform wants.
    fwd = scale * np.array([[c, -s + shear], [s, c]])
    inv = np.linalg.inv(fwd)
    centre = np.array([size / 2 - 0.5] * 2)
    offset = centre - inv @ (centre + shift)
    out = ndimage.affine_transform(canvas, inv, offset=offset, order=1, mode="constant")
    return _grey(np.clip(out, 0, 1))


RENDERERS = {"clean": render_clean, "mnistm": render_mnistm, "thick": render_thick,
             "inverted": render_inverted, "degraded": render_degraded, "jitter": render_jitter}


@dataclass
class DigitsSpec:
    seed: int = 0
    image_size: int = 32
    domains: tuple = ("clean", "mnistm", "thick", "inverted", "degraded", "jitter")
    # Digits per domain (disjoint across domains); None = an equal share of all 1 797.
    per_domain: int | None = None
    format: str = field(default=FORMAT)

    def check(self):
        unknown = [d for d in self.domains if d not in RENDERERS]
        if unknown:
            raise ConfigError(f"data.domains: unknown digit domain(s) {unknown}; known: {sorted(RENDERERS)}")
        if len(set(self.domains)) != len(self.domains) or len(self.domains) < 2:
            raise ConfigError(f"data.domains: need at least two distinct domains, got {list(self.domains)}")
        if not 8 <= int(self.image_size) <= 256:
            raise ConfigError(f"data.image_size: must be in [8, 256], got {self.image_size}")

    def settings(self) -> dict:
        d = asdict(self)
        d["domains"] = list(self.domains)
        return d


def _preview(images: list[np.ndarray], path: Path, cols: int = 8):
    rows = (len(images) + cols - 1) // cols
    s = images[0].shape[0]
    grid = np.ones((rows * (s + 2), cols * (s + 2), 3), dtype=np.uint8) * 255
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (s + 2) + 1:r * (s + 2) + 1 + s, c * (s + 2) + 1:c * (s + 2) + 1 + s] = img
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def build_digits(root, spec: DigitsSpec | None = None, progress: bool = False) -> Path:
    """Render the domains into ``root`` unless ``root/settings.json`` already matches."""
    from sklearn.datasets import load_digits
    spec = spec or DigitsSpec()
    spec.check()
    root = Path(root)
    marker = root / "settings.json"
    if marker.exists() and json.loads(marker.read_text()) == spec.settings():
        return root

    digits = load_digits()
    images, targets = digits.images / 16.0, digits.target
    n_dom = len(spec.domains)
    share = len(images) // n_dom
    per = share if spec.per_domain is None else int(spec.per_domain)
    if not 1 <= per <= share:
        raise ConfigError(f"data.per_domain: must be in [1, {share}] for {n_dom} disjoint "
                          f"domains of the 1 797 digits, got {spec.per_domain}")
    # One shuffle of the instances, cut into disjoint shares: deterministic for a seed.
    order = np.random.default_rng(spec.seed).permutation(len(images))
    ctx = {"textures": _texture_bank(spec.image_size)} if "mnistm" in spec.domains else {}

    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "_previews").mkdir(parents=True)
    for di, domain in enumerate(spec.domains):
        rng = np.random.default_rng([spec.seed, di, 7])
        picked = order[di * share: di * share + per]
        for c in CLASSES:
            (partial / domain / c).mkdir(parents=True)
        shown = []
        for idx in picked:
            img = RENDERERS[domain](images[idx], spec.image_size, rng, ctx)
            arr = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            Image.fromarray(arr).save(partial / domain / str(targets[idx]) / f"{domain}_{idx:04d}.png")
            if len(shown) < 64:
                shown.append(arr)
        _preview(shown, partial / "_previews" / f"{domain}.png")
        if progress:
            print(f"digits: rendered {len(picked)} images of domain {domain!r}")
    write_json(partial / "settings.json", spec.settings())
    if root.exists():  # stale settings: move aside first so the swap is a single rename
        old = root.with_name(root.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        root.rename(old)
        partial.rename(root)
        shutil.rmtree(old)
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(root)
    return root
