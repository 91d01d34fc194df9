// SPDX-License-Identifier: GPL-3.0-or-later
#include "sr-writer/measurement_report.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "seg-writer/decimal_string.h"
#include "seg-writer/dicom_uid.h"
#include "sr-writer/content_tree.h"

namespace unibiomed::sr {

WrittenReport::WrittenReport() = default;
WrittenReport::WrittenReport(WrittenReport&&) noexcept = default;
WrittenReport& WrittenReport::operator=(WrittenReport&&) noexcept = default;
WrittenReport::~WrittenReport() = default;

Measurement area_mm2(double value) {
  return {{"42798000", "SCT", "Area"}, value, {"mm2", "UCUM", "square millimeter"}};
}
Measurement area_pixels(double value) {
  return {{"42798000", "SCT", "Area"}, value, {"{pixels}", "UCUM", "pixels"}};
}
Measurement certainty_percent(double value) {
  return {{"111012", "DCM", "Certainty of Finding"}, value, {"%", "UCUM", "percent"}};
}
Measurement volume_mm3(double value) {
  return {{"118565006", "SCT", "Volume"}, value, {"mm3", "UCUM", "cubic millimeter"}};
}
Measurement long_axis_mm(double value) {
  // SNOMED CT's own term. PS3.16 spells it "Long Axis", which OHIF 3.13.2 abbreviates to "L: "
  // and then prints as "L: : 40.00 mm"; this spelling is shown as "Long axis: 40.00 mm".
  return {{"103339001", "SCT", "Long axis"}, value, {"mm", "UCUM", "millimeter"}};
}

using namespace detail;

namespace {

// Concept names of PS3.16 (DCM, SCT, UMLS) used by TID 1500 and the templates it includes.
namespace concept {
  const CodedConcept kImagingMeasurementReport{"126000", "DCM", "Imaging Measurement Report"};
  const CodedConcept kLanguage{"121049", "DCM", "Language of Content Item and Descendants"};
  const CodedConcept kEnglish{"en-US", "RFC5646", "English (United States)"};
  const CodedConcept kProcedureReported{"121058", "DCM", "Procedure reported"};
  const CodedConcept kImageLibrary{"111028", "DCM", "Image Library"};
  const CodedConcept kImageLibraryGroup{"126200", "DCM", "Image Library Group"};
  const CodedConcept kImagingMeasurements{"126010", "DCM", "Imaging Measurements"};
  const CodedConcept kAlgorithmName{"111001", "DCM", "Algorithm Name"};
  const CodedConcept kAlgorithmVersion{"111003", "DCM", "Algorithm Version"};
  const CodedConcept kAlgorithmParameters{"111002", "DCM", "Algorithm Parameters"};
  const CodedConcept kMeasurementGroup{"125007", "DCM", "Measurement Group"};
  const CodedConcept kTrackingIdentifier{"112039", "DCM", "Tracking Identifier"};
  const CodedConcept kTrackingUniqueIdentifier{"112040", "DCM", "Tracking Unique Identifier"};
  const CodedConcept kFinding{"121071", "DCM", "Finding"};
  const CodedConcept kFindingSite{"363698007", "SCT", "Finding Site"};
  const CodedConcept kLaterality{"272741003", "SCT", "Laterality"};
  const CodedConcept kReferencedSegment{"121191", "DCM", "Referenced Segment"};
  const CodedConcept kReferencedSegmentationFrame{"121214", "DCM", "Referenced Segmentation Frame"};
  const CodedConcept kSourceImageForSegmentation{"121233", "DCM", "Source image for segmentation"};
  const CodedConcept kImageRegion{"111030", "DCM", "Image Region"};
  const CodedConcept kComment{"121106", "DCM", "Comment"};
  const CodedConcept kQualitativeEvaluations{"C0034375", "UMLS", "Qualitative Evaluations"};
}  // namespace concept

// Tracking identifiers of the cornerstone tools OHIF 3.x maps a measurement group to when it
// imports an SR as tracked measurements (@cornerstonejs/adapters MeasurementReport: the tool is
// looked up by this text; a group whose identifier names no tool is matched by its top-level
// geometry, and one without geometry fails the import). An outline is a freehand ROI, a point
// a probe. The readable name of the finding is the group's first Comment.
const char* const kFreehandTrackingIdentifier = "Cornerstone3DTools@^0.1.0:PlanarFreehandROI";
const char* const kProbeTrackingIdentifier = "Cornerstone3DTools@^0.1.0:Probe";

std::string get(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  item.findAndGetOFStringArray(tag, value);
  return value.c_str();
}

// What the report needs of a SEG: its identity, its segments' tracking UIDs, and which SEG frame
// holds a segment on a source frame.
struct SegmentationInfo {
  std::string study, series, sop_class, sop_instance;
  std::map<std::uint16_t, std::string> tracking_uid_of_segment;
  std::map<std::tuple<std::uint16_t, std::string, int>, Sint32> frame_of;  // (segment, SOP, frame) -> SEG frame
  std::map<std::uint16_t, Sint32> first_frame_of_segment;

  // The SEG frame of `segment` on the source frame, or the segment's first frame.
  Sint32 frame(std::uint16_t segment, const seg::SourceFrame& source) const {
    const auto found = frame_of.find({segment, source.sop_instance_uid, source.frame_number});
    if (found != frame_of.end()) return found->second;
    const auto first = first_frame_of_segment.find(segment);
    return first == first_frame_of_segment.end() ? 1 : first->second;
  }
};

SegmentationInfo read_segmentation(DcmDataset& seg, size_t series_index) {
  SegmentationInfo info;
  info.study = get(seg, DCM_StudyInstanceUID);
  info.series = get(seg, DCM_SeriesInstanceUID);
  info.sop_class = get(seg, DCM_SOPClassUID);
  info.sop_instance = get(seg, DCM_SOPInstanceUID);
  const std::string where = "the segmentation of series " + std::to_string(series_index + 1);
  if (info.sop_class != UID_SegmentationStorage)
    throw ReportError(where + " is not a Segmentation (SOP Class UID '" + info.sop_class + "')");
  if (info.sop_instance.empty() || info.series.empty() || info.study.empty())
    throw ReportError(where + " lacks its SOP Instance, Series or Study Instance UID");
  for (long i = 0;; ++i) {
    DcmItem* segment = nullptr;
    if (seg.findAndGetSequenceItem(DCM_SegmentSequence, segment, i).bad() || !segment) break;
    Uint16 number = 0;
    segment->findAndGetUint16(DCM_SegmentNumber, number);
    info.tracking_uid_of_segment[number] = get(*segment, DCM_TrackingUID);
  }
  DcmSequenceOfItems* frames = nullptr;
  seg.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, frames);
  long i = -1;
  // Visited in order: DCMTK's indexed item access walks the list from its start each time.
  for (DcmObject* object = frames ? frames->nextInContainer(nullptr) : nullptr; object;
       object = frames->nextInContainer(object)) {
    ++i;
    auto* frame = OFstatic_cast(DcmItem*, object);
    DcmItem* identification = nullptr;
    DcmItem* derivation = nullptr;
    DcmItem* source = nullptr;
    Uint16 number = 0;
    if (frame->findAndGetSequenceItem(DCM_SegmentIdentificationSequence, identification).good())
      identification->findAndGetUint16(DCM_ReferencedSegmentNumber, number);
    if (frame->findAndGetSequenceItem(DCM_DerivationImageSequence, derivation).good())
      derivation->findAndGetSequenceItem(DCM_SourceImageSequence, source);
    Sint32 source_frame = 0;
    if (source) source->findAndGetSint32(DCM_ReferencedFrameNumber, source_frame);
    const Sint32 seg_frame = static_cast<Sint32>(i + 1);
    if (source)
      info.frame_of.emplace(std::make_tuple(number, get(*source, DCM_ReferencedSOPInstanceUID), source_frame),
                            seg_frame);
    info.first_frame_of_segment.emplace(number, seg_frame);
  }
  return info;
}

std::string finding_name(size_t series_index, size_t index, const ReportedFinding& f) {
  return "finding " + std::to_string(index + 1) + " of series " + std::to_string(series_index + 1) +
         (f.tracking_id.empty() ? std::string() : " ('" + f.tracking_id + "')");
}

// Whether the group's label names the finding site: not when the finding is the site itself.
bool names_site(const ReportedFinding& f) {
  return f.finding_site && !(f.finding_site->value == f.finding.value && f.finding_site->scheme == f.finding.scheme);
}

void validate_measurement(const Measurement& m, const std::string& owner) {
  if (!std::isfinite(m.value))
    throw ReportError(owner + ": measurement '" + m.concept.meaning + "' is not a finite number");
  if (m.concept.value.empty() || m.concept.scheme.empty() || m.concept.meaning.empty() || m.unit.value.empty() ||
      m.unit.scheme.empty() || m.unit.meaning.empty())
    throw ReportError(owner + ": measurement '" + m.concept.meaning + "' needs a complete concept and unit code");
}

DSRImageReferenceValue frame_reference(const seg::SourceFrame& frame) {
  DSRImageReferenceValue value(frame.sop_class_uid.c_str(), frame.sop_instance_uid.c_str(), OFFalse);
  if (frame.frame_number > 0) value.getFrameList().addItem(frame.frame_number);
  return value;
}

}  // namespace

std::optional<WrittenReport> write_measurement_report(const std::vector<SeriesFindings>& series,
                                                      const std::vector<ReportText>& texts,
                                                      const ReportOptions& options) {
  size_t finding_count = 0;
  for (const auto& s : series) finding_count += s.findings.size();
  std::vector<const ReportText*> report_texts;
  for (const auto& t : texts)
    if (!t.text.empty()) report_texts.push_back(&t);
  if (finding_count == 0 && report_texts.empty()) return std::nullopt;
  if (series.empty()) throw ReportError("report texts need the series they are about: give at least one series");

  // ---- check the input before building anything ------------------------------------------
  std::vector<std::optional<SegmentationInfo>> segmentations(series.size());
  std::string study_uid;
  for (size_t s = 0; s < series.size(); ++s) {
    const auto& entry = series[s];
    if (!entry.sources) throw ReportError("series " + std::to_string(s + 1) + " has no source images");
    if (s == 0) study_uid = entry.sources->study_instance_uid();
    if (entry.sources->study_instance_uid() != study_uid)
      throw ReportError("series " + std::to_string(s + 1) + " belongs to study " + entry.sources->study_instance_uid() +
                        ", series 1 to study " + study_uid + ": one report covers one study");
    if (entry.segmentation) {
      segmentations[s] = read_segmentation(*entry.segmentation, s);
      if (segmentations[s]->study != study_uid)
        throw ReportError("the segmentation of series " + std::to_string(s + 1) + " belongs to another study (" +
                          segmentations[s]->study + ")");
    }
    std::set<std::string> tracking_uids;
    for (size_t i = 0; i < entry.findings.size(); ++i) {
      const auto& f = entry.findings[i];
      const std::string owner = finding_name(s, i, f);
      if (f.tracking_uid.empty()) throw ReportError(owner + " has no tracking UID");
      if (!tracking_uids.insert(f.tracking_uid).second)
        throw ReportError(owner + " repeats the tracking UID " + f.tracking_uid + " of another finding");
      if (f.finding.value.empty() || f.finding.scheme.empty() || f.finding.meaning.empty())
        throw ReportError(owner + " needs a finding code (value, scheme and meaning)");
      if (f.laterality && !f.finding_site)
        throw ReportError(owner + " has a laterality (" + f.laterality->meaning + ") but no finding site to qualify");
      if (!f.region)
        throw ReportError(owner +
                          " has no image region: every finding needs one (OHIF draws nothing and fails on "
                          "a measurement group without geometry)");
      const ImageRegion& r = *f.region;
      if (r.frame >= entry.sources->frame_count())
        throw ReportError(owner + ": its region is on source frame " + std::to_string(r.frame) + ", the series has " +
                          std::to_string(entry.sources->frame_count()) + " frames");
      const size_t needed = r.shape == ImageRegion::Shape::Point ? 1 : 3;
      if ((r.shape == ImageRegion::Shape::Point && r.points.size() != 1) ||
          (r.shape == ImageRegion::Shape::Outline && r.points.size() < needed))
        throw ReportError(
            owner + ": a " +
            (r.shape == ImageRegion::Shape::Point ? "point needs exactly 1" : "outline needs at least 3") +
            " points, got " + std::to_string(r.points.size()));
      const unsigned columns = r.total_pixel_matrix ? (*r.total_pixel_matrix)[0] : entry.sources->columns();
      const unsigned rows = r.total_pixel_matrix ? (*r.total_pixel_matrix)[1] : entry.sources->rows();
      for (const auto& p : r.points)
        if (!(p[0] >= 0 && p[1] >= 0 && p[0] <= columns && p[1] <= rows))
          throw ReportError(owner + ": region point (" + std::to_string(p[0]) + ", " + std::to_string(p[1]) +
                            ") lies outside the " + std::to_string(columns) + "x" + std::to_string(rows) +
                            (r.total_pixel_matrix ? " total pixel matrix" : " image"));
      if (r.area_mm2) validate_measurement(area_mm2(*r.area_mm2), owner);
      if (r.area_pixels) validate_measurement(area_pixels(*r.area_pixels), owner);
      for (const auto& m : f.measurements) validate_measurement(m, owner);
      if (f.segment_number > 0) {
        if (!segmentations[s])
          throw ReportError(owner + " references segment " + std::to_string(f.segment_number) + " but series " +
                            std::to_string(s + 1) + " has no segmentation");
        const auto found = segmentations[s]->tracking_uid_of_segment.find(f.segment_number);
        if (found == segmentations[s]->tracking_uid_of_segment.end())
          throw ReportError(owner + " references segment " + std::to_string(f.segment_number) +
                            ", which the segmentation does not have");
        if (found->second != f.tracking_uid)
          throw ReportError(owner + " has tracking UID " + f.tracking_uid + " but segment " +
                            std::to_string(f.segment_number) + " of the segmentation has " + found->second +
                            ": they must be equal so that viewers link the two");
      }
    }
  }

  for (size_t p = 0; p < options.predecessors.size(); ++p) {
    const DocumentReference& d = options.predecessors[p];
    const std::string owner = "predecessor document " + std::to_string(p + 1);
    check_reference_uids(d, owner);
    if (!options.sop_instance_uid.empty() && d.sop_instance_uid == options.sop_instance_uid)
      throw ReportError(owner + " is this report itself (" + d.sop_instance_uid + ")");
  }

  // ---- the document ------------------------------------------------------------------------
  const std::string seed = options.uid_seed;
  DSRDocument document(DSRTypes::DT_Comprehensive3DSR);
  start_series(document, study_uid, options.algorithm, options.series_description, "findings", options.series_number,
               options.instance_number);

  DSRDocumentTree& tree = document.getTree();
  ContentTree content(tree, "a Comprehensive 3D SR");
  const size_t root = content.root(concept ::kImagingMeasurementReport);
  check(content.item().setTemplateIdentification("1500", "DCMR"), "template identification");
  // TID 1204 language, TID 1001/1002/1004 observer context (the node as a device).
  content.code(root, DSRTypes::RT_hasConceptMod, concept ::kLanguage, concept ::kEnglish, "language");
  const std::string device_uid =
      !options.device_uid.empty() ? options.device_uid : seg::make_uid("device/" + options.device_name);
  add_device_observer(content, root, device_uid, options.device_name, options.algorithm);
  content.code(root, DSRTypes::RT_hasConceptMod, concept ::kProcedureReported, options.procedure, "procedure reported");

  // TID 1600 Image Library: one group per series, every source instance.
  const size_t library =
      content.add(root, DSRTypes::RT_contains, DSRTypes::VT_Container, concept ::kImageLibrary, "image library");
  for (const auto& entry : series) {
    const size_t group = content.add(library, DSRTypes::RT_contains, DSRTypes::VT_Container,
                                     concept ::kImageLibraryGroup, "image library group");
    std::set<size_t> listed;
    for (const auto& frame : entry.sources->frames()) {
      if (!listed.insert(frame.instance).second) continue;
      content.image(group, DSRTypes::RT_contains, {},
                    DSRImageReferenceValue(frame.sop_class_uid.c_str(), frame.sop_instance_uid.c_str(), OFFalse),
                    "image library entry");
    }
  }

  WrittenReport report;
  if (finding_count > 0) {
    const size_t measurements = content.add(root, DSRTypes::RT_contains, DSRTypes::VT_Container,
                                            concept ::kImagingMeasurements, "imaging measurements");
    // TID 4019 Algorithm Identification of everything below.
    content.text(measurements, DSRTypes::RT_hasConceptMod, concept ::kAlgorithmName, algorithm_name(options.algorithm),
                 "algorithm name");
    content.text(measurements, DSRTypes::RT_hasConceptMod, concept ::kAlgorithmVersion,
                 algorithm_version(options.algorithm), "algorithm version");
    if (!options.algorithm.parameters.empty())
      content.text(measurements, DSRTypes::RT_hasConceptMod, concept ::kAlgorithmParameters,
                   options.algorithm.parameters, "algorithm parameters");
    size_t number = 0;
    for (size_t s = 0; s < series.size(); ++s) {
      const auto& entry = series[s];
      for (size_t i = 0; i < entry.findings.size(); ++i) {
        const auto& f = entry.findings[i];
        ++number;
        const std::string owner = finding_name(s, i, f);
        const std::string tracking_id =
            f.tracking_id.empty() ? f.finding.meaning + " " + std::to_string(number) : f.tracking_id;
        const ImageRegion& r = *f.region;
        const bool point = r.shape == ImageRegion::Shape::Point;
        const seg::SourceFrame& key = entry.sources->frame(r.frame);
        // One group per finding, in the shape OHIF 3.13.2 hydrates into a tracked measurement
        // (docs/DICOM-OUTPUT.md, "An SR that viewers draw"): its tracking identifier names the
        // cornerstone tool that draws it, and the first measurement is INFERRED FROM the region.
        const size_t group = content.add(measurements, DSRTypes::RT_contains, DSRTypes::VT_Container,
                                         concept ::kMeasurementGroup, owner + " measurement group");
        content.text(group, DSRTypes::RT_hasObsContext, concept ::kTrackingIdentifier,
                     point ? kProbeTrackingIdentifier : kFreehandTrackingIdentifier, owner + " tracking identifier");
        content.uid(group, DSRTypes::RT_hasObsContext, concept ::kTrackingUniqueIdentifier, f.tracking_uid,
                    owner + " tracking UID");
        content.code(group, DSRTypes::RT_contains, concept ::kFinding, f.finding, owner + " finding");
        // The region as a SCOORD selected from the key frame, below `parent`.
        auto region_below = [&](size_t parent, DSRTypes::E_RelationshipType relationship) {
          content.add(parent, relationship, DSRTypes::VT_SCoord, concept ::kImageRegion, owner + " image region");
          DSRSpatialCoordinatesValue* coordinates = content.item().getSpatialCoordinatesPtr();
          if (!coordinates) throw ReportError(owner + ": cannot set the image region");
          check(coordinates->setGraphicType(point ? DSRTypes::GT_Point : DSRTypes::GT_Polyline),
                owner + " graphic type");
          for (const auto& p : r.points) coordinates->getGraphicDataList().addItem(p[0], p[1]);
          if (!point) coordinates->getGraphicDataList().addItem(r.points.front()[0], r.points.front()[1]);  // closed
          const size_t region = tree.getNodeID();
          content.image(region, DSRTypes::RT_selectedFrom, {},
                        r.total_pixel_matrix
                            ? DSRImageReferenceValue(key.sop_class_uid.c_str(), key.sop_instance_uid.c_str(), OFFalse)
                            : frame_reference(key),
                        owner + " source image of the region");
        };
        if (f.segment_number > 0) {
          // TID 1411 row 7: the whole segment, with the source frame of the key slice (row 11)
          // and the segment's frame there; the SEG is in the evidence too.
          const SegmentationInfo& seg = *segmentations[s];
          DSRImageReferenceValue segment(seg.sop_class.c_str(), seg.sop_instance.c_str());
          segment.getSegmentList().addItem(f.segment_number);
          content.image(group, DSRTypes::RT_contains, concept ::kReferencedSegment, segment,
                        owner + " referenced segment");
          // The segment's frame on the key slice as well: pixelmed checks every group against
          // TID 1410 too once any group has a top-level Image Region or such a frame (a finding
          // without segment in the same report), and this keeps the group valid there (rows 7-8).
          DSRImageReferenceValue seg_frame(seg.sop_class.c_str(), seg.sop_instance.c_str());
          seg_frame.getFrameList().addItem(seg.frame(f.segment_number, key));
          content.image(group, DSRTypes::RT_contains, concept ::kReferencedSegmentationFrame, seg_frame,
                        owner + " referenced segmentation frame");
          content.image(group, DSRTypes::RT_contains, concept ::kSourceImageForSegmentation, frame_reference(key),
                        owner + " source image");
        } else {
          // TID 1410/1411 row 5: without a segment the region itself is the ROI.
          region_below(group, DSRTypes::RT_contains);
        }
        // The finding site of the group (TID 1419 row 2). A group whose region stands at its top
        // would have OHIF print the site by its code ("363698007: Liver"), so there the site
        // qualifies each measurement instead (row 9), unless the group has none.
        const bool region_on_top = f.segment_number == 0;
        std::vector<Measurement> numbers;
        if (r.area_mm2)
          numbers.push_back(area_mm2(*r.area_mm2));
        else if (r.area_pixels && f.measurements.empty())
          numbers.push_back(area_pixels(*r.area_pixels));
        // One area per group, the outline's: a segment in pieces (or one measured over all its
        // pieces) would otherwise show a second, larger area beside the outline it is read from.
        const Measurement area_concept = area_mm2(0);
        for (const auto& m : f.measurements) {
          const bool area =
              m.concept.value == area_concept.concept.value && m.concept.scheme == area_concept.concept.scheme;
          if (area && !numbers.empty()) continue;  // the region's area stands first already
          numbers.push_back(m);
        }
        const bool site_per_measurement = region_on_top && !numbers.empty();
        // The site, with the side of a paired organ below it (TID 1419 rows 2-3).
        auto site_below = [&](size_t parent, const std::string& what) {
          const size_t site =
              content.code(parent, DSRTypes::RT_hasConceptMod, concept ::kFindingSite, *f.finding_site, what);
          if (f.laterality)
            content.code(site, DSRTypes::RT_hasConceptMod, concept ::kLaterality, *f.laterality, what + " laterality");
        };
        if (f.finding_site && !site_per_measurement) site_below(group, owner + " finding site");
        // A readable label first (OHIF shows the first Comment as the measurement's label),
        // the measurements, then the model's sentence. The site is named unless the finding is
        // the site itself (an organ outlined): "Liver lesion (Liver)", but "Liver", not
        // "Liver (Liver)".
        const std::string label =
            (tracking_id + (names_site(f) ? " (" + f.finding_site->meaning + ")" : "")).substr(0, 1024);
        content.text(group, DSRTypes::RT_contains, concept ::kComment, label, owner + " label");
        for (size_t n = 0; n < numbers.size(); ++n) {
          const size_t num = content.number(group, numbers[n], owner + " " + numbers[n].concept.meaning);
          if (site_per_measurement && f.finding_site)
            site_below(num, owner + " finding site of " + numbers[n].concept.meaning);
          // TID 300 (via TID 320): where the first measurement was made, the region OHIF draws.
          if (n == 0) region_below(num, DSRTypes::RT_inferredFrom);
        }
        if (numbers.empty() && f.segment_number > 0)
          throw ReportError(owner + " has a segment but neither a measurement nor an area in pixels for its region");
        if (f.certainty) {
          if (!std::isfinite(*f.certainty) || *f.certainty < 0 || *f.certainty > 1)
            throw ReportError(owner + " has a certainty of " + seg::format_ds(*f.certainty) + ": it must be 0 to 1");
          // In percent to one decimal: the model's confidence is no finer than that.
          content.number(group, certainty_percent(std::round(*f.certainty * 1000) / 10), owner + " certainty");
        }
        if (!f.text.empty()) content.text(group, DSRTypes::RT_contains, concept ::kComment, f.text, owner + " text");
        ++report.measurement_groups;
      }
    }
  }
  if (!report_texts.empty()) {
    const size_t evaluations = content.add(root, DSRTypes::RT_contains, DSRTypes::VT_Container,
                                           concept ::kQualitativeEvaluations, "qualitative evaluations");
    for (const ReportText* t : report_texts)
      content.text(evaluations, DSRTypes::RT_contains, t->concept, t->text, "report text");
  }

  // Evidence: every source instance and every SEG (PS3.3 C.17.2.3; Slicer needs the SEG here).
  DSRSOPInstanceReferenceList& evidence = document.getCurrentRequestedProcedureEvidence();
  for (size_t s = 0; s < series.size(); ++s) {
    const auto& sources = *series[s].sources;
    for (const auto& frame : sources.frames())
      check(evidence.addItem(study_uid.c_str(), sources.series_instance_uid().c_str(), frame.sop_class_uid.c_str(),
                             frame.sop_instance_uid.c_str(), OFFalse),
            "evidence for " + frame.sop_instance_uid);
    if (segmentations[s])
      check(evidence.addItem(study_uid.c_str(), segmentations[s]->series.c_str(), segmentations[s]->sop_class.c_str(),
                             segmentations[s]->sop_instance.c_str(), OFFalse),
            "evidence for the segmentation");
  }
  // The reports this one revises (PS3.3 C.17.2.3).
  for (const DocumentReference& d : options.predecessors)
    check(document.getPredecessorDocuments().addItem(d.study_instance_uid.c_str(), d.series_instance_uid.c_str(),
                                                     d.sop_class_uid.c_str(), d.sop_instance_uid.c_str()),
          "predecessor document " + d.sop_instance_uid);
  check(document.completeDocument(), "completion flag");

  report.file = std::make_unique<DcmFileFormat>();
  DcmDataset& dataset = *report.file->getDataset();
  check(document.write(dataset), "writing the structured report");
  // Identity and the patient/study attributes of the source, in UTF-8 like the report's text.
  report.sop_class_uid = UID_Comprehensive3DSRStorage;
  report.sop_instance_uid = own_uid(options.sop_instance_uid, seed, "sr/sop");
  report.series_instance_uid = own_uid(options.series_instance_uid, seed, "sr/series");
  check(dataset.putAndInsertString(DCM_SOPInstanceUID, report.sop_instance_uid.c_str()), "SOP Instance UID");
  check(dataset.putAndInsertString(DCM_SeriesInstanceUID, report.series_instance_uid.c_str()), "Series Instance UID");
  const seg::ResultsHeader header = series.front().sources->header_in_utf8();
  copy_patient_and_study(*header.dataset, dataset);
  check(dataset.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192"), "Specific Character Set");
  return report;
}

}  // namespace unibiomed::sr
