// The in-plane size of a pixel of a classic (not enhanced multi-frame) image, read the same way
// by dicom/ (measurements) and by the writers (the SR's region areas): Pixel Spacing; else
// Imager Pixel Spacing, which projection radiographs may give alone (PS3.3 10.7.1.1: at the
// detector), divided by the Estimated Radiographic Magnification Factor where the image gives
// one, as the IHE Mammography profile asks of displays and OHIF does; else the ultrasound
// region calibration
// (PS3.3 C.8.5.5), which is how ultrasound images state their scale: the 2D regions with
// physical units of cm in both directions, when they all agree. A value that is no size
// (dicom/size_rule.h) counts as absent. Part of the small library unibiomed_dicom_text, which
// both dicom/ and seg-writer/ link.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <optional>
#include <string>

class DcmItem;
class DcmTagKey;

namespace unibiomed::dicom {

struct PlaneSpacing {
  // mm between rows, then between columns (the order of Pixel Spacing).
  std::optional<std::array<double, 2>> spacing;
  // Which attribute gave it: "PixelSpacing (0028,0030)", "ImagerPixelSpacing (0018,1164)" (with
  // " / EstimatedRadiographicMagnificationFactor (0018,1114)" when corrected) or
  // "SequenceOfUltrasoundRegions (0018,6011)".
  std::string source;
  // Why the ultrasound regions gave none although the image has some, e.g. "its 2D ultrasound
  // regions (0018,6011) have different calibrations (0.3 x 0.3 and 0.5 x 0.5 mm per pixel)";
  // empty otherwise.
  std::string problem;
};

PlaneSpacing plane_spacing(DcmItem& image);

// A Pixel Spacing-like attribute of `item` (the image, or a Pixel Measures functional group):
// exactly two values, both sizes in mm (dicom/size_rule.h); none otherwise.
std::optional<std::array<double, 2>> two_sizes(DcmItem& item, const DcmTagKey& tag);

}  // namespace unibiomed::dicom
