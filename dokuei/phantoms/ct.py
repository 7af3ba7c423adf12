"""An abdominal CT phantom in TotalSegmentator's label format, whose true volumes and areas are analytic.

The trunk is a stack of elliptic cylinders (skin-to-muscle subcutaneous fat, an abdominal-wall muscle
ring, two paraspinal muscles), with a spine of cylindrical vertebral bodies T11–sacrum (L3 centred on
slice 47), two psoas muscles whose cross-section grows caudally (so a wrong L3 slice gives a wrong area),
a visceral-fat ellipse, and ellipsoid organs (liver, spleen, kidneys) and a cylindrical aorta. Spacing
is anisotropic (0.9 × 0.9 × 2.5 mm) and the files are written in LPS voxel order, as scanners' NIfTI
converters do, so readers must reorient. HU carry Gaussian noise (SD 8) with a fixed seed.

``python -m dokuei.phantoms.ct OUTDIR`` writes a complete study (layout: :mod:`dokuei.io.ctstudy`)::

    OUTDIR/ct.nii.gz                          CT in HU
    OUTDIR/segmentations/total.nii.gz         multilabel, TotalSegmentator "total" ids and label table
    OUTDIR/segmentations/tissue_types.nii.gz  multilabel, "tissue_types" ids
    OUTDIR/segmentations/abdominal_muscles/   per-structure masks ("abdominal_muscles" names)
    OUTDIR/truth.json                         the analytic values every test compares with
    OUTDIR/patient.json                       the demo patient (72-year-old woman, 152 cm), for batch runs
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SPACING_MM = (0.9, 0.9, 2.5)
SHAPE = (384, 320, 104)
L3_SLICE = 47
NOISE_SD_HU = 8.0
SEED = 20261122

# vertebral bodies: (TotalSegmentator name, first slice, last slice), 11 slices each, discs of 3 slices
VERTEBRAE: tuple[tuple[str, int, int], ...] = (
    ("sacrum", 0, 10),
    ("vertebrae_L5", 14, 24),
    ("vertebrae_L4", 28, 38),
    ("vertebrae_L3", 42, 52),
    ("vertebrae_L2", 56, 66),
    ("vertebrae_L1", 70, 80),
    ("vertebrae_T12", 84, 94),
    ("vertebrae_T11", 98, 103),
)
VERTEBRA_CENTRE_MM, VERTEBRA_RADIUS_MM = (0.0, -40.0), 18.0
BODY_SEMI_MM = (160.0, 115.0)
WALL_OUTER_SEMI_MM = (135.0, 95.0)
WALL_INNER_SEMI_MM = (127.0, 89.0)
# psoas: centre (±x, y), semi-axes at L3, growth of the semi-axes per slice caudally, slices it spans
PSOAS_X_MM, PSOAS_Y_MM = 35.0, -30.0
PSOAS_SEMI_AT_L3_MM = (13.0, 10.0)
PSOAS_GROWTH_PER_SLICE = 0.004
PSOAS_SLICES = (14, 80)
AUTOCHTHON_X_MM, AUTOCHTHON_Y_MM, AUTOCHTHON_SEMI_MM = 30.0, -65.0, (24.0, 16.0)
VISCERAL_FAT_CENTRE_MM, VISCERAL_FAT_SEMI_MM, VISCERAL_FAT_SLICES = (0.0, 40.0), (80.0, 36.0), (20, 60)
AORTA_CENTRE_MM, AORTA_RADIUS_MM = (15.0, -8.0), 10.0
# ellipsoids: name -> (centre x, y, z mm), (semi-axes mm), HU
ORGANS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    "liver": ((-55.0, 25.0, 200.0), (50.0, 38.0, 45.0), 60.0),
    "spleen": ((70.0, 40.0, 205.0), (30.0, 28.0, 35.0), 50.0),
    "kidney_right": ((-80.0, -25.0, 165.0), (22.0, 18.0, 35.0), 35.0),
    "kidney_left": ((80.0, -25.0, 165.0), (22.0, 18.0, 35.0), 35.0),
}
HU = {"air": -1000.0, "fat": -100.0, "muscle": 45.0, "soft_tissue": 20.0, "bone": 300.0, "blood": 40.0}
DEMO_PATIENT: dict[str, Any] = {"age_years": 72, "sex": "F", "height_cm": 152.0}


@dataclass
class Phantom:
    ct: np.ndarray  # HU, RAS voxel order
    total: np.ndarray  # TotalSegmentator "total" label ids
    tissue: np.ndarray  # "tissue_types" ids
    muscles: dict[str, np.ndarray]  # "abdominal_muscles" name -> mask
    affine_ras: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    nx, ny, _ = SHAPE
    sx, sy, _ = SPACING_MM
    x = (np.arange(nx) - (nx - 1) / 2) * sx
    y = (np.arange(ny) - (ny - 1) / 2) * sy
    return np.meshgrid(x, y, indexing="ij")


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    result: np.ndarray = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0
    return result


def z_of_slice(k: int) -> float:
    return k * SPACING_MM[2]


def psoas_semi(k: int) -> tuple[float, float]:
    f = 1.0 + PSOAS_GROWTH_PER_SLICE * (L3_SLICE - k)
    a, b = PSOAS_SEMI_AT_L3_MM
    return a * f, b * f


def make_phantom() -> Phantom:
    """Build the phantom in memory (about 1 s)."""
    from dokuei.io.totalseg import class_map

    ids = {v: k for k, v in class_map("total").items()}
    tissue_ids = {v: k for k, v in class_map("tissue_types").items()}
    nx, ny, nz = SHAPE
    x, y = _grid()
    ct = np.full(SHAPE, HU["air"], dtype=np.float32)
    total = np.zeros(SHAPE, dtype=np.uint8)
    tissue = np.zeros(SHAPE, dtype=np.uint8)
    muscle_names = (
        "psoas_major_left",
        "psoas_major_right",
        "erector_spinae_left",
        "erector_spinae_right",
        "rectus_abdominis_left",
        "rectus_abdominis_right",
        "external_oblique_left",
        "external_oblique_right",
    )
    muscles = {n: np.zeros(SHAPE, dtype=bool) for n in muscle_names}

    body = _ellipse(x, y, 0, 0, *BODY_SEMI_MM)
    wall_outer = _ellipse(x, y, 0, 0, *WALL_OUTER_SEMI_MM)
    wall_inner = _ellipse(x, y, 0, 0, *WALL_INNER_SEMI_MM)
    ring = wall_outer & ~wall_inner
    auto = {
        side: _ellipse(x, y, sign * AUTOCHTHON_X_MM, AUTOCHTHON_Y_MM, *AUTOCHTHON_SEMI_MM)
        for side, sign in (("left", 1.0), ("right", -1.0))
    }  # RAS: +x is the patient's left
    vertebra_disc = _ellipse(x, y, *VERTEBRA_CENTRE_MM, VERTEBRA_RADIUS_MM, VERTEBRA_RADIUS_MM)
    aorta = _ellipse(x, y, *AORTA_CENTRE_MM, AORTA_RADIUS_MM, AORTA_RADIUS_MM)
    vat = _ellipse(x, y, *VISCERAL_FAT_CENTRE_MM, *VISCERAL_FAT_SEMI_MM)

    for k in range(nz):
        z = z_of_slice(k)
        sl_ct = ct[:, :, k]
        sl_total = total[:, :, k]
        owned = np.zeros((nx, ny), dtype=bool)

        def paint(
            mask: np.ndarray,
            hu: float,
            label: int | None,
            what: str,
            sl_ct: np.ndarray = sl_ct,
            sl_total: np.ndarray = sl_total,
            owned: np.ndarray = owned,
            k: int = k,
        ) -> None:
            if np.any(mask & owned) or np.any(mask & ~wall_inner):
                raise AssertionError(f"phantom structures overlap at slice {k}: {what}")
            owned |= mask
            sl_ct[mask] = hu
            if label is not None:
                sl_total[mask] = label

        sl_ct[body] = HU["soft_tissue"]
        sl_ct[body & ~wall_outer] = HU["fat"]
        sl_ct[ring] = HU["muscle"]
        tissue[:, :, k][body & ~wall_outer] = tissue_ids["subcutaneous_fat"]
        tissue[:, :, k][ring] = tissue_ids["skeletal_muscle"]
        front = y > 40.0
        for side, sign in (("left", 1.0), ("right", -1.0)):
            half = ring & ((x * sign) > 0)
            muscles[f"rectus_abdominis_{side}"][:, :, k] = half & front
            muscles[f"external_oblique_{side}"][:, :, k] = half & ~front
            paint(auto[side], HU["muscle"], ids[f"autochthon_{side}"], f"autochthon {side}")
            muscles[f"erector_spinae_{side}"][:, :, k] = auto[side]
            tissue[:, :, k][auto[side]] = tissue_ids["skeletal_muscle"]
        for name, first, last in VERTEBRAE:
            if first <= k <= last:
                paint(vertebra_disc, HU["bone"], ids[name], name)
        paint(aorta, HU["blood"], ids["aorta"], "aorta")
        if PSOAS_SLICES[0] <= k <= PSOAS_SLICES[1]:
            a, b = psoas_semi(k)
            for side, sign in (("left", 1.0), ("right", -1.0)):
                m = _ellipse(x, y, sign * PSOAS_X_MM, PSOAS_Y_MM, a, b)
                paint(m, HU["muscle"], ids[f"iliopsoas_{side}"], f"psoas {side}")
                muscles[f"psoas_major_{side}"][:, :, k] = m
                tissue[:, :, k][m] = tissue_ids["skeletal_muscle"]
        if VISCERAL_FAT_SLICES[0] <= k <= VISCERAL_FAT_SLICES[1]:
            paint(vat, HU["fat"], None, "visceral fat")
            tissue[:, :, k][vat] = tissue_ids["torso_fat"]
        for name, ((cx, cy, cz), (a, b, c), hu) in ORGANS.items():
            t = (z - cz) / c
            if abs(t) < 1.0:
                s = math.sqrt(1.0 - t * t)
                paint(_ellipse(x, y, cx, cy, a * s, b * s), hu, ids[name], name)

    rng = np.random.default_rng(SEED)
    ct = (ct + rng.normal(0.0, NOISE_SD_HU, ct.shape)).astype(np.float32)
    ct[~np.broadcast_to(body[:, :, None], SHAPE)] = HU["air"]
    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = [-(nx - 1) / 2 * SPACING_MM[0], -(ny - 1) / 2 * SPACING_MM[1], 0.0]
    phantom = Phantom(ct, total, tissue, muscles, affine)
    phantom.truth = analytic_truth()
    return phantom


def analytic_truth() -> dict[str, Any]:
    """The values a correct measurement must find, from the construction (no voxels involved)."""
    slab = SPACING_MM[2]
    volumes_ml = {name: 4 / 3 * math.pi * a * b * c / 1000 for name, (_, (a, b, c), _) in ORGANS.items()}
    for name, first, last in VERTEBRAE:
        volumes_ml[name] = math.pi * VERTEBRA_RADIUS_MM**2 * (last - first + 1) * slab / 1000
    volumes_ml["aorta"] = math.pi * AORTA_RADIUS_MM**2 * SHAPE[2] * slab / 1000
    pa, pb = psoas_semi(L3_SLICE)
    psoas_mm2 = 2 * math.pi * pa * pb
    auto_mm2 = 2 * math.pi * AUTOCHTHON_SEMI_MM[0] * AUTOCHTHON_SEMI_MM[1]
    ring_mm2 = math.pi * (
        WALL_OUTER_SEMI_MM[0] * WALL_OUTER_SEMI_MM[1] - WALL_INNER_SEMI_MM[0] * WALL_INNER_SEMI_MM[1]
    )
    sfa_mm2 = math.pi * (BODY_SEMI_MM[0] * BODY_SEMI_MM[1] - WALL_OUTER_SEMI_MM[0] * WALL_OUTER_SEMI_MM[1])
    vfa_mm2 = math.pi * VISCERAL_FAT_SEMI_MM[0] * VISCERAL_FAT_SEMI_MM[1]
    height_m2 = (DEMO_PATIENT["height_cm"] / 100) ** 2
    sma_cm2 = (psoas_mm2 + auto_mm2 + ring_mm2) / 100
    return {
        "spacing_mm": list(SPACING_MM),
        "shape": list(SHAPE),
        "l3_slice_index": L3_SLICE,
        "l3_z_mm": z_of_slice(L3_SLICE),
        "volumes_ml": volumes_ml,
        "hu_mean": {"liver": ORGANS["liver"][2], "spleen": ORGANS["spleen"][2], "muscle": HU["muscle"]},
        "noise_sd_hu": NOISE_SD_HU,
        "l3": {
            "sma_cm2": sma_cm2,
            "psoas_area_cm2": psoas_mm2 / 100,
            "sfa_cm2": sfa_mm2 / 100,
            "vfa_cm2": vfa_mm2 / 100,
            "muscle_hu_mean": HU["muscle"],
        },
        "demo_patient": DEMO_PATIENT,
        "demo_smi_cm2_per_m2": sma_cm2 / height_m2,
        "demo_pmi_cm2_per_m2": psoas_mm2 / 100 / height_m2,
    }


def _lps(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[::-1, ::-1, :])


def _lps_affine(affine_ras: np.ndarray) -> np.ndarray:
    """Affine of the x/y-flipped array: same world positions, voxel order LPS."""
    nx, ny, _ = SHAPE
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, nx - 1
    flip[1, 1], flip[1, 3] = -1, ny - 1
    return affine_ras @ flip


def _save(
    array: np.ndarray, affine: np.ndarray, path: Path, dtype: type, label_map: dict[int, str] | None = None
) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(_lps(array).astype(dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if label_map:  # the CaretExtension label table TotalSegmentator writes into --ml outputs
        body = "".join(
            f'<Label Key="{k}" Red="1" Green="0" Blue="0" Alpha="1"><![CDATA[{v}]]></Label>\n'
            for k, v in label_map.items()
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?> <CaretExtension>  <VolumeInformation Index="0">   '
            f"<LabelTable>\n{body}</LabelTable>  <VolumeType><![CDATA[Label]]></VolumeType>   "
            "</VolumeInformation></CaretExtension>\n"
        )
        img.header.extensions.append(nib.nifti1.Nifti1Extension(0, xml.encode("utf-8")))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def write_study(outdir: Path, phantom: Phantom | None = None) -> Path:
    """Write the phantom as a complete CT study folder; returns ``outdir``."""
    from dokuei.io.totalseg import class_map

    phantom = phantom or make_phantom()
    outdir.mkdir(parents=True, exist_ok=True)
    affine = _lps_affine(phantom.affine_ras)
    _save(np.round(phantom.ct), affine, outdir / "ct.nii.gz", np.int16)
    seg = outdir / "segmentations"
    _save(phantom.total, affine, seg / "total.nii.gz", np.uint8, class_map("total"))
    _save(phantom.tissue, affine, seg / "tissue_types.nii.gz", np.uint8, class_map("tissue_types"))
    for name, mask in phantom.muscles.items():
        _save(mask, affine, seg / "abdominal_muscles" / f"{name}.nii.gz", np.uint8)
    (outdir / "truth.json").write_text(json.dumps(phantom.truth, indent=1))
    (outdir / "patient.json").write_text(json.dumps(DEMO_PATIENT))
    return outdir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a labelled abdominal CT phantom study.")
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_study(args.outdir)
    log.info("phantom study written to %s (L3 = slice %d)", args.outdir, L3_SLICE)


if __name__ == "__main__":
    main()
