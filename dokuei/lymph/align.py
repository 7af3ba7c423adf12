"""Align a later study to an earlier one (translation in patient mm), so that nodes can be matched.

Patients lie differently and tables move between scans: node positions are only comparable after
alignment. In order of preference:

1. TotalSegmentator vertebrae present in both studies: the median of the per-vertebra centroid
   differences (robust to a vertebra segmented differently).
2. Image registration (SimpleITK): translation only, Mattes mutual information on 4 mm-resampled
   images clipped to -200..300 HU, started from the difference of the body centroids.
3. The body-centroid difference alone, when registration fails.

The result ``t`` maps later-study points into the earlier study: ``p_earlier ≈ p_later + t``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dokuei.io.volume import Volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alignment:
    translation_mm: tuple[float, float, float]
    method: str  # "vertebrae" | "registration" | "body_centroid"
    detail: str


def _vertebra_centroids(labels: Volume) -> dict[int, np.ndarray]:
    from dokuei.lymph.location import _ts_names

    names = _ts_names()
    out = {}
    for lab in (int(v) for v in np.unique(labels.array) if v):
        if names.get(lab, "").startswith("vertebrae_"):
            idx = np.argwhere(labels.array == lab)
            if idx[:, 2].min() == 0 or idx[:, 2].max() == labels.shape[2] - 1:
                continue  # cut by the field of view: its centroid is not the vertebra's
            ijk = idx.mean(axis=0)
            out[lab] = labels.affine[:3, :3] @ ijk + labels.affine[:3, 3]
    return out


def _body_centroid(ct: Volume) -> np.ndarray:
    step = max(1, round(4.0 / min(ct.spacing_mm)))
    sub = ct.array[::step, ::step, :] > -500
    ijk = np.argwhere(sub).mean(axis=0) * np.array([step, step, 1])
    return np.asarray(ct.affine[:3, :3] @ ijk + ct.affine[:3, 3])


def _to_sitk(ct: Volume) -> object:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.clip(ct.array, -200, 300).astype(np.float32).transpose(2, 1, 0))
    img.SetSpacing([float(s) for s in ct.spacing_mm])
    img.SetOrigin([float(v) for v in ct.affine[:3, 3]])
    direction = ct.affine[:3, :3] / np.asarray(ct.spacing_mm)[None, :]
    img.SetDirection([float(v) for v in direction.ravel()])
    out_spacing = [4.0, 4.0, max(4.0, float(ct.spacing_mm[2]))]
    size = [round(n * s / o) for n, s, o in zip(img.GetSize(), img.GetSpacing(), out_spacing, strict=True)]
    return sitk.Resample(
        img,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        img.GetOrigin(),
        out_spacing,
        img.GetDirection(),
        -200.0,
        sitk.sitkFloat32,
    )


def register_translation(earlier: Volume, later: Volume, start_mm: np.ndarray) -> np.ndarray:
    """Translation t (p_earlier = p_later + t) by mutual-information registration."""
    import SimpleITK as sitk

    fixed, moving = _to_sitk(earlier), _to_sitk(later)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.25, seed=7)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=4.0, minStep=0.05, numberOfIterations=200)
    reg.SetOptimizerScalesFromPhysicalShift()
    # the transform maps fixed (earlier) points to moving (later): p_later = p_earlier - t
    reg.SetInitialTransform(sitk.TranslationTransform(3, [float(-v) for v in start_mm]), inPlace=False)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    result = reg.Execute(fixed, moving)
    offset = np.asarray(
        sitk.TranslationTransform(result.GetNthTransform(0)).GetOffset()
        if isinstance(result, sitk.CompositeTransform)
        else result.GetParameters()
    )
    log.debug(
        "registration: metric %.4f after %d iterations", reg.GetMetricValue(), reg.GetOptimizerIteration()
    )
    return -offset


def align(
    earlier: Volume, later: Volume, earlier_labels: Volume | None = None, later_labels: Volume | None = None
) -> Alignment:
    if earlier_labels is not None and later_labels is not None:
        a, b = _vertebra_centroids(earlier_labels), _vertebra_centroids(later_labels)
        common = sorted(set(a) & set(b))
        if len(common) >= 2:
            t = np.median(np.stack([a[v] - b[v] for v in common]), axis=0)
            return Alignment(_tuple(t), "vertebrae", f"{len(common)} 椎体の重心差の中央値")
    start = _body_centroid(earlier) - _body_centroid(later)
    try:
        t = register_translation(earlier, later, start)
        return Alignment(_tuple(t), "registration", "相互情報量による平行移動の位置合わせ")
    except Exception as exc:  # registration is best effort; the centroid is an honest fallback
        log.warning("registration failed (%s): body centroids used", exc)
        return Alignment(_tuple(start), "body_centroid", "体輪郭の重心差（画像位置合わせに失敗）")


def _tuple(v: np.ndarray) -> tuple[float, float, float]:
    return (round(float(v[0]), 1), round(float(v[1]), 1), round(float(v[2]), 1))
