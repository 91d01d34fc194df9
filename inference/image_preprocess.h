// Model inputs from RGB8 images, exactly as the reference prepares them (modeling_sa2va_chat.py
// predict_forward): the InternVL branch gets normalised 448-pixel tiles, the SAM2 branch the
// whole image resized to its input side. Images of a batch (the slices of a volume) are tiled
// into one tensor so that the vision encoder sees them as one batch.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <torch/types.h>

#include <array>
#include <string>
#include <vector>

#include "inference/image.h"
#include "inference/image_tiling.h"

namespace unibiomed::inference {

// Per-channel (x / 255 - mean) / std, computed in float32 in that order (torchvision's
// ToTensor then Normalize; SAM2.preprocess_image), so the results are bit-identical.
struct ChannelNormalization {
  std::array<float, 3> mean{};
  std::array<float, 3> std{};

  // InternVL's IMAGENET_MEAN (0.485, 0.456, 0.406) and IMAGENET_STD (0.229, 0.224, 0.225).
  static ChannelNormalization imagenet();
  // SAM2's constants are the same ImageNet values, but preprocess_image builds them as
  // bfloat16 tensors, so the effective values are the ImageNet ones rounded to bfloat16:
  // mean (0.484375, 0.455078125, 0.40625), std (0.228515625, 0.2236328125, 0.224609375).
  static ChannelNormalization sam2();
};

// float -> bfloat16 -> float with round-to-nearest-even (c10::BFloat16's rounding).
float round_to_bfloat16(float value);

// [tile_count, 3, S, S] float32 (CPU): the tiles of one image, grid row-major then thumbnail.
torch::Tensor internvl_pixel_values(const TiledImage& tiled);

struct InternVlInput {
  torch::Tensor pixel_values;          // [sum of tile counts, 3, S, S] float32, images in order
  std::vector<int> tiles_per_image;    // for splitting the encoder's output back per image
  std::vector<TileGrid> grids;
};

// Tiles and normalises each image (images are processed in parallel). Errors name the image
// ("image 3 of 16") and its size: an empty or malformed buffer, more than options.max_pixels.
InternVlInput preprocess_internvl(const std::vector<RgbImage>& images, const TilingOptions& options);

// SAM2 input: the image resized straight to side x side (PIL bicubic, aspect not kept, no
// padding: the reference's DirectResize), normalised with ChannelNormalization::sam2().
// [3, side, side] float32 (CPU). Refuses images above max_pixels (0 = no limit).
torch::Tensor sam2_pixel_values(const RgbImage& image, int side, int64_t max_pixels = 200'000'000,
                                const std::string& what = "image");

}  // namespace unibiomed::inference
