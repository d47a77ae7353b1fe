// NMS on the GPU without a host round trip (torchvision's bitmask approach): the blocked 64-bit
// suppression mask kernel, block (r, c) comparing the 64 boxes of row block r with the 64
// boxes of column block c, then a single-block kernel that runs the greedy scan over the mask
// on the device and writes the keep flags.
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

// One block walks the score-sorted boxes in order.  `removed` (ceil(N/64) words, in shared
// memory or in `workspace`) holds the suppressed bits; a kept box ORs its mask row into it,
// the threads sharing the words.  Every thread reads the same `removed` word, so all take the
// same branch and the barriers inside it are uniform.
__global__ void nms_keep_kernel(const uint64_t* mask, int64_t num_boxes, uint64_t* workspace,
                                bool* keep) {
  extern __shared__ uint64_t shared_removed[];
  uint64_t* removed = workspace != nullptr ? workspace : shared_removed;
  const int64_t col_blocks = (num_boxes + kNmsBlock - 1) / kNmsBlock;
  for (int64_t j = threadIdx.x; j < col_blocks; j += blockDim.x) removed[j] = 0;
  __syncthreads();
  for (int64_t block = 0; block < col_blocks; ++block) {
    uint64_t removed_here = removed[block];
    __syncthreads();
    const int64_t first = block * kNmsBlock;
    const int count = static_cast<int>(
        num_boxes - first < kNmsBlock ? num_boxes - first : kNmsBlock);
    for (int bit = 0; bit < count; ++bit) {
      const bool kept = !(removed_here & (1ULL << bit));
      if (threadIdx.x == 0) keep[first + bit] = kept;
      if (!kept) continue;
      const uint64_t* row = mask + (first + bit) * col_blocks;
      for (int64_t j = block + threadIdx.x; j < col_blocks; j += blockDim.x) removed[j] |= row[j];
      __syncthreads();
      removed_here = removed[block];
      __syncthreads();
    }
  }
}

}  // namespace

bool nms_keep_fits_shared_memory(int64_t num_boxes) {
  const int64_t col_blocks = (num_boxes + kNmsBlock - 1) / kNmsBlock;
  return col_blocks * static_cast<int64_t>(sizeof(uint64_t)) <= kNmsSharedBytes;
}

cudaError_t nms_keep(const uint64_t* mask, int64_t num_boxes, uint64_t* workspace, bool* keep,
                     cudaStream_t stream) {
  if (num_boxes > 0) {
    const int64_t col_blocks = (num_boxes + kNmsBlock - 1) / kNmsBlock;
    const int threads = static_cast<int>(col_blocks < kNmsScanThreads ? col_blocks
                                                                      : kNmsScanThreads);
    const size_t shared = workspace != nullptr ? 0 : col_blocks * sizeof(uint64_t);
    nms_keep_kernel<<<1, threads, shared, stream>>>(mask, num_boxes, workspace, keep);
  }
  return cudaGetLastError();
}

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
