"""Overlays: each node on its measurement slice (soft-tissue window) with the long and short axis drawn.

One PNG per study: a montage of up to 12 nodes (pathological first), each panel a 60 mm field around
the node with its outline, the long axis (yellow) and the short axis (cyan). Labels are Japanese, drawn
with the font the project installs (``dokuei.fonts``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dokuei.lymph.study import StudyNodes

log = logging.getLogger(__name__)

MAX_PANELS = 12
FIELD_MM = 60.0
WINDOW_HU = (-160.0, 240.0)  # W400 / L40
RECIST_CLASS_JA = {"target": "標的", "non_target": "非標的", "normal": "正常"}


def render_montage(result: StudyNodes, path: Path, title: str = "") -> Path:
    from dokuei.fonts import pyplot

    plt = pyplot()
    order = {"target": 0, "non_target": 1, "normal": 2}
    nodes = sorted(result.nodes, key=lambda n: (order[n.recist_class], -n.axes.short_axis_mm))[:MAX_PANELS]
    ct = result.study.ct
    sx, sy, _ = ct.spacing_mm
    cols = min(4, len(nodes))
    rows = int(np.ceil(len(nodes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, node in zip(axes.ravel(), nodes, strict=False):
        k = node.axes.slice_index
        ci = np.mean([p[0] for p in node.axes.long_ends_ij])
        cj = np.mean([p[1] for p in node.axes.long_ends_ij])
        hi, hj = int(FIELD_MM / 2 / sx), int(FIELD_MM / 2 / sy)
        i0, j0 = max(int(ci) - hi, 0), max(int(cj) - hj, 0)
        i1, j1 = min(int(ci) + hi, ct.shape[0]), min(int(cj) + hj, ct.shape[1])
        img = ct.array[i0:i1, j0:j1, k]
        # display: rows = anterior at top (j descending), columns = patient's right on the viewer's left
        ext = (i0 - 0.5, i1 - 0.5, j0 - 0.5, j1 - 0.5)
        ax.imshow(
            img.T,
            cmap="gray",
            vmin=WINDOW_HU[0],
            vmax=WINDOW_HU[1],
            origin="lower",
            extent=ext,
            aspect=sy / sx,
        )
        crop, off = result.masks[node.label]
        kk = k - off[2]
        if 0 <= kk < crop.shape[2]:
            m = crop[:, :, kk].astype(float)
            ii = np.arange(crop.shape[0]) + off[0]
            jj = np.arange(crop.shape[1]) + off[1]
            ax.contour(ii, jj, m.T, levels=[0.5], colors="lime", linewidths=0.8)
        for ends, colour in ((node.axes.long_ends_ij, "yellow"), (node.axes.short_ends_ij, "cyan")):
            ax.plot([ends[0][0], ends[1][0]], [ends[0][1], ends[1][1]], color=colour, linewidth=1.6)
        ax.set_xlim(ext[1], ext[0])  # radiological convention: patient's right on the left
        ax.set_ylim(ext[2], ext[3])
        ax.set_title(
            f"#{node.label} {RECIST_CLASS_JA[node.recist_class]}\n短径 {node.axes.short_axis_mm:.1f} / "
            f"長径 {node.axes.long_axis_mm:.1f} mm  スライス {k}",
            fontsize=8,
        )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
