// CPU kernels of all fasterrcnn:: operators in one translation unit (few torch-including files
// keep builds fast), registered under the CPU dispatch key at the end of the file.
// The per-element maths comes from csrc/include/fasterrcnn/*.h, shared with the CUDA kernels.
// Forward passes parallelise over RoIs (and rows or channels); backward passes over channels,
// so every thread writes its own part of the gradient and no atomics are needed.
// Per-operator headers instead of <ATen/ATen.h>: the build parses a fraction of ATen.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "fasterrcnn/box_iou.h"
#include "fasterrcnn/roi_align_math.h"
#include "fasterrcnn/roi_crop_math.h"
#include "fasterrcnn/roi_pool_math.h"
#include "op_checks.h"

namespace fasterrcnn {
namespace {

// Minimum work (output elements or scattered gradients) per thread.  Waking a second thread
// costs microseconds on an idle machine but up to a scheduler slice (~10 ms) on a loaded one,
// so small problems (tests, tiny batches) run on the calling thread.
constexpr int64_t kMinWorkPerThread = 1 << 16;

// Grain (items per thread) for at::parallel_for when each item costs `work_per_item`.
int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kMinWorkPerThread / std::max<int64_t>(work_per_item, 1));
}

// Batch index of every RoI (truncated like torchvision), checked against the batch size.
template <typename T>
std::vector<int64_t> roi_batch_indices(const char* op, const T* rois, int64_t num_rois,
                                       int64_t batch) {
  std::vector<int64_t> out(num_rois);
  for (int64_t k = 0; k < num_rois; ++k) {
    out[k] = static_cast<int64_t>(rois[k * 5]);
    TORCH_CHECK_VALUE(out[k] >= 0 && out[k] < batch, op, ": rois batch indices must lie in [0, ",
                      batch, ") for an input batch of ", batch, ", got ", out[k]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// RoIAlign: for every RoI and bin, the sample taps of each axis merged into a short list of
// (cell, weight) pairs, weights already divided by the samples per bin.  A bin's value is
// sum_i wy_i * sum_j wx_j * F[y_i, x_j]  (the 2-D weights are products of the 1-D ones).

template <typename T>
struct AxisTable {
  int64_t out_size = 0;
  int64_t max_taps = 0;
  std::vector<int> count;  // (K, out_size)
  std::vector<int> cell;   // (K, out_size, max_taps)
  std::vector<T> weight;   // (K, out_size, max_taps)

  const int* cells(int64_t k, int64_t bin) const {
    return cell.data() + (k * out_size + bin) * max_taps;
  }
  const T* weights(int64_t k, int64_t bin) const {
    return weight.data() + (k * out_size + bin) * max_taps;
  }
};

// axis 0: y (rois columns 2 and 4), axis 1: x (columns 1 and 3).
template <typename T>
AxisTable<T> align_axis_table(const T* rois, int64_t num_rois, int axis, int64_t out_size,
                              int64_t size, double spatial_scale, int64_t sampling_ratio,
                              bool aligned) {
  const int lo_col = axis == 0 ? 2 : 1;
  const int hi_col = axis == 0 ? 4 : 3;
  std::vector<AlignAxis<T>> geometry(num_rois);
  int max_grid = 1;
  for (int64_t k = 0; k < num_rois; ++k) {
    geometry[k] = roi_align_axis<T>(rois[k * 5 + lo_col], rois[k * 5 + hi_col], spatial_scale,
                                    static_cast<int>(out_size),
                                    static_cast<int>(sampling_ratio), aligned);
    max_grid = std::max(max_grid, geometry[k].grid);
  }
  AxisTable<T> table;
  table.out_size = out_size;
  table.max_taps = 2 * static_cast<int64_t>(max_grid);
  table.count.assign(num_rois * out_size, 0);
  table.cell.assign(num_rois * out_size * table.max_taps, 0);
  table.weight.assign(num_rois * out_size * table.max_taps, T(0));
  at::parallel_for(0, num_rois, grain_for(out_size * max_grid), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const AlignAxis<T>& geo = geometry[k];
      for (int64_t bin = 0; bin < out_size; ++bin) {
        const int64_t slot = k * out_size + bin;
        int* cells = table.cell.data() + slot * table.max_taps;
        T* weights = table.weight.data() + slot * table.max_taps;
        int n = 0;
        auto add = [&](int c, T w) {
          if (n > 0 && cells[n - 1] == c) {
            weights[n - 1] += w;
          } else {
            cells[n] = c;
            weights[n] = w;
            ++n;
          }
        };
        for (int i = 0; i < geo.grid; ++i) {
          Taps<T> taps;
          if (roi_align_taps<T>(roi_align_sample<T>(geo, static_cast<int>(bin), i),
                                static_cast<int>(size), &taps)) {
            const T scale = T(1) / static_cast<T>(geo.grid);
            add(taps.low, taps.w_low * scale);
            add(taps.high, taps.w_high * scale);
          }
        }
        table.count[slot] = n;
      }
    }
  });
  return table;
}

// The RoIAlign and RoIPool kernels read the input channels-last (B,H,W,C): a channels-last
// input as it is, any other through one copy.  Every bilinear tap or pooled cell is then a
// contiguous run of C values and the channel loops vectorise.  Outputs and output gradients
// stay NCHW: a thread handles whole RoIs, and groups of kBinGroup consecutive bins go through a
// (group, C) buffer so that each channel's values are written (or read) as one contiguous run
// -- no transposes of the large (K,C,h,w) tensors.
constexpr int64_t kBinGroup = 16;

template <typename T>
void roi_align_forward_impl(const T* input, const T* rois, int64_t num_rois, int64_t batch,
                            int64_t channels, int64_t height, int64_t width, int64_t out_h,
                            int64_t out_w, double spatial_scale, int64_t sampling_ratio,
                            bool aligned, T* output) {
  const std::vector<int64_t> image = roi_batch_indices("roi_align", rois, num_rois, batch);
  const AxisTable<T> ys = align_axis_table(rois, num_rois, 0, out_h, height, spatial_scale,
                                           sampling_ratio, aligned);
  const AxisTable<T> xs = align_axis_table(rois, num_rois, 1, out_w, width, spatial_scale,
                                           sampling_ratio, aligned);
  const int64_t bins = out_h * out_w;
  at::parallel_for(0, num_rois, grain_for(channels * bins), [&](int64_t begin, int64_t end) {
    std::vector<T> buffer(kBinGroup * channels);
    for (int64_t k = begin; k < end; ++k) {
      const T* img = input + image[k] * height * width * channels;
      T* out = output + k * channels * bins;
      for (int64_t first = 0; first < bins; first += kBinGroup) {
        const int64_t group = std::min(kBinGroup, bins - first);
        for (int64_t g = 0; g < group; ++g) {
          const int64_t ph = (first + g) / out_w;
          const int64_t pw = (first + g) % out_w;
          T* __restrict__ acc = buffer.data() + g * channels;
          std::fill(acc, acc + channels, T(0));
          const int ny = ys.count[k * out_h + ph];
          const int* ycell = ys.cells(k, ph);
          const T* yw = ys.weights(k, ph);
          const int nx = xs.count[k * out_w + pw];
          const int* xcell = xs.cells(k, pw);
          const T* xw = xs.weights(k, pw);
          for (int i = 0; i < ny; ++i) {
            for (int j = 0; j < nx; ++j) {
              const T w = yw[i] * xw[j];
              const T* __restrict__ src =
                  img + (static_cast<int64_t>(ycell[i]) * width + xcell[j]) * channels;
              for (int64_t c = 0; c < channels; ++c) acc[c] += w * src[c];
            }
          }
        }
        for (int64_t c = 0; c < channels; ++c) {
          T* dst = out + c * bins + first;
          for (int64_t g = 0; g < group; ++g) dst[g] = buffer[g * channels + c];
        }
      }
    }
  });
}

// grad_output (K,C,h,w), grad_input channels-last (B,H,W,C).  Parallel over channel ranges:
// each thread owns grad_input[..., c0:c1], so there are no races.
template <typename T>
void roi_align_backward_impl(const T* grad_output, const T* rois, int64_t num_rois,
                             int64_t batch, int64_t channels, int64_t height, int64_t width,
                             int64_t out_h, int64_t out_w, double spatial_scale,
                             int64_t sampling_ratio, bool aligned, T* grad_input) {
  const std::vector<int64_t> image =
      roi_batch_indices("_roi_align_backward", rois, num_rois, batch);
  const AxisTable<T> ys = align_axis_table(rois, num_rois, 0, out_h, height, spatial_scale,
                                           sampling_ratio, aligned);
  const AxisTable<T> xs = align_axis_table(rois, num_rois, 1, out_w, width, spatial_scale,
                                           sampling_ratio, aligned);
  const int64_t bins = out_h * out_w;
  at::parallel_for(0, channels, grain_for(num_rois * bins), [&](int64_t c_begin, int64_t c_end) {
    const int64_t span = c_end - c_begin;
    std::vector<T> buffer(kBinGroup * span);
    for (int64_t k = 0; k < num_rois; ++k) {
      T* img = grad_input + image[k] * height * width * channels + c_begin;
      const T* roi_grad = grad_output + (k * channels + c_begin) * bins;
      for (int64_t first = 0; first < bins; first += kBinGroup) {
        const int64_t group = std::min(kBinGroup, bins - first);
        for (int64_t c = 0; c < span; ++c) {
          const T* src = roi_grad + c * bins + first;
          for (int64_t g = 0; g < group; ++g) buffer[g * span + c] = src[g];
        }
        for (int64_t g = 0; g < group; ++g) {
          const int64_t ph = (first + g) / out_w;
          const int64_t pw = (first + g) % out_w;
          const T* __restrict__ grad = buffer.data() + g * span;
          const int ny = ys.count[k * out_h + ph];
          const int* ycell = ys.cells(k, ph);
          const T* yw = ys.weights(k, ph);
          const int nx = xs.count[k * out_w + pw];
          const int* xcell = xs.cells(k, pw);
          const T* xw = xs.weights(k, pw);
          for (int i = 0; i < ny; ++i) {
            for (int j = 0; j < nx; ++j) {
              const T w = yw[i] * xw[j];
              T* __restrict__ dst =
                  img + (static_cast<int64_t>(ycell[i]) * width + xcell[j]) * channels;
              for (int64_t c = 0; c < span; ++c) dst[c] += w * grad[c];
            }
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// RoIPool: max over each bin, argmax = flat index in the H*W plane (-1 for empty bins).

template <typename T>
std::vector<BinRange> pool_bins(const T* rois, int64_t num_rois, int lo_col, int hi_col,
                                int64_t out_size, int64_t size, double spatial_scale) {
  std::vector<BinRange> bins(num_rois * out_size);
  for (int64_t k = 0; k < num_rois; ++k) {
    for (int64_t b = 0; b < out_size; ++b) {
      bins[k * out_size + b] =
          roi_pool_bin<T>(rois[k * 5 + lo_col], rois[k * 5 + hi_col], spatial_scale,
                          static_cast<int>(out_size), static_cast<int>(b),
                          static_cast<int>(size));
    }
  }
  return bins;
}

// Channels-last input, NCHW output and argmax (K,C,h,w): the flat index of each bin's maximum in
// the H*W plane, -1 for empty bins.  Cells are scanned row-major and only a strictly larger
// value replaces the maximum, so ties keep the first cell (like torchvision).
template <typename T>
void roi_pool_forward_impl(const T* input, const std::vector<int64_t>& image,
                           const std::vector<BinRange>& ybins, const std::vector<BinRange>& xbins,
                           int64_t num_rois, int64_t channels, int64_t height, int64_t width,
                           int64_t out_h, int64_t out_w, T* output, int32_t* argmax) {
  const int64_t bins = out_h * out_w;
  at::parallel_for(0, num_rois, grain_for(channels * bins), [&](int64_t begin, int64_t end) {
    std::vector<T> best_buffer(kBinGroup * channels);
    std::vector<int32_t> arg_buffer(kBinGroup * channels);
    for (int64_t k = begin; k < end; ++k) {
      const T* img = input + image[k] * height * width * channels;
      for (int64_t first = 0; first < bins; first += kBinGroup) {
        const int64_t group = std::min(kBinGroup, bins - first);
        for (int64_t g = 0; g < group; ++g) {
          const BinRange yb = ybins[k * out_h + (first + g) / out_w];
          const BinRange xb = xbins[k * out_w + (first + g) % out_w];
          const bool empty = yb.end <= yb.start || xb.end <= xb.start;
          T* __restrict__ best = best_buffer.data() + g * channels;
          int32_t* __restrict__ arg = arg_buffer.data() + g * channels;
          std::fill(best, best + channels, empty ? T(0) : static_cast<T>(-FLT_MAX));
          std::fill(arg, arg + channels, -1);
          for (int y = yb.start; y < yb.end; ++y) {
            for (int x = xb.start; x < xb.end; ++x) {
              const int32_t cell = y * static_cast<int32_t>(width) + x;
              const T* __restrict__ src =
                  img + (static_cast<int64_t>(y) * width + x) * channels;
              for (int64_t c = 0; c < channels; ++c) {
                // branch-free select (a mask, not ?:, on the index) so the loop vectorises
                const T v = src[c];
                const T b = best[c];
                const int32_t larger = -static_cast<int32_t>(v > b);
                best[c] = v > b ? v : b;
                arg[c] = (cell & larger) | (arg[c] & ~larger);
              }
            }
          }
        }
        for (int64_t c = 0; c < channels; ++c) {
          const int64_t offset = (k * channels + c) * bins + first;
          for (int64_t g = 0; g < group; ++g) {
            output[offset + g] = best_buffer[g * channels + c];
            argmax[offset + g] = arg_buffer[g * channels + c];
          }
        }
      }
    }
  });
}

// grad_output and argmax (K,C,h,w), grad_input (B,C,H,W); parallel over channels, each thread
// owns its gradient planes.
template <typename T>
void roi_pool_backward_impl(const T* grad_output, const int32_t* argmax,
                            const std::vector<int64_t>& image, int64_t num_rois,
                            int64_t channels, int64_t height, int64_t width, int64_t out_h,
                            int64_t out_w, T* grad_input) {
  const int64_t bins = out_h * out_w;
  const int64_t plane_size = height * width;
  at::parallel_for(0, channels, grain_for(num_rois * bins), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t k = 0; k < num_rois; ++k) {
        T* plane = grad_input + (image[k] * channels + c) * plane_size;
        const T* grad = grad_output + (k * channels + c) * bins;
        const int32_t* arg = argmax + (k * channels + c) * bins;
        for (int64_t i = 0; i < bins; ++i) {
          if (arg[i] >= 0) plane[arg[i]] += grad[i];
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// RoI crop: bilinear sampling (zero padding) on an affine grid, optional 2x2 max-pool whose
// argmax (0..3 = dy*2+dx inside the window) is kept for the backward pass.

template <typename T>
std::vector<Taps<T>> crop_table(const T* rois, int64_t num_rois, int lo_col, int hi_col,
                                int64_t points, int64_t size, double spatial_scale) {
  std::vector<Taps<T>> taps(num_rois * points);
  for (int64_t k = 0; k < num_rois; ++k) {
    const CropAxis<T> axis = crop_axis<T>(rois[k * 5 + lo_col], rois[k * 5 + hi_col],
                                          spatial_scale, static_cast<int>(size));
    for (int64_t i = 0; i < points; ++i) {
      taps[k * points + i] = crop_taps<T>(axis, static_cast<int>(i), static_cast<int>(points),
                                          static_cast<int>(size));
    }
  }
  return taps;
}

template <typename T>
inline T crop_sample(const T* plane, int64_t width, const Taps<T>& ty, const Taps<T>& tx) {
  const T* top = plane + static_cast<int64_t>(ty.low) * width;
  const T* bottom = plane + static_cast<int64_t>(ty.high) * width;
  return top[tx.low] * (tx.w_low * ty.w_low) + top[tx.high] * (tx.w_high * ty.w_low) +
         bottom[tx.low] * (tx.w_low * ty.w_high) + bottom[tx.high] * (tx.w_high * ty.w_high);
}

template <typename T>
inline void crop_scatter(T* plane, int64_t width, const Taps<T>& ty, const Taps<T>& tx, T g) {
  T* top = plane + static_cast<int64_t>(ty.low) * width;
  T* bottom = plane + static_cast<int64_t>(ty.high) * width;
  top[tx.low] += g * (tx.w_low * ty.w_low);
  top[tx.high] += g * (tx.w_high * ty.w_low);
  bottom[tx.low] += g * (tx.w_low * ty.w_high);
  bottom[tx.high] += g * (tx.w_high * ty.w_high);
}

template <typename T>
void roi_crop_forward_impl(const T* input, const T* rois, int64_t num_rois, int64_t batch,
                           int64_t channels, int64_t height, int64_t width, int64_t out_h,
                           int64_t out_w, double spatial_scale, bool max_pool, T* output,
                           uint8_t* argmax) {
  const std::vector<int64_t> image = roi_batch_indices("roi_crop", rois, num_rois, batch);
  const int64_t factor = max_pool ? 2 : 1;
  const int64_t grid_h = out_h * factor;
  const int64_t grid_w = out_w * factor;
  const std::vector<Taps<T>> ys = crop_table(rois, num_rois, 2, 4, grid_h, height, spatial_scale);
  const std::vector<Taps<T>> xs = crop_table(rois, num_rois, 1, 3, grid_w, width, spatial_scale);
  at::parallel_for(0, num_rois * channels, grain_for(4 * out_h * out_w),
                   [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t k = idx / channels;
      const int64_t c = idx % channels;
      const T* plane = input + (image[k] * channels + c) * height * width;
      const Taps<T>* ty = ys.data() + k * grid_h;
      const Taps<T>* tx = xs.data() + k * grid_w;
      T* out = output + idx * out_h * out_w;
      uint8_t* arg = argmax + idx * out_h * out_w;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        for (int64_t ow = 0; ow < out_w; ++ow) {
          if (!max_pool) {
            out[oh * out_w + ow] = crop_sample(plane, width, ty[oh], tx[ow]);
            continue;
          }
          T best = T(0);
          uint8_t best_index = 0;
          for (int s = 0; s < 4; ++s) {
            const T v = crop_sample(plane, width, ty[2 * oh + s / 2], tx[2 * ow + s % 2]);
            if (s == 0 || v > best || std::isnan(v)) {
              best = v;
              best_index = static_cast<uint8_t>(s);
            }
          }
          out[oh * out_w + ow] = best;
          arg[oh * out_w + ow] = best_index;
        }
      }
    }
  });
}

template <typename T>
void roi_crop_backward_impl(const T* grad_output, const T* rois, const uint8_t* argmax,
                            int64_t num_rois, int64_t batch, int64_t channels, int64_t height,
                            int64_t width, int64_t out_h, int64_t out_w, double spatial_scale,
                            bool max_pool, T* grad_input) {
  const std::vector<int64_t> image =
      roi_batch_indices("_roi_crop_backward", rois, num_rois, batch);
  const int64_t factor = max_pool ? 2 : 1;
  const int64_t grid_h = out_h * factor;
  const int64_t grid_w = out_w * factor;
  const std::vector<Taps<T>> ys = crop_table(rois, num_rois, 2, 4, grid_h, height, spatial_scale);
  const std::vector<Taps<T>> xs = crop_table(rois, num_rois, 1, 3, grid_w, width, spatial_scale);
  at::parallel_for(0, channels, grain_for(num_rois * out_h * out_w),
                   [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t k = 0; k < num_rois; ++k) {
        T* plane = grad_input + (image[k] * channels + c) * height * width;
        const int64_t offset = (k * channels + c) * out_h * out_w;
        const T* grad = grad_output + offset;
        const uint8_t* arg = argmax + offset;
        const Taps<T>* ty = ys.data() + k * grid_h;
        const Taps<T>* tx = xs.data() + k * grid_w;
        for (int64_t oh = 0; oh < out_h; ++oh) {
          for (int64_t ow = 0; ow < out_w; ++ow) {
            const T g = grad[oh * out_w + ow];
            if (g == T(0)) continue;
            int64_t gy = oh;
            int64_t gx = ow;
            if (max_pool) {
              const int s = arg[oh * out_w + ow];
              gy = 2 * oh + s / 2;
              gx = 2 * ow + s % 2;
            }
            crop_scatter(plane, width, ty[gy], tx[gx], g);
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// NMS: greedy over score-sorted boxes stored as contiguous columns; the inner loop over the
// remaining boxes is branch-free so the compiler vectorises it.

// Largest T whose double value is <= threshold: (double)iou > threshold <=> iou > this.
template <typename T>
T threshold_in(double threshold) {
  T t = static_cast<T>(threshold);
  if (static_cast<double>(t) > threshold) {
    t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  }
  return t;
}

// Greedy NMS: keep flags (1 = kept) of the boxes in `order` (indices by decreasing score).
template <typename T>
std::vector<uint8_t> nms_keep_sorted(const T* boxes, const std::vector<int64_t>& order,
                                     double iou_threshold) {
  const int64_t n = static_cast<int64_t>(order.size());
  std::vector<T> x1(n), y1(n), x2(n), y2(n), area(n);
  for (int64_t i = 0; i < n; ++i) {
    const T* b = boxes + order[i] * 4;
    x1[i] = b[0];
    y1[i] = b[1];
    x2[i] = b[2];
    y2[i] = b[3];
    area[i] = box_area<T>(b[0], b[1], b[2], b[3]);
  }
  const T threshold = threshold_in<T>(iou_threshold);
  std::vector<uint8_t> suppressed(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (suppressed[i]) continue;
    const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
    uint8_t* supp = suppressed.data();
    const T* px1 = x1.data();
    const T* py1 = y1.data();
    const T* px2 = x2.data();
    const T* py2 = y2.data();
    const T* parea = area.data();
    for (int64_t j = i + 1; j < n; ++j) {
      const T iou = box_iou<T>(ix1, iy1, ix2, iy2, iarea, px1[j], py1[j], px2[j], py2[j],
                               parea[j]);
      supp[j] |= static_cast<uint8_t>(iou > threshold);
    }
  }
  for (uint8_t& flag : suppressed) flag ^= 1;
  return suppressed;
}

// Indices of the boxes by decreasing score; equal scores keep their input order.
template <typename T>
std::vector<int64_t> score_order(const T* scores, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [scores](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return order;
}

// ---------------------------------------------------------------------------------------------
// Operator kernels (argument checks, contiguity, dtype dispatch).

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_nms_op("nms", boxes, scores);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor s = scores.contiguous();
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms_cpu", [&] {
    const std::vector<int64_t> order = score_order(s.data_ptr<scalar_t>(), b.size(0));
    const std::vector<uint8_t> kept = nms_keep_sorted(b.data_ptr<scalar_t>(), order,
                                                      iou_threshold);
    for (size_t i = 0; i < order.size(); ++i) {
      if (kept[i]) keep.push_back(order[i]);
    }
  });
  at::Tensor out = at::empty({static_cast<int64_t>(keep.size())}, b.options().dtype(at::kLong));
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out;
}

at::Tensor nms_mask_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                        double iou_threshold) {
  check_nms_op("nms_mask", boxes, scores);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor s = scores.contiguous();
  at::Tensor mask = at::empty({b.size(0)}, b.options().dtype(at::kBool));
  bool* out = mask.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms_mask_cpu", [&] {
    const std::vector<int64_t> order = score_order(s.data_ptr<scalar_t>(), b.size(0));
    const std::vector<uint8_t> kept = nms_keep_sorted(b.data_ptr<scalar_t>(), order,
                                                      iou_threshold);
    for (size_t i = 0; i < order.size(); ++i) out[order[i]] = kept[i] != 0;
  });
  return mask;
}

at::Tensor roi_align_forward_cpu(const at::Tensor& input_arg, const at::Tensor& rois_arg,
                                 double spatial_scale, int64_t out_h, int64_t out_w,
                                 int64_t sampling_ratio, bool aligned) {
  check_roi_op("roi_align", input_arg, rois_arg, spatial_scale, out_h, out_w);
  const at::Tensor& input = input_arg;
  const at::Tensor rois = rois_arg.contiguous();
  const at::Tensor input_cl = input.permute({0, 2, 3, 1}).contiguous();
  at::Tensor output = at::empty({rois.size(0), input.size(1), out_h, out_w}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward_cpu", [&] {
    roi_align_forward_impl<scalar_t>(input_cl.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                     rois.size(0), input.size(0), input.size(1), input.size(2),
                                     input.size(3), out_h, out_w, spatial_scale, sampling_ratio,
                                     aligned, output.data_ptr<scalar_t>());
  });
  return output;
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad_arg, const at::Tensor& rois_arg,
                                  double spatial_scale, int64_t out_h, int64_t out_w,
                                  int64_t batch, int64_t channels, int64_t height, int64_t width,
                                  int64_t sampling_ratio, bool aligned) {
  check_roi_backward_op("_roi_align_backward", grad_arg, rois_arg, out_h, out_w);
  const at::Tensor grad_output = grad_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  at::Tensor grad_input = at::zeros({batch, height, width, channels}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_align_backward_cpu", [&] {
    roi_align_backward_impl<scalar_t>(grad_output.data_ptr<scalar_t>(),
                                      rois.data_ptr<scalar_t>(),
                                      rois.size(0), batch, channels, height, width, out_h, out_w,
                                      spatial_scale, sampling_ratio, aligned,
                                      grad_input.data_ptr<scalar_t>());
  });
  return grad_input.permute({0, 3, 1, 2}).contiguous();
}

// argmax (K,C,h,w) int32: the flat index of each bin's maximum in the H*W plane, -1 for empty
// bins (the same layout as the CUDA kernel's).
std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cpu(const at::Tensor& input_arg,
                                                        const at::Tensor& rois_arg,
                                                        double spatial_scale, int64_t out_h,
                                                        int64_t out_w) {
  check_roi_op("roi_pool", input_arg, rois_arg, spatial_scale, out_h, out_w);
  TORCH_CHECK_VALUE(input_arg.size(2) * input_arg.size(3) < std::numeric_limits<int32_t>::max(),
                    "roi_pool: feature map too large for int32 argmax, got ", input_arg.sizes());
  const at::Tensor& input = input_arg;
  const at::Tensor rois = rois_arg.contiguous();
  const int64_t num_rois = rois.size(0);
  const at::Tensor input_cl = input.permute({0, 2, 3, 1}).contiguous();
  at::Tensor output = at::empty({num_rois, input.size(1), out_h, out_w}, input.options());
  at::Tensor argmax = at::empty(output.sizes(), input.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_forward_cpu", [&] {
    const scalar_t* r = rois.data_ptr<scalar_t>();
    const std::vector<int64_t> image =
        roi_batch_indices("roi_pool", r, num_rois, input.size(0));
    const std::vector<BinRange> ybins = pool_bins(r, num_rois, 2, 4, out_h, input.size(2),
                                                  spatial_scale);
    const std::vector<BinRange> xbins = pool_bins(r, num_rois, 1, 3, out_w, input.size(3),
                                                  spatial_scale);
    roi_pool_forward_impl<scalar_t>(input_cl.data_ptr<scalar_t>(), image, ybins, xbins,
                                    num_rois, input.size(1), input.size(2), input.size(3), out_h,
                                    out_w, output.data_ptr<scalar_t>(),
                                    argmax.data_ptr<int32_t>());
  });
  return {output, argmax};
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad_arg, const at::Tensor& rois_arg,
                                 const at::Tensor& argmax_arg, double /*spatial_scale*/,
                                 int64_t out_h, int64_t out_w, int64_t batch, int64_t channels,
                                 int64_t height, int64_t width) {
  check_roi_backward_op("_roi_pool_backward", grad_arg, rois_arg, out_h, out_w);
  TORCH_CHECK_VALUE(argmax_arg.sizes() == grad_arg.sizes() &&
                        argmax_arg.scalar_type() == at::kInt,
                    "_roi_pool_backward: argmax must be int32 of the shape of grad, got ",
                    argmax_arg.scalar_type(), " ", argmax_arg.sizes());
  const at::Tensor grad_output = grad_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  const at::Tensor argmax = argmax_arg.contiguous();
  const int64_t num_rois = rois.size(0);
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_pool_backward_cpu", [&] {
    const std::vector<int64_t> image =
        roi_batch_indices("_roi_pool_backward", rois.data_ptr<scalar_t>(), num_rois, batch);
    roi_pool_backward_impl<scalar_t>(grad_output.data_ptr<scalar_t>(),
                                     argmax.data_ptr<int32_t>(), image, num_rois, channels,
                                     height, width, out_h, out_w,
                                     grad_input.data_ptr<scalar_t>());
  });
  return grad_input;
}

// argmax (K,C,h,w) uint8 when max_pool (position dy*2+dx of the maximum in its 2x2 window),
// (0,) otherwise.
std::tuple<at::Tensor, at::Tensor> roi_crop_forward_cpu(const at::Tensor& input_arg,
                                                        const at::Tensor& rois_arg,
                                                        double spatial_scale, int64_t out_h,
                                                        int64_t out_w, bool max_pool) {
  check_roi_op("roi_crop", input_arg, rois_arg, spatial_scale, out_h, out_w);
  TORCH_CHECK_VALUE(input_arg.size(2) > 1 && input_arg.size(3) > 1,
                    "roi_crop: feature map must be at least 2x2, got ", input_arg.sizes());
  const at::Tensor input = input_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  at::Tensor output = at::empty({rois.size(0), input.size(1), out_h, out_w}, input.options());
  at::Tensor argmax = at::zeros(max_pool ? output.sizes() : at::IntArrayRef{0},
                                input.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_crop_forward_cpu", [&] {
    roi_crop_forward_impl<scalar_t>(input.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                    rois.size(0), input.size(0), input.size(1), input.size(2),
                                    input.size(3), out_h, out_w, spatial_scale, max_pool,
                                    output.data_ptr<scalar_t>(), argmax.data_ptr<uint8_t>());
  });
  return {output, argmax};
}

at::Tensor roi_crop_backward_cpu(const at::Tensor& grad_arg, const at::Tensor& rois_arg,
                                 const at::Tensor& argmax_arg, double spatial_scale,
                                 int64_t out_h, int64_t out_w, bool max_pool, int64_t batch,
                                 int64_t channels, int64_t height, int64_t width) {
  check_roi_backward_op("_roi_crop_backward", grad_arg, rois_arg, out_h, out_w);
  TORCH_CHECK_VALUE(!max_pool || argmax_arg.sizes() == grad_arg.sizes(),
                    "_roi_crop_backward: argmax must have the shape of grad, got ",
                    argmax_arg.sizes());
  const at::Tensor grad_output = grad_arg.contiguous();
  const at::Tensor rois = rois_arg.contiguous();
  const at::Tensor argmax = argmax_arg.contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "roi_crop_backward_cpu", [&] {
    roi_crop_backward_impl<scalar_t>(grad_output.data_ptr<scalar_t>(), rois.data_ptr<scalar_t>(),
                                     argmax.data_ptr<uint8_t>(), rois.size(0), batch, channels,
                                     height, width, out_h, out_w, spatial_scale, max_pool,
                                     grad_input.data_ptr<scalar_t>());
  });
  return grad_input;
}

}  // namespace
}  // namespace fasterrcnn

TORCH_LIBRARY_IMPL(fasterrcnn, CPU, m) {
  m.impl("nms", &fasterrcnn::nms_cpu);
  m.impl("nms_mask", &fasterrcnn::nms_mask_cpu);
  m.impl("roi_align", &fasterrcnn::roi_align_forward_cpu);
  m.impl("_roi_align_backward", &fasterrcnn::roi_align_backward_cpu);
  m.impl("roi_pool", &fasterrcnn::roi_pool_forward_cpu);
  m.impl("_roi_pool_backward", &fasterrcnn::roi_pool_backward_cpu);
  m.impl("roi_crop", &fasterrcnn::roi_crop_forward_cpu);
  m.impl("_roi_crop_backward", &fasterrcnn::roi_crop_backward_cpu);
}
