"""1-D ResNet for 12-lead ECGs (the ``resnet1d_wang`` family of the PTB-XL benchmark), in plain torch.

Architecture as described by Strodthoff N, Wagner P, Schaeffter T, Samek W. Deep learning for ECG
analysis: benchmarks and insights from PTB-XL. IEEE JBHI 2021;25(5):1519-1528 (after Wang Z et al.,
IJCNN 2017): a stem convolution, one basic residual block per stage (kernels 5 then 3, 128 channels,
stride 2 from the second stage, 1×1 conv + BN shortcut where the shape changes), then a head of
concat pooling (max ‖ mean over time) → BN → Dropout → Linear → ReLU → BN → Dropout → Linear.

State-dict layout (module indices of one ``nn.Sequential``, the layout the benchmark's fastai
``learn.save`` writes under the key ``"model"``), for S stages and no stem pooling:

- ``0.weight``: stem Conv1d (C, 12, k_stem), no bias; ``1.*``: its BatchNorm1d; ``2``: ReLU
- ``{3+s}.{b}.conv1.weight`` (C, C_in, k1), ``.bn1.*``, ``.conv2.weight`` (C, C, k2), ``.bn2.*``,
  ``{3+s}.{b}.downsample.0.weight`` (C, C_in, 1) and ``.downsample.1.*`` where stride ≠ 1
- ``{3+S}`` head: ``.2.*`` BatchNorm1d(2C), ``.4.weight/bias`` Linear(2C, H), ``.6.*`` BatchNorm1d(H),
  ``.8.weight/bias`` Linear(H, n_labels)  (``.0`` pool, ``.1`` flatten, ``.3``/``.7`` dropout, ``.5`` ReLU
  carry no parameters)

With stem pooling (``pooling_stem=True``) a MaxPool1d sits at index 3 and every later index moves by one.
Logits come out one per label, in the label order the model was trained with (see the model card).
Import this module only inside a tool's ``setup()``/``run()``: it imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class BasicBlock1d(nn.Module):
    """Two convolutions with BN and a residual connection (1×1 conv + BN when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernels: tuple[int, int]) -> None:
        super().__init__()
        k1, k2 = kernels
        self.conv1 = nn.Conv1d(in_ch, out_ch, k1, stride=stride, padding=(k1 - 1) // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(out_ch, out_ch, k2, padding=(k2 - 1) // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv1d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm1d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class ConcatPool1d(nn.Module):
    """Global max pooling and global mean pooling over time, concatenated in that order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=2, keepdim=True), x.mean(dim=2, keepdim=True)], dim=1)


def _head(n_features: int, hidden: Sequence[int], n_labels: int, dropout: float) -> nn.Sequential:
    sizes = [2 * n_features, *hidden, n_labels]
    drops = [dropout / 2] * (len(sizes) - 2) + [dropout]
    layers: list[nn.Module] = [ConcatPool1d(), nn.Flatten()]
    for i, (n_in, n_out, p) in enumerate(zip(sizes[:-1], sizes[1:], drops, strict=True)):
        layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResNet1d(nn.Sequential):
    """Stem → residual stages (fixed channel count) → concat-pool head; input (batch, leads, samples)."""

    def __init__(
        self,
        n_labels: int,
        in_channels: int = 12,
        channels: int = 128,
        blocks: Sequence[int] = (1, 1, 1),
        kernels: tuple[int, int] = (5, 3),
        kernel_stem: int = 7,
        stride_stem: int = 1,
        pooling_stem: bool = False,
        stride: int = 2,
        head_hidden: Sequence[int] = (128,),
        head_dropout: float = 0.5,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv1d(in_channels, channels, kernel_stem, stride=stride_stem, padding=(kernel_stem - 1) // 2,
                      bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
        ]
        if pooling_stem:
            layers.append(nn.MaxPool1d(kernel_size=3, stride=2, padding=1))
        for s, n_blocks in enumerate(blocks):
            stage = [
                BasicBlock1d(channels, channels, stride if (s > 0 and b == 0) else 1,
                             kernels if b == 0 else (3, 3))
                for b in range(n_blocks)
            ]
            layers.append(nn.Sequential(*stage))
        layers.append(_head(channels, head_hidden, n_labels, head_dropout))
        super().__init__(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def resnet1d_wang(n_labels: int, in_channels: int = 12) -> ResNet1d:
    """The benchmark's ``fastai_resnet1d_wang`` (kernel_size=5, lin_ftrs_head=[128], ps_head=0.5)."""
    return ResNet1d(n_labels, in_channels)
