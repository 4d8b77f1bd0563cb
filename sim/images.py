"""Input frames for the benches: built-in test images, random images, or a user's file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DupnetError

__all__ = ["builtin_images", "random_images", "test_patterns", "load_image_file"]


def test_patterns(cfg, n: int) -> np.ndarray:
    """Deterministic corner cases: all 0, all 255, a diagonal ramp, a checkerboard, ..."""
    h, w, c = cfg.input_height, cfg.input_width, cfg.input_channels
    y, x = np.mgrid[:h, :w]
    pats = [np.zeros((h, w)), np.full((h, w), 255), (y * 37 + x * 11) % 256,
            ((y + x) % 2) * 255, (x * 255) // max(1, w - 1)]
    out = []
    for i in range(n):
        p = np.repeat(pats[i % len(pats)][..., None], c, axis=-1).astype(np.int64)
        if c > 1:
            p = (p + np.arange(c) * 85) % 256     # channels differ
        out.append(p)
    return np.stack(out)


def builtin_images(cfg, n: int) -> np.ndarray:
    """``n`` images of the built-in test set at the config's size (LFW composites), or test
    patterns where the built-in set cannot be rendered (maps under 16x16, C not 1 or 3)."""
    h, w, c = cfg.input_height, cfg.input_width, cfg.input_channels
    if h < 16 or w < 16 or c not in (1, 3):
        return test_patterns(cfg, n)
    from dupnet.sw.datasets import builtin_dataset
    ds = builtin_dataset("test", n=n, size=(h, w), channels=c)
    return np.stack([ds[i].image for i in range(n)]).astype(np.int64)


def random_images(cfg, n: int, seed: int = 0) -> np.ndarray:
    """``n`` uniform random uint8 images (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << cfg.input_bits,
                        size=(n, cfg.input_height, cfg.input_width, cfg.input_channels))


def load_image_file(path: str | Path, cfg) -> np.ndarray:
    """One frame ``[H, W, C]`` from a ``.npy`` array or an image file (PNG, JPEG, ...).

    The image must already have the network's size: a clear error names both sizes.
    """
    p = Path(path)
    if not p.is_file():
        raise DupnetError(f"{p}: image file not found")
    want = (cfg.input_height, cfg.input_width, cfg.input_channels)
    if p.suffix == ".npy":
        try:
            a = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DupnetError(f"{p}: not a readable .npy array ({e})") from None
        if a.ndim == 2:
            a = a[..., None]
    else:
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("L" if cfg.input_channels == 1 else "RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise DupnetError(f"{p}: not a readable image ({e})") from None
        if a.ndim == 2:
            a = a[..., None]
        if cfg.input_channels not in (1, 3):
            raise DupnetError(f"{p}: the network {cfg.name!r} takes {cfg.input_channels} "
                              f"channels; give a .npy array of shape {want}")
    if a.shape != want:
        raise DupnetError(f"{p}: image is {'x'.join(map(str, a.shape))} (H x W x C), the "
                          f"network {cfg.name!r} takes {want[0]}x{want[1]}x{want[2]}")
    if not np.issubdtype(a.dtype, np.integer) or a.min(initial=0) < 0 \
            or a.max(initial=0) >= (1 << cfg.input_bits):
        raise DupnetError(f"{p}: values must be integers in [0, {(1 << cfg.input_bits) - 1}]")
    return a.astype(np.int64)
