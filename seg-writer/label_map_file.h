// Label maps from files, for `unibiomed results write` and for masks made by any other model:
// a NIfTI or NRRD volume in the source series' geometry (read with ITK, which gives LPS patient
// coordinates like DICOM), or one PNG per source frame. Label k marks the pixels of finding k;
// 0 is background. Every mismatch with the source (size, spacing, orientation, slice positions)
// is an error naming the file, never a silent resampling.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "seg-writer/segmentation_writer.h"
#include "seg-writer/source_images.h"

namespace unibiomed::seg {

struct LabelMap {
  // Indexed like SourceImages::frames(): Rows x Columns labels in row-major order, or empty when
  // the frame has no labelled pixel.
  std::vector<std::vector<std::uint16_t>> frames;
  std::vector<std::uint16_t> labels;  // the non-zero labels present, ascending
};

// .nii, .nii.gz, .nrrd or .nhdr. For a source series with geometry, the volume's size, spacing,
// direction and each slice's position must match the source frames (to 0.01 mm and 1e-3 in the
// direction cosines); slices are matched to frames by position, in any order. Without geometry
// (projection images, photographs), the size must match and slice k is source frame k.
// Throws SegmentationError naming the file.
LabelMap read_label_volume(const std::filesystem::path& path, const SourceImages& sources);

// One grey or palette PNG per source frame (8 or 16 bits; the grey value or palette index is
// the label), in slice order (SourceImages::frames_in_slice_order()). Throws SegmentationError
// naming the file.
LabelMap read_label_pngs(const std::vector<std::filesystem::path>& paths, const SourceImages& sources);

// The binary masks of one label, one per frame in which it occurs.
std::vector<FrameMask> masks_for_label(const LabelMap& map, std::uint16_t label);

}  // namespace unibiomed::seg
