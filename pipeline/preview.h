// Preview images for people who want to look: the key slice of a finding with the mask's
// outline in the finding's colour, a light tint inside, and the label written on it.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dicom/raster_file.h"
#include "dicom/series.h"
#include "dicom/view.h"
#include "pipeline/analyzer.h"

namespace unibiomed::pipeline {

// The part of a view that shows the source frame (padding removed, view scale undone), so
// that it is pixel-aligned with masks on the source grid.
dicom::RgbImage view_on_source_grid(const dicom::View& view);

// `image` and `mask` share the source grid (mask: width x height, non-zero = inside).
// Throws std::invalid_argument when the sizes differ.
dicom::RgbImage render_preview(const dicom::RgbImage& image, const std::vector<uint8_t>& mask,
                               std::array<uint8_t, 3> colour, const std::string& label);

// The preview of one finding: its key view (`request`) rendered as the model saw it (the
// question's CT window and box), on the source grid, with `mask` (source grid) outlined.
struct PreviewOf {
  const dicom::Series* series = nullptr;
  dicom::ViewRequest request;
  std::string modality;                   // the model's modality class ("CT" takes `window`)
  std::string window;                     // CT window preset, "" = the modality's rendering
  std::optional<std::array<int, 4>> box;  // region question: drawn as the model saw it
  const std::vector<uint8_t>* mask = nullptr;
  std::array<uint8_t, 3> colour{255, 0, 0};
  std::string label;
};
// Throws dicom::DicomError or std::invalid_argument when the view cannot be drawn.
Preview finding_preview(const PreviewOf& what, const std::string& file_name, const std::string& tracking_uid);

}  // namespace unibiomed::pipeline
