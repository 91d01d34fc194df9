// SPDX-License-Identifier: GPL-3.0-or-later
// Tensor names and shapes follow the released checkpoint: InternVL's vision_model/mlp1
// (modeling_intern_vit.py, modeling_sa2va_chat.py), Qwen2ForCausalLM under language_model,
// text_hidden_fcs, and the SAM2 model under grounding_encoder.sam2_model (sam2.py: Hiera,
// FpnNeck, PromptEncoder, MaskDecoder, MemoryAttention, MemoryEncoder, SAM2Base heads).
#include "inference/random_checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "inference/error.h"
#include "inference/tokenizer.h"

namespace unibiomed::inference {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

const std::string kSam = "grounding_encoder.sam2_model.";

// The added tokens of the released tokenizer (Qwen2.5 + InternVL2.5 + UniBiomed), with their
// ids (shared/golden/qwen2-tokenizer/tokenizer_config.json).
const std::pair<const char*, int64_t> kRealAddedTokens[] = {
    {"<|endoftext|>", 151643},      {"<|im_start|>", 151644},   {"<|im_end|>", 151645},
    {"<|object_ref_start|>", 151646}, {"<|object_ref_end|>", 151647}, {"<|box_start|>", 151648},
    {"<|box_end|>", 151649},        {"<|quad_start|>", 151650}, {"<|quad_end|>", 151651},
    {"<|vision_start|>", 151652},   {"<|vision_end|>", 151653}, {"<|vision_pad|>", 151654},
    {"<|image_pad|>", 151655},      {"<|video_pad|>", 151656},  {"<tool_call>", 151657},
    {"</tool_call>", 151658},       {"<|fim_prefix|>", 151659}, {"<|fim_middle|>", 151660},
    {"<|fim_suffix|>", 151661},     {"<|fim_pad|>", 151662},    {"<|repo_name|>", 151663},
    {"<|file_sep|>", 151664},       {"<img>", 151665},          {"</img>", 151666},
    {"<IMG_CONTEXT>", 151667},      {"<quad>", 151668},         {"</quad>", 151669},
    {"<ref>", 151670},              {"</ref>", 151671},         {"<box>", 151672},
    {"</box>", 151673},             {"[SEG]", 151674},          {"<p>", 151675},
    {"</p>", 151676},               {"<vp>", 151677},           {"</vp>", 151678}};

// The tiny vocabulary of the reference checkpoint (shared/golden tiny_vocab.json): bytes 0..255,
// then these.
const char* const kTinySpecials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>",
                                     "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>",
                                     "</box>", "[SEG]", "<p>", "</p>", "<vp>", "</vp>"};

class Layout {
 public:
  void add(const std::string& name, std::vector<int64_t> shape) { specs_.push_back({name, std::move(shape)}); }
  void linear(const std::string& p, int64_t out, int64_t in, bool bias = true) {
    add(p + ".weight", {out, in});
    if (bias) add(p + ".bias", {out});
  }
  void norm(const std::string& p, int64_t n) {
    add(p + ".weight", {n});
    add(p + ".bias", {n});
  }
  void conv(const std::string& p, int64_t out, int64_t in, int64_t k) {
    add(p + ".weight", {out, in, k, k});
    add(p + ".bias", {out});
  }
  void mlp(const std::string& p, const std::vector<int64_t>& sizes) {
    for (size_t i = 0; i + 1 < sizes.size(); ++i) linear(p + ".layers." + std::to_string(i), sizes[i + 1], sizes[i]);
  }
  std::vector<TensorSpec> take() {
    std::sort(specs_.begin(), specs_.end(), [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
    return std::move(specs_);
  }

 private:
  std::vector<TensorSpec> specs_;
};

void vision_layout(Layout& l, const ModelConfig& c) {
  const VisionConfig& v = c.vision;
  const int64_t C = v.hidden_size, I = v.intermediate_size, P = v.patch_size;
  const int64_t grid = v.image_size / v.patch_size;
  l.add("vision_model.embeddings.class_embedding", {1, 1, C});
  l.conv("vision_model.embeddings.patch_embedding", C, v.num_channels, P);
  l.add("vision_model.embeddings.position_embedding", {1, 1 + grid * grid, C});
  for (int i = 0; i < v.num_hidden_layers; ++i) {
    const std::string p = "vision_model.encoder.layers." + std::to_string(i) + ".";
    l.linear(p + "attn.qkv", 3 * C, C, v.qkv_bias);
    l.linear(p + "attn.proj", C, C);
    l.linear(p + "mlp.fc1", I, C);
    l.linear(p + "mlp.fc2", C, I);
    l.norm(p + "norm1", C);
    l.norm(p + "norm2", C);
    l.add(p + "ls1", {C});
    l.add(p + "ls2", {C});
  }
  const auto shuffle = static_cast<int64_t>(std::lround(1.0 / (c.downsample_ratio * c.downsample_ratio)));
  const int64_t H = c.llm.hidden_size;
  l.norm("mlp1.0", C * shuffle);
  l.linear("mlp1.1", H, C * shuffle);
  l.linear("mlp1.3", H, H);
}

void llm_layout(Layout& l, const LlmConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, kv = c.num_key_value_heads * c.head_dim();
  l.add("language_model.model.embed_tokens.weight", {c.vocab_size, H});
  if (!c.tie_word_embeddings) l.add("language_model.lm_head.weight", {c.vocab_size, H});
  l.add("language_model.model.norm.weight", {H});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "language_model.model.layers." + std::to_string(i) + ".";
    l.linear(p + "self_attn.q_proj", H, H);
    l.linear(p + "self_attn.k_proj", kv, H);
    l.linear(p + "self_attn.v_proj", kv, H);
    l.linear(p + "self_attn.o_proj", H, H, false);
    l.linear(p + "mlp.gate_proj", I, H, false);
    l.linear(p + "mlp.up_proj", I, H, false);
    l.linear(p + "mlp.down_proj", H, I, false);
    l.add(p + "input_layernorm.weight", {H});
    l.add(p + "post_attention_layernorm.weight", {H});
  }
}

void sam2_layout(Layout& l, const GroundingConfig& g, const Sam2MemoryConfig& m) {
  const HieraConfig& h = g.hiera;
  const std::string t = kSam + "image_encoder.trunk.";
  int64_t dim = h.embed_dim, heads = h.num_heads;
  l.conv(t + "patch_embed.proj", dim, 3, h.patch_kernel_size.at(0));
  l.add(t + "pos_embed", {1, dim, h.window_pos_embed_bkg_spatial_size.at(0), h.window_pos_embed_bkg_spatial_size.at(1)});
  l.add(t + "pos_embed_window", {1, dim, h.window_spec.at(0), h.window_spec.at(0)});
  std::vector<int> ends;
  int total = 0;
  for (int s : h.stages) ends.push_back((total += s) - 1);
  for (int i = 0; i < total; ++i) {
    int64_t out = dim;
    if (std::count(ends.begin(), ends.end(), i - 1)) {
      out = static_cast<int64_t>(static_cast<double>(dim) * h.dim_mul);
      heads = static_cast<int64_t>(static_cast<double>(heads) * h.head_mul);
    }
    const std::string p = t + "blocks." + std::to_string(i) + ".";
    const auto hidden = static_cast<int64_t>(static_cast<double>(out) * h.mlp_ratio);
    l.norm(p + "norm1", dim);
    l.linear(p + "attn.qkv", 3 * out, dim);
    l.linear(p + "attn.proj", out, out);
    l.norm(p + "norm2", out);
    l.linear(p + "mlp.layers.0", hidden, out);
    l.linear(p + "mlp.layers.1", out, hidden);
    if (out != dim) l.linear(p + "proj", out, dim);
    dim = out;
  }
  const int64_t D = g.neck.d_model;
  for (size_t k = 0; k < g.neck.backbone_channel_list.size(); ++k)
    l.conv(kSam + "image_encoder.neck.convs." + std::to_string(k) + ".conv", D, g.neck.backbone_channel_list[k], 1);

  const std::string pe = kSam + "sam_prompt_encoder.";
  const int64_t mc = g.mask_in_chans;
  l.conv(pe + "mask_downscaling.0", mc / 4, 1, 2);
  l.norm(pe + "mask_downscaling.1", mc / 4);
  l.conv(pe + "mask_downscaling.3", mc, mc / 4, 2);
  l.norm(pe + "mask_downscaling.4", mc);
  l.conv(pe + "mask_downscaling.6", D, mc, 1);
  l.add(pe + "no_mask_embed.weight", {1, D});
  l.add(pe + "not_a_point_embed.weight", {1, D});
  l.add(pe + "pe_layer.positional_encoding_gaussian_matrix", {2, D / 2});
  for (int i = 0; i < 4; ++i) l.add(pe + "point_embeddings." + std::to_string(i) + ".weight", {1, D});

  const std::string md = kSam + "sam_mask_decoder.";
  const int64_t n_masks = g.num_multimask_outputs + 1;
  l.conv(md + "conv_s0", D / 8, D, 1);
  l.conv(md + "conv_s1", D / 4, D, 1);
  std::vector<int64_t> iou{D};
  for (int i = 0; i + 1 < g.iou_head_depth; ++i) iou.push_back(g.iou_head_hidden_dim);
  iou.push_back(n_masks);
  l.mlp(md + "iou_prediction_head", iou);
  l.add(md + "iou_token.weight", {1, D});
  l.add(md + "mask_tokens.weight", {n_masks, D});
  l.add(md + "obj_score_token.weight", {1, D});
  for (int64_t i = 0; i < n_masks; ++i) l.mlp(md + "output_hypernetworks_mlps." + std::to_string(i), {D, D, D, D / 8});
  l.add(md + "output_upscaling.0.weight", {D, D / 4, 2, 2});  // ConvTranspose2d: [in, out, k, k]
  l.add(md + "output_upscaling.0.bias", {D / 4});
  l.norm(md + "output_upscaling.1", D / 4);
  l.add(md + "output_upscaling.3.weight", {D / 4, D / 8, 2, 2});
  l.add(md + "output_upscaling.3.bias", {D / 8});
  l.mlp(md + "pred_obj_score_head", {D, D, D, 1});
  const int64_t inner = D / g.attention_downsample_rate;
  auto attention = [&](const std::string& p, int64_t internal, int64_t kv_in) {
    l.linear(p + ".q_proj", internal, D);
    l.linear(p + ".k_proj", internal, kv_in);
    l.linear(p + ".v_proj", internal, kv_in);
    l.linear(p + ".out_proj", D, internal);
  };
  for (int i = 0; i < g.decoder_depth; ++i) {
    const std::string p = md + "transformer.layers." + std::to_string(i) + ".";
    attention(p + "self_attn", D, D);
    attention(p + "cross_attn_token_to_image", inner, D);
    attention(p + "cross_attn_image_to_token", inner, D);
    l.mlp(p + "mlp", {D, g.decoder_mlp_dim, D});
    for (int k = 1; k <= 4; ++k) l.norm(p + "norm" + std::to_string(k), D);
  }
  attention(md + "transformer.final_attn_token_to_image", inner, D);
  l.norm(md + "transformer.norm_final_attn", D);

  // Video-only parts.
  const int64_t md_ = m.d_model, kv = m.kv_in_dim;
  for (int i = 0; i < m.num_layers; ++i) {
    const std::string p = kSam + "memory_attention.layers." + std::to_string(i) + ".";
    l.linear(p + "self_attn.q_proj", md_, md_);
    l.linear(p + "self_attn.k_proj", md_, md_);
    l.linear(p + "self_attn.v_proj", md_, md_);
    l.linear(p + "self_attn.out_proj", md_, md_);
    l.linear(p + "cross_attn_image.q_proj", md_, md_);
    l.linear(p + "cross_attn_image.k_proj", md_, kv);
    l.linear(p + "cross_attn_image.v_proj", md_, kv);
    l.linear(p + "cross_attn_image.out_proj", md_, md_);
    l.linear(p + "linear1", m.dim_feedforward, md_);
    l.linear(p + "linear2", md_, m.dim_feedforward);
    for (int k = 1; k <= 3; ++k) l.norm(p + "norm" + std::to_string(k), md_);
  }
  l.norm(kSam + "memory_attention.norm", md_);
  // MaskDownSampler: 4 x (conv 3x3 stride 2, LayerNorm2d, GELU) widening 1 -> 4 -> 16 -> 64 -> 256,
  // then a 1x1 conv to the model width (sam2.py MaskDownSampler, total_stride 16).
  const std::string me = kSam + "memory_encoder.";
  int64_t in = 1;
  int idx = 0;
  for (int s = 0; s < 4; ++s, idx += 3) {
    const int64_t out = in * 4;
    l.conv(me + "mask_downsampler.encoder." + std::to_string(idx), out, in, 3);
    l.norm(me + "mask_downsampler.encoder." + std::to_string(idx + 1), out);
    in = out;
  }
  l.conv(me + "mask_downsampler.encoder." + std::to_string(idx), D, in, 1);
  l.conv(me + "pix_feat_proj", D, D, 1);
  for (int i = 0; i < 2; ++i) {
    const std::string p = me + "fuser.layers." + std::to_string(i) + ".";
    l.add(p + "dwconv.weight", {D, 1, 7, 7});
    l.add(p + "dwconv.bias", {D});
    l.norm(p + "norm", D);
    l.linear(p + "pwconv1", 4 * D, D);
    l.linear(p + "pwconv2", D, 4 * D);
    l.add(p + "g_weight", {D});  // CXBlock gamma (exported as g_weight)
  }
  l.conv(me + "out_proj", m.out_dim, D, 1);
  l.add(kSam + "maskmem_tpos_enc", {m.num_maskmem, 1, 1, m.out_dim});
  l.add(kSam + "no_mem_embed", {1, 1, D});
  l.add(kSam + "no_mem_pos_enc", {1, 1, D});
  l.add(kSam + "no_obj_ptr", {1, D});
  l.mlp(kSam + "obj_ptr_proj", {D, D, D, D});
  l.conv(kSam + "mask_downsample", 1, 1, 4);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Initial values: norms around 1, layer scales 0.1, biases small, matrices with a standard
// deviation of 1/sqrt(fan_in) (so that activations keep their scale through the stacks), learned
// embeddings 0.02, SAM2's random-Fourier matrix N(0, 1).
struct Init {
  double center = 0, half_width = 0;
};
Init init_for(const TensorSpec& t) {
  const double sqrt3 = std::sqrt(3.0);
  const std::string& n = t.name;
  if (ends_with(n, "ls1") || ends_with(n, "ls2") || ends_with(n, "g_weight")) return {0.1, 0.0};
  if (ends_with(n, ".bias")) return {0.0, 0.02 * sqrt3};
  if (ends_with(n, "positional_encoding_gaussian_matrix")) return {0.0, sqrt3};
  if (t.shape.size() == 1 && ends_with(n, ".weight")) return {1.0, 0.05};  // LayerNorm / RMSNorm
  const bool embedding = n.find("embed") != std::string::npos || ends_with(n, "_token.weight") ||
                         ends_with(n, "mask_tokens.weight") || ends_with(n, "tpos_enc") || ends_with(n, "pos_enc") ||
                         ends_with(n, "no_obj_ptr");
  if (embedding && n.find("patch_embed") == std::string::npos) return {0.0, 0.02 * sqrt3};
  int64_t fan_in = 1;
  for (size_t i = 1; i < t.shape.size(); ++i) fan_in *= t.shape[i];
  return {0.0, sqrt3 / std::sqrt(static_cast<double>(std::max<int64_t>(fan_in, 1)))};
}

// splitmix64 (Steele, Lea, Flood 2014): a fast, well-mixed generator; seeded per tensor from
// the seed and the name so that values do not depend on the order of writing.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

uint64_t name_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ULL ^ seed;  // FNV-1a over the name
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  return h;
}

uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even (no NaNs are produced here)
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t to_f16(float f) {
  // IEEE half, round to nearest even; the values written here are small and finite.
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = x & 0x7FFFFFu;
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7C00u);
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(half);
}

// One value in the stored dtype (F32, BF16 or F16), little-endian, at `p`.
void store_value(float v, DType dtype, uint8_t* p) {
  if (dtype == DType::F32) {
    std::memcpy(p, &v, 4);
  } else {
    const uint16_t h = dtype == DType::BF16 ? to_bf16(v) : to_f16(v);
    p[0] = static_cast<uint8_t>(h);
    p[1] = static_cast<uint8_t>(h >> 8);
  }
}

ojson tiny_config() {
  ojson special;
  for (size_t i = 0; i < std::size(kTinySpecials); ++i) special[kTinySpecials[i]] = 256 + static_cast<int64_t>(i);
  return ojson{
      {"architectures", {"Sa2VAChatModel"}},
      {"model_type", "sa2va_chat"},
      {"torch_dtype", "float32"},
      {"downsample_ratio", 0.5},
      {"dynamic_image_size", true},
      {"force_image_size", 56},
      {"max_dynamic_patch", 12},
      {"min_dynamic_patch", 1},
      {"pad2square", false},
      {"ps_version", "v2"},
      {"select_layer", -1},
      {"template", "phi3_chat"},
      {"use_thumbnail", true},
      {"tie_word_embeddings", false},
      {"hidden_size", 64},
      {"vision_config",
       {{"architectures", {"InternVisionModel"}}, {"model_type", "intern_vit_6b"}, {"hidden_act", "gelu"},
        {"hidden_size", 64}, {"image_size", 56}, {"intermediate_size", 128}, {"layer_norm_eps", 1e-6},
        {"norm_type", "layer_norm"}, {"num_attention_heads", 4}, {"num_channels", 3}, {"num_hidden_layers", 2},
        {"patch_size", 14}, {"qk_normalization", false}, {"qkv_bias", true}}},
      {"llm_config",
       {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"bos_token_id", 256}, {"eos_token_id", 258},
        {"hidden_act", "silu"}, {"hidden_size", 64}, {"intermediate_size", 128}, {"max_position_embeddings", 1024},
        {"num_attention_heads", 4}, {"num_hidden_layers", 2}, {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-6},
        {"rope_theta", 1000000.0}, {"tie_word_embeddings", false}, {"use_sliding_window", false},
        {"vocab_size", 512}}},
      {"grounding_encoder_config",
       {{"image_size", 128},
        {"scalp", 1},
        {"hiera",
         {{"embed_dim", 16}, {"num_heads", 1}, {"stages", {1, 2, 3, 2}}, {"global_att_blocks", {5}},
          {"window_pos_embed_bkg_spatial_size", {7, 7}}, {"window_spec", {8, 4, 4, 3}}, {"q_pool", 3},
          {"q_stride", {2, 2}}, {"dim_mul", 2.0}, {"head_mul", 2.0}, {"patch_kernel_size", {7, 7}},
          {"patch_stride", {4, 4}}, {"patch_padding", {3, 3}}, {"mlp_ratio", 4.0}, {"norm_eps", 1e-6}}},
        {"neck",
         {{"d_model", 32}, {"backbone_channel_list", {128, 64, 32, 16}}, {"fpn_top_down_levels", {2, 3}},
          {"fpn_interp_model", "nearest"}, {"kernel_size", 1}}},
        {"memory_attention", {{"d_model", 32}, {"kv_in_dim", 16}, {"dim_feedforward", 64}, {"num_layers", 2}}},
        {"memory_encoder", {{"out_dim", 16}}}}},
      {"tiny_test",
       {{"internvl_tile_size", 56},
        {"sam_target_length", 128},
        {"max_dynamic_patch_used_by_predict_forward", 12},
        {"min_dynamic_patch_used_by_predict_forward", 1},
        {"use_thumbnail", true},
        {"special_token_ids", special},
        {"eos_token_id", 258},
        {"pad_token_id", 256}}}};
}

ojson real_config() {
  // The released model's fields (configuration_sa2va_chat.py with InternVL2.5-1B's vision and
  // Qwen2.5-0.5B-Instruct's language sizes); SAM2 sizes are fixed in the reference code.
  return ojson{
      {"architectures", {"Sa2VAChatModel"}},
      {"model_type", "sa2va_chat"},
      {"torch_dtype", "bfloat16"},
      {"downsample_ratio", 0.5},
      {"dynamic_image_size", true},
      {"force_image_size", 448},
      {"max_dynamic_patch", 12},
      {"min_dynamic_patch", 1},
      {"pad2square", false},
      {"ps_version", "v2"},
      {"select_layer", -1},
      {"template", "phi3_chat"},
      {"use_thumbnail", true},
      {"tie_word_embeddings", false},
      {"hidden_size", 896},
      {"vision_config",
       {{"architectures", {"InternVisionModel"}}, {"model_type", "intern_vit_6b"}, {"hidden_act", "gelu"},
        {"hidden_size", 1024}, {"image_size", 448}, {"intermediate_size", 4096}, {"layer_norm_eps", 1e-6},
        {"norm_type", "layer_norm"}, {"num_attention_heads", 16}, {"num_channels", 3}, {"num_hidden_layers", 24},
        {"patch_size", 14}, {"qk_normalization", false}, {"qkv_bias", true}}},
      {"llm_config",
       {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"bos_token_id", 151643},
        {"eos_token_id", 151645}, {"hidden_act", "silu"}, {"hidden_size", 896}, {"intermediate_size", 4864},
        {"max_position_embeddings", 32768}, {"num_attention_heads", 14}, {"num_hidden_layers", 24},
        {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0},
        {"tie_word_embeddings", false}, {"use_sliding_window", false}, {"vocab_size", 151679}}}};
}

void copy_tokenizer(const fs::path& from, const fs::path& to) {
  if (!fs::is_directory(from)) throw InferenceError("tokenizer folder " + from.string() + " does not exist");
  bool any = false;
  for (const char* name : {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "added_tokens.json",
                           "special_tokens_map.json"}) {
    if (!fs::exists(from / name)) continue;
    std::error_code ec;
    fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing, ec);
    if (ec) throw InferenceError("cannot copy " + (from / name).string() + " to " + to.string() + ": " + ec.message());
    any = true;
  }
  if (!any)
    throw InferenceError("tokenizer folder " + from.string() +
                         " has none of vocab.json, merges.txt, tokenizer.json, tokenizer_config.json");
}

// The --answer fixture. With every decoder layer's o_proj and down_proj at zero, attention and
// MLP add nothing to the residual stream, so the final hidden state at a position is
// RMSNorm(embedding of that position's input token) whatever came before (images included). The
// tokens of the chain "last prompt token, answer..., end token" get orthogonal embeddings (the
// k-th gets the k-th unit vector, scaled) and the final norm weight 1, so their normalised
// hidden states are sqrt(H) times unit vectors; the lm_head row of the k+1-th token is the k-th
// unit vector and every other row zero. Greedy decoding then walks the chain: at chain token k
// the next token's logit is sqrt(H) and every other logit 0.
void make_answer_fixed(const fs::path& dir, const ModelConfig& config, const nlohmann::json& header,
                       uint64_t data_start, DType dtype, const std::string& answer) {
  const Tokenizer tokenizer = Tokenizer::load(dir);
  const auto template_tail = tokenizer.encode("<|end|>\n<|assistant|>\n");  // phi3_chat's prompt end
  std::vector<int64_t> chain = {template_tail.back()};
  for (int64_t id : tokenizer.encode(answer)) chain.push_back(id);
  const auto end = tokenizer.eos_token_id();
  chain.push_back(end ? *end : tokenizer.token_id("<|im_end|>"));
  const auto& llm = config.llm;
  const int64_t H = llm.hidden_size;
  if (llm.tie_word_embeddings) throw InferenceError("make-random --answer: needs an untied lm_head");
  if (static_cast<int64_t>(chain.size()) > H)
    throw InferenceError("make-random --answer: the answer has more tokens than the hidden size (" + std::to_string(H) + ")");
  for (size_t i = 0; i < chain.size(); ++i)
    for (size_t j = i + 1; j < chain.size(); ++j)
      if (chain[i] == chain[j])
        throw InferenceError("make-random --answer: token " + std::to_string(chain[i]) + " (\"" +
                             tokenizer.decode({chain[i]}) +
                             "\") occurs twice in the prompt end + answer + end token; choose a text whose tokens all differ");

  std::fstream file(dir / "model.safetensors", std::ios::binary | std::ios::in | std::ios::out);
  if (!file) throw InferenceError("cannot reopen " + (dir / "model.safetensors").string());
  const size_t elem = dtype_size(dtype);
  auto write_value = [&](const std::string& name, int64_t index, float v) {
    const auto& entry = header.at(name);
    const uint64_t at = data_start + entry.at("data_offsets").at(0).get<uint64_t>() + static_cast<uint64_t>(index) * elem;
    uint8_t bytes[4];
    store_value(v, dtype, bytes);
    file.seekp(static_cast<std::streamoff>(at));
    file.write(reinterpret_cast<const char*>(bytes), static_cast<std::streamsize>(elem));
  };
  auto fill = [&](const std::string& name, float v) {
    int64_t n = 1;
    for (const auto& d : header.at(name).at("shape")) n *= d.get<int64_t>();
    std::vector<uint8_t> bytes(static_cast<size_t>(n) * elem);
    for (int64_t i = 0; i < n; ++i) {
      uint8_t* p = bytes.data() + static_cast<size_t>(i) * elem;
      store_value(v, dtype, p);
    }
    file.seekp(static_cast<std::streamoff>(data_start + header.at(name).at("data_offsets").at(0).get<uint64_t>()));
    file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  };
  const std::string m = "language_model.model.";
  for (int i = 0; i < llm.num_hidden_layers; ++i) {
    const std::string layer = m + "layers." + std::to_string(i) + ".";
    fill(layer + "self_attn.o_proj.weight", 0.0f);
    fill(layer + "mlp.down_proj.weight", 0.0f);
  }
  fill(m + "norm.weight", 1.0f);
  fill("language_model.lm_head.weight", 0.0f);
  for (size_t k = 0; k < chain.size(); ++k)
    for (int64_t c = 0; c < H; ++c)
      write_value(m + "embed_tokens.weight", chain[k] * H + c, c == static_cast<int64_t>(k) ? 0.05f : 0.0f);
  for (size_t k = 0; k + 1 < chain.size(); ++k)
    write_value("language_model.lm_head.weight", chain[k + 1] * H + static_cast<int64_t>(k), 1.0f);
  // Masks that are never empty: every mask token's hypernetwork output is all ones, so a mask
  // logit is the sum over channels of the upscaled image embedding (after GELU, mostly positive)
  // instead of a random projection of it that may be negative everywhere on plain images.
  const std::string md = kSam + "sam_mask_decoder.output_hypernetworks_mlps.";
  for (int i = 0; i <= config.grounding.num_multimask_outputs; ++i) {
    fill(md + std::to_string(i) + ".layers.2.weight", 0.0f);
    fill(md + std::to_string(i) + ".layers.2.bias", 1.0f);
  }
  file.flush();
  if (!file) throw InferenceError("cannot write " + (dir / "model.safetensors").string() + " (disk full?)");
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<std::string> video_only_prefixes() {
  return {kSam + "memory_attention.",   kSam + "memory_encoder.",  kSam + "obj_ptr_proj.",
          kSam + "mask_downsample.",    kSam + "maskmem_tpos_enc", kSam + "no_mem_pos_enc",
          kSam + "no_obj_ptr",          kSam + "sam_prompt_encoder.mask_downscaling.",
          kSam + "sam_prompt_encoder.point_embeddings."};
}

std::vector<TensorSpec> checkpoint_layout(const ModelConfig& config, const Sam2MemoryConfig& memory) {
  Layout l;
  vision_layout(l, config);
  llm_layout(l, config.llm);
  l.linear("text_hidden_fcs.0", config.llm.hidden_size, config.llm.hidden_size);
  l.linear("text_hidden_fcs.2", config.grounding.neck.d_model, config.llm.hidden_size);
  sam2_layout(l, config.grounding, memory);
  return l.take();
}

std::string random_config_json(const std::string& kind) {
  if (kind == "tiny") return tiny_config().dump(2);
  if (kind == "real") return real_config().dump(2);
  throw InferenceError("model kind \"" + kind + "\" is not known (tiny or real)");
}

Sam2MemoryConfig memory_config_for(const std::string& kind) {
  Sam2MemoryConfig m;
  if (kind == "tiny") {
    m.d_model = 32;
    m.kv_in_dim = 16;
    m.dim_feedforward = 64;
    m.num_layers = 2;
    m.out_dim = 16;
  } else if (kind != "real") {
    throw InferenceError("model kind \"" + kind + "\" is not known (tiny or real)");
  }
  return m;
}

RandomCheckpointSummary write_random_checkpoint(const fs::path& dir, const RandomCheckpointOptions& options) {
  const std::string config_text = random_config_json(options.kind);
  const ModelConfig config = ModelConfig::parse(config_text, "generated " + options.kind + " config.json");
  const DType dtype = options.dtype.value_or(options.kind == "real" ? DType::BF16 : DType::F32);
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw InferenceError(std::string("make-random: dtype ") + dtype_name(dtype) + " is not a weight dtype (F32, BF16, F16)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw InferenceError("cannot create the folder " + dir.string());

  {
    std::ofstream out(dir / "config.json");
    out << config_text << "\n";
    if (!out) throw InferenceError("cannot write " + (dir / "config.json").string());
  }

  // model.safetensors, streamed: header first, then each tensor generated and written in turn.
  const std::vector<TensorSpec> layout = checkpoint_layout(config, memory_config_for(options.kind));
  const size_t elem = dtype_size(dtype);
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  RandomCheckpointSummary summary;
  for (const auto& t : layout) {
    const uint64_t n = static_cast<uint64_t>(t.numel()) * elem;
    header[t.name] = {{"dtype", dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    summary.parameters += t.numel();
  }
  header["__metadata__"] = {{"format", "pt"},
                            {"generator", "unibiomed model make-random"},
                            {"kind", options.kind},
                            {"seed", std::to_string(options.seed)}};
  std::string text = header.dump();
  while ((8 + text.size()) % 8) text += ' ';  // data block 8-byte aligned, as the reference writer pads
  const fs::path model_path = dir / "model.safetensors";
  const fs::path tmp_path = dir / "model.safetensors.partial";
  {
    std::ofstream out(tmp_path, std::ios::binary | std::ios::trunc);
    if (!out) throw InferenceError("cannot write " + tmp_path.string());
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    std::vector<uint8_t> buffer;
    constexpr int64_t kChunk = int64_t{1} << 20;
    for (const auto& t : layout) {
      const Init init = init_for(t);
      SplitMix64 rng{name_seed(options.seed, t.name)};
      for (int64_t done = 0, n = t.numel(); done < n; done += kChunk) {
        const int64_t count = std::min(kChunk, n - done);
        buffer.resize(static_cast<size_t>(count) * elem);
        for (int64_t i = 0; i < count; ++i) {
          // Uniform in [center - w, center + w): 24 random bits.
          const double u = static_cast<double>(rng.next() >> 40) * (1.0 / 16777216.0);
          const auto v = static_cast<float>(init.center + init.half_width * (2.0 * u - 1.0));
          uint8_t* p = buffer.data() + static_cast<size_t>(i) * elem;
          store_value(v, dtype, p);
        }
        out.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
      }
      ++summary.tensors;
    }
    out.flush();
    if (!out) throw InferenceError("cannot write " + tmp_path.string() + " (disk full?)");
  }
  fs::rename(tmp_path, model_path, ec);
  if (ec) throw InferenceError("cannot rename " + tmp_path.string() + " to " + model_path.string() + ": " + ec.message());
  summary.bytes = fs::file_size(model_path);
  // A stale hash cache of an earlier checkpoint in this folder must not survive.
  fs::remove(dir / "unibiomed-weights-hash.json", ec);

  if (options.tokenizer_dir) {
    copy_tokenizer(*options.tokenizer_dir, dir);
  } else {
    std::map<std::string, int64_t> added;
    if (options.kind == "tiny")
      for (size_t i = 0; i < std::size(kTinySpecials); ++i) added[kTinySpecials[i]] = 256 + static_cast<int64_t>(i);
    else
      for (const auto& [token, id] : kRealAddedTokens) added[token] = id;
    write_byte_level_tokenizer(dir, added);
  }
  if (options.fixed_answer)
    make_answer_fixed(dir, config, header, 8 + text.size(), dtype, *options.fixed_answer);
  return summary;
}

}  // namespace unibiomed::inference
