// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/model_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "inference/error.h"

namespace unibiomed::inference {

using nlohmann::json;

namespace {

class Reader {
 public:
  Reader(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  template <typename T>
  void get(const char* key, T& out) const {
    if (!obj_.contains(key) || obj_[key].is_null()) return;  // keep the default
    try {
      out = obj_[key].get<T>();
    } catch (const json::exception&) {
      throw InferenceError(where_ + ": key \"" + key + "\" has the wrong type: " + obj_[key].dump());
    }
  }
  const json* child(const char* key) const {
    if (!obj_.contains(key) || obj_[key].is_null()) return nullptr;
    if (!obj_[key].is_object()) throw InferenceError(where_ + ": \"" + key + "\" must be an object");
    return &obj_[key];
  }
  void positive(const char* key, long v) const {
    if (v <= 0) throw InferenceError(where_ + ": \"" + key + "\" must be positive, got " + std::to_string(v));
  }
  const std::string& where() const { return where_; }

 private:
  const json& obj_;
  std::string where_;
};

void read_vision(const Reader& r, VisionConfig& v) {
  r.get("hidden_size", v.hidden_size);
  r.get("intermediate_size", v.intermediate_size);
  r.get("num_attention_heads", v.num_attention_heads);
  r.get("num_hidden_layers", v.num_hidden_layers);
  r.get("patch_size", v.patch_size);
  r.get("image_size", v.image_size);
  r.get("num_channels", v.num_channels);
  r.get("layer_norm_eps", v.layer_norm_eps);
  r.get("qkv_bias", v.qkv_bias);
  r.get("qk_normalization", v.qk_normalization);
  r.get("norm_type", v.norm_type);
  r.get("hidden_act", v.hidden_act);
  r.positive("vision_config.hidden_size", v.hidden_size);
  r.positive("vision_config.num_attention_heads", v.num_attention_heads);
  r.positive("vision_config.patch_size", v.patch_size);
  if (v.hidden_size % v.num_attention_heads)
    throw InferenceError(r.where() + ": vision hidden_size " + std::to_string(v.hidden_size) +
                         " is not divisible by num_attention_heads " + std::to_string(v.num_attention_heads));
  if (v.qk_normalization) throw InferenceError(r.where() + ": vision qk_normalization=true is not supported");
  if (v.norm_type != "layer_norm")
    throw InferenceError(r.where() + ": vision norm_type \"" + v.norm_type + "\" is not supported (layer_norm)");
}

void read_llm(const Reader& r, LlmConfig& l) {
  r.get("hidden_size", l.hidden_size);
  r.get("intermediate_size", l.intermediate_size);
  r.get("num_attention_heads", l.num_attention_heads);
  r.get("num_key_value_heads", l.num_key_value_heads);
  r.get("num_hidden_layers", l.num_hidden_layers);
  r.get("vocab_size", l.vocab_size);
  r.get("max_position_embeddings", l.max_position_embeddings);
  r.get("rms_norm_eps", l.rms_norm_eps);
  r.get("rope_theta", l.rope_theta);
  r.get("tie_word_embeddings", l.tie_word_embeddings);
  r.get("bos_token_id", l.bos_token_id);
  r.get("eos_token_id", l.eos_token_id);
  r.get("hidden_act", l.hidden_act);
  r.positive("llm_config.hidden_size", l.hidden_size);
  r.positive("llm_config.num_attention_heads", l.num_attention_heads);
  r.positive("llm_config.num_key_value_heads", l.num_key_value_heads);
  r.positive("llm_config.vocab_size", static_cast<long>(l.vocab_size));
  if (l.hidden_size % l.num_attention_heads || l.num_attention_heads % l.num_key_value_heads)
    throw InferenceError(r.where() + ": llm heads do not divide: hidden " + std::to_string(l.hidden_size) + ", heads " +
                         std::to_string(l.num_attention_heads) + ", kv heads " + std::to_string(l.num_key_value_heads));
  if (l.hidden_act != "silu") throw InferenceError(r.where() + ": llm hidden_act \"" + l.hidden_act + "\" is not supported");
}

void read_grounding(const Reader& r, GroundingConfig& g) {
  g.from_checkpoint_config = true;
  r.get("image_size", g.image_size);
  r.get("scalp", g.scalp);
  if (const json* h = r.child("hiera")) {
    Reader hr(*h, r.where() + " grounding_encoder_config.hiera");
    auto& c = g.hiera;
    hr.get("embed_dim", c.embed_dim);
    hr.get("num_heads", c.num_heads);
    hr.get("stages", c.stages);
    hr.get("global_att_blocks", c.global_att_blocks);
    hr.get("window_pos_embed_bkg_spatial_size", c.window_pos_embed_bkg_spatial_size);
    hr.get("window_spec", c.window_spec);
    hr.get("q_pool", c.q_pool);
    hr.get("q_stride", c.q_stride);
    hr.get("dim_mul", c.dim_mul);
    hr.get("head_mul", c.head_mul);
    hr.get("patch_kernel_size", c.patch_kernel_size);
    hr.get("patch_stride", c.patch_stride);
    hr.get("patch_padding", c.patch_padding);
    hr.get("mlp_ratio", c.mlp_ratio);
    hr.get("norm_eps", c.norm_eps);
    if (c.stages.size() != c.window_spec.size() || c.stages.empty())
      throw InferenceError(hr.where() + ": stages and window_spec must have the same non-zero length");
  }
  if (const json* n = r.child("neck")) {
    Reader nr(*n, r.where() + " grounding_encoder_config.neck");
    nr.get("d_model", g.neck.d_model);
    nr.get("backbone_channel_list", g.neck.backbone_channel_list);
    nr.get("fpn_top_down_levels", g.neck.fpn_top_down_levels);
    nr.get("fpn_interp_model", g.neck.fpn_interp_model);
    nr.get("kernel_size", g.neck.kernel_size);
  }
  if (const json* hc = r.child("hardcoded_in_official_code")) {
    Reader cr(*hc, r.where() + " grounding_encoder_config.hardcoded_in_official_code");
    cr.get("mask_decoder_transformer_depth", g.decoder_depth);
    cr.get("mask_decoder_num_heads", g.decoder_num_heads);
    cr.get("mask_decoder_mlp_dim", g.decoder_mlp_dim);
    cr.get("attention_downsample_rate", g.attention_downsample_rate);
    cr.get("iou_head_depth", g.iou_head_depth);
    cr.get("iou_head_hidden_dim", g.iou_head_hidden_dim);
    cr.get("num_multimask_outputs", g.num_multimask_outputs);
    cr.get("prompt_encoder_mask_in_chans", g.mask_in_chans);
    cr.get("backbone_stride", g.backbone_stride);
  }
  r.positive("grounding_encoder_config.image_size", g.image_size);
}

}  // namespace

int ModelConfig::tokens_per_tile() const {
  const int grid = tile_size / vision.patch_size;
  const int side = static_cast<int>(std::lround(grid * downsample_ratio));
  return side * side;
}

ModelConfig ModelConfig::load(const std::filesystem::path& config_json) {
  std::ifstream in(config_json);
  if (!in) throw InferenceError("model config " + config_json.string() + ": cannot open");
  std::stringstream buf;
  buf << in.rdbuf();
  return parse(buf.str(), config_json.string());
}

ModelConfig ModelConfig::parse(const std::string& json_text, const std::string& origin) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw InferenceError("model config " + origin + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw InferenceError("model config " + origin + ": not a JSON object");
  const std::string where = "model config " + origin;
  Reader r(root, where);
  ModelConfig c;
  r.get("model_type", c.model_type);
  if (c.model_type != "sa2va_chat")
    throw InferenceError(where + ": model_type \"" + c.model_type + "\" is not a UniBiomed (sa2va_chat) model");
  r.get("template", c.template_name);
  r.get("downsample_ratio", c.downsample_ratio);
  r.get("ps_version", c.ps_version);
  r.get("select_layer", c.select_layer);
  r.get("force_image_size", c.force_image_size);
  r.get("dynamic_image_size", c.dynamic_image_size);
  r.get("use_thumbnail", c.use_thumbnail);
  r.get("min_dynamic_patch", c.min_dynamic_patch);
  r.get("max_dynamic_patch", c.max_dynamic_patch);
  r.get("torch_dtype", c.torch_dtype);
  if (c.template_name != "phi3_chat")
    throw InferenceError(where + ": template \"" + c.template_name + "\" is not supported (phi3_chat)");
  if (c.ps_version != "v2") throw InferenceError(where + ": ps_version \"" + c.ps_version + "\" is not supported (v2)");
  if (c.downsample_ratio != 0.5)
    throw InferenceError(where + ": downsample_ratio " + std::to_string(c.downsample_ratio) + " is not supported (0.5)");
  if (c.select_layer != -1)
    throw InferenceError(where + ": select_layer " + std::to_string(c.select_layer) + " is not supported (-1)");

  const json* vision = r.child("vision_config");
  const json* llm = r.child("llm_config");
  if (!vision) throw InferenceError(where + ": missing \"vision_config\"");
  if (!llm) throw InferenceError(where + ": missing \"llm_config\"");
  read_vision(Reader(*vision, where + " vision_config"), c.vision);
  read_llm(Reader(*llm, where + " llm_config"), c.llm);
  if (const json* g = r.child("grounding_encoder_config")) read_grounding(Reader(*g, where), c.grounding);

  c.tile_size = c.vision.image_size;
  c.sam_image_size = c.grounding.image_size;
  if (const json* t = r.child("tiny_test")) {
    Reader tr(*t, where + " tiny_test");
    tr.get("internvl_tile_size", c.tile_size);
    tr.get("sam_target_length", c.sam_image_size);
    tr.get("min_dynamic_patch_used_by_predict_forward", c.min_tiles);
    tr.get("max_dynamic_patch_used_by_predict_forward", c.max_tiles);
    tr.get("use_thumbnail", c.use_thumbnail);
    tr.get("special_token_ids", c.special_token_ids);
    tr.get("eos_token_id", c.llm.eos_token_id);
  }
  if (c.tile_size % c.vision.patch_size)
    throw InferenceError(where + ": tile size " + std::to_string(c.tile_size) + " is not a multiple of patch_size " +
                         std::to_string(c.vision.patch_size));
  if (c.min_tiles < 1 || c.max_tiles < c.min_tiles)
    throw InferenceError(where + ": bad tile range " + std::to_string(c.min_tiles) + ".." + std::to_string(c.max_tiles));
  return c;
}

}  // namespace unibiomed::inference
