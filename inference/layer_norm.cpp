// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/layer_norm.h"

#include <torch/torch.h>

namespace unibiomed::inference {

torch::Tensor layer_norm_last(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              double eps) {
  const int64_t c = x.size(-1);
  if (!x.is_cpu() || x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64)
    return torch::layer_norm(x, {c}, weight, bias, eps);
  const auto f = torch::kFloat32;
  return torch::layer_norm(x.to(f), {c}, weight.defined() ? weight.to(f) : weight, bias.defined() ? bias.to(f) : bias, eps)
      .to(x.scalar_type());
}

}  // namespace unibiomed::inference
