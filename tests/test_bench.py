"""Tests of torchconv.bench, the user-facing benchmark tool (what it runs, not how fast)."""

import math

import pytest
import torch

from torchconv import bench

# name, N, C, H (= W), K, R (= S), stride, padding, dilation, groups
TINY = ("tiny", 2, 5, 9, 6, 3, 1, 1, 1, 1)


@pytest.mark.parametrize("wrong", [dict(layout="channels_last"), dict(which="gw"),
                                   dict(impl="cudnn")])
def test_make_runner_rejects_unknown_arguments(wrong):
    # (a misspelt layout or pass used to run NCHW or forward+backward without a word)
    args = dict(impl="torchconv", layer=TINY, layout="cl", which="fwd", dtype=torch.float32,
                device="cpu")
    args.update(wrong)
    with pytest.raises(ValueError, match="make_runner: .* must be one of"):
        bench.make_runner(**args)


def test_forward_runners_compute_the_same_convolution():
    for layout in bench.LAYOUTS:
        out = {impl: bench.make_runner(impl, TINY, layout, "fwd", torch.float64, "cpu")()
               for impl in bench.IMPLS}
        torch.testing.assert_close(out["torchconv"], out["native"], atol=1e-12, rtol=1e-12)
        assert out["torchconv"].is_contiguous(
            memory_format=torch.channels_last if layout == "cl" else torch.contiguous_format)


def test_cli_runs_every_pass_and_layout(capsys):
    # --fresh-memory: the tool's malloc settings would outlive it in this process
    results = bench.main(["--shape", "2,5,9,9,6,3,3,1,1,1,1", "--pass", "all", "--layout", "both",
                          "--repeats", "1", "--min-time", "0", "--fresh-memory"])
    assert sorted((r[1], r[2]) for r in results) == sorted(
        (layout, which) for layout in bench.LAYOUTS for which in bench.PASSES)
    assert all(math.isfinite(r[3]) and r[3] > 0 for r in results)
    printed = capsys.readouterr().out
    assert "FMA peak" in printed and "geomean speedup overall" in printed


def test_model_layers_are_valid_convolutions():
    # every --models layer runs as F.conv2d would (channels divisible by groups, a non-empty
    # output), checked on meta tensors; the names tell them apart
    assert len({layer[0] for layer in bench.MODELS}) == len(bench.MODELS)
    for _, N, C, H, K, R, s, p, d, G in bench.MODELS:
        x = torch.empty(N, C, H, H, device="meta")
        w = torch.empty(K, C // G, R, R, device="meta")
        assert C % G == 0 and K % G == 0
        y = torch.nn.functional.conv2d(x, w, None, s, p, d, G)
        assert y.shape[0] == N and y.shape[1] == K and y.shape[2] > 0
