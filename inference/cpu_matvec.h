// y = x W^T + b for a handful of rows x (decoding: one row per sequence) with float32 weights
// on the CPU, streaming W from memory once for all rows. Decoding is bound by memory bandwidth:
// OpenBLAS's GEMM packs the whole weight matrix first (several times the traffic for a few rows)
// and its matrix-vector product reads W once per row, so a batch of 4 sequences would cost 4
// passes over 2 GB of weights per step instead of one.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

namespace unibiomed::inference {

// Most rows the kernel takes in one pass (more rows go to GEMM, which then pays off).
inline constexpr int64_t kMatvecMaxRows = 8;

// Whether matvec_rows can run: float32 contiguous CPU tensors, 1..kMatvecMaxRows rows.
bool matvec_rows_applies(const torch::Tensor& x, const torch::Tensor& weight);

// x [R, K], weight [N, K], bias [N] or undefined -> [R, N]. Uses AVX2/FMA when the CPU has them.
torch::Tensor matvec_rows(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

}  // namespace unibiomed::inference
