"""Build script for torchconv's native extension (torchconv._C).

Environment knobs (see README):
  TORCHCONV_CUDA=0|1     force the CUDA kernels off / on (default: on when a CUDA toolkit and a
                         CUDA build of torch are both present)
  TORCHCONV_DEBUG=1      build without optimisation, with debug symbols
  TORCH_CUDA_ARCH_LIST   CUDA architectures (default here: "8.0;9.0")
  CUTLASS_PATH           a CUTLASS checkout (its include/ is used); default: the headers of the
                         installed PyPI package nvidia-cutlass. Without either, the CUDA build
                         leaves out the CUTLASS tier (conv2d_cutlass*.cu) and says so.
  TORCHCONV_AVX512_EMULATED=1  also build the avx512-emulated CPU ISA (a testing aid: the
                         AVX-512 schedule on AVX2 code; its translation unit takes 6+ minutes)
  MAX_JOBS               parallel compile jobs (ninja)
"""

import glob
import os

from setuptools import find_packages, setup

# torch locates the CUDA toolkit through CUDA_HOME or the `nvcc` on PATH; where that nvcc is a
# wrapper script the toolkit root (and libcudart) is not found, so prefer the standard location.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from torch.utils import cpp_extension  # noqa: E402  (reads CUDA_HOME at import)


def want_cuda() -> bool:
    forced = os.environ.get("TORCHCONV_CUDA")
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(f"TORCHCONV_CUDA must be 0 or 1, got {forced!r}")
        if forced == "1" and cpp_extension.CUDA_HOME is None:
            raise RuntimeError("TORCHCONV_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME)")
        return forced == "1"
    import torch

    return cpp_extension.CUDA_HOME is not None and torch.version.cuda is not None


def cutlass_include_dir():
    """CUTLASS's C++ headers: $CUTLASS_PATH/include, else those shipped in the nvidia-cutlass
    wheel (package cutlass_library, found without importing it), else None."""
    import importlib.util

    candidates = []
    if os.environ.get("CUTLASS_PATH"):
        candidates.append(os.path.join(os.environ["CUTLASS_PATH"], "include"))
    spec = importlib.util.find_spec("cutlass_library")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates.append(os.path.join(root, "source", "include"))
    for path in candidates:
        if os.path.exists(os.path.join(path, "cutlass", "cutlass.h")):
            return path
    return None


def extension():
    debug = os.environ.get("TORCHCONV_DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -fno-math-errno etc. are not used: kernels must keep IEEE semantics (NaN/Inf propagate).
    cxx_flags = opt + ["-fopenmp", "-Wall", "-Wno-unused-function"]
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "cpu", "**", "*.cpp"), recursive=True))
    define_macros = []
    # The emulated AVX-512 ISA only for testing the AVX-512 schedule on machines without
    # AVX-512: its translation unit compiles for about 8 minutes at -O1 (7 GB), more than the rest.
    if os.environ.get("TORCHCONV_AVX512_EMULATED") == "1":
        define_macros.append(("TORCHCONV_AVX512_EMULATED", None))
    else:
        sources = [f for f in sources if "kernels_avx512_emulated" not in f]
    include_dirs = []
    extra = {"cxx": cxx_flags}
    if want_cuda():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "**", "*.cu"), recursive=True))
        define_macros.append(("TORCHCONV_WITH_CUDA", None))
        extra["nvcc"] = opt + ["--expt-relaxed-constexpr", "-lineinfo"]
        cutlass = cutlass_include_dir()
        if cutlass is not None:
            define_macros.append(("TORCHCONV_WITH_CUTLASS", None))
            include_dirs.append(cutlass)
        else:
            print("torchconv: CUTLASS headers not found (pip install nvidia-cutlass, or set "
                  "CUTLASS_PATH): building the CUDA kernels without the CUTLASS tier")
            cuda_sources = [f for f in cuda_sources if "conv2d_cutlass" not in f]
        sources += cuda_sources
        ext_cls = cpp_extension.CUDAExtension
    else:
        ext_cls = cpp_extension.CppExtension
    return ext_cls(
        name="torchconv._C",
        sources=sources,
        define_macros=define_macros,
        include_dirs=include_dirs,
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
    )


setup(
    packages=find_packages(include=["torchconv", "torchconv.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
