// The study analysis: read -> plan -> render views -> model (batched, encoders once per view)
// -> masks back on the source frames -> consolidation -> SEG per analysed series (stack), SR per
// study, previews, JSON summary.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/dcmdata/dctk.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "config/task_rules.h"
#include "dicom/series.h"
#include "dicom/view.h"
#include "dicom/volume.h"
#include "dicom/window.h"
#include "inference/error.h"
#include "pipeline/consolidation.h"
#include "pipeline/preview.h"
#include "pipeline/result_uids.h"
#include "pipeline/study_analyzer.h"
#include "pipeline/study_plan.h"
#include "pipeline/summary.h"
#include "seg-writer/part10_file.h"
#include "seg-writer/segmentation_writer.h"
#include "sr-writer/finding_geometry.h"
#include "sr-writer/measurement_report.h"

#ifndef UNIBIOMED_VERSION
#define UNIBIOMED_VERSION "0"
#endif

namespace unibiomed::pipeline {

namespace {

using Clock = std::chrono::steady_clock;

class Stopwatch {
 public:
  explicit Stopwatch(double& sink) : sink_(sink), start_(Clock::now()) {}
  ~Stopwatch() { sink_ += std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  double& sink_;
  Clock::time_point start_;
};

bool cancelled(const std::atomic<bool>* cancel) { return cancel && cancel->load(); }
void check_cancel(const std::atomic<bool>* cancel) {
  if (cancelled(cancel)) throw PipelineError("cancelled");
}

seg::CodedConcept to_seg(const config::CodedConcept& c) { return {c.value, c.scheme, c.meaning}; }

std::string truncate(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n); }

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

inference::RgbImage to_model_image(dicom::RgbImage&& image) {
  inference::RgbImage out;
  out.width = image.width;
  out.height = image.height;
  out.rgb = std::move(image.rgb);
  return out;
}

// Region-aware diagnosis: a green (0,255,0) rectangle two pixels thick on the view, as the
// reference's region captioning data draws it (MODEL.md). The box is x0, y0, x1, y1 (inclusive
// view pixels); the line occupies the box's outer two pixels.
void draw_box(inference::RgbImage& image, const std::array<int, 4>& box) {
  const int x0 = std::clamp(std::min(box[0], box[2]), 0, image.width - 1), x1 = std::clamp(std::max(box[0], box[2]), 0, image.width - 1);
  const int y0 = std::clamp(std::min(box[1], box[3]), 0, image.height - 1), y1 = std::clamp(std::max(box[1], box[3]), 0, image.height - 1);
  auto put = [&](int x, int y) {
    uint8_t* p = image.rgb.data() + 3 * (static_cast<size_t>(y) * image.width + x);
    p[0] = 0;
    p[1] = 255;
    p[2] = 0;
  };
  for (int t = 0; t < 2; ++t) {
    for (int x = x0; x <= x1; ++x) {
      put(x, std::min(y0 + t, y1));
      put(x, std::max(y1 - t, y0));
    }
    for (int y = y0; y <= y1; ++y) {
      put(std::min(x0 + t, x1), y);
      put(std::max(x1 - t, x0), y);
    }
  }
}

// Frames that share one SEG: a stack of slices, the frames of one multi-frame instance, the
// single images of one size, or the regions of a slide.
struct Unit {
  std::string key;
  bool sequence = false;
  bool slide = false;
  std::vector<AnalysedFrame> frames;
  std::vector<dicom::ViewRequest> requests;  // per frame
};

struct QuestionResult {
  std::map<size_t, std::vector<FrameMask>> masks;                      // unit -> masks
  std::map<size_t, std::vector<std::pair<size_t, std::string>>> texts;  // unit -> (frame, answer text)
};

// A finding before it is public: where it is and what it says.
struct FindingWork {
  size_t question = 0;
  size_t unit = 0;
  ConsolidatedFinding found;
};

// What a unit leaves for the SR: its source images, SEG and report groups.
struct UnitOutput {
  std::vector<DcmDataset*> datasets;
  std::unique_ptr<seg::SourceImages> sources;
  std::vector<seg::Segment> segments;
  std::optional<seg::WrittenSegmentation> written;
  std::vector<sr::ReportedFinding> reported;
};

class StudyAnalyzer : public Analyzer {
 public:
  StudyAnalyzer(AnalyzerSettings settings, config::TaskRules rules, std::unique_ptr<GroundingEngine> engine)
      : settings_(std::move(settings)), rules_(std::move(rules)), engine_(std::move(engine)) {}

  StudyResult analyze(const std::vector<InstanceInput>& instances, const AnalysisRequest& request,
                      const ProgressCallback& progress, const std::atomic<bool>* cancel,
                      const std::string& result_uid_seed) override;
  AskResult ask(const InstanceInput& instance, int frame, const Question& question,
                const std::string& result_uid_seed) override;
  std::string model_description() const override { return engine_->description(); }
  std::string weights_hash() const override {
    std::lock_guard<std::mutex> lock(hash_mutex_);
    if (weights_hash_.empty()) weights_hash_ = engine_->weights_hash();
    return weights_hash_;
  }
  StageTimings timings() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return timings_;
  }

 private:
  struct SeriesRun;
  void run_series(SeriesRun& run);
  seg::AlgorithmIdentity algorithm() const {
    seg::AlgorithmIdentity a;
    a.name = "UniBiomed";
    a.version = UNIBIOMED_VERSION;
    a.parameters = "weights sha256 " + weights_hash();
    return a;
  }

  AnalyzerSettings settings_;
  config::TaskRules rules_;
  std::unique_ptr<GroundingEngine> engine_;
  mutable std::mutex mutex_;  // one analysis at a time: the model is shared
  mutable std::mutex hash_mutex_;
  mutable std::string weights_hash_;
  StageTimings timings_;
};

// Everything one series' analysis needs and produces.
struct StudyAnalyzer::SeriesRun {
  const dicom::Series* series = nullptr;
  int series_position = 0;  // 1-based among the analysed series, for messages
  int series_count = 0;
  std::string modality;
  SeriesPlan plan;
  const AnalysisRequest* request = nullptr;
  const ProgressCallback* progress = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  std::string seed;
  StageTimings* timings = nullptr;
  // Filled by run_series.
  SeriesOutcome outcome;
  std::vector<Unit> units;
  std::vector<QuestionResult> results;
  std::vector<FindingWork> findings;
  // Progress over the study: calls done before this series, and the study's total.
  double* calls_done = nullptr;
  double calls_total = 1;
};

void StudyAnalyzer::run_series(SeriesRun& run) {
  const dicom::Series& series = *run.series;
  const std::string uid = series.identity.series_instance_uid;
  auto report = [&](const std::string& stage, const std::string& message) {
    if (!*run.progress) return;
    Progress p;
    p.fraction = std::clamp(*run.calls_done / std::max(run.calls_total, 1.0), 0.0, 1.0);
    p.stage = stage;
    p.series_instance_uid = uid;
    p.message = message;
    (*run.progress)(p);
  };

  // --- the views: one list for every window (the window does not change which) -------------
  std::set<std::string> windows;
  for (const auto& q : run.plan.questions) windows.insert(q.window);
  dicom::RenderOptions base_options;
  if (run.modality == "CT") base_options.ct_preset = *windows.begin() == "" ? "abdomen" : *windows.begin();
  std::vector<dicom::ViewRequest> requests;
  {
    Stopwatch t(run.timings->rendering);
    requests = dicom::plan_views(series, base_options);
  }
  run.outcome.frames_total = static_cast<int>(requests.size());
  const config::Rule* rule = run.plan.rule;
  const ViewSelection selection =
      select_views(requests, rule ? rule->slices : std::nullopt, std::max(1, settings_.max_slices_per_series));
  if (!selection.note.empty()) run.outcome.notes.push_back(selection.note);
  run.outcome.frames_analysed = static_cast<int>(selection.selected.size());

  // --- units and analysed frames --------------------------------------------------------------
  const dicom::StackPlan stacks = dicom::plan_stacks(series);
  for (const auto& note : stacks.notes) run.outcome.notes.push_back(note);
  std::map<std::string, size_t> unit_of_key;
  std::vector<std::pair<size_t, size_t>> place;  // selected view -> (unit, frame)
  for (size_t index : selection.selected) {
    const dicom::ViewRequest& r = requests[index];
    const dicom::Instance& instance = series.instances.at(r.instance_index);
    std::string key;
    if (r.slide_region)
      key = "slide";
    else if (r.stack_index >= 0)
      key = "stack " + std::to_string(r.stack_index);
    else if (instance.is_multiframe())
      key = "instance " + std::to_string(r.instance_index);
    else
      key = "images " + std::to_string(instance.pixels().columns) + "x" + std::to_string(instance.pixels().rows);
    auto [it, inserted] = unit_of_key.emplace(key, run.units.size());
    if (inserted) {
      Unit u;
      u.key = key;
      u.slide = r.slide_region.has_value();
      u.sequence = !u.slide && (r.stack_index >= 0 || instance.is_multiframe());
      run.units.push_back(std::move(u));
    }
    Unit& unit = run.units[it->second];
    AnalysedFrame f;
    f.instance_index = r.instance_index;
    f.frame_number = r.frame_number;
    f.sop_instance_uid = instance.sop_instance_uid();
    if (r.slide_region) {
      f.columns = r.slide_region->width;
      f.rows = r.slide_region->height;
      f.column_spacing = f.row_spacing = r.slide_region->mm_per_pixel;
    } else if (r.stack_index >= 0 && static_cast<size_t>(r.stack_index) < stacks.stacks.size()) {
      const dicom::SliceStack& s = stacks.stacks[r.stack_index];
      f.columns = s.columns;
      f.rows = s.rows;
      f.column_spacing = s.column_spacing;
      f.row_spacing = s.row_spacing;
      if (s.volume_problem.empty()) f.position = s.slices.at(r.slice_index).position;
    } else {
      f.columns = instance.pixels().columns;
      f.rows = instance.pixels().rows;
      const auto& spacing = instance.frame(r.frame_number).pixel_spacing;
      if (spacing) {
        f.row_spacing = (*spacing)[0];
        f.column_spacing = (*spacing)[1];
      }
    }
    place.emplace_back(it->second, unit.frames.size());
    unit.frames.push_back(f);
    unit.requests.push_back(r);
  }

  // --- the model, window by window, batch by batch --------------------------------------------
  run.results.assign(run.plan.questions.size(), {});
  const size_t batch = static_cast<size_t>(std::max(1, settings_.batch_size));
  const size_t total_views = selection.selected.size();
  for (const std::string& window : windows) {
    dicom::RenderOptions options = base_options;
    if (run.modality == "CT" && !window.empty()) options.ct_preset = window;
    std::vector<size_t> plain, boxed;  // questions of this window without / with a box
    for (size_t q = 0; q < run.plan.questions.size(); ++q)
      if (run.plan.questions[q].window == window) (run.plan.questions[q].box ? boxed : plain).push_back(q);
    for (size_t begin = 0; begin < total_views; begin += batch) {
      check_cancel(run.cancel);
      const size_t end = std::min(total_views, begin + batch);
      std::vector<dicom::ViewProvenance> provenance;
      std::vector<inference::RgbImage> images;
      report("rendering", run.modality + " series " + std::to_string(run.series_position) + "/" +
                              std::to_string(run.series_count) + ": rendering views " + std::to_string(begin + 1) + "-" +
                              std::to_string(end) + "/" + std::to_string(total_views));
      {
        Stopwatch t(run.timings->rendering);
        for (size_t i = begin; i < end; ++i) {
          dicom::View view = dicom::render_view(series, requests[selection.selected[i]], options);
          provenance.push_back(view.provenance);
          images.push_back(to_model_image(std::move(view.image)));
        }
      }
      run.outcome.views += static_cast<int>(images.size());
      auto ask_batch = [&](const std::vector<inference::RgbImage>& batch_images, const std::vector<size_t>& questions) {
        const EngineTimings before = engine_->timings();
        auto encoded = engine_->encode(batch_images, run.cancel);
        for (size_t q : questions) {
          check_cancel(run.cancel);
          const PlannedQuestion& question = run.plan.questions[q];
          report("model", run.modality + " series " + std::to_string(run.series_position) + "/" +
                              std::to_string(run.series_count) + ": slice " + std::to_string(begin + 1) +
                              (end - begin > 1 ? "-" + std::to_string(end) : "") + "/" + std::to_string(total_views) +
                              " (" + question.task + (question.family == config::TaskFamily::Segmentation
                                                          ? ": " + question.target->label
                                                          : "") +
                              ")");
          auto answers = engine_->answer(*encoded, question.prompt, run.cancel);
          *run.calls_done += double(batch_images.size());
          if (answers.size() != batch_images.size())
            throw PipelineError("the model gave " + std::to_string(answers.size()) + " answers for " +
                                std::to_string(batch_images.size()) + " views");
          Stopwatch t(run.timings->mapping);
          for (size_t j = 0; j < answers.size(); ++j) {
            if (answers[j].cancelled()) throw PipelineError("cancelled");
            const auto [unit, frame] = place[begin + j];
            const dicom::ViewProvenance& prov = provenance[j];
            const std::string answer_text = answers[j].parsed.text.empty() ? answers[j].text : answers[j].parsed.text;
            run.results[q].texts[unit].emplace_back(frame, answer_text);
            for (const auto& segment : answers[j].segments) {
              if (segment.area() == 0) continue;
              FrameMask m;
              m.frame = frame;
              m.mask = dicom::map_mask_to_source(prov, {segment.width, segment.height, segment.mask}).grey;
              if (!segment.probability.empty()) {
                dicom::GreyImage p{segment.width, segment.height, std::vector<uint8_t>(segment.probability.size())};
                for (size_t k = 0; k < p.grey.size(); ++k)
                  p.grey[k] = static_cast<uint8_t>(std::lround(std::clamp(segment.probability[k], 0.0f, 1.0f) * 255.0f));
                m.probability = dicom::map_mask_to_source(prov, p).grey;
              }
              m.iou = segment.iou;
              m.phrase = question.family == config::TaskFamily::Segmentation ? std::string() : segment.phrase;
              m.text = answer_text;
              for (const auto& f : answers[j].parsed.findings)
                if (f.seg_index == segment.seg_index && !f.text.empty()) m.text = f.text;
              run.results[q].masks[unit].push_back(std::move(m));
            }
          }
        }
        const EngineTimings after = engine_->timings();
        run.timings->vision += after.vision_seconds - before.vision_seconds;
        run.timings->grounding += after.grounding_seconds - before.grounding_seconds;
        run.timings->language += after.language_seconds - before.language_seconds;
      };
      if (!plain.empty()) ask_batch(images, plain);
      for (size_t q : boxed) {
        std::vector<inference::RgbImage> with_box = images;
        for (auto& image : with_box) draw_box(image, *run.plan.questions[q].box);
        ask_batch(with_box, {q});
      }
    }
  }

  // --- findings -----------------------------------------------------------------------------
  Stopwatch t(run.timings->consolidation);
  for (size_t q = 0; q < run.plan.questions.size(); ++q) {
    const PlannedQuestion& question = run.plan.questions[q];
    for (const auto& [unit, masks] : run.results[q].masks) {
      ConsolidationOptions options;
      options.frames_are_sequence = run.units[unit].sequence;
      options.one_finding_per_component = question.target->kind == config::Target::Kind::Lesion;
      options.min_size = question.target->min_size;
      options.label = question.target->label;
      for (auto& found : consolidate(run.units[unit].frames, masks, options))
        run.findings.push_back({q, unit, std::move(found)});
    }
  }
}

}  // namespace

// --- the study ----------------------------------------------------------------------------------

StudyResult StudyAnalyzer::analyze(const std::vector<InstanceInput>& inputs, const AnalysisRequest& request,
                                   const ProgressCallback& progress, const std::atomic<bool>* cancel,
                                   const std::string& result_uid_seed) {
  std::lock_guard<std::mutex> lock(mutex_);
  timings_ = {};
  const auto start = Clock::now();
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
  {
    Stopwatch t(timings_.reading);
    say(0, "reading", "reading " + std::to_string(inputs.size()) + " instances");
    std::vector<dicom::Instance> instances;
    for (const auto& in : inputs) {
      check_cancel(cancel);
      try {
        instances.push_back(in.bytes.empty() ? dicom::Instance::read_file(in.path)
                                             : dicom::Instance::read_bytes(in.bytes, in.id.empty() ? "instance" : in.id));
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
  std::vector<std::unique_ptr<SeriesRun>> runs;
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
    if (!series.modality.modality) {
      skip(SeriesOutcome::State::Skipped, series.modality.reason.empty() ? "not a modality the model reads" : series.modality.reason);
      continue;
    }
    if (!series.has_images()) {
      skip(SeriesOutcome::State::Failed,
           "no decodable image" + (series.problems.empty() ? std::string() : ": " + series.problems.front()));
      continue;
    }
    auto run = std::make_unique<SeriesRun>();
    run->series = &series;
    run->modality = outcome.modality;
    run->plan = plan_series(rules_, {outcome.modality, series.identity.body_part_examined, series.identity.series_description},
                            outcome.series_instance_uid, request);
    if (run->plan.rule) outcome.rule = run->plan.rule->name;
    for (const auto& q : run->plan.questions)
      if (std::find(outcome.tasks.begin(), outcome.tasks.end(), q.task) == outcome.tasks.end()) outcome.tasks.push_back(q.task);
    if (run->plan.questions.empty()) {
      skip(SeriesOutcome::State::Skipped, run->plan.skip_reason);
      continue;
    }
    run->outcome = outcome;
    // Progress weights: views (estimated by frames, capped) x questions.
    const double views = std::min<double>(double(series.frame_count()), double(std::max(1, settings_.max_slices_per_series)));
    calls_total += views * double(run->plan.questions.size());
    runs.push_back(std::move(run));
  }

  // --- analysis, series by series: a failing series is recorded, the rest go on -------------
  std::vector<std::unique_ptr<UnitOutput>> outputs;
  // Parallel to result.findings: which series run and work item each finding came from.
  std::vector<std::pair<const SeriesRun*, const FindingWork*>> finding_sources;
  std::vector<sr::SeriesFindings> report_series;
  std::vector<sr::ReportText> report_texts;
  int position = 0;
  for (auto& run_ptr : runs) {
    SeriesRun& run = *run_ptr;
    run.series_position = ++position;
    run.series_count = static_cast<int>(runs.size());
    run.request = &request;
    run.progress = &progress;
    run.cancel = cancel;
    run.seed = seed;
    run.timings = &timings_;
    run.calls_done = &calls_done;
    run.calls_total = calls_total;
    const dicom::Series& series = *run.series;
    const std::string series_uid = series.identity.series_instance_uid;
    const size_t findings_before = result.findings.size();
    const size_t objects_before = result.objects.size();
    const size_t outputs_before = outputs.size();
    const size_t answers_before = result.answers.size();
    try {
      run_series(run);

      // SEG per unit with findings, and the SR groups that go with it.
      Stopwatch t(timings_.writing);
      say(std::min(1.0, calls_done / std::max(calls_total, 1.0)), "writing",
          run.modality + " series " + std::to_string(run.series_position) + ": writing results");
      for (size_t u = 0; u < run.units.size(); ++u) {
        std::vector<const FindingWork*> unit_findings;
        for (const auto& f : run.findings)
          if (f.unit == u) unit_findings.push_back(&f);
        if (unit_findings.empty()) continue;
        const Unit& unit = run.units[u];
        if (unit.slide) {
          run.outcome.notes.push_back("findings on whole-slide regions are reported without a SEG (tiled SEG output is not "
                                      "implemented)");
          for (const FindingWork* fw : unit_findings) {
            const PlannedQuestion& q = run.plan.questions[fw->question];
            Finding f;
            f.label = fw->found.label;
            f.text = fw->found.text;
            f.task = q.task;
            f.series_instance_uid = series_uid;
            f.confidence = fw->found.confidence;
            f.key_instance_uid = unit.frames[fw->found.key_frame].sop_instance_uid;
            f.key_frame = unit.frames[fw->found.key_frame].frame_number;
            if (fw->found.key_area_mm2) f.measurements.push_back({"Area", *fw->found.key_area_mm2, "mm2"});
            result.findings.push_back(f);
            finding_sources.emplace_back(&run, fw);
          }
          continue;
        }
        auto out = std::make_unique<UnitOutput>();
        std::map<size_t, size_t> dataset_of_instance;
        for (const auto& frame : unit.frames)
          if (dataset_of_instance.emplace(frame.instance_index, out->datasets.size()).second)
            out->datasets.push_back(series.instances.at(frame.instance_index).dataset());
        out->sources = std::make_unique<seg::SourceImages>(out->datasets);
        std::map<std::pair<size_t, int>, size_t> source_frame;  // (dataset, frame number) -> source frame
        for (size_t i = 0; i < out->sources->frame_count(); ++i) {
          const auto& sf = out->sources->frame(i);
          source_frame[{sf.instance, std::max(1, sf.frame_number)}] = i;
        }
        const std::string unit_tag = run.units.size() > 1 ? " " + unit.key : "";
        for (size_t n = 0; n < unit_findings.size(); ++n) {
          const FindingWork& fw = *unit_findings[n];
          const PlannedQuestion& q = run.plan.questions[fw.question];
          const config::Target& target = *q.target;
          seg::Segment segment;
          auto& d = segment.description;
          d.label = truncate(fw.found.label, 64);
          d.description = truncate(fw.found.text, 1024);
          d.category = to_seg(target.category);
          d.type = to_seg(target.type);
          if (target.anatomic_region) d.anatomic_region = to_seg(*target.anatomic_region);
          d.colour = {target.colour[0], target.colour[1], target.colour[2]};
          d.tracking_id = truncate(fw.found.label + " (series " + std::to_string(series.identity.series_number) + ")", 64);
          d.tracking_uid = derive_uid(seed, series_uid, "tracking" + unit_tag + " segment " + std::to_string(n + 1));
          d.algorithm = algorithm();
          for (const auto& [frame, mask] : fw.found.masks) {
            const AnalysedFrame& af = unit.frames[frame];
            seg::FrameMask m;
            m.frame = source_frame.at({dataset_of_instance.at(af.instance_index), af.frame_number});
            m.binary = mask;
            segment.masks.push_back(std::move(m));
          }
          out->segments.push_back(std::move(segment));
        }
        seg::SegmentationOptions options;
        options.algorithm = algorithm();
        options.series_number = 9001 + static_cast<int>(outputs.size());
        options.series_description = "UniBiomed segmentation";
        options.sop_instance_uid = derive_uid(seed, series_uid, "SEG instance" + unit_tag);
        options.series_instance_uid = derive_uid(seed, series_uid, "SEG series" + unit_tag);
        out->written = seg::write_segmentation(*out->sources, out->segments, options);
        if (!out->written) continue;  // no segment: nothing to write (cannot happen with findings)
        ResultObject object;
        object.kind = "SEG";
        object.sop_instance_uid = out->written->sop_instance_uid;
        object.series_instance_uid = out->written->series_instance_uid;
        object.bytes = seg::part10_bytes(*out->written->file);
        object.file_name = "seg-series-" + std::to_string(series.identity.series_number) +
                           (run.units.size() > 1 ? "-" + file_safe(unit.key) : "") + ".dcm";
        result.objects.push_back(std::move(object));

        for (size_t n = 0; n < unit_findings.size(); ++n) {
          const FindingWork& fw = *unit_findings[n];
          const PlannedQuestion& q = run.plan.questions[fw.question];
          const config::Target& target = *q.target;
          const AnalysedFrame& key = unit.frames[fw.found.key_frame];
          Finding f;
          f.label = fw.found.label;
          f.text = fw.found.text;
          f.task = q.task;
          f.series_instance_uid = series_uid;
          f.tracking_uid = out->written->tracking_uids.at(n);
          f.segment_number = static_cast<int>(n + 1);
          f.confidence = fw.found.confidence;
          f.label_agreement = fw.found.label_agreement;
          f.mean_probability = fw.found.mean_probability;
          f.mean_iou = fw.found.mean_iou;
          f.key_instance_uid = key.sop_instance_uid;
          f.key_frame = key.frame_number;
          sr::ReportedFinding reported;
          reported.tracking_id = out->segments[n].description.tracking_id;
          reported.tracking_uid = f.tracking_uid;
          reported.finding = to_seg(target.type);
          if (auto site = target.effective_finding_site()) reported.finding_site = to_seg(*site);
          reported.text = f.text.empty() ? f.label : f.label + ": " + f.text;
          reported.segment_number = static_cast<uint16_t>(n + 1);
          if (fw.found.key_area_mm2) f.measurements.push_back({"Area", *fw.found.key_area_mm2, "mm2"});
          if (fw.found.volume_mm3) {
            f.measurements.push_back({"Volume", *fw.found.volume_mm3, "mm3"});
            reported.measurements.push_back(sr::volume_mm3(*fw.found.volume_mm3));
          } else if (fw.found.key_area_mm2) {
            reported.measurements.push_back(sr::area_mm2(*fw.found.key_area_mm2));
          }
          if (fw.found.diameter_in_mm && fw.found.key_diameter.length > 0) {
            f.measurements.push_back({"Long axis", fw.found.key_diameter.length, "mm"});
            reported.measurements.push_back(sr::long_axis_mm(fw.found.key_diameter.length));
          }
          reported.region = sr::key_region(out->segments[n], *out->sources);
          out->reported.push_back(std::move(reported));
          result.findings.push_back(std::move(f));
          finding_sources.emplace_back(&run, &fw);
        }
        outputs.push_back(std::move(out));
      }

      // Report-level text: answers of non-segmentation questions. With findings, the answer on
      // the key slice of the largest; without, the most frequent answer over the views.
      for (size_t q = 0; q < run.plan.questions.size(); ++q) {
        const PlannedQuestion& question = run.plan.questions[q];
        if (question.family == config::TaskFamily::Segmentation) continue;
        for (const auto& [unit, texts] : run.results[q].texts) {
          std::string chosen;
          size_t chosen_frame = 0;
          const FindingWork* largest = nullptr;
          for (const auto& f : run.findings)
            if (f.question == q && f.unit == unit && (!largest || f.found.pixel_count > largest->found.pixel_count)) largest = &f;
          if (largest) {
            for (const auto& [frame, text] : texts)
              if (frame == largest->found.key_frame) chosen = text, chosen_frame = frame;
          } else {
            std::map<std::string, size_t> count;
            for (const auto& [frame, text] : texts)
              if (!text.empty() && ++count[text] > count[chosen]) chosen = text, chosen_frame = frame;
            if (!chosen.empty() && count.size() > 1) chosen_frame = texts.front().first;
          }
          if (chosen.empty()) continue;
          const Unit& u = run.units[unit];
          std::string where = run.modality + " series " + std::to_string(series.identity.series_number);
          if (!series.identity.series_description.empty()) where += " (" + series.identity.series_description + ")";
          if (u.frames.size() > 1)
            where += ", " + std::string(u.sequence ? "slice " : "image ") + std::to_string(chosen_frame + 1) + "/" +
                     std::to_string(u.frames.size());
          const std::string line = where + ", " + question.task + ": " + chosen;
          result.answers.push_back(line);
        }
      }
      run.outcome.state = SeriesOutcome::State::Analysed;
    } catch (const PipelineError& e) {
      if (std::string(e.what()) == "cancelled") throw;
      run.outcome.state = SeriesOutcome::State::Failed;
      run.outcome.reason = e.what();
    } catch (const std::exception& e) {
      if (cancelled(cancel)) throw PipelineError("cancelled");
      run.outcome.state = SeriesOutcome::State::Failed;
      run.outcome.reason = e.what();
    }
    if (run.outcome.state == SeriesOutcome::State::Failed) {
      // Nothing of a failed series goes out half-written.
      result.findings.resize(findings_before);
      finding_sources.resize(findings_before);
      result.objects.resize(objects_before);
      outputs.resize(outputs_before);
      result.answers.resize(answers_before);
      run.findings.clear();
    }
    result.series.push_back(run.outcome);
  }

  // --- the SR of the study ----------------------------------------------------------------
  {
    Stopwatch t(timings_.writing);
    for (const auto& out : outputs)
      report_series.push_back({out->sources.get(), out->written->file->getDataset(), out->reported});
    for (const auto& a : result.answers) report_texts.push_back({{"121106", "DCM", "Comment"}, a});
    if (!report_series.empty() || !report_texts.empty()) {
      say(1, "writing", "writing the report");
      sr::ReportOptions options;
      options.algorithm = algorithm();
      options.device_name = settings_.node_name;
      options.sop_instance_uid = derive_uid(seed, result.study_instance_uid, "SR instance");
      options.series_instance_uid = derive_uid(seed, result.study_instance_uid, "SR series");
      std::optional<sr::WrittenReport> report;
      std::unique_ptr<seg::SourceImages> text_only_sources;
      if (report_series.empty()) {
        // Text only: the SR still needs the study's identity; take it from an analysed series.
        for (const auto& run : runs)
          if (run->outcome.state == SeriesOutcome::State::Analysed) {
            text_only_sources = std::make_unique<seg::SourceImages>(
                std::vector<DcmDataset*>{run->series->instances.front().dataset()});
            break;
          }
        if (text_only_sources) report_series.push_back({text_only_sources.get(), nullptr, {}});
      }
      if (!report_series.empty()) report = sr::write_measurement_report(report_series, report_texts, options);
      if (report) {
        ResultObject object;
        object.kind = "SR";
        object.sop_instance_uid = report->sop_instance_uid;
        object.series_instance_uid = report->series_instance_uid;
        object.bytes = seg::part10_bytes(*report->file);
        object.file_name = "sr.dcm";
        result.objects.push_back(std::move(object));
      }
    }
  }

  // --- previews ------------------------------------------------------------------------------
  if (settings_.previews) {
    Stopwatch t(timings_.previews);
    int counter = 0;
    for (size_t i = 0; i < result.findings.size(); ++i) {
      Finding& finding = result.findings[i];
      const SeriesRun* run = finding_sources[i].first;
      const FindingWork& fw = *finding_sources[i].second;
      {
        const Unit& unit = run->units[fw.unit];
        const PlannedQuestion& q = run->plan.questions[fw.question];
        try {
          dicom::RenderOptions options;
          if (run->modality == "CT" && !q.window.empty()) options.ct_preset = q.window;
          dicom::View view = dicom::render_view(*run->series, unit.requests[fw.found.key_frame], options);
          if (q.box) {
            inference::RgbImage boxed = to_model_image(std::move(view.image));
            draw_box(boxed, *q.box);
            view.image = {boxed.width, boxed.height, std::move(boxed.rgb)};
          }
          const dicom::RgbImage on_source = view_on_source_grid(view);
          const dicom::RgbImage drawn =
              render_preview(on_source, fw.found.masks.at(fw.found.key_frame), q.target->colour, finding.label);
          Preview p;
          char number[16];
          std::snprintf(number, sizeof number, "%02d", ++counter);
          p.file_name = "preview-series-" + std::to_string(run->series->identity.series_number) + "-" + number + "-" +
                        file_safe(finding.label) + ".png";
          p.tracking_uid = finding.tracking_uid;
          p.width = drawn.width;
          p.height = drawn.height;
          p.rgb = drawn.rgb;
          finding.preview_file = p.file_name;
          result.previews.push_back(std::move(p));
        } catch (const std::exception& e) {
          result.problems.push_back("preview of " + finding.label + " not drawn: " + e.what());
        }
      }
    }
  }

  timings_.views = 0;
  for (const auto& s : result.series) timings_.views += s.views;
  timings_.total = std::chrono::duration<double>(Clock::now() - start).count();
  result.summary_json = summary_json(result, engine_->description(), rules_.source(), timings_);
  say(1, "done", std::to_string(result.findings.size()) + " findings");
  return result;
}

// --- one image, one question ------------------------------------------------------------------

Analyzer::AskResult StudyAnalyzer::ask(const InstanceInput& input, int frame, const Question& question,
                                       const std::string& result_uid_seed) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string seed = result_uid_seed.empty() ? random_uid_seed() : result_uid_seed;
  if (question.text.empty() && !question.box) throw PipelineError("ask: the question is empty");
  dicom::SeriesCollection collection;
  try {
    std::vector<dicom::Instance> one;
    one.push_back(input.bytes.empty() ? dicom::Instance::read_file(input.path)
                                      : dicom::Instance::read_bytes(input.bytes, input.id.empty() ? "instance" : input.id));
    collection = dicom::group_into_series(std::move(one));
  } catch (const dicom::DicomError& e) {
    throw PipelineError(e.what());
  }
  if (collection.series.size() != 1) throw PipelineError("ask: " + input.id + " is not one image");
  const dicom::Series& series = collection.series.front();
  if (!series.modality.modality) throw PipelineError("ask: " + input.id + ": " + series.modality.reason);
  const std::string modality = dicom::modality_name(*series.modality.modality);
  const config::Rule* rule =
      rules_.select({modality, series.identity.body_part_examined, series.identity.series_description});
  dicom::RenderOptions options;
  if (modality == "CT") options.ct_preset = default_window(rule, modality);
  std::vector<dicom::ViewRequest> requests;
  try {
    requests = dicom::plan_views(series, options);
  } catch (const dicom::DicomError& e) {
    throw PipelineError(e.what());
  }
  const dicom::ViewRequest* request = nullptr;
  for (const auto& r : requests)
    if (r.instance_index == 0 && r.frame_number == frame && !r.slide_region) request = &r;
  if (!request)
    throw PipelineError("ask: " + input.id + " has no frame " + std::to_string(frame) + " (it has " +
                        std::to_string(series.instances.front().pixels().number_of_frames) + ")");
  dicom::View view = dicom::render_view(series, *request, options);
  const dicom::ViewProvenance provenance = view.provenance;
  inference::RgbImage image = to_model_image(std::move(view.image));
  if (question.box) draw_box(image, *question.box);
  const std::string text =
      question.text.empty() ? rules_.prompt_template(config::TaskFamily::RegionDiagnosis) : question.text;
  auto batch = engine_->encode({image}, nullptr);
  const auto answers = engine_->answer(*batch, text, nullptr);
  const inference::GroundedAnswer& answer = answers.at(0);

  AskResult out;
  out.text = answer.parsed.text.empty() ? answer.text : answer.parsed.text;
  AnalysedFrame f;
  f.instance_index = 0;
  f.frame_number = frame;
  f.sop_instance_uid = series.instances.front().sop_instance_uid();
  f.columns = provenance.source_columns;
  f.rows = provenance.source_rows;
  if (provenance.geometry.pixel_spacing) {
    f.row_spacing = (*provenance.geometry.pixel_spacing)[0];
    f.column_spacing = (*provenance.geometry.pixel_spacing)[1];
  }
  // Each [SEG] is a finding of its own (its phrase, or the question's target, names it).
  PlannedQuestion planned;
  planned.target = nullptr;
  for (const auto& [k, t] : rules_.targets())
    if (k == "lesion") planned.target = &t;
  if (!planned.target && !rules_.targets().empty()) planned.target = &rules_.targets().begin()->second;
  std::vector<ConsolidatedFinding> found;
  for (const auto& segment : answer.segments) {
    if (segment.area() == 0) continue;
    FrameMask m;
    m.frame = 0;
    m.mask = dicom::map_mask_to_source(provenance, {segment.width, segment.height, segment.mask}).grey;
    if (!segment.probability.empty()) {
      dicom::GreyImage p{segment.width, segment.height, std::vector<uint8_t>(segment.probability.size())};
      for (size_t k = 0; k < p.grey.size(); ++k)
        p.grey[k] = static_cast<uint8_t>(std::lround(std::clamp(segment.probability[k], 0.0f, 1.0f) * 255.0f));
      m.probability = dicom::map_mask_to_source(provenance, p).grey;
    }
    m.iou = segment.iou;
    m.phrase = segment.phrase;
    m.text = out.text;
    ConsolidationOptions options;
    options.label = segment.phrase.empty() ? (planned.target ? planned.target->label : "Finding") : segment.phrase;
    for (auto& c : consolidate({f}, {m}, options)) found.push_back(std::move(c));
  }
  if (found.empty() || !planned.target) return out;

  std::vector<DcmDataset*> datasets{series.instances.front().dataset()};
  seg::SourceImages sources(datasets);
  size_t source_frame = 0;
  for (size_t i = 0; i < sources.frame_count(); ++i)
    if (std::max(1, sources.frame(i).frame_number) == frame) source_frame = i;
  std::vector<seg::Segment> segments;
  const std::string uid = series.identity.series_instance_uid;
  for (size_t n = 0; n < found.size(); ++n) {
    seg::Segment s;
    auto& d = s.description;
    d.label = truncate(found[n].label, 64);
    d.description = truncate(found[n].text, 1024);
    d.category = to_seg(planned.target->category);
    d.type = to_seg(planned.target->type);
    if (planned.target->anatomic_region) d.anatomic_region = to_seg(*planned.target->anatomic_region);
    d.colour = {planned.target->colour[0], planned.target->colour[1], planned.target->colour[2]};
    d.tracking_id = truncate(found[n].label, 64);
    d.tracking_uid = derive_uid(seed, uid, "ask tracking segment " + std::to_string(n + 1));
    d.algorithm = algorithm();
    seg::FrameMask m;
    m.frame = source_frame;
    m.binary = found[n].masks.at(0);
    s.masks.push_back(std::move(m));
    segments.push_back(std::move(s));
  }
  seg::SegmentationOptions options_seg;
  options_seg.algorithm = algorithm();
  options_seg.series_description = "UniBiomed segmentation";
  options_seg.sop_instance_uid = derive_uid(seed, uid, "ask SEG instance");
  options_seg.series_instance_uid = derive_uid(seed, uid, "ask SEG series");
  auto written = seg::write_segmentation(sources, segments, options_seg);
  for (size_t n = 0; n < found.size(); ++n) {
    Finding fd;
    fd.label = found[n].label;
    fd.text = found[n].text;
    fd.task = "question";
    fd.series_instance_uid = uid;
    fd.segment_number = written ? static_cast<int>(n + 1) : 0;
    fd.tracking_uid = written ? written->tracking_uids.at(n) : segments[n].description.tracking_uid;
    fd.confidence = found[n].confidence;
    fd.mean_probability = found[n].mean_probability;
    fd.mean_iou = found[n].mean_iou;
    fd.key_instance_uid = f.sop_instance_uid;
    fd.key_frame = frame;
    if (found[n].key_area_mm2) fd.measurements.push_back({"Area", *found[n].key_area_mm2, "mm2"});
    if (found[n].diameter_in_mm) fd.measurements.push_back({"Long axis", found[n].key_diameter.length, "mm"});
    out.findings.push_back(std::move(fd));
  }
  if (written) {
    ResultObject object;
    object.kind = "SEG";
    object.sop_instance_uid = written->sop_instance_uid;
    object.series_instance_uid = written->series_instance_uid;
    object.bytes = seg::part10_bytes(*written->file);
    object.file_name = "seg.dcm";
    out.seg = std::move(object);
  }
  return out;
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
  for (const auto& rule : rules.rules())
    for (const auto& task : rule.tasks)
      if (!task.window.empty() && std::find(known.begin(), known.end(), task.window) == known.end()) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        throw PipelineError("task rules (" + rules.source() + "): rule " + rule.name + ", task " + task.name +
                            ": unknown window preset '" + task.window + "' (known: " + list + ")");
      }
  if (settings.max_slices_per_series < 1) throw PipelineError("max_slices_per_series must be at least 1");
  if (settings.batch_size < 1) throw PipelineError("batch_size must be at least 1");
  return std::make_unique<StudyAnalyzer>(settings, std::move(rules), std::move(engine));
}

StageTimings last_timings(const Analyzer& analyzer) {
  const auto* a = dynamic_cast<const StudyAnalyzer*>(&analyzer);
  if (!a) throw PipelineError("last_timings: not the pipeline's analyzer");
  return a->timings();
}

std::unique_ptr<Analyzer> Analyzer::create(const AnalyzerSettings& settings) {
  if (settings.model_dir.empty()) throw PipelineError("no model folder given");
  EngineOptions options;
  options.model_dir = settings.model_dir;
  options.device = settings.device;
  options.dtype = settings.dtype;
  options.threads = settings.threads;
  options.max_new_tokens = settings.max_new_tokens;
  options.batch_size = settings.batch_size;
  std::unique_ptr<GroundingEngine> engine;
  try {
    engine = load_grounded_model(options);
  } catch (const inference::InferenceError& e) {
    throw PipelineError("model " + settings.model_dir.string() + ": " + e.what());
  } catch (const std::exception& e) {
    throw PipelineError("model " + settings.model_dir.string() + ": " + e.what());
  }
  return make_analyzer(settings, std::move(engine));
}

}  // namespace unibiomed::pipeline
