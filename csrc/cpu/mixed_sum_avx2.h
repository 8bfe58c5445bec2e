#pragma once
// Entry points of csrc/cpu/mixed_sum_avx2.cpp (built where GOLDNAS_AVX2 is defined).
#include <cstdint>

namespace goldnas {
void mixed_sum_forward_block_avx2(const float* const* x, const float* w, int64_t K, int64_t start, int64_t len,
                                  float* out, float* acc);
void mixed_sum_backward_block_avx2(const float* const* x, float* const* gx, const float* w, const float* gb,
                                   int64_t K, int64_t start, int64_t len, float* dots);
}  // namespace goldnas
