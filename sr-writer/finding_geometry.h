// What the report says about a segment's shape, computed from its masks and the source geometry:
// the key frame and the outline a viewer draws there, and the measurements (area in 2D; volume
// and long axis in 3D). The pipeline and `unibiomed results write` use the same functions.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "seg-writer/segmentation_writer.h"
#include "seg-writer/source_images.h"
#include "sr-writer/measurement_report.h"

namespace unibiomed::sr {

// The outer boundary of the largest 4-connected region of a binary mask (Rows x Columns,
// row-major, non-zero = inside), traced along pixel edges: a polygon whose vertices are pixel
// corners, so that its area is the region's pixel count (holes included). Empty for an empty mask.
std::vector<std::array<float, 2>> outline_of_largest_region(const std::vector<std::uint8_t>& mask, unsigned rows,
                                                            unsigned columns);

// The frame where the segment has most pixels (first in slice order on ties), the outline of its
// largest region there, and the area that outline encloses (in pixels, and in mm2 when the pixel
// spacing is known).
// Probabilities count as inside from `threshold`. Throws ReportError for a segment without pixels.
ImageRegion key_region(const seg::Segment& segment, const seg::SourceImages& sources, float threshold = 0.5f);

// Area (mm2) for a single image or images without slice geometry; volume (mm3, pixel count x
// pixel area x slice spacing) and long axis (mm: the longest in-plane diameter on any slice,
// between outer pixel edges, as RECIST measures it) for a volume. Empty without pixel spacing,
// or where a single image's mask lies outside the calibrated ultrasound regions of its frame.
std::vector<Measurement> segment_measurements(const seg::Segment& segment, const seg::SourceImages& sources,
                                              float threshold = 0.5f);

}  // namespace unibiomed::sr
