// The checkpoint layout table (inference/checkpoint_layout.h) against independent references:
// the reference checkpoint's own header (tests/reference model.safetensors, written by the
// original code) and published parameter counts (MODEL.md; Qwen2.5-0.5B's model card). Also
// that the name builders the loaders read name exactly the table's tensors of the 2D path.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "inference/checkpoint_layout.h"
#include "inference/error.h"
#include "inference/model_config.h"
#include "inference/random_checkpoint.h"
#include "inference/safetensors_file.h"
#include "tests/support/test_support.h"

namespace unibiomed::inference {
namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Every name the loaders of the 2D path read (vision encoder, projector, Qwen2, [SEG] head, SAM2
// image encoder, prompt and mask decoders), built as they build them.
std::set<std::string> names_read_by_the_2d_path(const ModelConfig& c) {
  std::set<std::string> n;
  auto module = [&](const layout::Module& m, bool bias = true) {
    n.insert(m.weight);
    if (bias) n.insert(m.bias);
  };
  auto mlp = [&](const layout::Mlp& m, int layers) {
    for (int i = 0; i < layers; ++i) module(m.layer(i));
  };
  auto attention = [&](const layout::Attention& a) {
    for (const auto* m : {&a.q_proj, &a.k_proj, &a.v_proj, &a.out_proj}) module(*m);
  };
  const auto e = layout::vision_embeddings();
  n.insert({e.class_embedding, e.position_embedding});
  module(e.patch_embedding);
  for (int i = 0; i < c.vision.num_hidden_layers; ++i) {
    const auto l = layout::vision_layer(i);
    for (const auto* m : {&l.norm1, &l.attn_proj, &l.norm2, &l.mlp_fc1, &l.mlp_fc2}) module(*m);
    module(l.attn_qkv, c.vision.qkv_bias);
    n.insert({l.ls1, l.ls2});
  }
  const auto p = layout::projector();
  for (const auto* m : {&p.norm, &p.fc1, &p.fc2}) module(*m);

  const auto lm = layout::language_model();
  n.insert({lm.embed_tokens_weight, lm.norm_weight});
  if (!c.llm.tie_word_embeddings) n.insert(lm.lm_head_weight);
  for (int i = 0; i < c.llm.num_hidden_layers; ++i) {
    const auto l = layout::language_layer(i);
    n.insert({l.input_layernorm_weight, l.post_attention_layernorm_weight, l.o_proj_weight, l.gate_proj_weight,
              l.up_proj_weight, l.down_proj_weight});
    for (const auto* m : {&l.q_proj, &l.k_proj, &l.v_proj}) module(*m);
  }
  const auto s = layout::seg_head();
  module(s.fc1);
  module(s.fc2);

  const auto t = layout::hiera_trunk();
  module(t.patch_embed);
  n.insert({t.pos_embed, t.pos_embed_window});
  int blocks = 0;
  std::set<int> stage_starts;
  for (size_t s = 0; s < c.grounding.hiera.stages.size(); ++s) {
    if (s > 0) stage_starts.insert(blocks);
    blocks += c.grounding.hiera.stages[s];
  }
  for (int i = 0; i < blocks; ++i) {
    const auto b = layout::hiera_block(i);
    for (const auto* m : {&b.norm1, &b.attn_qkv, &b.attn_proj, &b.norm2, &b.mlp_fc1, &b.mlp_fc2}) module(*m);
    if (stage_starts.count(i)) module(b.proj);
  }
  for (size_t k = 0; k < c.grounding.neck.backbone_channel_list.size(); ++k) module(layout::neck_conv(static_cast<int>(k)));
  n.insert(layout::no_mem_embed());
  const auto pe = layout::prompt_encoder();
  n.insert({pe.not_a_point_embed_weight, pe.no_mask_embed_weight, pe.positional_encoding_gaussian_matrix});
  const auto md = layout::mask_decoder();
  for (const auto* m : {&md.conv_s0, &md.conv_s1, &md.norm_final_attn, &md.upscaling_conv0, &md.upscaling_norm,
                        &md.upscaling_conv1})
    module(*m);
  n.insert({md.iou_token_weight, md.mask_tokens_weight, md.obj_score_token_weight});
  attention(md.final_attn_token_to_image);
  mlp(md.iou_prediction_head, c.grounding.iou_head_depth);
  mlp(md.pred_obj_score_head, 3);
  for (int i = 0; i <= c.grounding.num_multimask_outputs; ++i) mlp(md.output_hypernetwork(i), 3);
  for (int i = 0; i < c.grounding.decoder_depth; ++i) {
    const auto l = md.layer(i);
    attention(l.self_attn);
    attention(l.cross_attn_token_to_image);
    attention(l.cross_attn_image_to_token);
    mlp(l.mlp, 2);
    for (const auto& m : l.norms) module(m);
  }
  return n;
}

TEST(CheckpointLayout, TinyTableIsTheReferenceCheckpointsHeader) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const auto config_json = test::reference_dir() / "config.json";
  const auto config = ModelConfig::load(config_json);
  const auto memory = memory_config_from_json(test::read_file(config_json), config_json.string());
  const auto table = checkpoint_layout(config, memory);
  const SafetensorsFile reference(test::reference_dir() / "model.safetensors");
  // Every tensor of the table is in the file with its shape...
  std::set<std::string> in_table;
  for (const auto& t : table) {
    EXPECT_TRUE(in_table.insert(t.name).second) << t.name << " is in the table twice";
    auto it = reference.tensors().find(t.name);
    if (it == reference.tensors().end()) {
      ADD_FAILURE() << t.name << " " << shape_str(t.shape) << " is not in the reference checkpoint";
      continue;
    }
    EXPECT_EQ(shape_str(it->second.shape), shape_str(t.shape)) << t.name;
  }
  // ... and every tensor of the file is in the table.
  for (const auto& [name, view] : reference.tensors())
    EXPECT_TRUE(in_table.count(name)) << name << " " << view.shape_string() << " is not in the table";
  EXPECT_EQ(table.size(), reference.tensors().size());
  // manifest.json's count of the tensors in model.safetensors.
  EXPECT_EQ(table.size(), nlohmann::json::parse(test::read_file(
                              test::reference_dir() / "manifest.json"))["files"]["model.safetensors"]["n_tensors"]
                              .get<size_t>());

  // The generated tiny config.json (make-random) describes the same model.
  const auto generated = ModelConfig::parse(random_config_json("tiny"), "generated");
  const auto again = checkpoint_layout(generated, memory_config_for("tiny"));
  ASSERT_EQ(again.size(), table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(again[i].name, table[i].name);
    EXPECT_EQ(again[i].shape, table[i].shape);
  }
  EXPECT_EQ(generated.special_token_ids, config.special_token_ids);
  EXPECT_EQ(generated.tile_size, config.tile_size);
  EXPECT_EQ(generated.sam_image_size, config.sam_image_size);
}

TEST(CheckpointLayout, RealTableHasThePublishedSizes) {
  const auto config = ModelConfig::parse(random_config_json("real"), "generated");
  EXPECT_FALSE(config.grounding.from_checkpoint_config);  // Hiera-L constants
  std::map<CheckpointBlock, int64_t> parts;
  int64_t total = 0;
  for (const auto& t : checkpoint_layout(config, memory_config_for("real"))) {
    parts[t.block] += t.numel();
    total += t.numel();
  }
  // Qwen2.5-0.5B: 494,032,768 parameters with tied embeddings of 151,936 rows; UniBiomed unties
  // lm_head and resizes the vocabulary to 151,679.
  EXPECT_EQ(parts[CheckpointBlock::kLanguage], 494'032'768 - 151'936LL * 896 + 2 * 151'679LL * 896);
  // MODEL.md: InternViT-300M 304 M, mlp1 4.5 M, text_hidden_fcs 1 M, SAM2 Hiera-L 224 M
  // (the SAM2.0 release counts 224.4 M), about 1.16 B in all.
  EXPECT_NEAR(parts[CheckpointBlock::kVision] / 1e6, 304.0, 1.0);
  EXPECT_NEAR(parts[CheckpointBlock::kProjector] / 1e6, 4.5, 0.3);
  EXPECT_NEAR(parts[CheckpointBlock::kSegHead] / 1e6, 1.0, 0.1);
  EXPECT_NEAR((parts[CheckpointBlock::kSam2] + parts[CheckpointBlock::kSam2VideoOnly]) / 1e6, 224.4, 0.5);
  EXPECT_NEAR(total / 1e9, 1.16, 0.01);
}

TEST(CheckpointLayout, EachTensorsBlockIsTheBlockOfItsName) {
  for (const std::string kind : {"tiny", "real"}) {
    const auto config = ModelConfig::parse(random_config_json(kind), kind);
    std::map<CheckpointBlock, int> count;
    for (const auto& t : checkpoint_layout(config, memory_config_for(kind))) {
      const auto block = block_of(t.name);
      ASSERT_TRUE(block.has_value()) << t.name;
      EXPECT_EQ(block_name(*block), std::string(block_name(t.block))) << t.name;
      bool video = false;
      for (const auto& p : video_only_prefixes()) video = video || t.name.rfind(p, 0) == 0;
      EXPECT_EQ(video, t.block == CheckpointBlock::kSam2VideoOnly) << t.name;
      ++count[t.block];
    }
    EXPECT_EQ(count.size(), 6u) << kind << ": every block has tensors";
  }
  EXPECT_FALSE(block_of("visual.proj.weight").has_value());
  EXPECT_FALSE(block_of("").has_value());
  EXPECT_EQ(block_of("language_model.anything"), CheckpointBlock::kLanguage);
}

TEST(CheckpointLayout, TheNameBuildersNameTheTablesTensorsOfThe2dPath) {
  // The reference sizes and the released ones (untied lm_head, 24 InternViT layers, Hiera-L).
  for (const std::string kind : {"tiny", "real"}) {
    const auto config = ModelConfig::parse(random_config_json(kind), kind);
    const auto read = names_read_by_the_2d_path(config);
    std::set<std::string> table_2d;
    for (const auto& t : checkpoint_layout(config, memory_config_for(kind)))
      if (t.block != CheckpointBlock::kSam2VideoOnly) table_2d.insert(t.name);
    for (const auto& name : read) EXPECT_TRUE(table_2d.count(name)) << kind << ": " << name << " is not in the table";
    for (const auto& name : table_2d) EXPECT_TRUE(read.count(name)) << kind << ": no builder names " << name;
  }
  // Spot checks against the released spelling.
  EXPECT_EQ(layout::vision_layer(3).attn_qkv.weight, "vision_model.encoder.layers.3.attn.qkv.weight");
  EXPECT_EQ(layout::projector().fc2.bias, "mlp1.3.bias");
  EXPECT_EQ(layout::language_layer(0).down_proj_weight, "language_model.model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(layout::language_model().lm_head_weight, "language_model.lm_head.weight");
  EXPECT_EQ(layout::seg_head().fc2.weight, "text_hidden_fcs.2.weight");
  EXPECT_EQ(layout::hiera_block(5).mlp_fc2.bias, "grounding_encoder.sam2_model.image_encoder.trunk.blocks.5.mlp.layers.1.bias");
  EXPECT_EQ(layout::mask_decoder().output_hypernetwork(2).layer(1).weight,
            "grounding_encoder.sam2_model.sam_mask_decoder.output_hypernetworks_mlps.2.layers.1.weight");
  EXPECT_EQ(layout::mask_decoder().layer(1).norms[3].bias,
            "grounding_encoder.sam2_model.sam_mask_decoder.transformer.layers.1.norm4.bias");
}

TEST(CheckpointLayout, MemorySizesComeFromTheConfig) {
  ASSERT_TRUE(test::have_reference()) << test::reference_missing_reason();
  const std::string text = test::read_file(test::reference_dir() / "config.json");
  const auto m = memory_config_from_json(text);
  // The values as the file states them (read here with a plain JSON parser).
  const auto g = nlohmann::json::parse(text)["grounding_encoder_config"];
  EXPECT_EQ(m.d_model, g["memory_attention"]["d_model"].get<int>());
  EXPECT_EQ(m.kv_in_dim, g["memory_attention"]["kv_in_dim"].get<int>());
  EXPECT_EQ(m.dim_feedforward, g["memory_attention"]["dim_feedforward"].get<int>());
  EXPECT_EQ(m.num_layers, g["memory_attention"]["num_layers"].get<int>());
  EXPECT_EQ(m.out_dim, g["memory_encoder"]["out_dim"].get<int>());
  const auto released = memory_config_from_json(R"({"model_type": "sa2va_chat"})");
  EXPECT_EQ(released.d_model, 256);
  EXPECT_EQ(released.num_layers, 4);
  EXPECT_EQ(released.out_dim, 64);
  EXPECT_THROW(memory_config_from_json("{not json", "x.json"), InferenceError);
  EXPECT_THROW(memory_config_from_json(R"({"grounding_encoder_config": {"memory_attention": {"d_model": "wide"}}})"),
               InferenceError);
}

}  // namespace
}  // namespace unibiomed::inference
