// SPDX-License-Identifier: GPL-3.0-or-later
#include "training/trainable_model.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "inference/error.h"
#include "inference/safetensors_file.h"
#include "inference/vision_encoder.h"
#include "inference/weights.h"

namespace unibiomed::training {

namespace fs = std::filesystem;
using inference::InferenceError;

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Initial values of a fresh model: norms 1 / 0, layer scales 0.1 (InternViT), biases 0,
// embeddings N(0, 0.02), SAM2's Fourier matrix N(0, 1), other weights uniform with variance
// 1 / fan_in.
torch::Tensor initial_value(const inference::TensorSpec& t) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const std::string& n = t.name;
  if (ends_with(n, "ls1") || ends_with(n, "ls2")) return torch::full(t.shape, 0.1, f32);
  if (ends_with(n, ".bias")) return torch::zeros(t.shape, f32);
  if (ends_with(n, "positional_encoding_gaussian_matrix")) return torch::randn(t.shape, f32);
  if (t.shape.size() == 1 && ends_with(n, ".weight")) return torch::ones(t.shape, f32);
  const bool embedding = n.find("embed") != std::string::npos || ends_with(n, "_token.weight") ||
                         ends_with(n, "mask_tokens.weight") || ends_with(n, "pos_enc") || ends_with(n, "no_obj_ptr");
  if (embedding && n.find("patch_embed") == std::string::npos) return torch::randn(t.shape, f32) * 0.02;
  int64_t fan_in = 1;
  for (size_t i = 1; i < t.shape.size(); ++i) fan_in *= t.shape[i];
  const double bound = std::sqrt(3.0 / static_cast<double>(std::max<int64_t>(fan_in, 1)));
  return torch::rand(t.shape, f32) * (2 * bound) - bound;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return weight * (x * torch::rsqrt(x.pow(2).mean(-1, true) + eps));
}

}  // namespace

TrainableModel::TrainableModel(const inference::ModelConfig& config, const inference::Sam2MemoryConfig& memory,
                               uint64_t seed)
    : config_(config) {
  torch::manual_seed(seed);
  for (const auto& t : inference::checkpoint_layout(config_, memory)) params_[t.name] = initial_value(t);
  build(memory);
}

TrainableModel::TrainableModel(const fs::path& checkpoint_dir, const inference::Sam2MemoryConfig& memory)
    : config_(inference::ModelConfig::load(checkpoint_dir / "config.json")) {
  inference::Weights weights(inference::Checkpoint::open(checkpoint_dir), inference::ComputeOptions{});
  for (const auto& t : inference::checkpoint_layout(config_, memory))
    params_[t.name] = weights.get(t.name, t.shape).to(torch::kFloat32).clone();
  build(memory);
}

const torch::Tensor& TrainableModel::p(const std::string& name) const {
  auto it = params_.find(name);
  if (it == params_.end()) throw InferenceError("trainable model: no tensor '" + name + "'");
  return it->second;
}

void TrainableModel::build(const inference::Sam2MemoryConfig& memory) {
  const auto trunk = inference::layout::hiera_trunk();
  const std::string fourier = inference::layout::prompt_encoder().positional_encoding_gaussian_matrix;
  for (auto& [name, t] : params_) {
    // The video-only block also holds the mask and point prompt inputs, which no path reads:
    // they stay as initialised (no gradient reaches them).
    const bool fixed = name == fourier ||                                             // a buffer in SAM2
                       name == trunk.pos_embed || name == trunk.pos_embed_window;     // precomputed by the encoder
    if (fixed)
      frozen_.push_back(name);
    else
      t.requires_grad_(true);
  }
  // The SAM2 modules and the [SEG] projector hold these very tensors (in-memory Weights hand
  // them over without a copy), so optimiser steps reach them.
  inference::Weights weights(std::map<std::string, torch::Tensor>(params_), inference::ComputeOptions{});
  seg_head_ = std::make_unique<inference::LanguagePromptProjector>(weights, config_.llm.hidden_size,
                                                                   config_.grounding.neck.d_model);
  sam_encoder_ = std::make_unique<inference::Sam2ImageEncoder>(weights, config_.grounding);
  sam_decoder_ = std::make_unique<inference::Sam2MaskDecoder>(weights, config_.grounding);
  sam_memory_ = std::make_unique<inference::Sam2Memory>(weights, config_.grounding, memory);

  const auto& c = config_.llm;
  const int64_t d = c.head_dim();
  torch::NoGradGuard no_grad;
  const auto inv_freq =
      1.0 / torch::pow(c.rope_theta, torch::arange(0, d, 2, torch::kLong).to(torch::kFloat32) / static_cast<double>(d));
  const auto freqs = torch::outer(torch::arange(c.max_position_embeddings, torch::kFloat32), inv_freq);
  const auto angles = torch::cat({freqs, freqs}, -1);
  rope_cos_ = angles.cos();
  rope_sin_ = angles.sin();
}

std::vector<torch::Tensor> TrainableModel::trainable(bool memory_path) const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : params_)
    if (t.requires_grad() && (inference::block_of(name) == inference::CheckpointBlock::kSam2VideoOnly) == memory_path)
      out.push_back(t);
  return out;
}

void TrainableModel::reset_memory_path(const inference::Sam2MemoryConfig& memory, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (const auto& t : inference::checkpoint_layout(config_, memory)) {
    if (inference::block_of(t.name) != inference::CheckpointBlock::kSam2VideoOnly) continue;
    auto& value = params_.at(t.name);
    if (value.requires_grad()) value.copy_(initial_value(t));
  }
}

int64_t TrainableModel::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : params_) n += t.numel();
  return n;
}

torch::Tensor TrainableModel::vision_tokens(const torch::Tensor& tiles) const {
  const auto& v = config_.vision;
  const int64_t N = tiles.size(0), C = v.hidden_size, P = v.patch_size, heads = v.num_attention_heads;
  const int64_t g = tiles.size(2) / P, G = v.image_size / P;
  if (tiles.dim() != 4 || tiles.size(1) != 3 || tiles.size(2) != config_.tile_size || tiles.size(3) != config_.tile_size)
    throw InferenceError("trainable model: tiles have shape " + c10::str(tiles.sizes()) + ", expected [N, 3, " +
                         std::to_string(config_.tile_size) + ", " + std::to_string(config_.tile_size) + "]");
  if (g != G)
    throw InferenceError("trainable model: the tile size must equal vision_config.image_size (no position "
                         "embedding interpolation in training)");
  const auto e = inference::layout::vision_embeddings();
  auto x = torch::conv2d(tiles, p(e.patch_embedding.weight), p(e.patch_embedding.bias), {P, P})
               .flatten(2)
               .transpose(1, 2);  // [N, g*g, C]
  x = torch::cat({p(e.class_embedding).expand({N, 1, C}), x}, 1) + p(e.position_embedding);
  const int64_t L = x.size(1), hd = C / heads;
  const int layers = config_.select_layer < 0 ? v.num_hidden_layers + 1 + config_.select_layer : config_.select_layer;
  for (int i = 0; i < layers; ++i) {
    const auto l = inference::layout::vision_layer(i);
    auto h = torch::layer_norm(x, {C}, p(l.norm1.weight), p(l.norm1.bias), v.layer_norm_eps);
    auto qkv = torch::linear(h, p(l.attn_qkv.weight), v.qkv_bias ? p(l.attn_qkv.bias) : torch::Tensor())
                   .view({N, L, 3, heads, hd})
                   .permute({2, 0, 3, 1, 4});
    auto scores = torch::matmul(qkv[0], qkv[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
    auto a = torch::matmul(torch::softmax(scores, -1), qkv[2]).transpose(1, 2).reshape({N, L, C});
    x = x + p(l.ls1) * torch::linear(a, p(l.attn_proj.weight), p(l.attn_proj.bias));
    h = torch::layer_norm(x, {C}, p(l.norm2.weight), p(l.norm2.bias), v.layer_norm_eps);
    h = torch::linear(torch::gelu(torch::linear(h, p(l.mlp_fc1.weight), p(l.mlp_fc1.bias))), p(l.mlp_fc2.weight),
                      p(l.mlp_fc2.bias));
    x = x + p(l.ls2) * h;
  }
  auto tokens = x.narrow(1, 1, g * g).reshape({N, g, g, C});
  auto shuffled = inference::VisionEncoder::pixel_shuffle(tokens, config_.downsample_ratio).reshape({N, -1, 4 * C});
  const auto m = inference::layout::projector();
  auto h = torch::layer_norm(shuffled, {4 * C}, p(m.norm.weight), p(m.norm.bias), 1e-5);
  h = torch::gelu(torch::linear(h, p(m.fc1.weight), p(m.fc1.bias)));
  return torch::linear(h, p(m.fc2.weight), p(m.fc2.bias));
}

torch::Tensor TrainableModel::embed(const torch::Tensor& ids) const {
  const auto& table = p(inference::layout::language_model().embed_tokens_weight);
  return table.index_select(0, ids.reshape({-1})).view({ids.size(0), ids.size(1), table.size(1)});
}

torch::Tensor TrainableModel::llm_hidden(const torch::Tensor& embeds) const {
  const auto& c = config_.llm;
  const int64_t B = embeds.size(0), T = embeds.size(1), H = c.hidden_size, d = c.head_dim();
  const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, group = nh / nkv;
  if (T > c.max_position_embeddings)
    throw InferenceError("trainable model: " + std::to_string(T) + " positions exceed max_position_embeddings");
  const auto cos = rope_cos_.narrow(0, 0, T).view({1, 1, T, d});
  const auto sin = rope_sin_.narrow(0, 0, T).view({1, 1, T, d});
  auto rotate = [&](const torch::Tensor& x) {  // [B, heads, T, d]
    return x * cos + torch::cat({-x.narrow(-1, d / 2, d / 2), x.narrow(-1, 0, d / 2)}, -1) * sin;
  };
  const auto future = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool)).triu(1);
  auto x = embeds;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const auto l = inference::layout::language_layer(i);
    auto h = rms_norm(x, p(l.input_layernorm_weight), c.rms_norm_eps);
    auto q = torch::linear(h, p(l.q_proj.weight), p(l.q_proj.bias)).view({B, T, nh, d});
    auto k = torch::linear(h, p(l.k_proj.weight), p(l.k_proj.bias)).view({B, T, nkv, d});
    auto v = torch::linear(h, p(l.v_proj.weight), p(l.v_proj.bias)).view({B, T, nkv, d});
    q = rotate(q.transpose(1, 2));
    k = rotate(k.transpose(1, 2)).repeat_interleave(group, 1);
    v = v.transpose(1, 2).repeat_interleave(group, 1);
    auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
    scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
    auto a = torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({B, T, H});
    x = x + torch::linear(a, p(l.o_proj_weight));
    h = rms_norm(x, p(l.post_attention_layernorm_weight), c.rms_norm_eps);
    auto gated = torch::silu(torch::linear(h, p(l.gate_proj_weight))) * torch::linear(h, p(l.up_proj_weight));
    x = x + torch::linear(gated, p(l.down_proj_weight));
  }
  return rms_norm(x, p(inference::layout::language_model().norm_weight), c.rms_norm_eps);
}

torch::Tensor TrainableModel::logits(const torch::Tensor& hidden) const {
  const auto m = inference::layout::language_model();
  return torch::linear(hidden, p(config_.llm.tie_word_embeddings ? m.embed_tokens_weight : m.lm_head_weight));
}

void TrainableModel::save_weights(const fs::path& dir, const std::map<std::string, std::string>& metadata,
                                  inference::DType dtype) const {
  if (dtype != inference::DType::F32 && dtype != inference::DType::BF16)
    throw InferenceError("trainable model: weights are saved as F32 or BF16");
  std::vector<inference::TensorBlob> blobs;
  for (const auto& [name, t] : params_) {
    const bool bf16 = dtype == inference::DType::BF16;
    const auto c = t.detach().to(torch::kCPU, bf16 ? torch::kBFloat16 : torch::kFloat32).contiguous();
    inference::TensorBlob b;
    b.name = name;
    b.dtype = dtype;
    b.shape = c.sizes().vec();
    const auto* bytes = static_cast<const std::byte*>(c.data_ptr());
    b.bytes.assign(bytes, bytes + c.numel() * static_cast<int64_t>(c.element_size()));
    blobs.push_back(std::move(b));
  }
  inference::write_safetensors(dir / "model.safetensors", blobs, metadata);
}

}  // namespace unibiomed::training
