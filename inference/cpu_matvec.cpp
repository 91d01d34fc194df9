// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/cpu_matvec.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <array>
#include <cstdint>
#include <cstring>

#include "inference/error.h"

namespace unibiomed::inference {

namespace {

// A weight element as float32: float32 itself, or bfloat16 stored as its 16 bits (the upper half
// of the float32 with the same value).
inline float weight_value(float w) { return w; }
inline float weight_value(uint16_t w) {
  const uint32_t bits = static_cast<uint32_t>(w) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Rows of W [n0, n1) against R rows of x (float32); y is [R, N] float32. W is float32 or bfloat16
// (W = float or uint16_t).
template <typename W>
using Kernel = void (*)(const W* w, int64_t n0, int64_t n1, int64_t K, const float* x, const float* bias, float* y,
                        int64_t N);

template <typename W, int R>
void rows_generic(const W* w, int64_t n0, int64_t n1, int64_t K, const float* x, const float* bias, float* y,
                  int64_t N) {
  for (int64_t n = n0; n < n1; ++n) {
    const W* wr = w + n * K;
    for (int r = 0; r < R; ++r) {
      const float* xr = x + r * K;
      float lanes[8] = {};  // independent partial sums the compiler can keep in vector registers
      int64_t k = 0;
      for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; ++l) lanes[l] += weight_value(wr[k + l]) * xr[k + l];
      float s = 0;
      for (int l = 0; l < 8; ++l) s += lanes[l];
      for (; k < K; ++k) s += weight_value(wr[k]) * xr[k];
      y[r * N + n] = s + (bias ? bias[n] : 0.0f);
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline float horizontal_sum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// 8 weights as float32: a plain load, or 8 bfloat16 (16 bytes) widened by a 16-bit shift.
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// Each 8-weight slice of a weight row is loaded once and multiplied into every row of x. With
// few rows, two accumulators per row hide the FMA latency.
template <typename W, int R>
__attribute__((target("avx2,fma"))) void rows_avx2(const W* w, int64_t n0, int64_t n1, int64_t K, const float* x,
                                                  const float* bias, float* y, int64_t N) {
  constexpr int kSets = R <= 4 ? 2 : 1;
  for (int64_t n = n0; n < n1; ++n) {
    const W* wr = w + n * K;
    __m256 acc[kSets][R];
    for (int s = 0; s < kSets; ++s)
      for (int r = 0; r < R; ++r) acc[s][r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * kSets <= K; k += 8 * kSets)
      for (int s = 0; s < kSets; ++s) {
        const __m256 wv = load8(wr + k + 8 * s);
        for (int r = 0; r < R; ++r) acc[s][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * K + k + 8 * s), acc[s][r]);
      }
    for (int r = 0; r < R; ++r) {
      __m256 total = acc[0][r];
      if constexpr (kSets == 2) total = _mm256_add_ps(total, acc[1][r]);
      float sum = horizontal_sum(total);
      for (int64_t kk = k; kk < K; ++kk) sum += weight_value(wr[kk]) * x[r * K + kk];
      y[r * N + n] = sum + (bias ? bias[n] : 0.0f);
    }
  }
}
#endif

template <typename W>
std::array<Kernel<W>, kMatvecMaxRows + 1> make_table() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {nullptr,         rows_avx2<W, 1>, rows_avx2<W, 2>, rows_avx2<W, 3>, rows_avx2<W, 4>,
            rows_avx2<W, 5>, rows_avx2<W, 6>, rows_avx2<W, 7>, rows_avx2<W, 8>};
#endif
  return {nullptr,            rows_generic<W, 1>, rows_generic<W, 2>, rows_generic<W, 3>, rows_generic<W, 4>,
          rows_generic<W, 5>, rows_generic<W, 6>, rows_generic<W, 7>, rows_generic<W, 8>};
}

template <typename W>
void run_rows(const W* w, int64_t R, int64_t K, int64_t N, const float* x, const float* bias, float* y) {
  static const std::array<Kernel<W>, kMatvecMaxRows + 1> table = make_table<W>();  // by CPU features, set once
  const Kernel<W> kernel = table[static_cast<size_t>(R)];
  // Blocks of 64 weight rows (224 KB of float32 at K = 896) per task.
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) { kernel(w, n0, n1, K, x, bias, y, N); });
}

}  // namespace

bool matvec_rows_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  const auto t = x.scalar_type();
  return x.is_cpu() && weight.is_cpu() && x.dim() == 2 && weight.dim() == 2 &&
         (t == torch::kFloat32 || t == torch::kBFloat16) && weight.scalar_type() == t && x.size(0) >= 1 &&
         x.size(0) <= kMatvecMaxRows && x.size(1) == weight.size(1) && weight.is_contiguous();
}

torch::Tensor matvec_rows(const torch::Tensor& x_in, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!matvec_rows_applies(x_in, weight) ||
      (bias.defined() && (bias.scalar_type() != x_in.scalar_type() || bias.numel() != weight.size(0) || !bias.is_cpu())))
    throw InferenceError("matvec_rows: expects float32 or bfloat16 CPU x [1.." + std::to_string(kMatvecMaxRows) +
                         ", K], weight [N, K] and bias [N] of x's dtype");
  // x and the bias are small: taken as float32; the sums are float32 and rounded to x's dtype at
  // the end, as libtorch's bfloat16 products round theirs.
  const torch::Tensor x = x_in.to(torch::kFloat32).contiguous();
  const torch::Tensor b = bias.defined() ? bias.to(torch::kFloat32).contiguous() : bias;
  const int64_t R = x.size(0), K = x.size(1), N = weight.size(0);
  torch::Tensor y = torch::empty({R, N}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  if (weight.scalar_type() == torch::kFloat32) {
    run_rows(weight.data_ptr<float>(), R, K, N, xp, bp, yp);
    return y;
  }
  run_rows(reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>()), R, K, N, xp, bp, yp);
  return y.to(torch::kBFloat16);
}

}  // namespace unibiomed::inference
