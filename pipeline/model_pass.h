// The model's pass over a series' views and the mapping of its masks back onto the source
// frames; the pieces analyze() and ask() share: the image the model is given, the box of a
// region question, and one answer's masks with their sentences.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dicom/series.h"
#include "dicom/view.h"
#include "inference/grounded_model.h"
#include "pipeline/consolidation.h"
#include "pipeline/grounding_engine.h"
#include "pipeline/study_analyzer.h"
#include "pipeline/study_plan.h"

namespace unibiomed::pipeline {

// Adds the seconds of its lifetime to `sink`.
class Stopwatch {
 public:
  explicit Stopwatch(double& sink) : sink_(sink), start_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() { sink_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  Stopwatch(const Stopwatch&) = delete;
  Stopwatch& operator=(const Stopwatch&) = delete;

 private:
  double& sink_;
  std::chrono::steady_clock::time_point start_;
};

// Throws Cancelled when the host has set the flag.
void check_cancel(const std::atomic<bool>* cancel);

inference::RgbImage to_model_image(dicom::RgbImage&& image);

// Region-aware diagnosis: a green (0,255,0) rectangle two pixels thick on the view, as the
// reference's region captioning data draws it (MODEL.md). The box is x0, y0, x1, y1 (inclusive
// view pixels); the line occupies the box's outer two pixels.
void draw_box(inference::RgbImage& image, const std::array<int, 4>& box);

// The model's phrases made labels, as the SEG writes them (dicom_text: no control character or
// backslash, at most 64 bytes; "" when nothing is left, and the target's label names the
// finding), so that the SEG, the SR, summary.json and the log say the same. Applied to every
// answer as it comes from the engine.
void phrases_as_labels(std::vector<inference::GroundedAnswer>& answers);
void phrases_as_labels(inference::VideoAnswer& answer);

// The masks of one answer on the source grid of `provenance`, one per non-empty [SEG], each
// with its sentence (finding_sentence; `fallback` when the answer says nothing else) and the
// raw answer. `keep_phrases`: the model's phrase names the finding (not for segmentation
// prompts, whose target does).
std::vector<FrameMask> answer_masks(const inference::GroundedAnswer& answer, const dicom::ViewProvenance& provenance,
                                    size_t frame, bool keep_phrases, const std::string& fallback);

// The sentence of one [SEG] of an answer (its own text in a multi-[SEG] answer).
std::string segment_sentence(const inference::GroundedAnswer& answer, int seg_index, const std::string& fallback);

// What the model said about a series: per planned question, the masks per unit and the
// sentence on every analysed frame.
struct QuestionResult {
  std::map<size_t, std::vector<FrameMask>> masks;                       // unit -> masks
  std::map<size_t, std::vector<std::pair<size_t, std::string>>> texts;  // unit -> (frame, sentence)
  // Video mode: unit -> per tracked object ([SEG] of the answer), its masks through the frames.
  std::map<size_t, std::vector<std::vector<FrameMask>>> tracks;
};

struct ModelPass {
  GroundingEngine& engine;
  const dicom::Series& series;
  std::string modality;                              // the model's modality class
  const std::vector<dicom::ViewRequest>& requests;   // the series' planned views
  const std::vector<size_t>& selected;               // the analysed ones
  const std::vector<std::pair<size_t, size_t>>& place;  // per selected view: (unit, frame)
  const SeriesPlan& plan;
  size_t batch_size = 8;
  const std::atomic<bool>* cancel = nullptr;
  StageTimings& timings;
  // Progress: a stage, a message, and the question x view calls done so far (added to).
  std::function<void(const std::string& stage, const std::string& message)> report;
  double& calls_done;
  // Whole slides: each mask of a region view is handed here (question, provenance, mask)
  // instead of being kept in QuestionResult::masks, so that a slide's masks are folded into
  // its stitched result as they come and never held all at once. Empty: masks are kept.
  std::function<void(size_t question, const dicom::ViewProvenance& provenance, FrameMask& mask)> slide_masks = {};
  // Video mode: also prompt SAM2 on every Nth frame, each tracked frame attending to the nearest
  // `prompted_in_attention` prompted frames (CheckpointTargets; 0 and -1: the reference).
  int video_prompt_every = 0;
  int prompted_in_attention = -1;
};

// Renders every selected view once per window, encodes it once per batch and asks every
// question of that window; `views` counts the views the model looked at. Throws Cancelled,
// PipelineError or the engine's error.
std::vector<QuestionResult> run_model_pass(const ModelPass& pass, int& views);

// Video mode: the key frames the language model sees in a sequence of `frames` frames: `count`
// evenly spaced frames (first and last included) within the part [from, to) of the sequence
// that `slices` names (the whole sequence without it), so that the target is in view.
std::vector<int> video_key_frames(size_t frames, const std::optional<config::SliceSelection>& slices, int count = 5);

// The masks of one tracked object of a video answer on the source grids (`provenance` per
// frame), frames where it is empty left out, each with its sentence as answer_masks gives it.
std::vector<FrameMask> track_masks(const inference::VideoAnswer& answer, const inference::VideoSegment& segment,
                                   const std::vector<dicom::ViewProvenance>& provenance, bool keep_phrase,
                                   const std::string& fallback);

// Video mode over the units that have views in `pass` (sequences of two frames or more; units
// without views are left to run_model_pass): per window, each unit's frames rendered and
// encoded once as a video; every question of that window asked of it, with `key_frames[unit]`
// to the language model and propagation both ways from them. Progress per propagated frame;
// cancellation between frames. Results in `tracks` (and the answer's sentence on every frame
// in `texts`). Throws Cancelled, PipelineError or the engine's error.
std::vector<QuestionResult> run_video_pass(const ModelPass& pass, size_t units,
                                           const std::vector<std::vector<int>>& key_frames, int& views);

}  // namespace unibiomed::pipeline
