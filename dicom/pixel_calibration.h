// The in-plane size of a pixel of a classic (not enhanced multi-frame) image, read the same way
// by dicom/ (measurements) and by the writers (the SR's region areas): Pixel Spacing; else
// Imager Pixel Spacing, which projection radiographs may give alone (PS3.3 10.7.1.1: at the
// detector), divided by the Estimated Radiographic Magnification Factor where the image gives
// one, as the IHE Mammography profile asks of displays and OHIF does; else the ultrasound
// region calibration
// (PS3.3 C.8.5.5), which is how ultrasound images state their scale: the 2D regions with
// physical units of cm in both directions, when they all agree. Each region holds only the
// pixels within its bounds, so a finding is measured with the scale of the regions it lies in
// (mask_spacing): a dual-pane image with two scales is still measured, and a finding outside
// every calibrated region is not. A value that is no size (dicom/size_rule.h) counts as absent. Part of the small
// library unibiomed_dicom_text, which both dicom/ and seg-writer/ link. SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

class DcmItem;
class DcmTagKey;

namespace unibiomed::dicom {

// A 2D ultrasound region calibrated in cm (PS3.3 C.8.5.5.1): the pixels within its bounds
// are `spacing` apart.
struct CalibratedRegion {
  // RegionLocationMinX0, MinY0, MaxX1, MaxY1 (0018,6018/601A/601C/601E): the first and last
  // column and row it holds (0-based, inclusive). Unset when the region does not state all
  // four: it then holds the whole image.
  std::optional<std::array<long, 4>> bounds;
  std::array<double, 2> spacing{};  // mm between rows, then between columns
  bool holds(long column, long row) const {
    return !bounds || (column >= (*bounds)[0] && row >= (*bounds)[1] && column <= (*bounds)[2] && row <= (*bounds)[3]);
  }
};

struct PlaneSpacing {
  // mm between rows, then between columns (the order of Pixel Spacing).
  std::optional<std::array<double, 2>> spacing;
  // Which attribute gave it: "PixelSpacing (0028,0030)", "ImagerPixelSpacing (0018,1164)" (with
  // " / EstimatedRadiographicMagnificationFactor (0018,1114)" when corrected) or
  // "SequenceOfUltrasoundRegions (0018,6011)".
  std::string source;
  // Why the ultrasound regions gave none although the image has some, e.g. "its 2D ultrasound
  // regions (0018,6011) have different scales (0.3 x 0.3 mm and 0.5 x 0.5 mm per pixel)";
  // empty otherwise.
  std::string problem;
  // The 2D regions calibrated in cm, when the image has no Pixel Spacing or Imager Pixel
  // Spacing: what a finding's scale is read from (mask_spacing). `spacing` is set only when
  // they all agree.
  std::vector<CalibratedRegion> regions;
};

PlaneSpacing plane_spacing(DcmItem& image);

// The scale of a finding's mask (`rows` x `columns`, non-zero inside) on an image calibrated
// by ultrasound regions: the scale of the regions that hold at least 90 % of its pixels (an
// outline may run a few pixels past a region's edge). None, with the reason, when more than a
// tenth of it lies outside every calibrated region or in regions of another scale.
struct MaskSpacing {
  std::optional<std::array<double, 2>> spacing;
  std::string problem;  // e.g. "it lies outside the calibrated ultrasound regions (...)"
};
MaskSpacing mask_spacing(const std::vector<CalibratedRegion>& regions, const std::uint8_t* mask, long rows,
                         long columns);

// A Pixel Spacing-like attribute of `item` (the image, or a Pixel Measures functional group):
// exactly two values, both sizes in mm (dicom/size_rule.h); none otherwise.
std::optional<std::array<double, 2>> two_sizes(DcmItem& item, const DcmTagKey& tag);

}  // namespace unibiomed::dicom
