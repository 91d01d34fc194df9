// From a [SEG] hidden state to a mask, the 2D path of UniBiomed (modeling_sa2va_chat.py
// predict_forward, sam2.py SAM2Base._forward_sam_heads): text_hidden_fcs turns the language
// model's hidden state into a prompt token; the SAM2 prompt encoder adds two "not a point"
// tokens (no clicks) and the no-mask dense embedding; the mask decoder's two-way transformer
// (Kirillov et al. 2023, "Segment Anything", section 3) predicts 3+1 masks, their IoU and an
// object score; the best of the three multimask outputs by predicted IoU is kept and upsampled
// to the image. As in UniBiomed the object score does not gate the mask.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "inference/model_config.h"
#include "inference/sam2_image_encoder.h"
#include "inference/weights.h"

namespace unibiomed::inference {

// text_hidden_fcs: Linear(H, H), ReLU, Linear(H, D) (modeling_sa2va_chat.py).
class LanguagePromptProjector {
 public:
  LanguagePromptProjector(Weights& weights, int64_t llm_hidden, int64_t prompt_dim);
  // hidden: [N, H] in any float dtype -> [N, D] in the weights' dtype.
  torch::Tensor operator()(const torch::Tensor& hidden) const;

 private:
  int64_t hidden_ = 0;
  torch::Tensor w0_, b0_, w2_, b2_;
};

// Everything the decoder produces for N prompts (one row per [SEG]).
struct Sam2DecoderOutput {
  torch::Tensor all_mask_logits;      // [N, 4, 4h, 4w]  index 0 = the single-mask token
  torch::Tensor all_iou;              // [N, 4]          sigmoid of the IoU head
  torch::Tensor object_score_logits;  // [N, 1]          reported, never applied to the mask
  torch::Tensor mask_tokens;          // [N, 4, D]
  torch::Tensor best;                 // [N] int64: chosen multimask output, 0..2 (= token 1..3)
  torch::Tensor best_low_res;         // [N, 1, 4h, 4w] float32 logits of the chosen mask
  torch::Tensor best_iou;             // [N] float32
};

// The intermediate values the reference data records, for tests.
struct Sam2DecoderTrace {
  torch::Tensor sparse_prompt;  // [N, 3, D]: not_a_point x 2, then the language embedding
  torch::Tensor dense_prompt;   // [1, D, h, w]
  torch::Tensor image_pe;       // [1, D, h, w]
  torch::Tensor queries_out;    // [N, 9, D]: obj score, IoU, 4 mask tokens, 3 prompt tokens
  torch::Tensor keys_out;       // [N, h*w, D]
};

class Sam2MaskDecoder {
 public:
  // The prompt encoder and mask decoder tensors (checkpoint_layout.h).
  Sam2MaskDecoder(Weights& weights, const GroundingConfig& config);

  // language: [N, D], one prompt per row. `features` holds either one image (shared by every
  // prompt) or N images (prompt i on image i).
  Sam2DecoderOutput decode(const Sam2ImageFeatures& features, const torch::Tensor& language,
                           Sam2DecoderTrace* trace = nullptr) const;
  // A tracked video frame (sam2.py track_step on a non-conditioning frame): no prompt but the
  // two "not a point" tokens, one row per image of `features`, whose image_embedding is the
  // memory-conditioned feature (no no_mem_embed). Multimask output as above.
  Sam2DecoderOutput decode_tracking(const Sam2ImageFeatures& features, Sam2DecoderTrace* trace = nullptr) const;

  // The reference's two successive bilinear interpolations (align_corners=False) of low-res
  // logits [N, 1, 4h, 4w]: first to image_size x image_size (`at_input_size`, when asked), then
  // to height x width. Returns float32 logits [N, height, width].
  torch::Tensor upsample(const torch::Tensor& low_res, int64_t height, int64_t width,
                         torch::Tensor* at_input_size = nullptr) const;

  int64_t prompt_dim() const { return dim_; }
  // The dense positional encoding of the image-embedding grid (PromptEncoder.get_dense_pe).
  const torch::Tensor& image_pe() const { return image_pe_; }

  struct Attention {
    int64_t heads = 0, internal = 0;
    torch::Tensor q_w, q_b, k_w, k_b, v_w, v_b, out_w, out_b;
    torch::Tensor operator()(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) const;
  };
  struct Mlp {  // sam2.py MLP: ReLU between layers, none after the last
    std::vector<torch::Tensor> w, b;
    torch::Tensor operator()(torch::Tensor x) const;
  };
  struct TwoWayLayer {
    Attention self_attn, token_to_image, image_to_token;
    Mlp mlp;
    torch::Tensor norm_w[4], norm_b[4];
  };

 private:
  // language undefined = no language token; n = prompts (rows).
  Sam2DecoderOutput run(const Sam2ImageFeatures& features, const torch::Tensor& language, int64_t n,
                        Sam2DecoderTrace* trace) const;
  GroundingConfig config_;
  int64_t dim_ = 0, grid_ = 0;
  torch::Tensor not_a_point_, no_mask_, image_pe_;
  torch::Tensor obj_score_token_, iou_token_, mask_tokens_;  // [1, D], [1, D], [4, D]
  std::vector<TwoWayLayer> layers_;
  Attention final_attn_;
  torch::Tensor final_norm_w_, final_norm_b_;
  torch::Tensor up0_w_, up0_b_, up_ln_w_, up_ln_b_, up3_w_, up3_b_;
  std::vector<Mlp> hypernetworks_;
  Mlp iou_head_, obj_score_head_;
};

}  // namespace unibiomed::inference
