// Geometry attributes present but unreadable.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/geometry_notes.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>

#include "dicom/pixel_calibration.h"
#include "dicom/size_rule.h"
#include "dicom/text_encoding.h"

namespace unibiomed::pipeline {

namespace {

struct GeometryAttribute {
  const char* name;
  DcmTagKey tag;
  DcmTagKey group;       // the functional group macro that holds it in enhanced multi-frame images
  size_t values;         // how many numbers it holds
  // What dicom/ reads (dicom/size_rule.h): any number, a size (is_size_mm), coordinates
  // (is_coordinate_mm).
  enum class Rule { Number, Size, Coordinate } rule;
  const char* consequence;
  std::function<bool(const dicom::FrameInfo&)> read;  // whether dicom/ read it
};

// How many backslash-separated values the text holds and whether they are all numbers.
std::string what_is_wrong(const std::string& text, size_t values, GeometryAttribute::Rule rule) {
  size_t count = 0;
  bool numbers = true, finite = true, sizes = true, coordinates = true;
  size_t begin = 0;
  while (true) {
    const size_t end = text.find('\\', begin);
    const std::string part = text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    ++count;
    const size_t b = part.find_first_not_of(' ');
    const std::string trimmed = b == std::string::npos ? "" : part.substr(b, part.find_last_not_of(' ') - b + 1);
    char* stop = nullptr;
    const double value = std::strtod(trimmed.c_str(), &stop);
    if (trimmed.empty() || *stop != '\0') numbers = false;
    if (!std::isfinite(value)) finite = false;
    if (!dicom::is_size_mm(value)) sizes = false;
    if (!dicom::is_coordinate_mm(value)) coordinates = false;
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  if (!numbers) return "is not a number";
  if (count != values) return "has " + std::to_string(count) + " values, not " + std::to_string(values);
  if (!finite) return "is not a finite number";
  if (rule == GeometryAttribute::Rule::Size && !sizes) return "is not a size (a positive number of mm up to 10 m)";
  if (rule == GeometryAttribute::Rule::Coordinate && !coordinates)
    return "is not a position (coordinates in mm within 1 km of the origin)";
  return "could not be read";
}

DcmItem* first_item(DcmItem& item, const DcmTagKey& sequence) {
  DcmItem* found = nullptr;
  return item.findAndGetSequenceItem(sequence, found, 0).good() ? found : nullptr;
}

// The attribute's text where dicom/ reads it for the first frame: the first per-frame functional
// group item, then the shared one (enhanced multi-frame), or the dataset itself.
std::string value_text(DcmDataset& ds, const GeometryAttribute& a) {
  OFString value;
  if (ds.tagExists(DCM_PerFrameFunctionalGroupsSequence) || ds.tagExists(DCM_SharedFunctionalGroupsSequence)) {
    for (const DcmTagKey& groups : {DCM_PerFrameFunctionalGroupsSequence, DCM_SharedFunctionalGroupsSequence}) {
      DcmItem* frame = first_item(ds, groups);
      DcmItem* macro = frame ? first_item(*frame, a.group) : nullptr;
      if (macro && macro->findAndGetOFStringArray(a.tag, value).good() && !value.empty()) return value.c_str();
    }
    return "";
  }
  return ds.findAndGetOFStringArray(a.tag, value).good() ? value.c_str() : "";
}

}  // namespace

std::vector<std::string> geometry_notes(const dicom::Series& series) {
  using Rule = GeometryAttribute::Rule;
  const GeometryAttribute attributes[] = {
      {"PixelSpacing", DCM_PixelSpacing, DCM_PixelMeasuresSequence, 2, Rule::Size, "no measurements",
       [](const dicom::FrameInfo& f) { return f.pixel_spacing.has_value(); }},
      {"ImagePositionPatient", DCM_ImagePositionPatient, DCM_PlanePositionSequence, 3, Rule::Coordinate,
       "no volume measurements", [](const dicom::FrameInfo& f) { return f.image_position.has_value(); }},
      {"ImageOrientationPatient", DCM_ImageOrientationPatient, DCM_PlaneOrientationSequence, 6, Rule::Number,
       "no volume measurements", [](const dicom::FrameInfo& f) { return f.image_orientation.has_value(); }},
      {"SliceThickness", DCM_SliceThickness, DCM_PixelMeasuresSequence, 1, Rule::Size, "no slice thickness",
       [](const dicom::FrameInfo& f) { return f.slice_thickness.has_value(); }},
  };
  std::vector<std::string> notes;
  std::set<std::string> said;  // the attributes noted as unreadable
  // " in 3 of 5 instances", for a series of more than one.
  auto in_instances = [&](size_t affected) {
    return series.instances.size() > 1
               ? " in " + std::to_string(affected) + " of " + std::to_string(series.instances.size()) + " instances"
               : std::string();
  };
  for (const auto& a : attributes) {
    size_t affected = 0;
    std::string first;
    for (const auto& instance : series.instances) {
      DcmDataset* ds = instance.dataset();
      if (!ds || instance.frames().empty() || a.read(instance.frames().front())) continue;
      const std::string value = value_text(*ds, a);
      if (value.empty()) continue;
      std::string text = dicom::valid_utf8(value);  // quoted in the notes (JSON)
      if (text.find_first_not_of(' ') == std::string::npos) continue;
      if (affected++ == 0) first = text;
    }
    if (!affected) continue;
    std::string note = "series " + series.identity.series_instance_uid + ": " + a.consequence + ": " + a.name + " " +
                       what_is_wrong(first, a.values, a.rule) + " ('" +
                       (first.size() > 64 ? first.substr(0, 64) + "..." : first) + "')" + in_instances(affected);
    notes.push_back(note);
    said.insert(a.name);
  }

  const std::string series_name = "series " + series.identity.series_instance_uid + ": ";
  // Ultrasound regions that state no usable scale (dicom/pixel_calibration.h). Regions of
  // different scales are no problem of the series: each finding is measured with the scale of
  // the regions it lies in, and the one that cannot be says so.
  if (!said.count("PixelSpacing")) {
    size_t affected = 0;
    std::string first;
    for (const auto& instance : series.instances) {
      DcmDataset* ds = instance.dataset();
      if (!ds || instance.frames().empty() || instance.frames().front().pixel_spacing ||
          !instance.frames().front().calibration_regions.empty())
        continue;
      const std::string problem = dicom::plane_spacing(*ds).problem;
      if (problem.empty()) continue;
      if (affected++ == 0) first = problem;
    }
    if (affected) {
      notes.push_back(series_name + "no measurements" + in_instances(affected) + ": " + first);
      said.insert("PixelSpacing");
    }
  }

  // A cross-sectional series is expected to have its geometry, and radiographs and ultrasound
  // their scale; where a series has none at all, say so (a missing attribute is otherwise
  // silent, and so would be the missing sizes).
  const auto& modality = series.modality.modality;
  size_t frames = 0, with_spacing = 0, with_position = 0, with_orientation = 0, with_plane = 0;
  for (const auto& instance : series.instances)
    for (const auto& f : instance.frames()) {
      ++frames;
      with_spacing += f.pixel_spacing || !f.calibration_regions.empty() ? 1 : 0;
      with_position += f.image_position ? 1 : 0;
      with_orientation += f.image_orientation ? 1 : 0;
      with_plane += f.image_position && f.image_orientation ? 1 : 0;
    }
  // Which scale the modality's images are expected to state (photographs of endoscopy, fundus
  // or skin, slides and OCT are left alone: they seldom have one, or have theirs elsewhere).
  const char* scale = nullptr;
  if (modality == dicom::ModelModality::CT || modality == dicom::ModelModality::MRI)
    scale = "PixelSpacing (0028,0030)";
  else if (modality == dicom::ModelModality::XRay || modality == dicom::ModelModality::Mammography)
    scale = "PixelSpacing (0028,0030) or ImagerPixelSpacing (0018,1164)";
  else if (modality == dicom::ModelModality::Ultrasound)
    scale = "PixelSpacing (0028,0030) or ultrasound region calibrated in cm (SequenceOfUltrasoundRegions (0018,6011))";
  if (scale && frames && !with_spacing && !said.count("PixelSpacing"))
    notes.push_back(series_name + "no measurements: its images have no " + scale);
  if (modality != dicom::ModelModality::CT && modality != dicom::ModelModality::MRI) return notes;
  if (frames > 1 && !with_plane && !said.count("ImagePositionPatient") && !said.count("ImageOrientationPatient")) {
    const std::string position = "ImagePositionPatient (0020,0032)",
                      orientation = "ImageOrientationPatient (0020,0037)";
    notes.push_back(series_name + "no volume measurements: " +
                    (!with_position && !with_orientation ? "its frames have no " + position + " and no " + orientation
                     : !with_position                    ? "its frames have no " + position
                     : !with_orientation                 ? "its frames have no " + orientation
                                                         : "no frame has both " + position + " and " + orientation));
  }
  return notes;
}

}  // namespace unibiomed::pipeline
