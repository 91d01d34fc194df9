// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/image_preprocess.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstring>
#include <exception>
#include <mutex>

#include "inference/error.h"
#include "inference/image_resize.h"

namespace unibiomed::inference {

namespace {

// The normalised value of every possible byte, per channel: the same float32 operations as the
// reference, done once.
struct NormalizationTable {
  std::array<std::array<float, 256>, 3> value;
  explicit NormalizationTable(const ChannelNormalization& n) {
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < 256; ++v) value[c][v] = (static_cast<float>(v) / 255.0f - n.mean[c]) / n.std[c];
  }
};

// Writes the tile_size x tile_size tile `index` of `tiled` as [3, S, S] floats at `out`.
void write_tile(const TiledImage& tiled, int index, const NormalizationTable& table, float* out) {
  const int s = tiled.tile_size;
  const size_t plane = static_cast<size_t>(s) * s;
  for (int y = 0; y < s; ++y) {
    const uint8_t* p = tiled.tile_pixel(index, 0, y);
    float* r = out + static_cast<size_t>(y) * s;
    float* g = r + plane;
    float* b = g + plane;
    for (int x = 0; x < s; ++x, p += 3) {
      r[x] = table.value[0][p[0]];
      g[x] = table.value[1][p[1]];
      b[x] = table.value[2][p[2]];
    }
  }
}

}  // namespace

ChannelNormalization ChannelNormalization::imagenet() {
  return ChannelNormalization{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
}

ChannelNormalization ChannelNormalization::sam2() {
  ChannelNormalization n = imagenet();
  for (int c = 0; c < 3; ++c) {
    n.mean[c] = round_to_bfloat16(n.mean[c]);
    n.std[c] = round_to_bfloat16(n.std[c]);
  }
  return n;
}

float round_to_bfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  // Round to nearest, ties to even, on the 16 bits that are dropped (finite inputs only here).
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  bits = (bits + rounding) & 0xFFFF0000u;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

torch::Tensor internvl_pixel_values(const TiledImage& tiled) {
  static_assert(sizeof(float) == 4, "float32 expected");
  const int s = tiled.tile_size;
  torch::Tensor out = torch::empty({tiled.tile_count(), 3, s, s}, torch::kFloat32);
  const NormalizationTable table(ChannelNormalization::imagenet());
  float* base = out.data_ptr<float>();
  for (int t = 0; t < tiled.tile_count(); ++t) write_tile(tiled, t, table, base + static_cast<size_t>(t) * 3 * s * s);
  return out;
}

InternVlInput preprocess_internvl(const std::vector<RgbImage>& images, const TilingOptions& options) {
  if (images.empty()) throw InferenceError("preprocess: no images given");
  std::vector<TiledImage> tiled(images.size());
  std::vector<std::string> errors(images.size());
  // Resizing is independent per image; at::parallel_for uses torch's intra-op threads.
  at::parallel_for(0, static_cast<int64_t>(images.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const std::string what = images.size() == 1 ? std::string("image")
                                                  : "image " + std::to_string(i + 1) + " of " + std::to_string(images.size());
      try {
        tiled[i] = tile_image(images[i], options, what);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  });
  for (const auto& e : errors)
    if (!e.empty()) throw InferenceError(e);

  InternVlInput input;
  int64_t total = 0;
  for (const auto& t : tiled) {
    input.tiles_per_image.push_back(t.tile_count());
    input.grids.push_back(t.grid);
    total += t.tile_count();
  }
  const int s = options.tile_size;
  const size_t tile_floats = static_cast<size_t>(3) * s * s;
  input.pixel_values = torch::empty({total, 3, s, s}, torch::kFloat32);
  const NormalizationTable table(ChannelNormalization::imagenet());
  std::vector<std::pair<int, int>> jobs;  // (image, tile)
  for (size_t i = 0; i < tiled.size(); ++i)
    for (int t = 0; t < tiled[i].tile_count(); ++t) jobs.emplace_back(static_cast<int>(i), t);
  float* base = input.pixel_values.data_ptr<float>();
  at::parallel_for(0, static_cast<int64_t>(jobs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j)
      write_tile(tiled[jobs[j].first], jobs[j].second, table, base + static_cast<size_t>(j) * tile_floats);
  });
  return input;
}

torch::Tensor sam2_pixel_values(const RgbImage& image, int side, int64_t max_pixels, const std::string& what) {
  check_image_within_limit(image, max_pixels, what);
  if (side <= 0) throw InferenceError("SAM2 input side " + std::to_string(side) + " must be positive");
  const RgbImage resized = resize_bicubic(image, side, side);
  const NormalizationTable table(ChannelNormalization::sam2());
  torch::Tensor out = torch::empty({3, side, side}, torch::kFloat32);
  float* r = out.data_ptr<float>();
  const size_t plane = static_cast<size_t>(side) * side;
  float* g = r + plane;
  float* b = g + plane;
  const uint8_t* p = resized.rgb.data();
  for (size_t i = 0; i < plane; ++i, p += 3) {
    r[i] = table.value[0][p[0]];
    g[i] = table.value[1][p[1]];
    b[i] = table.value[2][p[2]];
  }
  return out;
}

}  // namespace unibiomed::inference
