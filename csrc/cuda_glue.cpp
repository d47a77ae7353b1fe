// Tensor wrappers around the raw-pointer CUDA launchers (compiled only in CUDA builds).
#ifdef WITH_CUDA

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <vector>

#include "fasterrcnn/cuda_launch.h"
#include "ops.h"

namespace fasterrcnn {
namespace {

void check_cuda_rois(const at::Tensor& input, const at::Tensor& rois, const char* op) {
  TORCH_CHECK(input.is_cuda() && rois.is_cuda(), op, ": expected CUDA tensors");
  TORCH_CHECK(input.device() == rois.device(), op, ": input and rois on different devices");
  TORCH_CHECK(input.dim() == 4, op, ": input must be 4-D (B,C,H,W)");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op, ": rois must be (K,5)");
  TORCH_CHECK(input.scalar_type() == rois.scalar_type(), op, ": dtype mismatch");
  TORCH_CHECK(input.is_contiguous() && rois.is_contiguous(), op, ": expected contiguous tensors");
}

void check_launch(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(status));
}

}  // namespace

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(boxes.is_cuda() && scores.is_cuda(), "nms: expected CUDA tensors");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms: boxes must be (N,4)");
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "nms: scores must be (N,)");
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), "nms: dtype mismatch");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0,
                                                   /*descending=*/true));
  const at::Tensor sorted = boxes.index_select(0, order).contiguous();
  const int64_t col_blocks = (n + cuda::kNmsBlock - 1) / cuda::kNmsBlock;
  at::Tensor mask = at::empty({n, col_blocks}, boxes.options().dtype(at::kLong));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(sorted.scalar_type(), "nms_cuda", [&] {
    check_launch(cuda::nms_mask<scalar_t>(sorted.data_ptr<scalar_t>(), n, iou_threshold,
                                          reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()),
                                          stream),
                 "nms");
  });
  const at::Tensor mask_cpu = mask.to(at::kCPU);
  const uint64_t* bits = reinterpret_cast<const uint64_t*>(mask_cpu.data_ptr<int64_t>());
  std::vector<uint64_t> removed(col_blocks, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / cuda::kNmsBlock;
    const int64_t bit = i % cuda::kNmsBlock;
    if (removed[block] & (1ULL << bit)) continue;
    keep.push_back(i);
    const uint64_t* row = bits + i * col_blocks;
    for (int64_t j = block; j < col_blocks; ++j) removed[j] |= row[j];
  }
  const at::Tensor keep_cpu = at::tensor(keep, at::TensorOptions().dtype(at::kLong));
  return order.index_select(0, keep_cpu.to(boxes.device(), /*non_blocking=*/false));
}

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t out_h, int64_t out_w,
                                  int64_t sampling_ratio, bool aligned) {
  check_cuda_rois(input, rois, "roi_align");
  const c10::cuda::CUDAGuard guard(input.device());
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

at::Tensor roi_align_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                   double spatial_scale, int64_t out_h, int64_t out_w,
                                   int64_t batch, int64_t channels, int64_t height, int64_t width,
                                   int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(grad_output.is_contiguous() && rois.is_contiguous(),
              "roi_align_backward: expected contiguous tensors");
  const c10::cuda::CUDAGuard guard(grad_output.device());
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

std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cuda(const at::Tensor& input,
                                                         const at::Tensor& rois,
                                                         double spatial_scale, int64_t out_h,
                                                         int64_t out_w) {
  check_cuda_rois(input, rois, "roi_pool");
  const c10::cuda::CUDAGuard guard(input.device());
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

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                  const at::Tensor& argmax, int64_t batch, int64_t channels,
                                  int64_t height, int64_t width) {
  TORCH_CHECK(grad_output.is_contiguous() && argmax.is_contiguous() && rois.is_contiguous(),
              "roi_pool_backward: expected contiguous tensors");
  const c10::cuda::CUDAGuard guard(grad_output.device());
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

std::tuple<at::Tensor, at::Tensor> roi_crop_forward_cuda(const at::Tensor& input,
                                                         const at::Tensor& rois,
                                                         double spatial_scale, int64_t out_h,
                                                         int64_t out_w, bool max_pool) {
  check_cuda_rois(input, rois, "roi_crop");
  const c10::cuda::CUDAGuard guard(input.device());
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

at::Tensor roi_crop_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                  const at::Tensor& argmax, double spatial_scale, int64_t out_h,
                                  int64_t out_w, bool max_pool, int64_t batch, int64_t channels,
                                  int64_t height, int64_t width) {
  TORCH_CHECK(grad_output.is_contiguous() && argmax.is_contiguous() && rois.is_contiguous(),
              "roi_crop_backward: expected contiguous tensors");
  const c10::cuda::CUDAGuard guard(grad_output.device());
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

}  // namespace fasterrcnn

#endif  // WITH_CUDA
