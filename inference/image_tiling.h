// InternVL's dynamic tiling (modeling_sa2va_chat.py: dynamic_preprocess and
// find_closest_aspect_ratio): the image is resized to a grid of square tiles whose aspect ratio
// is closest to the image's, cut row-major, and followed by a thumbnail of the whole image when
// there is more than one tile. Torch-free.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "inference/image.h"

namespace unibiomed::inference {

struct ModelConfig;

struct TilingOptions {
  int tile_size = 448;  // predict_forward's image_size (the tiny reference checkpoint uses 56)
  int min_tiles = 1;
  int max_tiles = 12;
  bool use_thumbnail = true;
  // Images with more pixels are refused: a 200-megapixel image already takes 600 MB as RGB8.
  int64_t max_pixels = 200'000'000;

  // tile_size, min/max tiles and use_thumbnail from the checkpoint's configuration.
  static TilingOptions from_config(const ModelConfig& config);
};

// cols x rows tiles ((i, j) in the reference: i across the width, j down the height).
struct TileGrid {
  int cols = 1;
  int rows = 1;
  int tiles() const { return cols * rows; }
  bool operator==(const TileGrid& o) const { return cols == o.cols && rows == o.rows; }
};

// The candidate grids in the order the reference tries them: every (i, j) with
// min_tiles <= i*j <= max_tiles, in CPython's iteration order of the set it builds, then
// stably sorted by i*j. The order decides exact ties between grids of the same area.
std::vector<TileGrid> candidate_grids(int min_tiles, int max_tiles);

// The reference's choice for a width x height image: the candidate whose aspect ratio is
// closest to width/height; on an exact tie a later candidate wins when the image has more than
// half the pixels of that grid's resized size.
TileGrid choose_grid(int width, int height, const TilingOptions& options);

// Tiles of one image, kept as the resized whole (tiles are views into it) plus the thumbnail.
struct TiledImage {
  TileGrid grid;
  int tile_size = 448;
  RgbImage resized;                   // (cols * tile_size) x (rows * tile_size)
  std::optional<RgbImage> thumbnail;  // tile_size x tile_size, only when grid.tiles() > 1

  // Grid tiles row-major, then the thumbnail: the order of the image tokens in the prompt.
  int tile_count() const { return grid.tiles() + (thumbnail ? 1 : 0); }
  // Pixel (x, y) of tile `index` (0 <= index < tile_count()), as 3 bytes.
  const uint8_t* tile_pixel(int index, int x, int y) const;
  RgbImage tile(int index) const;  // a copy, for inspection and tests
};

// Checks the image (InferenceError naming `what`, the size and the limit when it is larger
// than options.max_pixels), chooses the grid and resizes with PIL's bicubic filter.
TiledImage tile_image(const RgbImage& image, const TilingOptions& options, const std::string& what = "image");

// Throws InferenceError naming `what` and the size when the image is invalid or exceeds the limit.
void check_image_within_limit(const RgbImage& image, int64_t max_pixels, const std::string& what);

}  // namespace unibiomed::inference
