// Which Pixel Spacing and Slice Thickness values (mm) are sizes at all: positive, and at most
// 10 m so that areas and volumes stay finite; and which Image Position (Patient) coordinates
// place anything: within 1 km of the origin, so that distances between slices stay sizes. The
// reader reads other values ("0\0", a negative, an absurd one) as absent, the SEG writer states
// no spacing or position for them, and the series' notes say why (pipeline/geometry_notes).
// Header-only: seg-writer uses it without linking dicom/.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

namespace unibiomed::dicom {

inline constexpr double kLargestSizeMm = 1e4;

// False for NaN too.
inline constexpr bool is_size_mm(double mm) {
  return mm > 0 && mm <= kLargestSizeMm;
}

inline constexpr double kLargestCoordinateMm = 1e6;

// False for NaN too.
inline constexpr bool is_coordinate_mm(double mm) {
  return mm >= -kLargestCoordinateMm && mm <= kLargestCoordinateMm;
}

}  // namespace unibiomed::dicom
