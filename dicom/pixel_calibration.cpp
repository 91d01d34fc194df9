// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/pixel_calibration.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "dicom/size_rule.h"

namespace unibiomed::dicom {
namespace {

std::optional<long> code(DcmItem& item, const DcmTagKey& tag) {
  Uint16 value = 0;
  if (item.findAndGetUint16(tag, value).good()) return value;
  return std::nullopt;
}

// PS3.3 C.8.5.5.1.1 and C.8.5.5.1.15.
constexpr long kSpatialFormat2D = 0x0001;
constexpr long kUnitsCentimetre = 0x0003;
constexpr double kSameCalibration = 1e-4;  // relative

bool same_scale(const std::array<double, 2>& a, const std::array<double, 2>& b) {
  for (size_t k = 0; k < 2; ++k)
    if (std::fabs(a[k] - b[k]) > kSameCalibration * b[k]) return false;
  return true;
}

std::string millimetres(const std::array<double, 2>& s) {
  char text[64];
  std::snprintf(text, sizeof text, "%g x %g mm", s[1], s[0]);
  return text;
}

}  // namespace

std::optional<std::array<double, 2>> two_sizes(DcmItem& item, const DcmTagKey& tag) {
  DcmElement* element = nullptr;
  if (item.findAndGetElement(tag, element).bad() || !element || element->getVM() != 2) return std::nullopt;
  std::array<double, 2> values{};
  for (unsigned long i = 0; i < 2; ++i) {
    Float64 v = 0;
    if (element->getFloat64(v, i).bad() || !is_size_mm(v)) return std::nullopt;
    values[i] = v;
  }
  return values;
}

PlaneSpacing plane_spacing(DcmItem& image) {
  PlaneSpacing out;
  if ((out.spacing = two_sizes(image, DCM_PixelSpacing))) {
    out.source = "PixelSpacing (0028,0030)";
    return out;
  }
  if ((out.spacing = two_sizes(image, DCM_ImagerPixelSpacing))) {
    out.source = "ImagerPixelSpacing (0018,1164)";
    // At the detector: the patient lies nearer the source, magnified by this factor (what the
    // IHE Mammography profile requires a display to correct by, and OHIF does). A value that is
    // no plausible magnification (not a number from 1 to 10) is not applied.
    Float64 factor = 0;
    if (image.findAndGetFloat64(DCM_EstimatedRadiographicMagnificationFactor, factor).good() && factor >= 1 &&
        factor <= 10) {
      for (double& v : *out.spacing) v /= factor;
      out.source += " / EstimatedRadiographicMagnificationFactor (0018,1114)";
    }
    return out;
  }
  DcmSequenceOfItems* regions = nullptr;
  if (image.findAndGetSequence(DCM_SequenceOfUltrasoundRegions, regions).bad() || !regions) return out;
  size_t two_d = 0, holding_nothing = 0;
  for (unsigned long i = 0; i < regions->card(); ++i) {
    DcmItem* region = regions->getItem(i);
    if (!region || code(*region, DCM_RegionSpatialFormat) != kSpatialFormat2D) continue;
    ++two_d;
    if (code(*region, DCM_PhysicalUnitsXDirection) != kUnitsCentimetre ||
        code(*region, DCM_PhysicalUnitsYDirection) != kUnitsCentimetre)
      continue;
    Float64 dx = 0, dy = 0;
    if (region->findAndGetFloat64(DCM_PhysicalDeltaX, dx).bad() ||
        region->findAndGetFloat64(DCM_PhysicalDeltaY, dy).bad())
      continue;
    CalibratedRegion calibrated;
    // The deltas may be negative where an axis runs the other way; their size is the spacing.
    calibrated.spacing = {std::fabs(dy) * 10, std::fabs(dx) * 10};
    if (!is_size_mm(calibrated.spacing[0]) || !is_size_mm(calibrated.spacing[1])) continue;
    std::array<long, 4> bounds{};
    size_t stated = 0;
    for (const DcmTagKey& tag :
         {DCM_RegionLocationMinX0, DCM_RegionLocationMinY0, DCM_RegionLocationMaxX1, DCM_RegionLocationMaxY1}) {
      Uint32 value = 0;
      if (region->findAndGetUint32(tag, value).good()) bounds[stated++] = static_cast<long>(value);
    }
    if (stated == 4) {
      if (bounds[0] > bounds[2] || bounds[1] > bounds[3]) {
        ++holding_nothing;
        continue;
      }
      calibrated.bounds = bounds;
    }
    out.regions.push_back(calibrated);
  }
  if (!two_d) return out;
  if (out.regions.empty()) {
    out.problem = holding_nothing ? "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) calibrated "
                                    "in cm have bounds that hold no pixel (RegionLocationMinX0 after MaxX1, or MinY0 "
                                    "after MaxY1)"
                                  : "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) state no "
                                    "size in cm per pixel";
    return out;
  }
  for (const auto& r : out.regions)
    if (!same_scale(r.spacing, out.regions.front().spacing)) {
      out.problem = "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) have different scales (" +
                    millimetres(out.regions.front().spacing) + " and " + millimetres(r.spacing) + " per pixel)";
      return out;
    }
  out.spacing = out.regions.front().spacing;
  out.source = "SequenceOfUltrasoundRegions (0018,6011)";
  return out;
}

MaskSpacing mask_spacing(const std::vector<CalibratedRegion>& regions, const std::uint8_t* mask, long rows,
                         long columns) {
  MaskSpacing out;
  // The distinct scales, and which scale each region has.
  std::vector<std::array<double, 2>> scales;
  std::vector<size_t> scale_of(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    size_t s = 0;
    while (s < scales.size() && !same_scale(scales[s], regions[i].spacing)) ++s;
    if (s == scales.size()) scales.push_back(regions[i].spacing);
    scale_of[i] = s;
  }
  // Pixels per scale; a pixel that regions of two scales both hold is contested.
  std::vector<size_t> held(scales.size(), 0);
  size_t total = 0, contested = 0;
  for (long row = 0; row < rows; ++row)
    for (long column = 0; column < columns; ++column) {
      if (!mask[row * columns + column]) continue;
      ++total;
      long scale = -1;  // -1: no region holds it; -2: regions of two scales do
      for (size_t i = 0; i < regions.size() && scale != -2; ++i)
        if (regions[i].holds(column, row))
          scale = scale < 0 || scale == static_cast<long>(scale_of[i]) ? static_cast<long>(scale_of[i]) : -2;
      if (scale >= 0) ++held[static_cast<size_t>(scale)];
      contested += scale == -2 ? 1 : 0;
    }
  if (!total) return out;
  size_t best = 0;
  for (size_t s = 1; s < scales.size(); ++s)
    if (held[s] > held[best]) best = s;
  const size_t in_best = scales.empty() ? 0 : held[best];
  if (10 * in_best >= 9 * total) {
    out.spacing = scales[best];
    return out;
  }
  // Why not: the largest share of what lies elsewhere.
  size_t in_other_scales = 0, second = best;
  for (size_t s = 0; s < scales.size(); ++s)
    if (s != best && held[s] > 0) {
      in_other_scales += held[s];
      if (second == best || held[s] > held[second]) second = s;
    }
  const size_t outside = total - in_best - in_other_scales - contested;
  const std::string where = "SequenceOfUltrasoundRegions (0018,6011)";
  if (in_other_scales > 0 && in_other_scales >= outside && in_other_scales >= contested) {
    out.problem = "it spans 2D ultrasound regions of different scales (" + millimetres(scales[best]) + " and " +
                  millimetres(scales[second]) + " per pixel, " + where + ")";
  } else if (contested >= outside) {
    out.problem = "it lies where 2D ultrasound regions of different scales overlap (" + where + ")";
  } else if (outside == total) {
    out.problem = "it lies outside the calibrated 2D ultrasound regions (" + where + ")";
  } else {
    out.problem = std::to_string((100 * outside + total / 2) / total) +
                  " % of it lies outside the calibrated 2D ultrasound regions (" + where + ")";
  }
  return out;
}

}  // namespace unibiomed::dicom
