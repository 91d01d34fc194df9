// SPDX-License-Identifier: GPL-3.0-or-later
// Reference: UniBiomed projects/unibiomed/hf/models/sam2.py (PromptEncoder,
// PositionEmbeddingRandom, MaskDecoder.predict_masks, TwoWayTransformer, TwoWayAttentionBlock,
// Attention, MLP, LayerNorm2d, SAM2Base._forward_sam_heads) and docs/MODEL.md (the prompt
// encoder, mask decoder and output mask details).
#include "inference/sam2_mask_decoder.h"

#include <torch/nn/functional.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <optional>

#include "inference/checkpoint_layout.h"
#include "inference/error.h"
#include "inference/layer_norm.h"

namespace unibiomed::inference {

namespace F = torch::nn::functional;

namespace {

constexpr double kPi = 3.14159265358979323846;

torch::Tensor sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return torch::matmul(torch::softmax(torch::matmul(q * scale, k.transpose(-2, -1)), -1), v);
#endif
}

// LayerNorm2d (eps 1e-6) over the channel axis of NCHW, written as the reference does.
torch::Tensor layer_norm_2d(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  auto u = x.mean(1, true);
  auto s = (x - u).pow(2).mean(1, true);
  auto y = (x - u) / torch::sqrt(s + 1e-6);
  return w.view({1, -1, 1, 1}) * y + b.view({1, -1, 1, 1});
}

// ConvTranspose2d with a 2x2 kernel and stride 2 (weight [Cin, Cout, 2, 2]): each input pixel
// becomes a 2x2 block, y[o, 2h+i, 2w+j] = sum_c x[c, h, w] w[c, o, i, j] + b[o]. libtorch 1.13
// has no bfloat16 (nor float16) transposed convolution on the CPU ("slow_conv_transpose2d_out_cpu
// not implemented for 'BFloat16'"), so there the same sum is one matrix product and a reshuffle;
// float32 and GPUs keep the convolution the reference runs.
torch::Tensor upscale_2x2(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (!x.device().is_cpu() || x.scalar_type() == torch::kFloat32) return torch::conv_transpose2d(x, w, b, {2, 2});
  const int64_t n = x.size(0), cin = x.size(1), h = x.size(2), wd = x.size(3), cout = w.size(1);
  auto cols = torch::mm(x.permute({0, 2, 3, 1}).reshape({n * h * wd, cin}), w.reshape({cin, cout * 4}));
  auto y = cols.view({n, h, wd, cout, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({n, cout, 2 * h, 2 * wd});
  return y + b.view({1, -1, 1, 1});
}

}  // namespace

LanguagePromptProjector::LanguagePromptProjector(Weights& weights, int64_t llm_hidden, int64_t prompt_dim)
    : hidden_(llm_hidden) {
  const auto n = layout::seg_head();
  w0_ = weights.get(n.fc1.weight, {llm_hidden, llm_hidden});
  b0_ = weights.get(n.fc1.bias, {llm_hidden});
  w2_ = weights.get(n.fc2.weight, {prompt_dim, llm_hidden});
  b2_ = weights.get(n.fc2.bias, {prompt_dim});
}

torch::Tensor LanguagePromptProjector::operator()(const torch::Tensor& hidden) const {
  if (hidden.dim() != 2 || hidden.size(1) != hidden_)
    throw InferenceError("text_hidden_fcs: input has shape " + c10::str(hidden.sizes()) + ", expected [N, " +
                         std::to_string(hidden_) + "]");
  // Without gradients unless the weights are being trained (training/trainable_model.h).
  std::optional<torch::NoGradGuard> no_grad;
  if (!w0_.requires_grad()) no_grad.emplace();
  auto x = hidden.to(w0_.device(), w0_.scalar_type());
  return torch::linear(torch::relu(torch::linear(x, w0_, b0_)), w2_, b2_);
}

torch::Tensor Sam2MaskDecoder::Attention::operator()(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& v) const {
  const int64_t n = q.size(0), lq = q.size(1), lk = k.size(1), hd = internal / heads;
  auto qh = torch::linear(q, q_w, q_b).view({n, lq, heads, hd}).transpose(1, 2);
  auto kh = torch::linear(k, k_w, k_b).view({n, lk, heads, hd}).transpose(1, 2);
  auto vh = torch::linear(v, v_w, v_b).view({n, lk, heads, hd}).transpose(1, 2);
  auto out = sdpa(qh, kh, vh).transpose(1, 2).reshape({n, lq, internal});
  return torch::linear(out, out_w, out_b);
}

torch::Tensor Sam2MaskDecoder::Mlp::operator()(torch::Tensor x) const {
  for (size_t i = 0; i < w.size(); ++i) {
    x = torch::linear(x, w[i], b[i]);
    if (i + 1 < w.size()) x = torch::relu(x);
  }
  return x;
}

Sam2MaskDecoder::Sam2MaskDecoder(Weights& weights, const GroundingConfig& config) : config_(config) {
  dim_ = config.neck.d_model;
  const std::string where = "SAM2 mask decoder (" + weights.describe() + ")";
  if (config.image_size % config.backbone_stride != 0)
    throw InferenceError(where + ": image_size " + std::to_string(config.image_size) +
                         " is not a multiple of the backbone stride " + std::to_string(config.backbone_stride));
  if (dim_ % 8 != 0 || (dim_ / config.attention_downsample_rate) % config.decoder_num_heads != 0 ||
      dim_ % config.decoder_num_heads != 0)
    throw InferenceError(where + ": d_model " + std::to_string(dim_) + " does not split into " +
                         std::to_string(config.decoder_num_heads) + " heads");
  grid_ = config.image_size / config.backbone_stride;
  const int64_t d = dim_;
  const auto pe = layout::prompt_encoder();
  const auto md = layout::mask_decoder();

  not_a_point_ = weights.get(pe.not_a_point_embed_weight, {1, d});
  no_mask_ = weights.get(pe.no_mask_embed_weight, {1, d});
  {
    // PositionEmbeddingRandom on the h x w grid: points at pixel centres ((x+0.5)/w, (y+0.5)/h),
    // mapped to [-1, 1], projected by the Gaussian matrix, times 2 pi, [sin | cos].
    torch::NoGradGuard no_grad;
    auto g = weights.get(pe.positional_encoding_gaussian_matrix, {2, d / 2}).to(torch::kFloat32);
    auto c = (torch::arange(grid_, torch::kFloat32) + 0.5) / static_cast<double>(grid_);
    auto yy = c.view({grid_, 1}).expand({grid_, grid_});
    auto xx = c.view({1, grid_}).expand({grid_, grid_});
    auto coords = torch::stack({xx, yy}, -1) * 2 - 1;  // [h, w, 2]
    auto proj = torch::matmul(coords.to(g.device()), g) * (2 * kPi);
    image_pe_ = torch::cat({torch::sin(proj), torch::cos(proj)}, -1)
                    .permute({2, 0, 1})
                    .unsqueeze(0)
                    .contiguous()
                    .to(weights.options().dtype);
  }

  const int64_t n_masks = config.num_multimask_outputs + 1;
  obj_score_token_ = weights.get(md.obj_score_token_weight, {1, d});
  iou_token_ = weights.get(md.iou_token_weight, {1, d});
  mask_tokens_ = weights.get(md.mask_tokens_weight, {n_masks, d});

  auto attention = [&](const layout::Attention& n, int64_t downsample) {
    Attention a;
    a.heads = config.decoder_num_heads;
    a.internal = d / downsample;
    a.q_w = weights.get(n.q_proj.weight, {a.internal, d});
    a.q_b = weights.get(n.q_proj.bias, {a.internal});
    a.k_w = weights.get(n.k_proj.weight, {a.internal, d});
    a.k_b = weights.get(n.k_proj.bias, {a.internal});
    a.v_w = weights.get(n.v_proj.weight, {a.internal, d});
    a.v_b = weights.get(n.v_proj.bias, {a.internal});
    a.out_w = weights.get(n.out_proj.weight, {d, a.internal});
    a.out_b = weights.get(n.out_proj.bias, {d});
    return a;
  };
  auto mlp = [&](const layout::Mlp& n, std::vector<int64_t> sizes) {
    Mlp m;
    for (size_t i = 0; i + 1 < sizes.size(); ++i) {
      const auto layer = n.layer(static_cast<int>(i));
      m.w.push_back(weights.get(layer.weight, {sizes[i + 1], sizes[i]}));
      m.b.push_back(weights.get(layer.bias, {sizes[i + 1]}));
    }
    return m;
  };

  const int64_t rate = config.attention_downsample_rate;
  for (int i = 0; i < config.decoder_depth; ++i) {
    const auto n = md.layer(i);
    TwoWayLayer l;
    l.self_attn = attention(n.self_attn, 1);
    l.token_to_image = attention(n.cross_attn_token_to_image, rate);
    l.image_to_token = attention(n.cross_attn_image_to_token, rate);
    l.mlp = mlp(n.mlp, {d, config.decoder_mlp_dim, d});
    for (size_t k = 0; k < n.norms.size(); ++k) {
      l.norm_w[k] = weights.get(n.norms[k].weight, {d});
      l.norm_b[k] = weights.get(n.norms[k].bias, {d});
    }
    layers_.push_back(std::move(l));
  }
  final_attn_ = attention(md.final_attn_token_to_image, rate);
  final_norm_w_ = weights.get(md.norm_final_attn.weight, {d});
  final_norm_b_ = weights.get(md.norm_final_attn.bias, {d});

  up0_w_ = weights.get(md.upscaling_conv0.weight, {d, d / 4, 2, 2});
  up0_b_ = weights.get(md.upscaling_conv0.bias, {d / 4});
  up_ln_w_ = weights.get(md.upscaling_norm.weight, {d / 4});
  up_ln_b_ = weights.get(md.upscaling_norm.bias, {d / 4});
  up3_w_ = weights.get(md.upscaling_conv1.weight, {d / 4, d / 8, 2, 2});
  up3_b_ = weights.get(md.upscaling_conv1.bias, {d / 8});
  for (int64_t i = 0; i < n_masks; ++i)
    hypernetworks_.push_back(mlp(md.output_hypernetwork(static_cast<int>(i)), {d, d, d, d / 8}));
  std::vector<int64_t> iou_sizes{d};
  for (int i = 0; i + 1 < config.iou_head_depth; ++i) iou_sizes.push_back(config.iou_head_hidden_dim);
  iou_sizes.push_back(n_masks);
  iou_head_ = mlp(md.iou_prediction_head, iou_sizes);
  obj_score_head_ = mlp(md.pred_obj_score_head, {d, d, d, 1});
}

Sam2DecoderOutput Sam2MaskDecoder::decode(const Sam2ImageFeatures& features, const torch::Tensor& language,
                                          Sam2DecoderTrace* trace) const {
  const int64_t d = dim_;
  if (language.dim() != 2 || language.size(1) != d || language.size(0) == 0)
    throw InferenceError("SAM2 mask decoder: language embeddings have shape " + c10::str(language.sizes()) +
                         ", expected [N, " + std::to_string(d) + "] with N >= 1");
  return run(features, language, language.size(0), trace);
}

Sam2DecoderOutput Sam2MaskDecoder::decode_tracking(const Sam2ImageFeatures& features, Sam2DecoderTrace* trace) const {
  if (!features.image_embedding.defined()) throw InferenceError("SAM2 mask decoder: no image embedding");
  return run(features, torch::Tensor(), features.image_embedding.size(0), trace);
}

Sam2DecoderOutput Sam2MaskDecoder::run(const Sam2ImageFeatures& features, const torch::Tensor& language, int64_t n,
                                       Sam2DecoderTrace* trace) const {
  const int64_t d = dim_;
  const auto& emb = features.image_embedding;
  if (!emb.defined() || emb.dim() != 4 || emb.size(1) != d || emb.size(2) != grid_ || emb.size(3) != grid_)
    throw InferenceError("SAM2 mask decoder: image embedding has shape " +
                         (emb.defined() ? c10::str(emb.sizes()) : std::string("(none)")) + ", expected [B, " +
                         std::to_string(d) + ", " + std::to_string(grid_) + ", " + std::to_string(grid_) + "]");
  if (emb.size(0) != 1 && emb.size(0) != n)
    throw InferenceError("SAM2 mask decoder: " + std::to_string(emb.size(0)) + " images for " + std::to_string(n) +
                         " prompts (give one image for all, or one per prompt)");
  std::optional<torch::NoGradGuard> no_grad;
  if (!mask_tokens_.requires_grad()) no_grad.emplace();
  const auto dtype = mask_tokens_.scalar_type();
  const auto device = mask_tokens_.device();
  const auto output_tokens = torch::cat({obj_score_token_, iou_token_, mask_tokens_}, 0);  // [6, D]

  // Sparse prompt: no clicks -> one (0,0) point with label -1 plus the pad point, both of
  // which become not_a_point_embed; then the language token (UniBiomed's extension) unless
  // this is a tracked video frame, which has no prompt at all.
  auto sparse = language.defined()
                    ? torch::cat({not_a_point_.expand({n, 2, d}), language.to(device, dtype).unsqueeze(1)}, 1)
                    : not_a_point_.expand({n, 2, d});
  auto tokens = torch::cat({output_tokens.unsqueeze(0).expand({n, -1, -1}), sparse}, 1);  // [N, 9, D]

  auto expand_images = [&](const torch::Tensor& t) { return t.size(0) == n ? t : t.expand({n, -1, -1, -1}); };
  auto src = expand_images(emb) + no_mask_.view({1, d, 1, 1});  // dense prompt = no_mask_embed
  auto keys = src.flatten(2).permute({0, 2, 1});          // [N, hw, D]
  auto key_pe = image_pe_.flatten(2).permute({0, 2, 1});  // [1, hw, D]
  auto queries = tokens;
  const auto& query_pe = tokens;

  for (size_t i = 0; i < layers_.size(); ++i) {
    const TwoWayLayer& l = layers_[i];
    if (i == 0) {
      // The first layer's self-attention has neither residual nor positional embedding.
      queries = l.self_attn(queries, queries, queries);
    } else {
      auto q = queries + query_pe;
      queries = queries + l.self_attn(q, q, queries);
    }
    queries = layer_norm_last(queries, l.norm_w[0], l.norm_b[0], 1e-5);
    auto q = queries + query_pe;
    auto k = keys + key_pe;
    queries = layer_norm_last(queries + l.token_to_image(q, k, keys), l.norm_w[1], l.norm_b[1], 1e-5);
    queries = layer_norm_last(queries + l.mlp(queries), l.norm_w[2], l.norm_b[2], 1e-5);
    q = queries + query_pe;
    k = keys + key_pe;
    keys = layer_norm_last(keys + l.image_to_token(k, q, queries), l.norm_w[3], l.norm_b[3], 1e-5);
  }
  {
    auto q = queries + query_pe;
    auto k = keys + key_pe;
    queries = layer_norm_last(queries + final_attn_(q, k, keys), final_norm_w_, final_norm_b_, 1e-5);
  }
  if (trace) {
    trace->sparse_prompt = sparse;
    trace->dense_prompt = no_mask_.view({1, d, 1, 1}).expand({1, d, grid_, grid_});
    trace->image_pe = image_pe_;
    trace->queries_out = queries;
    trace->keys_out = keys;
  }

  const int64_t n_masks = static_cast<int64_t>(hypernetworks_.size());
  auto iou_token_out = queries.select(1, 1);
  auto mask_tokens_out = queries.narrow(1, 2, n_masks);

  // Upscaling with the high-resolution features (use_high_res_features_in_sam):
  // GELU(LN2d(ConvT(src) + s1)) -> GELU(ConvT(.) + s0).
  auto src_map = keys.transpose(1, 2).reshape({n, d, grid_, grid_});
  auto up = upscale_2x2(src_map, up0_w_, up0_b_) + expand_images(features.high_res_s1.to(device, dtype));
  up = torch::gelu(layer_norm_2d(up, up_ln_w_, up_ln_b_));
  up = torch::gelu(upscale_2x2(up, up3_w_, up3_b_) + expand_images(features.high_res_s0.to(device, dtype)));

  std::vector<torch::Tensor> hyper;
  for (int64_t i = 0; i < n_masks; ++i) hyper.push_back(hypernetworks_[static_cast<size_t>(i)](mask_tokens_out.select(1, i)));
  auto hyper_in = torch::stack(hyper, 1);  // [N, 4, D/8]
  const int64_t mh = up.size(2), mw = up.size(3);
  Sam2DecoderOutput out;
  out.all_mask_logits = torch::matmul(hyper_in, up.reshape({n, d / 8, mh * mw})).view({n, n_masks, mh, mw});
  out.all_iou = torch::sigmoid(iou_head_(iou_token_out));
  out.object_score_logits = obj_score_head_(queries.select(1, 0));
  out.mask_tokens = mask_tokens_out;

  // multimask_output (no clicks): outputs 1..3, the best by predicted IoU; argmax keeps the
  // first of equal maxima, as torch.argmax does.
  auto multi_iou = out.all_iou.narrow(1, 1, n_masks - 1).to(torch::kFloat32);
  out.best = multi_iou.argmax(1);
  out.best_iou = multi_iou.gather(1, out.best.unsqueeze(1)).squeeze(1);
  auto idx = (out.best + 1).view({n, 1, 1, 1}).expand({n, 1, mh, mw});
  out.best_low_res = out.all_mask_logits.to(torch::kFloat32).gather(1, idx);
  return out;
}

torch::Tensor Sam2MaskDecoder::upsample(const torch::Tensor& low_res, int64_t height, int64_t width,
                                        torch::Tensor* at_input_size) const {
  if (height <= 0 || width <= 0)
    throw InferenceError("SAM2 mask upsampling: target size " + std::to_string(width) + "x" + std::to_string(height) +
                         " has no pixels");
  torch::NoGradGuard no_grad;
  const int64_t s = config_.image_size;
  auto x = F::interpolate(low_res.to(torch::kFloat32), F::InterpolateFuncOptions()
                                                           .size(std::vector<int64_t>{s, s})
                                                           .mode(torch::kBilinear)
                                                           .align_corners(false));
  if (at_input_size) *at_input_size = x;
  if (height != s || width != s)
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{height, width})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  return x.select(1, 0);
}

}  // namespace unibiomed::inference
