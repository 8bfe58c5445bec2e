#pragma once
// Index arithmetic of the 3x3 stride-1 padding-1 pooling in node_sum, shared by the CUDA kernels, the
// CPU kernels and the CPU emulation of the CUDA kernels (a test-only op): one definition of plane
// positions, NCHW/NHWC offsets, window bounds and count_include_pad=False divisors, so that an index
// bug in the CUDA kernels fails a CPU test. Plain C++ when not compiled by nvcc.
#include <ATen/NumericUtils.h>

#include <cstdint>
#include <limits>

#ifdef __CUDACC__
#define GOLDNAS_HOST_DEVICE __host__ __device__
#define GOLDNAS_FORCEINLINE __forceinline__
#define GOLDNAS_UNROLL _Pragma("unroll")
#else
#define GOLDNAS_HOST_DEVICE
#define GOLDNAS_FORCEINLINE inline
#define GOLDNAS_UNROLL
#endif

namespace goldnas {

// A plane is H x W pixels of C interleaved channels: element (h, w, c) of a plane at (h * W + w) * C + c.
// NCHW-contiguous tensors have C = 1 (a plane per (n, c)), channels_last ones C = channels (a plane per
// image). n counts the elements of the whole tensor. Identity-only nodes use H = W = C = 1 (unused).
struct PlaneGeometry {
  int64_t n;
  int32_t H, W, C;
};

template <typename index_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE index_t imin(index_t a, index_t b) {
  return a < b ? a : b;
}
template <typename index_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE index_t imax(index_t a, index_t b) {
  return a < b ? b : a;
}

// Rows (or columns) lo..hi, inclusive, of the 3x3 window centred at p on an axis of `size` pixels.
template <typename index_t>
struct Span {
  index_t lo, hi;
};
template <typename index_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE Span<index_t> window_span(index_t p, index_t size) {
  return {imax<index_t>(p - 1, 0), imin<index_t>(p + 1, size - 1)};
}

// Valid pixels of the 3x3 window at (h, w): the divisor of average pooling with count_include_pad=False.
template <typename index_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE index_t window_count(index_t h, index_t w, index_t H, index_t W) {
  const Span<index_t> r = window_span(h, H), c = window_span(w, W);
  return (r.hi - r.lo + 1) * (c.hi - c.lo + 1);
}

// Offset of the element (dh, dw) pixels away in the same channel of a plane W pixels wide, C channels deep.
template <typename index_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE index_t pixel_offset(index_t dh, index_t dw, index_t W, index_t C) {
  return (dh * W + dw) * C;
}
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE int pixel_offset(int dh, int dw, const PlaneGeometry& geo) {
  return pixel_offset<int>(dh, dw, geo.W, geo.C);
}

// Row h and column w of element i in its plane; 32-bit division where the size allows (64-bit division
// is emulated and slow on the GPU).
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE void plane_position(int64_t i, const PlaneGeometry& geo, int& h, int& w) {
  if (geo.H == 1 && geo.W == 1) {
    h = w = 0;
  } else if (geo.n <= INT32_MAX) {
    const uint32_t j = geo.C == 1 ? static_cast<uint32_t>(i) : static_cast<uint32_t>(i) / static_cast<uint32_t>(geo.C);
    const uint32_t W = static_cast<uint32_t>(geo.W);
    w = static_cast<int>(j % W);
    h = static_cast<int>((j / W) % static_cast<uint32_t>(geo.H));
  } else {
    const int64_t j = i / geo.C;
    w = static_cast<int>(j % geo.W);
    h = static_cast<int>((j / geo.W) % geo.H);
  }
}

// Average over the valid pixels of the 3x3 window at element i (row h, column w), summed in row-major order.
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE acc_t avg3(const scalar_t* __restrict__ x, int64_t i, int h, int w,
                                      const PlaneGeometry& geo) {
  const Span<int> r = window_span(h, geo.H), c = window_span(w, geo.W);
  acc_t s = 0;
  for (int ih = r.lo; ih <= r.hi; ++ih) {
    for (int iw = c.lo; iw <= c.hi; ++iw) s += static_cast<acc_t>(x[i + pixel_offset(ih - h, iw - w, geo)]);
  }
  return s / static_cast<acc_t>((r.hi - r.lo + 1) * (c.hi - c.lo + 1));
}

// Max over the 3x3 window at i, and in arg the offset of its position from i, with PyTorch's rule (the
// CPU kernel uses the same): scan the window in row-major order and move to an element when it is
// greater than the running max or NaN, so the first maximum wins and a NaN propagates.
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE acc_t max3(const scalar_t* __restrict__ x, int64_t i, int h, int w,
                                      const PlaneGeometry& geo, int& arg) {
  const Span<int> r = window_span(h, geo.H), c = window_span(w, geo.W);
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  arg = pixel_offset(r.lo - h, c.lo - w, geo);
  for (int ih = r.lo; ih <= r.hi; ++ih) {
    for (int iw = c.lo; iw <= c.hi; ++iw) {
      const int off = pixel_offset(ih - h, iw - w, geo);
      const acc_t v = static_cast<acc_t>(x[i + off]);
      if (v > m || at::_isnan(v)) {
        m = v;
        arg = off;
      }
    }
  }
  return m;
}

// Adjoint of the average pool at element i in gather form: the sum over the windows q that contain i of
// g[q] / count(q) (windows are symmetric: q runs over i's own window).
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE acc_t avg3_adjoint(const scalar_t* __restrict__ g, int64_t i, int h, int w,
                                              const PlaneGeometry& geo) {
  const Span<int> r = window_span(h, geo.H), c = window_span(w, geo.W);
  acc_t s = 0;
  for (int qh = r.lo; qh <= r.hi; ++qh) {
    for (int qw = c.lo; qw <= c.hi; ++qw) {
      s += static_cast<acc_t>(g[i + pixel_offset(qh - h, qw - w, geo)]) /
           static_cast<acc_t>(window_count(qh, qw, geo.H, geo.W));
    }
  }
  return s;
}

// Adjoint of the max pool at element i in gather form: the sum of g[q] over the windows q that contain i
// and whose maximum (by max3's rule) sits at i.
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE acc_t max3_adjoint(const scalar_t* __restrict__ x, const scalar_t* __restrict__ g,
                                              int64_t i, int h, int w, const PlaneGeometry& geo) {
  const Span<int> r = window_span(h, geo.H), c = window_span(w, geo.W);
  acc_t s = 0;
  for (int qh = r.lo; qh <= r.hi; ++qh) {
    for (int qw = c.lo; qw <= c.hi; ++qw) {
      const int q = pixel_offset(qh - h, qw - w, geo);
      int arg;
      max3<scalar_t, acc_t>(x, i + q, qh, qw, geo, arg);
      if (q + arg == 0) s += static_cast<acc_t>(g[i + q]);
    }
  }
  return s;
}

}  // namespace goldnas
