// Tensor-level entry points of the extension (CPU always, CUDA when built WITH_CUDA).
// rois are (K,5) = [batch_index, x1, y1, x2, y2]; argument checks happen in Python
// (fasterrcnn/ops/_checks.py) and again, briefly, here.  The argmax tensors returned by the
// roi_pool / roi_crop forwards are opaque: only the matching backward of the same device
// reads them (CPU roi_pool stores a uint8 position inside the bin when bins are small).
#pragma once

#include <tuple>

#include <ATen/core/Tensor.h>

namespace fasterrcnn {

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);
at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t out_h, int64_t out_w,
                                 int64_t sampling_ratio, bool aligned);
at::Tensor roi_align_backward_cpu(const at::Tensor& grad_output, const at::Tensor& rois,
                                  double spatial_scale, int64_t out_h, int64_t out_w,
                                  int64_t batch, int64_t channels, int64_t height, int64_t width,
                                  int64_t sampling_ratio, bool aligned);
std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cpu(const at::Tensor& input,
                                                        const at::Tensor& rois,
                                                        double spatial_scale, int64_t out_h,
                                                        int64_t out_w);
at::Tensor roi_pool_backward_cpu(const at::Tensor& grad_output, const at::Tensor& rois,
                                 const at::Tensor& argmax, double spatial_scale, int64_t batch,
                                 int64_t channels, int64_t height, int64_t width);
std::tuple<at::Tensor, at::Tensor> roi_crop_forward_cpu(const at::Tensor& input,
                                                        const at::Tensor& rois,
                                                        double spatial_scale, int64_t out_h,
                                                        int64_t out_w, bool max_pool);
at::Tensor roi_crop_backward_cpu(const at::Tensor& grad_output, const at::Tensor& rois,
                                 const at::Tensor& argmax, double spatial_scale, int64_t out_h,
                                 int64_t out_w, bool max_pool, int64_t batch, int64_t channels,
                                 int64_t height, int64_t width);

#ifdef WITH_CUDA
at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);
at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t out_h, int64_t out_w,
                                  int64_t sampling_ratio, bool aligned);
at::Tensor roi_align_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                   double spatial_scale, int64_t out_h, int64_t out_w,
                                   int64_t batch, int64_t channels, int64_t height, int64_t width,
                                   int64_t sampling_ratio, bool aligned);
std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cuda(const at::Tensor& input,
                                                         const at::Tensor& rois,
                                                         double spatial_scale, int64_t out_h,
                                                         int64_t out_w);
at::Tensor roi_pool_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                  const at::Tensor& argmax, int64_t batch, int64_t channels,
                                  int64_t height, int64_t width);
std::tuple<at::Tensor, at::Tensor> roi_crop_forward_cuda(const at::Tensor& input,
                                                         const at::Tensor& rois,
                                                         double spatial_scale, int64_t out_h,
                                                         int64_t out_w, bool max_pool);
at::Tensor roi_crop_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                  const at::Tensor& argmax, double spatial_scale, int64_t out_h,
                                  int64_t out_w, bool max_pool, int64_t batch, int64_t channels,
                                  int64_t height, int64_t width);
#endif

}  // namespace fasterrcnn
