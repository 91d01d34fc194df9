// Slices of a series arranged in space: stacks of parallel, equally sized slices sorted along
// their normal (PS3.3 C.7.6.2.1.1: IPP is the centre of the first transmitted voxel, IOP the
// row and column direction cosines), and volumes built from a stack. A series that mixes
// orientations, sizes, frames of reference or acquisitions is split into consistent stacks,
// each split and each refusal explained in words; nothing is guessed silently.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <string>
#include <vector>

#include "dicom/series.h"

namespace unibiomed::dicom {

// One slice: a frame of an instance of the series.
struct SliceRef {
  size_t instance_index = 0;  // into Series::instances
  int frame_number = 1;       // 1-based
  double position = 0;        // along the stack normal, mm (dot(IPP, normal))
};

struct SliceStack {
  std::vector<SliceRef> slices;         // ordered by increasing position
  std::array<double, 6> orientation{};  // row cosines, column cosines
  Vec3 normal{};                        // row x column
  Vec3 origin{};                        // IPP of the first slice
  double row_spacing = 1;               // mm between rows (PixelSpacing[0])
  double column_spacing = 1;            // mm between columns (PixelSpacing[1])
  double slice_spacing = 0;             // mm between slices (median gap; SliceThickness for 1 slice)
  int rows = 0;
  int columns = 0;
  std::string frame_of_reference_uid;
  std::string label;  // e.g. "axial 60 slices" or "axial, AcquisitionNumber 2"
  // Why this stack cannot become a regular volume grid (gantry tilt, irregular spacing); empty
  // when it can. Its slices are still fine one by one (the model reads slices in 2D).
  std::string volume_problem;
  double gantry_tilt_degrees = 0;  // angle between the normal and the slice-to-slice direction
};

struct StackPlan {
  std::vector<SliceStack> stacks;
  std::vector<std::string> notes;  // how the series was split, and why
  std::string refused;             // why no stack at all could be made ("" = at least one)
};

// Arranges the usable slices of a series (instances with decodable pixels and full geometry).
// Splits by orientation, size, pixel spacing and frame of reference; separates repeated
// positions (several acquisitions or temporal phases) into one stack each when every position
// repeats equally often, else refuses; splits at gaps larger than 1.5x the usual spacing
// (missing slices); marks gantry tilt and irregular spacing as volume problems.
StackPlan plan_stacks(const Series& series);

// A regular volume in modality units (HU for CT), x = columns, y = rows, z = slices.
struct Volume {
  std::array<int, 3> size{};          // columns, rows, slices
  Vec3 spacing{};                     // mm: column spacing, row spacing, slice spacing
  Vec3 origin{};                      // patient coordinates of voxel (0,0,0), mm
  std::array<double, 9> direction{};  // row-major 3x3; columns are the x, y, z axes in patient space
  std::vector<float> voxels;          // x fastest, then y, then z
  float at(int x, int y, int z) const {
    return voxels[(size_t(z) * size_t(size[1]) + size_t(y)) * size_t(size[0]) + size_t(x)];
  }
};

// Decodes every slice of the stack (one frame at a time). Throws DicomError naming the series
// when the stack has a volume_problem or a slice cannot be decoded.
Volume load_volume(const Series& series, const SliceStack& stack);

// Patient coordinates (mm) of the centre of pixel (column, row) of a frame.
Vec3 pixel_to_patient(const FrameInfo& frame, double column, double row);

}  // namespace unibiomed::dicom
