// The pipeline's public face: a study's instances in, grounded findings and result objects
// (one SEG per analysed series, one SR per study) out. Hosts (cli/, orthanc-plugin/) only call
// this; it owns the plan (config/ task rules), the model calls, mask mapping, measurements and
// the writers.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace unibiomed::pipeline {

// The one error type leaving pipeline/ (configuration, model loading, a study that cannot be
// analysed at all). Per-series problems are not thrown: they are SeriesOutcome entries.
class PipelineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The analysis stopped because the host asked it to (the cancel flag): catch it by type.
class Cancelled : public PipelineError {
 public:
  Cancelled() : PipelineError("cancelled") {}
};

struct AnalyzerSettings {
  std::filesystem::path model_dir;        // UniBiomed checkpoint folder
  // The checkpoint's tokenizer files when they are not in model_dir (empty = model_dir).
  std::filesystem::path tokenizer_dir;
  std::string device = "cpu";             // cpu | cuda | cuda:N
  std::string dtype = "auto";             // auto | float32 | bfloat16 | float16
  int threads = 0;                        // CPU threads for the model; 0 = all cores
  std::filesystem::path task_rules;       // empty = the built-in defaults (config/task-rules.json)
  int max_slices_per_series = 300;        // longer volumes: the rules' slice selection, then a stride
  std::string node_name = "UniBiomed node";  // the device name written into the SR observer context
  int max_new_tokens = 0;                 // generation limit per answer; 0 = the model's default (2048)
  int batch_size = 8;                     // views encoded and decoded together
  bool previews = true;                   // render StudyResult::previews
  // Whole slides: the square regions the analysed level is cut into (pixels; they overlap by an
  // eighth), each one view; only those over tissue are asked (dicom/tissue.h).
  int slide_region_size = 1024;
  // Memory kept for the model's answers per series (pipeline/answer_cache.h), so that a study
  // analysed again by the same analyzer (a series that arrived later, a corrected slice) asks
  // the model only about the series whose images, questions or plan changed; the others'
  // answers are reused as they were (their findings, SEG and SR come out the same). 0 = off
  // (the CLI, which analyses each study once); the Orthanc node keeps 256 MiB.
  size_t answer_cache_bytes = 0;
};

// One DICOM instance to analyse: its Part 10 bytes, or a file path.
struct InstanceInput {
  std::string id;  // a host identifier for messages (Orthanc instance id or file path)
  std::vector<uint8_t> bytes;
  std::filesystem::path path;  // used when bytes is empty
};

// An explicit question (VQA, region-aware diagnosis) on top of, or instead of, the rules.
struct Question {
  std::string text;                          // the user text; "<image>" is prepended when absent
  std::string series_instance_uid;           // empty = every analysed series
  std::optional<std::array<int, 4>> box;     // region-aware diagnosis: x0, y0, x1, y1 in view pixels
  std::string window;                        // CT window preset for ask(); "" = the matched rule's
};

// How a note of an ask's answer begins that says why its findings have no SEG.
inline constexpr char kNoSegNote[] = "no SEG: ";

// A report of an earlier analysis of the same study (an SR the host stored before).
struct ReportReference {
  std::string series_instance_uid;
  std::string sop_class_uid;
  std::string sop_instance_uid;
};

struct AnalysisRequest {
  std::vector<std::string> tasks;       // rule task names to run; empty = what the rules select
  std::vector<Question> questions;      // explicit questions
  bool rules = true;                    // false: only the explicit questions
  // Earlier reports that this run's report revises: its SR names them as predecessor documents
  // (PS3.3 C.17.2.3), so that a reader can tell the newer report from the older one.
  std::vector<ReportReference> revises;
  // Appended to the result series' descriptions, e.g. "run 2" for a study analysed again, so that
  // a viewer's series list tells the runs apart ("" = nothing appended).
  std::string result_label;
  // The Series Number of the run's first result series; its SEGs count up from it, then its SR.
  // A host that keeps several runs in one study gives each its own range (the Orthanc node:
  // 9001 for run 1, 9101 for run 2...), so that a viewer lists them apart and in order.
  int first_series_number = 9001;
};

struct Progress {
  double fraction = 0;        // 0..1 over the whole study
  std::string stage;          // "reading", "rendering", "model", "writing"
  std::string series_instance_uid;
  std::string message;        // human-readable, e.g. "CT series 3/4: slice 12/60"
};
using ProgressCallback = std::function<void(const Progress&)>;

struct Measurement {
  std::string name;   // "Area", "Volume", "Long axis"
  double value = 0;
  std::string unit;   // UCUM: mm2, mm3, mm
};

struct Finding {
  std::string label;               // e.g. "Liver", "Lesion"
  std::string text;                // the sentence a reader reads ("Liver lesion."), [SEG] and filler removed
  std::string model_answer;        // the model's answer as it gave it ("It is [SEG]. Liver lesion.")
  std::string task;                // the rule task (or "question")
  std::string series_instance_uid;
  std::string tracking_uid;        // shared by the SEG segment and the SR group
  int segment_number = 0;          // in that series' SEG (0 = no mask)
  std::string seg_sop_instance_uid;  // the SEG that holds the segment (a series may have several)
  double confidence = 0;           // from the mask probabilities and the IoU head
  std::vector<Measurement> measurements;
  std::string key_instance_uid;    // the slice/frame that shows it best
  int key_frame = 0;               // 1-based frame number in that instance (multi-frame), else 1
  double label_agreement = 1;      // share of the mask's pixels whose slice gave it this label
  double mean_probability = 0;     // mean sigmoid probability inside the mask
  double mean_iou = 0;             // the IoU head's predictions, pixel-weighted
  std::string preview_file;        // its StudyResult::previews entry, when rendered
  std::string side;                // "right" or "left" (the patient's) for a side of a paired organ
  // Video mode: the tracked object's area per frame it is on, (frame, area), the frame's
  // 0-based position among the series' analysed frames (as key_frames), in frame_area_unit ("mm2", or "pixels" without
  // a pixel spacing); empty in slices mode.
  std::vector<std::pair<int, double>> frame_areas;
  std::string frame_area_unit;
};

struct SeriesOutcome {
  std::string series_instance_uid;
  std::string modality;            // the model's modality class, e.g. "CT", "X-ray"
  std::string description;         // SeriesDescription
  enum class State { Analysed, Skipped, Failed } state = State::Analysed;
  std::string reason;              // why skipped or failed
  int views = 0;                   // images the model looked at
  std::string rule;                // the task rule that matched ("" = explicit questions only)
  std::vector<std::string> tasks;  // the tasks run (rule task names, "question")
  int frames_total = 0;            // frames (slices) in the series
  int frames_analysed = 0;         // after the rules' slice selection and max_slices_per_series
  // How the model read it (analysed series): "video" (key frames to the language model, SAM2
  // memory propagation through every frame, one finding per tracked object) or "slices"
  // (every frame on its own, masks joined by connected components).
  std::string mode;
  // Video mode: analysed frames with no analysed neighbour (a still image among cines, a lone
  // slice in another plane), asked one by one as in slices mode.
  int frames_one_by_one = 0;
  std::vector<int> key_frames;     // video: the frames the language model saw (0-based, analysed order)
  std::vector<std::string> notes;  // what was skipped and why, how stacks were split...
};

struct ResultObject {
  std::string kind;                // "SEG" or "SR"
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::vector<uint8_t> bytes;      // DICOM Part 10
  std::string file_name;           // suggested file name, e.g. "seg-series-3.dcm", "sr.dcm"
  // A SEG's form: "BINARY", or "FRACTIONAL OCCUPANCY" for frames whose Rows x Columns is not a
  // multiple of 8 (docs/DICOM-OUTPUT.md); empty for an SR.
  std::string segmentation_type;
};

// The key slice of a finding with its mask outline and label, as 8-bit RGB (write it as PNG).
struct Preview {
  std::string file_name;           // e.g. "preview-series-3-01-liver.png"
  std::string tracking_uid;        // the finding's
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;        // row-major interleaved RGB
};

struct StudyResult {
  std::string study_instance_uid;
  std::vector<SeriesOutcome> series;
  std::vector<Finding> findings;
  std::vector<std::string> answers;     // report-level text (VQA, report generation)
  std::vector<ResultObject> objects;    // SEGs, then the SR
  std::string summary_json;             // findings, measurements, timings, weights hash
  std::string weights_hash;
  std::vector<Preview> previews;        // one per finding, when settings.previews
  std::vector<std::string> problems;    // inputs that could not be read as DICOM at all
};

class Analyzer {
 public:
  // Loads the model once (throws PipelineError naming the folder and the problem).
  static std::unique_ptr<Analyzer> create(const AnalyzerSettings& settings);
  virtual ~Analyzer() = default;

  // Analyses one study's instances. Instances of other studies or unsupported series become
  // Skipped/Failed outcomes with reasons. `cancel` is polled between model calls; on
  // cancellation Cancelled (a PipelineError) is thrown and nothing is returned.
  // `result_uid_seed` makes the result UIDs deterministic (same seed, same UIDs), so a host
  // that re-runs an interrupted analysis stores the same objects again instead of duplicates.
  virtual StudyResult analyze(const std::vector<InstanceInput>& instances, const AnalysisRequest& request,
                              const ProgressCallback& progress, const std::atomic<bool>* cancel,
                              const std::string& result_uid_seed) = 0;

  // One image (an instance, or one frame of a multi-frame instance; frame is 1-based) and one
  // question, answered synchronously: the text and, when the answer is grounded, the findings
  // and a SEG referencing that image (not stored by the pipeline: the host decides). A DICOM
  // image is rendered as analyze() renders it, with the window of the rule task the question
  // matches (Question::window overrides); the masks of a question naming a rule target ("Please
  // segment liver in CT.") are coded as that target, others as the rules' generic lesion. An
  // input that is a PNG or JPEG file (InstanceInput::path) is asked as it is (not padded), without
  // a SEG.
  struct AskSegment {
    std::string phrase;             // what the model's answer grounds with it, may be empty
    double iou = 0;                 // the IoU head's prediction
    double object_score = 0;        // the object-score logit (reported, not applied)
    int width = 0, height = 0;      // the source frame's (DICOM) or the image's size
    std::vector<uint8_t> mask;      // height x width, 1 inside
    long area = 0;                  // pixels inside, at the model's output size
    std::vector<int> findings;      // indices into findings: none (empty, too small), or one per side
    int finding() const { return findings.empty() ? -1 : findings.front(); }  // the first, or -1
  };
  struct AskResult {
    std::string text;               // the answer as a reader reads it, [SEG] and filler removed
    std::string model_answer;       // the model's answer as it gave it
    std::string stop_reason;        // "eos", "stop_word", "max_new_tokens"
    std::vector<int64_t> ids;       // the generated token ids
    std::vector<AskSegment> segments;  // one per [SEG], in answer order
    std::vector<Finding> findings;
    std::optional<ResultObject> seg;
    // Why the answer shows less than it seems to: a [SEG] that became no finding (an empty mask,
    // pieces under the target's minimum size, a confidence under its minimum), a finding without
    // measurements in mm, geometry that could not be read, a DICOM image whose findings could
    // not become a SEG (kNoSegNote and why, e.g. the image has no Series Instance UID).
    std::vector<std::string> notes;
  };
  virtual AskResult ask(const InstanceInput& instance, int frame, const Question& question,
                        const std::string& result_uid_seed) = 0;

  // Video mode (SAM2 memory propagation): `frames` are the frames of one video in order (PNG or
  // JPEG files as they are, or single-frame DICOM images rendered as ask() renders them), all
  // of one size; one question about the whole video, as the reference asks it: the first
  // min(5, N) frames to the language model, each [SEG] tracked forward from frame 0 through
  // every frame. One finding per tracked object; no SEG. PipelineError naming the file for
  // frames of different sizes; `on_frame` (frames done, frames in all) may be empty.
  struct AskVideoFrame {
    std::vector<uint8_t> mask;  // height x width, 1 inside (DICOM: on the source frame)
    long area = 0;              // pixels inside
    double iou = 0;             // the IoU head's prediction on this frame
    double object_score = 0;    // the object-score logit on this frame
  };
  struct AskVideoSegment {
    std::string phrase;
    int width = 0, height = 0;
    std::vector<AskVideoFrame> frames;  // one per frame, in frame order
    std::vector<int> findings;          // indices into findings: none, or one per side
    int finding() const { return findings.empty() ? -1 : findings.front(); }  // the first, or -1
  };
  struct AskVideoResult {
    std::string text;
    std::string model_answer;
    std::string stop_reason;
    std::vector<int64_t> ids;
    std::vector<int> key_frames;           // the frames the language model saw (0-based)
    std::vector<AskVideoSegment> segments;  // one per [SEG], in answer order
    std::vector<Finding> findings;         // key_frame: 1-based frame of the video
    std::vector<std::string> notes;        // as AskResult::notes
  };
  virtual AskVideoResult ask_video(const std::vector<InstanceInput>& frames, const Question& question,
                                   const std::function<void(int, int)>& on_frame) = 0;

  // Model identity for status pages and the SR.
  virtual std::string model_description() const = 0;
  virtual std::string weights_hash() const = 0;
};

}  // namespace unibiomed::pipeline
