// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/vision_encoder.h"

#include <c10/core/InferenceMode.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "inference/checkpoint_layout.h"
#include "inference/error.h"
#include "inference/layer_norm.h"

namespace unibiomed::inference {

namespace {

std::string shape_string(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

// Buffers reused by every layer and every batch of one encode call: allocating them per layer
// would page-fault tens of megabytes each time (the reference spends 29-39% of its CPU time
// there, MODEL.md).
struct VisionEncoder::Scratch {
  torch::Tensor x;          // residual stream [B, N, C]
  torch::Tensor normed;     // [B*N, C]
  torch::Tensor mean, rstd; // LayerNorm statistics [B*N, 1]
  torch::Tensor qkv;        // [B*N, 3C]
  torch::Tensor attended;   // [B*N, C]
  torch::Tensor mlp;        // [B*N, I]
  torch::Tensor scores;     // [N, N], one head of one tile at a time
  int64_t batch = 0, tokens = 0;

  Scratch(int64_t b, int64_t n, int64_t c, int64_t inter, const torch::TensorOptions& o) : batch(b), tokens(n) {
    x = torch::empty({b, n, c}, o);
    normed = torch::empty({b * n, c}, o);
    mean = torch::empty({b * n, 1}, o);
    rstd = torch::empty({b * n, 1}, o);
    qkv = torch::empty({b * n, 3 * c}, o);
    attended = torch::empty({b * n, c}, o);
    mlp = torch::empty({b * n, inter}, o);
    scores = torch::empty({n, n}, o);
  }
};

VisionEncoder::VisionEncoder(Weights& weights, const ModelConfig& config) : options_(torch::TensorOptions()) {
  const VisionConfig& v = config.vision;
  options_ = torch::TensorOptions().dtype(weights.options().dtype).device(weights.options().device);
  hidden_ = v.hidden_size;
  heads_ = v.num_attention_heads;
  intermediate_ = v.intermediate_size;
  patch_ = v.patch_size;
  layer_norm_eps_ = v.layer_norm_eps;
  downsample_ratio_ = config.downsample_ratio;
  tile_size_ = config.tile_size;
  llm_hidden_ = config.llm.hidden_size;
  // A GPU keeps its units busy only with many tiles at once; on a CPU a tile is already a large
  // matmul and the batch only bounds memory.
  max_batch_tiles_ = options_.device().is_cuda() ? 32 : 8;
  if (heads_ <= 0 || hidden_ % heads_ != 0)
    throw InferenceError("vision_config: hidden_size " + std::to_string(hidden_) +
                         " is not a multiple of num_attention_heads " + std::to_string(heads_));
  head_dim_ = hidden_ / heads_;
  if (v.norm_type != "layer_norm")
    throw InferenceError("vision_config: norm_type \"" + v.norm_type + "\" is not supported (InternViT-300M uses layer_norm)");
  if (v.qk_normalization) throw InferenceError("vision_config: qk_normalization is not supported (InternViT-300M has none)");
  if (v.hidden_act != "gelu")
    throw InferenceError("vision_config: hidden_act \"" + v.hidden_act + "\" is not supported (expected gelu)");
  if (v.num_channels != 3) throw InferenceError("vision_config: num_channels must be 3 (RGB)");
  if (config.ps_version != "v2")
    throw InferenceError("ps_version \"" + config.ps_version + "\" is not supported (UniBiomed uses v2)");
  if (downsample_ratio_ != 0.5)
    throw InferenceError("downsample_ratio " + std::to_string(downsample_ratio_) + " is not supported (expected 0.5)");
  if (patch_ <= 0 || v.image_size % patch_ != 0 || tile_size_ % patch_ != 0)
    throw InferenceError("vision_config: image_size " + std::to_string(v.image_size) + " and tile size " +
                         std::to_string(tile_size_) + " must be multiples of patch_size " + std::to_string(patch_));
  const int64_t grid = tile_size_ / patch_;
  if (grid % 2 != 0)
    throw InferenceError("tile size " + std::to_string(tile_size_) + " gives an odd patch grid " + std::to_string(grid) +
                         ", which pixel shuffle cannot halve");
  tokens_per_tile_ = (grid / 2) * (grid / 2);
  trained_grid_ = v.image_size / patch_;
  const int layers = v.num_hidden_layers;
  // select_layer indexes Hugging Face's hidden_states (embeddings first): -1 is the last layer.
  layers_to_run_ = config.select_layer < 0 ? layers + 1 + config.select_layer : config.select_layer;
  if (layers_to_run_ < 0 || layers_to_run_ > layers)
    throw InferenceError("select_layer " + std::to_string(config.select_layer) + " is outside the " +
                         std::to_string(layers) + " InternViT layers");

  const int64_t C = hidden_;
  const auto e = layout::vision_embeddings();
  patch_bias_ = weights.get(e.patch_embedding.bias, {C});
  // Conv2d(3, C, P, stride P) as one matmul over flattened (channel, ky, kx) patches.
  patch_weight_t_ = weights.get(e.patch_embedding.weight, {C, 3, patch_, patch_}).reshape({C, 3 * patch_ * patch_}).t();
  class_embedding_ = weights.get(e.class_embedding, {1, 1, C}).reshape({C});
  // Kept in float32: the reference interpolates it in float32 (_get_pos_embed's .float()).
  position_embedding_ = weights.get_raw(e.position_embedding, {1, 1 + trained_grid_ * trained_grid_, C})
                            .to(torch::kFloat32)
                            .reshape({1 + trained_grid_ * trained_grid_, C});
  {
    c10::InferenceMode guard;
    tile_position_embedding_ = position_embedding(grid, grid);
  }

  // Layer scale is folded into the projection before each residual add:
  // ls * (W a + b) = (diag(ls) W) a + ls * b, one fewer pass over the activations per layer.
  auto scaled = [&](const std::string& name, const std::vector<int64_t>& shape, const torch::Tensor& ls) {
    torch::Tensor w = weights.get_raw(name, shape).to(torch::kFloat32);
    w = shape.size() == 2 ? w * ls.unsqueeze(1) : w * ls;
    return w.to(options_);
  };
  for (int i = 0; i < layers_to_run_; ++i) {
    const auto n = layout::vision_layer(i);
    Layer l;
    l.norm1_weight = weights.get(n.norm1.weight, {C});
    l.norm1_bias = weights.get(n.norm1.bias, {C});
    l.norm2_weight = weights.get(n.norm2.weight, {C});
    l.norm2_bias = weights.get(n.norm2.bias, {C});
    l.qkv_weight_t = weights.get(n.attn_qkv.weight, {3 * C, C}).t();
    l.qkv_bias = v.qkv_bias ? weights.get(n.attn_qkv.bias, {3 * C}) : torch::zeros({3 * C}, options_);
    const torch::Tensor ls1 = weights.get_raw(n.ls1, {C}).to(torch::kFloat32);
    const torch::Tensor ls2 = weights.get_raw(n.ls2, {C}).to(torch::kFloat32);
    l.proj_weight_t = scaled(n.attn_proj.weight, {C, C}, ls1).t();
    l.proj_bias = scaled(n.attn_proj.bias, {C}, ls1);
    l.fc1_weight_t = weights.get(n.mlp_fc1.weight, {intermediate_, C}).t();
    l.fc1_bias = weights.get(n.mlp_fc1.bias, {intermediate_});
    l.fc2_weight_t = scaled(n.mlp_fc2.weight, {C, intermediate_}, ls2).t();
    l.fc2_bias = scaled(n.mlp_fc2.bias, {C}, ls2);
    layers_.push_back(std::move(l));
  }

  const int64_t shuffled = C * 4;  // C / downsample_ratio^2
  const auto m = layout::projector();
  mlp1_norm_weight_ = weights.get(m.norm.weight, {shuffled});
  mlp1_norm_bias_ = weights.get(m.norm.bias, {shuffled});
  mlp1_fc1_weight_t_ = weights.get(m.fc1.weight, {llm_hidden_, shuffled}).t();
  mlp1_fc1_bias_ = weights.get(m.fc1.bias, {llm_hidden_});
  mlp1_fc2_weight_t_ = weights.get(m.fc2.weight, {llm_hidden_, llm_hidden_}).t();
  mlp1_fc2_bias_ = weights.get(m.fc2.bias, {llm_hidden_});
}

void VisionEncoder::set_max_batch_tiles(int tiles) {
  if (tiles < 1) throw InferenceError("vision encoder: max batch " + std::to_string(tiles) + " must be at least 1");
  max_batch_tiles_ = tiles;
}

// CLS row as stored, grid rows bicubic-interpolated (align_corners=False, on float32) to
// grid_h x grid_w when that differs from the trained grid (InternVisionEmbeddings._get_pos_embed).
torch::Tensor VisionEncoder::position_embedding(int64_t grid_h, int64_t grid_w) const {
  if (grid_h == trained_grid_ && grid_w == trained_grid_) return position_embedding_.to(options_);
  const int64_t G = trained_grid_, C = hidden_;
  torch::Tensor grid = position_embedding_.narrow(0, 1, G * G).reshape({1, G, G, C}).permute({0, 3, 1, 2});
  namespace F = torch::nn::functional;
  torch::Tensor resized = F::interpolate(grid, F::InterpolateFuncOptions()
                                                   .size(std::vector<int64_t>{grid_h, grid_w})
                                                   .mode(torch::kBicubic)
                                                   .align_corners(false));
  resized = resized.reshape({C, grid_h * grid_w}).t();
  return torch::cat({position_embedding_.narrow(0, 0, 1), resized}, 0).to(options_);
}

// Patch embedding + CLS + position embedding into x [B, 1 + h*w, C].
torch::Tensor VisionEncoder::embed(const torch::Tensor& pixels, int64_t grid_h, int64_t grid_w) const {
  const int64_t B = pixels.size(0), P = patch_, C = hidden_;
  // [B, 3, h*P, w*P] -> [B*h*w, 3*P*P] with (channel, ky, kx) inner order, the conv's weight order.
  torch::Tensor patches = pixels.narrow(2, 0, grid_h * P)
                              .narrow(3, 0, grid_w * P)
                              .reshape({B, 3, grid_h, P, grid_w, P})
                              .permute({0, 2, 4, 1, 3, 5})
                              .reshape({B * grid_h * grid_w, 3 * P * P});
  const torch::Tensor pos = grid_h * P == tile_size_ && grid_w * P == tile_size_ ? tile_position_embedding_
                                                                                 : position_embedding(grid_h, grid_w);
  return torch::cat({(class_embedding_ + pos[0]).expand({B, 1, C}),
                     torch::addmm(patch_bias_, patches, patch_weight_t_).view({B, grid_h * grid_w, C}) +
                         pos.narrow(0, 1, grid_h * grid_w)},
                    1);
}

void VisionEncoder::attention(const torch::Tensor& qkv, torch::Tensor& out, int64_t batch, int64_t tokens,
                              Scratch& scratch) const {
  const int64_t C = hidden_, d = head_dim_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
#if TORCH_VERSION_MAJOR >= 2
  if (qkv.is_cuda()) {
    // Fused (flash / memory-efficient) attention on the GPU; same math: softmax(q k^T / sqrt(d)) v.
    torch::Tensor t = qkv.view({batch, tokens, 3, heads_, d}).permute({2, 0, 3, 1, 4});
    torch::Tensor o = at::scaled_dot_product_attention(t[0], t[1], t[2]);
    out.view({batch, tokens, heads_, d}).copy_(o.transpose(1, 2));
    return;
  }
#endif
  // One head of one tile at a time: the [N, N] score block stays in cache and is reused, the
  // heads are strided views into the fused qkv output (no copies), and each head's result is
  // written straight into its columns of `out`.
  torch::Tensor& scores = scratch.scores;
  for (int64_t b = 0; b < batch; ++b) {
    const torch::Tensor rows = qkv.narrow(0, b * tokens, tokens);
    torch::Tensor out_rows = out.narrow(0, b * tokens, tokens);
    for (int64_t h = 0; h < heads_; ++h) {
      const torch::Tensor q = rows.narrow(1, h * d, d);
      const torch::Tensor k = rows.narrow(1, C + h * d, d);
      const torch::Tensor v = rows.narrow(1, 2 * C + h * d, d);
      at::addmm_out(scores, scores, q, k.t(), /*beta=*/0, /*alpha=*/scale);
      at::softmax_out(scores, scores, -1);
      torch::Tensor o = out_rows.narrow(1, h * d, d);
      at::mm_out(o, scores, v);
    }
  }
}

namespace {

// LayerNorm of x into `normed`. In float32 on the CPU through native_layer_norm_out, which writes
// into the reused buffers; elsewhere through layer_norm_last (layer_norm.h): bfloat16 on the CPU
// normalised in float32, and a GPU's native_layer_norm keeps its statistics in float32 for
// bfloat16 input (the buffers are in the compute dtype) and its allocator already reuses memory.
void layer_norm_into(torch::Tensor& normed, torch::Tensor& mean, torch::Tensor& rstd, const torch::Tensor& x,
                     int64_t channels, const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  if (x.is_cpu() && x.scalar_type() == torch::kFloat32) {
    at::native_layer_norm_out(normed, mean, rstd, x, {channels}, weight, bias, eps);
    return;
  }
  normed.copy_(layer_norm_last(x, weight, bias, eps));
}

}  // namespace

// x += ls1 * attn(norm1(x)); x += ls2 * mlp(norm2(x)) (InternVisionEncoderLayer.forward).
void VisionEncoder::run_layer(const Layer& l, torch::Tensor& x, int64_t batch, int64_t tokens, Scratch& s) const {
  const int64_t rows = batch * tokens, C = hidden_;
  torch::Tensor x2 = x.view({rows, C});
  torch::Tensor normed = s.normed.narrow(0, 0, rows), mean = s.mean.narrow(0, 0, rows), rstd = s.rstd.narrow(0, 0, rows);
  torch::Tensor qkv = s.qkv.narrow(0, 0, rows), attended = s.attended.narrow(0, 0, rows), mlp = s.mlp.narrow(0, 0, rows);

  layer_norm_into(normed, mean, rstd, x2, C, l.norm1_weight, l.norm1_bias, layer_norm_eps_);
  at::addmm_out(qkv, l.qkv_bias, normed, l.qkv_weight_t);
  attention(qkv, attended, batch, tokens, s);
  x2.addmm_(attended, l.proj_weight_t).add_(l.proj_bias);

  layer_norm_into(normed, mean, rstd, x2, C, l.norm2_weight, l.norm2_bias, layer_norm_eps_);
  at::addmm_out(mlp, l.fc1_bias, normed, l.fc1_weight_t);
  at::gelu_(mlp);  // exact (erf) GELU, the default approximate="none"
  x2.addmm_(mlp, l.fc2_weight_t).add_(l.fc2_bias);
}

torch::Tensor VisionEncoder::vit_forward(const torch::Tensor& pixel_values, std::vector<torch::Tensor>* hidden_states) const {
  c10::InferenceMode guard;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != 3)
    throw InferenceError("vision encoder: pixel values have shape " + shape_string(pixel_values) + ", expected [N, 3, H, W]");
  const int64_t grid_h = pixel_values.size(2) / patch_, grid_w = pixel_values.size(3) / patch_;
  if (grid_h == 0 || grid_w == 0)
    throw InferenceError("vision encoder: pixel values " + shape_string(pixel_values) + " are smaller than one " +
                         std::to_string(patch_) + "-pixel patch");
  const int64_t B = pixel_values.size(0), N = 1 + grid_h * grid_w;
  Scratch scratch(B, N, hidden_, intermediate_, options_);
  scratch.x.copy_(embed(pixel_values.to(options_), grid_h, grid_w));
  if (hidden_states) hidden_states->push_back(scratch.x.clone());
  for (const Layer& l : layers_) {
    run_layer(l, scratch.x, B, N, scratch);
    if (hidden_states) hidden_states->push_back(scratch.x.clone());
  }
  return scratch.x;
}

torch::Tensor VisionEncoder::pixel_shuffle(const torch::Tensor& x, double scale_factor) {
  // The reference's sequence of views and permutes (modeling_sa2va_chat.py pixel_shuffle,
  // ps_version v2), which together gather each 2x2 block of tokens into one token.
  if (x.dim() != 4 || x.size(1) != x.size(2))
    throw InferenceError("pixel shuffle: input has shape " + shape_string(x) + ", expected [N, g, g, C]");
  const int64_t n = x.size(0), w = x.size(1), h = x.size(2), c = x.size(3);
  const auto hs = static_cast<int64_t>(static_cast<double>(h) * scale_factor);
  const auto ws = static_cast<int64_t>(static_cast<double>(w) * scale_factor);
  if (hs * 2 != h || ws * 2 != w)
    throw InferenceError("pixel shuffle: grid " + std::to_string(w) + "x" + std::to_string(h) + " cannot be scaled by " +
                         std::to_string(scale_factor));
  torch::Tensor y = x.reshape({n, w, hs, 2 * c});  // N, W, H/2, 2C
  y = y.permute({0, 2, 1, 3}).contiguous();         // N, H/2, W, 2C
  y = y.view({n, hs, ws, 4 * c});                   // N, H/2, W/2, 4C
  return y.permute({0, 2, 1, 3}).contiguous();      // v2: back to row-major token order
}

torch::Tensor VisionEncoder::project(const torch::Tensor& shuffled) const {
  c10::InferenceMode guard;
  torch::Tensor h = layer_norm_last(shuffled, mlp1_norm_weight_, mlp1_norm_bias_, 1e-5);
  h = torch::gelu(torch::matmul(h, mlp1_fc1_weight_t_) + mlp1_fc1_bias_);
  return torch::matmul(h, mlp1_fc2_weight_t_) + mlp1_fc2_bias_;
}

torch::Tensor VisionEncoder::encode(const torch::Tensor& pixel_values) const {
  c10::InferenceMode guard;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != 3 || pixel_values.size(2) != tile_size_ ||
      pixel_values.size(3) != tile_size_)
    throw InferenceError("vision encoder: pixel values have shape " + shape_string(pixel_values) + ", expected [N, 3, " +
                         std::to_string(tile_size_) + ", " + std::to_string(tile_size_) + "]");
  const int64_t total = pixel_values.size(0);
  if (total == 0) throw InferenceError("vision encoder: no tiles to encode");
  const int64_t grid = tile_size_ / patch_, N = 1 + grid * grid, C = hidden_;
  const int64_t chunk = std::min<int64_t>(total, max_batch_tiles_);
  torch::Tensor out = torch::empty({total, tokens_per_tile_, llm_hidden_}, options_);
  Scratch scratch(chunk, N, hidden_, intermediate_, options_);
  for (int64_t start = 0; start < total; start += chunk) {
    const int64_t B = std::min(chunk, total - start);
    torch::Tensor x = scratch.x.narrow(0, 0, B);
    x.copy_(embed(pixel_values.narrow(0, start, B).to(options_), grid, grid));
    for (const Layer& l : layers_) run_layer(l, x, B, N, scratch);
    // extract_feature: drop CLS, [B, g, g, C], pixel shuffle, [B, g*g/4, 4C], mlp1.
    torch::Tensor tokens = x.narrow(1, 1, grid * grid).reshape({B, grid, grid, C});
    torch::Tensor shuffled = pixel_shuffle(tokens, downsample_ratio_).reshape({B, tokens_per_tile_, 4 * C});
    out.narrow(0, start, B).copy_(project(shuffled));
  }
  return out;
}

}  // namespace unibiomed::inference
