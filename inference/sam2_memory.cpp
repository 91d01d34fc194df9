// SPDX-License-Identifier: GPL-3.0-or-later
// Reference: UniBiomed projects/unibiomed/hf/models/sam2.py (MemoryAttentionLayer, MemoryAttention,
// RoPEAttention and compute_axial_cis, MaskDownSampler, CXBlock, MemoryEncoder,
// PositionEmbeddingSine, SAM2Base._prepare_memory_conditioned_features / _encode_new_memory /
// _forward_sam_heads, SAM2VideoPredictor) and docs/MODEL.md "Video and volume mode".
#include "inference/sam2_memory.h"

#include <torch/nn/functional.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <optional>

#include "inference/error.h"
#include "inference/layer_norm.h"

namespace unibiomed::inference {

namespace F = torch::nn::functional;

namespace {

// SAM2's fixed video settings (sam2 config of UniBiomed): pointers of at most 16 frames, and
// the memory encoder's mask scaling sigmoid(x) * 20 - 10.
constexpr int kMaxObjectPointers = 16;
constexpr double kMaskScale = 20.0;
constexpr double kMaskBias = -10.0;

torch::Tensor layer_norm_2d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, double eps) {
  auto mean = x.mean(1, true);
  auto var = (x - mean).pow(2).mean(1, true);
  auto y = (x - mean) / torch::sqrt(var + eps);
  return w.view({1, -1, 1, 1}) * y + b.view({1, -1, 1, 1});
}

// Rotates the pairs (2j, 2j+1) of the last dimension of x [B, L, D] by the angles of the table
// (cos/sin [L0, D/2]); the table repeats along L when L is a multiple of L0 (memory frames).
torch::Tensor rotate(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t l = x.size(1), l0 = cos.size(0);
  if (l == 0) return x;
  if (l % l0 != 0)
    throw InferenceError("SAM2 memory attention: " + std::to_string(l) + " rotary tokens are not a multiple of the " +
                         std::to_string(l0) + "-token grid");
  const int64_t r = l / l0;
  auto c = r == 1 ? cos : cos.repeat({r, 1});
  auto s = r == 1 ? sin : sin.repeat({r, 1});
  auto xf = x.to(torch::kFloat32).reshape({x.size(0), l, -1, 2});
  auto a = xf.select(3, 0), b = xf.select(3, 1);
  auto out = torch::stack({a * c - b * s, a * s + b * c}, 3).flatten(2);
  return out.to(x.scalar_type());
}

}  // namespace

torch::Tensor sine_position_encoding(int64_t channels, int64_t h, int64_t w) {
  if (channels <= 0 || channels % 2 != 0) throw InferenceError("sine position encoding: odd channel count");
  const int64_t npf = channels / 2;
  const double scale = 2 * M_PI;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  auto y = torch::arange(1, h + 1, f32).view({1, -1, 1}).repeat({1, 1, w});
  auto x = torch::arange(1, w + 1, f32).view({1, 1, -1}).repeat({1, h, 1});
  const double eps = 1e-6;
  y = y / (y.narrow(1, h - 1, 1) + eps) * scale;
  x = x / (x.narrow(2, w - 1, 1) + eps) * scale;
  auto dim_t = torch::arange(npf, f32);
  dim_t = torch::pow(10000.0, 2 * torch::floor(dim_t / 2.0) / static_cast<double>(npf));
  auto px = x.unsqueeze(3) / dim_t;
  auto py = y.unsqueeze(3) / dim_t;
  using torch::indexing::Slice;
  px = torch::stack({px.index({"...", Slice(0, torch::indexing::None, 2)}).sin(),
                     px.index({"...", Slice(1, torch::indexing::None, 2)}).cos()},
                    4)
           .flatten(3);
  py = torch::stack({py.index({"...", Slice(0, torch::indexing::None, 2)}).sin(),
                     py.index({"...", Slice(1, torch::indexing::None, 2)}).cos()},
                    4)
           .flatten(3);
  return torch::cat({py, px}, 3).permute({0, 3, 1, 2}).contiguous();
}

struct Sam2Memory::AttentionLayer {
  struct Proj {
    torch::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  };
  Proj self_attn, cross;
  torch::Tensor l1_w, l1_b, l2_w, l2_b;
  torch::Tensor n_w[3], n_b[3];
};

struct Sam2Memory::FuserLayer {
  torch::Tensor dw_w, dw_b, ln_w, ln_b, pw1_w, pw1_b, pw2_w, pw2_b, gamma;
};

bool Sam2Memory::available(const Weights& weights) {
  return weights.has(layout::no_obj_ptr()) && weights.has(layout::maskmem_tpos_enc()) &&
         weights.has(layout::memory_attention_norm().weight) && weights.has(layout::memory_encoder().out_proj.weight);
}

Sam2Memory::Sam2Memory(Weights& weights, const GroundingConfig& config, const Sam2MemoryConfig& memory)
    : config_(config), memory_(memory) {
  dim_ = config.neck.d_model;
  grid_ = config.image_size / 16;
  dtype_ = weights.options().dtype;
  device_ = weights.options().device;
  const int64_t d = dim_, md = memory.out_dim;
  if (memory.d_model != d)
    throw InferenceError("SAM2 memory attention width " + std::to_string(memory.d_model) + " differs from the neck's " +
                         std::to_string(d));
  if (md <= 0 || d % md != 0)
    throw InferenceError("SAM2 memory width " + std::to_string(md) + " does not divide the model width " + std::to_string(d));
  if (memory.kv_in_dim != md)
    throw InferenceError("SAM2 memory attention reads " + std::to_string(memory.kv_in_dim) +
                         "-wide memories but the memory encoder writes " + std::to_string(md));

  const auto me = layout::memory_encoder();
  int64_t in = 1;
  for (int s = 0; s < layout::MemoryEncoder::kDownsamplerStages; ++s) {
    const int64_t out = in * 4;
    down_w_.push_back(weights.get(me.downsampler_conv(s).weight, {out, in, 3, 3}));
    down_b_.push_back(weights.get(me.downsampler_conv(s).bias, {out}));
    down_ln_w_.push_back(weights.get(me.downsampler_norm(s).weight, {out}));
    down_ln_b_.push_back(weights.get(me.downsampler_norm(s).bias, {out}));
    in = out;
  }
  down_w_.push_back(weights.get(me.downsampler_conv(layout::MemoryEncoder::kDownsamplerStages).weight, {d, in, 1, 1}));
  down_b_.push_back(weights.get(me.downsampler_conv(layout::MemoryEncoder::kDownsamplerStages).bias, {d}));
  pix_proj_w_ = weights.get(me.pix_feat_proj.weight, {d, d, 1, 1});
  pix_proj_b_ = weights.get(me.pix_feat_proj.bias, {d});
  for (int i = 0; i < 2; ++i) {
    const auto n = me.fuser_layer(i);
    auto l = std::make_shared<FuserLayer>();
    l->dw_w = weights.get(n.dwconv.weight, {d, 1, 7, 7});
    l->dw_b = weights.get(n.dwconv.bias, {d});
    l->ln_w = weights.get(n.norm.weight, {d});
    l->ln_b = weights.get(n.norm.bias, {d});
    l->pw1_w = weights.get(n.pwconv1.weight, {4 * d, d});
    l->pw1_b = weights.get(n.pwconv1.bias, {4 * d});
    l->pw2_w = weights.get(n.pwconv2.weight, {d, 4 * d});
    l->pw2_b = weights.get(n.pwconv2.bias, {d});
    l->gamma = weights.get(n.g_weight, {d});
    fuser_.push_back(l);
  }
  out_proj_w_ = weights.get(me.out_proj.weight, {md, d, 1, 1});
  out_proj_b_ = weights.get(me.out_proj.bias, {md});

  auto proj = [&](const layout::Attention& a, int64_t kv) {
    AttentionLayer::Proj p;
    p.q_w = weights.get(a.q_proj.weight, {d, d});
    p.q_b = weights.get(a.q_proj.bias, {d});
    p.k_w = weights.get(a.k_proj.weight, {d, kv});
    p.k_b = weights.get(a.k_proj.bias, {d});
    p.v_w = weights.get(a.v_proj.weight, {d, kv});
    p.v_b = weights.get(a.v_proj.bias, {d});
    p.o_w = weights.get(a.out_proj.weight, {d, d});
    p.o_b = weights.get(a.out_proj.bias, {d});
    return p;
  };
  for (int i = 0; i < memory.num_layers; ++i) {
    const auto n = layout::memory_attention_layer(i);
    auto l = std::make_shared<AttentionLayer>();
    l->self_attn = proj(n.self_attn, d);
    l->cross = proj(n.cross_attn_image, md);
    l->l1_w = weights.get(n.linear1.weight, {memory.dim_feedforward, d});
    l->l1_b = weights.get(n.linear1.bias, {memory.dim_feedforward});
    l->l2_w = weights.get(n.linear2.weight, {d, memory.dim_feedforward});
    l->l2_b = weights.get(n.linear2.bias, {d});
    const layout::Module* norms[3] = {&n.norm1, &n.norm2, &n.norm3};
    for (int k = 0; k < 3; ++k) {
      l->n_w[k] = weights.get(norms[k]->weight, {d});
      l->n_b[k] = weights.get(norms[k]->bias, {d});
    }
    layers_.push_back(l);
  }
  norm_w_ = weights.get(layout::memory_attention_norm().weight, {d});
  norm_b_ = weights.get(layout::memory_attention_norm().bias, {d});

  const auto ptr = layout::obj_ptr_proj();
  for (int i = 0; i < 3; ++i) {
    ptr_w_.push_back(weights.get(ptr.layer(i).weight, {d, d}));
    ptr_b_.push_back(weights.get(ptr.layer(i).bias, {d}));
  }
  no_obj_ptr_ = weights.get(layout::no_obj_ptr(), {1, d});
  tpos_ = weights.get(layout::maskmem_tpos_enc(), {memory.num_maskmem, 1, 1, md}).view({memory.num_maskmem, md});

  // Axial rotary table of the h x w grid (compute_axial_cis, theta 1e4, one head of width D):
  // token i at x = i mod w, y = i div w; angles [x * f | y * f] with f_j = theta^(-4j/D).
  {
    auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
    auto freqs = 1.0 / torch::pow(10000.0, torch::arange(0, d, 4, f32).narrow(0, 0, d / 4) / static_cast<double>(d));
    auto t = torch::arange(grid_ * grid_, f32);
    auto tx = torch::remainder(t, static_cast<double>(grid_));
    auto ty = torch::floor(t / static_cast<double>(grid_));
    auto angles = torch::cat({torch::outer(tx, freqs), torch::outer(ty, freqs)}, 1);  // [hw, D/2]
    rope_cos_ = torch::cos(angles).to(device_);
    rope_sin_ = torch::sin(angles).to(device_);
  }
  image_pos_ = sine_position_encoding(d, grid_, grid_).to(device_, dtype_);
  memory_pos_ = sine_position_encoding(md, grid_, grid_).to(device_, dtype_);
}

torch::Tensor Sam2Memory::temporal_encoding(int index) const { return tpos_[index]; }

// Without gradients unless the weights are being trained (training/trainable_model.h).
bool Sam2Memory::trained() const { return out_proj_w_.requires_grad(); }

torch::Tensor Sam2Memory::encode(const torch::Tensor& pix_feat, const torch::Tensor& mask_high_res) const {
  std::optional<torch::NoGradGuard> no_grad;
  if (!trained()) no_grad.emplace();
  const int64_t s = config_.image_size;
  if (mask_high_res.dim() != 4 || mask_high_res.size(1) != 1 || mask_high_res.size(2) != s || mask_high_res.size(3) != s)
    throw InferenceError("SAM2 memory encoder: mask has shape " + c10::str(mask_high_res.sizes()) + ", expected [B, 1, " +
                         std::to_string(s) + ", " + std::to_string(s) + "]");
  auto m = torch::sigmoid(mask_high_res.to(device_, torch::kFloat32)) * kMaskScale + kMaskBias;
  m = m.to(dtype_);
  for (size_t i = 0; i + 1 < down_w_.size(); ++i) {
    m = torch::conv2d(m, down_w_[i], down_b_[i], {2, 2}, {1, 1});
    m = torch::gelu(layer_norm_2d(m, down_ln_w_[i], down_ln_b_[i], 1e-6));
  }
  m = torch::conv2d(m, down_w_.back(), down_b_.back());
  auto x = torch::conv2d(pix_feat.to(device_, dtype_), pix_proj_w_, pix_proj_b_) + m;
  for (const auto& l : fuser_) {
    auto y = torch::conv2d(x, l->dw_w, l->dw_b, {1, 1}, {3, 3}, {1, 1}, dim_);
    y = layer_norm_2d(y, l->ln_w, l->ln_b, 1e-6).permute({0, 2, 3, 1});
    y = torch::linear(torch::gelu(torch::linear(y, l->pw1_w, l->pw1_b)), l->pw2_w, l->pw2_b);
    y = (l->gamma * y).permute({0, 3, 1, 2});
    x = x + y;
  }
  return torch::conv2d(x, out_proj_w_, out_proj_b_);
}

torch::Tensor Sam2Memory::attend(const torch::Tensor& curr, const torch::Tensor& memory, const torch::Tensor& memory_pos,
                                 int64_t pointer_tokens, Scratch* scratch) const {
  std::optional<torch::NoGradGuard> no_grad;
  if (!trained()) no_grad.emplace();
  const bool training = torch::GradMode::is_enabled();
  const int64_t d = dim_;
  if (curr.dim() != 4 || curr.size(1) != d || curr.size(2) != grid_ || curr.size(3) != grid_)
    throw InferenceError("SAM2 memory attention: image feature has shape " + c10::str(curr.sizes()));
  if (memory.dim() != 3 || memory.size(2) != mem_dim() || memory.sizes() != memory_pos.sizes() ||
      memory.size(0) != curr.size(0) || pointer_tokens < 0 || pointer_tokens > memory.size(1))
    throw InferenceError("SAM2 memory attention: memory has shape " + c10::str(memory.sizes()) + " (positions " +
                         c10::str(memory_pos.sizes()) + ", " + std::to_string(pointer_tokens) + " pointer tokens)");
  const int64_t b = curr.size(0);
  Scratch local;
  Scratch& buffers = scratch ? *scratch : local;
  // One head of width D: softmax(q k^T / sqrt(D)) v with q and k rotated (RoPE), k's last
  // `k_exclude` tokens (object pointers) left as they are. When the values are narrower than D
  // (the cross attention reads mem_dim-wide memories), the value projection is applied after the
  // weighted sum: softmax rows sum to one, so w (m V^T + b) = (w m) V^T + b, and the sum over
  // the memory tokens runs on mem_dim columns instead of D.
  auto attention = [&](const AttentionLayer::Proj& p, const torch::Tensor& q_in, const torch::Tensor& k_in,
                       const torch::Tensor& v_in, int64_t k_exclude) {
    auto q = rotate(torch::linear(q_in, p.q_w, p.q_b), rope_cos_, rope_sin_);
    auto k = torch::linear(k_in, p.k_w, p.k_b);
    const int64_t k_rope = k.size(1) - k_exclude;
    if (k_exclude == 0) {
      k = rotate(k, rope_cos_, rope_sin_);
    } else {
      k = torch::cat({rotate(k.narrow(1, 0, k_rope), rope_cos_, rope_sin_), k.narrow(1, k_rope, k_exclude)}, 1);
    }
    const bool late_values = v_in.size(2) < d;
    auto v = late_values ? v_in.contiguous() : torch::linear(v_in, p.v_w, p.v_b);
#if TORCH_VERSION_MAJOR >= 2
    if (!q.is_cpu()) {
      // A GPU's fused attention (one head of width D, scaled by 1/sqrt(D)); the score chunks
      // below are for the CPU's caches and allocator.
      auto o = at::scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1);
      if (late_values) o = torch::linear(o, p.v_w, p.v_b);
      return torch::linear(o, p.o_w, p.o_b);
    }
#endif
    if (training) {
      // Autograd keeps every score matrix anyway: one plain product, no reused buffer.
      auto o = torch::softmax(torch::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(d)), -1).matmul(v);
      if (late_values) o = torch::linear(o, p.v_w, p.v_b);
      return torch::linear(o, p.o_w, p.o_b);
    }
    // 1/sqrt(D) folded into q (a power of two for the released D = 256, so exact there).
    q.mul_(1.0 / std::sqrt(static_cast<double>(d)));
    const int64_t lq = q.size(1), lk = k.size(1);
    // The query axis in chunks of at most max_scores scores, in one buffer reused by every
    // chunk, layer and (with a caller's scratch) frame: with 5 key frames and 6 recent frames
    // the memory holds about 45k tokens, a full score matrix would be 0.7 GB per attention.
    const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(lq, buffers.max_scores / std::max<int64_t>(1, lk)));
    torch::Tensor& buf = buffers.scores;
    if (!buf.defined() || buf.numel() < rows * lk || buf.scalar_type() != q.scalar_type() || buf.device() != q.device())
      buf = torch::empty({rows * lk}, q.options());
    auto out = torch::empty({b, lq, v.size(2)}, q.options());
    for (int64_t i = 0; i < b; ++i) {
      const auto kt = k[i].t(), vi = v[i];
      for (int64_t r = 0; r < lq; r += rows) {
        const int64_t n = std::min(rows, lq - r);
        auto scores = buf.narrow(0, 0, n * lk).view({n, lk});
        torch::mm_out(scores, q[i].narrow(0, r, n), kt);
        torch::softmax_out(scores, scores, -1);  // per row, in place
        auto o = out[i].narrow(0, r, n);
        torch::mm_out(o, scores, vi);
      }
    }
    if (late_values) out = torch::linear(out, p.v_w, p.v_b);
    return torch::linear(out, p.o_w, p.o_b);
  };
  auto mem = memory.to(device_, dtype_);
  auto mem_k = mem + memory_pos.to(device_, dtype_);
  auto x = curr.to(device_, dtype_).flatten(2).permute({0, 2, 1});
  auto pos = image_pos_.flatten(2).permute({0, 2, 1});
  x = x + 0.1 * pos;
  for (const auto& l : layers_) {
    auto t = layer_norm_last(x, l->n_w[0], l->n_b[0], 1e-5);
    x = x + attention(l->self_attn, t, t, t, 0);
    t = layer_norm_last(x, l->n_w[1], l->n_b[1], 1e-5);
    x = x + attention(l->cross, t, mem_k, mem, pointer_tokens);
    t = layer_norm_last(x, l->n_w[2], l->n_b[2], 1e-5);
    x = x + torch::linear(torch::relu(torch::linear(t, l->l1_w, l->l1_b)), l->l2_w, l->l2_b);
  }
  x = layer_norm_last(x, norm_w_, norm_b_, 1e-5);
  return x.permute({0, 2, 1}).reshape({b, d, grid_, grid_});
}

torch::Tensor Sam2Memory::project_pointer(const torch::Tensor& mask_token) const {
  std::optional<torch::NoGradGuard> no_grad;
  if (!trained()) no_grad.emplace();
  auto x = mask_token.to(device_, dtype_);
  for (size_t i = 0; i < ptr_w_.size(); ++i) {
    x = torch::linear(x, ptr_w_[i], ptr_b_[i]);
    if (i + 1 < ptr_w_.size()) x = torch::relu(x);
  }
  return x;
}

torch::Tensor Sam2Memory::object_pointer(const torch::Tensor& mask_token, const torch::Tensor& object_score) const {
  auto ptr = project_pointer(mask_token);
  auto present = (object_score.to(device_, torch::kFloat32) > 0).view({-1, 1});
  return torch::where(present, ptr, no_obj_ptr_.expand_as(ptr));
}

namespace {

struct BankEntry {
  torch::Tensor memory;  // [1, mem_dim, h, w] bfloat16; undefined once out of the window
  torch::Tensor ptr;     // [1, D]
};

// The memory of one frame: sam2 _prepare_memory_conditioned_features for a non-conditioning frame.
struct BuiltMemory {
  torch::Tensor tokens, pos;  // [1, M, mem_dim]
  int64_t pointer_tokens = 0;
  std::vector<std::pair<int, int>> frames;
  std::vector<int> pointer_frames;
};

// The `max_frames` conditioning frames nearest to frame t: the nearest before t, the nearest at
// or after it, then the nearest others.
std::map<int, BankEntry> nearest_conditioning(const std::map<int, BankEntry>& cond, int t, int max_frames) {
  std::map<int, BankEntry> out;
  const auto after = cond.lower_bound(t);
  if (after != cond.begin()) out.insert(*std::prev(after));
  if (after != cond.end()) out.insert(*after);
  std::vector<std::pair<int, int>> rest;  // (distance, frame)
  for (const auto& [frame, e] : cond)
    if (!out.count(frame)) rest.emplace_back(std::abs(frame - t), frame);
  std::sort(rest.begin(), rest.end());
  for (size_t i = 0; i < rest.size() && static_cast<int>(out.size()) < max_frames; ++i)
    out.emplace(rest[i].second, cond.at(rest[i].second));
  return out;
}

BuiltMemory build_memory(const Sam2Memory& memory, int t, bool reverse, int num_frames,
                         const std::map<int, BankEntry>& all_cond, int max_cond,
                         const std::map<int, BankEntry>& non_cond) {
  // All of them (max_cond < 0, or no more than that), else the nearest.
  const bool all = max_cond < 0 || static_cast<int>(all_cond.size()) <= max_cond;
  std::map<int, BankEntry> nearest;
  if (!all) nearest = nearest_conditioning(all_cond, t, max_cond);
  const std::map<int, BankEntry>& cond = all ? all_cond : nearest;
  BuiltMemory b;
  const int nm = memory.num_maskmem();
  const int64_t md = memory.mem_dim(), d = memory.dim();
  auto spatial_pos = memory.memory_pos().flatten(2).permute({0, 2, 1});  // [1, hw, md]
  std::vector<torch::Tensor> tokens, pos;
  auto add = [&](int frame, const BankEntry& e, int index) {
    tokens.push_back(e.memory.to(spatial_pos.scalar_type()).flatten(2).permute({0, 2, 1}));
    pos.push_back(spatial_pos + memory.temporal_encoding(index).view({1, 1, md}));
    b.frames.emplace_back(frame, index);
  };
  // The conditioning frames (every one with max_cond_frames_in_attn -1) with the farthest
  // temporal encoding.
  for (const auto& [frame, e] : cond) add(frame, e, nm - 1);
  // The previous num_maskmem - 1 frames (the next ones when tracking backwards), oldest first;
  // conditioning frames are not repeated, missing frames are skipped.
  for (int t_pos = 1; t_pos < nm; ++t_pos) {
    const int t_rel = nm - t_pos;
    const int prev = reverse ? t + t_rel : t - t_rel;
    auto it = non_cond.find(prev);
    if (it != non_cond.end() && it->second.memory.defined()) add(prev, it->second, nm - t_pos - 1);
  }
  // Object pointers: conditioning frames not in the future, then non-conditioning frames going
  // back (forward: t-1, t-2, ...) while t_diff < min(num_frames, 16). No temporal encoding.
  std::vector<torch::Tensor> ptrs;
  for (const auto& [frame, e] : cond)
    if (reverse ? frame >= t : frame <= t) {
      ptrs.push_back(e.ptr);
      b.pointer_frames.push_back(frame);
    }
  const int max_ptrs = std::min(num_frames, kMaxObjectPointers);
  for (int t_diff = 1; t_diff < max_ptrs; ++t_diff) {
    const int f = reverse ? t + t_diff : t - t_diff;
    if (f < 0 || f >= num_frames) break;
    auto it = non_cond.find(f);
    if (it != non_cond.end()) {
      ptrs.push_back(it->second.ptr);
      b.pointer_frames.push_back(f);
    }
  }
  if (!ptrs.empty()) {
    // A D-wide pointer becomes D / mem_dim tokens: ptr[0:md], ptr[md:2md], ...
    auto p = torch::cat(ptrs, 0).to(spatial_pos.scalar_type()).reshape({1, -1, md});
    tokens.push_back(p);
    pos.push_back(torch::zeros_like(p));
    b.pointer_tokens = static_cast<int64_t>(ptrs.size()) * (d / md);
  }
  b.tokens = torch::cat(tokens, 1);
  b.pos = torch::cat(pos, 1);
  return b;
}

}  // namespace

TrackResult track_object(const Sam2MaskDecoder& decoder, const Sam2Memory& memory, const torch::Tensor& no_mem_embed,
                         int num_frames, const std::function<Sam2ImageFeatures(int)>& features,
                         const torch::Tensor& language, const TrackOptions& options) {
  std::optional<torch::NoGradGuard> no_grad;
  if (!options.gradients) no_grad.emplace();
  const auto& cond_frames = options.conditioning_frames;
  if (num_frames <= 0) throw InferenceError("video tracking: no frames");
  if (cond_frames.empty()) throw InferenceError("video tracking: no key frames");
  if (options.max_conditioning_in_attention >= 0 && options.max_conditioning_in_attention < 2)
    throw InferenceError("video tracking: a tracked frame attends to at least 2 prompted frames (or all: -1), not " +
                         std::to_string(options.max_conditioning_in_attention));
  for (size_t i = 0; i < cond_frames.size(); ++i) {
    if (cond_frames[i] < 0 || cond_frames[i] >= num_frames || (i > 0 && cond_frames[i] <= cond_frames[i - 1]))
      throw InferenceError("video tracking: key frames must be ascending, unique and within the " +
                           std::to_string(num_frames) + " frames");
  }
  const int64_t s = memory.image_size();
  const int nm = memory.num_maskmem();
  const int max_ptrs = std::min(num_frames, kMaxObjectPointers);
  TrackResult result;
  result.frames.resize(static_cast<size_t>(num_frames));
  std::map<int, BankEntry> cond;
  auto cancelled = [&] { return options.cancel && options.cancel->load(); };

  auto upsample = [&](const torch::Tensor& low_res) {
    return F::interpolate(low_res.to(torch::kFloat32), F::InterpolateFuncOptions()
                                                           .size(std::vector<int64_t>{s, s})
                                                           .mode(torch::kBilinear)
                                                           .align_corners(false));
  };
  // The mask decoder's result for frame t -> output, pointer and memory (track_step).
  auto finish = [&](const Sam2ImageFeatures& f, const Sam2DecoderOutput& out, TrackedFrame& r) -> BankEntry {
    r.tracked = true;
    r.low_res = out.best_low_res;
    r.all_iou = out.all_iou.narrow(1, 1, 3).to(torch::kFloat32);
    r.best = static_cast<int>(out.best[0].item<int64_t>());
    r.iou = out.best_iou[0].item<float>();
    r.object_score = out.object_score_logits.to(torch::kFloat32)[0][0].item<float>();
    const auto token = out.mask_tokens.select(1, 1 + r.best);
    BankEntry e;
    e.ptr = memory.object_pointer(token, out.object_score_logits);
    r.obj_ptr = e.ptr;
    if (options.gradients) {
      r.all_low_res = out.all_mask_logits;
      r.object_score_logit = out.object_score_logits;
    }
    // The memory is stored in bfloat16 as the reference does, whatever the compute dtype.
    const auto mem = memory.encode(f.image_embedding, upsample(out.best_low_res));
    e.memory = mem.to(torch::kBFloat16);
    if (options.keep_internals) {
      r.memory_fp32 = mem;
      r.memory = e.memory;
    }
    return e;
  };

  // Conditioning frames: the image path (no_mem_embed, language prompt), no memory among them.
  const auto nme = no_mem_embed.view({1, -1, 1, 1});
  for (int t : cond_frames) {
    if (cancelled()) {
      result.cancelled = true;
      return result;
    }
    Sam2ImageFeatures f = features(t);
    Sam2ImageFeatures g = f;
    g.image_embedding = f.image_embedding + nme.to(f.image_embedding.scalar_type());
    const auto out = decoder.decode(g, language);
    TrackedFrame& r = result.frames[static_cast<size_t>(t)];
    r.conditioning = true;
    if (options.keep_internals) r.pix_feat_with_mem = g.image_embedding;
    cond[t] = finish(f, out, r);
    if (options.after_frame) options.after_frame();
  }
  result.max_bank_frames = static_cast<int>(cond.size());

  Sam2Memory::Scratch scratch;  // the attention-score buffer, shared by every propagated frame
  auto run = [&](bool reverse) {
    std::map<int, BankEntry> non_cond;
    const int start = reverse ? cond_frames.front() - 1 : cond_frames.front();
    const int step = reverse ? -1 : 1;
    for (int t = start; t >= 0 && t < num_frames; t += step) {
      if (cond.count(t)) continue;
      if (cancelled()) {
        result.cancelled = true;
        return;
      }
      const BuiltMemory m =
          build_memory(memory, t, reverse, num_frames, cond, options.max_conditioning_in_attention, non_cond);
      result.max_memory_frames = std::max(result.max_memory_frames, static_cast<int>(m.frames.size()));
      Sam2ImageFeatures f = features(t);
      Sam2ImageFeatures g = f;
      g.image_embedding =
          memory.attend(f.image_embedding, m.tokens, m.pos, m.pointer_tokens, options.gradients ? nullptr : &scratch);
      const auto out = decoder.decode_tracking(g);
      TrackedFrame& r = result.frames[static_cast<size_t>(t)];
      if (options.keep_internals) {
        r.memory_tokens = m.tokens[0];
        r.memory_tokens_pos = m.pos[0];
        r.pointer_tokens = m.pointer_tokens;
        r.pix_feat_with_mem = g.image_embedding;
        r.memory_frames = m.frames;
        r.pointer_frames = m.pointer_frames;
      }
      non_cond[t] = finish(f, out, r);
      // Keep only what the next frames can still reach: spatial memories of the last
      // num_maskmem - 1 frames, pointers of the last 15.
      for (auto it = non_cond.begin(); it != non_cond.end();) {
        const int age = reverse ? it->first - t : t - it->first;
        if (age >= max_ptrs - 1) {
          it = non_cond.erase(it);
          continue;
        }
        if (age >= nm - 1) it->second.memory = torch::Tensor();
        ++it;
      }
      int held = static_cast<int>(cond.size());
      for (const auto& [frame, e] : non_cond) held += e.memory.defined() ? 1 : 0;
      result.max_bank_frames = std::max(result.max_bank_frames, held);
      if (options.after_frame) options.after_frame();
    }
  };
  run(false);
  if (!result.cancelled && options.both_directions) run(true);
  return result;
}

}  // namespace unibiomed::inference
