// Tissue detection on a whole slide's coarsest level and the regions over the tissue.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/tissue.h"

#include <algorithm>
#include <cmath>

namespace unibiomed::dicom {
namespace {

// One pass of a square max (dilate) or min (erode) filter of radius r, separably; places
// outside the map are left out of the window, so that a closing does not eat the border.
std::vector<uint8_t> square_filter(const std::vector<uint8_t>& in, int columns, int rows, int r, bool dilate) {
  std::vector<uint8_t> across(in.size()), out(in.size());
  auto pick = [dilate](uint8_t a, uint8_t b) { return dilate ? std::max(a, b) : std::min(a, b); };
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < columns; ++x) {
      uint8_t v = in[size_t(y) * size_t(columns) + size_t(x)];
      for (int d = std::max(0, x - r); d <= std::min(columns - 1, x + r); ++d)
        v = pick(v, in[size_t(y) * size_t(columns) + size_t(d)]);
      across[size_t(y) * size_t(columns) + size_t(x)] = v;
    }
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < columns; ++x) {
      uint8_t v = across[size_t(y) * size_t(columns) + size_t(x)];
      for (int d = std::max(0, y - r); d <= std::min(rows - 1, y + r); ++d)
        v = pick(v, across[size_t(d) * size_t(columns) + size_t(x)]);
      out[size_t(y) * size_t(columns) + size_t(x)] = v;
    }
  return out;
}

int ceil_div(long a, long b) {
  return int((a + b - 1) / b);
}

}  // namespace

size_t TissueMap::tissue_cells() const {
  return size_t(std::count(tissue.begin(), tissue.end(), uint8_t(1)));
}

bool TissueMap::overlaps(int x, int y, int width, int height, int level_total_columns, int level_total_rows) const {
  if (width <= 0 || height <= 0 || columns == 0 || rows == 0) return false;
  const double fx = double(level_columns) / double(level_total_columns);
  const double fy = double(level_rows) / double(level_total_rows);
  const int cx0 = std::clamp(int(std::floor(x * fx)) / cell_size, 0, columns - 1);
  const int cy0 = std::clamp(int(std::floor(y * fy)) / cell_size, 0, rows - 1);
  const int cx1 = std::clamp(ceil_div(long(std::ceil((x + width) * fx)), cell_size), cx0 + 1, columns);
  const int cy1 = std::clamp(ceil_div(long(std::ceil((y + height) * fy)), cell_size), cy0 + 1, rows);
  for (int cy = cy0; cy < cy1; ++cy)
    for (int cx = cx0; cx < cx1; ++cx)
      if (at(cx, cy)) return true;
  return false;
}

TissueMap detect_tissue(const SlidePyramid& pyramid, const TissueOptions& options) {
  if (options.max_cells < 1 || options.closing_radius < 0 || options.min_saturation < 0 || options.min_saturation > 1)
    throw DicomError("tissue detection: max_cells must be >= 1, closing_radius >= 0 and min_saturation in [0, 1]");
  TissueMap map;
  map.level = int(pyramid.levels().size()) - 1;
  const SlideLevel& level = pyramid.levels().back();
  map.level_columns = level.total_columns;
  map.level_rows = level.total_rows;
  map.cell_size = std::max(1, ceil_div(std::max(level.total_columns, level.total_rows), options.max_cells));
  map.columns = ceil_div(level.total_columns, map.cell_size);
  map.rows = ceil_div(level.total_rows, map.cell_size);
  const size_t cells = size_t(map.columns) * size_t(map.rows);
  std::vector<uint64_t> sum(cells * 3, 0);
  std::vector<uint32_t> count(cells, 0);
  auto tiles = pyramid.tiles(map.level);
  SlideTile tile;
  while (tiles.next(tile)) {
    for (int y = 0; y < tile.valid_rows; ++y) {
      const int gy = tile.ref.y + y;
      const size_t row = size_t(gy / map.cell_size) * size_t(map.columns);
      const uint8_t* p = tile.image.rgb.data() + size_t(y) * size_t(tile.image.width) * 3;
      for (int x = 0; x < tile.valid_columns; ++x, p += 3) {
        const size_t c = row + size_t((tile.ref.x + x) / map.cell_size);
        sum[3 * c] += p[0], sum[3 * c + 1] += p[1], sum[3 * c + 2] += p[2];
        ++count[c];
      }
    }
  }
  map.tissue.assign(cells, 0);
  for (size_t c = 0; c < cells; ++c) {
    if (count[c] == 0) continue;  // no tile there: glass
    const double r = double(sum[3 * c]) / count[c], g = double(sum[3 * c + 1]) / count[c],
                 b = double(sum[3 * c + 2]) / count[c];
    const double hi = std::max({r, g, b}), lo = std::min({r, g, b});
    const double saturation = hi > 0 ? (hi - lo) / hi : 0;
    map.tissue[c] = (saturation >= options.min_saturation || hi < options.max_dark_value) ? 1 : 0;
  }
  if (options.closing_radius > 0) {
    map.tissue = square_filter(map.tissue, map.columns, map.rows, options.closing_radius, true);
    map.tissue = square_filter(map.tissue, map.columns, map.rows, options.closing_radius, false);
  }
  return map;
}

RegionGrid tissue_regions(const SlidePyramid& pyramid, const TissueMap& tissue, int level, int size, int overlap) {
  if (level < 0 || level >= int(pyramid.levels().size()))
    throw DicomError("slide level " + std::to_string(level) + " does not exist (" +
                     std::to_string(pyramid.levels().size()) + " levels)");
  if (size < 16) throw DicomError("slide region size " + std::to_string(size) + " is under 16 pixels");
  if (overlap < 0 || overlap > size / 2)
    throw DicomError("slide region overlap " + std::to_string(overlap) + " is not in [0, " + std::to_string(size / 2) +
                     "] for regions of " + std::to_string(size) + " pixels");
  const SlideLevel& l = pyramid.levels()[size_t(level)];
  RegionGrid grid;
  grid.level = level;
  grid.size = size;
  grid.overlap = overlap;
  auto starts = [&](int total) {
    std::vector<int> out;
    for (int p = 0;; p += size - overlap) {
      out.push_back(p);
      if (p + size >= total) break;
    }
    return out;
  };
  const std::vector<int> xs = starts(l.total_columns), ys = starts(l.total_rows);
  grid.grid_columns = int(xs.size());
  grid.grid_rows = int(ys.size());
  for (int y : ys)
    for (int x : xs) {
      const int w = std::min(size, l.total_columns - x), h = std::min(size, l.total_rows - y);
      if (tissue.overlaps(x, y, w, h, l.total_columns, l.total_rows)) grid.regions.push_back({x, y, w, h});
    }
  return grid;
}

}  // namespace unibiomed::dicom
