// SPDX-License-Identifier: GPL-3.0-or-later
// Tensor names and shapes follow the released checkpoint: InternVL's vision_model/mlp1
// (modeling_intern_vit.py, modeling_sa2va_chat.py), Qwen2ForCausalLM under language_model,
// text_hidden_fcs, and the SAM2 model under grounding_encoder.sam2_model (sam2.py: Hiera,
// FpnNeck, PromptEncoder, MaskDecoder, MemoryAttention, MemoryEncoder, SAM2Base heads).
// Every name is spelled in this file only.
#include "inference/checkpoint_layout.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "inference/error.h"

namespace unibiomed::inference {

namespace {

const std::string kVision = "vision_model.";
const std::string kProjector = "mlp1.";
const std::string kLanguage = "language_model.";
const std::string kSegHead = "text_hidden_fcs.";
const std::string kGrounding = "grounding_encoder.";
const std::string kSam = kGrounding + "sam2_model.";

std::string idx(int i) { return std::to_string(i); }

}  // namespace

namespace layout {

namespace {

Module module(const std::string& prefix) { return {prefix + ".weight", prefix + ".bias"}; }

Attention attention(const std::string& prefix) {
  return {module(prefix + ".q_proj"), module(prefix + ".k_proj"), module(prefix + ".v_proj"),
          module(prefix + ".out_proj")};
}

}  // namespace

Module Mlp::layer(int i) const { return module(prefix + ".layers." + idx(i)); }

VisionEmbeddings vision_embeddings() {
  const std::string e = kVision + "embeddings.";
  return {e + "class_embedding", module(e + "patch_embedding"), e + "position_embedding"};
}

VisionLayer vision_layer(int i) {
  const std::string p = kVision + "encoder.layers." + idx(i) + ".";
  return {module(p + "norm1"),   module(p + "attn.qkv"), module(p + "attn.proj"), module(p + "norm2"),
          module(p + "mlp.fc1"), module(p + "mlp.fc2"),  p + "ls1",               p + "ls2"};
}

Projector projector() { return {module(kProjector + "0"), module(kProjector + "1"), module(kProjector + "3")}; }

LanguageModel language_model() {
  return {kLanguage + "model.embed_tokens.weight", kLanguage + "model.norm.weight", kLanguage + "lm_head.weight"};
}

LanguageLayer language_layer(int i) {
  const std::string p = kLanguage + "model.layers." + idx(i) + ".";
  return {p + "input_layernorm.weight",
          p + "post_attention_layernorm.weight",
          module(p + "self_attn.q_proj"),
          module(p + "self_attn.k_proj"),
          module(p + "self_attn.v_proj"),
          p + "self_attn.o_proj.weight",
          p + "mlp.gate_proj.weight",
          p + "mlp.up_proj.weight",
          p + "mlp.down_proj.weight"};
}

SegHead seg_head() { return {module(kSegHead + "0"), module(kSegHead + "2")}; }

HieraTrunk hiera_trunk() {
  const std::string t = kSam + "image_encoder.trunk.";
  return {module(t + "patch_embed.proj"), t + "pos_embed", t + "pos_embed_window"};
}

HieraBlock hiera_block(int i) {
  const std::string p = kSam + "image_encoder.trunk.blocks." + idx(i) + ".";
  return {module(p + "norm1"),        module(p + "attn.qkv"),     module(p + "attn.proj"), module(p + "norm2"),
          module(p + "mlp.layers.0"), module(p + "mlp.layers.1"), module(p + "proj")};
}

Module neck_conv(int level) { return module(kSam + "image_encoder.neck.convs." + idx(level) + ".conv"); }

std::string no_mem_embed() { return kSam + "no_mem_embed"; }

PromptEncoder prompt_encoder() {
  const std::string p = kSam + "sam_prompt_encoder.";
  return {p + "not_a_point_embed.weight", p + "no_mask_embed.weight", p + "pe_layer.positional_encoding_gaussian_matrix"};
}

MaskDecoder mask_decoder() {
  const std::string p = kSam + "sam_mask_decoder";
  MaskDecoder d;
  d.prefix = p;
  d.conv_s0 = module(p + ".conv_s0");
  d.conv_s1 = module(p + ".conv_s1");
  d.iou_token_weight = p + ".iou_token.weight";
  d.mask_tokens_weight = p + ".mask_tokens.weight";
  d.obj_score_token_weight = p + ".obj_score_token.weight";
  d.final_attn_token_to_image = attention(p + ".transformer.final_attn_token_to_image");
  d.norm_final_attn = module(p + ".transformer.norm_final_attn");
  d.upscaling_conv0 = module(p + ".output_upscaling.0");
  d.upscaling_norm = module(p + ".output_upscaling.1");
  d.upscaling_conv1 = module(p + ".output_upscaling.3");
  d.iou_prediction_head = {p + ".iou_prediction_head"};
  d.pred_obj_score_head = {p + ".pred_obj_score_head"};
  return d;
}

MemoryAttentionLayer memory_attention_layer(int i) {
  const std::string p = kSam + "memory_attention.layers." + idx(i) + ".";
  return {attention(p + "self_attn"), attention(p + "cross_attn_image"), module(p + "linear1"),
          module(p + "linear2"),      module(p + "norm1"),                module(p + "norm2"),
          module(p + "norm3")};
}

Module memory_attention_norm() { return module(kSam + "memory_attention.norm"); }

MemoryEncoder memory_encoder() {
  MemoryEncoder e;
  e.prefix = kSam + "memory_encoder.";
  e.pix_feat_proj = module(e.prefix + "pix_feat_proj");
  e.out_proj = module(e.prefix + "out_proj");
  return e;
}

// MaskDownSampler's nn.Sequential: conv, norm, activation per stage, then the 1x1 conv.
Module MemoryEncoder::downsampler_conv(int stage) const {
  return module(prefix + "mask_downsampler.encoder." + idx(3 * stage));
}
Module MemoryEncoder::downsampler_norm(int stage) const {
  return module(prefix + "mask_downsampler.encoder." + idx(3 * stage + 1));
}

MemoryFuserLayer MemoryEncoder::fuser_layer(int i) const {
  const std::string p = prefix + "fuser.layers." + idx(i) + ".";
  return {module(p + "dwconv"), module(p + "norm"), module(p + "pwconv1"), module(p + "pwconv2"), p + "g_weight"};
}

std::string maskmem_tpos_enc() { return kSam + "maskmem_tpos_enc"; }
std::string no_obj_ptr() { return kSam + "no_obj_ptr"; }
Mlp obj_ptr_proj() { return {kSam + "obj_ptr_proj"}; }

TwoWayLayer MaskDecoder::layer(int i) const {
  const std::string p = prefix + ".transformer.layers." + idx(i) + ".";
  TwoWayLayer l{attention(p + "self_attn"), attention(p + "cross_attn_token_to_image"),
                attention(p + "cross_attn_image_to_token"), {p + "mlp"}, {}};
  for (int k = 0; k < 4; ++k) l.norms[static_cast<size_t>(k)] = module(p + "norm" + idx(k + 1));
  return l;
}

Mlp MaskDecoder::output_hypernetwork(int mask) const { return {prefix + ".output_hypernetworks_mlps." + idx(mask)}; }

}  // namespace layout

namespace {

using layout::Module;

// Collects the table; every entry gets the block being described.
class Table {
 public:
  CheckpointBlock block = CheckpointBlock::kVision;

  void add(const std::string& name, std::vector<int64_t> shape) { specs_.push_back({name, std::move(shape), block}); }
  void linear(const Module& m, int64_t out, int64_t in, bool bias = true) {
    add(m.weight, {out, in});
    if (bias) add(m.bias, {out});
  }
  void norm(const Module& m, int64_t n) {
    add(m.weight, {n});
    add(m.bias, {n});
  }
  void conv(const Module& m, int64_t out, int64_t in, int64_t k) {
    add(m.weight, {out, in, k, k});
    add(m.bias, {out});
  }
  void mlp(const layout::Mlp& m, const std::vector<int64_t>& sizes) {
    for (size_t i = 0; i + 1 < sizes.size(); ++i) linear(m.layer(static_cast<int>(i)), sizes[i + 1], sizes[i]);
  }
  void attention(const layout::Attention& a, int64_t dim, int64_t internal, int64_t kv_in) {
    linear(a.q_proj, internal, dim);
    linear(a.k_proj, internal, kv_in);
    linear(a.v_proj, internal, kv_in);
    linear(a.out_proj, dim, internal);
  }
  std::vector<TensorSpec> take() {
    std::sort(specs_.begin(), specs_.end(), [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
    return std::move(specs_);
  }

 private:
  std::vector<TensorSpec> specs_;
};

void vision_tensors(Table& t, const ModelConfig& c) {
  const VisionConfig& v = c.vision;
  const int64_t C = v.hidden_size, I = v.intermediate_size, P = v.patch_size;
  const int64_t grid = v.image_size / v.patch_size;
  t.block = CheckpointBlock::kVision;
  const auto e = layout::vision_embeddings();
  t.add(e.class_embedding, {1, 1, C});
  t.conv(e.patch_embedding, C, v.num_channels, P);
  t.add(e.position_embedding, {1, 1 + grid * grid, C});
  for (int i = 0; i < v.num_hidden_layers; ++i) {
    const auto l = layout::vision_layer(i);
    t.linear(l.attn_qkv, 3 * C, C, v.qkv_bias);
    t.linear(l.attn_proj, C, C);
    t.linear(l.mlp_fc1, I, C);
    t.linear(l.mlp_fc2, C, I);
    t.norm(l.norm1, C);
    t.norm(l.norm2, C);
    t.add(l.ls1, {C});
    t.add(l.ls2, {C});
  }
  t.block = CheckpointBlock::kProjector;
  const auto shuffle = static_cast<int64_t>(std::lround(1.0 / (c.downsample_ratio * c.downsample_ratio)));
  const int64_t H = c.llm.hidden_size;
  const auto m = layout::projector();
  t.norm(m.norm, C * shuffle);
  t.linear(m.fc1, H, C * shuffle);
  t.linear(m.fc2, H, H);
}

void language_tensors(Table& t, const LlmConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, kv = c.num_key_value_heads * c.head_dim();
  t.block = CheckpointBlock::kLanguage;
  const auto m = layout::language_model();
  t.add(m.embed_tokens_weight, {c.vocab_size, H});
  if (!c.tie_word_embeddings) t.add(m.lm_head_weight, {c.vocab_size, H});
  t.add(m.norm_weight, {H});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const auto l = layout::language_layer(i);
    t.linear(l.q_proj, H, H);
    t.linear(l.k_proj, kv, H);
    t.linear(l.v_proj, kv, H);
    t.add(l.o_proj_weight, {H, H});
    t.add(l.gate_proj_weight, {I, H});
    t.add(l.up_proj_weight, {I, H});
    t.add(l.down_proj_weight, {H, I});
    t.add(l.input_layernorm_weight, {H});
    t.add(l.post_attention_layernorm_weight, {H});
  }
}

void seg_head_tensors(Table& t, const ModelConfig& c) {
  t.block = CheckpointBlock::kSegHead;
  const auto s = layout::seg_head();
  t.linear(s.fc1, c.llm.hidden_size, c.llm.hidden_size);
  t.linear(s.fc2, c.grounding.neck.d_model, c.llm.hidden_size);
}

void sam2_tensors(Table& t, const GroundingConfig& g) {
  t.block = CheckpointBlock::kSam2;
  const HieraConfig& h = g.hiera;
  const auto trunk = layout::hiera_trunk();
  int64_t dim = h.embed_dim;
  t.conv(trunk.patch_embed, dim, 3, h.patch_kernel_size.at(0));
  t.add(trunk.pos_embed, {1, dim, h.window_pos_embed_bkg_spatial_size.at(0), h.window_pos_embed_bkg_spatial_size.at(1)});
  t.add(trunk.pos_embed_window, {1, dim, h.window_spec.at(0), h.window_spec.at(0)});
  std::vector<int> ends;
  int total = 0;
  for (int s : h.stages) ends.push_back((total += s) - 1);
  for (int i = 0; i < total; ++i) {
    int64_t out = dim;
    if (std::count(ends.begin(), ends.end(), i - 1)) out = static_cast<int64_t>(static_cast<double>(dim) * h.dim_mul);
    const auto b = layout::hiera_block(i);
    const auto hidden = static_cast<int64_t>(static_cast<double>(out) * h.mlp_ratio);
    t.norm(b.norm1, dim);
    t.linear(b.attn_qkv, 3 * out, dim);
    t.linear(b.attn_proj, out, out);
    t.norm(b.norm2, out);
    t.linear(b.mlp_fc1, hidden, out);
    t.linear(b.mlp_fc2, out, hidden);
    if (out != dim) t.linear(b.proj, out, dim);
    dim = out;
  }
  const int64_t D = g.neck.d_model;
  for (size_t k = 0; k < g.neck.backbone_channel_list.size(); ++k)
    t.conv(layout::neck_conv(static_cast<int>(k)), D, g.neck.backbone_channel_list[k], 1);
  t.add(layout::no_mem_embed(), {1, 1, D});

  const auto pe = layout::prompt_encoder();
  t.add(pe.no_mask_embed_weight, {1, D});
  t.add(pe.not_a_point_embed_weight, {1, D});
  t.add(pe.positional_encoding_gaussian_matrix, {2, D / 2});

  const auto md = layout::mask_decoder();
  const int64_t n_masks = g.num_multimask_outputs + 1;
  t.conv(md.conv_s0, D / 8, D, 1);
  t.conv(md.conv_s1, D / 4, D, 1);
  std::vector<int64_t> iou{D};
  for (int i = 0; i + 1 < g.iou_head_depth; ++i) iou.push_back(g.iou_head_hidden_dim);
  iou.push_back(n_masks);
  t.mlp(md.iou_prediction_head, iou);
  t.add(md.iou_token_weight, {1, D});
  t.add(md.mask_tokens_weight, {n_masks, D});
  t.add(md.obj_score_token_weight, {1, D});
  for (int64_t i = 0; i < n_masks; ++i) t.mlp(md.output_hypernetwork(static_cast<int>(i)), {D, D, D, D / 8});
  t.add(md.upscaling_conv0.weight, {D, D / 4, 2, 2});  // ConvTranspose2d: [in, out, k, k]
  t.add(md.upscaling_conv0.bias, {D / 4});
  t.norm(md.upscaling_norm, D / 4);
  t.add(md.upscaling_conv1.weight, {D / 4, D / 8, 2, 2});
  t.add(md.upscaling_conv1.bias, {D / 8});
  t.mlp(md.pred_obj_score_head, {D, D, D, 1});
  const int64_t inner = D / g.attention_downsample_rate;
  for (int i = 0; i < g.decoder_depth; ++i) {
    const auto l = md.layer(i);
    t.attention(l.self_attn, D, D, D);
    t.attention(l.cross_attn_token_to_image, D, inner, D);
    t.attention(l.cross_attn_image_to_token, D, inner, D);
    t.mlp(l.mlp, {D, g.decoder_mlp_dim, D});
    for (const auto& n : l.norms) t.norm(n, D);
  }
  t.attention(md.final_attn_token_to_image, D, inner, D);
  t.norm(md.norm_final_attn, D);
}

// The parts only video propagation reads (inference/sam2_memory.cpp), and the mask/point prompt
// inputs no code of this project reads.
void sam2_video_tensors(Table& t, const GroundingConfig& g, const Sam2MemoryConfig& m) {
  t.block = CheckpointBlock::kSam2VideoOnly;
  const int64_t D = g.neck.d_model;
  const std::string pe = kSam + "sam_prompt_encoder.";
  const int64_t mc = g.mask_in_chans;
  t.conv(layout::module(pe + "mask_downscaling.0"), mc / 4, 1, 2);
  t.norm(layout::module(pe + "mask_downscaling.1"), mc / 4);
  t.conv(layout::module(pe + "mask_downscaling.3"), mc, mc / 4, 2);
  t.norm(layout::module(pe + "mask_downscaling.4"), mc);
  t.conv(layout::module(pe + "mask_downscaling.6"), D, mc, 1);
  for (int i = 0; i < 4; ++i) t.add(pe + "point_embeddings." + idx(i) + ".weight", {1, D});

  const int64_t md = m.d_model, kv = m.kv_in_dim;
  for (int i = 0; i < m.num_layers; ++i) {
    const auto l = layout::memory_attention_layer(i);
    t.attention(l.self_attn, md, md, md);
    t.attention(l.cross_attn_image, md, md, kv);
    t.linear(l.linear1, m.dim_feedforward, md);
    t.linear(l.linear2, md, m.dim_feedforward);
    for (const auto* n : {&l.norm1, &l.norm2, &l.norm3}) t.norm(*n, md);
  }
  t.norm(layout::memory_attention_norm(), md);
  // MaskDownSampler: 4 x (conv 3x3 stride 2, LayerNorm2d, GELU) widening 1 -> 4 -> 16 -> 64 -> 256,
  // then a 1x1 conv to the model width (sam2.py MaskDownSampler, total_stride 16).
  const auto me = layout::memory_encoder();
  int64_t in = 1;
  for (int s = 0; s < layout::MemoryEncoder::kDownsamplerStages; ++s) {
    const int64_t out = in * 4;
    t.conv(me.downsampler_conv(s), out, in, 3);
    t.norm(me.downsampler_norm(s), out);
    in = out;
  }
  t.conv(me.downsampler_conv(layout::MemoryEncoder::kDownsamplerStages), D, in, 1);
  t.conv(me.pix_feat_proj, D, D, 1);
  for (int i = 0; i < 2; ++i) {
    const auto l = me.fuser_layer(i);
    t.add(l.dwconv.weight, {D, 1, 7, 7});
    t.add(l.dwconv.bias, {D});
    t.norm(l.norm, D);
    t.linear(l.pwconv1, 4 * D, D);
    t.linear(l.pwconv2, D, 4 * D);
    t.add(l.g_weight, {D});  // CXBlock gamma (exported as g_weight)
  }
  t.conv(me.out_proj, m.out_dim, D, 1);
  t.add(layout::maskmem_tpos_enc(), {m.num_maskmem, 1, 1, m.out_dim});
  t.add(kSam + "no_mem_pos_enc", {1, 1, D});
  t.add(layout::no_obj_ptr(), {1, D});
  t.mlp(layout::obj_ptr_proj(), {D, D, D, D});
  t.conv(layout::module(kSam + "mask_downsample"), 1, 1, 4);
}

}  // namespace

Sam2MemoryConfig memory_config_from_json(const std::string& config_json_text, const std::string& origin) {
  Sam2MemoryConfig m;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(config_json_text);
  } catch (const nlohmann::json::exception& e) {
    throw InferenceError(origin + ": not JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("grounding_encoder_config")) return m;
  const auto& g = j["grounding_encoder_config"];
  try {
    if (g.contains("memory_attention")) {
      const auto& a = g["memory_attention"];
      m.d_model = a.value("d_model", m.d_model);
      m.kv_in_dim = a.value("kv_in_dim", m.kv_in_dim);
      m.dim_feedforward = a.value("dim_feedforward", m.dim_feedforward);
      m.num_layers = a.value("num_layers", m.num_layers);
    }
    if (g.contains("memory_encoder")) m.out_dim = g["memory_encoder"].value("out_dim", m.out_dim);
  } catch (const nlohmann::json::exception& e) {
    throw InferenceError(origin + ": grounding_encoder_config memory sizes: " + e.what());
  }
  return m;
}

const char* block_name(CheckpointBlock block) {
  switch (block) {
    case CheckpointBlock::kVision: return "vision encoder (InternViT)";
    case CheckpointBlock::kProjector: return "projector (mlp1)";
    case CheckpointBlock::kLanguage: return "language model (Qwen2)";
    case CheckpointBlock::kSegHead: return "[SEG] head (text_hidden_fcs)";
    case CheckpointBlock::kSam2: return "SAM2 image encoder + mask decoder";
    case CheckpointBlock::kSam2VideoOnly: return "SAM2 video/memory (not used by the 2D path)";
  }
  return "?";
}

std::vector<std::string> video_only_prefixes() {
  return {kSam + "memory_attention.",   kSam + "memory_encoder.",  kSam + "obj_ptr_proj.",
          kSam + "mask_downsample.",    kSam + "maskmem_tpos_enc", kSam + "no_mem_pos_enc",
          kSam + "no_obj_ptr",          kSam + "sam_prompt_encoder.mask_downscaling.",
          kSam + "sam_prompt_encoder.point_embeddings."};
}

std::optional<CheckpointBlock> block_of(const std::string& name) {
  auto starts = [&](const std::string& prefix) { return name.compare(0, prefix.size(), prefix) == 0; };
  if (starts(kVision)) return CheckpointBlock::kVision;
  if (starts(kProjector)) return CheckpointBlock::kProjector;
  if (starts(kLanguage)) return CheckpointBlock::kLanguage;
  if (starts(kSegHead)) return CheckpointBlock::kSegHead;
  if (starts(kGrounding)) {
    for (const auto& p : video_only_prefixes())
      if (starts(p)) return CheckpointBlock::kSam2VideoOnly;
    return CheckpointBlock::kSam2;
  }
  return std::nullopt;
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<TensorSpec> checkpoint_layout(const ModelConfig& config, const Sam2MemoryConfig& memory) {
  Table t;
  vision_tensors(t, config);
  language_tensors(t, config.llm);
  seg_head_tensors(t, config);
  sam2_tensors(t, config.grounding);
  sam2_video_tensors(t, config.grounding, memory);
  return t.take();
}

}  // namespace unibiomed::inference
