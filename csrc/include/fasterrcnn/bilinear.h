// One-dimensional bilinear taps.  A 2-D bilinear weight is the product of the taps of its
// two axes, which is what makes RoIAlign and the crop sampler separable.
#pragma once

#include <math.h>

#include "fasterrcnn/host_device.h"

namespace fasterrcnn {

// Two neighbouring cells and their weights along one axis.  A tap with weight 0 may carry any
// in-range cell index.
template <typename T>
struct Taps {
  int low;
  int high;
  T w_low;
  T w_high;
};

// torchvision RoIAlign rule along one axis of `size` cells: a sample at pos < -1 or pos > size
// contributes nothing (returns false); pos <= 0 is clamped to 0; at or beyond the last cell
// both taps sit on cell size-1.
template <typename T>
HOST_DEVICE bool roi_align_taps(T pos, int size, Taps<T>* taps) {
  if (pos < T(-1.0) || pos > static_cast<T>(size)) {
    return false;
  }
  if (pos <= T(0)) {
    pos = T(0);
  }
  int low = static_cast<int>(pos);
  int high;
  if (low >= size - 1) {
    low = size - 1;
    high = size - 1;
    pos = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  const T frac = pos - static_cast<T>(low);
  taps->low = low;
  taps->high = high;
  taps->w_low = T(1) - frac;
  taps->w_high = frac;
  return true;
}

// grid_sample(bilinear, zeros padding) rule along one axis: taps floor(pos) and floor(pos)+1
// with weights (floor+1-pos) and (pos-floor); a tap outside [0, size) gets weight 0 (and a
// clamped index so callers may read it safely).
template <typename T>
HOST_DEVICE Taps<T> zero_padded_taps(T pos, int size) {
  const T fl = floor(pos);
  const int low = static_cast<int>(fl);
  Taps<T> taps;
  taps.w_low = (fl + T(1)) - pos;
  taps.w_high = pos - fl;
  const bool low_ok = low >= 0 && low < size;
  const bool high_ok = low + 1 >= 0 && low + 1 < size;
  taps.low = low_ok ? low : 0;
  taps.high = high_ok ? low + 1 : 0;
  if (!low_ok) taps.w_low = T(0);
  if (!high_ok) taps.w_high = T(0);
  return taps;
}

}  // namespace fasterrcnn
