"""Click segmentation of one node: 3D region growing in a soft-tissue HU window, with leakage control.

What a PACS caliper tool does when a reader clicks a node:

1. The click is checked: inside the volume, not in air outside the body (air connected to the image
   border on that axial slice), not in lung/bowel gas, fat or bone (HU outside the soft-tissue window).
2. Within a cube of ``max_radius_mm`` around the click, the image is lightly smoothed and the window is
   set from the HU statistics of a small sphere at the click (mean ± max(3 SD, 20 HU)), clipped to the
   soft-tissue window. The component connected to the click is grown (face connectivity).
3. The window's edge facing the surroundings is then moved to half way between the node and its shell
   (the half-maximum boundary a reader sees), and the component is grown again.
4. Leakage control: the region is opened with a ball (1.5 mm, then 2.5, 3.5 mm) which cuts thin
   bridges into neighbouring tissue of similar HU; the part holding the click is kept and its outline
   restored by a dilation limited to the grown region. A region that still reaches the edge of the
   search cube has leaked: the click is refused with a reason, never returned as a node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dokuei.errors import InputError as ToolInputError
from dokuei.io.volume import Volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrowParams:
    soft_tissue_hu: tuple[float, float] = (-30.0, 200.0)
    max_radius_mm: float = 35.0
    seed_radius_mm: float = 2.5
    min_tolerance_hu: float = 20.0
    sd_factor: float = 3.0
    smooth_mm: float = 0.7
    opening_radii_mm: tuple[float, ...] = (1.5, 2.5, 3.5)
    outside_air_hu: float = -500.0


@dataclass(frozen=True)
class GrowResult:
    """The node mask in a crop of the study, the crop's offset and how it was obtained."""

    mask: np.ndarray  # bool, crop of the study
    offset: tuple[int, int, int]
    lower_hu: float
    upper_hu: float
    seed_hu: float
    opening_mm: float

    def full_mask(self, shape: tuple[int, int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        i, j, k = self.offset
        a, b, c = self.mask.shape
        out[i : i + a, j : j + b, k : k + c] = self.mask
        return out


def _ball(radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    r = [int(np.floor(radius_mm / s)) for s in spacing]
    grids = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    d2 = sum((g * s) ** 2 for g, s in zip(grids, spacing, strict=True))
    return np.asarray(d2 <= radius_mm**2 + 1e-6)


def _component_at(mask: np.ndarray, seed: tuple[int, int, int]) -> np.ndarray:
    from scipy import ndimage as ndi

    labels, _ = ndi.label(mask)
    lab = labels[seed]
    if lab == 0:
        # the seed voxel itself was removed (noise or opening): take the component nearest to it
        if not labels.any():
            return np.zeros_like(mask)
        _, (ii, jj, kk) = ndi.distance_transform_edt(labels == 0, return_indices=True)
        lab = labels[ii[seed], jj[seed], kk[seed]]
    return np.asarray(labels == lab)


def _touches_border(mask: np.ndarray, crop_touches: tuple[bool, ...]) -> bool:
    """Whether a region reaches a face of the search cube that is not the edge of the study itself."""
    faces = [mask[0], mask[-1], mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]]
    return any(face.any() and not at_edge for face, at_edge in zip(faces, crop_touches, strict=True))


def check_click(vol: Volume, seed: tuple[int, int, int], params: GrowParams) -> float:
    """Refuse clicks outside the volume, outside the body, or off soft tissue; return the seed HU."""
    from scipy import ndimage as ndi

    if not all(0 <= s < n for s, n in zip(seed, vol.shape, strict=True)):
        raise ToolInputError("クリック位置が画像の範囲外です。", f"seed {seed} outside shape {vol.shape}")
    i, j, k = seed
    patch = vol.array[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, k]
    hu = float(np.median(patch))
    if hu < params.outside_air_hu:
        air, _ = ndi.label(vol.array[:, :, k] < params.outside_air_hu)
        lab = air[i, j]
        border = np.concatenate([air[0], air[-1], air[:, 0], air[:, -1]])
        if lab and np.any(border == lab):
            raise ToolInputError(
                "クリック位置が体外（空気）です。リンパ節の上をクリックしてください。",
                f"seed {seed}: {hu:.0f} HU in air connected to the image border",
            )
        raise ToolInputError(
            f"クリック位置は空気（肺・消化管ガス、{hu:.0f} HU）で、リンパ節ではありません。",
            f"seed {seed}: {hu:.0f} HU inside the body",
        )
    lo, hi = params.soft_tissue_hu
    if not lo <= hu <= hi:
        kind = "脂肪" if hu < lo else "骨・石灰化または造影血管"
        raise ToolInputError(
            f"クリック位置の CT 値 {hu:.0f} HU は軟部組織の範囲外（{kind}）です。"
            "リンパ節の内部をクリックしてください。",
            f"seed {seed}: {hu:.0f} HU outside soft-tissue window {lo}..{hi}",
        )
    return hu


def grow_from_click(vol: Volume, seed: tuple[int, int, int], params: GrowParams | None = None) -> GrowResult:
    """Segment the node under ``seed`` (voxel index in the canonical array). Raises ToolInputError."""
    from scipy import ndimage as ndi

    params = params or GrowParams()
    seed_hu = check_click(vol, seed, params)
    spacing = vol.spacing_mm
    half = [max(int(np.ceil(params.max_radius_mm / s)), 2) for s in spacing]
    lo_idx = [max(seed[a] - half[a], 0) for a in range(3)]
    hi_idx = [min(seed[a] + half[a] + 1, vol.shape[a]) for a in range(3)]
    crop = tuple(slice(lo_idx[a], hi_idx[a]) for a in range(3))
    at_edge = (
        lo_idx[0] == 0,
        hi_idx[0] == vol.shape[0],
        lo_idx[1] == 0,
        hi_idx[1] == vol.shape[1],
        lo_idx[2] == 0,
        hi_idx[2] == vol.shape[2],
    )
    local_seed = (seed[0] - lo_idx[0], seed[1] - lo_idx[1], seed[2] - lo_idx[2])
    roi = np.asarray(vol.array[crop], dtype=np.float32)
    smooth = ndi.gaussian_filter(roi, [params.smooth_mm / s for s in spacing])

    sphere = _ball(params.seed_radius_mm, spacing)
    r = [n // 2 for n in sphere.shape]
    sl = tuple(slice(max(local_seed[a] - r[a], 0), local_seed[a] + r[a] + 1) for a in range(3))
    sub_sphere = sphere[
        tuple(
            slice(r[a] - (local_seed[a] - sl[a].start), r[a] + (sl[a].stop - local_seed[a])) for a in range(3)
        )
    ]
    seed_vals = smooth[sl][sub_sphere]
    mu, sd = float(seed_vals.mean()), float(seed_vals.std())
    tol = max(params.min_tolerance_hu, params.sd_factor * sd)
    lower = max(mu - tol, params.soft_tissue_hu[0])
    upper = min(mu + tol, params.soft_tissue_hu[1])
    region = _component_at((smooth >= lower) & (smooth <= upper), local_seed)

    # half-maximum boundary against the surroundings (darker shell moves the lower bound, brighter the upper)
    shell = ndi.binary_dilation(region, _ball(2.0 * max(spacing[:2]), spacing)) & ~region
    inside_mu = float(smooth[region].mean())
    darker = smooth[shell & (smooth < inside_mu)]
    brighter = smooth[shell & (smooth > inside_mu)]
    if darker.size:
        lower = max(min(lower, (inside_mu + float(np.median(darker))) / 2.0), params.soft_tissue_hu[0])
    if brighter.size and float(np.median(brighter)) > upper:
        upper = min(max(upper, (inside_mu + float(np.median(brighter))) / 2.0), params.soft_tissue_hu[1])
    grown = _component_at((smooth >= lower) & (smooth <= upper), local_seed)

    for radius in params.opening_radii_mm:
        ball = _ball(radius, spacing)
        opened = ndi.binary_opening(grown, ball)
        core = _component_at(opened, local_seed) if opened.any() else grown
        node = ndi.binary_dilation(core, ball) & grown
        if not _touches_border(node, at_edge):
            node = _fill_axial_holes(node)
            log.debug(
                "click %s: %d voxels, window %.0f..%.0f HU, opening %.1f mm",
                seed,
                int(node.sum()),
                lower,
                upper,
                radius,
            )
            return GrowResult(node, (lo_idx[0], lo_idx[1], lo_idx[2]), lower, upper, seed_hu, radius)
    raise ToolInputError(
        "クリック位置から始めた領域が周囲の組織に広がり、リンパ節の範囲を確定できません。"
        "リンパ節の中心付近をクリックし直すか、リンパ節のマスクを指定してください。",
        f"seed {seed}: region reached the {params.max_radius_mm} mm search limit after every opening "
        f"({params.opening_radii_mm}); window {lower:.0f}..{upper:.0f} HU",
    )


def _fill_axial_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice (a necrotic, low-HU centre is still node)."""
    from scipy import ndimage as ndi

    out = mask.copy()
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        out[:, :, k] = ndi.binary_fill_holes(mask[:, :, k])
    return out
