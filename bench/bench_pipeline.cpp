// The node's analysis end to end on CPU: the sample CT (60 slices of 512x512 by default) through
// pipeline::Analyzer with a REAL-size checkpoint (1.16 B parameters, written by make-random into
// a temporary folder), timed by stage as the pipeline records them (summary.json's
// timings_seconds): reading, rendering, model (vision, language, grounding), mask mapping,
// consolidation, writing. Prints the time per slice of each stage and the non-model share of the
// total (target < 5 %: DICOM decode, rendering and writing must be negligible beside the model).
//
//   bench_pipeline [--slices 60] [--tasks abnormality] [--max-new-tokens 8] [--model DIR] [--keep] [--help]
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
#include "inference/random_checkpoint.h"
#include "pipeline/analyzer.h"
#include "samples/sample_studies.h"

namespace {

using namespace unibiomed;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
namespace bench = unibiomed::bench;

}  // namespace

int main(int argc, char** argv) {
  int slices = 60, max_new_tokens = 8;
  std::string tasks = "abnormality", model_arg;
  bool keep = false;
  bench::CommandLine cl("bench_pipeline",
                        "The node's analysis end to end on CPU: the sample CT through pipeline::Analyzer with a\n"
                        "real-size random checkpoint (the make-random --answer \"Sure, [SEG].\" fixture), timed by\n"
                        "stage; prints the time per slice of each stage and the non-model share (target < 5 %).");
  cl.option("--slices", "N", "CT slices of 512x512 (at least 2)", slices)
      .option("--tasks", "abnormality|all|NAME,...", "rule tasks asked per slice", tasks)
      .option("--max-new-tokens", "N", "most tokens per answer", max_new_tokens)
      .option("--model", "DIR", "checkpoint folder (default: the real-size fixture, written to a temporary folder)",
              model_arg)
      .flag("--keep", "keep the temporary folder", keep);
  cl.parse(argc, argv);
  if (slices < 2) cl.fail("--slices must be at least 2");
  if (max_new_tokens < 1) cl.fail("--max-new-tokens must be at least 1");
  fs::path model = model_arg;

  const fs::path work = fs::temp_directory_path() / ("unibiomed-bench-pipeline-" + std::to_string(::getpid()));
  fs::create_directories(work);
  try {
    if (model.empty()) {
      model = work / "model";
      inference::RandomCheckpointOptions o;
      o.kind = "real";
      o.fixed_answer = "Sure, [SEG].";
      const auto t0 = Clock::now();
      const auto s = inference::write_random_checkpoint(model, o);
      std::printf("checkpoint: real size, %.3f B parameters, answers \"Sure, [SEG].\" (make-random --answer), "
                  "written in %.1f s\n",
                  static_cast<double>(s.parameters) / 1e9, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    samples::SampleOptions so;
    so.only = {"ct"};
    so.ct_slices = slices;
    const auto series = samples::write_samples(work / "study", so).at(0);
    std::printf("study: sample CT, %zu slices of 512x512\n", series.files.size());

    pipeline::AnalyzerSettings settings;
    settings.model_dir = model;
    settings.max_new_tokens = max_new_tokens;
    settings.previews = false;
    const auto t_load = Clock::now();
    auto analyzer = pipeline::Analyzer::create(settings);
    std::printf("model loaded in %.1f s: %s\n", std::chrono::duration<double>(Clock::now() - t_load).count(),
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
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();

    const auto summary = nlohmann::json::parse(r.summary_json);
    const auto& t = summary.at("timings_seconds");
    const double views = t.value("views", 0.0);
    std::printf("\nanalysis: %.1f s wall, %d views, %zu findings, %zu result objects\n", wall,
                static_cast<int>(views), r.findings.size(), r.objects.size());
    std::printf("%-16s %10s %12s %8s\n", "stage", "seconds", "per slice", "share");
    const double total = t.value("total", wall);
    for (const char* stage : {"reading", "rendering", "model_vision", "model_language", "model_grounding", "mapping",
                              "consolidation", "writing"}) {
      const double s = t.value(stage, 0.0);
      std::printf("%-16s %10.3f %10.3f s %7.2f%%\n", stage, s, s / slices, 100 * s / total);
    }
    std::printf("%-16s %10.3f %10.3f s\n", "total", total, total / slices);
    const double share = t.value("non_model_share", 0.0);
    std::printf("non-model share: %.2f%% of the total (target < 5%%): %s\n", 100 * share,
                share < 0.05 ? "met" : "NOT met");
  } catch (const std::exception& e) {
    std::cerr << "bench_pipeline: " << e.what() << "\n";
    if (!keep) fs::remove_all(work);
    return 1;
  }
  if (keep) std::printf("kept %s\n", work.string().c_str());
  else fs::remove_all(work);
  return 0;
}
