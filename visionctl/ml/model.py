"""The assignment's CNN, verbatim in structure and parameter names.

Parameter names (conv1, conv2, fc1, fc2, dropout1, dropout2) must not change: a state dict saved by
the original assignment (``mnist_cnn.pt``) has to load with ``strict=True``.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate (fc1, after ReLU) activations: what feature-space OOD scores look at."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        return F.relu(self.fc1(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from penultimate features."""
        return self.fc2(self.dropout2(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.head(self.features(x)), dim=1)
