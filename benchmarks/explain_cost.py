"""Explain on a ResNet-18-class model and a Transformer encoder: layers paired by name / by value /
unpaired per target, and the time of explain against the time of that target's plain validation.

    .venv/bin/python benchmarks/explain_cost.py [--size 224] [--out OUT]

ResNet-18 is built here (torchvision is not usable on this stack) with seeded random weights and
random BatchNorm statistics; artifacts come from ondevice's own export (first strategy that passes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def resnet18():
    import torch
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else None
            )

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths, cin = (64, 128, 256, 512), 64
            for i, w in enumerate(widths, 1):
                setattr(self, f"layer{i}", nn.Sequential(Basic(cin, w, 1 if i == 1 else 2), Basic(w, w, 1)))
                cin = w
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(0)
    model = ResNet18().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def measure(name, model, example, out: Path, targets) -> dict:
    import ondevice
    from ondevice.api import _source
    from ondevice.explain import explain_artifact
    from ondevice.options import ValidateOptions
    from ondevice.pipeline import validate_artifacts

    artifacts = ondevice.export(model, example, targets=targets, out_dir=out)
    source = _source(model, example)
    rows = {}
    for artifact in artifacts:
        single = type(artifacts)(artifacts.out_dir, [artifact], [], artifacts.source)
        start = time.perf_counter()
        validate_artifacts(source, single, ValidateOptions(explain=False))
        validate_s = time.perf_counter() - start
        start = time.perf_counter()
        divergence = explain_artifact(source, artifact, source.example_feeds())
        explain_s = time.perf_counter() - start
        rows[artifact.target] = {
            "strategy": artifact.strategy,
            **divergence.counts(),
            "first_divergence": divergence.first.source_layer if divergence.first else None,
            "validate_s": round(validate_s, 2),
            "explain_s": round(explain_s, 2),
            "ratio": round(explain_s / validate_s, 2),
        }
        print(name, artifact.target, json.dumps(rows[artifact.target]), flush=True)
    return rows


def main() -> None:
    import torch

    from ondevice.core.lazy import quiet_environment
    from tests import families

    quiet_environment()
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="out/bench-explain")
    parser.add_argument("--to", default="onnx,tflite,openvino")
    args = parser.parse_args()
    targets = args.to.split(",")
    results = {
        "resnet18": measure(
            "resnet18", resnet18(), torch.rand(1, 3, args.size, args.size), Path(args.out) / "resnet18", targets
        )
    }
    model, example = families.torch_transformer()
    results["transformer"] = measure("transformer", model, example, Path(args.out) / "transformer", targets)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
