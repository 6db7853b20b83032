"""Export small PyTorch networks with torch's own ONNX exporters (real exporter output for tests).

Needs torch (not a dependency of nnxform): ``pip install torch onnx onnxscript``, then
``python models/export_torch.py [OUTDIR]``. Seeded; the files are bundled in models/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn


class Block(nn.Module):
    """Conv-BN-ReLU-Conv-BN plus the identity, then ReLU: a ResNet basic block."""

    def __init__(self, c: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + x)


class ResNet(nn.Module):
    """Normalised input, stem, two residual blocks, pooling, ``view(x.size(0), -1)``, dense head."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8, eps=1e-3), nn.ReLU())
        self.blocks = nn.Sequential(Block(8), nn.MaxPool2d(2), Block(8))
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Sequential(nn.Linear(8 * 2 * 2, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 10))

    def forward(self, x):
        x = self.pool(self.blocks(self.stem((x - self.mean) / self.std)))
        return self.head(x.view(x.size(0), -1))


class NhwcMlp(nn.Module):
    """NHWC input permuted to NCHW, flattened with reshape, BN1d, Tanh and Sigmoid layers."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(2 * 6 * 6, 20), nn.BatchNorm1d(20, eps=0.8)
        self.fc2, self.fc3 = nn.Linear(20, 12), nn.Linear(12, 4)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).reshape(x.shape[0], -1)
        x = torch.tanh(self.bn1(self.fc1(x)))
        return self.fc3(torch.sigmoid(self.fc2(x)))


def _randomise_bn(model: nn.Module) -> None:
    """Give every BN non-trivial running statistics, as a trained network has."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.2, 2.0)
            m.weight.data.normal_(1, 0.3)
            m.bias.data.normal_(0, 0.3)


def main(out: Path) -> None:
    """Legacy (TorchScript) exports at opset 13 with a symbolic batch, and one dynamo export (opset 20,
    weights in an external ``.onnx.data`` file)."""
    torch.manual_seed(0)
    for name, model, shape, dynamo in (
        ("torch_resnet.onnx", ResNet(), (1, 3, 16, 16), False),
        ("torch_nhwc_mlp.onnx", NhwcMlp(), (1, 6, 6, 2), False),
        ("torch_dynamo_resnet.onnx", ResNet(), (1, 3, 16, 16), True),
    ):
        _randomise_bn(model)
        model.eval()
        kwargs = {} if dynamo else {"dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}, "opset_version": 13}
        torch.onnx.export(model, (torch.rand(shape),), str(out / name), input_names=["input"], output_names=["logits"],
                          dynamo=dynamo, **kwargs)
        print("wrote", out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
