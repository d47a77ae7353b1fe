// RoIAlign geometry along one axis, with torchvision's numerics (aligned offset, minimum RoI
// size 1 when not aligned, adaptive sampling grid ceil(roi_size / out_size)).
#pragma once

#include <math.h>

#include "fasterrcnn/bilinear.h"
#include "fasterrcnn/host_device.h"

namespace fasterrcnn {

template <typename T>
struct AlignAxis {
  T start;     // first RoI coordinate on the feature map
  T bin_size;  // RoI length / out_size
  int grid;    // samples per bin along this axis (<= 0: the RoI has no samples)
};

// lo, hi: RoI bounds in image pixels along the axis.
template <typename T>
HOST_DEVICE AlignAxis<T> roi_align_axis(T lo, T hi, double spatial_scale, int out_size,
                                        int sampling_ratio, bool aligned) {
  const T offset = aligned ? T(0.5) : T(0);
  AlignAxis<T> axis;
  axis.start = static_cast<T>(lo * spatial_scale - offset);
  const T end = static_cast<T>(hi * spatial_scale - offset);
  T length = end - axis.start;
  if (!aligned && length < T(1)) {
    length = T(1);
  }
  axis.bin_size = length / static_cast<T>(out_size);
  axis.grid = sampling_ratio > 0 ? sampling_ratio
                                 : static_cast<int>(ceil(length / static_cast<T>(out_size)));
  return axis;
}

// Position of sample `i` (0 <= i < grid) of bin `bin`.
template <typename T>
HOST_DEVICE T roi_align_sample(const AlignAxis<T>& axis, int bin, int i) {
  return axis.start + static_cast<T>(bin) * axis.bin_size +
         static_cast<T>(i + 0.5f) * axis.bin_size / static_cast<T>(axis.grid);
}

// Number of samples averaged per bin (torchvision: max(grid_h * grid_w, 1)).
HOST_DEVICE int roi_align_count(int grid_h, int grid_w) {
  const int count = grid_h * grid_w;
  return count > 1 ? count : 1;
}

}  // namespace fasterrcnn
