// mixed_sum's float32 block loops compiled for AVX2 (CMake adds -mavx2 to this file only); called only
// after the CPU reported AVX2 (see mixed_sum_cpu.cpp).
#include <cstdint>

#include "cpu/mixed_sum_avx2.h"

namespace goldnas {
namespace {
#include "cpu/mixed_sum_blocks.inc"
}  // namespace

void mixed_sum_forward_block_avx2(const float* const* x, const float* w, int64_t K, int64_t start, int64_t len,
                                  float* out, float* acc) {
  forward_block<float, float>(x, w, K, start, len, out, acc);
}

void mixed_sum_backward_block_avx2(const float* const* x, float* const* gx, const float* w, const float* gb,
                                   int64_t K, int64_t start, int64_t len, float* dots) {
  backward_block<float, float>(x, gx, w, gb, K, start, len, dots);
}

}  // namespace goldnas
