// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/splice.h"

#include <torch/torch.h>

#include <string>

#include "inference/error.h"

namespace unibiomed::inference {

std::vector<int64_t> image_context_positions(const std::vector<int64_t>& input_ids, int64_t image_context_id) {
  std::vector<int64_t> positions;
  for (size_t i = 0; i < input_ids.size(); ++i)
    if (input_ids[i] == image_context_id) positions.push_back(static_cast<int64_t>(i));
  return positions;
}

torch::Tensor splice_image_embeddings(const torch::Tensor& prompt_embeds, const std::vector<int64_t>& input_ids,
                                      int64_t image_context_id, const torch::Tensor& image_embeds) {
  if (prompt_embeds.dim() != 2 || prompt_embeds.size(0) != static_cast<int64_t>(input_ids.size()))
    throw InferenceError("splice: prompt embeddings have shape [" +
                         (prompt_embeds.dim() == 2 ? std::to_string(prompt_embeds.size(0)) + ", " +
                                                         std::to_string(prompt_embeds.size(1))
                                                   : std::string("rank ") + std::to_string(prompt_embeds.dim())) +
                         "], expected [" + std::to_string(input_ids.size()) + ", hidden] for " +
                         std::to_string(input_ids.size()) + " prompt tokens");
  if (image_embeds.dim() != 3 || image_embeds.size(2) != prompt_embeds.size(1))
    throw InferenceError("splice: image embeddings must be [tiles, tokens per tile, " +
                         std::to_string(prompt_embeds.size(1)) + "], got rank " + std::to_string(image_embeds.dim()) +
                         (image_embeds.dim() == 3 ? " with hidden size " + std::to_string(image_embeds.size(2)) : ""));
  const std::vector<int64_t> positions = image_context_positions(input_ids, image_context_id);
  const int64_t tiles = image_embeds.size(0), per_tile = image_embeds.size(1);
  if (static_cast<int64_t>(positions.size()) != tiles * per_tile)
    throw InferenceError("splice: the prompt has " + std::to_string(positions.size()) + " <IMG_CONTEXT> tokens (id " +
                         std::to_string(image_context_id) + ") but the images give " + std::to_string(tiles * per_tile) +
                         " embeddings (" + std::to_string(tiles) + " tiles x " + std::to_string(per_tile) +
                         " tokens per tile)");
  if (positions.empty()) return prompt_embeds.clone();
  torch::Tensor index = torch::tensor(positions, torch::kInt64).to(prompt_embeds.device());
  return prompt_embeds.index_copy(
      0, index, image_embeds.reshape({tiles * per_tile, prompt_embeds.size(1)}).to(prompt_embeds.options()));
}

}  // namespace unibiomed::inference
