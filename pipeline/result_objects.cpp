// Segments, SEG and SR groups of findings.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/result_objects.h"

#include <dcmtk/dcmdata/dcdeftag.h>

#include <cctype>

#include "dicom/text_encoding.h"
#include "seg-writer/part10_file.h"
#include "sr-writer/finding_geometry.h"

namespace unibiomed::pipeline {

seg::CodedConcept to_seg(const config::CodedConcept& c) { return {c.value, c.scheme, c.meaning}; }

std::string dicom_text(const std::string& s, size_t max_bytes, bool free_text) {
  const std::string text = dicom::valid_utf8(s);  // a byte that begins no character: U+FFFD
  std::string out;
  bool space = false;  // a space is pending: written before the next character, never at the ends
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;  // well-formed: the lead byte says
    const bool line_break = free_text && (c == '\n' || c == '\r');
    if (n == 1 && !line_break && (c <= 0x20 || c == 0x7F || (c == '\\' && !free_text))) {
      space = !out.empty() && out.back() != '\n' && out.back() != '\r';
      ++i;
      continue;
    }
    if (out.size() + (space ? 1 : 0) + n > max_bytes) break;
    if (space) out.push_back(' ');
    space = false;
    out.append(text, i, n);
    i += n;
  }
  return out;
}

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    else if (!out.empty() && out.back() != '-')
      out.push_back('-');
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "finding" : out;
}

seg::SegmentDescription segment_description(const config::Target& target, const std::string& label,
                                            const std::string& text, const std::string& tracking_id,
                                            const std::string& tracking_uid, const seg::AlgorithmIdentity& algorithm) {
  seg::SegmentDescription d;
  d.label = dicom_text(label, 64, false);
  if (d.label.empty()) d.label = dicom_text(target.label, 64, false);
  d.description = dicom_text(text, 1024, true);
  d.category = to_seg(target.category);
  d.type = to_seg(target.type);
  if (target.anatomic_region) d.anatomic_region = to_seg(*target.anatomic_region);
  d.colour = {target.colour[0], target.colour[1], target.colour[2]};
  d.tracking_id = dicom_text(tracking_id, 64, false);
  d.tracking_uid = tracking_uid;
  d.algorithm = algorithm;
  return d;
}

namespace {

// The SR groups of written segments: `regions` (per finding) when given, else each segment's
// key region on its source frames.
void report_findings(WrittenFindings& out, const std::vector<FindingToWrite>& findings,
                     const seg::SourceImages& sources, const std::vector<sr::ImageRegion>* regions) {
  for (size_t n = 0; n < out.segments.size(); ++n) {
    const seg::Segment& segment = out.segments[n];
    const FindingToWrite& f = findings[n];
    sr::ReportedFinding reported;
    reported.tracking_uid = out.seg->tracking_uids.at(n);
    reported.tracking_id =
        segment.description.tracking_id.empty() ? segment.description.label : segment.description.tracking_id;
    reported.finding = segment.description.type;
    reported.finding_site = f.finding_site;
    reported.laterality = f.laterality;
    reported.text = dicom_text(f.text, kMaxFreeText, true);
    reported.certainty = f.confidence;
    reported.measurements = f.measurements ? *f.measurements : sr::segment_measurements(segment, sources);
    reported.segment_number = static_cast<std::uint16_t>(n + 1);
    reported.region = regions ? regions->at(n) : sr::key_region(segment, sources);
    out.reported.push_back(std::move(reported));
  }
}

}  // namespace

WrittenFindings write_findings(const seg::SourceImages& sources, std::vector<FindingToWrite> findings,
                               const seg::SegmentationOptions& options) {
  WrittenFindings out;
  for (auto& f : findings) out.segments.push_back(std::move(f.segment));
  out.seg = seg::write_segmentation(sources, out.segments, options);
  if (out.seg) report_findings(out, findings, sources, nullptr);
  return out;
}

WrittenFindings write_slide_findings(const seg::SourceImages& sources, const seg::SlideTiles& tiles,
                                     std::vector<FindingToWrite> findings, const std::vector<sr::ImageRegion>& regions,
                                     const seg::SegmentationOptions& options) {
  WrittenFindings out;
  for (auto& f : findings) out.segments.push_back(std::move(f.segment));
  out.seg = seg::write_slide_segmentation(sources, tiles, out.segments, options);
  if (out.seg) report_findings(out, findings, sources, &regions);
  return out;
}

std::optional<seg::CodedConcept> laterality_code(const std::string& side) {
  if (side == "right") return seg::CodedConcept{"24028007", "SCT", "Right"};
  if (side == "left") return seg::CodedConcept{"7771000", "SCT", "Left"};
  return std::nullopt;
}

void take_reported_area(std::vector<Measurement>& measurements, const sr::ReportedFinding& reported) {
  if (!reported.region || !reported.region->area_mm2) return;
  for (auto& m : measurements)
    if (m.name == "Area" && m.unit == "mm2") m.value = *reported.region->area_mm2;
}

ResultObject result_object(const std::string& kind, DcmFileFormat& file, const std::string& sop_instance_uid,
                           const std::string& series_instance_uid, const std::string& file_name) {
  ResultObject object;
  object.kind = kind;
  OFString sop_class;
  if (file.getDataset()->findAndGetOFString(DCM_SOPClassUID, sop_class).bad() || sop_class.empty())
    throw PipelineError("the " + kind + " written as " + file_name + " has no SOP Class UID");
  object.sop_class_uid = sop_class.c_str();
  object.sop_instance_uid = sop_instance_uid;
  object.series_instance_uid = series_instance_uid;
  object.bytes = seg::part10_bytes(file);
  object.file_name = file_name;
  return object;
}

}  // namespace unibiomed::pipeline
