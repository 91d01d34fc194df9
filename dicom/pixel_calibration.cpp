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
  size_t two_d = 0;
  std::vector<std::array<double, 2>> calibrations;
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
    // The deltas may be negative where an axis runs the other way; their size is the spacing.
    const std::array<double, 2> mm{std::fabs(dy) * 10, std::fabs(dx) * 10};
    if (!is_size_mm(mm[0]) || !is_size_mm(mm[1])) continue;
    calibrations.push_back(mm);
  }
  if (!two_d) return out;
  if (calibrations.empty()) {
    out.problem = "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) state no size in cm per pixel";
    return out;
  }
  for (const auto& c : calibrations)
    for (size_t k = 0; k < 2; ++k)
      if (std::fabs(c[k] - calibrations.front()[k]) > kSameCalibration * calibrations.front()[k]) {
        out.problem = "its 2D ultrasound regions (SequenceOfUltrasoundRegions (0018,6011)) have different scales (" +
                      millimetres(calibrations.front()) + " and " + millimetres(c) +
                      " per pixel), and a finding could lie in either";
        return out;
      }
  out.spacing = calibrations.front();
  out.source = "SequenceOfUltrasoundRegions (0018,6011)";
  return out;
}

}  // namespace unibiomed::dicom
