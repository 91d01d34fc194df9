// The image side of InternVL2.5-1B as UniBiomed runs it (modeling_intern_vit.py and
// modeling_sa2va_chat.py extract_feature): InternViT-300M over 448-pixel tiles, the CLS token
// dropped, pixel shuffle (version v2) to a quarter of the tokens, and the mlp1 projector into
// the language model's embedding space. 256 image tokens per tile at the release sizes.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <vector>

#include "inference/model_config.h"
#include "inference/weights.h"

namespace unibiomed::inference {

class VisionEncoder {
 public:
  // Reads vision_model.* and mlp1.* from `weights` (compute dtype and device come from there);
  // InferenceError names the tensor and the expected shape when the checkpoint disagrees
  // with the configuration.
  VisionEncoder(Weights& weights, const ModelConfig& config);

  // Image token embeddings for tiles [N, 3, S, S] (any float dtype, any device; S = the
  // configured tile side): [N, tokens_per_tile(), llm hidden] in the compute dtype, on the
  // compute device. Tiles are encoded in batches of at most max_batch_tiles() at a time, so one
  // call can take every tile of every slice of a volume.
  torch::Tensor encode(const torch::Tensor& pixel_values) const;

  // The steps of encode, exposed for tests against the reference:
  // InternViT's last hidden state [N, 1 + h*w, C] (CLS first) for pixels [N, 3, H, W] whose sides
  // are multiples of the patch size; the position embeddings are bicubic-interpolated when
  // h x w differs from the trained grid. With `hidden_states`, also the embeddings and every
  // layer's output (Hugging Face's output_hidden_states order).
  torch::Tensor vit_forward(const torch::Tensor& pixel_values, std::vector<torch::Tensor>* hidden_states = nullptr) const;
  // Pixel shuffle v2 of [N, g, g, C] to [N, g*r, g*r, C/r^2] with r = scale_factor (0.5):
  // out[i, j] = concat(x[2i, 2j], x[2i, 2j+1], x[2i+1, 2j], x[2i+1, 2j+1]).
  static torch::Tensor pixel_shuffle(const torch::Tensor& x, double scale_factor);
  // mlp1: LayerNorm(4C, eps 1e-5) -> Linear -> GELU (erf) -> Linear, on [..., 4C].
  torch::Tensor project(const torch::Tensor& shuffled) const;

  int64_t tokens_per_tile() const { return tokens_per_tile_; }
  int64_t output_size() const { return llm_hidden_; }
  int tile_size() const { return tile_size_; }
  int max_batch_tiles() const { return max_batch_tiles_; }
  // Bounds the working memory: at the release size one tile needs about 45 MB of float32
  // activations (with the per-head attention scores of the CPU path: 4 MB more per call).
  // Default 8 on the CPU, 32 on CUDA.
  void set_max_batch_tiles(int tiles);

 private:
  struct Layer {
    torch::Tensor norm1_weight, norm1_bias, norm2_weight, norm2_bias;
    torch::Tensor qkv_weight_t, qkv_bias;    // [C, 3C] (transposed for addmm), [3C]
    torch::Tensor proj_weight_t, proj_bias;  // layer scale ls1 folded in
    torch::Tensor fc1_weight_t, fc1_bias;
    torch::Tensor fc2_weight_t, fc2_bias;    // layer scale ls2 folded in
  };
  struct Scratch;

  torch::Tensor embed(const torch::Tensor& pixel_values, int64_t grid_h, int64_t grid_w) const;
  torch::Tensor position_embedding(int64_t grid_h, int64_t grid_w) const;
  void run_layer(const Layer& layer, torch::Tensor& x, int64_t batch, int64_t tokens, Scratch& scratch) const;
  void attention(const torch::Tensor& qkv, torch::Tensor& out, int64_t batch, int64_t tokens, Scratch& scratch) const;

  torch::TensorOptions options_;
  int64_t hidden_ = 0, heads_ = 0, head_dim_ = 0, intermediate_ = 0, patch_ = 0, trained_grid_ = 0;
  int64_t llm_hidden_ = 0, tokens_per_tile_ = 0;
  int tile_size_ = 0;
  int layers_to_run_ = 0;  // from select_layer (-1: all)
  double layer_norm_eps_ = 1e-6;
  double downsample_ratio_ = 0.5;
  int max_batch_tiles_ = 8;

  torch::Tensor patch_weight_t_, patch_bias_;  // [3*P*P, C], [C]
  torch::Tensor class_embedding_;              // [C]
  torch::Tensor position_embedding_;           // [1 + G*G, C] as stored (float32)
  torch::Tensor tile_position_embedding_;      // [1 + g*g, C] for the tile grid, compute dtype
  std::vector<Layer> layers_;
  torch::Tensor mlp1_norm_weight_, mlp1_norm_bias_, mlp1_fc1_weight_t_, mlp1_fc1_bias_, mlp1_fc2_weight_t_,
      mlp1_fc2_bias_;
};

}  // namespace unibiomed::inference
