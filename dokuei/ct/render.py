"""Overlay images (PNG, matplotlib Agg): the L3 slice with tissues coloured, and an organ montage.

Slices are shown in radiological convention: patient's right on the viewer's left, anterior up.
Labels are Japanese, drawn with the IPAexGothic font the project installs (``dokuei.fonts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dokuei.io.totalseg import Segmentation, name_ja
from dokuei.io.volume import Volume

WINDOW = (40.0, 400.0)  # level, width: soft tissue
TISSUE_COLOURS = {
    "muscle": (0.90, 0.10, 0.10),
    "psoas": (1.0, 0.55, 0.0),
    "sat": (1.0, 0.85, 0.1),
    "vat": (0.1, 0.75, 0.3),
}


def _display(slice2d: np.ndarray) -> np.ndarray:
    """[i (R→L), j (P→A)] array → image rows (anterior first) and columns (patient right first)."""
    return np.flipud(slice2d.T)


def _grey(hu2d: np.ndarray) -> np.ndarray:
    level, width = WINDOW
    g = np.clip((hu2d - (level - width / 2)) / width, 0.0, 1.0)
    return np.stack([g, g, g], axis=-1)


def _aspect(ct: Volume) -> float:
    sx, sy, _ = ct.spacing_mm
    return sy / sx


def _figure() -> tuple[Any, Any]:
    import matplotlib

    from dokuei.fonts import pyplot

    return pyplot(), matplotlib


def render_l3(
    ct: Volume, k: int, masks: dict[str, np.ndarray], legend: dict[str, str], out: Path, title: str
) -> Path:
    """The L3 slice with muscle, psoas and fat coloured; ``legend`` maps mask name → legend text."""
    plt, _ = _figure()
    from matplotlib.patches import Patch

    rgb = _grey(ct.array[:, :, k])
    for name in ("sat", "vat", "muscle", "psoas"):
        if name in masks:
            colour = np.array(TISSUE_COLOURS[name])
            m = masks[name]
            rgb[m] = 0.45 * rgb[m] + 0.55 * colour
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    ax.imshow(_display_rgb(rgb), aspect=_aspect(ct), interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    handles = [
        Patch(color=TISSUE_COLOURS[n], label=legend[n])
        for n in ("muscle", "psoas", "sat", "vat")
        if n in masks and n in legend
    ]
    if handles:
        ax.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2,
            fontsize=8,
            frameon=False,
        )
    ax.text(0.01, 0.99, "R", color="white", transform=ax.transAxes, va="top", fontsize=9)
    ax.text(0.99, 0.99, "L", color="white", transform=ax.transAxes, va="top", ha="right", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def _display_rgb(rgb: np.ndarray) -> np.ndarray:
    return np.flipud(np.transpose(rgb, (1, 0, 2)))


def render_montage(
    ct: Volume, seg: Segmentation, names: list[str], out: Path, title: str, n_slices: int = 6
) -> Path:
    """Axial slices evenly spread through the labelled range, each structure in its own colour."""
    plt, matplotlib = _figure()
    from matplotlib.patches import Patch

    ids = [i for i, n in seg.names.items() if n in set(names)]
    nz = seg.labels.shape[2]
    # spread over the slices the shown structures occupy, not the whole labelled range
    ks = np.flatnonzero(np.isin(seg.labels.reshape(-1, nz, order="F"), ids).any(axis=0))
    if ks.size == 0:
        ks = np.array([ct.shape[2] // 2])
    picks = np.unique(np.linspace(ks[0], ks[-1], num=min(n_slices, ks.size + 0)).round().astype(int))
    cmap = matplotlib.colormaps["tab20"]
    colour = {i: cmap(idx % 20)[:3] for idx, i in enumerate(sorted(ids))}
    cols = 3
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows + 0.8), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), picks, strict=False):
        rgb = _grey(ct.array[:, :, k])
        lab = seg.labels[:, :, k]
        for i in np.unique(lab):
            if i in colour:
                m = lab == i
                rgb[m] = 0.4 * rgb[m] + 0.6 * np.array(colour[i])
        ax.imshow(_display_rgb(rgb), aspect=_aspect(ct), interpolation="nearest")
        z = float((ct.affine @ np.array([0, 0, k, 1.0]))[2])
        ax.set_title(f"スライス {k}（z {z:.0f} mm）", fontsize=8)
    handles = [Patch(color=colour[i], label=name_ja(seg.names[i])) for i in sorted(ids)][:24]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
