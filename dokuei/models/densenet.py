"""DenseNet-121 in plain torch, state-dict compatible with torchxrayvision's ``densenet121-res224-*`` models.

torchvision cannot be installed beside the CPU torch build here (ENVIRONMENT.md) and torchxrayvision
imports it, so the architecture is written out: the same module names (``features.conv0``,
``features.denseblock1.denselayer1.norm1`` … ``features.norm5``, ``classifier``) so that the published
checkpoints load with ``load_state_dict(strict=True)``. Forward = features → ReLU → global average pool
→ linear, as torchxrayvision's ``DenseNet.forward`` before its op-threshold normalisation.
Import this module only inside a tool's ``setup()``/``run()``: it imports torch.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

DENSENET121_BLOCKS = (6, 12, 24, 16)


class _DenseLayer(nn.Sequential):
    def __init__(self, in_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(in_features))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(in_features, bn_size * growth_rate, kernel_size=1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(bn_size * growth_rate))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module(
            "conv2", nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class _DenseBlock(nn.Sequential):
    def __init__(self, n_layers: int, in_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(n_layers):
            self.add_module(
                f"denselayer{i + 1}", _DenseLayer(in_features + i * growth_rate, growth_rate, bn_size)
            )


class _Transition(nn.Sequential):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_features, out_features, kernel_size=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """Densenet-BC (Huang et al. 2017) with one input channel, as trained by torchxrayvision."""

    def __init__(
        self,
        num_classes: int = 18,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = DENSENET121_BLOCKS,
        num_init_features: int = 64,
        bn_size: int = 4,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    (
                        "conv0",
                        nn.Conv2d(
                            in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False
                        ),
                    ),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        n = num_init_features
        for i, n_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(n_layers, n, growth_rate, bn_size))
            n += n_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, one per label."""
        features = self.features(x)
        out = F.relu(features)
        out = F.adaptive_avg_pool2d(out, (1, 1)).flatten(1)
        return torch.as_tensor(self.classifier(out))


def op_norm(probabilities: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """torchxrayvision's operating-point normalisation: the threshold maps to 0.5, each side linearly.

    Labels whose threshold is NaN keep 0.5 (the model was not calibrated for them).
    """
    t = thresholds.expand_as(probabilities)
    out = torch.full_like(probabilities, 0.5)
    valid = ~torch.isnan(t)
    below = (probabilities < t) & valid
    above = ~(probabilities < t) & valid
    out[below] = probabilities[below] / (t[below] * 2)
    out[above] = 1.0 - (1.0 - probabilities[above]) / ((1.0 - t[above]) * 2)
    return out
