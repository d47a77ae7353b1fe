// Geometry of faster-rcnn.pytorch's "crop" pooling, mirroring F.affine_grid(theta,
// align_corners=True) followed by F.grid_sample(align_corners=True, zeros padding):
// theta_x = [(x2-x1)/(W-1), 0, (x1+x2-W+1)/(W-1)] with x1, x2 = RoI * spatial_scale, grid
// coordinate xn = linspace(-1, 1, n)[j], sample x = (theta_x . [xn, yn, 1] + 1) / 2 * (W-1).
#pragma once

#include "fasterrcnn/bilinear.h"
#include "fasterrcnn/host_device.h"

namespace fasterrcnn {

// torch.linspace(-1, 1, n)[i] as computed by ATen (0 when n <= 1, like affine_grid).
template <typename T>
HOST_DEVICE T linspace_neg_one(int i, int n) {
  if (n <= 1) return T(0);
  const T step = T(2) / static_cast<T>(n - 1);
  return i < n / 2 ? T(-1) + step * static_cast<T>(i) : T(1) - step * static_cast<T>(n - 1 - i);
}

template <typename T>
struct CropAxis {
  T scale;  // theta diagonal entry
  T shift;  // theta translation entry
};

// lo, hi: RoI bounds in image pixels along the axis; size: feature map size (> 1).
template <typename T>
HOST_DEVICE CropAxis<T> crop_axis(T lo, T hi, double spatial_scale, int size) {
  const T s = static_cast<T>(spatial_scale);
  const T a = lo * s;
  const T b = hi * s;
  const T denom = static_cast<T>(size - 1);
  CropAxis<T> axis;
  axis.scale = (b - a) / denom;
  axis.shift = ((a + b) - static_cast<T>(size) + T(1)) / denom;
  return axis;
}

// Bilinear taps (zero padding) of grid point i of n along the axis.
template <typename T>
HOST_DEVICE Taps<T> crop_taps(const CropAxis<T>& axis, int i, int n, int size) {
  const T normalized = axis.scale * linspace_neg_one<T>(i, n) + axis.shift;
  const T pos = ((normalized + T(1)) / T(2)) * static_cast<T>(size - 1);
  return zero_padded_taps<T>(pos, size);
}

}  // namespace fasterrcnn
