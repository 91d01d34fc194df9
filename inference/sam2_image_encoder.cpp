// SPDX-License-Identifier: GPL-3.0-or-later
// Reference: UniBiomed projects/unibiomed/hf/models/sam2.py (Hiera, MultiScaleBlock,
// MultiScaleAttention, window_partition/unpartition, FpnNeck, ImageEncoder, SAM2Base.forward_image)
// and docs/MODEL.md (the Hiera and FPN neck details). Activations are kept NHWC throughout (as Hiera
// does), so 1x1 convolutions are plain matrix products over the channel axis.
#include "inference/sam2_image_encoder.h"

#include <torch/nn/functional.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "inference/checkpoint_layout.h"
#include "inference/error.h"
#include "inference/layer_norm.h"
#include "inference/runtime.h"

namespace unibiomed::inference {

namespace F = torch::nn::functional;

struct Sam2ImageEncoder::Block {
  int index = 0;
  int64_t dim = 0, dim_out = 0, heads = 0, hidden = 0;
  int window = 0;    // 0 = global attention
  int q_stride = 0;  // 0 = no pooling; else the pooling kernel and stride (square)
  double eps = 1e-6;
  torch::Tensor norm1_w, norm1_b, qkv_w, qkv_b, attn_proj_w, attn_proj_b, norm2_w, norm2_b;
  torch::Tensor mlp0_w, mlp0_b, mlp1_w, mlp1_b;
  torch::Tensor proj_w, proj_b;  // shortcut projection when dim != dim_out
};

namespace {

void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw InferenceError("SAM2 image encoder: cancelled");
}

// MaxPool2d(kernel = stride = s, ceil_mode=False) on NHWC (sam2.py do_pool).
torch::Tensor pool_nhwc(const torch::Tensor& x, int s) {
  return torch::max_pool2d(x.permute({0, 3, 1, 2}), {s, s}, {s, s}).permute({0, 2, 3, 1});
}

// softmax(q k^T / sqrt(d)) v over [N, heads, L, d]. The query axis is processed in chunks so
// that a global-attention block at 1024 px (8 heads x 4096 x 4096 scores) does not allocate
// half a gigabyte of scores at once.
torch::Tensor attention_on_one_thread_pool(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const int64_t lq = q.size(2), lk = k.size(2), nh = q.size(0) * q.size(1);
  const int64_t budget = int64_t{16} << 20;  // score elements per chunk
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(lq, budget / std::max<int64_t>(1, nh * lk)));
  auto kt = k.transpose(-2, -1);
  if (chunk >= lq) return torch::matmul(torch::softmax(torch::matmul(q * scale, kt), -1), v);
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < lq; s += chunk) {
    auto qs = q.narrow(2, s, std::min(chunk, lq - s));
    parts.push_back(torch::matmul(torch::softmax(torch::matmul(qs * scale, kt), -1), v));
  }
  return torch::cat(parts, 2);
#endif
}

// Windowed blocks hand thousands of small windows at once ([windows, heads, L, d], L <= 196):
// on the CPU they go one slice of windows per core with a serial BLAS (runtime.h,
// small_product_parts). Every window is computed the same way whatever the slicing.
constexpr int64_t kSmallWindowTokens = 256;
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t n = q.size(0);
  const int parts = q.is_cpu() && n > 1 && q.size(2) <= kSmallWindowTokens && k.size(2) <= kSmallWindowTokens &&
                            !(torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad()))
                        ? static_cast<int>(std::min<int64_t>(small_product_parts(), n))
                        : 1;
  if (parts <= 1) return attention_on_one_thread_pool(q, k, v);
  auto out = torch::empty({n, q.size(1), q.size(2), v.size(3)}, q.options());
  run_parts_with_serial_blas(parts, [&](int p) {
    const int64_t begin = n * p / parts, end = n * (p + 1) / parts;
    out.narrow(0, begin, end - begin)
        .copy_(attention_on_one_thread_pool(q.narrow(0, begin, end - begin), k.narrow(0, begin, end - begin),
                                            v.narrow(0, begin, end - begin)));
  });
  return out;
}

// MultiScaleAttention.forward on x [N, h, w, dim] -> [N, h', w', dim_out].
torch::Tensor multiscale_attention(const Sam2ImageEncoder::Block& b, const torch::Tensor& x) {
  const int64_t n = x.size(0), h = x.size(1), w = x.size(2);
  const int64_t hd = b.dim_out / b.heads;
  // [3, N, heads, L, hd] in one copy, so that the matmuls below read contiguous operands.
  auto qkv = torch::linear(x, b.qkv_w, b.qkv_b).view({n, h * w, 3, b.heads, hd}).permute({2, 0, 3, 1, 4}).contiguous();
  auto q = qkv[0], k = qkv[1], v = qkv[2];  // [N, heads, L, hd]
  int64_t oh = h, ow = w;
  if (b.q_stride) {
    auto pooled = pool_nhwc(q.transpose(1, 2).reshape({n, h, w, b.heads * hd}), b.q_stride);
    oh = pooled.size(1);
    ow = pooled.size(2);
    q = pooled.reshape({n, oh * ow, b.heads, hd}).transpose(1, 2);
  }
  auto out = attention(q, k, v);  // [N, heads, Lq, hd]
  out = out.transpose(1, 2).reshape({n, oh, ow, b.dim_out});
  return torch::linear(out, b.attn_proj_w, b.attn_proj_b);
}

// window_partition: [B, H, W, C] zero-padded to multiples of ws (bottom/right), then
// [B * nH * nW, ws, ws, C].
torch::Tensor window_partition(const torch::Tensor& x, int64_t ws, int64_t& hp, int64_t& wp) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  const int64_t ph = (ws - h % ws) % ws, pw = (ws - w % ws) % ws;
  torch::Tensor xp = (ph || pw) ? torch::constant_pad_nd(x, {0, 0, 0, pw, 0, ph}) : x;
  hp = h + ph;
  wp = w + pw;
  return xp.view({b, hp / ws, ws, wp / ws, ws, c}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, ws, ws, c});
}

torch::Tensor window_unpartition(const torch::Tensor& windows, int64_t ws, int64_t hp, int64_t wp, int64_t h,
                                 int64_t w) {
  const int64_t b = windows.size(0) / (hp * wp / ws / ws);
  auto x = windows.view({b, hp / ws, wp / ws, ws, ws, -1}).permute({0, 1, 3, 2, 4, 5}).reshape({b, hp, wp, -1});
  if (hp > h || wp > w) x = x.narrow(1, 0, h).narrow(2, 0, w);
  return x;
}

// Token-chunk sizes. Buffers above glibc's mmap threshold (32 MB at most) are mapped fresh and
// page-faulted on every use, which costs about a third of the CPU time of a naive pass
// (MODEL.md); bands of about 4096 tokens keep every temporary below it, so the allocator
// reuses them. Results do not depend on the chunking (every op here is per token or per window).
constexpr int64_t kBandTokens = 4096;
constexpr int64_t kMlpTokens = 2048;

// x += mlp(norm2(x)) over [.., C] in chunks of tokens; x is contiguous and owned.
void mlp_residual_(const Sam2ImageEncoder::Block& b, torch::Tensor& x) {
  if (torch::GradMode::is_enabled() && b.mlp1_w.requires_grad()) {  // training: autograd needs x
    auto m = torch::gelu(torch::linear(layer_norm_last(x, b.norm2_w, b.norm2_b, b.eps), b.mlp0_w, b.mlp0_b));
    x = x + torch::linear(m, b.mlp1_w, b.mlp1_b);
    return;
  }
  auto flat = x.view({-1, b.dim_out});
  // The chunks are for the CPU's allocator (above); a GPU takes every token in one pass.
  const int64_t step = x.is_cpu() ? kMlpTokens : std::max<int64_t>(flat.size(0), 1);
  for (int64_t s = 0, n = flat.size(0); s < n; s += step) {
    auto chunk = flat.narrow(0, s, std::min(step, n - s));
    auto m = layer_norm_last(chunk, b.norm2_w, b.norm2_b, b.eps);
    m = torch::gelu(torch::linear(m, b.mlp0_w, b.mlp0_b));
    chunk.add_(torch::linear(m, b.mlp1_w, b.mlp1_b));
  }
}

// MultiScaleBlock.forward on x [B, h, W, C], a band of whole windows (or the whole image). The
// q-pool block (first of a stage) runs its attention in the previous stage's windows, pools q
// inside each window and so halves the window; its shortcut is maxpool(proj(norm1(x))).
// Padding happens after norm1, so padded tokens are real keys.
torch::Tensor block_band(const Sam2ImageEncoder::Block& b, const torch::Tensor& x) {
  auto xn = layer_norm_last(x, b.norm1_w, b.norm1_b, b.eps);
  torch::Tensor shortcut = x;
  if (b.proj_w.defined()) {
    shortcut = torch::linear(xn, b.proj_w, b.proj_b);
    if (b.q_stride) shortcut = pool_nhwc(shortcut, b.q_stride);
  }
  int64_t h = x.size(1), w = x.size(2), hp = h, wp = w;
  int64_t ws = b.window;
  torch::Tensor y = ws > 0 ? window_partition(xn, ws, hp, wp) : xn;
  y = multiscale_attention(b, y);
  if (b.q_stride) {
    ws = ws / b.q_stride;
    h = shortcut.size(1);
    w = shortcut.size(2);
    if (ws > 0) {
      hp = h + (ws - h % ws) % ws;
      wp = w + (ws - w % ws) % ws;
    }
  }
  if (b.window > 0) y = window_unpartition(y, ws, hp, wp, h, w);
  auto out = (shortcut + y).contiguous();
  mlp_residual_(b, out);
  return out;
}

// A windowed block touches each window alone, so on the CPU it runs band by band (rows of whole
// windows, which are the reference's windows since both start at the top); a global block, and
// every block on a GPU (where small bands only add kernel launches), at once.
torch::Tensor block_forward(const Sam2ImageEncoder::Block& b, const torch::Tensor& x) {
  const int64_t h = x.size(1);
  if (b.window == 0 || !x.is_cpu()) return block_band(b, x);
  const int64_t tokens_per_window_row = x.size(0) * b.window * x.size(2);
  const int64_t rows = std::max<int64_t>(1, kBandTokens / tokens_per_window_row) * b.window;
  if (rows >= h) return block_band(b, x);
  std::vector<int64_t> starts;
  for (int64_t r = 0; r < h; r += rows) starts.push_back(r);
  std::vector<torch::Tensor> bands(starts.size());
  // On the CPU the bands go one per core at a time, each with a serial BLAS (runtime.h): their
  // element-wise work (norms, GELU, softmax, copies) then runs on every core, not on one.
  const bool training = torch::GradMode::is_enabled() && (x.requires_grad() || b.qkv_w.requires_grad());
  const int parts = x.is_cpu() && !training ? static_cast<int>(std::min<int64_t>(small_product_parts(), int64_t(starts.size())))
                                            : 1;
  run_parts_with_serial_blas(parts, [&](int p) {
    for (size_t i = size_t(p); i < starts.size(); i += size_t(parts))
      bands[i] = block_band(b, x.narrow(1, starts[i], std::min(rows, h - starts[i])));
  });
  return torch::cat(bands, 1);
}

std::string list_str(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Nearest-neighbour x2 upsampling on NHWC (F.interpolate(scale_factor=2, mode="nearest"):
// output pixel i reads input floor(i / 2)).
torch::Tensor upsample_nearest2x_nhwc(const torch::Tensor& x) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  return x.unsqueeze(2).unsqueeze(4).expand({b, h, 2, w, 2, c}).reshape({b, 2 * h, 2 * w, c});
}

}  // namespace

Sam2ImageFeatures Sam2ImageFeatures::select(int64_t index) const {
  return {image_embedding.narrow(0, index, 1), high_res_s0.narrow(0, index, 1), high_res_s1.narrow(0, index, 1)};
}

Sam2ImageFeatures Sam2ImageFeatures::cat(const std::vector<Sam2ImageFeatures>& parts) {
  if (parts.empty()) throw InferenceError("SAM2 features: nothing to concatenate");
  if (parts.size() == 1) return parts.front();
  std::vector<torch::Tensor> e, s0, s1;
  for (const auto& p : parts) {
    e.push_back(p.image_embedding);
    s0.push_back(p.high_res_s0);
    s1.push_back(p.high_res_s1);
  }
  return {torch::cat(e, 0), torch::cat(s0, 0), torch::cat(s1, 0)};
}

Sam2ImageEncoder::Sam2ImageEncoder(Weights& weights, const GroundingConfig& config) : config_(config) {
  const HieraConfig& hc = config.hiera;
  const std::string where = "SAM2 image encoder (" + weights.describe() + ")";
  auto require = [&](bool ok, const std::string& what) {
    if (!ok) throw InferenceError(where + ": " + what);
  };
  require(hc.stages.size() == hc.window_spec.size() && !hc.stages.empty(),
          "hiera.stages " + list_str(hc.stages) + " and window_spec " + list_str(hc.window_spec) +
              " must have the same, non-zero length");
  require(hc.patch_kernel_size.size() == 2 && hc.patch_stride.size() == 2 && hc.patch_padding.size() == 2 &&
              hc.q_stride.size() == 2 && hc.q_stride[0] == hc.q_stride[1] && hc.q_stride[0] > 0,
          "hiera patch_kernel_size/patch_stride/patch_padding/q_stride must be pairs (square q_stride)");
  require(hc.q_pool >= 0 && hc.q_pool < static_cast<int>(hc.stages.size()),
          "hiera.q_pool " + std::to_string(hc.q_pool) + " must be below the number of stages");
  require(hc.window_pos_embed_bkg_spatial_size.size() == 2, "hiera.window_pos_embed_bkg_spatial_size must be a pair");
  require(config.neck.kernel_size == 1, "neck.kernel_size " + std::to_string(config.neck.kernel_size) +
                                            " is not supported (the released model uses 1)");
  require(config.neck.fpn_interp_model == "nearest",
          "neck.fpn_interp_model \"" + config.neck.fpn_interp_model + "\" is not supported (\"nearest\")");
  require(config.scalp == 1, "scalp " + std::to_string(config.scalp) + " is not supported (the released model uses 1)");

  const auto trunk = layout::hiera_trunk();
  int64_t dim = hc.embed_dim;
  int64_t heads = hc.num_heads;
  const int64_t kh = hc.patch_kernel_size[0], kw = hc.patch_kernel_size[1];
  patch_weight_ = weights.get(trunk.patch_embed.weight, {dim, 3, kh, kw});
  patch_bias_ = weights.get(trunk.patch_embed.bias, {dim});

  // Trunk token grid of the configured input size.
  const int64_t grid_h = (config.image_size + 2 * hc.patch_padding[0] - kh) / hc.patch_stride[0] + 1;
  const int64_t grid_w = (config.image_size + 2 * hc.patch_padding[1] - kw) / hc.patch_stride[1] + 1;
  const int64_t w0 = hc.window_spec[0];
  require(grid_h > 0 && grid_w > 0 && grid_h % w0 == 0 && grid_w % w0 == 0,
          "the " + std::to_string(grid_h) + "x" + std::to_string(grid_w) + " token grid of image_size " +
              std::to_string(config.image_size) + " is not a multiple of the first window " + std::to_string(w0) +
              " (Hiera tiles pos_embed_window over it)");
  {
    // Hiera._get_pos_embed: bicubic(pos_embed -> grid, align_corners=False) + tiled window
    // embedding (Bolya et al. 2023, "Window attention is bugged").
    torch::NoGradGuard no_grad;
    const auto& bkg = hc.window_pos_embed_bkg_spatial_size;
    auto pos = weights.get(trunk.pos_embed, {1, dim, bkg[0], bkg[1]}).to(torch::kFloat32);
    auto win = weights.get(trunk.pos_embed_window, {1, dim, w0, w0}).to(torch::kFloat32);
    pos = F::interpolate(pos, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{grid_h, grid_w})
                                  .mode(torch::kBicubic)
                                  .align_corners(false));
    pos = pos + win.repeat({1, 1, grid_h / w0, grid_w / w0});
    pos_embed_ = pos.permute({0, 2, 3, 1}).contiguous().to(weights.options().dtype);
  }

  int total = 0;
  for (int s : hc.stages) {
    require(s > 0, "hiera.stages " + list_str(hc.stages) + " has an empty stage");
    total += s;
    stage_ends_.push_back(total - 1);
  }
  std::vector<int> q_pool_blocks;
  for (int s = 0; s < hc.q_pool; ++s) q_pool_blocks.push_back(stage_ends_[s] + 1);

  int cur_stage = 1;
  int64_t gh = grid_h, gw = grid_w;  // token grid entering block i
  for (int i = 0; i < total; ++i) {
    auto b = std::make_shared<Block>();
    b->index = i;
    b->eps = hc.norm_eps;
    int64_t dim_out = dim;
    // The window lags a block: the first block of a stage still uses the previous stage's.
    b->window = hc.window_spec[cur_stage - 1];
    if (std::count(hc.global_att_blocks.begin(), hc.global_att_blocks.end(), i)) b->window = 0;
    if (std::count(stage_ends_.begin(), stage_ends_.end(), i - 1)) {
      dim_out = static_cast<int64_t>(static_cast<double>(dim) * hc.dim_mul);
      heads = static_cast<int64_t>(static_cast<double>(heads) * hc.head_mul);
      ++cur_stage;
    }
    b->dim = dim;
    b->dim_out = dim_out;
    b->heads = heads;
    b->hidden = static_cast<int64_t>(static_cast<double>(dim_out) * hc.mlp_ratio);
    b->q_stride = std::count(q_pool_blocks.begin(), q_pool_blocks.end(), i) ? hc.q_stride[0] : 0;
    require(heads > 0 && dim_out % heads == 0, "block " + std::to_string(i) + ": " + std::to_string(heads) +
                                                   " heads do not divide dim " + std::to_string(dim_out));
    require(!b->q_stride || dim != dim_out,
            "block " + std::to_string(i) + " pools q but keeps its width (dim_mul 1 is not supported)");
    require(!b->q_stride || b->window == 0 || b->window % b->q_stride == 0,
            "block " + std::to_string(i) + ": window " + std::to_string(b->window) + " is not divisible by q_stride");
    // The reference cannot pad a q-pool block (its unpartition uses the pooled, unpadded size).
    require(!b->q_stride || b->window == 0 || (gh % b->window == 0 && gw % b->window == 0),
            "block " + std::to_string(i) + " pools q in " + std::to_string(b->window) + "-token windows of a " +
                std::to_string(gh) + "x" + std::to_string(gw) + " grid that is not a multiple of them");
    if (b->q_stride) {
      gh /= b->q_stride;
      gw /= b->q_stride;
    }
    const auto n = layout::hiera_block(i);
    b->norm1_w = weights.get(n.norm1.weight, {dim});
    b->norm1_b = weights.get(n.norm1.bias, {dim});
    b->qkv_w = weights.get(n.attn_qkv.weight, {3 * dim_out, dim});
    b->qkv_b = weights.get(n.attn_qkv.bias, {3 * dim_out});
    b->attn_proj_w = weights.get(n.attn_proj.weight, {dim_out, dim_out});
    b->attn_proj_b = weights.get(n.attn_proj.bias, {dim_out});
    b->norm2_w = weights.get(n.norm2.weight, {dim_out});
    b->norm2_b = weights.get(n.norm2.bias, {dim_out});
    b->mlp0_w = weights.get(n.mlp_fc1.weight, {b->hidden, dim_out});
    b->mlp0_b = weights.get(n.mlp_fc1.bias, {b->hidden});
    b->mlp1_w = weights.get(n.mlp_fc2.weight, {dim_out, b->hidden});
    b->mlp1_b = weights.get(n.mlp_fc2.bias, {dim_out});
    if (dim != dim_out) {
      b->proj_w = weights.get(n.proj.weight, {dim_out, dim});
      b->proj_b = weights.get(n.proj.bias, {dim_out});
    }
    blocks_.push_back(b);
    dim = dim_out;
  }

  // Neck: convs.k takes the trunk output of stride 32 / 2^k (channel list widest first).
  std::vector<int> channels;
  for (auto it = stage_ends_.rbegin(); it != stage_ends_.rend(); ++it)
    channels.push_back(static_cast<int>(blocks_[static_cast<size_t>(*it)]->dim_out));
  require(channels == config.neck.backbone_channel_list,
          "neck.backbone_channel_list " + list_str(config.neck.backbone_channel_list) +
              " does not match the trunk's stage widths " + list_str(channels));
  require(channels.size() >= 3, "the trunk needs at least 3 stages for the stride-4/8/16 features");
  const int64_t d = config.neck.d_model;
  require(d % 8 == 0, "neck.d_model " + std::to_string(d) + " must be divisible by 8");
  for (size_t k = 0; k < channels.size(); ++k) {
    const auto conv = layout::neck_conv(static_cast<int>(k));
    neck_weight_.push_back(weights.get(conv.weight, {d, channels[k], 1, 1}).view({d, channels[k]}));
    neck_bias_.push_back(weights.get(conv.bias, {d}));
  }
  const auto decoder = layout::mask_decoder();
  conv_s0_weight_ = weights.get(decoder.conv_s0.weight, {d / 8, d, 1, 1}).view({d / 8, d});
  conv_s0_bias_ = weights.get(decoder.conv_s0.bias, {d / 8});
  conv_s1_weight_ = weights.get(decoder.conv_s1.weight, {d / 4, d, 1, 1}).view({d / 4, d});
  conv_s1_bias_ = weights.get(decoder.conv_s1.bias, {d / 4});
  no_mem_embed_ = weights.get(layout::no_mem_embed(), {1, 1, d}).view({d});
}

Sam2ImageFeatures Sam2ImageEncoder::encode(const torch::Tensor& pixels, const std::atomic<bool>* cancel,
                                           Sam2EncoderTrace* trace, bool add_no_mem_embed) const {
  const int64_t s = config_.image_size;
  if (pixels.dim() != 4 || pixels.size(1) != 3 || pixels.size(2) != s || pixels.size(3) != s)
    throw InferenceError("SAM2 image encoder: input has shape " + c10::str(pixels.sizes()) + ", expected [B, 3, " + std::to_string(s) + ", " +
                         std::to_string(s) + "]");
  // Without gradients unless the weights are being trained (training/trainable_model.h).
  std::optional<torch::NoGradGuard> no_grad;
  if (!patch_weight_.requires_grad()) no_grad.emplace();
  const HieraConfig& hc = config_.hiera;
  auto x = pixels.to(patch_weight_.device(), patch_weight_.scalar_type());
  x = torch::conv2d(x, patch_weight_, patch_bias_, {hc.patch_stride[0], hc.patch_stride[1]},
                    {hc.patch_padding[0], hc.patch_padding[1]})
          .permute({0, 2, 3, 1});
  if (trace) {
    trace->patch_embed = x;
    trace->pos_embed = pos_embed_;
  }
  x = x + pos_embed_;

  std::vector<torch::Tensor> stage_out;  // NHWC, strides 4, 8, 16, 32
  for (const auto& b : blocks_) {
    check_cancel(cancel);
    x = block_forward(*b, x);
    if (trace) trace->block_outputs.push_back(x);
    if (std::count(stage_ends_.begin(), stage_ends_.end(), b->index)) stage_out.push_back(x);
  }
  if (trace)
    for (const auto& t : stage_out) trace->trunk_outputs.push_back(t.permute({0, 3, 1, 2}));

  // FpnNeck.forward: from the lowest resolution up; only fpn_top_down_levels receive the
  // upsampled coarser level, the others are purely lateral.
  const int n = static_cast<int>(stage_out.size()) - 1;
  std::vector<torch::Tensor> levels(stage_out.size());
  torch::Tensor prev;
  const auto& top_down = config_.neck.fpn_top_down_levels;
  for (int i = n; i >= 0; --i) {
    auto lateral = torch::linear(stage_out[static_cast<size_t>(i)], neck_weight_[static_cast<size_t>(n - i)],
                                 neck_bias_[static_cast<size_t>(n - i)]);
    if (prev.defined() && std::count(top_down.begin(), top_down.end(), i))
      prev = lateral + upsample_nearest2x_nhwc(prev);
    else
      prev = lateral;
    levels[static_cast<size_t>(i)] = prev;
  }
  if (trace)
    for (const auto& t : levels) trace->neck_outputs.push_back(t.permute({0, 3, 1, 2}));
  check_cancel(cancel);

  // scalp = 1 drops the stride-32 level; the mask decoder projects the two finest levels.
  Sam2ImageFeatures f;
  f.high_res_s0 = torch::linear(levels[0], conv_s0_weight_, conv_s0_bias_).permute({0, 3, 1, 2}).contiguous();
  f.high_res_s1 = torch::linear(levels[1], conv_s1_weight_, conv_s1_bias_).permute({0, 3, 1, 2}).contiguous();
  f.image_embedding = (add_no_mem_embed ? levels[2] + no_mem_embed_ : levels[2]).permute({0, 3, 1, 2}).contiguous();
  return f;
}

double Sam2ImageEncoder::flops_per_image() const {
  const HieraConfig& hc = config_.hiera;
  double h = static_cast<double>(pos_embed_.size(1)), w = static_cast<double>(pos_embed_.size(2));
  double flops = 2.0 * h * w * static_cast<double>(hc.embed_dim) * 3 * hc.patch_kernel_size[0] * hc.patch_kernel_size[1];
  std::vector<std::pair<double, double>> stage_hw;
  std::vector<double> stage_c;
  for (const auto& b : blocks_) {
    const double dim = static_cast<double>(b->dim), dout = static_cast<double>(b->dim_out);
    const double l = h * w;
    flops += 2.0 * l * dim * 3 * dout;  // qkv
    double oh = h, ow = w;
    if (b->q_stride) {
      oh = std::floor(h / b->q_stride);
      ow = std::floor(w / b->q_stride);
    }
    const double lq = oh * ow;
    // Attention: every query against its window's keys (padded windows included).
    double keys_per_query = l;
    if (b->window > 0) {
      const double ws = b->window;
      const double hp = std::ceil(h / ws) * ws, wp = std::ceil(w / ws) * ws;
      keys_per_query = ws * ws;
      const double pooled = b->q_stride ? (hp / b->q_stride) * (wp / b->q_stride) : hp * wp;
      flops += 2.0 * 2.0 * pooled * keys_per_query * dout;
    } else {
      flops += 2.0 * 2.0 * lq * keys_per_query * dout;
    }
    flops += 2.0 * lq * dout * dout;                                  // proj
    if (b->proj_w.defined()) flops += 2.0 * l * dim * dout;          // shortcut proj
    flops += 2.0 * 2.0 * lq * dout * static_cast<double>(b->hidden);  // mlp
    h = oh;
    w = ow;
    if (std::count(stage_ends_.begin(), stage_ends_.end(), b->index)) {
      stage_hw.emplace_back(h, w);
      stage_c.push_back(dout);
    }
  }
  const double d = config_.neck.d_model;
  for (size_t i = 0; i < stage_hw.size(); ++i) flops += 2.0 * stage_hw[i].first * stage_hw[i].second * stage_c[i] * d;
  flops += 2.0 * stage_hw[0].first * stage_hw[0].second * d * d / 8;
  flops += 2.0 * stage_hw[1].first * stage_hw[1].second * d * d / 4;
  return flops;
}

}  // namespace unibiomed::inference
