// GroundedModel's insides, shared by the image path (grounded_model.cpp) and the video path
// (video.cpp). Internal to inference/: it holds libtorch types.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "inference/checkpoint_layout.h"
#include "inference/error.h"
#include "inference/generation.h"
#include "inference/grounded_model.h"
#include "inference/image_tiling.h"
#include "inference/qwen2.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/sam2_memory.h"
#include "inference/tokenizer.h"
#include "inference/vision_encoder.h"
#include "inference/weights.h"

namespace unibiomed::inference {

struct GroundedModel::Impl {
  std::filesystem::path dir;
  ModelConfig config;
  ComputeOptions compute;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<VisionEncoder> vision;
  std::unique_ptr<Qwen2Model> llm;
  std::unique_ptr<LanguagePromptProjector> seg_head;
  std::unique_ptr<Sam2ImageEncoder> sam_encoder;
  std::unique_ptr<Sam2MaskDecoder> sam_decoder;
  std::unique_ptr<Sam2Memory> sam_memory;  // null when the checkpoint has no memory tensors
  TilingOptions tiling;
  std::vector<std::string> stop_words;
  int64_t image_context_id = -1;
  ModelIdentity identity;
  mutable std::mutex hash_mutex;
  mutable std::string hash;

  // Throws a libtorch error met while `step` ran as the one error type that leaves inference/
  // (device.h, throw_inference_error): DeviceOutOfMemory when the device ran out of memory.
  [[noreturn]] void torch_error(const std::string& step, const c10::Error& error) const;
  void check_owner(const EncodedImage& image) const;
  // The calling thread's CPU thread split for this model's dtype (runtime.h, use_cpu_threads_for);
  // first thing in every public call that computes.
  void use_cpu_threads() const;
  std::shared_ptr<const EncodedImage> make_encoded(const RgbImage& image, torch::Tensor tokens) const;
  std::vector<int64_t> prompt_ids(const std::string& question, int tiles) const;
  GroundedAnswer finish(const GenerationResult& r, const EncodedImage& image, const std::string& question,
                        const AnswerOptions& options) const;
  // Greedy generation options of a prompt of `prompt_length` tokens: the template's stop words,
  // and max_new_tokens capped so the cache fits max_position_embeddings.
  GenerationOptions generation_options(int max_new_tokens, const std::atomic<bool>* cancel, size_t prompt_length) const;
};

}  // namespace unibiomed::inference
