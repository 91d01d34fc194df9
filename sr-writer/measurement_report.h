// Writes a TID 1500 Measurement Report in a Comprehensive 3D SR (PS3.16 TID 1500, PS3.3 A.35.13)
// for the findings of a study: one SR per study, referencing the SEG of each analysed series.
//
// Layout, designed for OHIF 3.13.2 (docs/DICOM-OUTPUT.md): one measurement group per finding,
// which OHIF both draws as the SR's finding and, when the user continues tracking, imports as a
// tracked measurement of the cornerstone tool named by its tracking identifier (a freehand ROI
// for an outline, a probe for a point):
//   - tracking identifier (the tool), tracking unique identifier (the SEG segment's), finding;
//   - with a segment (TID 1411): the referenced segment, its frame on the key slice and that
//     slice's source image; without (TID 1410/1411 row 5): the image region itself;
//   - finding site (on each measurement when the region is at the top of the group, where OHIF
//     would print the site by its code); a Comment with the finding's readable name (OHIF's
//     label for it);
//   - the measurements: first the area on the key slice, INFERRED FROM the image region (an
//     outline or point selected from the key source frame; OHIF takes the drawing from the first
//     measurement), then volume and long axis of the whole segment;
//   - the model's sentence as a Comment.
// pixelmed and dciodvfy accept it without errors. Answers without a mask (VQA, report
// generation) go into the report-level Qualitative Evaluations as TEXT. The SEGs and every source
// image are in the evidence sequence.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "seg-writer/segment_description.h"
#include "seg-writer/source_images.h"

class DcmDataset;
class DcmFileFormat;

namespace unibiomed::sr {

using seg::CodedConcept;

// The one error type leaving sr-writer/: names the finding, series or attribute at fault.
class ReportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A numeric measurement: concept (CID 7469), value, UCUM unit.
struct Measurement {
  CodedConcept concept;
  double value = 0;
  CodedConcept unit;
};
Measurement area_mm2(double value);      // (42798000, SCT, "Area"), mm2
Measurement volume_mm3(double value);    // (118565006, SCT, "Volume"), mm3
Measurement long_axis_mm(double value);  // (103339001, SCT, "Long axis"), mm
Measurement area_pixels(double value);   // (42798000, SCT, "Area"), {pixels}
Measurement certainty_percent(double value);  // (111012, DCM, "Certainty of Finding"), %

// Where a viewer draws the finding: image coordinates on one source frame, (column, row) with
// (0, 0) the top left corner of the top left pixel (PS3.3 C.18.6.1.2).
struct ImageRegion {
  std::size_t frame = 0;  // source frame index
  enum class Shape {
    Outline,  // a closed polygon (written as a POLYLINE whose last point repeats the first)
    Point,    // one point, e.g. a centroid
  };
  Shape shape = Shape::Outline;
  std::vector<std::array<float, 2>> points;  // an outline without the repeated first point
  std::optional<double> area_mm2;            // the area the region encloses on this frame
  // The same area in pixels: written (UCUM "{pixels}") when the pixel spacing is unknown, so that
  // the region still has a measurement to be INFERRED FROM (OHIF reads the drawing from there).
  std::optional<double> area_pixels;
  // Whole slides: the points lie on the total pixel matrix (columns, rows) of the frame's
  // instance, a tiled level, rather than on the frame; the SCOORD then references the instance
  // without a frame number (PS3.3 C.18.6.1.2: coordinates of a tiled image without a frame are on
  // its total pixel matrix).
  std::optional<std::array<unsigned, 2>> total_pixel_matrix;
};

struct ReportedFinding {
  // The finding's readable name; default "<finding meaning> <n>". The group's label Comment is
  // "<name> (<finding site>)", or "<name>" when the finding is its site (an organ outlined); its
  // Tracking Identifier names the viewer tool instead.
  std::string tracking_id;
  std::string tracking_uid;  // must equal the SEG segment's Tracking UID
  CodedConcept finding;      // e.g. the segment's property type
  std::optional<CodedConcept> finding_site;
  // The side of a paired organ (CID 244: (24028007, SCT, "Right"), (7771000, SCT, "Left")),
  // written as the finding site's Laterality (272741003, SCT); needs a finding site.
  std::optional<CodedConcept> laterality;
  std::string text;                       // the model's sentence for this finding
  // Of the whole segment; an Area here is left out when the region carries its own (the group's
  // one area is its outline's).
  std::vector<Measurement> measurements;
  // The model's confidence in the finding, 0 to 1: a NUM "Certainty of Finding" in percent (one
  // decimal) after the measurements (the concept of the CAD reports, e.g. TID 4023); none when
  // not given.
  std::optional<double> certainty;
  std::uint16_t segment_number = 0;       // in the series' SEG; 0 when there is no segment
  std::optional<ImageRegion> region;      // required: OHIF needs geometry for every finding
};

struct SeriesFindings {
  const seg::SourceImages* sources = nullptr;  // the analysed series
  DcmDataset* segmentation = nullptr;          // its SEG, when any finding has a segment
  std::vector<ReportedFinding> findings;
};

// Report-level text: an answer to a question, a generated report.
struct ReportText {
  CodedConcept concept {"121106", "DCM", "Comment"};
  std::string text;
};

// An earlier report that this one revises: the node's report of an earlier analysis of the same
// study, whose findings this one gives again as they are now (PS3.3 C.17.2.3, Predecessor
// Documents Sequence). Viewers and reporting systems that follow the chain show the newest.
struct DocumentReference {
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string sop_class_uid;
  std::string sop_instance_uid;
};

struct ReportOptions {
  seg::AlgorithmIdentity algorithm;            // TID 4019: name, version, parameters (weights hash)
  std::string device_name = "UniBiomed node";  // the observer device (TID 1004)
  std::string device_uid;                      // default derived from device_name
  std::string series_description;              // default "<algorithm name> findings"
  int series_number = 9002;
  int instance_number = 1;
  // Procedure reported (TID 1500 row 4, CID 100).
  CodedConcept procedure{"363679005", "SCT", "Imaging procedure"};
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::string uid_seed;  // deterministic UIDs, as for the SEG
  std::vector<DocumentReference> predecessors;  // reports this one revises (none: a first report)
};

struct WrittenReport {
  std::unique_ptr<DcmFileFormat> file;
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::size_t measurement_groups = 0;

  WrittenReport();
  WrittenReport(WrittenReport&&) noexcept;
  WrittenReport& operator=(WrittenReport&&) noexcept;
  ~WrittenReport();
};

// Builds the SR. Returns std::nullopt when there is nothing to report (no finding, no text).
// Throws ReportError for inconsistent input: series of different studies, a finding without a
// region or tracking UID, a segment number the SEG does not have, a tracking UID that differs
// from the SEG segment's, a region outside its frame, a measurement that is not finite, a
// predecessor with a missing or malformed UID or the report's own.
std::optional<WrittenReport> write_measurement_report(const std::vector<SeriesFindings>& series,
                                                      const std::vector<ReportText>& texts,
                                                      const ReportOptions& options = {});

}  // namespace unibiomed::sr
