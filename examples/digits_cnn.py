"""A user CNN on scikit-learn's 8x8 digits: an ordinary nn.Module with nn.ReLU modules, which
afsearch replaces by each candidate activation.

    afsearch search --task examples/digits_cnn.py:make_task --budget 20
    afsearch search --task examples/digits_cnn.py:make_task --task-option channels=8 --budget 20
"""

import torch
from sklearn.datasets import load_digits
from torch import nn

import afsearch


class DigitsNet(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(4 * channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_task(channels: int = 16, steps: int = 200) -> afsearch.CustomTask:
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # N x 1 x 8 x 8
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return afsearch.CustomTask(
        train=(x[:1200], y[:1200]), val=(x[1200:1500], y[1200:1500]), test=(x[1500:], y[1500:]),
        build=lambda: DigitsNet(channels), steps=steps, batch_size=64, lr=3e-3)
