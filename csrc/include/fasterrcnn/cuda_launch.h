// Host launch functions of the CUDA kernels (csrc/cuda/*.cu).  Raw device pointers, sizes and
// a stream only: no torch headers, so the .cu files build with a plain `nvcc -c`.
// Layouts: input (B,C,H,W), rois (K,5) = [batch_index, x1, y1, x2, y2], outputs (K,C,h,w),
// all contiguous.  Each launcher returns the launch status (cudaGetLastError()).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace fasterrcnn {
namespace cuda {

// Boxes per 64-bit word of the NMS suppression mask.
constexpr int kNmsBlock = 64;

// sorted_boxes (N,4) by decreasing score -> mask (N, ceil(N/64)): bit j of word (i, j/64) set
// when box j > i overlaps box i with IoU > iou_threshold.
template <typename T>
cudaError_t nms_mask(const T* sorted_boxes, int64_t num_boxes, double iou_threshold,
                     uint64_t* mask, cudaStream_t stream);

// Threads of the single block that scans the mask, and the shared memory it may use for the
// suppressed bits (the default per-block limit).
constexpr int kNmsScanThreads = 256;
constexpr int64_t kNmsSharedBytes = 48 * 1024;

// Whether nms_keep can hold its ceil(N/64) suppressed words in shared memory; when not, it
// needs a device workspace of that many words.
bool nms_keep_fits_shared_memory(int64_t num_boxes);

// mask of nms_mask -> keep (N,) bool in sorted order: greedy NMS scanned on the device (one
// block, no host copy).  workspace: nullptr, or ceil(N/64) words when the bits do not fit in
// shared memory (no initialisation needed).
cudaError_t nms_keep(const uint64_t* mask, int64_t num_boxes, uint64_t* workspace, bool* keep,
                     cudaStream_t stream);

template <typename T>
cudaError_t roi_align_forward(const T* input, const T* rois, int64_t num_rois, int64_t channels,
                              int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                              double spatial_scale, int64_t sampling_ratio, bool aligned,
                              T* output, cudaStream_t stream);

// grad_input must be zero-filled; gradients are accumulated atomically.
template <typename T>
cudaError_t roi_align_backward(const T* grad_output, const T* rois, int64_t num_rois,
                               int64_t channels, int64_t height, int64_t width, int64_t out_h,
                               int64_t out_w, double spatial_scale, int64_t sampling_ratio,
                               bool aligned, T* grad_input, cudaStream_t stream);

// argmax: flat index in the H*W plane of each output's maximum, -1 for empty bins.
template <typename T>
cudaError_t roi_pool_forward(const T* input, const T* rois, int64_t num_rois, int64_t channels,
                             int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                             double spatial_scale, T* output, int32_t* argmax,
                             cudaStream_t stream);

template <typename T>
cudaError_t roi_pool_backward(const T* grad_output, const T* rois, const int32_t* argmax,
                              int64_t num_rois, int64_t channels, int64_t height, int64_t width,
                              int64_t out_h, int64_t out_w, T* grad_input, cudaStream_t stream);

// argmax (only when max_pool): position 0..3 (= dy*2+dx) of the maximum in each 2x2 window.
template <typename T>
cudaError_t roi_crop_forward(const T* input, const T* rois, int64_t num_rois, int64_t channels,
                             int64_t height, int64_t width, int64_t out_h, int64_t out_w,
                             double spatial_scale, bool max_pool, T* output, uint8_t* argmax,
                             cudaStream_t stream);

template <typename T>
cudaError_t roi_crop_backward(const T* grad_output, const T* rois, const uint8_t* argmax,
                              int64_t num_rois, int64_t channels, int64_t height, int64_t width,
                              int64_t out_h, int64_t out_w, double spatial_scale, bool max_pool,
                              T* grad_input, cudaStream_t stream);

}  // namespace cuda
}  // namespace fasterrcnn
