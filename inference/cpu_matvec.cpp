// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/cpu_matvec.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <array>

#include "inference/error.h"

namespace unibiomed::inference {

namespace {

// Rows of W [n0, n1) against R rows of x; y is [R, N].
using Kernel = void (*)(const float* w, int64_t n0, int64_t n1, int64_t K, const float* x, const float* bias,
                        float* y, int64_t N);

template <int R>
void rows_generic(const float* w, int64_t n0, int64_t n1, int64_t K, const float* x, const float* bias, float* y,
                  int64_t N) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* wr = w + n * K;
    for (int r = 0; r < R; ++r) {
      const float* xr = x + r * K;
      float lanes[8] = {};  // independent partial sums the compiler can keep in vector registers
      int64_t k = 0;
      for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; ++l) lanes[l] += wr[k + l] * xr[k + l];
      float s = 0;
      for (int l = 0; l < 8; ++l) s += lanes[l];
      for (; k < K; ++k) s += wr[k] * xr[k];
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

// Each 8-float slice of a weight row is loaded once and multiplied into every row of x. With
// few rows, two accumulators per row hide the FMA latency.
template <int R>
__attribute__((target("avx2,fma"))) void rows_avx2(const float* w, int64_t n0, int64_t n1, int64_t K, const float* x,
                                                  const float* bias, float* y, int64_t N) {
  constexpr int kSets = R <= 4 ? 2 : 1;
  for (int64_t n = n0; n < n1; ++n) {
    const float* wr = w + n * K;
    __m256 acc[kSets][R];
    for (int s = 0; s < kSets; ++s)
      for (int r = 0; r < R; ++r) acc[s][r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * kSets <= K; k += 8 * kSets)
      for (int s = 0; s < kSets; ++s) {
        const __m256 wv = _mm256_loadu_ps(wr + k + 8 * s);
        for (int r = 0; r < R; ++r) acc[s][r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * K + k + 8 * s), acc[s][r]);
      }
    for (int r = 0; r < R; ++r) {
      __m256 total = acc[0][r];
      if constexpr (kSets == 2) total = _mm256_add_ps(total, acc[1][r]);
      float sum = horizontal_sum(total);
      for (int64_t kk = k; kk < K; ++kk) sum += wr[kk] * x[r * K + kk];
      y[r * N + n] = sum + (bias ? bias[n] : 0.0f);
    }
  }
}
#endif

std::array<Kernel, kMatvecMaxRows + 1> make_table() {
  std::array<Kernel, kMatvecMaxRows + 1> t{};
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    t = {nullptr,      rows_avx2<1>, rows_avx2<2>, rows_avx2<3>, rows_avx2<4>,
         rows_avx2<5>, rows_avx2<6>, rows_avx2<7>, rows_avx2<8>};
    return t;
  }
#endif
  t = {nullptr,         rows_generic<1>, rows_generic<2>, rows_generic<3>, rows_generic<4>,
       rows_generic<5>, rows_generic<6>, rows_generic<7>, rows_generic<8>};
  return t;
}

}  // namespace

bool matvec_rows_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  return x.is_cpu() && weight.is_cpu() && x.dim() == 2 && weight.dim() == 2 && x.scalar_type() == torch::kFloat32 &&
         weight.scalar_type() == torch::kFloat32 && x.size(0) >= 1 && x.size(0) <= kMatvecMaxRows &&
         x.size(1) == weight.size(1) && weight.is_contiguous();
}

torch::Tensor matvec_rows(const torch::Tensor& x_in, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!matvec_rows_applies(x_in, weight) ||
      (bias.defined() && (bias.scalar_type() != torch::kFloat32 || bias.numel() != weight.size(0) || !bias.is_cpu())))
    throw InferenceError("matvec_rows: expects float32 CPU x [1.." + std::to_string(kMatvecMaxRows) +
                         ", K], weight [N, K] and bias [N]");
  static const std::array<Kernel, kMatvecMaxRows + 1> table = make_table();  // by CPU features, set once
  const torch::Tensor x = x_in.contiguous();
  const torch::Tensor b = bias.defined() ? bias.contiguous() : bias;
  const int64_t R = x.size(0), K = x.size(1), N = weight.size(0);
  torch::Tensor y = torch::empty({R, N}, x.options());
  const Kernel kernel = table[static_cast<size_t>(R)];
  const float* w = weight.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  // Blocks of 64 weight rows (224 KB at K = 896) per task.
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) { kernel(w, n0, n1, K, xp, bp, yp, N); });
  return y;
}

}  // namespace unibiomed::inference
