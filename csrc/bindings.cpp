// The fasterrcnn:: operators: one schema per op and backward op (like torchvision's
// csrc/ops/*.cpp).  Kernels are registered per dispatch key next to them: CPU in
// cpu/ops_cpu.cpp, CUDA in cuda_glue.cpp; the fake (meta) kernels, autograd and autocast in
// Python (fasterrcnn/ops/_library.py).  The Python module fasterrcnn._C only says whether the
// CUDA kernels were built; loading it registers the operators.
#include <torch/extension.h>
#include <torch/library.h>

TORCH_LIBRARY(fasterrcnn, m) {
  m.set_python_module("fasterrcnn.ops._library");
  m.def("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor");
  m.def("nms_mask(Tensor dets, Tensor scores, float iou_threshold) -> Tensor");
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width) -> (Tensor, Tensor)");
  m.def(
      "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
      "SymInt height, SymInt width) -> Tensor");
  m.def(
      "roi_crop(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, bool max_pool) -> (Tensor, Tensor)");
  m.def(
      "_roi_crop_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, bool max_pool, SymInt batch_size, "
      "SymInt channels, SymInt height, SymInt width) -> Tensor");
}

namespace {

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Registers the torch.ops.fasterrcnn operators (NMS, RoIPool, RoIAlign, RoI crop)";
  m.def("has_cuda", &has_cuda, "whether the CUDA kernels were built");
}
