"""Models for the benchmarks, built in code with seeded random weights (nothing downloaded)."""

from __future__ import annotations


def mobilenet_v2():
    """A MobileNetV2-shaped network (inverted residuals, width 1.0, 1x3x224x224, 3.5M parameters)."""
    import torch
    from torch import nn

    def conv_bn(cin, cout, kernel, stride, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return layers + ([nn.ReLU6()] if act else [])

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            layers = conv_bn(cin, hidden, 1, 1) if expand != 1 else []
            layers += conv_bn(hidden, hidden, 3, stride, groups=hidden) + conv_bn(hidden, cout, 1, 1, act=False)
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.block(x) if self.residual else self.block(x)

    settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    torch.manual_seed(0)
    layers, cin = conv_bn(3, 32, 3, 2), 32
    for expand, cout, repeats, stride in settings:
        for i in range(repeats):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    layers += [*conv_bn(cin, 1280, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    model = nn.Sequential(*layers)
    # With PyTorch's default init and BatchNorm statistics, a random network this deep loses the
    # input's signal layer by layer and its outputs barely depend on the input (ondevice reports
    # that as inconclusive). He init, as MobileNetV2 is trained from, and a few training-mode
    # passes over image-like inputs to give BatchNorm real statistics, keep it alive.
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration passes
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(structured_images(8, seed=1))
    return model.eval(), structured_images(1, seed=2)


def structured_images(count: int, seed: int):
    """Image-like tensors: smooth random patterns (7x7 upsampled to 224x224), not i.i.d. noise."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 7, 7, generator=generator)
    return coarse.repeat_interleave(32, dim=2).repeat_interleave(32, dim=3)


def resnet_like(width: int, size: int, blocks: int = 2):
    """A small ResNet-shaped CNN (stem, ``blocks`` residual blocks per stage, 3 stages, pooled head).

    ``width`` and ``size`` set the cost: (16, 64) runs in about 0.5 ms and (24, 96) in about 5 ms on
    onnxruntime at 2 threads on this project's 2-core machines (more when they are busy); He init keeps
    the outputs input-dependent.
    """
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1))
            self.skip = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    torch.manual_seed(0)
    layers, cin = [nn.Conv2d(3, width, 3, 2, 1), nn.ReLU()], width
    for stage in range(3):
        cout = width * 2**stage
        for index in range(blocks):
            layers.append(Block(cin, cout, 2 if (index == 0 and stage > 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            module.weight.data *= 0.5  # residual sums double the variance per block
    return model.eval(), structured_images(1, seed=2)[:, :, :size, :size].contiguous()


def resnet18():
    """A ResNet-18 (torchvision's layout, 11.7M parameters) at 1x3x224x224, built in code."""
    from benchmarks.explain_cost import resnet18 as build

    return build(), structured_images(1, seed=2)
