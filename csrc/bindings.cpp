// Python bindings of fasterrcnn._C: plain functions that dispatch on the device of their
// inputs; autograd lives in Python (fasterrcnn/ops/*.py, torch.autograd.Function).
#include <torch/extension.h>

#include "ops.h"

namespace fasterrcnn {
namespace {

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

[[noreturn]] void no_cuda(const char* op) {
  TORCH_CHECK(false, op, ": fasterrcnn._C was built without CUDA support");
}

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  if (boxes.is_cuda()) {
#ifdef WITH_CUDA
    return nms_cuda(boxes, scores, iou_threshold);
#else
    no_cuda("nms");
#endif
  }
  return nms_cpu(boxes, scores, iou_threshold);
}

at::Tensor roi_align_forward(const at::Tensor& input, const at::Tensor& rois,
                             double spatial_scale, int64_t out_h, int64_t out_w,
                             int64_t sampling_ratio, bool aligned) {
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return roi_align_forward_cuda(input, rois, spatial_scale, out_h, out_w, sampling_ratio,
                                  aligned);
#else
    no_cuda("roi_align");
#endif
  }
  return roi_align_forward_cpu(input, rois, spatial_scale, out_h, out_w, sampling_ratio,
                               aligned);
}

at::Tensor roi_align_backward(const at::Tensor& grad_output, const at::Tensor& rois,
                              double spatial_scale, int64_t out_h, int64_t out_w, int64_t batch,
                              int64_t channels, int64_t height, int64_t width,
                              int64_t sampling_ratio, bool aligned) {
  if (grad_output.is_cuda()) {
#ifdef WITH_CUDA
    return roi_align_backward_cuda(grad_output, rois, spatial_scale, out_h, out_w, batch,
                                   channels, height, width, sampling_ratio, aligned);
#else
    no_cuda("roi_align");
#endif
  }
  return roi_align_backward_cpu(grad_output, rois, spatial_scale, out_h, out_w, batch, channels,
                                height, width, sampling_ratio, aligned);
}

std::tuple<at::Tensor, at::Tensor> roi_pool_forward(const at::Tensor& input,
                                                    const at::Tensor& rois, double spatial_scale,
                                                    int64_t out_h, int64_t out_w) {
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return roi_pool_forward_cuda(input, rois, spatial_scale, out_h, out_w);
#else
    no_cuda("roi_pool");
#endif
  }
  return roi_pool_forward_cpu(input, rois, spatial_scale, out_h, out_w);
}

at::Tensor roi_pool_backward(const at::Tensor& grad_output, const at::Tensor& rois,
                             const at::Tensor& argmax, double spatial_scale, int64_t batch,
                             int64_t channels, int64_t height, int64_t width) {
  if (grad_output.is_cuda()) {
#ifdef WITH_CUDA
    return roi_pool_backward_cuda(grad_output, rois, argmax, batch, channels, height, width);
#else
    no_cuda("roi_pool");
#endif
  }
  return roi_pool_backward_cpu(grad_output, rois, argmax, spatial_scale, batch, channels, height,
                               width);
}

std::tuple<at::Tensor, at::Tensor> roi_crop_forward(const at::Tensor& input,
                                                    const at::Tensor& rois, double spatial_scale,
                                                    int64_t out_h, int64_t out_w, bool max_pool) {
  if (input.is_cuda()) {
#ifdef WITH_CUDA
    return roi_crop_forward_cuda(input, rois, spatial_scale, out_h, out_w, max_pool);
#else
    no_cuda("roi_crop");
#endif
  }
  return roi_crop_forward_cpu(input, rois, spatial_scale, out_h, out_w, max_pool);
}

at::Tensor roi_crop_backward(const at::Tensor& grad_output, const at::Tensor& rois,
                             const at::Tensor& argmax, double spatial_scale, int64_t out_h,
                             int64_t out_w, bool max_pool, int64_t batch, int64_t channels,
                             int64_t height, int64_t width) {
  if (grad_output.is_cuda()) {
#ifdef WITH_CUDA
    return roi_crop_backward_cuda(grad_output, rois, argmax, spatial_scale, out_h, out_w,
                                  max_pool, batch, channels, height, width);
#else
    no_cuda("roi_crop");
#endif
  }
  return roi_crop_backward_cpu(grad_output, rois, argmax, spatial_scale, out_h, out_w, max_pool,
                               batch, channels, height, width);
}

}  // namespace
}  // namespace fasterrcnn

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Compiled NMS / RoIPool / RoIAlign / RoI crop kernels of fasterrcnn";
  m.def("has_cuda", &fasterrcnn::has_cuda, "whether the CUDA kernels were built");
  m.def("nms", &fasterrcnn::nms, "boxes (N,4), scores (N,), iou_threshold -> kept indices");
  m.def("roi_align_forward", &fasterrcnn::roi_align_forward);
  m.def("roi_align_backward", &fasterrcnn::roi_align_backward);
  m.def("roi_pool_forward", &fasterrcnn::roi_pool_forward);
  m.def("roi_pool_backward", &fasterrcnn::roi_pool_backward);
  m.def("roi_crop_forward", &fasterrcnn::roi_crop_forward);
  m.def("roi_crop_backward", &fasterrcnn::roi_crop_backward);
}
