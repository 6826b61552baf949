"""The networks: the assignment's CNN (kept so its ``mnist_cnn.pt`` loads) and the wider one we ship.

Every architecture exposes the same two halves, ``features`` (penultimate activations, what
feature-space OOD scores look at) and ``head`` (logits from them), and names its classifier layers
``fc1``/``fc2`` so fine-tuning strategies apply to all of them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionctl.ml import train_config


class Net(nn.Module):
    """The assignment's CNN, verbatim in structure and parameter names.

    Parameter names (conv1, conv2, fc1, fc2, dropout1, dropout2) must not change: a state dict saved by
    the original assignment (``mnist_cnn.pt``) has to load with ``strict=True``.
    """

    description = "Net (2×conv + 2×fc CNN, the assignment's)"  # the model card's, with "trained on …"

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        return F.relu(self.fc1(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout2(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.head(self.features(x)), dim=1)


class VggNet(Net):
    """Two VGG-style blocks (two padded 3×3 convolutions, then 2×2 pooling, each) and the same
    128-unit classifier.

    Why: with ``Net`` every extra kind of training image bought one other-writer set at another's
    expense (more low-resolution renderings: serif 1s / crossed 7s 95.4 → 88.6 %), the sign of a
    network out of capacity. Each unit in front of the classifier sees 16×16 px instead of 6×6,
    padding keeps strokes at the border, and pooling twice leaves 3,136 inputs to ``fc1`` instead of
    9,216: 39 % of ``Net``'s parameters for 1.56× its multiply-adds (18.7 M). No batch norm: outlier
    exposure puts synthetic non-digits in every batch, and running statistics that mix them in cost a
    2,000-image smoke run 22 points of test accuracy (64 vs 86 %).
    """

    description = "VggNet (2 blocks of 2×conv + 2×fc CNN)"
    widths = (32, 64)  # channels of the first and the second block

    def __init__(self) -> None:
        nn.Module.__init__(self)
        a, b = self.widths
        self.conv1 = nn.Conv2d(1, a, 3, padding=1)
        self.conv2 = nn.Conv2d(a, a, 3, padding=1)
        self.conv3 = nn.Conv2d(a, b, 3, padding=1)
        self.conv4 = nn.Conv2d(b, b, 3, padding=1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(b * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.max_pool2d(F.relu(self.conv4(x)), 2)
        x = self.dropout1(x)
        return F.relu(self.fc1(torch.flatten(x, 1)))


class WideVggNet(VggNet):
    """``VggNet`` with 1.5× the channels (48 and 96) and the same 128 features: 2.2× the multiply-adds.

    Why try it: networks trained on small pictures alone read 8-px digits and 8×8 scans better than
    ``VggNet`` trained on everything, the sign of kinds of training image competing for capacity.
    """

    description = "WideVggNet (VggNet with 48/96 channels)"
    widths = (48, 96)


ARCHITECTURES: dict[str, type[Net]] = dict(zip(train_config.ARCHITECTURES, (VggNet, Net, WideVggNet), strict=True))


def build(arch: str) -> Net:
    try:
        return ARCHITECTURES[arch]()
    except KeyError:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}") from None


def arch_of(state_dict: dict) -> str:
    """Which architecture a saved state dict belongs to, from its parameter names and shapes: a
    ``.pt`` file is a bare state dict (as the assignment saved it), so they are all it carries."""
    shapes = {name: tuple(tensor.shape) for name, tensor in state_dict.items()}
    for arch, cls in ARCHITECTURES.items():
        # Built on the meta device: no memory, and no draws from the global RNG that seeded
        # training (fine-tuning calls this after seeding, so real initialisation would shift
        # every dropout mask that follows).
        with torch.device("meta"):
            expected = {name: tuple(tensor.shape) for name, tensor in cls().state_dict().items()}
        if shapes == expected:
            return arch
    raise ValueError("the parameter names and shapes match no known architecture (" + ", ".join(ARCHITECTURES) + ")")


def load(state_dict: dict) -> Net:
    """A network of the state dict's architecture with its weights loaded strictly."""
    model = build(arch_of(state_dict))
    model.load_state_dict(state_dict)
    return model
