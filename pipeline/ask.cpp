// One image, one question: Analyzer::ask. The image is rendered as the analysis renders it
// (the window of the rule task the question matches), the answer's masks are mapped back to
// the source frame, coded as the target the question names, and written as a SEG.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>

#include "dicom/raster_file.h"
#include "dicom/series.h"
#include "dicom/view.h"
#include "dicom/volume.h"
#include "inference/answer_parser.h"
#include "pipeline/consolidation.h"
#include "pipeline/geometry_notes.h"
#include "pipeline/model_pass.h"
#include "pipeline/report_text.h"
#include "pipeline/result_objects.h"
#include "pipeline/result_uids.h"
#include "pipeline/study_analyzer_impl.h"
#include "pipeline/study_plan.h"
#include "pipeline/units.h"

namespace unibiomed::pipeline {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string normalise(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    else if (!out.empty() && out.back() != ' ')
      out.push_back(' ');
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// A PNG or JPEG file (by its first bytes), asked as it is.
bool is_raster_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char head[8] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  if (in.gcount() < 3) return false;
  const bool png = in.gcount() == 8 && head[0] == 0x89 && head[1] == 'P' && head[2] == 'N' && head[3] == 'G';
  const bool jpeg = head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF;
  return png || jpeg;
}

// The rules' target a name stands for: its key, phrase or label ("liver", "the Lung nodule").
const config::Target* target_named(const config::TaskRules& rules, const std::string& name) {
  std::string n = normalise(name);
  if (n.rfind("the ", 0) == 0) n = n.substr(4);
  if (n.empty()) return nullptr;
  for (const auto& [key, t] : rules.targets())
    if (normalise(key) == n || normalise(t.phrase) == n || normalise(t.label) == n) return &t;
  return nullptr;
}

// The generic target of explicit questions: "lesion", else the first lesion-kind target.
const config::Target* generic_target(const config::TaskRules& rules) {
  if (auto it = rules.targets().find("lesion"); it != rules.targets().end()) return &it->second;
  for (const auto& [k, t] : rules.targets())
    if (t.kind == config::Target::Kind::Lesion) return &t;
  return rules.targets().empty() ? nullptr : &rules.targets().begin()->second;
}

// How the notes name the k-th [SEG] of an answer (0-based, as `ask` lists them), with its phrase.
std::string seg_name(size_t k, const std::string& phrase) {
  return "[SEG] " + std::to_string(k) + (phrase.empty() ? "" : " (\"" + phrase + "\")");
}

}  // namespace

AskMatch match_question(const config::TaskRules& rules, const config::Rule* rule, const std::string& question) {
  AskMatch match;
  const std::string q = normalise(question);
  // The prompt of one of the rule's tasks, word for word: that task's target and window.
  if (rule)
    for (const auto& task : rule->tasks)
      for (const auto& key : task.targets) {
        const config::Target& target = rules.target(key);
        if (normalise(rules.prompt_for(*rule, task, &target)) != q) continue;
        match.target = &target;
        match.window = task.window;
        match.segmentation = task.family == config::TaskFamily::Segmentation;
        return match;
      }
  // "Please segment {target} [in {modality}]." naming a target of the rules.
  if (auto named = inference::segmentation_target(question)) {
    std::string name = *named;
    const size_t in = lower(name).rfind(" in ");
    for (const std::string& candidate : {name, in == std::string::npos ? name : name.substr(0, in)})
      if (const config::Target* t = target_named(rules, candidate)) {
        match.target = t;
        match.segmentation = true;
        break;
      }
    if (match.target && rule)
      for (const auto& task : rule->tasks)
        if (!task.window.empty() && std::find(task.targets.begin(), task.targets.end(), match.target->key) != task.targets.end()) {
          match.window = task.window;
          break;
        }
  }
  return match;
}

namespace {

// The image of an ask: a DICOM frame rendered as analyze() renders it (the window of the rule
// task the question matches, unless the question names one), or a PNG/JPEG as it is.
struct AskImage {
  dicom::SeriesCollection collection;  // DICOM: its one series
  std::string modality;                // DICOM: the model's modality class
  AskMatch match;
  dicom::View view;
  const dicom::Series* series() const { return collection.series.empty() ? nullptr : &collection.series.front(); }
};

AskImage read_ask_image(const config::TaskRules& rules, const InstanceInput& input, int frame, const Question& question,
                        const std::string& text, const std::string& name) {
  AskImage out;
  try {
    if (input.bytes.empty() && !input.path.empty() && is_raster_file(input.path)) {
      if (frame != 1) throw PipelineError(name + " is one image; it has no frame " + std::to_string(frame));
      // As it is (not padded): the model's own preprocessing takes any size.
      out.view.image = dicom::read_raster_rgb(input.path);
      out.view.provenance.source_columns = out.view.image.width;
      out.view.provenance.source_rows = out.view.image.height;
      out.view.provenance.intensity = "colour as stored (" + name + ")";
      out.match = match_question(rules, nullptr, text);
      return out;
    }
    std::vector<dicom::Instance> one;
    one.push_back(input.bytes.empty() ? dicom::Instance::read_file(input.path)
                                      : dicom::Instance::read_bytes(input.bytes, input.id.empty() ? "instance" : input.id));
    out.collection = dicom::group_into_series(std::move(one));
    if (out.collection.series.size() != 1) throw PipelineError(name + " is not one image");
    const dicom::Series& series = out.collection.series.front();
    if (!series.modality.modality) throw PipelineError(name + ": " + series.modality.reason);
    out.modality = dicom::modality_name(*series.modality.modality);
    const config::Rule* rule =
        rules.select({out.modality, series.identity.body_part_examined, series.identity.series_description});
    out.match = match_question(rules, rule, text);
    dicom::RenderOptions options;
    if (out.modality == "CT")
      options.ct_preset = !question.window.empty()    ? question.window
                          : !out.match.window.empty() ? out.match.window
                                                      : default_window(rule, out.modality);
    const std::vector<dicom::ViewRequest> requests = dicom::plan_views(series, options);
    const dicom::ViewRequest* request = nullptr;
    for (const auto& r : requests)
      if (r.instance_index == 0 && r.frame_number == frame && !r.slide_region) request = &r;
    const dicom::Instance& instance = series.instances.front();
    if (!request && instance.slide() && instance.slide()->image_flavor == "VOLUME")
      throw PipelineError(name + " is a level of a whole slide (" +
                          std::to_string(instance.slide()->total_pixel_matrix_columns) + " x " +
                          std::to_string(instance.slide()->total_pixel_matrix_rows) +
                          " pixels in tiles): a slide is asked as a whole, region by region, through an analysis "
                          "question (unibiomed analyze --ask, or Questions of the node's /analyze)");
    const int frames = instance.pixels().number_of_frames;
    if (!request && frame >= 1 && frame <= frames) {
      // A frame that exists but is no view: left out of the stacks (no position, say); why.
      std::string why;
      for (const std::string& note : dicom::plan_stacks(series).notes) why += (why.empty() ? ": " : "; ") + note;
      throw PipelineError(name + " frame " + std::to_string(frame) + " (of " + std::to_string(frames) +
                          ") is not one the node reads" + why);
    }
    if (!request)
      throw PipelineError(name + " has no frame " + std::to_string(frame) + " to ask about (it has " +
                          std::to_string(frames) + ")");
    out.view = dicom::render_view(series, *request, options);
  } catch (const dicom::DicomError& e) {
    throw PipelineError(e.what());
  }
  return out;
}

// A finding of the answer and the target that codes it.
struct AskFinding {
  ConsolidatedFinding found;
  const config::Target* target;
};

// The SEG of the findings on the frame of `series` (tracking UIDs from `seed`).
WrittenFindings write_ask_seg(const dicom::Series& series, int frame, const std::vector<AskFinding>& found,
                              const std::string& seed, const seg::AlgorithmIdentity& algorithm,
                              std::unique_ptr<seg::SourceImages>& sources) {
  const std::string uid = series.identity.series_instance_uid;
  // The SEG covers the stack of the frame asked about: a multi-frame instance may hold planes of
  // other orientations (a 3-plane localizer), which one SEG cannot reference.
  std::set<int> stack_frames;
  for (const dicom::SliceStack& stack : dicom::plan_stacks(series).stacks) {
    std::set<int> frames;
    for (const dicom::SliceRef& slice : stack.slices)
      if (slice.instance_index == 0) frames.insert(slice.frame_number);
    if (frames.count(frame)) stack_frames = std::move(frames);
  }
  seg::SourceImages::FrameFilter in_stack;
  if (!stack_frames.empty()) in_stack = [&](size_t, int frame_number) { return stack_frames.count(frame_number) > 0; };
  sources = std::make_unique<seg::SourceImages>(std::vector<DcmDataset*>{series.instances.front().dataset()}, in_stack);
  size_t source_frame = 0;
  for (size_t i = 0; i < sources->frame_count(); ++i)
    if (std::max(1, sources->frame(i).frame_number) == frame) source_frame = i;
  std::vector<FindingToWrite> to_write;
  for (size_t n = 0; n < found.size(); ++n) {
    const ConsolidatedFinding& c = found[n].found;
    FindingToWrite w;
    w.segment.description = segment_description(*found[n].target, c.label, c.text, c.label,
                                                derive_uid(seed, uid, "ask tracking segment " + std::to_string(n + 1)),
                                                algorithm);
    seg::FrameMask m;
    m.frame = source_frame;
    m.binary = c.masks.at(0);
    w.segment.masks.push_back(std::move(m));
    if (auto site = found[n].target->effective_finding_site()) w.finding_site = to_seg(*site);
    w.laterality = laterality_code(c.side);
    w.segment.description.type_modifier = w.laterality;
    w.text = reported_text(c.label, c.text);
    w.confidence = c.confidence;
    to_write.push_back(std::move(w));
  }
  seg::SegmentationOptions options;
  options.algorithm = algorithm;
  options.series_description = "UniBiomed segmentation";
  options.sop_instance_uid = derive_uid(seed, uid, "ask SEG instance");
  options.series_instance_uid = derive_uid(seed, uid, "ask SEG series");
  return write_findings(*sources, std::move(to_write), options);
}

}  // namespace

Analyzer::AskResult StudyAnalyzer::ask(const InstanceInput& input, int frame, const Question& question,
                                       const std::string& result_uid_seed) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string seed = result_uid_seed.empty() ? random_uid_seed() : result_uid_seed;
  if (question.text.empty() && !question.box) throw PipelineError("the question is empty");
  const std::string text =
      question.text.empty() ? rules_.prompt_template(config::TaskFamily::RegionDiagnosis) : question.text;
  const std::string name = input.id.empty() ? input.path.string() : input.id;
  AskImage in = read_ask_image(rules_, input, frame, question, text, name);
  const dicom::Series* series = in.series();
  const AskMatch& match = in.match;
  const dicom::ViewProvenance provenance = in.view.provenance;
  inference::RgbImage image = to_model_image(std::move(in.view.image));
  if (question.box) draw_box(image, *question.box);

  // --- the model -------------------------------------------------------------------------------
  auto batch = engine_->encode({image}, nullptr);
  auto answers = engine_->answer(*batch, text, nullptr);
  phrases_as_labels(answers);
  if (answers.empty()) throw PipelineError("the model gave no answer");
  const inference::GroundedAnswer& answer = answers.front();
  AskResult out;
  out.model_answer = model_answer(answer.text);
  out.text = finding_sentence(answer.text, match.segmentation && match.target ? match.target->label : "");
  out.stop_reason = answer.stop_reason;
  out.ids = answer.ids;

  // --- findings: one per [SEG], coded as the target the question names, else by its phrase ----
  AnalysedFrame f;
  f.instance_index = 0;
  f.frame_number = frame;
  if (series) f.sop_instance_uid = series->instances.front().sop_instance_uid();
  f.columns = provenance.source_columns;
  f.rows = provenance.source_rows;
  set_plane_scale(f, provenance.geometry);
  if (series) set_left(f, series->instances.front(), frame);
  if (series)
    for (const auto& note : geometry_notes(*series)) add_note(out.notes, note);
  const config::Target* fallback_target = match.target ? match.target : generic_target(rules_);
  std::vector<AskFinding> found;
  for (const auto& segment : answer.segments) {
    const std::string name = seg_name(out.segments.size(), segment.phrase);
    AskSegment s;
    s.phrase = segment.phrase;
    s.iou = segment.iou;
    s.object_score = segment.object_score;
    s.area = static_cast<long>(segment.area());
    const dicom::GreyImage mask = dicom::map_mask_to_source(provenance, {segment.width, segment.height, segment.mask});
    s.width = mask.width;
    s.height = mask.height;
    s.mask = mask.grey;
    if (segment.area() == 0) {
      add_note(out.notes, name + ": its mask is empty (no finding)");
    } else {
      const config::Target* target = match.target;
      if (!target) target = target_named(rules_, segment.phrase);
      if (!target) target = fallback_target;
      inference::GroundedAnswer one = answer;
      one.segments = {segment};
      const bool keep_phrase = !match.segmentation;
      const std::string label = keep_phrase && !segment.phrase.empty() ? segment.phrase
                                : target                              ? target->label
                                                                      : "Finding";
      ConsolidationOptions options;
      options.label = label;
      if (target) options.min_size = target->min_size_for(in.modality);
      if (target) options.min_confidence = target->min_confidence;
      options.sides = target && target->paired;
      std::string dropped;
      for (auto& c : consolidate({f}, answer_masks(one, provenance, 0, keep_phrase, label), options, &dropped)) {
        s.findings.push_back(static_cast<int>(found.size()));
        found.push_back({std::move(c), target});
      }
      if (!dropped.empty()) add_note(out.notes, name + ": " + dropped);
    }
    out.segments.push_back(std::move(s));
  }
  if (found.empty()) return out;

  // --- the SEG (DICOM input only) ----------------------------------------------------------------
  std::optional<WrittenFindings> written;
  std::unique_ptr<seg::SourceImages> sources;
  if (series && std::all_of(found.begin(), found.end(), [](const AskFinding& x) { return x.target != nullptr; })) {
    // An image the SEG cannot reference (no study or series UID) still has its answer and masks.
    try {
      written = write_ask_seg(*series, frame, found, seed, algorithm(), sources);
    } catch (const seg::SegmentationError& e) {
      add_note(out.notes, std::string(kNoSegNote) + e.what());
    } catch (const sr::ReportError& e) {
      add_note(out.notes, std::string(kNoSegNote) + e.what());
    }
    if (written && written->seg) {
      out.seg = result_object("SEG", *written->seg->file, written->seg->sop_instance_uid,
                              written->seg->series_instance_uid, "seg.dcm");
      out.seg->segmentation_type = written->seg->segmentation_type +
                                   (written->seg->fractional_type.empty() ? "" : " " + written->seg->fractional_type);
    }
  }
  for (size_t n = 0; n < found.size(); ++n) {
    const ConsolidatedFinding& c = found[n].found;
    Finding fd;
    fd.label = c.label;
    fd.text = c.text;
    fd.model_answer = c.answer;
    fd.task = "question";
    fd.series_instance_uid = series ? series->identity.series_instance_uid : std::string();
    if (written && written->seg) {
      fd.segment_number = static_cast<int>(n + 1);
      fd.tracking_uid = written->seg->tracking_uids.at(n);
    }
    fd.confidence = c.confidence;
    fd.mean_probability = c.mean_probability;
    fd.mean_iou = c.mean_iou;
    fd.key_instance_uid = f.sop_instance_uid;
    fd.key_frame = frame;
    fd.side = c.side;
    if (c.key_area_mm2) fd.measurements.push_back({"Area", *c.key_area_mm2, "mm2"});
    if (c.diameter_in_mm) fd.measurements.push_back({"Long axis", c.key_diameter.length, "mm"});
    if (!c.unmeasured.empty()) add_note(out.notes, fd.label + ": " + c.unmeasured);
    out.findings.push_back(std::move(fd));
  }
  return out;
}

Analyzer::AskVideoResult StudyAnalyzer::ask_video(const std::vector<InstanceInput>& inputs, const Question& question,
                                                   const std::function<void(int, int)>& on_frame) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (inputs.empty()) throw PipelineError("no frames");
  if (question.text.empty()) throw PipelineError("the question is empty");
  if (question.box) throw PipelineError("a region question (a box) is asked of one image, not of a video");
  const std::string& text = question.text;

  // --- the frames: read and rendered as ask() does, all of one size --------------------------
  std::vector<AskImage> images;
  std::vector<dicom::ViewProvenance> provenance;
  std::vector<inference::RgbImage> frames;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = inputs[i].id.empty() ? inputs[i].path.string() : inputs[i].id;
    AskImage in = read_ask_image(rules_, inputs[i], 1, question, text, name);
    const auto& p = in.view.provenance;
    if (i > 0) {
      const auto& first = provenance.front();
      const std::string first_name = inputs[0].id.empty() ? inputs[0].path.string() : inputs[0].id;
      if (p.source_columns != first.source_columns || p.source_rows != first.source_rows ||
          in.view.image.width != frames.front().width || in.view.image.height != frames.front().height)
        throw PipelineError("frame " + std::to_string(i + 1) + " (" + name + ") is " +
                            std::to_string(p.source_columns) + "x" + std::to_string(p.source_rows) + ", frame 1 (" +
                            first_name + ") " + std::to_string(first.source_columns) + "x" +
                            std::to_string(first.source_rows) + ": the frames of a video must have one size");
    }
    provenance.push_back(p);
    frames.push_back(to_model_image(std::move(in.view.image)));
    images.push_back(std::move(in));
  }
  const AskMatch& match = images.front().match;
  const std::string modality = images.front().modality;
  // A checkpoint whose video mode is off (for this modality) would track badly or noise: refuse
  // rather than answer (the analysis reads such series slice by slice and says so).
  if (trained_ && !trained_->video_for(modality))
    throw PipelineError(trained_->video_off_reason(modality) + ": ask about one image at a time");

  // --- the model: the reference's video options, with the checkpoint's prompted frames ----------
  auto video = engine_->encode_video(frames, nullptr);
  frames.clear();
  inference::VideoOptions options;
  options.probability_maps = true;
  if (trained_) {  // the checkpoint's own way of reading a video, where it has one
    options.prompt_every = trained_->video_prompt_every;
    options.max_prompted_in_attention = trained_->prompted_in_attention();
  }
  options.on_frame = on_frame;
  inference::VideoAnswer answer = engine_->answer_video(*video, text, options);
  phrases_as_labels(answer);
  AskVideoResult out;
  out.model_answer = model_answer(answer.text);
  out.text = finding_sentence(answer.text, match.segmentation && match.target ? match.target->label : "");
  out.stop_reason = answer.stop_reason;
  out.ids = answer.ids;
  out.key_frames = answer.key_frames;

  // --- one finding per tracked object ----------------------------------------------------------
  std::vector<AnalysedFrame> analysed;
  for (size_t i = 0; i < images.size(); ++i) {
    AnalysedFrame f;
    f.instance_index = i;
    f.frame_number = 1;
    if (const dicom::Series* series = images[i].series()) f.sop_instance_uid = series->instances.front().sop_instance_uid();
    f.columns = provenance[i].source_columns;
    f.rows = provenance[i].source_rows;
    set_plane_scale(f, provenance[i].geometry);
    if (const dicom::Series* series = images[i].series()) set_left(f, series->instances.front(), 1);
    analysed.push_back(f);
  }
  for (const auto& image : images)
    if (const dicom::Series* series = image.series())
      for (const auto& note : geometry_notes(*series)) add_note(out.notes, note);
  const config::Target* fallback_target = match.target ? match.target : generic_target(rules_);
  std::vector<std::string> unmeasured;  // per finding
  for (const auto& segment : answer.segments) {
    const std::string name = seg_name(out.segments.size(), segment.phrase);
    AskVideoSegment s;
    s.phrase = segment.phrase;
    for (size_t t = 0; t < segment.masks.size() && t < provenance.size(); ++t) {
      dicom::GreyImage mask = dicom::map_mask_to_source(provenance[t], {segment.width, segment.height, segment.masks[t]});
      AskVideoFrame frame;
      s.width = mask.width;
      s.height = mask.height;
      frame.mask = std::move(mask.grey);
      frame.area = static_cast<long>(count_pixels(segment.masks[t]));
      frame.iou = t < segment.iou.size() ? segment.iou[t] : 0.0;
      frame.object_score = t < segment.object_score.size() ? segment.object_score[t] : 0.0;
      s.frames.push_back(std::move(frame));
    }
    if (std::none_of(s.frames.begin(), s.frames.end(), [](const AskVideoFrame& f) { return f.area > 0; }))
      add_note(out.notes, name + ": its mask is empty on every frame (no finding)");
    const config::Target* target = match.target;
    if (!target) target = target_named(rules_, segment.phrase);
    if (!target) target = fallback_target;
    const bool keep_phrase = !match.segmentation;
    const std::string label = keep_phrase && !segment.phrase.empty() ? segment.phrase
                              : target                              ? target->label
                                                                    : "Finding";
    ConsolidationOptions c;
    c.frames_are_sequence = true;
    c.label = label;
    if (target) c.min_size = target->min_size_for(modality);
    if (target) c.min_confidence = target->min_confidence;
    c.sides = target && target->paired;
    std::string dropped;
    for (auto& found :
         consolidate(analysed, track_masks(answer, segment, provenance, keep_phrase, label), c, &dropped)) {
      s.findings.push_back(static_cast<int>(out.findings.size()));
      Finding fd;
      fd.label = found.label;
      fd.text = found.text;
      fd.model_answer = found.answer;
      fd.task = "question";
      fd.confidence = found.confidence;
      fd.mean_probability = found.mean_probability;
      fd.mean_iou = found.mean_iou;
      fd.key_instance_uid = analysed[found.key_frame].sop_instance_uid;
      fd.key_frame = static_cast<int>(found.key_frame) + 1;
      fd.side = found.side;
      if (found.volume_mm3) fd.measurements.push_back({"Volume", *found.volume_mm3, "mm3"});
      if (found.key_area_mm2) fd.measurements.push_back({"Area", *found.key_area_mm2, "mm2"});
      if (found.diameter_in_mm) fd.measurements.push_back({"Long axis", found.key_diameter.length, "mm"});
      fd.frame_area_unit = found.key_area_mm2 ? "mm2" : "pixels";
      for (const auto& [frame, mask] : found.masks) {
        fd.frame_areas.emplace_back(static_cast<int>(frame),
                                    double(count_pixels(mask)) * frame_area_scale(found, analysed[frame]));
      }
      out.findings.push_back(std::move(fd));
      unmeasured.push_back(found.unmeasured);
    }
    if (!dropped.empty()) add_note(out.notes, name + ": " + dropped);
    out.segments.push_back(std::move(s));
  }
  // Several tracked objects of one label: numbered in [SEG] order.
  std::map<std::string, int> count, seen;
  for (const auto& f : out.findings) ++count[f.label];
  for (auto& f : out.findings)
    if (count[f.label] > 1) f.label += " " + std::to_string(++seen[f.label]);
  for (size_t n = 0; n < out.findings.size(); ++n)
    if (!unmeasured[n].empty()) add_note(out.notes, out.findings[n].label + ": " + unmeasured[n]);
  return out;
}

}  // namespace unibiomed::pipeline
