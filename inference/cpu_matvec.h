// y = x W^T + b for a handful of rows x (decoding: one row per sequence) with float32 or bfloat16
// weights on the CPU, streaming W from memory once for all rows. Decoding is bound by memory bandwidth:
// OpenBLAS's GEMM packs the whole weight matrix first (several times the traffic for a few rows)
// and its matrix-vector product reads W once per row, so a batch of 4 sequences would cost 4
// passes over 2 GB of weights per step instead of one. In bfloat16, libtorch 1.13's matrix-vector
// product per row read the weights at a fraction of the memory bandwidth (a 0.5 B decode step took
// 87 ms); here they are widened to float32 in registers (or, on CPUs with AVX512-BF16, multiplied
// in pairs by vdpbf16ps, whose products are exact), the sums kept in float32 and rounded to
// bfloat16 once, as libtorch's bfloat16 products round theirs.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

namespace unibiomed::inference {

// Most rows the kernel takes in one pass (more rows go to GEMM, which then pays off).
inline constexpr int64_t kMatvecMaxRows = 8;

// Whether matvec_rows can run: CPU tensors, x and weight both float32 or both bfloat16, weight
// contiguous, 1..kMatvecMaxRows rows.
bool matvec_rows_applies(const torch::Tensor& x, const torch::Tensor& weight);

// x [R, K], weight [N, K], bias [N] or undefined (x's dtype) -> [R, N] in x's dtype. Uses AVX2/FMA
// when the CPU has them (AVX512-BF16 for bfloat16); runs on configured_cpu_threads() threads
// (runtime.h), whatever libtorch's pool has.
// `kernel`: kBest picks by CPU features; kWidening keeps bfloat16 weights on the widening kernel
// (AVX2 or plain) even where AVX512-BF16 is present, so that tests check both kernels on one machine.
enum class MatvecKernel { kBest, kWidening };
torch::Tensor matvec_rows(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                          MatvecKernel kernel = MatvecKernel::kBest);
// Whether kBest uses the AVX512-BF16 kernel for bfloat16 weights on this CPU.
bool matvec_has_bf16_pair_kernel();

}  // namespace unibiomed::inference
