// CUDA kernels of the fasterrcnn:: operators: Tensor wrappers (argument checks, contiguity,
// dtype dispatch, device guard, stream) around the raw-pointer launchers of csrc/cuda/*.cu,
// registered under the CUDA dispatch key at the end of the file.  Compiled only WITH_CUDA.
#ifdef WITH_CUDA

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "fasterrcnn/cuda_launch.h"
#include "op_checks.h"

namespace fasterrcnn {
namespace {

void check_launch(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(status));
}

void check_cuda_device(const at::Tensor& tensor, const char* op) {
  TORCH_CHECK_VALUE(tensor.is_cuda(), op, ": expected CUDA tensors, got ", tensor.device());
}

// Greedy NMS on the device: score order (stable, decreasing) and the keep flags in that order.
// No host synchronisation: the mask kernel and the single-block scan both run on the stream.
std::tuple<at::Tensor, at::Tensor> nms_keep_sorted(const at::Tensor& boxes,
                                                   const at::Tensor& scores,
                                                   double iou_threshold) {
  const int64_t n = boxes.size(0);
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0,
                                                   /*descending=*/true));
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kBool));
  if (n == 0) return {order, keep};
  const at::Tensor sorted = boxes.index_select(0, order).contiguous();
  const int64_t col_blocks = (n + cuda::kNmsBlock - 1) / cuda::kNmsBlock;
  at::Tensor mask = at::empty({n, col_blocks}, boxes.options().dtype(at::kLong));
  uint64_t* mask_bits = reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sorted.scalar_type(), "nms_cuda", [&] {
    check_launch(cuda::nms_mask<scalar_t>(sorted.data_ptr<scalar_t>(), n, iou_threshold,
                                          mask_bits, stream),
                 "nms");
  });
  at::Tensor workspace;
  if (!cuda::nms_keep_fits_shared_memory(n)) {
    workspace = at::empty({col_blocks}, boxes.options().dtype(at::kLong));
  }
  uint64_t* workspace_bits =
      workspace.defined() ? reinterpret_cast<uint64_t*>(workspace.data_ptr<int64_t>()) : nullptr;
  check_launch(cuda::nms_keep(mask_bits, n, workspace_bits, keep.data_ptr<bool>(), stream),
               "nms");
  return {order, keep};
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_op("nms", boxes, scores);
  check_cuda_device(boxes, "nms");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const auto [order, keep] = nms_keep_sorted(boxes, scores, iou_threshold);
  // the one synchronisation: the number of kept boxes sizes the result
  return order.masked_select(keep);
}

at::Tensor nms_mask_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                         double iou_threshold) {
  check_nms_op("nms_mask", boxes, scores);
  check_cuda_device(boxes, "nms_mask");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const auto [order, keep] = nms_keep_sorted(boxes, scores, iou_threshold);
  return at::empty_like(keep).scatter_(0, order, keep);
}

at::Tensor roi_align_forward_cuda(const at::Tensor& input_arg, const at::Tensor& rois_arg,
                                  double spatial_scale, int64_t out_h, int64_t out_w,
                                  int64_t sampling_ratio, bool aligned) {
  check_roi_op("roi_align", input_arg, rois_arg, spatial_scale, out_h, out_w);
  check_cuda_device(input_arg, "roi_align");
  const c10::cuda::CUDAGuard guard(input_arg.device());
  const at::Tensor input = input_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  at::Tensor output = at::empty({rois.size(0), input.size(1), out_h, out_w}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward_cuda", [&] {
    check_launch(cuda::roi_align_forward<scalar_t>(
                     input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), rois.size(0),
                     input.size(1), input.size(2), input.size(3), out_h, out_w, spatial_scale,
                     sampling_ratio, aligned, output.data_ptr<scalar_t>(),
                     c10::cuda::getCurrentCUDAStream()),
                 "roi_align");
  });
  return output;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad_arg, const at::Tensor& rois_arg,
                                   double spatial_scale, int64_t out_h, int64_t out_w,
                                   int64_t batch, int64_t channels, int64_t height, int64_t width,
                                   int64_t sampling_ratio, bool aligned) {
  check_roi_backward_op("_roi_align_backward", grad_arg, rois_arg, out_h, out_w);
  check_cuda_device(grad_arg, "_roi_align_backward");
  const c10::cuda::CUDAGuard guard(grad_arg.device());
  const at::Tensor grad_output = grad_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_align_backward_cuda", [&] {
    check_launch(cuda::roi_align_backward<scalar_t>(
                     grad_output.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), rois.size(0),
                     channels, height, width, out_h, out_w, spatial_scale, sampling_ratio,
                     aligned, grad_input.data_ptr<scalar_t>(), c10::cuda::getCurrentCUDAStream()),
                 "roi_align_backward");
  });
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cuda(const at::Tensor& input_arg,
                                                         const at::Tensor& rois_arg,
                                                         double spatial_scale, int64_t out_h,
                                                         int64_t out_w) {
  check_roi_op("roi_pool", input_arg, rois_arg, spatial_scale, out_h, out_w);
  check_cuda_device(input_arg, "roi_pool");
  const c10::cuda::CUDAGuard guard(input_arg.device());
  const at::Tensor input = input_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  at::Tensor output = at::empty({rois.size(0), input.size(1), out_h, out_w}, input.options());
  at::Tensor argmax = at::empty(output.sizes(), input.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_forward_cuda", [&] {
    check_launch(cuda::roi_pool_forward<scalar_t>(
                     input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), rois.size(0),
                     input.size(1), input.size(2), input.size(3), out_h, out_w, spatial_scale,
                     output.data_ptr<scalar_t>(), argmax.data_ptr<int32_t>(),
                     c10::cuda::getCurrentCUDAStream()),
                 "roi_pool");
  });
  return {output, argmax};
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad_arg, const at::Tensor& rois_arg,
                                  const at::Tensor& argmax_arg, double /*spatial_scale*/,
                                  int64_t out_h, int64_t out_w, int64_t batch, int64_t channels,
                                  int64_t height, int64_t width) {
  check_roi_backward_op("_roi_pool_backward", grad_arg, rois_arg, out_h, out_w);
  check_cuda_device(grad_arg, "_roi_pool_backward");
  TORCH_CHECK_VALUE(argmax_arg.sizes() == grad_arg.sizes() &&
                        argmax_arg.scalar_type() == at::kInt,
                    "_roi_pool_backward: argmax must be int32 of the shape of grad, got ",
                    argmax_arg.scalar_type(), " ", argmax_arg.sizes());
  const c10::cuda::CUDAGuard guard(grad_arg.device());
  const at::Tensor grad_output = grad_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  const at::Tensor argmax = argmax_arg.contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_pool_backward_cuda", [&] {
    check_launch(cuda::roi_pool_backward<scalar_t>(
                     grad_output.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                     argmax.data_ptr<int32_t>(), rois.size(0), channels, height, width,
                     grad_output.size(2), grad_output.size(3), grad_input.data_ptr<scalar_t>(),
                     c10::cuda::getCurrentCUDAStream()),
                 "roi_pool_backward");
  });
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor> roi_crop_forward_cuda(const at::Tensor& input_arg,
                                                         const at::Tensor& rois_arg,
                                                         double spatial_scale, int64_t out_h,
                                                         int64_t out_w, bool max_pool) {
  check_roi_op("roi_crop", input_arg, rois_arg, spatial_scale, out_h, out_w);
  check_cuda_device(input_arg, "roi_crop");
  TORCH_CHECK_VALUE(input_arg.size(2) > 1 && input_arg.size(3) > 1,
                    "roi_crop: feature map must be at least 2x2, got ", input_arg.sizes());
  const c10::cuda::CUDAGuard guard(input_arg.device());
  const at::Tensor input = input_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  at::Tensor output = at::empty({rois.size(0), input.size(1), out_h, out_w}, input.options());
  at::Tensor argmax = at::zeros(max_pool ? output.sizes() : at::IntArrayRef{0},
                                input.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_crop_forward_cuda", [&] {
    check_launch(cuda::roi_crop_forward<scalar_t>(
                     input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(), rois.size(0),
                     input.size(1), input.size(2), input.size(3), out_h, out_w, spatial_scale,
                     max_pool, output.data_ptr<scalar_t>(), argmax.data_ptr<uint8_t>(),
                     c10::cuda::getCurrentCUDAStream()),
                 "roi_crop");
  });
  return {output, argmax};
}

at::Tensor roi_crop_backward_cuda(const at::Tensor& grad_arg, const at::Tensor& rois_arg,
                                  const at::Tensor& argmax_arg, double spatial_scale,
                                  int64_t out_h, int64_t out_w, bool max_pool, int64_t batch,
                                  int64_t channels, int64_t height, int64_t width) {
  check_roi_backward_op("_roi_crop_backward", grad_arg, rois_arg, out_h, out_w);
  check_cuda_device(grad_arg, "_roi_crop_backward");
  TORCH_CHECK_VALUE(!max_pool || argmax_arg.sizes() == grad_arg.sizes(),
                    "_roi_crop_backward: argmax must have the shape of grad, got ",
                    argmax_arg.sizes());
  const c10::cuda::CUDAGuard guard(grad_arg.device());
  const at::Tensor grad_output = grad_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  const at::Tensor argmax = argmax_arg.contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_crop_backward_cuda", [&] {
    check_launch(cuda::roi_crop_backward<scalar_t>(
                     grad_output.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                     argmax.data_ptr<uint8_t>(), rois.size(0), channels, height, width, out_h,
                     out_w, spatial_scale, max_pool, grad_input.data_ptr<scalar_t>(),
                     c10::cuda::getCurrentCUDAStream()),
                 "roi_crop_backward");
  });
  return grad_input;
}

}  // namespace
}  // namespace fasterrcnn

TORCH_LIBRARY_IMPL(fasterrcnn, CUDA, m) {
  m.impl("nms", &fasterrcnn::nms_cuda);
  m.impl("nms_mask", &fasterrcnn::nms_mask_cuda);
  m.impl("roi_align", &fasterrcnn::roi_align_forward_cuda);
  m.impl("_roi_align_backward", &fasterrcnn::roi_align_backward_cuda);
  m.impl("roi_pool", &fasterrcnn::roi_pool_forward_cuda);
  m.impl("_roi_pool_backward", &fasterrcnn::roi_pool_backward_cuda);
  m.impl("roi_crop", &fasterrcnn::roi_crop_forward_cuda);
  m.impl("_roi_crop_backward", &fasterrcnn::roi_crop_backward_cuda);
}

#endif  // WITH_CUDA
