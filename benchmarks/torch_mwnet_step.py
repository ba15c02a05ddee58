# The PyTorch comparison for docs/speed.md ("Against PyTorch"): the same MW-Net step written the
# way a PyTorch user would write it (ResNet-32 with option-A shortcuts, batch norm in train mode,
# one shared forward for the virtual and the real step, torch.func.functional_call for the
# virtual forward, Adam on the weight net, SGD-momentum on the classifier). It prints the median
# time of a plain step and of an MW-Net step on random CIFAR-shaped data, and their ratio.
#
# It needs PyTorch, which is not a dependency of mwnet_tf: install it in a virtual environment of
# its own (the CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu;
# the kept results used torch 2.13.0+cpu), then
#
#     python benchmarks/torch_mwnet_step.py --batch 100 --runs 7
#
# and run `python -m mwnet_tf.bench --model=resnet32 --variants=ce,mwnet` on the same machine in
# the same minutes, alternating the two a few times (a shared machine is noisy). The results kept
# in runs/reference/bench/torch_anchor_*.json hold the medians this script printed (the
# `implementation: torch_anchor` rows of docs/speed.md's table).
#
"""Side-by-side anchor: a modern PyTorch MW-Net step, written here from the paper.

ResNet-32 with option-A shortcuts, batch norm in train mode, one shared forward for the
virtual and the real step, torch.func.functional_call for the virtual forward. Prints the median
time of a plain step and of an MW-Net step on random CIFAR-shaped data, and their ratio.

usage: python torch_mwnet_step.py [--batch 100] [--runs 7]
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        s = x
        if self.stride != 1 or self.pad:
            s = x[:, :, ::2, ::2]
            s = F.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad // 2))
        return F.relu(y + s)


class ResNet32(nn.Module):
    def __init__(self, classes=10, n=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for b in range(n):
                layers.append(Block(cin, cout, 2 if stage and b == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = ResNet32()
    vnet = nn.Sequential(nn.Linear(1, 100), nn.ReLU(), nn.Linear(100, 1), nn.Sigmoid())
    opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=5e-4)
    vopt = torch.optim.Adam(vnet.parameters(), 1e-3, weight_decay=1e-4)
    x, y = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
    xm, ym = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
    names = [n for n, _ in model.named_parameters()]
    print("parameters", sum(p.numel() for p in model.parameters()))

    def meta_step():
        model.train()
        params = list(model.parameters())
        cost = F.cross_entropy(model(x), y, reduction="none")
        v = vnet(cost.detach()[:, None])[:, 0]
        grads = torch.autograd.grad((v * cost).mean(), params, create_graph=True)
        fast = {n: p - 0.1 * g for n, p, g in zip(names, params, grads)}
        bufs = {n: b.clone() for n, b in model.named_buffers()}
        meta = F.cross_entropy(functional_call(model, {**fast, **bufs}, (xm,)), ym)
        vopt.zero_grad()
        meta.backward(inputs=list(vnet.parameters()), retain_graph=True)
        vopt.step()
        with torch.no_grad():
            w = vnet(cost.detach()[:, None])[:, 0]
        opt.zero_grad()
        (w * cost).mean().backward(inputs=params)
        opt.step()

    def plain_step():
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    times = {}
    for name, f in (("plain", plain_step), ("mwnet", meta_step)):
        f()
        t = []
        for _ in range(a.runs):
            s = time.perf_counter()
            f()
            t.append(time.perf_counter() - s)
        times[name] = sorted(t)[len(t) // 2]
        print(f"{name} median step {times[name]:.3f} s")
    print(f"ratio {times['mwnet'] / times['plain']:.2f}")


if __name__ == "__main__":
    main()
