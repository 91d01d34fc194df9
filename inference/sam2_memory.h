// SAM2's video memory (sam2.py MemoryEncoder, MemoryAttention, SAM2Base
// _prepare_memory_conditioned_features / _encode_new_memory / _forward_sam_heads object pointer,
// SAM2VideoPredictor propagate_in_video) as UniBiomed's video branch runs it: a language-prompted
// mask on each conditioning (key) frame, then every other frame segmented from its image
// features conditioned on the memory of the key frames and of the frames just tracked.
// docs/MODEL.md ("Video and volume mode") lists the behaviour this follows, quirks included.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <vector>

#include "inference/checkpoint_layout.h"
#include "inference/model_config.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/weights.h"

namespace unibiomed::inference {

// The sine positional encoding of SAM2's FPN neck and memory encoder (PositionEmbeddingSine,
// normalised, scale 2*pi, temperature 1e4) of an h x w grid with `channels` channels:
// [1, channels, h, w] float32. The first half encodes y, the second x.
torch::Tensor sine_position_encoding(int64_t channels, int64_t h, int64_t w);

// The memory parts of SAM2 (checkpoint_layout.h "video-only" tensors).
class Sam2Memory {
 public:
  // Reads the memory encoder, memory attention, obj_ptr_proj, no_obj_ptr and maskmem_tpos_enc
  // with the sizes of `memory` (memory_config_from_json).
  Sam2Memory(Weights& weights, const GroundingConfig& config, const Sam2MemoryConfig& memory);
  // Whether `weights` hold the memory tensors at all (a checkpoint without them serves 2D only).
  static bool available(const Weights& weights);

  // MemoryEncoder on the mask logits `mask_high_res` [B, 1, S, S] (float32) and the RAW
  // stride-16 image feature `pix_feat` [B, D, h, w]: sigmoid * 20 - 10, the mask downsampler,
  // pix_feat_proj + mask, the fuser CXBlocks, out_proj -> [B, mem_dim, h, w] in the compute dtype.
  torch::Tensor encode(const torch::Tensor& pix_feat, const torch::Tensor& mask_high_res) const;

  // MemoryAttention: curr [B, D, h, w] (raw stride-16 feature), memory and memory_pos
  // [B, M, mem_dim] (spatial memory tokens first, then `pointer_tokens` object-pointer tokens,
  // which get no rotary encoding) -> pix_feat_with_mem [B, D, h, w].
  // `scratch` (optional) keeps the attention-score buffer between calls: a tracking run passes
  // one so that every frame reuses the same pages instead of mapping fresh ones.
  // max_scores bounds the scores held at once (the query axis is processed in chunks).
  struct Scratch {
    torch::Tensor scores;
    int64_t max_scores = int64_t{8} << 20;  // 32 MiB in float32
  };
  torch::Tensor attend(const torch::Tensor& curr, const torch::Tensor& memory, const torch::Tensor& memory_pos,
                       int64_t pointer_tokens, Scratch* scratch = nullptr) const;

  // obj_ptr_proj of the chosen mask token [B, D]; no_obj_ptr in the rows whose object-score
  // logit [B, 1] is <= 0 (fixed_no_obj_ptr, hard choice).
  torch::Tensor object_pointer(const torch::Tensor& mask_token, const torch::Tensor& object_score) const;
  torch::Tensor project_pointer(const torch::Tensor& mask_token) const;  // obj_ptr_proj alone

  const torch::Tensor& image_pos() const { return image_pos_; }    // [1, D, h, w] neck PE (curr_pos)
  const torch::Tensor& memory_pos() const { return memory_pos_; }  // [1, mem_dim, h, w] maskmem_pos_enc
  torch::Tensor temporal_encoding(int index) const;                 // maskmem_tpos_enc[index]: [mem_dim]
  int num_maskmem() const { return memory_.num_maskmem; }
  int64_t mem_dim() const { return memory_.out_dim; }
  int64_t dim() const { return dim_; }
  int64_t grid() const { return grid_; }
  int image_size() const { return config_.image_size; }

  struct AttentionLayer;
  struct FuserLayer;

  // Whether the weights require gradients (training/trainable_model.h): the methods then run
  // with autograd on, without the in-place score buffers.
  bool trained() const;

 private:
  GroundingConfig config_;
  Sam2MemoryConfig memory_;
  int64_t dim_ = 0, grid_ = 0;
  torch::ScalarType dtype_ = torch::kFloat32;
  torch::Device device_ = torch::kCPU;
  std::vector<torch::Tensor> down_w_, down_b_, down_ln_w_, down_ln_b_;  // 4 stages + final conv (w, b)
  torch::Tensor pix_proj_w_, pix_proj_b_, out_proj_w_, out_proj_b_;
  std::vector<std::shared_ptr<const FuserLayer>> fuser_;
  std::vector<std::shared_ptr<const AttentionLayer>> layers_;
  torch::Tensor norm_w_, norm_b_;
  torch::Tensor rope_cos_, rope_sin_;  // [h*w, D/2] float32
  std::vector<torch::Tensor> ptr_w_, ptr_b_;
  torch::Tensor no_obj_ptr_, tpos_;  // [1, D], [num_maskmem, mem_dim]
  torch::Tensor image_pos_, memory_pos_;
};

// One frame of one tracked object.
struct TrackedFrame {
  bool tracked = false;       // false: not reached (before the first key frame, forward only)
  bool conditioning = false;  // a key frame (language prompt, no memory)
  torch::Tensor low_res;      // [1, 1, 4h, 4w] float32 logits of the chosen mask
  torch::Tensor all_iou;      // [1, 3] float32 IoU predictions of the three multimask outputs
  int best = 0;               // chosen multimask output (0..2)
  float iou = 0, object_score = 0;
  torch::Tensor obj_ptr;      // [1, D]
  // Only with TrackOptions::gradients (training): every multimask output [1, 4, 4h, 4w] and the
  // object-score logit [1, 1], both still attached to the graph.
  torch::Tensor all_low_res, object_score_logit;
  torch::Tensor memory;       // [1, mem_dim, h, w] bfloat16 as stored (only with keep_internals)
  // keep_internals: what the reference records, for tests.
  torch::Tensor memory_fp32;  // the memory encoder's output before rounding
  torch::Tensor memory_tokens, memory_tokens_pos;  // [M, mem_dim] the memory attention inputs
  int64_t pointer_tokens = 0;
  torch::Tensor pix_feat_with_mem;  // [1, D, h, w]
  std::vector<std::pair<int, int>> memory_frames;  // (frame, maskmem_tpos_enc index)
  std::vector<int> pointer_frames;                 // frames whose pointers were used, in order
};

struct TrackOptions {
  std::vector<int> conditioning_frames;  // ascending, unique, non-empty
  bool both_directions = false;          // also backward from the first conditioning frame to 0
  // Conditioning frames a tracked frame's memory holds (spatial memories and pointers): -1 all
  // (the reference), else the nearest before and after it and the next nearest (SAM2's
  // max_cond_frames_in_attn, select_closest_cond_frames); at least 2.
  int max_conditioning_in_attention = -1;
  const std::atomic<bool>* cancel = nullptr;
  std::function<void()> after_frame;     // after each frame computed (key frames included)
  bool keep_internals = false;
  // Training (training/trainer.cpp): no NoGradGuard, so that losses on every frame's mask reach
  // the memory encoder, memory attention, object pointers, decoder and language prompt; the
  // attention-score buffer is not reused (autograd keeps each frame's scores).
  bool gradients = false;
};

struct TrackResult {
  std::vector<TrackedFrame> frames;  // one per frame
  bool cancelled = false;
  // The most memory frames (spatial memories) any frame attended to, and the most frames whose
  // spatial memory the bank held at once: both bounded by conditioning frames + num_maskmem - 1.
  int max_memory_frames = 0;
  int max_bank_frames = 0;
};

// One object through a video (SAM2VideoPredictor: add_language_embd on every conditioning frame,
// then propagate_in_video). `features(t)` gives frame t's SAM2 features with the RAW stride-16
// level in image_embedding (Sam2ImageEncoder::encode with add_no_mem_embed false); `language`
// [1, D] is the [SEG] prompt of the conditioning frames.
TrackResult track_object(const Sam2MaskDecoder& decoder, const Sam2Memory& memory, const torch::Tensor& no_mem_embed,
                         int num_frames, const std::function<Sam2ImageFeatures(int)>& features,
                         const torch::Tensor& language, const TrackOptions& options);

}  // namespace unibiomed::inference
