// The study analysis: read -> plan -> per series (units, the model's pass, consolidation, SEG
// per unit, SR groups, report text, previews: one SeriesResult, merged only when the series
// succeeded) -> the study's SR and JSON summary. Construction of the Analyzer.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "dicom/series.h"
#include "dicom/slide.h"
#include "dicom/view.h"
#include "dicom/window.h"
#include "inference/error.h"
#include "inference/weights_hash.h"
#include "pipeline/consolidation.h"
#include "pipeline/geometry_notes.h"
#include "pipeline/model_pass.h"
#include "pipeline/preview.h"
#include "pipeline/report_text.h"
#include "pipeline/result_objects.h"
#include "pipeline/result_uids.h"
#include "pipeline/slide_stitch.h"
#include "pipeline/study_analyzer_impl.h"
#include "pipeline/study_plan.h"
#include "pipeline/summary.h"
#include "pipeline/units.h"
#include "seg-writer/source_images.h"
#include "sr-writer/finding_geometry.h"
#include "sr-writer/measurement_report.h"

namespace unibiomed::pipeline {

// Everything one series' analysis needs.
struct SeriesRun {
  const dicom::Series* series = nullptr;
  int position = 0;  // 1-based among the analysed series, for messages
  int count = 0;
  std::string modality;
  SeriesPlan plan;
  SeriesOutcome outcome;  // the rule, tasks and notes of the plan; analyze_series adds to it
  const ProgressCallback* progress = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  std::string seed;
  std::string result_label;  // AnalysisRequest::result_label
  int first_series_number = 9001;  // AnalysisRequest::first_series_number
  bool video = false;  // the model reads it in video mode (set by analyze_series)
  // Progress over the study: question x view calls done before and during this series.
  double* calls_done = nullptr;
  double calls_total = 1;
  int segs_before = 0;         // SEGs of the study so far (series numbers first_series_number...)
  size_t previews_before = 0;  // previews of the study so far (their file numbers)
  // SHA-256 over the SHA-256 of each of its instances' bytes ("" = not known: no answer cache).
  std::string content_key;
};

// The question x view calls the model is expected to make for a series (progress weights).
double planned_calls(const dicom::Series& series, size_t questions, int max_slices) {
  return std::min<double>(double(series.frame_count()), double(std::max(1, max_slices))) * double(questions);
}

// SHA-256 (hex) of an input's bytes, read from its file when it came as a path.
std::string input_digest(const InstanceInput& in) {
  inference::Sha256 sha;
  if (!in.bytes.empty()) {
    sha.update(in.bytes.data(), in.bytes.size());
  } else {
    std::ifstream file(in.path, std::ios::binary);
    std::vector<char> buffer(1 << 20);
    while (file.read(buffer.data(), std::streamsize(buffer.size())) || file.gcount() > 0)
      sha.update(buffer.data(), size_t(file.gcount()));
    if (file.bad()) return "";
  }
  return inference::Sha256::hex(sha.finish());
}

// The answer cache's key of a series' model pass: its images and everything decided before the
// model runs that the answers depend on (within one analyzer: the rule, the questions, the mode).
std::string answer_key(const SeriesRun& run, const std::string& mode) {
  std::string text =
      run.content_key + "\nrule " + (run.plan.rule ? run.plan.rule->name : std::string()) + "\nmode " + mode;
  for (const auto& q : run.plan.questions) {
    text += "\nquestion " + q.task + "|" + config::family_name(q.family) + "|" + (q.target ? q.target->key : "") + "|" +
            q.prompt + "|" + q.window + "|";
    if (q.box)
      for (int v : *q.box) text += std::to_string(v) + ",";
  }
  return inference::Sha256::of(text);
}

// What a unit with findings leaves for the study's SR.
struct UnitOutput {
  std::vector<DcmDataset*> datasets;
  std::unique_ptr<seg::SourceImages> sources;
  WrittenFindings written;
};

// One series' contribution to the study, complete or not at all.
struct SeriesResult {
  SeriesOutcome outcome;
  std::vector<Finding> findings;
  std::vector<ResultObject> objects;                  // its SEGs
  std::vector<std::unique_ptr<UnitOutput>> outputs;   // for the SR
  std::vector<std::string> answers;                   // report-level text
  std::vector<Preview> previews;
  std::vector<std::string> problems;                  // previews that could not be drawn
};

void add_note(std::vector<std::string>& notes, const std::string& note) {
  if (std::find(notes.begin(), notes.end(), note) == notes.end()) notes.push_back(note);
}

namespace {

// A consolidated finding and where it came from.
struct FindingWork {
  size_t question = 0;
  size_t unit = 0;
  ConsolidatedFinding found;
  // Whole slides: the stitched result it is part of, its pieces there and their bounding box
  // (x0, y0, x1, y1 in level pixels).
  const SlideStitcher* stitcher = nullptr;
  std::vector<int> slide_labels;
  std::array<int, 4> slide_box{};
};

// One image of a series that holds several kinds (a still beside a cine), as a reader finds it:
// its Instance Number (and frame), else its SOP Instance UID.
std::string single_image_name(const dicom::Series& series, const AnalysedFrame& frame) {
  const dicom::Instance& instance = series.instances.at(frame.instance_index);
  std::string name = instance.instance_number() > 0 ? "instance " + std::to_string(instance.instance_number())
                                                    : "image " + instance.sop_instance_uid();
  if (instance.is_multiframe()) name += " frame " + std::to_string(frame.frame_number);
  return name;
}

// A result series' description: `name`, then the non-empty `details` in parentheses
// ("UniBiomed segmentation (axial 60 slices, run 2)").
std::string with_label(const std::string& name, const std::vector<std::string>& details) {
  std::string joined;
  for (const auto& d : details)
    if (!d.empty()) joined += (joined.empty() ? "" : ", ") + d;
  return joined.empty() ? name : name + " (" + joined + ")";
}

// What a unit's SEG covers, for its SeriesDescription when the series has several SEGs.
std::string unit_name(const dicom::Series& series, const Unit& unit) {
  if (unit.frames.size() == 1) return single_image_name(series, unit.frames.front());
  if (!unit.stack_label.empty()) return unit.stack_label;
  const dicom::Instance& first = series.instances.at(unit.frames.front().instance_index);
  if (unit.key.rfind("instance", 0) == 0 && first.instance_number() > 0)
    return std::to_string(unit.frames.size()) + " frames of instance " + std::to_string(first.instance_number());
  return std::to_string(unit.frames.size()) + " images " + std::to_string(unit.frames.front().columns) + "x" +
         std::to_string(unit.frames.front().rows);
}

// Components of each question's masks per unit, specks under the target's minimum size for
// the modality dropped (their count noted). Video mode: one finding per tracked object (all of
// its components, specks dropped), numbered by size when several share a label.
std::vector<FindingWork> consolidate_series(const SeriesPlan& plan, const std::string& modality, const UnitPlan& units,
                                            const std::vector<QuestionResult>& results, std::vector<std::string>& notes) {
  std::vector<FindingWork> findings;
  for (size_t q = 0; q < plan.questions.size(); ++q) {
    const PlannedQuestion& question = plan.questions[q];
    for (const auto& [unit, tracks] : results[q].tracks) {
      ConsolidationOptions options;
      options.frames_are_sequence = true;
      options.one_finding_per_component = false;
      options.min_size = question.target->min_size_for(modality);
      options.min_confidence = question.target->min_confidence;
      options.label = question.target->label;
      options.sides = question.target->paired;
      std::vector<FindingWork> tracked;
      for (const auto& masks : tracks) {
        // Said even when nothing is left of the object: the model's answer named it.
        std::string dropped;
        for (auto& found : consolidate(units.units[unit].frames, masks, options, &dropped)) {
          found.notes.push_back("one object tracked through the frames");
          tracked.push_back({q, unit, std::move(found), nullptr, {}, {}});
        }
        if (!dropped.empty()) add_note(notes, question.task + " (" + question.target->label + "): " + dropped);
      }
      std::stable_sort(tracked.begin(), tracked.end(), [](const FindingWork& a, const FindingWork& b) {
        return a.found.pixel_count > b.found.pixel_count;
      });
      std::map<std::string, int> count, seen;
      for (const auto& f : tracked) ++count[f.found.label];
      for (auto& f : tracked) {
        if (count[f.found.label] > 1) f.found.label += " " + std::to_string(++seen[f.found.label]);
        findings.push_back(std::move(f));
      }
    }
    for (const auto& [unit, masks] : results[q].masks) {
      ConsolidationOptions options;
      options.frames_are_sequence = units.units[unit].sequence;
      options.one_finding_per_component = question.target->kind == config::Target::Kind::Lesion;
      options.min_size = question.target->min_size_for(modality);
      options.min_confidence = question.target->min_confidence;
      options.label = question.target->label;
      options.sides = question.target->paired;
      std::string dropped;
      for (auto& found : consolidate(units.units[unit].frames, masks, options, &dropped))
        findings.push_back({q, unit, std::move(found), nullptr, {}, {}});
      if (!dropped.empty()) add_note(notes, question.task + " (" + question.target->label + "): " + dropped);
    }
  }
  for (const auto& f : findings)
    if (!f.found.unmeasured.empty()) {
      const PlannedQuestion& question = plan.questions[f.question];
      add_note(notes,
               question.task + " (" + question.target->label + "): " + f.found.label + ": " + f.found.unmeasured);
    }
  return findings;
}

// A slide's findings for one question from its stitched result: one per connected piece for a
// lesion, else one for all pieces (an organ-like target), pieces under the target's minimum size
// dropped (mm2 with the level's spacing). The key frame is the region that holds most of the
// finding, with the finding's pixels on that region as its mask (previews); the area and long
// axis are those of the whole finding on the level.
std::vector<FindingWork> slide_findings(const SeriesPlan& plan, size_t q, const std::string& modality,
                                        const UnitPlan& units, SlideStitcher& stitcher, double mm_x, double mm_y,
                                        std::vector<std::string>& notes) {
  const PlannedQuestion& question = plan.questions[q];
  std::vector<FindingWork> out;
  if (stitcher.regions_added() == 0) return out;
  size_t unit = units.units.size();
  for (size_t u = 0; u < units.units.size(); ++u)
    if (units.units[u].slide) unit = u;
  if (unit == units.units.size()) return out;
  const Unit& slide = units.units[unit];
  const bool mm = mm_x > 0 && mm_y > 0;
  std::vector<SlideComponent> pieces = stitcher.components(mm_x, mm_y);
  const double min_size = question.target ? question.target->min_size_for(modality) : 0;
  size_t dropped = 0;
  std::vector<SlideComponent> kept;
  for (auto& c : pieces) {
    if (c.area < min_size)
      ++dropped;
    else
      kept.push_back(std::move(c));
  }
  if (dropped)
    add_note(notes, question.task + " (" + question.target->label + "): " + std::to_string(dropped) + " pieces under " +
                        format_minimum(min_size) + (mm ? " mm2" : " pixels") + " dropped");
  const bool per_piece = !question.target || question.target->kind == config::Target::Kind::Lesion;
  std::vector<std::vector<const SlideComponent*>> groups;
  for (const auto& c : kept) {
    if (per_piece || groups.empty()) groups.emplace_back();
    groups.back().push_back(&c);
  }
  std::vector<double> unsure;  // the confidences of the findings left out
  for (const auto& group : groups) {
    const SlideComponent& key = *group.front();  // the largest
    size_t frame = slide.frames.size();
    for (size_t f = 0; f < slide.requests.size(); ++f)
      if (slide.requests[f].slide_region && slide.requests[f].slide_region->x == key.key_region[0] &&
          slide.requests[f].slide_region->y == key.key_region[1])
        frame = f;
    if (frame == slide.frames.size()) continue;  // cannot happen: the region gave the mask
    const dicom::SlideRegion& region = *slide.requests[frame].slide_region;
    FindingWork fw;
    fw.question = q;
    fw.unit = unit;
    ConsolidatedFinding& found = fw.found;
    found.label = key.phrase.empty() && question.target ? question.target->label : key.phrase;
    found.text = key.text;
    found.answer = key.answer;
    found.key_frame = frame;
    // No region-sized mask is kept per finding (a slide may have hundreds): the preview draws it
    // again from the stitched result, which outlives the findings' writing.
    double area = 0, probability = 0, iou = 0, agreement = 0;
    fw.stitcher = &stitcher;
    fw.slide_box = key.box;
    for (const SlideComponent* c : group) {
      fw.slide_labels.push_back(c->label);
      fw.slide_box = {std::min(fw.slide_box[0], c->box[0]), std::min(fw.slide_box[1], c->box[1]),
                      std::max(fw.slide_box[2], c->box[2]), std::max(fw.slide_box[3], c->box[3])};
      found.pixel_count += c->pixels;
      area += c->area;
      probability += c->mean_probability * double(c->pixels);
      iou += c->mean_iou * double(c->pixels);
      agreement += c->label_agreement * double(c->pixels);
      if (c->long_axis > found.key_diameter.length)
        found.key_diameter = Diameter{c->long_axis, c->axis_from, c->axis_to};
    }
    found.key_pixel_count =
        count_pixels(stitcher.components_mask(fw.slide_labels, region.x, region.y, region.width, region.height));
    if (mm) found.key_area_mm2 = area;
    found.diameter_in_mm = mm;
    const double n = double(found.pixel_count);
    found.mean_probability = probability / n;
    found.mean_iou = iou / n;
    found.label_agreement = agreement / n;
    found.confidence = finding_confidence(
        found.mean_probability > 0 ? std::optional<double>(found.mean_probability) : std::nullopt, found.mean_iou);
    if (question.target && found.confidence < question.target->min_confidence) {
      unsure.push_back(found.confidence);
      continue;
    }
    out.push_back(std::move(fw));
  }
  if (!unsure.empty())
    add_note(notes, question.task + " (" + question.target->label +
                        "): " + low_confidence_note(unsure, question.target->min_confidence));
  return out;
}

// The public finding of a consolidated one (its SEG segment number and tracking UID come later).
Finding finding_of(const FindingWork& fw, const Unit& unit, const std::string& task, const std::string& series_uid) {
  const ConsolidatedFinding& found = fw.found;
  const AnalysedFrame& key = unit.frames[found.key_frame];
  Finding f;
  f.label = found.label;
  f.text = found.text;
  f.model_answer = found.answer;
  f.task = task;
  f.series_instance_uid = series_uid;
  f.confidence = found.confidence;
  f.label_agreement = found.label_agreement;
  f.mean_probability = found.mean_probability;
  f.mean_iou = found.mean_iou;
  f.key_instance_uid = key.sop_instance_uid;
  f.key_frame = key.frame_number;
  f.side = found.side;
  if (found.key_area_mm2) f.measurements.push_back({"Area", *found.key_area_mm2, "mm2"});
  return f;
}

// A slide's findings as one tiled SEG of the analysed level (its tiles are the stitched result's
// tiles) with one SR group each, the region on the level's total pixel matrix. Throws the
// writers' errors (the caller then reports the findings without a SEG and says why).
std::unique_ptr<UnitOutput> write_slide_unit(const SeriesRun& run, const Unit& unit,
                                             const std::vector<const FindingWork*>& unit_findings,
                                             const seg::AlgorithmIdentity& algorithm, int series_number,
                                             std::vector<std::string>& notes) {
  const dicom::Series& series = *run.series;
  const std::string& series_uid = series.identity.series_instance_uid;
  const dicom::SlidePyramid pyramid(series);
  const int level_index = unit.requests.front().slide_region->level;
  const dicom::SlideLevel& level = pyramid.levels().at(size_t(level_index));
  const int t = unit_findings.front()->stitcher->grid().tile_size;
  if (level.tile_columns != t || level.tile_rows != t)
    throw seg::SegmentationError("slide level " + std::to_string(level_index) + " has tiles of " +
                                 std::to_string(level.tile_columns) + "x" + std::to_string(level.tile_rows) +
                                 ": a tiled SEG needs square tiles whose size is a multiple of 8");
  auto output = std::make_unique<UnitOutput>();
  std::map<size_t, size_t> dataset_of_instance;  // series instance -> dataset
  for (const std::string& uid : level.sop_instance_uids)
    for (size_t i = 0; i < series.instances.size(); ++i)
      if (series.instances[i].sop_instance_uid() == uid &&
          dataset_of_instance.emplace(i, output->datasets.size()).second)
        output->datasets.push_back(series.instances[i].dataset());
  output->sources = std::make_unique<seg::SourceImages>(output->datasets);
  const seg::SourceImages& sources = *output->sources;
  std::map<std::pair<size_t, int>, std::pair<int, int>> tile_of;  // (dataset, frame) -> (x, y)
  for (const auto& ref : level.tiles)
    if (auto d = dataset_of_instance.find(ref.instance_index); d != dataset_of_instance.end())
      tile_of[{d->second, ref.frame_number}] = {ref.x, ref.y};
  seg::SlideTiles tiles;
  std::map<std::pair<int, int>, size_t> frame_of_tile;  // (tile column, tile row) -> source frame
  for (size_t f = 0; f < sources.frame_count(); ++f) {
    const seg::SourceFrame& sf = sources.frame(f);
    auto found = tile_of.find({sf.instance, std::max(1, sf.frame_number)});
    if (found == tile_of.end()) {
      tiles.frame_positions.push_back({0, 0});  // another focal plane: never written on
      continue;
    }
    tiles.frame_positions.push_back({found->second.first + 1, found->second.second + 1});
    frame_of_tile[{found->second.first / t, found->second.second / t}] = f;
  }
  std::vector<FindingToWrite> to_write;
  std::vector<sr::ImageRegion> regions;
  size_t off_tiles = 0;
  for (size_t n = 0; n < unit_findings.size(); ++n) {
    const FindingWork& fw = *unit_findings[n];
    const ConsolidatedFinding& found = fw.found;
    const PlannedQuestion& q = run.plan.questions[fw.question];
    const SlideStitcher& stitcher = *fw.stitcher;
    FindingToWrite w;
    w.segment.description = segment_description(
        *q.target, found.label, found.text,
        found.label + " (series " + std::to_string(series.identity.series_number) + ")",
        derive_uid(run.seed, series_uid, "tracking slide segment " + std::to_string(n + 1)), algorithm);
    // Its tiles: every stitched tile under its box with one of its pieces.
    size_t key_pixels = 0, key_frame = 0;
    for (int ty = fw.slide_box[1] / t; ty <= (fw.slide_box[3] - 1) / t; ++ty)
      for (int tx = fw.slide_box[0] / t; tx <= (fw.slide_box[2] - 1) / t; ++tx) {
        const std::vector<int32_t>& labels = stitcher.tile_labels(tx, ty);
        if (labels.empty()) continue;
        seg::FrameMask m;
        m.binary.assign(labels.size(), 0);
        size_t pixels = 0;
        for (size_t i = 0; i < labels.size(); ++i)
          if (labels[i] &&
              std::find(fw.slide_labels.begin(), fw.slide_labels.end(), labels[i]) != fw.slide_labels.end()) {
            m.binary[i] = 1;
            ++pixels;
          }
        if (!pixels) continue;
        auto frame = frame_of_tile.find({tx, ty});
        if (frame == frame_of_tile.end()) {
          off_tiles += pixels;  // a TILED_SPARSE level without a tile there: nothing to reference
          continue;
        }
        m.frame = frame->second;
        if (pixels > key_pixels) key_pixels = pixels, key_frame = m.frame;
        w.segment.masks.push_back(std::move(m));
      }
    if (w.segment.masks.empty())
      throw seg::SegmentationError(found.label + " lies only where the slide level has no tile");
    if (auto site = q.target->effective_finding_site()) w.finding_site = to_seg(*site);
    w.text = reported_text(found.label, found.text);
    w.confidence = found.confidence;
    w.measurements.emplace();
    if (found.key_area_mm2) w.measurements->push_back(sr::area_mm2(*found.key_area_mm2));
    if (found.diameter_in_mm && found.key_diameter.length > 0)
      w.measurements->push_back(sr::long_axis_mm(found.key_diameter.length));
    // The outline on the total pixel matrix: of its largest piece within its box (within the key
    // region when the box is very large), pixel corners shifted onto the level.
    sr::ImageRegion region;
    region.frame = key_frame;
    region.total_pixel_matrix = std::array<unsigned, 2>{unsigned(level.total_columns), unsigned(level.total_rows)};
    std::array<int, 4> box = fw.slide_box;
    if (double(box[2] - box[0]) * double(box[3] - box[1]) > 4096.0 * 4096.0) {
      const dicom::SlideRegion& r = *unit.requests[found.key_frame].slide_region;
      box = {r.x, r.y, r.x + r.width, r.y + r.height};
    }
    const std::vector<uint8_t> mask =
        stitcher.components_mask(fw.slide_labels, box[0], box[1], box[2] - box[0], box[3] - box[1]);
    region.points = sr::outline_of_largest_region(mask, unsigned(box[3] - box[1]), unsigned(box[2] - box[0]));
    for (auto& p : region.points) p = {p[0] + float(box[0]), p[1] + float(box[1])};
    if (found.key_area_mm2)
      region.area_mm2 = found.key_area_mm2;
    else
      region.area_pixels = double(found.pixel_count);
    regions.push_back(std::move(region));
    to_write.push_back(std::move(w));
  }
  if (off_tiles)
    add_note(notes,
             std::to_string(off_tiles) + " mask pixels lie where the slide level has no tile and are not in the SEG");
  seg::SegmentationOptions options;
  options.algorithm = algorithm;
  options.series_number = series_number;
  options.series_description = with_label("UniBiomed segmentation", {run.result_label});
  options.sop_instance_uid = derive_uid(run.seed, series_uid, "SEG instance slide");
  options.series_instance_uid = derive_uid(run.seed, series_uid, "SEG series slide");
  output->written = write_slide_findings(sources, tiles, std::move(to_write), regions, options);
  return output;
}

// One unit's findings: its SEG (a tiled one on a slide) (series number first_series_number +
// the SEGs of the study before it) and one SR group per segment, kept for the study's SR.
void write_unit(SeriesRun& run, const UnitPlan& units, size_t u, const std::vector<FindingWork>& findings,
                const seg::AlgorithmIdentity& algorithm, SeriesResult& out, std::vector<const FindingWork*>& finding_work) {
  const dicom::Series& series = *run.series;
  const std::string& series_uid = series.identity.series_instance_uid;
  std::vector<const FindingWork*> unit_findings;
  for (const auto& f : findings)
    if (f.unit == u) unit_findings.push_back(&f);
  if (unit_findings.empty()) return;
  const Unit& unit = units.units[u];
  if (unit.slide) {
    auto slide_finding = [&](const FindingWork* fw) {
      Finding f = finding_of(*fw, unit, run.plan.questions[fw->question].task, series_uid);
      if (fw->found.diameter_in_mm && fw->found.key_diameter.length > 0)
        f.measurements.push_back({"Long axis", fw->found.key_diameter.length, "mm"});
      return f;
    };
    std::unique_ptr<UnitOutput> output;
    try {
      output = write_slide_unit(run, unit, unit_findings, algorithm,
                                run.first_series_number + run.segs_before + static_cast<int>(out.outputs.size()),
                                run.outcome.notes);
    } catch (const std::exception& e) {
      add_note(run.outcome.notes, std::string("findings on the slide are reported without a SEG: ") + e.what());
      for (const FindingWork* fw : unit_findings) {
        out.findings.push_back(slide_finding(fw));
        finding_work.push_back(fw);
      }
      return;
    }
    if (!output->written.seg) return;
    const seg::WrittenSegmentation& written = *output->written.seg;
    out.objects.push_back(result_object("SEG", *written.file, written.sop_instance_uid, written.series_instance_uid,
                                        "seg-series-" + std::to_string(series.identity.series_number) + ".dcm"));
    out.objects.back().segmentation_type = written.segmentation_type;
    for (size_t n = 0; n < unit_findings.size(); ++n) {
      Finding f = slide_finding(unit_findings[n]);
      f.segment_number = static_cast<int>(n + 1);
      f.tracking_uid = written.tracking_uids.at(n);
      f.seg_sop_instance_uid = written.sop_instance_uid;
      out.findings.push_back(std::move(f));
      finding_work.push_back(unit_findings[n]);
    }
    out.outputs.push_back(std::move(output));
    return;
  }
  auto output = std::make_unique<UnitOutput>();
  std::map<size_t, size_t> dataset_of_instance;
  std::vector<size_t> instance_of_dataset;
  for (const auto& frame : unit.frames)
    if (dataset_of_instance.emplace(frame.instance_index, output->datasets.size()).second) {
      output->datasets.push_back(series.instances.at(frame.instance_index).dataset());
      instance_of_dataset.push_back(frame.instance_index);
    }
  // A stack's SEG covers the frames of its stack (not the other planes of a multi-frame
  // instance that holds several); other units every frame of their instances.
  seg::SourceImages::FrameFilter in_unit;
  if (!unit.stack_frames.empty())
    in_unit = [&](size_t dataset, int frame_number) {
      return unit.stack_frames.count({instance_of_dataset.at(dataset), frame_number}) > 0;
    };
  output->sources = std::make_unique<seg::SourceImages>(output->datasets, in_unit);
  std::map<std::pair<size_t, int>, size_t> source_frame;  // (dataset, frame number) -> source frame
  for (size_t i = 0; i < output->sources->frame_count(); ++i) {
    const auto& sf = output->sources->frame(i);
    source_frame[{sf.instance, std::max(1, sf.frame_number)}] = i;
  }
  const std::string unit_tag = units.units.size() > 1 ? " " + unit.key : "";
  std::vector<FindingToWrite> to_write;
  std::vector<Finding> unit_out;
  for (size_t n = 0; n < unit_findings.size(); ++n) {
    const ConsolidatedFinding& found = unit_findings[n]->found;
    const PlannedQuestion& q = run.plan.questions[unit_findings[n]->question];
    FindingToWrite w;
    w.segment.description = segment_description(
        *q.target, found.label, found.text, found.label + " (series " + std::to_string(series.identity.series_number) + ")",
        derive_uid(run.seed, series_uid, "tracking" + unit_tag + " segment " + std::to_string(n + 1)), algorithm);
    for (const auto& [frame, mask] : found.masks) {
      const AnalysedFrame& af = unit.frames[frame];
      seg::FrameMask m;
      m.frame = source_frame.at({dataset_of_instance.at(af.instance_index), af.frame_number});
      m.binary = mask;
      w.segment.masks.push_back(std::move(m));
    }
    if (auto site = q.target->effective_finding_site()) w.finding_site = to_seg(*site);
    // A side of a paired organ: the SEG's type modifier and the SR site's laterality.
    w.laterality = laterality_code(found.side);
    w.segment.description.type_modifier = w.laterality;
    w.text = reported_text(found.label, found.text);
    w.confidence = found.confidence;
    // Measurements: the volume of a volume; the key slice's long axis. The SR's area is its
    // outline's (sr::key_region: the largest piece on the key slice, the one drawn), so that a
    // structure in pieces does not get a second, larger area beside the outline it is read from;
    // the summary's "Area" is made the same once the SR groups are written.
    Finding f = finding_of(*unit_findings[n], unit, q.task, series_uid);
    f.segment_number = static_cast<int>(n + 1);
    w.measurements.emplace();
    if (found.volume_mm3) {
      f.measurements.push_back({"Volume", *found.volume_mm3, "mm3"});
      w.measurements->push_back(sr::volume_mm3(*found.volume_mm3));
    }
    if (found.diameter_in_mm && found.key_diameter.length > 0) {
      f.measurements.push_back({"Long axis", found.key_diameter.length, "mm"});
      w.measurements->push_back(sr::long_axis_mm(found.key_diameter.length));
    }
    if (unit.video) {
      // The tracked object's area on every frame it is on (mm2 when the spacing is known).
      f.frame_area_unit = found.key_area_mm2 ? "mm2" : "pixels";
      for (const auto& [frame, mask] : found.masks)
        f.frame_areas.emplace_back(unit.positions.at(frame),
                                   double(count_pixels(mask)) * frame_area_scale(found, unit.frames[frame]));
    }
    to_write.push_back(std::move(w));
    unit_out.push_back(std::move(f));
  }
  seg::SegmentationOptions options;
  options.algorithm = algorithm;
  options.series_number = run.first_series_number + run.segs_before + static_cast<int>(out.outputs.size());
  // A series read in several parts (cines and stills, stacks) has a SEG per part: say which.
  options.series_description = with_label(
      "UniBiomed segmentation", {units.units.size() > 1 ? unit_name(series, unit) : std::string(), run.result_label});
  options.sop_instance_uid = derive_uid(run.seed, series_uid, "SEG instance" + unit_tag);
  options.series_instance_uid = derive_uid(run.seed, series_uid, "SEG series" + unit_tag);
  output->written = write_findings(*output->sources, std::move(to_write), options);
  if (!output->written.seg) return;  // no segment: nothing to write (cannot happen with findings)
  const seg::WrittenSegmentation& written = *output->written.seg;
  out.objects.push_back(result_object("SEG", *written.file, written.sop_instance_uid, written.series_instance_uid,
                                      "seg-series-" + std::to_string(series.identity.series_number) +
                                          (units.units.size() > 1 ? "-" + file_safe(unit.key) : "") + ".dcm"));
  out.objects.back().segmentation_type =
      written.segmentation_type + (written.fractional_type.empty() ? "" : " " + written.fractional_type);
  for (size_t n = 0; n < unit_out.size(); ++n) {
    unit_out[n].tracking_uid = written.tracking_uids.at(n);
    unit_out[n].seg_sop_instance_uid = written.sop_instance_uid;
    take_reported_area(unit_out[n].measurements, output->written.reported.at(n));
    out.findings.push_back(std::move(unit_out[n]));
    finding_work.push_back(unit_findings[n]);
  }
  out.outputs.push_back(std::move(output));
}

// Report-level text: answers of non-segmentation questions, one per unit. With findings, the
// answer on the key slice of the largest; without, the most frequent answer over the views.
std::vector<std::string> report_answers(const SeriesRun& run, const UnitPlan& units,
                                        const std::vector<QuestionResult>& results,
                                        const std::vector<FindingWork>& findings) {
  const dicom::SeriesIdentity& identity = run.series->identity;
  std::vector<std::string> answers;
  for (size_t q = 0; q < run.plan.questions.size(); ++q) {
    const PlannedQuestion& question = run.plan.questions[q];
    if (question.family == config::TaskFamily::Segmentation) continue;
    for (const auto& [unit, texts] : results[q].texts) {
      const FindingWork* largest = nullptr;
      for (const auto& f : findings)
        if (f.question == q && f.unit == unit && (!largest || f.found.pixel_count > largest->found.pixel_count))
          largest = &f;
      const auto chosen = choose_answer(texts, largest ? std::optional<size_t>(largest->found.key_frame) : std::nullopt);
      if (!chosen) continue;
      const Unit& u = units.units[unit];
      std::string where = run.modality + " series " + std::to_string(identity.series_number);
      if (!identity.series_description.empty()) where += " (" + identity.series_description + ")";
      if (u.video)
        where += ", " + std::to_string(u.frames.size()) + (u.key.rfind("stack", 0) == 0 ? " slices" : " frames") +
                 " as one video";
      else if (u.frames.size() > 1)
        where += ", " + std::string(u.sequence ? "slice " : "image ") + std::to_string(chosen->frame + 1) + "/" +
                 std::to_string(u.frames.size());
      else if (units.units.size() > 1 && !u.frames.empty())
        where += ", " + single_image_name(*run.series, u.frames.front());
      answers.push_back(where + ", " + question.task + ": " + chosen->text);
    }
  }
  return answers;
}

// A series' previews are drawn for at most this many findings, the largest (a whole slide may
// have hundreds of findings, and each preview holds its view's pixels until it is written).
constexpr size_t kMaxPreviewsPerSeries = 24;

// One preview per finding (the largest kMaxPreviewsPerSeries), numbered over the study; one that
// cannot be drawn is a problem. Returns how many findings got none for the limit.
size_t draw_previews(const SeriesRun& run, const UnitPlan& units,
                     const std::vector<const FindingWork*>& finding_work, SeriesResult& out) {
  std::vector<size_t> order(out.findings.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return finding_work[a]->found.pixel_count > finding_work[b]->found.pixel_count;
  });
  const size_t drawn = std::min(order.size(), kMaxPreviewsPerSeries);
  std::vector<bool> chosen(order.size(), false);
  for (size_t k = 0; k < drawn; ++k) chosen[order[k]] = true;
  for (size_t i = 0; i < out.findings.size(); ++i) {
    if (!chosen[i]) continue;
    Finding& finding = out.findings[i];
    const FindingWork& fw = *finding_work[i];
    const Unit& unit = units.units[fw.unit];
    const PlannedQuestion& q = run.plan.questions[fw.question];
    PreviewOf what;
    what.series = run.series;
    what.request = unit.requests[fw.found.key_frame];
    what.modality = run.modality;
    what.window = q.window;
    what.box = q.box;
    std::vector<uint8_t> slide_mask;  // a slide finding's pieces in its key region
    if (fw.stitcher) {
      const dicom::SlideRegion& r = *what.request.slide_region;
      slide_mask = fw.stitcher->components_mask(fw.slide_labels, r.x, r.y, r.width, r.height);
      what.mask = &slide_mask;
    } else {
      what.mask = &fw.found.masks.at(fw.found.key_frame);
    }
    what.colour = q.target->colour;
    what.label = finding.label;
    char number[16];
    std::snprintf(number, sizeof number, "%02d", static_cast<int>(run.previews_before + out.previews.size() + 1));
    try {
      Preview p = finding_preview(what,
                                  "preview-series-" + std::to_string(run.series->identity.series_number) + "-" + number +
                                      "-" + file_safe(finding.label) + ".png",
                                  finding.tracking_uid);
      finding.preview_file = p.file_name;
      out.previews.push_back(std::move(p));
    } catch (const std::exception& e) {
      out.problems.push_back("preview of " + finding.label + " not drawn: " + e.what());
    }
  }
  return order.size() - drawn;
}

}  // namespace

// --- one series -----------------------------------------------------------------------------

SeriesResult StudyAnalyzer::analyze_series(SeriesRun& run) {
  SeriesResult out;
  // Filled in place: what a failure leaves in it (views, notes so far) is what is recorded.
  SeriesOutcome& outcome = run.outcome;
  const dicom::Series& series = *run.series;
  const std::string series_uid = series.identity.series_instance_uid;
  const std::string prefix =
      run.modality + " series " + std::to_string(run.position) + "/" + std::to_string(run.count) + ": ";
  auto report = [&](const std::string& stage, const std::string& message) {
    if (!*run.progress) return;
    Progress p;
    p.fraction = std::clamp(*run.calls_done / std::max(run.calls_total, 1.0), 0.0, 1.0);
    p.stage = stage;
    p.series_instance_uid = series_uid;
    p.message = prefix + message;
    (*run.progress)(p);
  };

  // --- the views and their units ---------------------------------------------------------------
  dicom::RenderOptions base_options;
  if (run.modality == "CT") {
    std::set<std::string> windows;
    for (const auto& q : run.plan.questions) windows.insert(q.window);
    base_options.ct_preset = *windows.begin() == "" ? "abdomen" : *windows.begin();
  }
  if (run.plan.rule) base_options.slide_mm_per_pixel = run.plan.rule->slide_um / 1000.0;
  base_options.slide_region_size = settings_.slide_region_size;
  std::vector<dicom::ViewRequest> requests;
  std::string slide_note;
  {
    Stopwatch t(timings_.rendering);
    requests = dicom::plan_views(series, base_options, &slide_note);
  }
  if (!slide_note.empty()) outcome.notes.push_back(slide_note);
  outcome.frames_total = static_cast<int>(requests.size());
  const config::Rule* rule = run.plan.rule;
  const int max_views = std::max(1, settings_.max_slices_per_series);
  // Video mode: every frame (within max_slices_per_series) goes into the video; the rule's
  // slice range only says where the key frames are. It needs sequences of two frames or more
  // (a stack, a cine, a clip) and questions without a drawn box.
  ViewSelection selection;
  UnitPlan units;
  // The regions of a slide are places side by side, never a sequence: always asked one by one.
  const bool slide_regions = !requests.empty() && requests.front().slide_region.has_value();
  const config::SeriesMode wanted =
      slide_regions ? config::SeriesMode::Slices : (rule ? rule->mode : rules_.default_mode());
  std::string video_refused;
  if (wanted == config::SeriesMode::Video && requests.size() > 1 && trained_ && !trained_->video_for(run.modality)) {
    video_refused = "asked slice by slice: " + trained_->video_off_reason(run.modality);
  } else if (wanted == config::SeriesMode::Video && requests.size() > 1) {
    selection = select_views(requests, std::nullopt, max_views);
    units = group_into_units(series, requests, selection.selected);
    // Each sequence is one video; the other units of the series (a still image beside a cine, a
    // lone slice in another plane beside a volume) are asked frame by frame, as they would be
    // in a series of their own.
    auto is_sequence = [](const Unit& u) { return u.sequence && !u.slide && u.frames.size() > 1; };
    const size_t sequences = static_cast<size_t>(std::count_if(units.units.begin(), units.units.end(), is_sequence));
    const bool boxed = std::any_of(run.plan.questions.begin(), run.plan.questions.end(),
                                   [](const PlannedQuestion& q) { return q.box.has_value(); });
    if (sequences == 0)
      video_refused = "video mode needs frames that follow each other (a stack, a cine); asked slice by slice";
    else if (boxed)
      video_refused = "a question with a drawn box is asked slice by slice, not in video mode";
    run.video = video_refused.empty();
    size_t alone = 0;  // frames of the units that are no sequence
    for (Unit& u : units.units) {
      u.video = run.video && is_sequence(u);
      if (run.video && !u.video) alone += u.frames.size();
    }
    outcome.frames_one_by_one = static_cast<int>(alone);
    if (alone > 0)
      outcome.notes.push_back("video mode for " + std::to_string(sequences) + " sequence(s) of frames; " +
                              std::to_string(alone) +
                              " frame(s) with no analysed neighbour (a single image, a lone slice, a sequence "
                              "thinned to one frame) asked one by one");
  }
  if (!run.video) {
    selection = select_views(requests, rule ? rule->slices : std::nullopt, max_views);
    units = group_into_units(series, requests, selection.selected);
    if (!video_refused.empty()) outcome.notes.push_back(video_refused);
  }
  outcome.mode = config::mode_name(run.video ? config::SeriesMode::Video : config::SeriesMode::Slices);
  const int prompt_every = run.video && trained_ ? trained_->video_prompt_every : 0;
  if (prompt_every > 0)
    outcome.notes.push_back("video mode: SAM2 prompted on one frame in " + std::to_string(prompt_every) +
                            " as well as on the key frames (" + trained_->source + ")");
  if (!selection.note.empty()) outcome.notes.push_back(selection.note);
  outcome.frames_analysed = static_cast<int>(selection.selected.size());
  for (const auto& note : units.notes) outcome.notes.push_back(note);
  std::vector<std::vector<int>> key_frames;  // per unit, its frames
  if (run.video)
    for (const Unit& unit : units.units) {
      key_frames.push_back(unit.video ? video_key_frames(unit.frames.size(), rule ? rule->slices : std::nullopt)
                                      : std::vector<int>());
      // The series reports them among its analysed frames (Unit::positions).
      for (int k : key_frames.back()) outcome.key_frames.push_back(unit.positions.at(static_cast<size_t>(k)));
    }

  // --- whole slides: one stitched result per question, filled as the masks come -------------------
  std::vector<std::unique_ptr<SlideStitcher>> stitchers;
  double slide_mm_x = 0, slide_mm_y = 0;
  if (!requests.empty() && requests.front().slide_region) {
    const dicom::SlidePyramid pyramid(series);
    for (const auto& problem : pyramid.problems()) outcome.notes.push_back(problem);
    const dicom::SlideLevel& level = pyramid.levels().at(size_t(requests.front().slide_region->level));
    SlideGrid grid;
    grid.total_columns = level.total_columns;
    grid.total_rows = level.total_rows;
    grid.size = std::max(16, base_options.slide_region_size);
    grid.overlap = base_options.slide_region_overlap >= 0 ? base_options.slide_region_overlap : grid.size / 8;
    // The level's own tiles when they are square and byte-aligned (the SEG's frames), else 256.
    grid.tile_size = level.tile_columns == level.tile_rows && level.tile_columns >= 8 && level.tile_columns % 8 == 0
                         ? level.tile_columns
                         : 256;
    slide_mm_x = level.mm_per_pixel_x;
    slide_mm_y = level.mm_per_pixel_y;
    for (size_t q = 0; q < run.plan.questions.size(); ++q) stitchers.push_back(std::make_unique<SlideStitcher>(grid));
  }
  auto slide_masks = [&](size_t q, const dicom::ViewProvenance& provenance, FrameMask& m) {
    const dicom::SlideRegion& r = *provenance.slide_region;
    try {
      stitchers.at(q)->add(r.x, r.y, r.width, r.height, m.mask, m.probability, m.iou, m.phrase, m.text, m.answer);
    } catch (const std::invalid_argument& e) {
      throw PipelineError("series " + series_uid + ": " + e.what());
    }
  };

  // --- the model ---------------------------------------------------------------------------------
  // The views of the units read as videos, and the others (every view outside video mode).
  std::vector<size_t> video_selected, image_selected;
  std::vector<std::pair<size_t, size_t>> video_place, image_place;
  for (size_t i = 0; i < selection.selected.size(); ++i) {
    const bool in_video = units.units.at(units.place.at(i).first).video;
    (in_video ? video_selected : image_selected).push_back(selection.selected[i]);
    (in_video ? video_place : image_place).push_back(units.place[i]);
  }
  auto pass_over = [&](const std::vector<size_t>& selected, const std::vector<std::pair<size_t, size_t>>& place) {
    return ModelPass{
        *engine_,
        series,
        run.modality,
        requests,
        selected,
        place,
        run.plan,
        static_cast<size_t>(std::max(1, settings_.batch_size)),
        run.cancel,
        timings_,
        report,
        *run.calls_done,
        stitchers.empty() ? std::function<void(size_t, const dicom::ViewProvenance&, FrameMask&)>() : slide_masks,
        prompt_every,
        trained_ ? trained_->prompted_in_attention() : -1};
  };
  std::vector<QuestionResult> results;
  // The same images asked the same by this analyzer before (a study analysed again): its answers.
  const std::string cache_key =
      cache_ && !run.content_key.empty() && stitchers.empty() ? answer_key(run, outcome.mode) : "";
  std::optional<CachedAnswers> cached;
  if (!cache_key.empty()) {
    try {
      cached = cache_->find(cache_key);
    } catch (const std::exception& e) {
      outcome.notes.push_back(std::string("the cached answers could not be read, the model was asked: ") + e.what());
    }
  }
  if (cached) {
    results = std::move(cached->results);
    outcome.views = cached->views;
    *run.calls_done += planned_calls(series, run.plan.questions.size(), settings_.max_slices_per_series);
    outcome.notes.push_back(
        "the model's answers about these images were taken from an earlier analysis of the same images with the same "
        "questions and model (the node's answer cache)");
    report("model", "answers of an earlier analysis of the same images reused");
  }
  if (!cached && !video_selected.empty()) {
    try {
      results = run_video_pass(pass_over(video_selected, video_place), units.units.size(), key_frames, outcome.views);
    } catch (const inference::DeviceOutOfMemory& e) {
      // Its own line already says what to change; asking slice by slice is not the remedy.
      if (run.cancel && run.cancel->load()) throw Cancelled();
      throw PipelineError("video mode on " + run.modality + " series " + std::to_string(series.identity.series_number) +
                          " (" + series_uid + "): " + e.what());
    } catch (const inference::InferenceError& e) {
      // Not silently asked again slice by slice: whoever reads the results must know.
      if (run.cancel && run.cancel->load()) throw Cancelled();
      throw PipelineError("video mode failed on " + run.modality + " series " +
                          std::to_string(series.identity.series_number) + " (" + series_uid + "): " + e.what() +
                          " (not analysed; a task rule with \"mode\": \"slices\" asks its frames one by one)");
    }
  }
  if (!cached && (!image_selected.empty() || video_selected.empty())) {
    std::vector<QuestionResult> asked = run_model_pass(pass_over(image_selected, image_place), outcome.views);
    if (results.empty()) {
      results = std::move(asked);
    } else {
      // Disjoint units: each video's results and each other unit's sit side by side.
      for (size_t q = 0; q < asked.size(); ++q) {
        for (auto& [unit, masks] : asked[q].masks) results.at(q).masks[unit] = std::move(masks);
        for (auto& [unit, texts] : asked[q].texts) results.at(q).texts[unit] = std::move(texts);
      }
    }
  }
  if (!cached && !cache_key.empty()) cache_->put(cache_key, {results, outcome.views});

  // --- findings, their SEGs and SR groups, report text, previews ------------------------------------
  std::vector<FindingWork> findings;
  {
    Stopwatch t(timings_.consolidation);
    findings = consolidate_series(run.plan, run.modality, units, results, outcome.notes);
    for (size_t q = 0; q < stitchers.size(); ++q)
      for (auto& f :
           slide_findings(run.plan, q, run.modality, units, *stitchers[q], slide_mm_x, slide_mm_y, outcome.notes))
        findings.push_back(std::move(f));
  }
  std::vector<const FindingWork*> finding_work;  // per out.findings entry, for the previews
  {
    Stopwatch t(timings_.writing);
    report("writing", "writing results");
    for (size_t u = 0; u < units.units.size(); ++u) {
      // The mode that read this unit (a still image beside a cine is asked on its own).
      seg::AlgorithmIdentity identity = algorithm();
      const bool video = units.units[u].video;
      identity.parameters +=
          std::string("; mode ") + config::mode_name(video ? config::SeriesMode::Video : config::SeriesMode::Slices);
      if (video && prompt_every > 0)
        identity.parameters += "; prompted every " + std::to_string(prompt_every) + " frames";
      write_unit(run, units, u, findings, identity, out, finding_work);
    }
    out.answers = report_answers(run, units, results, findings);
  }
  if (settings_.previews) {
    Stopwatch t(timings_.previews);
    if (const size_t undrawn = draw_previews(run, units, finding_work, out))
      outcome.notes.push_back("previews drawn for the " + std::to_string(kMaxPreviewsPerSeries) + " largest of " +
                              std::to_string(out.findings.size()) + " findings (" + std::to_string(undrawn) +
                              " without one; every finding is in the SEG and SR)");
  }
  outcome.state = SeriesOutcome::State::Analysed;
  out.outcome = outcome;
  return out;
}

// --- the study ----------------------------------------------------------------------------------

StudyResult StudyAnalyzer::analyze(const std::vector<InstanceInput>& inputs, const AnalysisRequest& request,
                                   const ProgressCallback& progress, const std::atomic<bool>* cancel,
                                   const std::string& result_uid_seed) {
  std::lock_guard<std::mutex> lock(mutex_);
  timings_ = {};
  const auto start = std::chrono::steady_clock::now();
  const std::string seed = result_uid_seed.empty() ? random_uid_seed() : result_uid_seed;
  check_requested_tasks(rules_, request);
  auto say = [&](double fraction, const std::string& stage, const std::string& message) {
    if (!progress) return;
    Progress p;
    p.fraction = fraction;
    p.stage = stage;
    p.message = message;
    progress(p);
  };

  // --- reading --------------------------------------------------------------------------------
  StudyResult result;
  dicom::SeriesCollection collection;
  std::map<const DcmDataset*, std::string> digests;  // the answer cache's: SHA-256 of each input
  {
    Stopwatch t(timings_.reading);
    say(0, "reading", "reading " + std::to_string(inputs.size()) + " instances");
    std::vector<dicom::Instance> instances;
    for (const auto& in : inputs) {
      check_cancel(cancel);
      try {
        instances.push_back(in.bytes.empty() ? dicom::Instance::read_file(in.path)
                                             : dicom::Instance::read_bytes(in.bytes, in.id.empty() ? "instance" : in.id));
        // By the parsed dataset, which the instance's copies in its series share.
        if (cache_) digests[instances.back().dataset()] = input_digest(in);
      } catch (const dicom::DicomError& e) {
        result.problems.push_back(e.what());
      }
    }
    collection = dicom::group_into_series(std::move(instances));
    for (const auto& p : collection.problems) result.problems.push_back(p.message);
  }
  if (collection.series.empty())
    throw PipelineError(inputs.empty() ? "no instances given" : "none of the " + std::to_string(inputs.size()) +
                                                                   " inputs is a readable DICOM instance" +
                                                                   (result.problems.empty() ? "" : ": " + result.problems.front()));
  result.study_instance_uid = collection.series.front().study.study_instance_uid;
  result.weights_hash = weights_hash();

  // --- plans ----------------------------------------------------------------------------------
  std::vector<SeriesRun> runs;
  double calls_total = 0, calls_done = 0;
  for (const auto& series : collection.series) {
    SeriesOutcome outcome;
    outcome.series_instance_uid = series.identity.series_instance_uid;
    outcome.description = series.identity.series_description;
    if (series.modality.modality) outcome.modality = dicom::modality_name(*series.modality.modality);
    outcome.notes = series.problems;
    auto skip = [&](SeriesOutcome::State state, const std::string& reason) {
      outcome.state = state;
      outcome.reason = reason;
      result.series.push_back(outcome);
    };
    if (series.study.study_instance_uid != result.study_instance_uid) {
      skip(SeriesOutcome::State::Skipped, "belongs to study " + series.study.study_instance_uid + ", not " +
                                              result.study_instance_uid + " (analyse each study on its own)");
      continue;
    }
    if (series.identity.series_instance_uid.empty()) {
      // Its SEG and the SR's references must name the series (type 1): nothing to analyse for.
      skip(SeriesOutcome::State::Failed,
           std::to_string(series.instances.size()) +
               " instance(s) without SeriesInstanceUID (0020,000E), which results must reference (first: " +
               series.instances.front().source() + ")");
      continue;
    }
    if (!series.modality.modality) {
      skip(SeriesOutcome::State::Skipped, modality_skip_reason(series));
      continue;
    }
    if (!series.has_images()) {
      skip(SeriesOutcome::State::Failed,
           "no decodable image" + (series.problems.empty() ? std::string() : ": " + series.problems.front()));
      continue;
    }
    for (const auto& note : geometry_notes(series)) outcome.notes.push_back(note);
    if (DcmDataset* first = series.instances.front().dataset()) {
      const seg::ResultsHeader header = seg::results_header(*first);
      for (const auto& attribute : header.left_out) outcome.notes.push_back("left out of the SEG and SR: " + attribute);
      for (const auto& attribute : header.changed)
        outcome.notes.push_back("written differently in the SEG and SR (check it there): " + attribute);
    }
    SeriesRun run;
    run.series = &series;
    run.modality = outcome.modality;
    if (cache_) {
      std::string all;
      for (const auto& instance : series.instances) {
        const auto d = digests.find(instance.dataset());
        if (d == digests.end() || d->second.empty()) {
          all.clear();
          break;
        }
        all += d->second + "\n";
      }
      if (!all.empty()) run.content_key = inference::Sha256::of(all);
    }
    run.plan =
        plan_series(rules_, {outcome.modality, series.identity.body_part_examined, series.identity.series_description},
                    outcome.series_instance_uid, request, trained_ ? &*trained_ : nullptr);
    if (run.plan.rule) outcome.rule = run.plan.rule->name;
    for (const auto& note : run.plan.notes) outcome.notes.push_back(note);
    for (const auto& q : run.plan.questions)
      if (std::find(outcome.tasks.begin(), outcome.tasks.end(), q.task) == outcome.tasks.end()) outcome.tasks.push_back(q.task);
    if (run.plan.questions.empty()) {
      skip(SeriesOutcome::State::Skipped, run.plan.skip_reason);
      continue;
    }
    run.outcome = outcome;
    // Progress weights: views (estimated by frames, capped) x questions.
    calls_total += planned_calls(series, run.plan.questions.size(), settings_.max_slices_per_series);
    runs.push_back(std::move(run));
  }

  // --- analysis, series by series: a failing series is recorded, the rest go on -------------
  std::vector<std::unique_ptr<UnitOutput>> outputs;
  const dicom::Series* first_analysed = nullptr;
  int position = 0;
  for (SeriesRun& run : runs) {
    run.position = ++position;
    run.count = static_cast<int>(runs.size());
    run.progress = &progress;
    run.cancel = cancel;
    run.seed = seed;
    run.result_label = request.result_label;
    run.first_series_number = request.first_series_number;
    run.calls_done = &calls_done;
    run.calls_total = calls_total;
    run.segs_before = static_cast<int>(outputs.size());
    run.previews_before = result.previews.size();
    SeriesResult series;
    try {
      series = analyze_series(run);
    } catch (const Cancelled&) {
      throw;
    } catch (const std::exception& e) {
      // An engine's own error may be how it noticed the cancellation.
      if (cancel && cancel->load()) throw Cancelled();
      SeriesOutcome failed = run.outcome;
      failed.state = SeriesOutcome::State::Failed;
      failed.reason = e.what();
      result.series.push_back(std::move(failed));  // nothing of a failed series goes out half-written
      continue;
    }
    if (!first_analysed) first_analysed = run.series;
    result.series.push_back(std::move(series.outcome));
    for (auto& f : series.findings) result.findings.push_back(std::move(f));
    for (auto& o : series.objects) result.objects.push_back(std::move(o));
    for (auto& o : series.outputs) outputs.push_back(std::move(o));
    for (auto& a : series.answers) result.answers.push_back(std::move(a));
    for (auto& p : series.previews) result.previews.push_back(std::move(p));
    for (auto& p : series.problems) result.problems.push_back(std::move(p));
  }

  // --- the SR of the study ----------------------------------------------------------------
  {
    Stopwatch t(timings_.writing);
    std::vector<sr::SeriesFindings> report_series;
    for (const auto& out : outputs)
      report_series.push_back({out->sources.get(), out->written.seg->file->getDataset(), out->written.reported});
    std::vector<sr::ReportText> report_texts;
    for (const auto& a : result.answers)
      report_texts.push_back({{"121106", "DCM", "Comment"}, dicom_text(a, kMaxFreeText, true)});
    if (!report_series.empty() || !report_texts.empty()) {
      say(1, "writing", "writing the report");
      sr::ReportOptions options;
      options.algorithm = algorithm();
      // Which mode read each series that has findings in it.
      std::string modes;
      for (const auto& s : result.series)
        if (s.state == SeriesOutcome::State::Analysed && !s.mode.empty() &&
            std::any_of(result.findings.begin(), result.findings.end(),
                        [&](const Finding& f) { return f.series_instance_uid == s.series_instance_uid; }))
          modes += (modes.empty() ? "" : ", ") + s.series_instance_uid + " " + s.mode +
                   (s.mode == "video" && s.frames_one_by_one > 0
                        ? " (" + std::to_string(s.frames_one_by_one) + " frame(s) one by one)"
                        : std::string());
      if (!modes.empty()) options.algorithm.parameters += "; mode per series: " + modes;
      options.device_name = settings_.node_name;
      options.series_description = with_label("UniBiomed findings", {request.result_label});
      // After the SEGs of the run (from first_series_number on), so that no two result series
      // share a number.
      options.series_number = request.first_series_number +
                              static_cast<int>(std::count_if(result.objects.begin(), result.objects.end(),
                                                             [](const ResultObject& o) { return o.kind == "SEG"; }));
      options.sop_instance_uid = derive_uid(seed, result.study_instance_uid, "SR instance");
      options.series_instance_uid = derive_uid(seed, result.study_instance_uid, "SR series");
      for (const auto& r : request.revises)
        // The same seed gives the same report again: it does not revise itself.
        if (r.sop_instance_uid != options.sop_instance_uid)
          options.predecessors.push_back(
              {result.study_instance_uid, r.series_instance_uid, r.sop_class_uid, r.sop_instance_uid});
      // Text only: the SR still needs the study's identity; take it from an analysed series.
      std::unique_ptr<seg::SourceImages> text_only_sources;
      if (report_series.empty() && first_analysed) {
        text_only_sources =
            std::make_unique<seg::SourceImages>(std::vector<DcmDataset*>{first_analysed->instances.front().dataset()});
        report_series.push_back({text_only_sources.get(), nullptr, {}});
      }
      if (!report_series.empty()) {
        auto report = sr::write_measurement_report(report_series, report_texts, options);
        if (report)
          result.objects.push_back(
              result_object("SR", *report->file, report->sop_instance_uid, report->series_instance_uid, "sr.dcm"));
      }
    }
  }

  timings_.views = 0;
  for (const auto& s : result.series) timings_.views += s.views;
  timings_.total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.summary_json = summary_json(result, engine_->description(), rules_.source(), timings_);
  say(1, "done", std::to_string(result.findings.size()) + " findings");
  return result;
}

// --- construction --------------------------------------------------------------------------------

std::unique_ptr<Analyzer> make_analyzer(const AnalyzerSettings& settings, std::unique_ptr<GroundingEngine> engine) {
  if (!engine) throw PipelineError("no model");
  config::TaskRules rules = [&] {
    try {
      return config::TaskRules::load_or_defaults(settings.task_rules);
    } catch (const config::ConfigError& e) {
      throw PipelineError(e.what());
    }
  }();
  // Window presets are dicom/'s: a rule naming another fails now, not on the first CT.
  std::vector<std::string> known;
  for (const auto& p : dicom::ct_window_presets()) known.push_back(p.name);
  if (const std::string unknown = rules.unknown_window(known); !unknown.empty()) throw PipelineError(unknown);
  if (settings.max_slices_per_series < 1) throw PipelineError("max_slices_per_series must be at least 1");
  if (settings.batch_size < 1) throw PipelineError("batch_size must be at least 1");
  if (settings.slide_region_size < 16 || settings.slide_region_size > 8192)
    throw PipelineError("slide_region_size must be 16 to 8192 pixels, not " +
                        std::to_string(settings.slide_region_size));
  auto trained = read_checkpoint_targets(settings.model_dir);
  return std::make_unique<StudyAnalyzer>(settings, std::move(rules), std::move(engine), std::move(trained));
}

StageTimings last_timings(const Analyzer& analyzer) {
  const auto* a = dynamic_cast<const StudyAnalyzer*>(&analyzer);
  if (!a) throw PipelineError("last_timings: not the pipeline's analyzer");
  return a->timings();
}

EngineOptions engine_options(const AnalyzerSettings& settings) {
  EngineOptions options;
  options.model_dir = settings.model_dir;
  options.tokenizer_dir = settings.tokenizer_dir;
  options.device = settings.device;
  options.dtype = settings.dtype;
  options.threads = settings.threads;
  options.max_new_tokens = settings.max_new_tokens;
  options.batch_size = settings.batch_size;
  return options;
}

std::unique_ptr<Analyzer> Analyzer::create(const AnalyzerSettings& settings) {
  if (settings.model_dir.empty()) throw PipelineError("no model folder given");
  std::unique_ptr<GroundingEngine> engine;
  try {
    engine = load_grounded_model(engine_options(settings));
  } catch (const std::exception& e) {
    throw PipelineError("model " + settings.model_dir.string() + ": " + e.what());
  }
  return make_analyzer(settings, std::move(engine));
}

}  // namespace unibiomed::pipeline
