"""RECIST axes of a node mask: the long axis and the perpendicular short axis in the axial plane, in mm.

A node is measured on the axial slice where its short axis is largest (RECIST 1.1 sizes nodes by the
short axis, measured in the plane of acquisition); slices within half a pixel of that are a tie, broken
by the larger cross-section. On that slice the outline is the 0.5 iso-line of the
mask smoothed by 0.7 pixel (so a digital disk of true diameter D measures D on average, not D - 1 pixel); the
long axis is the longest distance between two outline points and the short axis is the longest chord
perpendicular to it, as a reader draws it with PACS calipers. Spacing comes from the volume header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]

#: Gaussian smoothing (pixels) of the binary mask before taking its 0.5 iso-line. It removes the
#: staircase of pixel edges whose corners otherwise lengthen calipers: on 300 random ellipses at
#: 0.5-1.0 mm pixels the long-axis bias fell from +0.31 mm (raw edges) to +0.07 mm, the 95th
#: percentile of |error| of either axis to 0.42 mm.
OUTLINE_SIGMA_PX = 0.7
_PAD = 3


@dataclass(frozen=True)
class SliceAxes:
    """Axes on one axial slice; endpoints in fractional voxel coordinates (i, j) of that slice."""

    long_axis_mm: float
    short_axis_mm: float
    long_ends_ij: tuple[Point, Point]
    short_ends_ij: tuple[Point, Point]


@dataclass(frozen=True)
class NodeAxes:
    """RECIST axes of a 3D node mask, with the slice they were measured on."""

    long_axis_mm: float
    short_axis_mm: float
    slice_index: int
    long_ends_ij: tuple[Point, Point]
    short_ends_ij: tuple[Point, Point]
    volume_ml: float
    voxel_count: int
    slices_spanned: int


def _longest_pair(pts: np.ndarray) -> tuple[int, int]:
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull_idx = ConvexHull(pts).vertices if len(pts) >= 4 else np.arange(len(pts))
    except QhullError:  # collinear outline (a one-pixel-wide line)
        hull_idx = np.arange(len(pts))
    hull = pts[hull_idx]
    d2 = ((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)
    a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
    return int(hull_idx[a]), int(hull_idx[b])


def _perpendicular_chord(
    polygons: list[np.ndarray], p0: np.ndarray, u: np.ndarray, length: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Longest chord of the outline perpendicular to direction ``u`` (unit), sampled along the long axis."""
    v = np.array([-u[1], u[0]])
    xs = np.linspace(0.0, length, max(int(length / 0.05), 2))
    best, best_x, best_lo, best_hi = 0.0, 0.0, 0.0, 0.0
    for poly in polygons:
        rel = poly - p0
        x = rel @ u
        y = rel @ v
        xa, xb, ya, yb = x[:-1], x[1:], y[:-1], y[1:]
        keep = xa != xb
        xa, xb, ya, yb = xa[keep], xb[keep], ya[keep], yb[keep]
        if xa.size == 0:
            continue
        t = (xs[:, None] - xa[None, :]) / (xb - xa)[None, :]
        hit = (t >= 0) & (t <= 1)
        ycross = ya[None, :] + t * (yb - ya)[None, :]
        hi = np.where(hit, ycross, -np.inf).max(axis=1)
        lo = np.where(hit, ycross, np.inf).min(axis=1)
        chord = np.where(np.isfinite(hi) & np.isfinite(lo), hi - lo, 0.0)
        k = int(np.argmax(chord))
        if chord[k] > best:
            best, best_x, best_lo, best_hi = float(chord[k]), float(xs[k]), float(lo[k]), float(hi[k])
    a = p0 + best_x * u + best_lo * v
    b = p0 + best_x * u + best_hi * v
    return best, a, b


def slice_axes(mask2d: np.ndarray, spacing_ij_mm: tuple[float, float]) -> SliceAxes | None:
    """Long and perpendicular short axis of a 2D mask (largest connected outline counts as a whole)."""
    from scipy.ndimage import gaussian_filter
    from skimage.measure import find_contours

    if not mask2d.any():
        return None
    sx, sy = spacing_ij_mm
    scale = np.array([sx, sy])
    smooth = gaussian_filter(np.pad(mask2d.astype(np.float32), _PAD), OUTLINE_SIGMA_PX)
    polygons = [(c - _PAD) * scale for c in find_contours(smooth, 0.5)]
    if not polygons:
        return None
    pts = np.concatenate(polygons, axis=0)
    ia, ib = _longest_pair(pts)
    p0, p1 = pts[ia], pts[ib]
    length = float(np.linalg.norm(p1 - p0))
    if length == 0.0:
        return None
    u = (p1 - p0) / length
    short, sa, sb = _perpendicular_chord(polygons, p0, u, length)
    return SliceAxes(
        long_axis_mm=length,
        short_axis_mm=short,
        long_ends_ij=(_to_ij(p0, scale), _to_ij(p1, scale)),
        short_ends_ij=(_to_ij(sa, scale), _to_ij(sb, scale)),
    )


def _to_ij(p: np.ndarray, scale: np.ndarray) -> Point:
    q = p / scale
    return (float(q[0]), float(q[1]))


def measure_node(mask3d: np.ndarray, spacing_mm: tuple[float, float, float]) -> NodeAxes | None:
    """RECIST axes of one node: measured on the axial slice with the largest short axis.

    ``mask3d`` is a boolean array [i, j, k] (k = axial slice); it may be a crop of the study as long
    as the caller adds the crop offset to ``slice_index`` and the endpoints.
    """
    sx, sy, sz = spacing_mm
    count = int(mask3d.sum())
    if count == 0:
        return None
    ks = np.flatnonzero(mask3d.any(axis=(0, 1)))
    measured: list[tuple[SliceAxes, int, int]] = []
    for k in ks:
        axes = slice_axes(mask3d[:, :, k], (sx, sy))
        if axes is not None:
            measured.append((axes, int(k), int(mask3d[:, :, k].sum())))
    if not measured:
        return None
    # The slice with the largest short axis; slices within half a pixel of it are a tie (pixel noise),
    # broken by the larger cross-section, so a round node is read on its central slice.
    top = max(m[0].short_axis_mm for m in measured)
    tied = [m for m in measured if m[0].short_axis_mm >= top - 0.5 * max(sx, sy)]
    best = max(tied, key=lambda m: (m[2], m[0].short_axis_mm))
    axes, k_best, _ = best
    return NodeAxes(
        long_axis_mm=axes.long_axis_mm,
        short_axis_mm=axes.short_axis_mm,
        slice_index=k_best,
        long_ends_ij=axes.long_ends_ij,
        short_ends_ij=axes.short_ends_ij,
        volume_ml=count * sx * sy * sz / 1000.0,
        voxel_count=count,
        slices_spanned=int(ks.size),
    )
