"""Convert a ResNet-18 to torchconv, check it against the original, and time both.

Uses torchvision's resnet18 when torchvision is installed, otherwise the ResNet-18 defined
below (same layout: 7x7 stem, four stages of two basic blocks, 1x1 downsampling shortcuts).

    python examples/convert_model.py [--batch-size 2] [--size 64] [--repeats 7] [--threads 1]

Checks (a non-zero exit status if one fails):
  * every nn.Conv2d became a torchconv.Conv2d, sharing nothing with the original model;
  * eval-mode outputs match;
  * train-mode loss and the gradient of every parameter and of the input match.
Then prints forward and forward+backward times: median of interleaved runs, native vs torchconv.
"""

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import torchconv


# --------------------------------------------------------------------------------------------
# a ResNet-18, for when torchvision is not installed


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(in_planes, planes, stride),
                                        BasicBlock(planes, planes)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # the usual ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_model():
    try:
        import torchvision
    except ImportError:
        return ResNet18(), "ResNet-18 (defined in this example; torchvision not installed)"
    return torchvision.models.resnet18(weights=None), "torchvision.models.resnet18"


# --------------------------------------------------------------------------------------------
# checks


def relative_error(actual, expected):
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()


def check(native, converted, x, target, tolerance):
    failures = []
    conv_types = [type(m) for m in converted.modules() if isinstance(m, nn.Conv2d)]
    n_convs = sum(isinstance(m, nn.Conv2d) for m in native.modules())
    if conv_types != [torchconv.Conv2d] * n_convs:
        failures.append("not every nn.Conv2d was converted")
    native_params = {id(p) for p in native.parameters()}
    if any(id(p) in native_params for p in converted.parameters()):
        failures.append("convert(inplace=False) shared a parameter with the original")
    print(f"converted {len(conv_types)} convolutions")

    native.eval()
    converted.eval()
    with torch.no_grad():
        out_native, out_conv = native(x), converted(x)
    err = relative_error(out_conv, out_native)
    print(f"eval output:     relative error {err:.2e}, "
          f"max |diff| {(out_conv - out_native).abs().max().item():.2e}")
    if err > tolerance:
        failures.append(f"eval output relative error {err:.2e}")

    native.train()
    converted.train()
    grads = {}
    for name, model in (("native", native), ("torchconv", converted)):
        model.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_()
        loss = F.cross_entropy(model(inp), target)
        loss.backward()
        grads[name] = (loss.detach(), inp.grad, {n: p.grad for n, p in model.named_parameters()})
    (loss_n, gin_n, gp_n), (loss_c, gin_c, gp_c) = grads["native"], grads["torchconv"]
    loss_err = abs(loss_c.item() - loss_n.item()) / abs(loss_n.item())
    gin_err = relative_error(gin_c, gin_n)
    param_errs = {n: relative_error(gp_c[n], gp_n[n]) for n in gp_n}
    worst = max(param_errs, key=param_errs.get)
    print(f"train loss:      relative error {loss_err:.2e}")
    print(f"input gradient:  relative error {gin_err:.2e}")
    print(f"param gradients: worst relative error {param_errs[worst]:.2e} ({worst}), "
          f"{len(param_errs)} tensors")
    for label, err in (("loss", loss_err), ("input gradient", gin_err),
                       (f"gradient of {worst}", param_errs[worst])):
        if err > tolerance:
            failures.append(f"{label} relative error {err:.2e}")
    return failures


# --------------------------------------------------------------------------------------------
# timing


def time_interleaved(models, x, target, repeats, warmup=2):
    """Median seconds of forward and of forward+backward, runs of the models interleaved."""
    def forward(model):
        with torch.no_grad():
            model(x)

    def forward_backward(model):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()

    results = {}
    for label, step in (("forward", forward), ("forward+backward", forward_backward)):
        samples = {name: [] for name in models}
        for i in range(warmup + repeats):
            for name, model in models.items():
                start = time.perf_counter()
                step(model)
                if i >= warmup:
                    samples[name].append(time.perf_counter() - start)
        results[label] = {name: statistics.median(s) for name, s in samples.items()}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest accepted relative error (norm of difference / norm)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    native, description = build_model()
    converted = torchconv.convert(native)  # a converted deep copy; `native` stays as it is
    print(f"model: {description}; input {args.batch_size}x3x{args.size}x{args.size}, "
          f"{args.threads} thread(s)")
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    target = torch.randint(0, 1000, (args.batch_size,))

    failures = check(native, converted, x, target, args.tolerance)

    native.train()
    converted.train()
    times = time_interleaved({"native": native, "torchconv": converted}, x, target,
                             args.repeats)
    print()
    print(f"median of {args.repeats} interleaved runs")
    print(f"{'pass':<18}{'nn.Conv2d':>12}{'torchconv':>12}{'ratio':>8}")
    for label, t in times.items():
        print(f"{label:<18}{t['native'] * 1e3:>10.1f}ms{t['torchconv'] * 1e3:>10.1f}ms"
              f"{t['torchconv'] / t['native']:>7.2f}x")

    if failures:
        print("\nFAILED: " + "; ".join(failures))
        raise SystemExit(1)
    print("\nall checks passed")


if __name__ == "__main__":
    main()
