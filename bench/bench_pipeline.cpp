// The node's analysis end to end, on the CPU or a GPU (--device): the sample CT (60 slices of
// 512x512 by default) through pipeline::Analyzer with a REAL-size checkpoint (1.16 B parameters,
// written by make-random into a temporary folder; --config tiny for a quick check), timed by
// stage as the pipeline records them (summary.json's timings_seconds): reading, rendering, model
// (vision, language, grounding), mask mapping, consolidation, writing. Prints the seconds per
// study and per slice of each stage and the non-model share of the total (target < 5 %: DICOM
// decode, rendering and writing must be negligible beside the model); the peak memory of the
// model's two calls (encode: InternViT + SAM2 image encoder of a batch of views; answer: language
// model + mask decoder) and of the whole study (GPU: tensor bytes; CPU: resident). Each figure is
// also a RESULT line (bench_common.h).
//
//   bench_pipeline [--device cpu|cuda[:N]] [--dtype auto] [--slices 60] [--config real|tiny]
//                  [--batch 8] [--tasks abnormality] [--max-new-tokens 8] [--model DIR] [--keep]
//
// e.g. issue 23 on a GPU: bench_pipeline --device cuda --slices 300 (target < 60 s per study)
//      quick check: bench_pipeline --config tiny --slices 4
//
// Random weights never produce [SEG] on their own, so by default the checkpoint is the
// `make-random --answer "Sure, [SEG]."` fixture: its language model answers that to every
// question, so every answer goes through SAM2 (image encoder once per slice, decoder per [SEG])
// and the masks through mapping, consolidation and the SEG writer, as with real findings. The
// language model's cost is then that of a short answer (prefill dominates; see bench_llm for
// decoding speed). --tasks limits the rule tasks (default: the abnormality question only, one
// question per slice; "all" runs every task of the CT rule).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/bench_common.h"
#include "bench/bench_device.h"
#include "inference/device.h"
#include "inference/random_checkpoint.h"
#include "pipeline/analyzer.h"
#include "pipeline/grounding_engine.h"
#include "pipeline/study_analyzer.h"
#include "samples/sample_studies.h"

namespace {

using namespace unibiomed;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
namespace bench = unibiomed::bench;

// The node's engine, with the peak memory of each of its calls: the counter (GPU tensors, or
// VmHWM) is reset before a call and read after it; the largest of each kind is kept.
class PeakEngine : public pipeline::GroundingEngine {
 public:
  PeakEngine(std::unique_ptr<pipeline::GroundingEngine> engine, const c10::Device& device)
      : engine_(std::move(engine)), peak_(device) {}
  std::unique_ptr<Batch> encode(const std::vector<inference::RgbImage>& images, const std::atomic<bool>* cancel) override {
    peak_.reset();
    auto batch = engine_->encode(images, cancel);
    encode_peak_ = std::max(encode_peak_, peak_.peak_mib());
    return batch;
  }
  std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                const std::atomic<bool>* cancel) override {
    peak_.reset();
    auto answers = engine_->answer(batch, question, cancel);
    answer_peak_ = std::max(answer_peak_, peak_.peak_mib());
    return answers;
  }
  std::unique_ptr<VideoBatch> encode_video(const std::vector<inference::RgbImage>& frames,
                                           const std::atomic<bool>* cancel) override {
    peak_.reset();
    auto video = engine_->encode_video(frames, cancel);
    encode_peak_ = std::max(encode_peak_, peak_.peak_mib());
    return video;
  }
  inference::VideoAnswer answer_video(VideoBatch& video, const std::string& question,
                                      const inference::VideoOptions& options) override {
    peak_.reset();
    auto answer = engine_->answer_video(video, question, options);
    answer_peak_ = std::max(answer_peak_, peak_.peak_mib());
    return answer;
  }
  std::string description() const override { return engine_->description(); }
  std::string weights_hash() const override { return engine_->weights_hash(); }
  pipeline::EngineTimings timings() const override { return engine_->timings(); }
  double encode_peak() const { return encode_peak_; }
  double answer_peak() const { return answer_peak_; }

 private:
  std::unique_ptr<pipeline::GroundingEngine> engine_;
  bench::StagePeak peak_;
  double encode_peak_ = 0, answer_peak_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int slices = 60, max_new_tokens = 8, batch = 8;
  std::string tasks = "abnormality", model_arg, kind = "real", dtype = "auto";
  bool keep = false;
  c10::Device device(c10::kCPU);
  bench::CommandLine cl("bench_pipeline",
                        "The node's analysis end to end on the CPU or a GPU: the sample CT through pipeline::Analyzer\n"
                        "with a real-size random checkpoint (the make-random --answer \"Sure, [SEG].\" fixture), timed\n"
                        "by stage; prints the seconds per study and per slice of each stage, the non-model share\n"
                        "(target < 5 %) and the peak memory of the model's calls (GPU: tensors; CPU: resident). One\n"
                        "RESULT line per figure. Quick check: --config tiny --slices 4.");
  cl.option(
        "--device", "cpu|cuda[:N]", bench::kDeviceHelp, [&](const std::string& v) { device = bench::parse_device(v); },
        "cpu")
      .dtype_option(dtype)
      .option("--slices", "N", "CT slices of 512x512 (at least 2)", slices)
      .config_option(kind)
      .option("--batch", "N", "views encoded and decoded together (the node's BatchSize)", batch)
      .option("--tasks", "abnormality|all|NAME,...", "rule tasks asked per slice", tasks)
      .option("--max-new-tokens", "N", "most tokens per answer", max_new_tokens)
      .option("--model", "DIR", "checkpoint folder (default: the real-size fixture, written to a temporary folder)",
              model_arg)
      .flag("--keep", "keep the temporary folder", keep);
  cl.parse(argc, argv);
  if (slices < 2) cl.fail("--slices must be at least 2");
  if (max_new_tokens < 1) cl.fail("--max-new-tokens must be at least 1");
  if (batch < 1) cl.fail("--batch must be at least 1");
  const std::string device_text = bench::device_name(device);
  fs::path model = model_arg;

  const fs::path work = fs::temp_directory_path() / ("unibiomed-bench-pipeline-" + std::to_string(::getpid()));
  fs::create_directories(work);
  try {
    if (model.empty()) {
      model = work / "model";
      inference::RandomCheckpointOptions o;
      o.kind = kind;
      o.fixed_answer = "Sure, [SEG].";
      const auto t0 = Clock::now();
      const auto s = inference::write_random_checkpoint(model, o);
      std::printf("checkpoint: %s config, %.3f B parameters, answers \"Sure, [SEG].\" (make-random --answer), "
                  "written in %.1f s\n",
                  kind.c_str(), static_cast<double>(s.parameters) / 1e9,
                  std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::printf("device: %s\n", inference::describe_device(device).c_str());
    samples::SampleOptions so;
    so.only = {"ct"};
    so.ct_slices = slices;
    const auto series = samples::write_samples(work / "study", so).at(0);
    std::printf("study: sample CT, %zu slices of 512x512\n", series.files.size());

    pipeline::AnalyzerSettings settings;
    settings.model_dir = model;
    settings.max_new_tokens = max_new_tokens;
    settings.previews = false;
    settings.device = device_text;
    settings.dtype = dtype;
    settings.batch_size = batch;
    // The engine Analyzer::create would load, wrapped to read the peak memory of its calls.
    bench::StagePeak study_peak(device);
    study_peak.reset();
    const auto t_load = Clock::now();
    auto engine = std::make_unique<PeakEngine>(pipeline::load_grounded_model(pipeline::engine_options(settings)), device);
    const PeakEngine& peaks = *engine;
    auto analyzer = pipeline::make_analyzer(settings, std::move(engine));
    inference::synchronize(device);
    const double load_peak = study_peak.peak_mib();
    std::printf("model loaded in %.1f s (%s %.0f MiB): %s\n",
                std::chrono::duration<double>(Clock::now() - t_load).count(), study_peak.label(), load_peak,
                analyzer->model_description().c_str());
    // The weights hash (SHA-256 of 2.3 GB, written into every SR) is computed once per model
    // folder and cached there (unibiomed-weights-hash.json): a one-time cost of a new model, not
    // of a study, so it is taken before the study is timed and shown on its own.
    const auto t_hash = Clock::now();
    const std::string hash = analyzer->weights_hash();
    std::printf("weights hash %s... in %.1f s (once per model folder, then cached)\n", hash.substr(0, 12).c_str(),
                std::chrono::duration<double>(Clock::now() - t_hash).count());

    std::vector<pipeline::InstanceInput> inputs;
    for (const auto& f : series.files) inputs.push_back({f.string(), {}, f});
    pipeline::AnalysisRequest request;
    if (tasks != "all") {
      size_t at = 0;
      while (at <= tasks.size()) {
        const size_t comma = std::min(tasks.find(',', at), tasks.size());
        request.tasks.push_back(tasks.substr(at, comma - at));
        at = comma + 1;
      }
    }
    int last_percent = -1;
    const auto progress = [&](const pipeline::Progress& p) {
      const int percent = static_cast<int>(p.fraction * 100);
      if (percent / 10 != last_percent / 10) std::fprintf(stderr, "  %3d%% %s\n", percent, p.message.c_str());
      last_percent = percent;
    };
    const auto t0 = Clock::now();
    const pipeline::StudyResult r = analyzer->analyze(inputs, request, progress, nullptr, "bench");
    inference::synchronize(device);
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    // The engine resets the counter before each call: the study's peak is the larger of its two
    // kinds of call (and of what remained between them, which they include).
    const double peak = std::max(peaks.encode_peak(), peaks.answer_peak());
    const auto result = [&](const std::string& name) {
      bench::ResultLine line(name);
      line.set("device", device_text).set("dtype", bench::resolved_dtype(dtype, device)).set("config", model_arg.empty() ? kind : std::string("model"));
      line.set("slices", slices).set("batch", batch);
      return line;
    };

    const auto summary = nlohmann::json::parse(r.summary_json);
    const nlohmann::json t = summary.at("timings_seconds");  // a copy: no reference into a lookup (g++ 13)
    const double views = t.value("views", 0.0);
    std::printf("\nanalysis: %.1f s wall, %d views, %zu findings, %zu result objects\n", wall,
                static_cast<int>(views), r.findings.size(), r.objects.size());
    std::printf("%-16s %10s %12s %8s\n", "stage", "seconds", "per slice", "share");
    const double total = t.value("total", wall);
    for (const char* stage : {"reading", "rendering", "model_vision", "model_language", "model_grounding", "mapping",
                              "consolidation", "writing"}) {
      const double s = t.value(stage, 0.0);
      std::printf("%-16s %10.3f %10.3f s %7.2f%%\n", stage, s, s / slices, 100 * s / total);
      result("pipeline_stage_seconds").set("stage", stage).set("value", s).set("unit", "s").print();
    }
    std::printf("%-16s %10.3f %10.3f s\n", "total", total, total / slices);
    const double share = t.value("non_model_share", 0.0);
    std::printf("non-model share: %.2f%% of the total (target < 5%%): %s\n", 100 * share,
                share < 0.05 ? "met" : "NOT met");
    std::printf("%s: model loaded %.0f MiB; encode calls (InternViT + SAM2 encoder, up to %d views) %.0f MiB; answer "
                "calls (language model + mask decoder) %.0f MiB%s\n",
                study_peak.label(), load_peak, batch, peaks.encode_peak(), peaks.answer_peak(),
                study_peak.gpu() ? " (tensors; the allocator's cache holds more)" : "");
    std::printf("seconds per study: %.2f for %d slices%s\n", total, slices,
                device.is_cpu() ? "" : " (issue 23's target on a GPU, 300 slices: < 60 s)");
    result("pipeline_seconds_per_study")
        .set("value", total)
        .set("unit", "s")
        .set("findings", static_cast<int64_t>(r.findings.size()))
        .set(study_peak.field(), peak)
        .print();
    result("pipeline_seconds_per_slice").set("value", total / slices).set("unit", "s").print();
    result("pipeline_non_model_share").set("value", share).set("unit", "fraction").print();
    result("pipeline_peak_memory_mib").set("stage", "load").set("value", load_peak).set("unit", "MiB").set("kind", study_peak.field()).print();
    result("pipeline_peak_memory_mib").set("stage", "encode").set("value", peaks.encode_peak()).set("unit", "MiB").set("kind", study_peak.field()).print();
    result("pipeline_peak_memory_mib").set("stage", "answer").set("value", peaks.answer_peak()).set("unit", "MiB").set("kind", study_peak.field()).print();
  } catch (const std::exception& e) {
    std::cerr << "bench_pipeline: " << e.what() << "\n";
    if (!keep) fs::remove_all(work);
    return 1;
  }
  if (keep) std::printf("kept %s\n", work.string().c_str());
  else fs::remove_all(work);
  return 0;
}
