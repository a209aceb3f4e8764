"""A regression MLP on scikit-learn's bundled diabetes data, scored by validation loss (MSE on
standardised targets; lower is better). The model takes the activation as a factory: `act()`
returns a fresh candidate module wherever one goes.

    afsearch search --task examples/diabetes_mlp.py:make_task --budget 20
"""

import torch
from sklearn.datasets import load_diabetes
from torch import nn

import afsearch


def make_task(hidden: int = 32, steps: int = 300) -> afsearch.CustomTask:
    x, y = load_diabetes(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    mean, std = x[:300].mean(0), x[:300].std(0)
    x, y = (x - mean) / std, (y - y[:300].mean()) / y[:300].std()  # standardise on train

    def build(act):
        return nn.Sequential(nn.Linear(10, hidden), act(), nn.Linear(hidden, hidden), act(),
                             nn.Linear(hidden, 1))

    return afsearch.CustomTask(
        train=(x[:300], y[:300]), val=(x[300:370], y[300:370]), test=(x[370:], y[370:]),
        build=build, metric="loss", steps=steps, batch_size=32, lr=3e-3)
