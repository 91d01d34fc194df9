// SAM2's image encoder as UniBiomed runs it for one 2D image: the Hiera trunk (Ryali et al.
// 2023, "Hiera"; SAM2 paper section 4), the FPN neck, the two high-resolution projections of the
// mask decoder (conv_s0/conv_s1) and `no_mem_embed` added to the image embedding, which is what
// SAM2 does for a frame without memory (sam2.py: forward_image, _prepare_memory_conditioned_
// features with directly_add_no_mem_embed). Run it once per image; the features serve every
// [SEG] of every question on that image.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <atomic>
#include <string>
#include <vector>

#include "inference/model_config.h"
#include "inference/weights.h"

namespace unibiomed::inference {

// What the mask decoder needs of an image (B images in a batch; D = neck d_model, h = S/16).
struct Sam2ImageFeatures {
  torch::Tensor image_embedding;  // [B, D, h, w]      FPN stride-16 level + no_mem_embed
  torch::Tensor high_res_s0;      // [B, D/8, 4h, 4w]  conv_s0(FPN stride-4 level)
  torch::Tensor high_res_s1;      // [B, D/4, 2h, 2w]  conv_s1(FPN stride-8 level)

  int64_t batch() const { return image_embedding.size(0); }
  // Image `index` of the batch as a batch of one (views, no copy).
  Sam2ImageFeatures select(int64_t index) const;
  // Concatenation along the batch dimension (all must come from the same encoder).
  static Sam2ImageFeatures cat(const std::vector<Sam2ImageFeatures>& parts);
};

// The internals the reference data (tests/reference/sam2.safetensors) records, for tests.
struct Sam2EncoderTrace {
  torch::Tensor patch_embed;                 // [B, H, W, C] NHWC
  torch::Tensor pos_embed;                   // [1, H, W, C]
  std::vector<torch::Tensor> block_outputs;  // every Hiera block, NHWC
  std::vector<torch::Tensor> trunk_outputs;  // stage outputs NCHW, strides 4, 8, 16, 32
  std::vector<torch::Tensor> neck_outputs;   // FPN levels NCHW, strides 4 .. 32, before scalp
};

class Sam2ImageEncoder {
 public:
  // Reads the trunk, neck, conv_s0/conv_s1 and no_mem_embed tensors (checkpoint_layout.h) with
  // the sizes of `config`; InferenceError names the tensor or setting when something does not fit.
  Sam2ImageEncoder(Weights& weights, const GroundingConfig& config);

  // pixels: [B, 3, S, S] normalised SAM2 input (S = config.image_size), any float dtype; it is
  // converted to the weights' dtype and device. `cancel` is checked between blocks
  // (InferenceError "cancelled" when set). `trace` receives the internals when not null.
  // add_no_mem_embed false: image_embedding is the raw stride-16 FPN level, what video
  // propagation needs (the memory encoder and memory attention read it raw; a conditioning
  // frame adds no_mem_embed() itself).
  Sam2ImageFeatures encode(const torch::Tensor& pixels, const std::atomic<bool>* cancel = nullptr,
                           Sam2EncoderTrace* trace = nullptr, bool add_no_mem_embed = true) const;
  const torch::Tensor& no_mem_embed() const { return no_mem_embed_; }  // [D]

  const GroundingConfig& config() const { return config_; }
  int image_size() const { return config_.image_size; }
  // Multiply-accumulate count x 2 of one encode() of one image (linear layers, convolutions,
  // attention matmuls), for efficiency figures.
  double flops_per_image() const;

  struct Block;  // one Hiera MultiScaleBlock (defined in the .cpp)

 private:
  GroundingConfig config_;
  torch::Tensor patch_weight_, patch_bias_;
  torch::Tensor pos_embed_;  // [1, H, W, C] background + window embedding, precomputed
  std::vector<std::shared_ptr<const Block>> blocks_;
  std::vector<int> stage_ends_;
  std::vector<torch::Tensor> neck_weight_, neck_bias_;  // convs.k as [D, C_k] linear maps
  torch::Tensor conv_s0_weight_, conv_s0_bias_, conv_s1_weight_, conv_s1_bias_;
  torch::Tensor no_mem_embed_;  // [D]
};

}  // namespace unibiomed::inference
