"""The Lab 1 multi-layer perceptron."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """fc1 -> ReLU -> dropout -> fc2 -> ReLU -> dropout -> out. Keyword arguments are the model's flags."""

    def __init__(self, data_config: dict, fc1: int = 1024, fc2: int = 128, dropout: float = 0.5):
        super().__init__()
        input_dim = math.prod(data_config["input_dims"])
        num_classes = data_config["output_dims"][0]
        self.layers = nn.Sequential(
            nn.Flatten(),  # (B, 1, 28, 28) -> (B, 784)
            nn.Linear(input_dim, fc1),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(fc1, fc2),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(fc2, num_classes),  # (B, num_classes) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
