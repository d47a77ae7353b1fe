// RoIPool bin bounds with torchvision's numerics: RoI coordinates rounded half away from zero
// after scaling, RoI length round(hi)-round(lo)+1 (at least 1), bin i = [floor(i*b),
// ceil((i+1)*b)) offset by the RoI start and clipped to [0, size].
#pragma once

#include <math.h>

#include "fasterrcnn/host_device.h"

namespace fasterrcnn {

struct BinRange {
  int start;
  int end;  // exclusive; end <= start means an empty bin
};

template <typename T>
HOST_DEVICE BinRange roi_pool_bin(T lo, T hi, double spatial_scale, int out_size, int bin,
                                  int size) {
  const int roi_start = static_cast<int>(round(lo * spatial_scale));
  const int roi_end = static_cast<int>(round(hi * spatial_scale));
  int length = roi_end - roi_start + 1;
  if (length < 1) length = 1;
  const T bin_size = static_cast<T>(length) / static_cast<T>(out_size);
  int start = static_cast<int>(floor(static_cast<T>(bin) * bin_size)) + roi_start;
  int end = static_cast<int>(ceil(static_cast<T>(bin + 1) * bin_size)) + roi_start;
  start = start < 0 ? 0 : (start > size ? size : start);
  end = end < 0 ? 0 : (end > size ? size : end);
  BinRange range;
  range.start = start;
  range.end = end;
  return range;
}

}  // namespace fasterrcnn
