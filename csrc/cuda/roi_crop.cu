// RoI crop CUDA kernels: bilinear sampling (zero padding) on the affine crop grid, optional
// 2x2 max-pool with the window argmax kept for the backward pass.
#include "fasterrcnn/cuda_launch.h"
#include "fasterrcnn/roi_crop_math.h"
#include "launch_utils.cuh"

namespace fasterrcnn {
namespace cuda {
namespace {

template <typename T>
__device__ __forceinline__ T crop_sample(const T* plane, int64_t width, const Taps<T>& ty,
                                         const Taps<T>& tx) {
  const T* top = plane + ty.low * width;
  const T* bottom = plane + ty.high * width;
  return top[tx.low] * (tx.w_low * ty.w_low) + top[tx.high] * (tx.w_high * ty.w_low) +
         bottom[tx.low] * (tx.w_low * ty.w_high) + bottom[tx.high] * (tx.w_high * ty.w_high);
}

template <typename T>
__global__ void roi_crop_forward_kernel(int64_t total, const T* input, const T* rois,
                                        int64_t channels, int64_t height, int64_t width,
                                        int64_t out_h, int64_t out_w, double spatial_scale,
                                        bool max_pool, T* output, uint8_t* argmax) {
  FRCNN_CUDA_LOOP(index, total) {
    const int64_t ow = index % out_w;
    const int64_t oh = (index / out_w) % out_h;
    const int64_t c = (index / out_w / out_h) % channels;
    const int64_t k = index / out_w / out_h / channels;
    const T* roi = rois + k * 5;
    const int64_t image = static_cast<int64_t>(roi[0]);
    const CropAxis<T> ay = crop_axis<T>(roi[2], roi[4], spatial_scale, static_cast<int>(height));
    const CropAxis<T> ax = crop_axis<T>(roi[1], roi[3], spatial_scale, static_cast<int>(width));
    const T* plane = input + (image * channels + c) * height * width;
    if (!max_pool) {
      output[index] = crop_sample(
          plane, width,
          crop_taps<T>(ay, static_cast<int>(oh), static_cast<int>(out_h), static_cast<int>(height)),
          crop_taps<T>(ax, static_cast<int>(ow), static_cast<int>(out_w), static_cast<int>(width)));
      continue;
    }
    T best = T(0);
    uint8_t best_index = 0;
    for (int s = 0; s < 4; ++s) {
      const Taps<T> ty = crop_taps<T>(ay, static_cast<int>(2 * oh + s / 2),
                                      static_cast<int>(2 * out_h), static_cast<int>(height));
      const Taps<T> tx = crop_taps<T>(ax, static_cast<int>(2 * ow + s % 2),
                                      static_cast<int>(2 * out_w), static_cast<int>(width));
      const T v = crop_sample(plane, width, ty, tx);
      if (s == 0 || v > best || isnan(v)) {
        best = v;
        best_index = static_cast<uint8_t>(s);
      }
    }
    output[index] = best;
    argmax[index] = best_index;
  }
}

template <typename T>
__global__ void roi_crop_backward_kernel(int64_t total, const T* grad_output, const T* rois,
                                         const uint8_t* argmax, int64_t channels,
                                         int64_t height, int64_t width, int64_t out_h,
                                         int64_t out_w, double spatial_scale, bool max_pool,
                                         T* grad_input) {
  FRCNN_CUDA_LOOP(index, total) {
    const int64_t ow = index % out_w;
    const int64_t oh = (index / out_w) % out_h;
    const int64_t c = (index / out_w / out_h) % channels;
    const int64_t k = index / out_w / out_h / channels;
    const T* roi = rois + k * 5;
    const int64_t image = static_cast<int64_t>(roi[0]);
    const CropAxis<T> ay = crop_axis<T>(roi[2], roi[4], spatial_scale, static_cast<int>(height));
    const CropAxis<T> ax = crop_axis<T>(roi[1], roi[3], spatial_scale, static_cast<int>(width));
    const int factor = max_pool ? 2 : 1;
    const int s = max_pool ? argmax[index] : 0;
    const Taps<T> ty = crop_taps<T>(ay, static_cast<int>(factor * oh + s / 2),
                                    static_cast<int>(factor * out_h), static_cast<int>(height));
    const Taps<T> tx = crop_taps<T>(ax, static_cast<int>(factor * ow + s % 2),
                                    static_cast<int>(factor * out_w), static_cast<int>(width));
    const T g = grad_output[index];
    T* top = grad_input + (image * channels + c) * height * width + ty.low * width;
    T* bottom = grad_input + (image * channels + c) * height * width + ty.high * width;
    atomicAdd(top + tx.low, g * (tx.w_low * ty.w_low));
    atomicAdd(top + tx.high, g * (tx.w_high * ty.w_low));
    atomicAdd(bottom + tx.low, g * (tx.w_low * ty.w_high));
    atomicAdd(bottom + tx.high, g * (tx.w_high * ty.w_high));
  }
}

}  // namespace

template <typename T>
cudaError_t roi_crop_forward(const T* input, const T* rois, int64_t num_rois, int64_t channels,
                             int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                             double spatial_scale, bool max_pool, T* output, uint8_t* argmax,
                             cudaStream_t stream) {
  const int64_t total = num_rois * channels * out_h * out_w;
  if (total > 0) {
    roi_crop_forward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        total, input, rois, channels, height, width, out_h, out_w, spatial_scale, max_pool,
        output, argmax);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t roi_crop_backward(const T* grad_output, const T* rois, const uint8_t* argmax,
                              int64_t num_rois, int64_t channels, int64_t height, int64_t width,
                              int64_t out_h, int64_t out_w, double spatial_scale, bool max_pool,
                              T* grad_input, cudaStream_t stream) {
  const int64_t total = num_rois * channels * out_h * out_w;
  if (total > 0) {
    roi_crop_backward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        total, grad_output, rois, argmax, channels, height, width, out_h, out_w, spatial_scale,
        max_pool, grad_input);
  }
  return cudaGetLastError();
}

#define FRCNN_INSTANTIATE(T)                                                                  \
  template cudaError_t roi_crop_forward<T>(const T*, const T*, int64_t, int64_t, int64_t,     \
                                           int64_t, int64_t, int64_t, double, bool, T*,       \
                                           uint8_t*, cudaStream_t);                           \
  template cudaError_t roi_crop_backward<T>(const T*, const T*, const uint8_t*, int64_t,      \
                                            int64_t, int64_t, int64_t, int64_t, int64_t,      \
                                            double, bool, T*, cudaStream_t);
FRCNN_INSTANTIATE(float)
FRCNN_INSTANTIATE(double)
#undef FRCNN_INSTANTIATE

}  // namespace cuda
}  // namespace fasterrcnn
