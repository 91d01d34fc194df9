// The model's masks on the regions of a whole slide stitched into one label result for the
// analysed pyramid level, without ever holding the level: the result is a set of square tiles
// of that level, kept only where some mask has a pixel.
//
// Regions overlap their neighbours (dicom/tissue.h). Each pixel of the level is taken from one
// region only, the one whose core holds it: a region's core is the region less half the overlap
// on every side that has a neighbour in the grid, so the cores of the grid tile the level
// exactly and each pixel comes from the region that saw it furthest from its border. A lesion
// cut by two regions therefore lies in the stitched result once, as one connected piece, and
// becomes one finding however many regions it crosses.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace unibiomed::pipeline {

// The regions' grid on the analysed level: regions of `size` pixels every size - overlap.
struct SlideGrid {
  int total_columns = 0;  // the level's total pixel matrix
  int total_rows = 0;
  int size = 1024;
  int overlap = 128;
  int tile_size = 256;  // the stitched result's tiles (the SEG's frames)
};

// One connected piece of the stitched result (8-connected), measured on the level's grid.
struct SlideComponent {
  int label = 0;  // 1.. in the order of `components()` (largest first)
  size_t pixels = 0;
  std::array<int, 4> box{};                      // x0, y0, x1, y1 (exclusive) in level pixels
  double area = 0;                               // mm2 when the spacing is known, else pixels
  double long_axis = 0;                          // mm (or pixels), the maximum Feret diameter, corner to corner
  std::array<double, 2> axis_from{}, axis_to{};  // its end points in level pixel coordinates
  std::array<int, 2> key_region{};               // x, y of the region that holds most of its pixels
  std::string phrase, text, answer;              // what the model said on that region
  double label_agreement = 1;                    // share of its pixels from regions whose phrase is `phrase`
  double mean_probability = 0;                   // over its pixels (0 when no probabilities were given)
  double mean_iou = 0;                           // the IoU predictions of its pixels' regions, pixel-weighted
  std::vector<std::pair<int, int>> tiles;        // (tile column, tile row) it has pixels on, row-major
};

class SlideStitcher {
 public:
  // Throws std::invalid_argument naming the value for a grid that is not one (sizes under 16,
  // an overlap outside [0, size / 2], a tile size under 8 or not a multiple of 8).
  explicit SlideStitcher(const SlideGrid& grid);

  // One region's mask (width x height, row-major, non-zero inside) at (x, y) of the level, with
  // its probabilities (x 255, same size, or empty), the IoU prediction and what the model said.
  // Several masks of one region are joined. Throws std::invalid_argument for a region that is
  // not on the grid or a mask of the wrong size.
  void add(int x, int y, int width, int height, const std::vector<uint8_t>& mask,
           const std::vector<uint8_t>& probability, double iou, const std::string& phrase, const std::string& text,
           const std::string& answer);

  // The connected pieces, largest first (ties: top-left first); the level's pixel spacing in
  // mm (0 = unknown: areas and lengths in pixels). Called once, after the last add(): the tiles
  // then keep only their labels (tile_labels()), the masks and probabilities are released.
  std::vector<SlideComponent> components(double mm_per_pixel_x, double mm_per_pixel_y);

  // The label of every pixel of a tile (tile_size x tile_size, 0 = none; pixels outside the
  // level are 0), valid after components(); empty for a tile without any mask pixel.
  const std::vector<int32_t>& tile_labels(int tile_column, int tile_row) const;

  // Component `label`'s pixels inside [x, x+width) x [y, y+height) of the level (row-major,
  // 1 inside), valid after components(): its mask on one region.
  std::vector<uint8_t> component_mask(int label, int x, int y, int width, int height) const;
  // The same for the pixels of any of `labels` (one finding made of several pieces).
  std::vector<uint8_t> components_mask(const std::vector<int>& labels, int x, int y, int width, int height) const;

  const SlideGrid& grid() const { return grid_; }
  size_t tiles_held() const { return tiles_.size(); }
  size_t bytes_held() const;  // what the kept tiles take, for the memory figures
  size_t regions_added() const { return regions_.size(); }

 private:
  struct Tile {
    std::vector<uint8_t> mask;         // tile_size^2
    std::vector<uint8_t> probability;  // tile_size^2, or empty
    std::vector<int32_t> labels;       // filled by components()
  };
  struct RegionInfo {
    double iou = 0;
    std::string phrase, text, answer;
    size_t largest = 0;  // pixels of its largest mask (whose words it keeps)
  };
  std::array<int, 4> core(int x, int y, int width, int height) const;
  std::pair<int, int> region_of(int x, int y) const;  // grid origin of the core holding pixel (x, y)

  SlideGrid grid_;
  int step_ = 0;
  std::map<std::pair<int, int>, Tile> tiles_;          // (tile row, tile column) -> tile
  std::map<std::pair<int, int>, RegionInfo> regions_;  // (y, x) of the region -> what it said
  std::vector<int32_t> empty_;
  bool labelled_ = false;
};

}  // namespace unibiomed::pipeline
