// The fasterrcnn:: operators: one schema per op and backward op (like torchvision's
// csrc/ops/*.cpp).  Kernels are registered per dispatch key next to them: CPU in
// cpu/ops_cpu.cpp, CUDA in cuda_glue.cpp; the fake (meta) kernels, autograd and autocast in
// Python (fasterrcnn/ops/_library.py).  The Python module fasterrcnn._C only says whether the
// CUDA kernels were built; loading it registers the operators.  The module is made with the
// Python C API (like torchvision's _C) rather than pybind11: <torch/extension.h> took a minute
// of the build on 2 cores, this file now takes seconds.
#include <Python.h>
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

PyObject* has_cuda(PyObject* /*module*/, PyObject* /*args*/) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"has_cuda", has_cuda, METH_NOARGS, "has_cuda() -> bool: whether the CUDA kernels were built"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "_C",
    "Registers the torch.ops.fasterrcnn operators (NMS, RoIPool, RoIAlign, RoI crop)",
    -1,
    methods,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
