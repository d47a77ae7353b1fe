// RoIAlign CUDA kernels (torchvision numerics): one thread per output element; the geometry
// and the bilinear border rules come from the shared HOST_DEVICE headers.
#include "fasterrcnn/cuda_launch.h"
#include "fasterrcnn/roi_align_math.h"
#include "launch_utils.cuh"

namespace fasterrcnn {
namespace cuda {
namespace {

template <typename T>
__global__ void roi_align_forward_kernel(int64_t total, const T* input, const T* rois,
                                         int64_t channels, int64_t height, int64_t width,
                                         int64_t out_h, int64_t out_w, double spatial_scale,
                                         int sampling_ratio, bool aligned, T* output) {
  FRCNN_CUDA_LOOP(index, total) {
    const int64_t pw = index % out_w;
    const int64_t ph = (index / out_w) % out_h;
    const int64_t c = (index / out_w / out_h) % channels;
    const int64_t k = index / out_w / out_h / channels;
    const T* roi = rois + k * 5;
    const int64_t image = static_cast<int64_t>(roi[0]);
    const AlignAxis<T> ay = roi_align_axis<T>(roi[2], roi[4], spatial_scale,
                                              static_cast<int>(out_h), sampling_ratio, aligned);
    const AlignAxis<T> ax = roi_align_axis<T>(roi[1], roi[3], spatial_scale,
                                              static_cast<int>(out_w), sampling_ratio, aligned);
    const T* plane = input + (image * channels + c) * height * width;
    T sum = 0;
    for (int iy = 0; iy < ay.grid; ++iy) {
      Taps<T> ty;
      if (!roi_align_taps<T>(roi_align_sample<T>(ay, static_cast<int>(ph), iy),
                             static_cast<int>(height), &ty)) {
        continue;
      }
      for (int ix = 0; ix < ax.grid; ++ix) {
        Taps<T> tx;
        if (!roi_align_taps<T>(roi_align_sample<T>(ax, static_cast<int>(pw), ix),
                               static_cast<int>(width), &tx)) {
          continue;
        }
        sum += ty.w_low * tx.w_low * plane[ty.low * width + tx.low] +
               ty.w_low * tx.w_high * plane[ty.low * width + tx.high] +
               ty.w_high * tx.w_low * plane[ty.high * width + tx.low] +
               ty.w_high * tx.w_high * plane[ty.high * width + tx.high];
      }
    }
    output[index] = sum / static_cast<T>(roi_align_count(ay.grid, ax.grid));
  }
}

template <typename T>
__global__ void roi_align_backward_kernel(int64_t total, const T* grad_output, const T* rois,
                                          int64_t channels, int64_t height, int64_t width,
                                          int64_t out_h, int64_t out_w, double spatial_scale,
                                          int sampling_ratio, bool aligned, T* grad_input) {
  FRCNN_CUDA_LOOP(index, total) {
    const int64_t pw = index % out_w;
    const int64_t ph = (index / out_w) % out_h;
    const int64_t c = (index / out_w / out_h) % channels;
    const int64_t k = index / out_w / out_h / channels;
    const T* roi = rois + k * 5;
    const int64_t image = static_cast<int64_t>(roi[0]);
    const AlignAxis<T> ay = roi_align_axis<T>(roi[2], roi[4], spatial_scale,
                                              static_cast<int>(out_h), sampling_ratio, aligned);
    const AlignAxis<T> ax = roi_align_axis<T>(roi[1], roi[3], spatial_scale,
                                              static_cast<int>(out_w), sampling_ratio, aligned);
    T* plane = grad_input + (image * channels + c) * height * width;
    const T g = grad_output[index] / static_cast<T>(roi_align_count(ay.grid, ax.grid));
    for (int iy = 0; iy < ay.grid; ++iy) {
      Taps<T> ty;
      if (!roi_align_taps<T>(roi_align_sample<T>(ay, static_cast<int>(ph), iy),
                             static_cast<int>(height), &ty)) {
        continue;
      }
      for (int ix = 0; ix < ax.grid; ++ix) {
        Taps<T> tx;
        if (!roi_align_taps<T>(roi_align_sample<T>(ax, static_cast<int>(pw), ix),
                               static_cast<int>(width), &tx)) {
          continue;
        }
        atomicAdd(plane + ty.low * width + tx.low, g * ty.w_low * tx.w_low);
        atomicAdd(plane + ty.low * width + tx.high, g * ty.w_low * tx.w_high);
        atomicAdd(plane + ty.high * width + tx.low, g * ty.w_high * tx.w_low);
        atomicAdd(plane + ty.high * width + tx.high, g * ty.w_high * tx.w_high);
      }
    }
  }
}

}  // namespace

template <typename T>
cudaError_t roi_align_forward(const T* input, const T* rois, int64_t num_rois, int64_t channels,
                              int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                              double spatial_scale, int64_t sampling_ratio, bool aligned,
                              T* output, cudaStream_t stream) {
  const int64_t total = num_rois * channels * out_h * out_w;
  if (total > 0) {
    roi_align_forward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        total, input, rois, channels, height, width, out_h, out_w, spatial_scale,
        static_cast<int>(sampling_ratio), aligned, output);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t roi_align_backward(const T* grad_output, const T* rois, int64_t num_rois,
                               int64_t channels, int64_t height, int64_t width, int64_t out_h,
                               int64_t out_w, double spatial_scale, int64_t sampling_ratio,
                               bool aligned, T* grad_input, cudaStream_t stream) {
  const int64_t total = num_rois * channels * out_h * out_w;
  if (total > 0) {
    roi_align_backward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        total, grad_output, rois, channels, height, width, out_h, out_w, spatial_scale,
        static_cast<int>(sampling_ratio), aligned, grad_input);
  }
  return cudaGetLastError();
}

#define FRCNN_INSTANTIATE(T)                                                                  \
  template cudaError_t roi_align_forward<T>(const T*, const T*, int64_t, int64_t, int64_t,    \
                                            int64_t, int64_t, int64_t, double, int64_t, bool, \
                                            T*, cudaStream_t);                                \
  template cudaError_t roi_align_backward<T>(const T*, const T*, int64_t, int64_t, int64_t,   \
                                             int64_t, int64_t, int64_t, double, int64_t,      \
                                             bool, T*, cudaStream_t);
FRCNN_INSTANTIATE(float)
FRCNN_INSTANTIATE(double)
#undef FRCNN_INSTANTIATE

}  // namespace cuda
}  // namespace fasterrcnn
