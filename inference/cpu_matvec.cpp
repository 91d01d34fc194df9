// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/cpu_matvec.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "inference/error.h"
#include "inference/runtime.h"

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

// bfloat16 weights and bfloat16 x on CPUs with AVX512-BF16: each vdpbf16ps multiplies 32 weight
// and x pairs exactly (bfloat16 products fit a float32) and adds them into 16 float32 sums, so a
// row costs a quarter of the instructions of widening in AVX2 and the weights stream at the
// memory's pace even for several rows.
#define UNIBIOMED_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16,avx2,fma")))
using Bf16Kernel = void (*)(const uint16_t* w, int64_t n0, int64_t n1, int64_t K, const uint16_t* x,
                            const float* bias, float* y, int64_t N);

UNIBIOMED_BF16_TARGET inline __m512bh as_bf16_pairs(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

// Weight rows [n0, n1) one after another, each against the R rows of x: one sequential stream per
// thread (interleaving several weight rows measured 0.6x: the prefetchers follow one stream best);
// one accumulator per row of x is enough to keep up with memory.
template <int R>
UNIBIOMED_BF16_TARGET void rows_dpbf16(const uint16_t* w, int64_t n0, int64_t n1, int64_t K, const uint16_t* x,
                                       const float* bias, float* y, int64_t N) {
  const int64_t whole = K / 32 * 32;
  const __mmask32 tail = static_cast<__mmask32>((uint64_t{1} << (K - whole)) - 1);
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* wn = w + n * K;
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < whole; k += 32) {
      const __m512bh wv = as_bf16_pairs(_mm512_loadu_si512(wn + k));
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], wv, as_bf16_pairs(_mm512_loadu_si512(x + r * K + k)));
    }
    if (tail != 0) {  // the last K % 32 elements, the other lanes zero
      const __m512bh wv = as_bf16_pairs(_mm512_maskz_loadu_epi16(tail, wn + whole));
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], wv, as_bf16_pairs(_mm512_maskz_loadu_epi16(tail, x + r * K + whole)));
    }
    for (int r = 0; r < R; ++r) {
      // 16 lanes -> 8 -> one sum (through memory: GCC 12's lane-extracting intrinsics trip
      // -Wmaybe-uninitialized)
      alignas(64) float lanes[16];
      _mm512_store_ps(lanes, acc[r]);
      const __m256 half = _mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8));
      y[r * N + n] = horizontal_sum(half) + (bias ? bias[n] : 0.0f);
    }
  }
}

std::array<Bf16Kernel, kMatvecMaxRows + 1> make_bf16_table() {
  if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    return {nullptr,        rows_dpbf16<1>, rows_dpbf16<2>, rows_dpbf16<3>, rows_dpbf16<4>,
            rows_dpbf16<5>, rows_dpbf16<6>, rows_dpbf16<7>, rows_dpbf16<8>};
  return {};
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

// work(n0, n1) over weight rows [0, N) split evenly (in blocks of 64 rows) across the threads
// configure_cpu_threads resolved, whatever libtorch's own pool has: these products stream the
// weights, so every core's share of the memory bandwidth counts, and the BLAS they stand in for is
// idle meanwhile. Serial inside another parallel region or without OpenMP.
template <typename F>
void split_rows(int64_t N, const F& work) {
  int threads = std::max(configured_cpu_threads(), at::get_num_threads());
#if defined(_OPENMP)
  if (omp_in_parallel()) threads = 1;
#else
  threads = 1;
#endif
  const int64_t blocks = (N + 63) / 64;
  threads = static_cast<int>(std::min<int64_t>(threads, blocks));
  if (threads <= 1) {
    work(0, N);
    return;
  }
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t n0 = std::min(N, blocks * t / n * 64), n1 = std::min(N, blocks * (t + 1) / n * 64);
    if (n0 < n1) work(n0, n1);
  }
#endif
}

template <typename W>
void run_rows(const W* w, int64_t R, int64_t K, int64_t N, const float* x, const float* bias, float* y) {
  static const std::array<Kernel<W>, kMatvecMaxRows + 1> table = make_table<W>();  // by CPU features, set once
  const Kernel<W> kernel = table[static_cast<size_t>(R)];
  // Blocks of 64 weight rows (224 KB of float32 at K = 896) per task.
  split_rows(N, [&](int64_t n0, int64_t n1) { kernel(w, n0, n1, K, x, bias, y, N); });
}

}  // namespace

bool matvec_rows_applies(const torch::Tensor& x, const torch::Tensor& weight) {
  const auto t = x.scalar_type();
  return x.is_cpu() && weight.is_cpu() && x.dim() == 2 && weight.dim() == 2 &&
         (t == torch::kFloat32 || t == torch::kBFloat16) && weight.scalar_type() == t && x.size(0) >= 1 &&
         x.size(0) <= kMatvecMaxRows && x.size(1) == weight.size(1) && weight.is_contiguous();
}

#if defined(__x86_64__)
namespace {
const std::array<Bf16Kernel, kMatvecMaxRows + 1>& bf16_pair_kernels() {
  static const std::array<Bf16Kernel, kMatvecMaxRows + 1> table = make_bf16_table();  // by CPU features
  return table;
}
}  // namespace

bool matvec_has_bf16_pair_kernel() { return bf16_pair_kernels()[1] != nullptr; }
#else
bool matvec_has_bf16_pair_kernel() { return false; }
#endif

torch::Tensor matvec_rows(const torch::Tensor& x_in, const torch::Tensor& weight, const torch::Tensor& bias,
                          MatvecKernel choice) {
  if (!matvec_rows_applies(x_in, weight) ||
      (bias.defined() && (bias.scalar_type() != x_in.scalar_type() || bias.numel() != weight.size(0) || !bias.is_cpu())))
    throw InferenceError("matvec_rows: expects float32 or bfloat16 CPU x [1.." + std::to_string(kMatvecMaxRows) +
                         ", K], weight [N, K] and bias [N] of x's dtype");
  // The bias is small: taken as float32; the sums are float32 and rounded to x's dtype at the end,
  // as libtorch's bfloat16 products round theirs.
  const torch::Tensor b = bias.defined() ? bias.to(torch::kFloat32).contiguous() : bias;
  const int64_t R = x_in.size(0), K = x_in.size(1), N = weight.size(0);
  torch::Tensor y = torch::empty({R, N}, x_in.options().dtype(torch::kFloat32));
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const bool bf16 = weight.scalar_type() == torch::kBFloat16;
#if defined(__x86_64__)
  const Bf16Kernel pairs =
      bf16 && choice == MatvecKernel::kBest ? bf16_pair_kernels()[static_cast<size_t>(R)] : nullptr;
  if (pairs) {  // x read as it is: bfloat16, as the weights (matvec_rows_applies)
    const torch::Tensor xb = x_in.contiguous();
    const auto* xbp = reinterpret_cast<const uint16_t*>(xb.data_ptr<at::BFloat16>());
    const auto* wp = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
    split_rows(N, [&](int64_t n0, int64_t n1) { pairs(wp, n0, n1, K, xbp, bp, yp, N); });
    return y.to(torch::kBFloat16);
  }
#else
  (void)choice;
#endif
  // The widening kernels take x (small) as float32.
  const torch::Tensor x = x_in.to(torch::kFloat32).contiguous();
  const float* xp = x.data_ptr<float>();
  if (!bf16) {
    run_rows(weight.data_ptr<float>(), R, K, N, xp, bp, yp);
    return y;
  }
  run_rows(reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>()), R, K, N, xp, bp, yp);
  return y.to(torch::kBFloat16);
}

}  // namespace unibiomed::inference
