// The model over a series' views, batch by batch, and its masks back on the source frames.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/model_pass.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "inference/key_frames.h"
#include "pipeline/report_text.h"
#include "pipeline/result_objects.h"

namespace unibiomed::pipeline {

void check_cancel(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load()) throw Cancelled();
}

inference::RgbImage to_model_image(dicom::RgbImage&& image) {
  inference::RgbImage out;
  out.width = image.width;
  out.height = image.height;
  out.rgb = std::move(image.rgb);
  return out;
}

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

std::string segment_sentence(const inference::GroundedAnswer& answer, int seg_index, const std::string& fallback) {
  // Several [SEG]s: each has the sentence the parser gave it, when that came from the answer
  // (not the question's target standing in for a bare "Sure, [SEG].").
  if (answer.parsed.seg_count > 1)
    for (const auto& f : answer.parsed.findings)
      if (f.seg_index == seg_index && !f.text.empty() && answer.text.find(f.text) != std::string::npos)
        return finding_sentence(f.text, fallback);
  return finding_sentence(answer.text, fallback);
}

void phrases_as_labels(std::vector<inference::GroundedAnswer>& answers) {
  for (auto& answer : answers)
    for (auto& segment : answer.segments) segment.phrase = dicom_text(segment.phrase, 64, false);
}

void phrases_as_labels(inference::VideoAnswer& answer) {
  for (auto& segment : answer.segments) segment.phrase = dicom_text(segment.phrase, 64, false);
}

std::vector<FrameMask> answer_masks(const inference::GroundedAnswer& answer, const dicom::ViewProvenance& provenance,
                                    size_t frame, bool keep_phrases, const std::string& fallback) {
  std::vector<FrameMask> out;
  for (const auto& segment : answer.segments) {
    if (segment.area() == 0) continue;
    FrameMask m;
    m.frame = frame;
    m.mask = dicom::map_mask_to_source(provenance, {segment.width, segment.height, segment.mask}).grey;
    if (!segment.probability.empty()) {
      dicom::GreyImage p{segment.width, segment.height, std::vector<uint8_t>(segment.probability.size())};
      for (size_t k = 0; k < p.grey.size(); ++k)
        p.grey[k] = static_cast<uint8_t>(std::lround(std::clamp(segment.probability[k], 0.0f, 1.0f) * 255.0f));
      m.probability = dicom::map_mask_to_source(provenance, p).grey;
    }
    m.iou = segment.iou;
    m.phrase = keep_phrases ? segment.phrase : std::string();
    const std::string name = keep_phrases && !segment.phrase.empty() ? segment.phrase : fallback;
    m.text = segment_sentence(answer, segment.seg_index, name);
    m.answer = model_answer(answer.text);
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<QuestionResult> run_model_pass(const ModelPass& pass, int& views) {
  const SeriesPlan& plan = pass.plan;
  std::set<std::string> windows;
  for (const auto& q : plan.questions) windows.insert(q.window);
  dicom::RenderOptions base_options;
  if (pass.modality == "CT") base_options.ct_preset = *windows.begin() == "" ? "abdomen" : *windows.begin();

  std::vector<QuestionResult> results(plan.questions.size());
  const size_t batch = std::max<size_t>(1, pass.batch_size);
  const size_t total_views = pass.selected.size();
  for (const std::string& window : windows) {
    dicom::RenderOptions options = base_options;
    if (pass.modality == "CT" && !window.empty()) options.ct_preset = window;
    std::vector<size_t> plain, boxed;  // questions of this window without / with a box
    for (size_t q = 0; q < plan.questions.size(); ++q)
      if (plan.questions[q].window == window) (plan.questions[q].box ? boxed : plain).push_back(q);
    for (size_t begin = 0; begin < total_views; begin += batch) {
      check_cancel(pass.cancel);
      const size_t end = std::min(total_views, begin + batch);
      std::vector<dicom::ViewProvenance> provenance;
      std::vector<inference::RgbImage> images;
      pass.report("rendering", "rendering views " + std::to_string(begin + 1) + "-" + std::to_string(end) + "/" +
                                   std::to_string(total_views));
      {
        Stopwatch t(pass.timings.rendering);
        for (size_t i = begin; i < end; ++i) {
          dicom::View view = dicom::render_view(pass.series, pass.requests[pass.selected[i]], options);
          provenance.push_back(view.provenance);
          images.push_back(to_model_image(std::move(view.image)));
        }
      }
      views += static_cast<int>(images.size());
      auto ask_batch = [&](const std::vector<inference::RgbImage>& batch_images, const std::vector<size_t>& questions) {
        const EngineTimings before = pass.engine.timings();
        auto encoded = pass.engine.encode(batch_images, pass.cancel);
        for (size_t q : questions) {
          check_cancel(pass.cancel);
          const PlannedQuestion& question = plan.questions[q];
          const bool segmentation = question.family == config::TaskFamily::Segmentation;
          pass.report("model", "slice " + std::to_string(begin + 1) +
                                   (end - begin > 1 ? "-" + std::to_string(end) : "") + "/" +
                                   std::to_string(total_views) + " (" + question.task +
                                   (segmentation ? ": " + question.target->label : "") + ")");
          auto answers = pass.engine.answer(*encoded, question.prompt, pass.cancel);
          phrases_as_labels(answers);
          pass.calls_done += double(batch_images.size());
          if (answers.size() != batch_images.size())
            throw PipelineError("the model gave " + std::to_string(answers.size()) + " answers for " +
                                std::to_string(batch_images.size()) + " views");
          Stopwatch t(pass.timings.mapping);
          for (size_t j = 0; j < answers.size(); ++j) {
            if (answers[j].cancelled()) throw Cancelled();
            const auto [unit, frame] = pass.place[begin + j];
            const std::string fallback = question.target ? question.target->label : std::string();
            results[q].texts[unit].emplace_back(frame, finding_sentence(answers[j].text));
            for (auto& m : answer_masks(answers[j], provenance[j], frame, !segmentation, fallback)) {
              if (pass.slide_masks && provenance[j].slide_region)
                pass.slide_masks(q, provenance[j], m);
              else
                results[q].masks[unit].push_back(std::move(m));
            }
          }
        }
        const EngineTimings after = pass.engine.timings();
        pass.timings.vision += after.vision_seconds - before.vision_seconds;
        pass.timings.grounding += after.grounding_seconds - before.grounding_seconds;
        pass.timings.language += after.language_seconds - before.language_seconds;
      };
      if (!plain.empty()) ask_batch(images, plain);
      for (size_t q : boxed) {
        std::vector<inference::RgbImage> with_box = images;
        for (auto& image : with_box) draw_box(image, *plan.questions[q].box);
        ask_batch(with_box, {q});
      }
    }
  }
  return results;
}

std::vector<int> video_key_frames(size_t frames, const std::optional<config::SliceSelection>& slices, int count) {
  if (frames == 0 || count < 1) return {};
  const int n = static_cast<int>(frames);
  int lo = 0, hi = n;  // [lo, hi): the part of the sequence where the target is in view
  if (slices) {
    lo = std::clamp(static_cast<int>(std::floor(slices->from * n)), 0, n - 1);
    hi = std::clamp(static_cast<int>(std::ceil(slices->to * n)), lo + 1, n);
  }
  std::vector<int> out = inference::evenly_spaced_key_frames(hi - lo, count);
  for (int& f : out) f += lo;
  return out;
}

std::vector<FrameMask> track_masks(const inference::VideoAnswer& answer, const inference::VideoSegment& segment,
                                   const std::vector<dicom::ViewProvenance>& provenance, bool keep_phrase,
                                   const std::string& fallback) {
  if (segment.masks.size() != provenance.size())
    throw PipelineError("the model tracked [SEG] " + std::to_string(segment.seg_index) + " through " +
                        std::to_string(segment.masks.size()) + " frames of " + std::to_string(provenance.size()));
  // The sentence of the [SEG], as for one image (segment_sentence reads the parsed answer).
  inference::GroundedAnswer as_image;
  as_image.text = answer.text;
  as_image.parsed = answer.parsed;
  const std::string name = keep_phrase && !segment.phrase.empty() ? segment.phrase : fallback;
  const std::string sentence = segment_sentence(as_image, segment.seg_index, name);
  const std::string said = model_answer(answer.text);
  const size_t pixels = static_cast<size_t>(segment.width) * static_cast<size_t>(segment.height);
  std::vector<FrameMask> out;
  for (size_t frame = 0; frame < segment.masks.size(); ++frame) {
    const auto& mask = segment.masks[frame];
    if (mask.size() != pixels)
      throw PipelineError("the model's mask of [SEG] " + std::to_string(segment.seg_index) + " on frame " +
                          std::to_string(frame) + " has " + std::to_string(mask.size()) + " pixels, not " +
                          std::to_string(segment.width) + "x" + std::to_string(segment.height));
    if (std::none_of(mask.begin(), mask.end(), [](uint8_t v) { return v != 0; })) continue;
    FrameMask m;
    m.frame = frame;
    m.mask = dicom::map_mask_to_source(provenance[frame], {segment.width, segment.height, mask}).grey;
    if (frame < segment.probability.size() && segment.probability[frame].size() == pixels) {
      dicom::GreyImage p{segment.width, segment.height, std::vector<uint8_t>(pixels)};
      for (size_t k = 0; k < pixels; ++k)
        p.grey[k] = static_cast<uint8_t>(std::lround(std::clamp(segment.probability[frame][k], 0.0f, 1.0f) * 255.0f));
      m.probability = dicom::map_mask_to_source(provenance[frame], p).grey;
    }
    m.iou = frame < segment.iou.size() ? segment.iou[frame] : 0.0;
    m.phrase = keep_phrase ? segment.phrase : std::string();
    m.text = sentence;
    m.answer = said;
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<QuestionResult> run_video_pass(const ModelPass& pass, size_t units,
                                           const std::vector<std::vector<int>>& key_frames, int& views) {
  const SeriesPlan& plan = pass.plan;
  std::set<std::string> windows;
  for (const auto& q : plan.questions) windows.insert(q.window);
  dicom::RenderOptions base_options;
  if (pass.modality == "CT") base_options.ct_preset = *windows.begin() == "" ? "abdomen" : *windows.begin();

  // The analysed views of each unit, in frame order.
  std::vector<std::vector<size_t>> unit_views(units);
  for (size_t i = 0; i < pass.selected.size(); ++i) {
    const auto [unit, frame] = pass.place.at(i);
    auto& v = unit_views.at(unit);
    if (v.size() <= frame) v.resize(frame + 1);
    v[frame] = pass.selected[i];
  }

  std::vector<QuestionResult> results(plan.questions.size());
  for (const std::string& window : windows) {
    dicom::RenderOptions options = base_options;
    if (pass.modality == "CT" && !window.empty()) options.ct_preset = window;
    std::vector<size_t> questions;
    for (size_t q = 0; q < plan.questions.size(); ++q)
      if (plan.questions[q].window == window) questions.push_back(q);
    for (size_t u = 0; u < units; ++u) {
      check_cancel(pass.cancel);
      const size_t n = unit_views[u].size();
      if (n == 0) continue;  // a unit asked frame by frame (a still image beside a cine)
      const bool stack = n > 0 && pass.requests[unit_views[u].front()].stack_index >= 0;
      const std::string frames_text = std::to_string(n) + (stack ? " slices" : " frames");
      std::vector<dicom::ViewProvenance> provenance;
      std::vector<inference::RgbImage> images;
      pass.report("rendering", "rendering " + frames_text + (units > 1 ? " (part " + std::to_string(u + 1) + ")" : ""));
      {
        Stopwatch t(pass.timings.rendering);
        for (size_t view : unit_views[u]) {
          dicom::View rendered = dicom::render_view(pass.series, pass.requests[view], options);
          provenance.push_back(rendered.provenance);
          images.push_back(to_model_image(std::move(rendered.image)));
        }
      }
      views += static_cast<int>(images.size());
      const EngineTimings before = pass.engine.timings();
      pass.report("model", "encoding " + frames_text + " as one video");
      auto video = pass.engine.encode_video(images, pass.cancel);
      images.clear();
      images.shrink_to_fit();
      for (size_t q : questions) {
        check_cancel(pass.cancel);
        const PlannedQuestion& question = plan.questions[q];
        const bool segmentation = question.family == config::TaskFamily::Segmentation;
        const std::string what = question.task + (segmentation ? ": " + question.target->label : "");
        inference::VideoOptions o;
        o.key_frames = key_frames.at(u);
        o.both_directions = true;
        o.prompt_every = pass.video_prompt_every;
        o.max_prompted_in_attention = pass.prompted_in_attention;
        o.probability_maps = true;
        o.cancel = pass.cancel;
        int reported = 0;
        o.on_frame = [&](int done, int total) {
          if (done > reported) pass.calls_done += double(done - reported);
          reported = std::max(reported, done);
          pass.report("model", (stack ? "slice " : "frame ") + std::to_string(done) + "/" + std::to_string(total) +
                                   " (" + what + ")");
        };
        pass.report("model", "key frames to the language model (" + what + ")");
        inference::VideoAnswer answer = pass.engine.answer_video(*video, question.prompt, o);
        phrases_as_labels(answer);
        if (reported < static_cast<int>(n)) pass.calls_done += double(static_cast<int>(n) - reported);
        if (answer.cancelled()) throw Cancelled();
        check_cancel(pass.cancel);
        Stopwatch t(pass.timings.mapping);
        const std::string fallback = question.target ? question.target->label : std::string();
        const std::string sentence = finding_sentence(answer.text);
        for (size_t f = 0; f < n; ++f) results[q].texts[u].emplace_back(f, sentence);
        auto& tracks = results[q].tracks[u];
        for (const auto& segment : answer.segments) {
          auto masks = track_masks(answer, segment, provenance, !segmentation, fallback);
          if (!masks.empty()) tracks.push_back(std::move(masks));
        }
      }
      const EngineTimings after = pass.engine.timings();
      pass.timings.grounding += after.video_encoding_seconds - before.video_encoding_seconds;
      pass.timings.language += after.video_language_seconds - before.video_language_seconds;
      pass.timings.propagation += after.video_propagation_seconds - before.video_propagation_seconds;
    }
  }
  return results;
}

}  // namespace unibiomed::pipeline
