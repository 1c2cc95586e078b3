"""Tiny models for zoo runs (tests/ondevice/test_zoo.py, benchmarks/zoo.py), with the faulty ones a zoo
must survive: a factory that crashes, one that hangs, one that eats memory, a model that fails parity."""

from __future__ import annotations

import os
import signal
import time

import numpy as np


def torch_mlp():
    """Linear -> ReLU -> Linear over 16 features."""
    import torch
    from torch import nn

    torch.manual_seed(21)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval(), torch.randn(1, 16)


def keras_mlp():
    """A Keras Dense -> ReLU -> Dense over 16 features."""
    import keras

    keras.utils.set_random_seed(22)
    inputs = keras.Input((16,), batch_size=1, name="features")
    x = keras.layers.Dense(32, activation="relu")(inputs)
    outputs = keras.layers.Dense(4, name="scores")(x)
    return keras.Model(inputs, outputs), np.random.default_rng(22).normal(size=(1, 16)).astype(np.float32)


def noisy():
    """Adds fresh noise to its output on every call: every artifact converts, and fails parity."""
    import torch
    from torch import nn

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = self.fc(x)
            return y + 0.5 * torch.rand_like(y)

    torch.manual_seed(23)
    return Noisy().eval(), torch.randn(1, 8)


def crash():
    """A factory that kills its own process (a native crash in user code)."""
    os.kill(os.getpid(), signal.SIGSEGV)


def hang():
    """A factory that never returns."""
    while True:
        time.sleep(1)


def hog():
    """A factory that holds 1.5 GiB of memory and then waits (the zoo's memory cap stops it)."""
    held = np.ones(3 * 2**27, dtype=np.float32)
    while True:
        held[::4096] += 1
        time.sleep(0.1)
