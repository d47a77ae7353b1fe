// HOST_DEVICE: marks the per-element maths shared by the CPU kernels and the CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HOST_DEVICE inline
#endif
