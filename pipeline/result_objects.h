// From findings to result objects: the SEG segment of a finding (codes and colour of its rule
// target), the SEG of a series with one SR group per segment, and the ResultObject a host
// stores. Shared by the study analysis, ask() and `unibiomed results write`.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <optional>
#include <string>
#include <vector>

#include "config/task_rules.h"
#include "pipeline/analyzer.h"
#include "seg-writer/segmentation_writer.h"
#include "seg-writer/slide_segmentation.h"
#include "seg-writer/source_images.h"
#include "sr-writer/measurement_report.h"

namespace unibiomed::pipeline {

seg::CodedConcept to_seg(const config::CodedConcept& c);
// Text of the model for a DICOM text attribute: every run of control characters and white space
// becomes one space, none at the ends, and so does a backslash (LO's value separator); in
// `free_text` (ST, UT) backslashes and line breaks (LF, CR) are kept; a byte that begins no UTF-8
// character becomes U+FFFD; cut to at most `max_bytes` bytes of UTF-8 (whole characters: LO's 64
// are counted in bytes by validators such as dciodvfy). A model's answer may hold any of these.
std::string dicom_text(const std::string& s, size_t max_bytes, bool free_text);
// The most bytes of an answer or finding text an SR's TEXT item (UT) keeps: far above any answer
// of the model (at most a few thousand characters).
inline constexpr size_t kMaxFreeText = size_t{1} << 20;
// Lower case letters and digits, other characters as single dashes ("Liver lesion 2" ->
// "liver-lesion-2"); "finding" when nothing is left.
std::string file_safe(const std::string& s);

// A finding of `target` as a SEG segment description: its codes and colour; label and text
// made valid for their attributes by dicom_text (an empty label becomes the target's).
seg::SegmentDescription segment_description(const config::Target& target, const std::string& label,
                                            const std::string& text, const std::string& tracking_id,
                                            const std::string& tracking_uid, const seg::AlgorithmIdentity& algorithm);

// One finding to write: its segment (description and masks) and what its SR group says.
struct FindingToWrite {
  seg::Segment segment;
  std::optional<seg::CodedConcept> finding_site;
  std::optional<seg::CodedConcept> laterality;  // the side of a paired organ, below the site
  std::string text;  // the SR's text for it
  // The SR's measurements; without, sr::segment_measurements of the segment.
  std::optional<std::vector<sr::Measurement>> measurements;
  std::optional<double> confidence;  // 0 to 1: the SR's Certainty of Finding
};

struct WrittenFindings {
  std::vector<seg::Segment> segments;       // as written, segment number = index + 1
  std::optional<seg::WrittenSegmentation> seg;  // none when there was no finding
  std::vector<sr::ReportedFinding> reported;    // per segment: tracking UID as written, key region
};

// The SEG of `findings` on `sources` and their SR groups. Throws the writers' errors.
WrittenFindings write_findings(const seg::SourceImages& sources, std::vector<FindingToWrite> findings,
                               const seg::SegmentationOptions& options);

// The tiled SEG of findings on a whole-slide level (seg::write_slide_segmentation: masks per
// tile of the level, `sources` its instances) and their SR groups, each with its region from
// `regions` (on the level's total pixel matrix). Throws the writers' errors.
WrittenFindings write_slide_findings(const seg::SourceImages& sources, const seg::SlideTiles& tiles,
                                     std::vector<FindingToWrite> findings, const std::vector<sr::ImageRegion>& regions,
                                     const seg::SegmentationOptions& options);

// The finding's "Area" as its SR group gives it: the area its outline encloses (the largest piece
// on the key frame), so that the summary and the report agree for a structure in pieces. Leaves
// the measurements as they are when the group has no area in mm2.
void take_reported_area(std::vector<Measurement>& measurements, const sr::ReportedFinding& reported);

// The patient's side of a finding ("right", "left") as CID 244 codes it; none for "".
std::optional<seg::CodedConcept> laterality_code(const std::string& side);

// A written object as hosts get it (its Part 10 bytes).
ResultObject result_object(const std::string& kind, DcmFileFormat& file, const std::string& sop_instance_uid,
                           const std::string& series_instance_uid, const std::string& file_name);

}  // namespace unibiomed::pipeline
