// The UniBiomed model in a form that libtorch's autograd can train (`unibiomed model train`).
// Every tensor of the checkpoint layout is held by its released name, so what is trained is
// written back as a checkpoint that GroundedModel loads unchanged.
//
// The InternViT and Qwen2 forwards of inference/ are tuned for inference (fused and transposed
// weights, layer scale folded in, in-place updates, a static KV cache, a custom mat-vec kernel),
// none of which autograd can follow; they are written here a second time, plainly, from the
// named tensors. The SAM2 parts and the [SEG] projector are inference/'s own classes, built on
// the same tensors (they run with gradients when their weights require them). The test
// tests/training/training_model_test.cpp checks that both paths compute the same numbers.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "inference/checkpoint_layout.h"
#include "inference/model_config.h"
#include "inference/safetensors_file.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/sam2_memory.h"

namespace unibiomed::training {

class TrainableModel {
 public:
  // Fresh weights for `config` (initialised from `seed`), or the float32 tensors of a checkpoint.
  TrainableModel(const inference::ModelConfig& config, const inference::Sam2MemoryConfig& memory, uint64_t seed);
  TrainableModel(const std::filesystem::path& checkpoint_dir, const inference::Sam2MemoryConfig& memory);

  const inference::ModelConfig& config() const { return config_; }
  // Tensors that training updates (everything the 2D and video paths read, minus fixed
  // buffers): those of the video-only block (memory encoder, memory attention, object
  // pointers: `memory_path` true) or all the others.
  std::vector<torch::Tensor> trainable(bool memory_path) const;
  int64_t parameter_count() const;
  // Gives every tensor of the video-only block (memory encoder, memory attention, object
  // pointers) fresh initial values drawn from `seed`, as a new model's (fine-tuning the 2D path
  // of a checkpoint while its memory path starts over).
  void reset_memory_path(const inference::Sam2MemoryConfig& memory, uint64_t seed);
  // The tensor of a checkpoint name (InferenceError when the layout has none).
  const torch::Tensor& tensor(const std::string& name) const { return p(name); }

  // InternVL image tokens: tiles [N, 3, S, S] -> [N, tokens_per_tile, llm hidden].
  torch::Tensor vision_tokens(const torch::Tensor& tiles) const;
  // Token embeddings: ids [B, T] -> [B, T, H].
  torch::Tensor embed(const torch::Tensor& ids) const;
  // Causal Qwen2 over whole sequences from position 0 (right padding is harmless: a position
  // never attends to later ones): [B, T, H] -> final post-norm hidden states [B, T, H].
  torch::Tensor llm_hidden(const torch::Tensor& embeds) const;
  torch::Tensor logits(const torch::Tensor& hidden) const;  // [..., H] -> [..., V]

  const inference::LanguagePromptProjector& seg_head() const { return *seg_head_; }
  const inference::Sam2ImageEncoder& sam_encoder() const { return *sam_encoder_; }
  const inference::Sam2MaskDecoder& sam_decoder() const { return *sam_decoder_; }
  // The video path's memory encoder, memory attention and object pointers (track_object with
  // TrackOptions::gradients).
  const inference::Sam2Memory& sam_memory() const { return *sam_memory_; }

  // Writes model.safetensors (every tensor of the layout, F32 or BF16) into `dir`.
  void save_weights(const std::filesystem::path& dir, const std::map<std::string, std::string>& metadata,
                    inference::DType dtype = inference::DType::BF16) const;

 private:
  void build(const inference::Sam2MemoryConfig& memory);
  const torch::Tensor& p(const std::string& name) const;

  inference::ModelConfig config_;
  std::map<std::string, torch::Tensor> params_;
  std::vector<std::string> frozen_;  // names excluded from trainable(...)
  std::unique_ptr<inference::LanguagePromptProjector> seg_head_;
  std::unique_ptr<inference::Sam2ImageEncoder> sam_encoder_;
  std::unique_ptr<inference::Sam2MaskDecoder> sam_decoder_;
  std::unique_ptr<inference::Sam2Memory> sam_memory_;
  torch::Tensor rope_cos_, rope_sin_;
};

}  // namespace unibiomed::training
