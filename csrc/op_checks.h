// Argument checks of the fasterrcnn:: operators, shared by their CPU and CUDA kernels.  Every
// message names the operator and the argument; TORCH_CHECK_VALUE / TORCH_CHECK_TYPE surface in
// Python as ValueError / TypeError, like the checks of fasterrcnn/ops/_checks.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace fasterrcnn {

// input (B,C,H,W) floating, rois (K,5) of the same dtype and device, positive output size and
// spatial_scale.  Batch indices are checked by the kernels that read them.
inline void check_roi_op(const char* op, const at::Tensor& input, const at::Tensor& rois,
                         double spatial_scale, int64_t pooled_height, int64_t pooled_width) {
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": input must be 4-D (B,C,H,W), got shape ",
                    input.sizes());
  TORCH_CHECK_TYPE(input.is_floating_point(), op, ": input must be a floating tensor, got ",
                   input.scalar_type());
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, op,
                    ": rois must have shape (K,5) = [batch_index, x1, y1, x2, y2], got ",
                    rois.sizes());
  TORCH_CHECK_TYPE(rois.scalar_type() == input.scalar_type(), op, ": rois dtype ",
                   rois.scalar_type(), " does not match input dtype ", input.scalar_type());
  TORCH_CHECK_VALUE(rois.device() == input.device(), op, ": rois on ", rois.device(),
                    " but input on ", input.device());
  TORCH_CHECK_VALUE(pooled_height > 0 && pooled_width > 0, op,
                    ": output_size must be positive, got (", pooled_height, ", ", pooled_width,
                    ")");
  TORCH_CHECK_VALUE(spatial_scale > 0, op, ": spatial_scale must be positive, got ",
                    spatial_scale);
}

// grad (K,C,h,w) of a RoI op's output for `rois` (K,5) on the same device.
inline void check_roi_backward_op(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                                  int64_t pooled_height, int64_t pooled_width) {
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, op,
                    ": rois must have shape (K,5), got ", rois.sizes());
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == rois.size(0) &&
                        grad.size(2) == pooled_height && grad.size(3) == pooled_width,
                    op, ": grad must have shape (K, C, ", pooled_height, ", ", pooled_width,
                    ") with K = ", rois.size(0), ", got ", grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == rois.scalar_type(), op, ": grad dtype ",
                   grad.scalar_type(), " does not match rois dtype ", rois.scalar_type());
  TORCH_CHECK_VALUE(grad.device() == rois.device(), op, ": grad and rois on different devices");
}

// boxes (N,4) floating, scores (N,) of the same dtype and device.
inline void check_nms_op(const char* op, const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4, op,
                    ": boxes must have shape (N,4), got ", boxes.sizes());
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == boxes.size(0), op,
                    ": scores must have shape (N,) with N = ", boxes.size(0), ", got ",
                    scores.sizes());
  TORCH_CHECK_TYPE(boxes.is_floating_point(), op, ": boxes must be a floating tensor, got ",
                   boxes.scalar_type());
  TORCH_CHECK_TYPE(scores.scalar_type() == boxes.scalar_type(), op, ": scores dtype ",
                   scores.scalar_type(), " does not match boxes dtype ", boxes.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == boxes.device(), op, ": scores on ", scores.device(),
                    " but boxes on ", boxes.device());
}

}  // namespace fasterrcnn
