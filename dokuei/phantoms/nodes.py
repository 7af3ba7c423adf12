"""Lymph-node phantoms: ellipsoids with analytic RECIST axes, and a baseline/follow-up CT study pair.

An ellipsoid ``(p - c)^T M (p - c) <= 1`` with ``M = R diag(1/a², 1/b², 1/c²) R^T`` cuts every axial
plane in similar ellipses; the largest is the one through the centre, whose axes are ``2/sqrt(eig(M2))``
with ``M2`` the in-plane 2×2 block of ``M``. An axial slice at height ``dz`` from the centre is that
ellipse scaled by ``sqrt(1 - dz² q)``, ``q = M33 - m^T M2^-1 m``. So the true long and short axis that
RECIST reads on the best slice of a voxel grid are known exactly, at any spacing and rotation.

Study folder layout written by :func:`write_study` (and read by ``dokuei.lymph.study``)::

    <study>/ct.nii.gz        CT in HU (int16, RAS+ affine from the real spacing)
    <study>/nodes.nii.gz     node label mask on the same grid: 0 background, 1..N one label per node
    <study>/totalseg.nii.gz  TotalSegmentator 'total' multilabel map (trachea, aorta, vertebrae …)
    <study>/study.json       {"study_date": "YYYY-MM-DD", "modality": "CT", "description_ja", "nodes"}
    <study>/ground_truth.json  phantom truth (analytic axes per node); never read by the tools

Run ``python -m dokuei.phantoms.nodes OUTDIR`` to write ``OUTDIR/baseline`` and ``OUTDIR/followup``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]


def rotation(yaw_deg: float = 0.0, tilt_deg: float = 0.0) -> np.ndarray:
    """Rotation about the head-foot axis (in-plane, yaw) after a tilt about the left-right axis."""
    y, t = np.deg2rad(yaw_deg), np.deg2rad(tilt_deg)
    rz = np.array([[np.cos(y), -np.sin(y), 0.0], [np.sin(y), np.cos(y), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
    return rz @ rx


@dataclass(frozen=True)
class EllipsoidNode:
    """A node as an ellipsoid in patient RAS mm (+x = patient's right); ``semi_axes_mm`` before rotation."""

    center_mm: Vec3
    semi_axes_mm: Vec3
    yaw_deg: float = 0.0
    tilt_deg: float = 0.0
    hu: float = 45.0
    name_ja: str = ""
    station: str | None = None

    def quadric(self) -> np.ndarray:
        r = rotation(self.yaw_deg, self.tilt_deg)
        return np.asarray(r @ np.diag(1.0 / np.square(self.semi_axes_mm)) @ r.T)

    def central_axes_mm(self) -> tuple[float, float]:
        """(long, short) axis of the axial section through the centre."""
        eig = np.linalg.eigvalsh(self.quadric()[:2, :2])
        return float(2.0 / np.sqrt(eig[0])), float(2.0 / np.sqrt(eig[1]))

    def axial_axes_mm(self, z_mm: float) -> tuple[float, float]:
        """(long, short) axis of the axial section at height ``z_mm`` (0, 0 when it misses)."""
        m = self.quadric()
        m2, v = m[:2, :2], m[:2, 2]
        q = float(m[2, 2] - v @ np.linalg.solve(m2, v))
        dz = z_mm - self.center_mm[2]
        s2 = 1.0 - dz * dz * q
        if s2 <= 0:
            return 0.0, 0.0
        long_mm, short_mm = self.central_axes_mm()
        return long_mm * float(np.sqrt(s2)), short_mm * float(np.sqrt(s2))

    def best_slice_axes_mm(self, slice_z_mm: np.ndarray) -> tuple[float, float]:
        """True axes on the grid slice closest in shape to the centre (the slice RECIST reads)."""
        best = max((self.axial_axes_mm(float(z)) for z in slice_z_mm), key=lambda ax: ax[1])
        return best

    def volume_ml(self) -> float:
        a, b, c = self.semi_axes_mm
        return float(4.0 / 3.0 * np.pi * a * b * c / 1000.0)

    def inside(self, pts_mm: np.ndarray) -> np.ndarray:
        d = pts_mm - np.asarray(self.center_mm)
        return np.asarray(np.einsum("...i,ij,...j->...", d, self.quadric(), d) <= 1.0)


@dataclass(frozen=True)
class Grid:
    """A RAS+ voxel grid: axis-aligned, ``affine = diag(spacing) + origin``."""

    shape: tuple[int, int, int]
    spacing_mm: Vec3
    origin_mm: Vec3 = (0.0, 0.0, 0.0)

    @property
    def affine(self) -> np.ndarray:
        aff = np.diag([*self.spacing_mm, 1.0])
        aff[:3, 3] = self.origin_mm
        return aff

    def axis_mm(self, axis: int) -> np.ndarray:
        return self.origin_mm[axis] + np.arange(self.shape[axis]) * self.spacing_mm[axis]

    def box(self, node: EllipsoidNode, margin_vox: int = 2) -> tuple[slice, slice, slice]:
        """Voxel bounding box of a node (exact extent of the rotated ellipsoid plus a margin)."""
        half = np.sqrt(np.diag(np.linalg.inv(node.quadric())))  # extent along each axis
        out = []
        for ax in range(3):
            lo = (node.center_mm[ax] - half[ax] - self.origin_mm[ax]) / self.spacing_mm[ax]
            hi = (node.center_mm[ax] + half[ax] - self.origin_mm[ax]) / self.spacing_mm[ax]
            out.append(
                slice(
                    max(int(np.floor(lo)) - margin_vox, 0),
                    min(int(np.ceil(hi)) + margin_vox + 1, self.shape[ax]),
                )
            )
        return out[0], out[1], out[2]

    def centres(self, box: tuple[slice, slice, slice], sub: int = 1) -> np.ndarray:
        """Voxel centres (sub=1) or sub³ sub-voxel sample points of a box, in mm, shape (...,3)."""
        axes = []
        for ax in range(3):
            idx = np.arange(box[ax].start, box[ax].stop, dtype=float)
            offs = (np.arange(sub) + 0.5) / sub - 0.5
            axes.append(self.origin_mm[ax] + (idx[:, None] + offs[None, :]).ravel() * self.spacing_mm[ax])
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def node_mask(grid: Grid, node: EllipsoidNode) -> np.ndarray:
    """Boolean mask of the voxels whose centre lies inside the node."""
    mask = np.zeros(grid.shape, dtype=bool)
    box = grid.box(node)
    mask[box] = node.inside(grid.centres(box))
    return mask


def node_fraction(
    grid: Grid, node: EllipsoidNode, sub: int = 3
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Partial-volume fraction of each voxel inside the node (sub³ samples per voxel), in its box."""
    box = grid.box(node)
    inside = node.inside(grid.centres(box, sub)).astype(np.float32)
    n = [box[ax].stop - box[ax].start for ax in range(3)]
    frac = inside.reshape(n[0], sub, n[1], sub, n[2], sub).mean(axis=(1, 3, 5))
    return box, frac


def implant_node(
    ct: np.ndarray, grid: Grid, node: EllipsoidNode, noise_sd_hu: float, rng: np.random.Generator
) -> np.ndarray:
    """Blend a node into a CT array (partial volume, Gaussian noise inside its box); return its mask."""
    box, frac = node_fraction(grid, node)
    region: np.ndarray = ct[box].astype(np.float32)
    region = region * (1.0 - frac) + node.hu * frac
    region += rng.normal(0.0, noise_sd_hu, region.shape).astype(np.float32) * (frac > 0)
    ct[box] = region
    return node_mask(grid, node)


# --- the study pair --------------------------------------------------------------------------------

#: TotalSegmentator 'total' label ids (totalsegmentator.map_to_binary.class_map["total"]).
TS_LABELS = {
    "esophagus": 15,
    "trachea": 16,
    "aorta": 52,
    "vertebrae_T4": 40,
    "vertebrae_T5": 39,
    "vertebrae_T6": 38,
    "vertebrae_T7": 37,
    "vertebrae_T3": 41,
}


CARINA_Z_MM = 10.0  # anatomy frame: the trachea runs above this height


@dataclass(frozen=True)
class PhantomStudy:
    grid: Grid
    study_date: str
    nodes: tuple[EllipsoidNode, ...]
    shift_mm: Vec3 = (0.0, 0.0, 0.0)  # patient position relative to the baseline (anatomy moves by it)
    description_ja: str = "胸部 CT（合成ファントム）"
    noise_sd_hu: float = 10.0
    seed: int = 0
    label_order: tuple[int, ...] = field(default=())  # label id of nodes[i] is label_order[i]


def _pair_nodes() -> tuple[tuple[EllipsoidNode, ...], tuple[EllipsoidNode, ...]]:
    """Baseline and follow-up nodes (same anatomy frame): the right paratracheal node grows (PD by sum)."""
    base = (
        EllipsoidNode(
            (22.0, 8.0, 35.0), (12.0, 8.0, 10.0), yaw_deg=20, hu=45, name_ja="右気管傍リンパ節", station="4R"
        ),
        EllipsoidNode(
            (0.0, -14.0, -12.0),
            (13.0, 9.0, 11.0),
            yaw_deg=-10,
            hu=45,
            name_ja="気管分岐下リンパ節",
            station="7",
        ),
        EllipsoidNode(
            (-28.0, 20.0, 10.0), (9.0, 6.0, 8.0), yaw_deg=35, hu=45, name_ja="左傍大動脈リンパ節", station="5"
        ),
        EllipsoidNode(
            (40.0, -25.0, -15.0),
            (8.0, 5.5, 7.0),
            yaw_deg=60,
            tilt_deg=15,
            hu=45,
            name_ja="右肺門リンパ節",
            station="10R",
        ),
        EllipsoidNode(
            (-15.0, 35.0, 50.0), (5.0, 3.0, 4.0), yaw_deg=0, hu=45, name_ja="左気管傍リンパ節", station="4L"
        ),
    )
    follow = (
        replace(base[0], center_mm=(23.0, 8.0, 36.0), semi_axes_mm=(15.0, 12.0, 12.0)),  # grows 16 -> 24
        replace(base[1], semi_axes_mm=(12.5, 8.5, 10.5)),  # 18 -> 17
        replace(base[2], semi_axes_mm=(7.0, 4.0, 6.0)),  # 12 -> 8: normal
        base[3],  # 11 -> 11
        base[4],  # 6 -> 6
    )
    return base, follow


def pair_studies(
    shape: tuple[int, int, int] = (320, 256, 64), spacing_mm: Vec3 = (0.8, 0.8, 2.5)
) -> tuple[PhantomStudy, PhantomStudy]:
    """The demo pair: baseline 2025-01-15, follow-up 2025-04-16 shifted 6/-4/12.5 mm with relabelled nodes."""
    origin = tuple(-(n - 1) * s / 2.0 for n, s in zip(shape, spacing_mm, strict=True))
    base_nodes, follow_nodes = _pair_nodes()
    baseline = PhantomStudy(
        Grid(shape, spacing_mm, (origin[0], origin[1], origin[2])),
        "2025-01-15",
        base_nodes,
        seed=1,
        label_order=(1, 2, 3, 4, 5),
    )
    followup = PhantomStudy(
        Grid(shape, spacing_mm, (origin[0], origin[1], origin[2] + 10.0)),
        "2025-04-16",
        follow_nodes,
        shift_mm=(6.0, -4.0, 12.5),
        seed=2,
        label_order=(3, 5, 1, 2, 4),
    )
    return baseline, followup


#: the phantom's axial anatomy (anatomy frame, mm): soft-tissue cylinders (x, y, radius) in mediastinal fat
CYLINDERS = ((0.0, 10.0, 9.0), (-25.0, -5.0, 13.0), (-6.0, -2.0, 6.0), (0.0, -55.0, 18.0))


def _in_fat(x: float, y: float, clearance_mm: float) -> bool:
    """Whether a disc of radius ``clearance_mm`` at (x, y) lies in fat, clear of every structure."""
    if any(np.hypot(x - cx, y - cy) < r + clearance_mm for cx, cy, r in CYLINDERS):
        return False
    # inside the inner muscle boundary (ellipse 108 × 83 mm centred at y = -10), with the clearance
    return bool((x / (108.0 - clearance_mm)) ** 2 + ((y + 10.0) / (83.0 - clearance_mm)) ** 2 <= 1.0)


def many_nodes_study(
    n_nodes: int = 20,
    shape: tuple[int, int, int] = (400, 320, 120),
    spacing_mm: Vec3 = (0.8, 0.8, 2.5),
    seed: int = 7,
) -> PhantomStudy:
    """A study with ``n_nodes`` separate nodes of random size and orientation in fat (for the bench)."""
    rng = np.random.default_rng(seed)
    origin = tuple(-(n - 1) * s / 2.0 for n, s in zip(shape, spacing_mm, strict=True))
    nodes: list[EllipsoidNode] = []
    half_z = (shape[2] - 1) * spacing_mm[2] / 2.0 - 20.0
    while len(nodes) < n_nodes:
        c = (float(rng.uniform(-90, 90)), float(rng.uniform(-70, 50)), float(rng.uniform(-half_z, half_z)))
        if any(np.linalg.norm(np.subtract(c, n.center_mm)) < 35.0 for n in nodes):
            continue
        b = float(rng.uniform(3.0, 11.0))
        a = b * float(rng.uniform(1.1, 1.8))
        if not _in_fat(c[0], c[1], a + 3.0):
            continue
        nodes.append(EllipsoidNode(c, (a, b, b * 1.2), yaw_deg=float(rng.uniform(0, 180)), hu=45.0))
    return PhantomStudy(
        Grid(shape, spacing_mm, (origin[0], origin[1], origin[2])),
        "2025-01-15",
        tuple(nodes),
        seed=seed,
        label_order=tuple(range(1, n_nodes + 1)),
    )


def render(study: PhantomStudy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CT (HU), node label mask and TotalSegmentator-style labels of a phantom study."""
    grid = study.grid
    rng = np.random.default_rng(study.seed)
    sx, sy, sz = study.shift_mm
    x = grid.axis_mm(0)[:, None] - sx
    y = grid.axis_mm(1)[None, :] - sy
    z = grid.axis_mm(2) - sz
    ct = np.full(grid.shape, -1000.0, dtype=np.float32)
    ts = np.zeros(grid.shape, dtype=np.uint8)
    body = (x / 120.0) ** 2 + ((y + 10.0) / 95.0) ** 2 <= 1.0
    muscle = body & ~((x / 108.0) ** 2 + ((y + 10.0) / 83.0) ** 2 <= 1.0)
    trachea = (x**2 + (y - 10.0) ** 2) <= 9.0**2
    trachea_lumen = (x**2 + (y - 10.0) ** 2) <= 7.5**2
    aorta = ((x + 25.0) ** 2 + (y + 5.0) ** 2) <= 13.0**2
    esophagus = ((x + 6.0) ** 2 + (y + 2.0) ** 2) <= 6.0**2
    spine = (x**2 + (y + 55.0) ** 2) <= 18.0**2
    plane = np.full(grid.shape[:2], -100.0, dtype=np.float32)  # mediastinal fat
    plane[muscle] = 50.0
    plane[spine] = 400.0
    plane[aorta] = 40.0
    plane[esophagus] = 35.0
    labels2d = np.zeros(grid.shape[:2], dtype=np.uint8)
    labels2d[aorta] = TS_LABELS["aorta"]
    labels2d[esophagus] = TS_LABELS["esophagus"]
    plane_upper, labels_upper = plane.copy(), labels2d.copy()  # above the carina: the trachea
    plane_upper[trachea] = 30.0
    plane_upper[trachea_lumen] = -1000.0
    labels_upper[trachea] = TS_LABELS["trachea"]
    vertebrae = ["vertebrae_T3", "vertebrae_T4", "vertebrae_T5", "vertebrae_T6", "vertebrae_T7"]
    for k, zk in enumerate(z):
        upper = zk > CARINA_Z_MM
        ct[:, :, k] = np.where(body, plane_upper if upper else plane, -1000.0)
        ts[:, :, k] = labels_upper if upper else labels2d
        level = int(np.clip((60.0 - zk) // 25.0, 0, len(vertebrae) - 1))
        ts[:, :, k][spine] = TS_LABELS[vertebrae[level]]
    mask = np.zeros(grid.shape, dtype=np.int16)
    shifted = [
        replace(n, center_mm=(n.center_mm[0] + sx, n.center_mm[1] + sy, n.center_mm[2] + sz))
        for n in study.nodes
    ]
    order = study.label_order or tuple(range(1, len(shifted) + 1))
    for node, label in zip(shifted, order, strict=True):
        mask[implant_node(ct, grid, node, 0.0, rng)] = label
    ct += rng.normal(0.0, study.noise_sd_hu, ct.shape).astype(np.float32) * (ct > -900)
    return np.clip(np.rint(ct), -1024, 3071).astype(np.int16), mask, ts


def ground_truth(study: PhantomStudy) -> dict[str, object]:
    """Analytic truth per node label: axes on the best grid slice, volume, centre (anatomy frame + shift)."""
    z = study.grid.axis_mm(2)
    out: dict[str, object] = {}
    order = study.label_order or tuple(range(1, len(study.nodes) + 1))
    for node, label in zip(study.nodes, order, strict=True):
        c = tuple(float(v + s) for v, s in zip(node.center_mm, study.shift_mm, strict=True))
        shifted = replace(node, center_mm=(c[0], c[1], c[2]))
        long_mm, short_mm = shifted.best_slice_axes_mm(z)
        out[str(label)] = {
            "name_ja": node.name_ja,
            "station": node.station,
            "center_ras_mm": list(c),
            "long_axis_mm": round(long_mm, 2),
            "short_axis_mm": round(short_mm, 2),
            "central_long_axis_mm": round(shifted.central_axes_mm()[0], 2),
            "central_short_axis_mm": round(shifted.central_axes_mm()[1], 2),
            "volume_ml": round(node.volume_ml(), 3),
            "node": asdict(node),
        }
    return out


def write_study(study: PhantomStudy, folder: Path, with_names: bool = False) -> Path:
    """Write one study folder (see the module docstring for the layout)."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    ct, mask, ts = render(study)
    aff = study.grid.affine
    nib.save(nib.Nifti1Image(ct, aff), str(folder / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(mask, aff), str(folder / "nodes.nii.gz"))
    nib.save(nib.Nifti1Image(ts, aff), str(folder / "totalseg.nii.gz"))
    meta: dict[str, object] = {
        "study_date": study.study_date,
        "modality": "CT",
        "description_ja": study.description_ja,
        "synthetic": True,
    }
    order = study.label_order or tuple(range(1, len(study.nodes) + 1))
    if with_names:
        meta["nodes"] = {
            str(label): {"station": n.station}
            for n, label in zip(study.nodes, order, strict=True)
            if n.station
        }
    (folder / "study.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    (folder / "ground_truth.json").write_text(json.dumps(ground_truth(study), ensure_ascii=False, indent=1))
    return folder


def write_pair(outdir: Path, **grid_kwargs: object) -> tuple[Path, Path]:
    baseline, followup = pair_studies(**grid_kwargs)  # type: ignore[arg-type]
    return (
        write_study(baseline, outdir / "baseline", with_names=True),
        write_study(followup, outdir / "followup", with_names=True),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a baseline/follow-up lymph-node phantom study pair.")
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base, follow = write_pair(args.outdir)
    log.info("wrote %s and %s", base, follow)


if __name__ == "__main__":
    main()
