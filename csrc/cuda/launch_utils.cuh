// Grid-size and atomic helpers shared by the CUDA kernels.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace fasterrcnn {
namespace cuda {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  const int64_t cap = 4096 * 8;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// Grid-stride loop over [0, n).
#define FRCNN_CUDA_LOOP(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace cuda
}  // namespace fasterrcnn
