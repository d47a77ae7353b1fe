// NMS suppression mask on the GPU: the classic blocked 64-bit bitmask kernel.  Block (r, c)
// compares the 64 boxes of row block r with the 64 boxes of column block c; the greedy scan
// over the mask runs in the host glue.
#include "fasterrcnn/box_iou.h"
#include "fasterrcnn/cuda_launch.h"
#include "launch_utils.cuh"

namespace fasterrcnn {
namespace cuda {
namespace {

template <typename T>
__global__ void nms_mask_kernel(int64_t num_boxes, double iou_threshold, const T* boxes,
                                uint64_t* mask) {
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int64_t col_blocks = (num_boxes + kNmsBlock - 1) / kNmsBlock;
  const int64_t row_left = num_boxes - row_block * kNmsBlock;
  const int64_t col_left = num_boxes - col_block * kNmsBlock;
  const int row_size = static_cast<int>(row_left < kNmsBlock ? row_left : kNmsBlock);
  const int col_size = static_cast<int>(col_left < kNmsBlock ? col_left : kNmsBlock);

  __shared__ T block_boxes[kNmsBlock * 5];
  if (threadIdx.x < col_size) {
    const T* b = boxes + (col_block * kNmsBlock + threadIdx.x) * 4;
    T* s = block_boxes + threadIdx.x * 5;
    s[0] = b[0];
    s[1] = b[1];
    s[2] = b[2];
    s[3] = b[3];
    s[4] = box_area<T>(b[0], b[1], b[2], b[3]);
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int64_t cur = row_block * kNmsBlock + threadIdx.x;
    const T* a = boxes + cur * 4;
    const T area = box_area<T>(a[0], a[1], a[2], a[3]);
    uint64_t bits = 0;
    const int start = row_block == col_block ? static_cast<int>(threadIdx.x) + 1 : 0;
    for (int i = start; i < col_size; ++i) {
      const T* s = block_boxes + i * 5;
      const T iou = box_iou<T>(a[0], a[1], a[2], a[3], area, s[0], s[1], s[2], s[3], s[4]);
      if (static_cast<double>(iou) > iou_threshold) bits |= 1ULL << i;
    }
    mask[cur * col_blocks + col_block] = bits;
  }
}

}  // namespace

template <typename T>
cudaError_t nms_mask(const T* sorted_boxes, int64_t num_boxes, double iou_threshold,
                     uint64_t* mask, cudaStream_t stream) {
  if (num_boxes > 0) {
    const int64_t col_blocks = (num_boxes + kNmsBlock - 1) / kNmsBlock;
    const dim3 blocks(static_cast<unsigned int>(col_blocks),
                      static_cast<unsigned int>(col_blocks));
    nms_mask_kernel<T><<<blocks, kNmsBlock, 0, stream>>>(num_boxes, iou_threshold, sorted_boxes,
                                                         mask);
  }
  return cudaGetLastError();
}

template cudaError_t nms_mask<float>(const float*, int64_t, double, uint64_t*, cudaStream_t);
template cudaError_t nms_mask<double>(const double*, int64_t, double, uint64_t*, cudaStream_t);

}  // namespace cuda
}  // namespace fasterrcnn
