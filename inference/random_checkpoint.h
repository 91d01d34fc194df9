// Checkpoints of the real layout with seeded random weights (`unibiomed model make-random`),
// for tests and benchmarks where the released weights cannot be used: config.json with the real
// field names, model.safetensors with every tensor name and shape of the UniBiomed checkpoint
// (including SAM2's memory/video tensors, which the 2D path does not use), and tokenizer files.
//   tiny: the sizes of the small reference checkpoint in tests/reference (config.json with
//         "grounding_encoder_config" and "tiny_test"; byte-level vocabulary of 512 ids)
//   real: the released sizes (InternViT-300M, Qwen2.5-0.5B, SAM2 Hiera-L; about 1.16 B
//         parameters, 2.3 GB in bfloat16); a byte-level vocabulary with the added tokens at
//         their real ids unless a tokenizer folder is given.
// The tensors written are those of the layout table (inference/checkpoint_layout.h, included
// here for its users); values depend only on the seed and the tensor name. Torch-free.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "inference/checkpoint_layout.h"
#include "inference/model_config.h"
#include "inference/safetensors_file.h"

namespace unibiomed::inference {

// config.json for "tiny" or "real" (InferenceError for another name), and the memory sizes that
// go with it (those of that config.json: memory_config_from_json).
std::string random_config_json(const std::string& kind);
Sam2MemoryConfig memory_config_for(const std::string& kind);

struct RandomCheckpointOptions {
  std::string kind = "tiny";  // "tiny" | "real"
  uint64_t seed = 0;
  std::optional<DType> dtype;  // default: F32 for tiny, BF16 for real
  // Tokenizer files to copy instead of writing the byte-level vocabulary.
  std::optional<std::filesystem::path> tokenizer_dir;
  // A plumbing fixture: when set, the language model is rewired so that its greedy answer to ANY
  // prompt of the chat template is exactly this text, then the end token (see make_answer_fixed
  // in the .cpp). Vision, SAM2 and the [SEG] glue keep their random weights and run as usual, so
  // an answer with [SEG] yields real (meaningless) masks. Its tokens, with the template's last
  // prompt token, must all be different.
  std::optional<std::string> fixed_answer;
};

struct RandomCheckpointSummary {
  int64_t tensors = 0;
  int64_t parameters = 0;
  uint64_t bytes = 0;  // of model.safetensors
};

// Writes config.json, model.safetensors and the tokenizer files into `dir` (created if needed;
// existing files of those names are replaced). Throws InferenceError naming the file on failure.
RandomCheckpointSummary write_random_checkpoint(const std::filesystem::path& dir, const RandomCheckpointOptions& options);

}  // namespace unibiomed::inference
