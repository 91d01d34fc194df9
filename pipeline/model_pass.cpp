// The model over a series' views, batch by batch, and its masks back on the source frames.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/model_pass.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "pipeline/report_text.h"

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
            for (auto& m : answer_masks(answers[j], provenance[j], frame, !segmentation, fallback))
              results[q].masks[unit].push_back(std::move(m));
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

}  // namespace unibiomed::pipeline
