// SIMT implicit-GEMM kernels for complex64 / complex128: complex multiply-accumulate on
// c10::complex (no conjugation: the ops are plain bilinear products).
#include "conv2d_gemm_simt.cuh"

namespace torchconv::cuda {

TORCHCONV_SIMT_INSTANTIATE_BOTH(c10::complex<float>)
TORCHCONV_SIMT_INSTANTIATE_BOTH(c10::complex<double>)

}  // namespace torchconv::cuda
