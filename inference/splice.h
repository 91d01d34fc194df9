// Image token embeddings into the prompt: the prompt holds one <IMG_CONTEXT> token per image
// token (256 per tile), and the language model's input embeddings at those positions are
// replaced, in order, by the vision encoder's output (modeling_sa2va_chat.py generate:
// input_embeds[input_ids == img_context_token_id] = vit_embeds.reshape(-1, C)).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace unibiomed::inference {

// prompt_embeds [T, H] (embed_tokens of input_ids), image_embeds [tiles, tokens_per_tile, H]
// (tiles of every image of the prompt, in prompt order). Returns a new [T, H] tensor in
// prompt_embeds' dtype and device. Throws InferenceError when the number of <IMG_CONTEXT>
// positions differs from tiles x tokens_per_tile (naming both and the tile count), or when
// the shapes disagree.
torch::Tensor splice_image_embeddings(const torch::Tensor& prompt_embeds, const std::vector<int64_t>& input_ids,
                                      int64_t image_context_id, const torch::Tensor& image_embeds);

// The positions of image_context_id in input_ids, in order.
std::vector<int64_t> image_context_positions(const std::vector<int64_t>& input_ids, int64_t image_context_id);

}  // namespace unibiomed::inference
