// IoU test used by NMS, torchvision convention: area = (x2-x1)*(y2-y1), no +1.
#pragma once

#include "fasterrcnn/host_device.h"

namespace fasterrcnn {

template <typename T>
HOST_DEVICE T box_area(T x1, T y1, T x2, T y2) {
  return (x2 - x1) * (y2 - y1);
}

// IoU of box a and box b given their areas, computed in the box dtype like torchvision.
template <typename T>
HOST_DEVICE T box_iou(T ax1, T ay1, T ax2, T ay2, T area_a, T bx1, T by1, T bx2, T by2,
                      T area_b) {
  const T xx1 = ax1 > bx1 ? ax1 : bx1;
  const T yy1 = ay1 > by1 ? ay1 : by1;
  const T xx2 = ax2 < bx2 ? ax2 : bx2;
  const T yy2 = ay2 < by2 ? ay2 : by2;
  const T w = xx2 - xx1 > T(0) ? xx2 - xx1 : T(0);
  const T h = yy2 - yy1 > T(0) ? yy2 - yy1 : T(0);
  const T inter = w * h;
  return inter / (area_a + area_b - inter);
}

}  // namespace fasterrcnn
