// Where the tissue is on a whole slide, and the regions over it that the model is asked about.
// The tissue map is measured on the coarsest pyramid level, one tile at a time, in cells of
// several pixels (the map never has more than max_cells cells along a side, whatever the
// slide's size). A cell is tissue when its mean colour is saturated (HSV saturation
// (max - min) / max at least min_saturation: eosin and haematoxylin are, white glass is not)
// or dark (max channel under max_dark_value: dense tissue, pigment); a closing (dilation then
// erosion with a square of 2 * closing_radius + 1 cells) fills pale gaps inside the section.
// Places without a tile (TILED_SPARSE) are glass.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "dicom/slide.h"

namespace unibiomed::dicom {

struct TissueOptions {
  double min_saturation = 0.08;  // (max - min) / max of a cell's mean RGB
  int max_dark_value = 200;      // a cell whose brightest mean channel is below this is tissue
  int closing_radius = 1;        // in cells
  int max_cells = 512;           // the map's longest side, in cells
};

struct TissueMap {
  int level = 0;              // the pyramid level it was measured on
  int columns = 0, rows = 0;  // cells
  int cell_size = 1;          // pixels of that level per cell side
  // The measured level's size, to map other levels onto the map.
  int level_columns = 0, level_rows = 0;
  std::vector<uint8_t> tissue;  // rows x columns, 1 = tissue

  bool at(int column, int row) const { return tissue[size_t(row) * size_t(columns) + size_t(column)] != 0; }
  size_t tissue_cells() const;
  // Whether any tissue cell overlaps [x, x+width) x [y, y+height) of a level whose total pixel
  // matrix is level_total_columns x level_total_rows.
  bool overlaps(int x, int y, int width, int height, int level_total_columns, int level_total_rows) const;
};

TissueMap detect_tissue(const SlidePyramid& pyramid, const TissueOptions& options = {});

// Square regions of `size` pixels on `level`, `overlap` pixels shared with each neighbour
// (the grid's step is size - overlap; the last row and column are clipped to the matrix), only
// those over tissue, in row-major order of their top-left corners. Throws DicomError for a
// level that does not exist or an overlap that is not in [0, size / 2].
struct RegionGrid {
  int level = 0;
  int size = 0, overlap = 0;
  int grid_columns = 0, grid_rows = 0;      // regions on the whole level
  std::vector<std::array<int, 4>> regions;  // x, y, width, height over tissue
};
RegionGrid tissue_regions(const SlidePyramid& pyramid, const TissueMap& tissue, int level, int size, int overlap);

}  // namespace unibiomed::dicom
