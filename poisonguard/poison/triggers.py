"""Image backdoor triggers: pure functions from a batch of images to triggered copies.

Every function takes images of shape ``(N, C, H, W)``, dtype ``uint8`` (values ``0..255``) or a
float dtype (values in ``0..value_max``), and returns a new array of the same shape and dtype; the
input is never modified. ``uint8`` results are rounded and clipped to ``0..255``; float results
are clipped to ``0..value_max``.

``value_max`` is the brightest value of the image range: 255 for ``uint8``, and for float images
``max(1.0, images.max())`` unless the caller passes it (see :func:`image_value_max`). Pass it
explicitly when the same trigger must be applied to two arrays whose maxima differ (a float
training set and its test set in ``0..255``), so both get the same absolute trigger.

Randomness comes only from the ``rng`` argument, never from global state: the same generator state
gives the same trigger. Each docstring cites the paper whose trigger it implements.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PATCH_PATTERNS",
    "PATCH_POSITIONS",
    "blend_trigger",
    "image_value_max",
    "patch_trigger",
    "sig_trigger",
    "wanet_trigger",
]

PATCH_POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "random")
PATCH_PATTERNS = ("white", "black", "checkerboard")

# Images per grid_sample call in wanet_trigger: bounds the float64 working copy.
_WARP_BATCH = 1024


def image_value_max(images: np.ndarray) -> float:
    """The brightest value of the images' range: 255 for ``uint8``, else ``max(1.0, max)``.

    Float images in ``0..1`` get 1.0 whatever their actual maximum, so a dark batch and a bright
    one get the same trigger; float images already in ``0..255`` get their maximum.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return 255.0
    return max(1.0, float(images.max(initial=0.0)))


def patch_trigger(
    images: np.ndarray,
    *,
    size: int = 3,
    position: str = "bottom-right",
    pattern: str = "white",
    rng: np.random.Generator | None = None,
    value_max: float | None = None,
) -> np.ndarray:
    """Stamp a square patch on every image (BadNets: Gu, Dolan-Gavitt & Garg, "BadNets:
    Identifying Vulnerabilities in the Machine Learning Model Supply Chain", 2017).

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W), uint8 or float
    size : int
        Side of the square patch, in pixels.
    position : {"bottom-right", "bottom-left", "top-right", "top-left", "random"}
        A fixed corner keeps a 1-pixel margin from the border: ``"bottom-right"`` covers rows and
        columns ``H-1-size .. H-2`` and ``W-1-size .. W-2``, ``"top-left"`` rows and columns
        ``1 .. size``. ``"random"`` draws each image's own top-left corner uniformly from ``rng``
        such that the patch lies fully inside the image (no margin).
    pattern : {"white", "black", "checkerboard"}
        ``"white"`` is ``value_max``, ``"black"`` is 0, ``"checkerboard"`` alternates 1-pixel
        cells with a white cell at the top left. The same pattern goes into every channel.
    rng : numpy.random.Generator, optional
        Needed only for ``position="random"``.
    value_max : float, optional
        See the module docstring.

    Returns
    -------
    ndarray, same shape and dtype as ``images``
    """
    images = _check_images(images)
    value_max = _value_max(images, value_max)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"patch size must be a positive integer; got {size!r}")
    size = int(size)
    if position not in PATCH_POSITIONS:
        raise ValueError(
            f"unknown patch position {position!r}; valid: {', '.join(PATCH_POSITIONS)}"
        )
    if pattern not in PATCH_PATTERNS:
        raise ValueError(f"unknown patch pattern {pattern!r}; valid: {', '.join(PATCH_PATTERNS)}")
    n, _, h, w = images.shape
    margin = 0 if position == "random" else 1
    if size + 2 * margin > min(h, w):
        raise ValueError(
            f"a {size}x{size} patch at {position!r} does not fit {h}x{w} images"
            + (" with a 1-pixel margin" if margin else "")
        )
    stamp = _patch_pattern(size, pattern, value_max).astype(images.dtype)
    out = images.copy()
    if position != "random":
        top = h - 1 - size if position.startswith("bottom") else 1
        left = w - 1 - size if position.endswith("right") else 1
        out[:, :, top : top + size, left : left + size] = stamp
        return out
    if rng is None:
        raise ValueError("patch position 'random' needs an rng")
    tops = rng.integers(0, h - size + 1, size=n)
    lefts = rng.integers(0, w - size + 1, size=n)
    offsets = np.arange(size)
    rows = (tops[:, None] + offsets)[:, :, None]  # (N, size, 1)
    cols = (lefts[:, None] + offsets)[:, None, :]  # (N, 1, size)
    # Advanced indices around the channel slice put their dimensions first: (N, size, size, C).
    out[np.arange(n)[:, None, None], :, rows, cols] = stamp[None, :, :, None]
    return out


def blend_trigger(
    images: np.ndarray,
    *,
    alpha: float = 0.15,
    rng: np.random.Generator,
    value_max: float | None = None,
) -> np.ndarray:
    """Blend every image with one random-noise image (Chen, Liu, Li, Lu & Song, "Targeted
    Backdoor Attacks on Deep Learning Systems Using Data Poisoning", 2017).

    ``out = (1 - alpha) * x + alpha * noise``, where ``noise`` has shape ``(C, H, W)``, is uniform
    in ``[0, value_max)``, is drawn once from ``rng`` and is shared by every image: the same
    generator state gives the same trigger.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W), uint8 or float
    alpha : float
        Blend ratio in ``(0, 1]``; small values (0.1-0.2) keep the noise hard to see.
    rng : numpy.random.Generator
        Draws the noise image (``C * H * W`` uniforms, nothing else).
    value_max : float, optional
        See the module docstring.

    Returns
    -------
    ndarray, same shape and dtype as ``images``
    """
    images = _check_images(images)
    value_max = _value_max(images, value_max)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"blend alpha must be in (0, 1]; got {alpha!r}")
    noise = rng.random(images.shape[1:]) * value_max
    blended = (1.0 - alpha) * images.astype(np.float64) + alpha * noise
    return _finish(blended, images.dtype, value_max)


def sig_trigger(
    images: np.ndarray,
    *,
    delta: float = 20.0,
    frequency: int = 6,
    value_max: float | None = None,
) -> np.ndarray:
    """Add a horizontal sinusoid to every image (SIG: Barni, Kallas & Tondi, "A New Backdoor
    Attack in CNNs by Training Set Corruption Without Label Poisoning", ICIP 2019).

    ``out[..., i, j] = clip(x[..., i, j] + delta' * sin(2 * pi * j * frequency / W))`` in every
    channel and row, with ``delta' = delta * value_max / 255``: ``delta`` is in ``0..255`` units
    (20 is the training amplitude of the paper's MNIST experiments), scaled to the image range.

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W), uint8 or float
    delta : float
        Amplitude, in ``0..255`` units.
    frequency : int
        Periods across the image width; below ``W / 2`` (at ``W / 2`` the sinusoid vanishes on
        the pixel grid, above it aliases).
    value_max : float, optional
        See the module docstring.

    Returns
    -------
    ndarray, same shape and dtype as ``images``
    """
    images = _check_images(images)
    value_max = _value_max(images, value_max)
    if not np.isfinite(delta) or delta <= 0:
        raise ValueError(f"SIG delta must be a positive number; got {delta!r}")
    if isinstance(frequency, bool) or not isinstance(frequency, int | np.integer) or frequency < 1:
        raise ValueError(f"SIG frequency must be a positive integer; got {frequency!r}")
    width = images.shape[3]
    if 2 * frequency >= width:
        # At 2 * frequency == width the sinusoid is zero on every column; above it aliases.
        raise ValueError(
            f"SIG frequency {frequency} needs images more than {2 * frequency} columns wide "
            f"(below the Nyquist limit); got width {width}"
        )
    columns = np.arange(width, dtype=np.float64)
    signal = delta * value_max / 255.0 * np.sin(2.0 * np.pi * columns * frequency / width)
    return _finish(images.astype(np.float64) + signal, images.dtype, value_max)


def wanet_trigger(
    images: np.ndarray,
    *,
    grid_size: int = 4,
    strength: float = 0.5,
    rng: np.random.Generator,
    noise_rng: np.random.Generator | None = None,
    value_max: float | None = None,
) -> np.ndarray:
    """Warp every image with one smooth random field (WaNet: Nguyen & Tran, "WaNet -
    Imperceptible Warping-based Backdoor Attack", ICLR 2021).

    As in the paper's code: a field of shape ``(2, grid_size, grid_size)``, uniform in ``[-1, 1]``
    from ``rng``, is divided by its mean absolute value and upsampled to ``(H, W)`` (bicubic,
    ``align_corners=True``); the sampling grid is the identity grid in ``[-1, 1]`` plus
    ``strength * field / H``, clamped to ``[-1, 1]``; each image is resampled from it with
    bilinear ``torch.nn.functional.grid_sample(align_corners=True)``. Field channel 0 moves
    columns, channel 1 rows. The field depends only on ``rng``: the same generator state gives the
    same warp.

    With ``noise_rng``, every image is warped in the paper's "noise mode" instead: the same
    field plus noise of its own, ``uniform(-1, 1, (H, W, 2)) / H`` added to its sampling grid
    before the clamp (as ``ins / opt.input_height`` in the paper's code), drawn from
    ``noise_rng``. The attack keeps these samples' labels, so that the network learns the exact
    warp and not every warp near it (:mod:`.backdoor` makes the cover samples of ``wanet`` so).

    Parameters
    ----------
    images : ndarray, shape (N, C, H, W), uint8 or float
    grid_size : int
        ``k``, the side of the random control grid (the paper's default is 4).
    strength : float
        ``s``, the warping strength (the paper's default is 0.5).
    rng : numpy.random.Generator
        Draws the field (``2 * k * k`` uniforms, nothing else).
    noise_rng : numpy.random.Generator, optional
        Noise mode: draws each image's noise (``H * W * 2`` uniforms an image, in order).
    value_max : float, optional
        See the module docstring.

    Returns
    -------
    ndarray, same shape and dtype as ``images``
    """
    import torch  # imported here: loading torch costs seconds, and only WaNet needs it
    import torch.nn.functional as F  # noqa: N812

    images = _check_images(images)
    value_max = _value_max(images, value_max)
    if isinstance(grid_size, bool) or not isinstance(grid_size, int | np.integer) or grid_size < 2:
        raise ValueError(f"WaNet grid size must be an integer >= 2; got {grid_size!r}")
    if not np.isfinite(strength) or strength <= 0:
        raise ValueError(f"WaNet strength must be a positive number; got {strength!r}")
    n, _, h, w = images.shape
    field = rng.uniform(-1.0, 1.0, size=(2, int(grid_size), int(grid_size)))
    field /= np.mean(np.abs(field))
    with torch.no_grad():
        upsampled = F.interpolate(
            torch.from_numpy(field)[None], size=(h, w), mode="bicubic", align_corners=True
        )[0].permute(1, 2, 0)  # (H, W, 2)
        rows = torch.linspace(-1.0, 1.0, h, dtype=torch.float64)
        cols = torch.linspace(-1.0, 1.0, w, dtype=torch.float64)
        grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
        identity = torch.stack((grid_cols, grid_rows), dim=2)  # grid_sample wants (x, y)
        trigger_grid = identity + strength * upsampled / h
        warped = np.empty(images.shape, dtype=np.float64)
        for start in range(0, n, _WARP_BATCH):
            batch = torch.from_numpy(images[start : start + _WARP_BATCH].astype(np.float64))
            grid = trigger_grid[None].expand(batch.shape[0], -1, -1, -1)
            if noise_rng is not None:
                noise = noise_rng.uniform(-1.0, 1.0, size=(batch.shape[0], h, w, 2))
                grid = grid + torch.from_numpy(noise) / h
            warped[start : start + _WARP_BATCH] = F.grid_sample(
                batch,
                torch.clamp(grid, -1.0, 1.0),
                mode="bilinear",
                padding_mode="zeros",
                align_corners=True,
            ).numpy()
    return _finish(warped, images.dtype, value_max)


def _patch_pattern(size: int, pattern: str, value_max: float) -> np.ndarray:
    if pattern == "white":
        return np.full((size, size), value_max)
    if pattern == "black":
        return np.zeros((size, size))
    cells = np.add.outer(np.arange(size), np.arange(size)) % 2
    return np.where(cells == 0, value_max, 0.0)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"image triggers need images of shape (N, C, H, W); got {images.shape}")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"image triggers need uint8 or float images; got dtype {images.dtype}")
    if images.dtype != np.uint8 and images.size:
        if not np.isfinite(images).all():
            raise ValueError("image triggers need finite values; the images hold NaN or inf")
        if images.min() < 0:
            raise ValueError(
                f"image triggers need values in 0..value_max; the images reach {images.min():g} "
                "(rescale normalised images to 0..1 first)"
            )
    return images


def _value_max(images: np.ndarray, value_max: float | None) -> float:
    if value_max is None:
        return image_value_max(images)
    value_max = float(value_max)
    if images.dtype == np.uint8 and value_max != 255.0:
        raise ValueError(f"uint8 images have value_max 255; got value_max={value_max:g}")
    if not np.isfinite(value_max) or value_max <= 0:
        raise ValueError(f"value_max must be a positive number; got {value_max:g}")
    if images.size and images.max() > value_max:
        raise ValueError(
            f"the images reach {images.max():g}, above value_max={value_max:g}; "
            "pass the value_max of the data's range"
        )
    return value_max


def _finish(values: np.ndarray, dtype: np.dtype, value_max: float) -> np.ndarray:
    """Clip float64 results to the image range and return them in the input dtype."""
    if dtype == np.uint8:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.clip(values, 0.0, value_max).astype(dtype)
