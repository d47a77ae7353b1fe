// RoIPool CUDA kernels (torchvision numerics): max over each bin with its argmax; the backward
// pass adds each output gradient at its argmax.
#include <cfloat>

#include "fasterrcnn/cuda_launch.h"
#include "fasterrcnn/roi_pool_math.h"
#include "launch_utils.cuh"

namespace fasterrcnn {
namespace cuda {
namespace {

template <typename T>
__global__ void roi_pool_forward_kernel(int64_t total, const T* input, const T* rois,
                                        int64_t channels, int64_t height, int64_t width,
                                        int64_t out_h, int64_t out_w, double spatial_scale,
                                        T* output, int32_t* argmax) {
  FRCNN_CUDA_LOOP(index, total) {
    const int64_t pw = index % out_w;
    const int64_t ph = (index / out_w) % out_h;
    const int64_t c = (index / out_w / out_h) % channels;
    const int64_t k = index / out_w / out_h / channels;
    const T* roi = rois + k * 5;
    const int64_t image = static_cast<int64_t>(roi[0]);
    const BinRange yb = roi_pool_bin<T>(roi[2], roi[4], spatial_scale, static_cast<int>(out_h),
                                        static_cast<int>(ph), static_cast<int>(height));
    const BinRange xb = roi_pool_bin<T>(roi[1], roi[3], spatial_scale, static_cast<int>(out_w),
                                        static_cast<int>(pw), static_cast<int>(width));
    const bool empty = yb.end <= yb.start || xb.end <= xb.start;
    const T* plane = input + (image * channels + c) * height * width;
    T best = empty ? T(0) : static_cast<T>(-FLT_MAX);
    int32_t best_index = -1;
    for (int y = yb.start; y < yb.end; ++y) {
      for (int x = xb.start; x < xb.end; ++x) {
        const int32_t cell = static_cast<int32_t>(y * width + x);
        if (plane[cell] > best) {
          best = plane[cell];
          best_index = cell;
        }
      }
    }
    output[index] = best;
    argmax[index] = best_index;
  }
}

template <typename T>
__global__ void roi_pool_backward_kernel(int64_t total, const T* grad_output, const T* rois,
                                         const int32_t* argmax, int64_t channels,
                                         int64_t plane_size, int64_t bins, T* grad_input) {
  FRCNN_CUDA_LOOP(index, total) {
    const int32_t cell = argmax[index];
    if (cell < 0) continue;
    const int64_t c = (index / bins) % channels;
    const int64_t k = index / bins / channels;
    const int64_t image = static_cast<int64_t>(rois[k * 5]);
    atomicAdd(grad_input + (image * channels + c) * plane_size + cell, grad_output[index]);
  }
}

}  // namespace

template <typename T>
cudaError_t roi_pool_forward(const T* input, const T* rois, int64_t num_rois, int64_t channels,
                             int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                             double spatial_scale, T* output, int32_t* argmax,
                             cudaStream_t stream) {
  const int64_t total = num_rois * channels * out_h * out_w;
  if (total > 0) {
    roi_pool_forward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        total, input, rois, channels, height, width, out_h, out_w, spatial_scale, output,
        argmax);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t roi_pool_backward(const T* grad_output, const T* rois, const int32_t* argmax,
                              int64_t num_rois, int64_t channels, int64_t height, int64_t width,
                              int64_t out_h, int64_t out_w, T* grad_input, cudaStream_t stream) {
  const int64_t total = num_rois * channels * out_h * out_w;
  if (total > 0) {
    roi_pool_backward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        total, grad_output, rois, argmax, channels, height * width, out_h * out_w, grad_input);
  }
  return cudaGetLastError();
}

#define FRCNN_INSTANTIATE(T)                                                                  \
  template cudaError_t roi_pool_forward<T>(const T*, const T*, int64_t, int64_t, int64_t,     \
                                           int64_t, int64_t, int64_t, double, T*, int32_t*,   \
                                           cudaStream_t);                                     \
  template cudaError_t roi_pool_backward<T>(const T*, const T*, const int32_t*, int64_t,      \
                                            int64_t, int64_t, int64_t, int64_t, int64_t, T*,  \
                                            cudaStream_t);
FRCNN_INSTANTIATE(float)
FRCNN_INSTANTIATE(double)
#undef FRCNN_INSTANTIATE

}  // namespace cuda
}  // namespace fasterrcnn
