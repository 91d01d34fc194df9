// The one description of a UniBiomed checkpoint's tensors: their names (as the released
// checkpoint spells them: InternVL's vision_model and mlp1, Qwen2ForCausalLM under
// language_model, text_hidden_fcs, SAM2 under grounding_encoder.sam2_model) and, for a config,
// every tensor with its shape and the block it belongs to.
//
// The loaders (inference/), the training forward (training/), `unibiomed model make-random` and
// `model info`, and the benchmarks read names from here, never spelling them themselves:
//   layout::vision_layer(3).attn_qkv.weight  ->  "vision_model.encoder.layers.3.attn.qkv.weight"
// checkpoint_layout() enumerates the whole table with the same builders, so a name the code
// reads is a name of the table (tests/inference/core_checkpoint_layout_test.cpp checks the table
// against the reference checkpoint's own header). No libtorch here.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "inference/model_config.h"

namespace unibiomed::inference {

// SAM2 parts used only for video propagation (sam2.py build_memory_attention /
// build_memory_encoder); their sizes are needed to describe a complete checkpoint.
struct Sam2MemoryConfig {
  int d_model = 256;          // memory attention width (= neck d_model)
  int kv_in_dim = 64;         // memory features width
  int dim_feedforward = 2048;
  int num_layers = 4;
  int out_dim = 64;           // memory encoder output (mem_dim)
  int num_maskmem = 7;
};

// The memory sizes of a config.json: "grounding_encoder_config" {"memory_attention": {d_model,
// kv_in_dim, dim_feedforward, num_layers}, "memory_encoder": {out_dim}} where present (the small
// reference checkpoints), the released sizes otherwise. Throws InferenceError naming `origin`
// when the text is not JSON.
Sam2MemoryConfig memory_config_from_json(const std::string& config_json_text, const std::string& origin = "config.json");

// The parts of the model, as `unibiomed model info` reports them.
enum class CheckpointBlock {
  kVision,        // vision_model.*: InternViT
  kProjector,     // mlp1.*: pixel-shuffled image tokens to the language model's width
  kLanguage,      // language_model.*: Qwen2
  kSegHead,       // text_hidden_fcs.*: [SEG] hidden state to a SAM2 prompt
  kSam2,          // grounding_encoder.*: what the 2D path reads (image encoder, prompt encoder, mask decoder)
  kSam2VideoOnly  // grounding_encoder.*: memory attention/encoder, object pointers, mask/point prompts
};
const char* block_name(CheckpointBlock block);  // e.g. "language model (Qwen2)"
// The block of any tensor name by its prefix; nullopt for a name outside every block.
std::optional<CheckpointBlock> block_of(const std::string& name);

// Prefixes of the tensors the 2D (single image) path never reads: the memory attention and
// encoder, object pointers and the mask/point prompt inputs that a language prompt replaces.
std::vector<std::string> video_only_prefixes();

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  CheckpointBlock block = CheckpointBlock::kVision;
  int64_t numel() const;
};

// Every tensor of a UniBiomed checkpoint with these sizes, sorted by name.
std::vector<TensorSpec> checkpoint_layout(const ModelConfig& config, const Sam2MemoryConfig& memory);

// Name builders. Each returns the full tensor names of one module of the checkpoint.
namespace layout {

// A module with a weight and a bias (Linear, Conv2d, LayerNorm): "<prefix>.weight", "<prefix>.bias".
struct Module {
  std::string weight, bias;
};

// A SAM2 MLP (sam2.py MLP): Linear layers "<prefix>.layers.<i>".
struct Mlp {
  std::string prefix;
  Module layer(int i) const;
};

// InternViT (modeling_intern_vit.py).
struct VisionEmbeddings {
  std::string class_embedding;     // [1, 1, C]
  Module patch_embedding;          // Conv2d(3, C, patch, stride patch)
  std::string position_embedding;  // [1, 1 + grid^2, C]
};
VisionEmbeddings vision_embeddings();

struct VisionLayer {
  Module norm1, attn_qkv, attn_proj, norm2, mlp_fc1, mlp_fc2;  // attn_qkv.bias only with qkv_bias
  std::string ls1, ls2;                                        // layer scales [C]
};
VisionLayer vision_layer(int i);

// mlp1 (modeling_sa2va_chat.py): LayerNorm, Linear, GELU, Linear.
struct Projector {
  Module norm, fc1, fc2;  // mlp1.0, mlp1.1, mlp1.3
};
Projector projector();

// Qwen2ForCausalLM.
struct LanguageModel {
  std::string embed_tokens_weight, norm_weight, lm_head_weight;  // lm_head only when untied
};
LanguageModel language_model();

struct LanguageLayer {
  std::string input_layernorm_weight, post_attention_layernorm_weight;
  Module q_proj, k_proj, v_proj;  // with biases
  std::string o_proj_weight, gate_proj_weight, up_proj_weight, down_proj_weight;
};
LanguageLayer language_layer(int i);

// text_hidden_fcs: Linear(H, H), ReLU, Linear(H, D).
struct SegHead {
  Module fc1, fc2;  // text_hidden_fcs.0, text_hidden_fcs.2
};
SegHead seg_head();

// SAM2 image encoder: Hiera trunk and FPN neck (sam2.py, hieradet.py, image_encoder.py).
struct HieraTrunk {
  Module patch_embed;  // Conv2d(3, embed_dim, kernel, stride)
  std::string pos_embed, pos_embed_window;
};
HieraTrunk hiera_trunk();

struct HieraBlock {
  Module norm1, attn_qkv, attn_proj, norm2, mlp_fc1, mlp_fc2;  // mlp.layers.0 / .1
  Module proj;  // only in a stage's first block, where the width changes
};
HieraBlock hiera_block(int i);

Module neck_conv(int level);  // image_encoder.neck.convs.<level>.conv, level 0 the widest
std::string no_mem_embed();   // added to the image embedding of a frame without memory

// SAM2 prompt encoder, as the language prompt uses it.
struct PromptEncoder {
  std::string not_a_point_embed_weight, no_mask_embed_weight, positional_encoding_gaussian_matrix;
};
PromptEncoder prompt_encoder();

// SAM2 mask decoder (sam2.py MaskDecoder, TwoWayTransformer).
struct Attention {
  Module q_proj, k_proj, v_proj, out_proj;
};
struct TwoWayLayer {
  Attention self_attn, cross_attn_token_to_image, cross_attn_image_to_token;
  Mlp mlp;
  std::array<Module, 4> norms;  // norm1 .. norm4
};
struct MaskDecoder {
  std::string prefix;
  Module conv_s0, conv_s1;  // high-resolution feature projections (read by the image encoder)
  std::string iou_token_weight, mask_tokens_weight, obj_score_token_weight;
  Attention final_attn_token_to_image;
  Module norm_final_attn;
  Module upscaling_conv0, upscaling_norm, upscaling_conv1;  // output_upscaling.0 / .1 / .3
  Mlp iou_prediction_head, pred_obj_score_head;
  TwoWayLayer layer(int i) const;          // transformer.layers.<i>
  Mlp output_hypernetwork(int mask) const;  // output_hypernetworks_mlps.<mask>
};
MaskDecoder mask_decoder();

// SAM2 memory attention (sam2.py MemoryAttention, MemoryAttentionLayer with RoPEAttention):
// video propagation only.
struct MemoryAttentionLayer {
  Attention self_attn, cross_attn_image;  // cross_attn_image k/v read memory features (kv_in_dim)
  Module linear1, linear2;                // the feed-forward block
  Module norm1, norm2, norm3;
};
MemoryAttentionLayer memory_attention_layer(int i);  // memory_attention.layers.<i>
Module memory_attention_norm();                      // memory_attention.norm

// SAM2 memory encoder (sam2.py MemoryEncoder: MaskDownSampler, Fuser of CXBlocks).
struct MemoryFuserLayer {
  Module dwconv, norm, pwconv1, pwconv2;
  std::string g_weight;  // the CXBlock layer scale (gamma)
};
struct MemoryEncoder {
  std::string prefix;
  static constexpr int kDownsamplerStages = 4;  // 4 x (conv 3x3 stride 2, LayerNorm2d, GELU): stride 16
  Module downsampler_conv(int stage) const;     // stage 0..3; stage 4 = the final 1x1 conv
  Module downsampler_norm(int stage) const;     // stage 0..3
  Module pix_feat_proj, out_proj;
  MemoryFuserLayer fuser_layer(int i) const;    // fuser.layers.<i>
};
MemoryEncoder memory_encoder();

std::string maskmem_tpos_enc();  // [num_maskmem, 1, 1, mem_dim] temporal encodings of memory frames
std::string no_obj_ptr();        // [1, D] pointer of a frame where the object is absent
Mlp obj_ptr_proj();              // D -> D -> D -> D, the object pointer from a mask token

}  // namespace layout

}  // namespace unibiomed::inference
