"""Benchmark torchconv against native F.conv2d.

    python -m torchconv.bench                      # full suite, both layouts, forward
    python -m torchconv.bench --quick --pass all   # smaller batch subset, every pass
    python -m torchconv.bench --models --pass all  # whole models' layers instead of the suite
    python -m torchconv.bench --shape 8,64,56,56,64,3,3,1,1,1,1 --layout cl --pass fwdbwd
    python -m torchconv.bench --device cuda --batch-scale 8 --dtype float16 --layout cl

On CUDA, cuDNN runs with torch.backends.cudnn.benchmark=True, timing is by CUDA events with
the L2 cache flushed before every run, and --tf32 on|off sets TF32 for both sides.

Shape fields: N,C,H,W,K,R,S,stride,pad,dilation,groups. Runs of torchconv and of the native op
are interleaved and the median of the repeats is reported (shared machines are noisy), with
GFLOP/s, the speedup per layer (native time / torchconv time) and geometric means. On CPU the
machine's FMA peak for the dtype (float64 for float64, else float32; register-only loop on all
threads) is printed first.
"""

import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import torchconv  # noqa: F401
from torchconv import _C, _autograd

ops = torch.ops.torchconv

# name, N, C, H=W, K, R=S, stride, pad, dilation, groups
SUITE = [
    ("R50 stem", 8, 3, 224, 64, 7, 2, 3, 1, 1),
    ("R50 1x1 reduce", 8, 256, 56, 64, 1, 1, 0, 1, 1),
    ("R50 3x3", 8, 64, 56, 64, 3, 1, 1, 1, 1),
    ("R50 1x1 expand", 8, 64, 56, 256, 1, 1, 0, 1, 1),
    ("R50 3x3 s2", 8, 128, 56, 128, 3, 2, 1, 1, 1),
    ("R50 downsample", 8, 256, 56, 512, 1, 2, 0, 1, 1),
    ("R50 L2 3x3", 8, 128, 28, 128, 3, 1, 1, 1, 1),
    ("R50 L3 3x3", 8, 256, 14, 256, 3, 1, 1, 1, 1),
    ("R50 L3 1x1", 8, 256, 14, 1024, 1, 1, 0, 1, 1),
    ("R50 L4 3x3", 8, 512, 7, 512, 3, 1, 1, 1, 1),
    ("R50 L4 1x1", 8, 2048, 7, 512, 1, 1, 0, 1, 1),
    ("VGG conv1_2", 2, 64, 224, 64, 3, 1, 1, 1, 1),
    ("VGG conv3_2", 2, 256, 56, 256, 3, 1, 1, 1, 1),
    ("N=1 latency", 1, 256, 14, 256, 3, 1, 1, 1, 1),
    ("MBv2 pw", 8, 24, 56, 144, 1, 1, 0, 1, 1),
    ("MBv2 dw", 8, 144, 56, 144, 3, 1, 1, 1, 144),
    ("MBv2 dw s2", 8, 96, 112, 96, 3, 2, 1, 1, 96),
    ("MBv2 dw 7x7", 8, 960, 7, 960, 3, 1, 1, 1, 960),
    ("MBv2 project", 8, 576, 7, 160, 1, 1, 0, 1, 1),
    ("ResNeXt g32", 8, 128, 56, 128, 3, 1, 1, 1, 32),
    ("DeepLab dilated", 4, 256, 28, 256, 3, 1, 2, 2, 1),
    ("GoogLeNet 5x5", 8, 192, 28, 32, 5, 1, 2, 1, 1),
    ("odd tails", 8, 100, 30, 50, 3, 1, 1, 1, 1),
]

# The distinct convolutions of whole models at 224 x 224, batch 8 (--models): MobileNetV2,
# ResNeXt-50 32x4d's grouped 3x3s, ResNet-18's 3x3s and strided 1x1s. Outside the suite they
# found NCHW depthwise planes of 28 and 14 columns at 0.35-0.5x native (streamed partial cache
# lines) and ResNeXt's strided grouped input gradients at 0.4-0.5x.
def _model_layers():
    # (C, H, K, R, stride, groups); padding R // 2
    mbv2 = [(3, 224, 32, 3, 2, 1), (32, 112, 32, 3, 1, 32), (32, 112, 16, 1, 1, 1),
            (16, 112, 96, 1, 1, 1), (96, 112, 96, 3, 2, 96), (96, 56, 24, 1, 1, 1),
            (24, 56, 144, 1, 1, 1), (144, 56, 144, 3, 1, 144), (144, 56, 24, 1, 1, 1),
            (144, 56, 144, 3, 2, 144), (144, 28, 32, 1, 1, 1), (32, 28, 192, 1, 1, 1),
            (192, 28, 192, 3, 1, 192), (192, 28, 32, 1, 1, 1), (192, 28, 192, 3, 2, 192),
            (192, 14, 64, 1, 1, 1), (64, 14, 384, 1, 1, 1), (384, 14, 384, 3, 1, 384),
            (384, 14, 64, 1, 1, 1), (384, 14, 96, 1, 1, 1), (96, 14, 576, 1, 1, 1),
            (576, 14, 576, 3, 1, 576), (576, 14, 96, 1, 1, 1), (576, 14, 576, 3, 2, 576),
            (576, 7, 160, 1, 1, 1), (160, 7, 960, 1, 1, 1), (960, 7, 960, 3, 1, 960),
            (960, 7, 160, 1, 1, 1), (960, 7, 320, 1, 1, 1), (320, 7, 1280, 1, 1, 1)]
    resnext = [(128, 56, 128, 3, 1, 32), (256, 56, 256, 3, 2, 32), (256, 28, 256, 3, 1, 32),
               (512, 28, 512, 3, 2, 32), (512, 14, 512, 3, 1, 32), (1024, 14, 1024, 3, 2, 32),
               (1024, 7, 1024, 3, 1, 32)]
    r18 = [(64, 56, 64, 3, 1, 1), (64, 56, 128, 3, 2, 1), (128, 28, 128, 3, 1, 1),
           (128, 28, 256, 3, 2, 1), (256, 14, 256, 3, 1, 1), (256, 14, 512, 3, 2, 1),
           (512, 7, 512, 3, 1, 1), (64, 56, 128, 1, 2, 1), (128, 28, 256, 1, 2, 1),
           (256, 14, 512, 1, 2, 1)]
    layers = []
    for model, shapes in (("MBv2", mbv2), ("ResNeXt", resnext), ("R18", r18)):
        for C, H, K, R, s, G in shapes:
            name = f"{model} {C}-{K} {R}x{R}" + (f" s{s}" if s > 1 else "") + \
                (f" g{G}" if G > 1 else "") + f" {H}"
            layers.append((name, 8, C, H, K, R, s, R // 2, 1, G))
    return layers


MODELS = _model_layers()

QUICK = ["R50 stem", "R50 1x1 reduce", "R50 3x3", "R50 3x3 s2", "R50 L3 3x3", "R50 L4 3x3",
         "MBv2 pw", "MBv2 dw", "MBv2 dw s2", "ResNeXt g32", "DeepLab dilated", "odd tails"]

PASSES = ["fwd", "bwd_input", "bwd_weight", "fwdbwd"]
LAYOUTS = ["nchw", "cl"]
IMPLS = ["torchconv", "native"]


def flops(layer, which):
    _, N, C, H, K, R, s, p, d, G = layer
    OH = (H + 2 * p - d * (R - 1) - 1) // s + 1
    f = 2.0 * N * K * OH * OH * (C // G) * R * R
    return 3 * f if which == "fwdbwd" else f


def _below_autograd(op, *args):
    call = _autograd._below_autograd(op)
    return lambda: call(*args)


def make_runner(impl, layer, layout, which, dtype, device):
    # (an unknown layout or pass would otherwise run NCHW or forward+backward, silently)
    for name, value, allowed in (("impl", impl, IMPLS), ("layout", layout, LAYOUTS),
                                 ("which", which, PASSES)):
        if value not in allowed:
            raise ValueError(f"make_runner: {name} must be one of {allowed}, not {value!r}")
    _, N, C, H, K, R, s, p, d, G = layer
    # drawn where they live (GPU batches are large: a CPU draw and copy would dominate setup)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(N, C, H, H, generator=gen, dtype=dtype, device=device)
    w = torch.randn(K, C // G, R, R, generator=gen, dtype=dtype, device=device) / math.sqrt(C // G * R * R)
    b = torch.randn(K, generator=gen, dtype=dtype, device=device)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    st, pd, dl = [s, s], [p, p], [d, d]
    with torch.no_grad():
        y = F.conv2d(x, w, b, st, pd, dl, G)
    gy = torch.randn(y.shape, generator=gen, dtype=dtype, device=device)
    if layout == "cl":
        gy = gy.contiguous(memory_format=torch.channels_last)

    if which == "fwd":
        fn = torchconv.functional.conv2d if impl == "torchconv" else F.conv2d
        return lambda: fn(x, w, b, st, pd, dl, G)
    # The gradient passes: each side's gradient op below the autograd key, as a backward pass
    # runs it (torchconv's C++ graph node calls its ops there; native's node calls
    # convolution_backward with nothing to record). Above it, the torchconv ops' Python
    # autograd kernel would add about 20 us per call that no training step pays.
    if which == "bwd_input":
        if impl == "torchconv":
            return _below_autograd(ops.conv2d_grad_input, gy, w, list(x.shape), st, pd, dl, G)
        return _below_autograd(torch.ops.aten.convolution_backward, gy, x, w, None, st, pd, dl,
                               False, [0, 0], G, [True, False, False])
    if which == "bwd_weight":
        if impl == "torchconv":
            return _below_autograd(ops.conv2d_grad_weight, gy, x, list(w.shape), st, pd, dl, G)
        return _below_autograd(torch.ops.aten.convolution_backward, gy, x, w, None, st, pd, dl,
                               False, [0, 0], G, [False, True, False])
    # fwdbwd: forward + backward through autograd (grad of input, weight and bias)
    xr, wr, br = (t.detach().requires_grad_() for t in (x, w, b))
    fn = torchconv.functional.conv2d if impl == "torchconv" else F.conv2d

    def run():
        out = fn(xr, wr, br, st, pd, dl, G)
        torch.autograd.backward(out, gy)
        xr.grad = wr.grad = br.grad = None
    return run


class Timer:
    def __init__(self, device):
        self.device = device
        if device == "cuda":
            self.flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")

    def __call__(self, fn):
        if self.device == "cuda":
            self.flush.zero_()  # evict L2
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) * 1e-3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def bench_pair(layer, layout, which, dtype, device, repeats, min_time):
    runners = {impl: make_runner(impl, layer, layout, which, dtype, device)
               for impl in IMPLS}
    timer = Timer(device)
    for fn in runners.values():  # warm-up (also packs caches, picks cudnn algorithms)
        fn()
        fn()
    times = {impl: [] for impl in runners}
    t_start = time.perf_counter()
    rep = 0
    while rep < repeats or (time.perf_counter() - t_start < min_time and rep < 4 * repeats):
        order = ("torchconv", "native") if rep % 2 == 0 else ("native", "torchconv")
        for impl in order:
            times[impl].append(timer(runners[impl]))
        rep += 1
    return {impl: statistics.median(v) for impl, v in times.items()}


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse. By default it returns large blocks to
    the OS, and whether an output is fresh (page faults on first touch: 6270 of them, 8 ms, for
    a 25.7 MB output) depends on which calls ran before it, so alternating torchconv and native
    runs charged one side or the other at random (R50 1x1 expand channels_last measured 1.1x in
    one full run, 0.5x in the next). Both sides then run on reused memory, as in a steady loop.
    mmap is switched off altogether: glibc mmaps every block above 32 MB that its free lists
    cannot serve (MBv2 dw s2's 38.5 MB input gradient: 17.5 ms in a fresh process, 4.9 ms where
    earlier calls had grown the heap; its channels_last forward+backward 0.47x in one suite run,
    1.2-1.3x alone)."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        libc.mallopt(M_MMAP_MAX, 0)  # every block from the heap, reused after free
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def geomean(values):
    values = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def parse_shape(text):
    v = [int(t) for t in text.split(",")]
    if len(v) != 11:
        raise argparse.ArgumentTypeError("--shape wants N,C,H,W,K,R,S,stride,pad,dil,groups")
    N, C, H, W, K, R, S, s, p, d, G = v
    if H != W or R != S:
        raise argparse.ArgumentTypeError("--shape: only square inputs / kernels are supported")
    return ("custom", N, C, H, K, R, s, p, d, G)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=parse_shape, action="append")
    ap.add_argument("--quick", action="store_true", help="subset of the suite with N <= 2")
    ap.add_argument("--models", action="store_true",
                    help="whole models' layers (MobileNetV2, ResNeXt-50, ResNet-18) instead")
    ap.add_argument("--layout", choices=LAYOUTS + ["both"], default="both")
    ap.add_argument("--pass", dest="which", choices=PASSES + ["all"], default="fwd")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "float64", "bfloat16", "float16"], default="float32")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--batch-scale", type=int, default=1,
                    help="multiply every layer's batch size (GPUs want bigger batches, e.g. 8)")
    ap.add_argument("--tf32", choices=["on", "off"], default=None,
                    help="CUDA float32: set torch.backends.cudnn.allow_tf32, which both torchconv "
                         "and cuDNN honour (default: leave torch's setting, which is on)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per measurement, at least")
    ap.add_argument("--isa", default=None, help="torchconv CPU ISA (avx512|avx2|scalar|generic)")
    ap.add_argument("--plot", default=None, help="write a bar chart of speedups (needs matplotlib)")
    ap.add_argument("--fresh-memory", action="store_true",
                    help="leave glibc's malloc as it is (see keep_freed_memory)")
    args = ap.parse_args(argv)
    if args.device == "cpu" and not args.fresh_memory:
        keep_freed_memory()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.isa:
        _C.set_cpu_isa(args.isa)
    dtype = getattr(torch, args.dtype)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        if args.tf32 is not None:
            torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    layers = args.shape or (MODELS if args.models else SUITE)
    if args.quick and not args.shape and not args.models:
        layers = [(l[0], min(l[1], 2)) + l[2:] for l in SUITE if l[0] in QUICK]
    if args.batch_scale != 1:
        layers = [(l[0], l[1] * args.batch_scale) + l[2:] for l in layers]
    layouts = LAYOUTS if args.layout == "both" else [args.layout]
    passes = PASSES if args.which == "all" else [args.which]

    print(f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}, "
          f"threads {torch.get_num_threads()}, torchconv ISA {_C.cpu_isa()}, "
          f"batch x{args.batch_scale}")
    if args.device == "cuda":
        print(f"GPU {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()} "
              f"(benchmark=True), TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}, "
              f"torchconv CUTLASS tier {'on' if _C.cuda_cutlass() else 'off'}")
    peak = None
    if args.device == "cpu":
        f64 = dtype == torch.float64
        peak = _C.fma_peak_gflops(0.5, float64=f64)
        print(f"{'float64' if f64 else 'float32'} FMA peak (register-only loop, "
              f"{torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    print(f"{'layer':<17} {'layout':<6} {'pass':<10} {'torchconv ms':>12} {'native ms':>10} "
          f"{'tc GF/s':>8} {'nat GF/s':>8} {'%peak':>6} {'speedup':>8}")
    results = []
    for which in passes:
        for layout in layouts:
            for layer in layers:
                t = bench_pair(layer, layout, which, dtype, args.device, args.repeats, args.min_time)
                f = flops(layer, which)
                tc, nat = t["torchconv"], t["native"]
                sp = nat / tc
                pk = f"{100 * f / tc * 1e-9 / peak:5.0f}%" if peak else ""
                print(f"{layer[0]:<17} {layout:<6} {which:<10} {tc * 1e3:12.3f} {nat * 1e3:10.3f} "
                      f"{f / tc * 1e-9:8.1f} {f / nat * 1e-9:8.1f} {pk:>6} {sp:7.2f}x", flush=True)
                results.append((layer[0], layout, which, sp))
    print()
    for which in passes:
        for layout in layouts:
            sps = [r[3] for r in results if r[1] == layout and r[2] == which]
            worst = min((r for r in results if r[1] == layout and r[2] == which), key=lambda r: r[3])
            print(f"geomean speedup {which:<10} {layout:<5}: {geomean(sps):.3f}x   "
                  f"(worst {worst[3]:.2f}x {worst[0]})")
    print(f"geomean speedup overall: {geomean([r[3] for r in results]):.3f}x")
    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not installed: no plot", file=sys.stderr)
        else:
            fig, ax = plt.subplots(figsize=(max(8, len(results) * 0.3), 5))
            ax.bar(range(len(results)), [r[3] for r in results])
            ax.set_xticks(range(len(results)))
            ax.set_xticklabels([f"{r[0]} {r[1]} {r[2]}" for r in results], rotation=90, fontsize=6)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_ylabel("speedup vs native")
            fig.tight_layout()
            fig.savefig(args.plot, dpi=120)
            print(f"plot written to {args.plot}")
    return results


if __name__ == "__main__":
    main()
