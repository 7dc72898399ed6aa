// SIMT implicit-GEMM kernels for float, double, Half and BFloat16 (opmath accumulation).
#include "conv2d_gemm_simt.cuh"

namespace torchconv::cuda {

TORCHCONV_SIMT_INSTANTIATE_BOTH(float)
TORCHCONV_SIMT_INSTANTIATE_BOTH(double)
TORCHCONV_SIMT_INSTANTIATE_BOTH(c10::Half)
TORCHCONV_SIMT_INSTANTIATE_BOTH(c10::BFloat16)

}  // namespace torchconv::cuda
