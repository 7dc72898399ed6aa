"""torchconv.functional.conv2d against torch.nn.functional.conv2d on a few everyday layers.

    python examples/functional_vs_native.py
"""

import time

import torch
import torch.nn.functional as F

from torchconv.functional import conv2d

LAYERS = [
    # name, input shape, weight shape, kwargs
    ("3x3 same", (4, 32, 56, 56), (64, 32, 3, 3), dict(padding="same")),
    ("3x3 stride 2", (4, 64, 56, 56), (64, 64, 3, 3), dict(stride=2, padding=1)),
    ("1x1", (4, 64, 28, 28), (128, 64, 1, 1), dict()),
    ("depthwise", (4, 96, 56, 56), (96, 1, 3, 3), dict(padding=1, groups=96)),
    ("even kernel 'same'", (4, 16, 32, 32), (16, 16, 4, 4), dict(padding="same")),
]


def median_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    torch.manual_seed(0)
    print(f"{'layer':<20} {'max |diff|':>11} {'torchconv ms':>13} {'native ms':>10} {'ratio':>6}")
    for name, xs, ws, kwargs in LAYERS:
        x, w, b = torch.randn(xs), torch.randn(ws), torch.randn(ws[0])
        ours, native = conv2d(x, w, b, **kwargs), F.conv2d(x, w, b, **kwargs)
        diff = (ours - native).abs().max().item()
        t_ours = median_time(lambda: conv2d(x, w, b, **kwargs))
        t_native = median_time(lambda: F.conv2d(x, w, b, **kwargs))
        print(f"{name:<20} {diff:>11.2e} {t_ours * 1e3:>13.2f} {t_native * 1e3:>10.2f} "
              f"{t_native / t_ours:>6.2f}")


if __name__ == "__main__":
    main()
