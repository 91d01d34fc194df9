// Preview images for people who want to look: the key slice of a finding with the mask's
// outline in the finding's colour, a light tint inside, and the label written on it.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "dicom/raster_file.h"
#include "dicom/view.h"

namespace unibiomed::pipeline {

// The part of a view that shows the source frame (padding removed, view scale undone), so
// that it is pixel-aligned with masks on the source grid.
dicom::RgbImage view_on_source_grid(const dicom::View& view);

// `image` and `mask` share the source grid (mask: width x height, non-zero = inside).
// Throws std::invalid_argument when the sizes differ.
dicom::RgbImage render_preview(const dicom::RgbImage& image, const std::vector<uint8_t>& mask,
                               std::array<uint8_t, 3> colour, const std::string& label);

}  // namespace unibiomed::pipeline
