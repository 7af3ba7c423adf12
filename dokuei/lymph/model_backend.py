"""Model backend slot: a lymph-node segmentation network the user installs (nnU-Net v2 layout).

No open lymph-node model ships with dokuei and none is downloaded. A hospital that has trained or
licensed one (an nnU-Net v2 model; a MONAI model exported to nnU-Net's folder layout works the same
way) copies the trained model folder to::

    $DOKUEI_WEIGHTS_DIR/lymph_nodes/nnunet/
        dataset.json            label 1 = lymph node (other labels are ignored)
        plans.json
        fold_0/checkpoint_final.pth   (any folds present are used)

Missing → ``ToolUnavailableError`` with these instructions; the mask and click sources still work.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dokuei.errors import UnavailableError as ToolUnavailableError
from dokuei.io.volume import Volume
from dokuei.weights import WeightSpec, check_weights

log = logging.getLogger(__name__)

NODE_SEG_WEIGHTS = WeightSpec(
    id="lymph-node-nnunet",
    version="user",
    relpath="lymph_nodes/nnunet",
    sha256=None,
    licence="user-supplied (check the licence of the model you install)",
    source="a lymph-node segmentation model trained with nnU-Net v2 (your own or a licensed one)",
    install_ja="学習済みの nnU-Net v2 モデルフォルダ（dataset.json、plans.json、fold_*/checkpoint_final.pth、"
    "ラベル 1 = リンパ節）を $DOKUEI_WEIGHTS_DIR/lymph_nodes/nnunet/ にコピーしてください。"
    "モデルがなくても、マスク指定またはクリックで計測できます。",
    min_files=3,
)


def model_status(weights_root: Path) -> tuple[bool, str, str | None]:
    """(installed, reason_ja, sha256) of the node-segmentation model."""
    check = check_weights(NODE_SEG_WEIGHTS, weights_root)
    return check.ok, check.reason_ja, check.sha256


def segment_nodes(ct: Volume, weights_root: Path, device: str) -> np.ndarray:
    """Run the installed nnU-Net model on ``ct``; returns a boolean node mask on its grid."""
    ok, reason, _ = model_status(weights_root)
    if not ok:
        raise ToolUnavailableError(reason, f"node segmentation weights missing under {weights_root}")
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder = weights_root / NODE_SEG_WEIGHTS.relpath
    folds = tuple(
        int(p.name.removeprefix("fold_"))
        for p in sorted(folder.glob("fold_*"))
        if p.name.removeprefix("fold_").isdigit()
    )
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=False,
        device=torch.device(device),
        verbose=False,
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(
        str(folder), use_folds=folds or (0,), checkpoint_name="checkpoint_final.pth"
    )
    # nnU-Net takes (c, z, y, x) with spacing in the same order
    image = np.asarray(ct.array, dtype=np.float32).transpose(2, 1, 0)[None]
    sx, sy, sz = ct.spacing_mm
    seg = predictor.predict_single_npy_array(image, {"spacing": [sz, sy, sx]}, None, None, False)
    return np.asarray(seg).transpose(2, 1, 0) == 1
