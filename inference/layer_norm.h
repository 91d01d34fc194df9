// LayerNorm as the model's blocks need it on every device and dtype.
//
// libtorch 1.13's bfloat16 LayerNorm on the CPU runs at about a third of its float32 one (a
// 65536 x 144 activation of SAM2's first stage: 44 ms against 15 ms on 2 cores), and the SAM2
// image encoder alone normalises about 270 M values per 1024-pixel image. In bfloat16 on the CPU
// the input is therefore widened to float32, normalised there and rounded back: faster, and the
// statistics are those of the original code, whose autocast runs layer_norm in float32. float32
// input and GPUs (whose bfloat16 kernel keeps float32 statistics already) take torch::layer_norm.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

namespace unibiomed::inference {

// LayerNorm of x over its last dimension (weight and bias [C], in x's dtype, as the checkpoint
// is loaded). The result has x's dtype and device.
torch::Tensor layer_norm_last(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps);

}  // namespace unibiomed::inference
