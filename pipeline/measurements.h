// Measurements of a mask from the real geometry: area (pixel count x PixelSpacing product) and
// the longest in-plane diameter (maximum Feret diameter). Volumes are summed by consolidation.h
// from the areas and the slice spacing taken from the slice positions.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace unibiomed::pipeline {

// Pixels of a mask that are non-zero.
size_t count_pixels(const std::vector<uint8_t>& mask);

// The longest distance between two points of the mask's outline, in mm: the maximum Feret
// (caliper) diameter. The outline is made of pixel corners (a pixel covers [x, x+1) x [y, y+1)
// in pixel units), so a w x h rectangle of pixels measures exactly its diagonal
// sqrt((w*dx)^2 + (h*dy)^2), as a reader measuring edge to edge would. Corners are scaled to
// mm before distances are taken, so anisotropic pixels are measured correctly.
struct Diameter {
  double length = 0;             // mm (or pixels when the spacing is 1)
  std::array<double, 2> from{};  // end points in pixel coordinates (column, row), corners
  std::array<double, 2> to{};
};
// column_spacing = PixelSpacing[1] (mm between columns), row_spacing = PixelSpacing[0].
// An empty mask gives length 0.
Diameter longest_diameter(const std::vector<uint8_t>& mask, int columns, int rows, double column_spacing,
                          double row_spacing);

}  // namespace unibiomed::pipeline
