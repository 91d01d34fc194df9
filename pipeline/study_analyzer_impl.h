// The Analyzer of the pipeline (make_analyzer builds it): analyze() in analyzer.cpp, ask() in
// ask.cpp. Internal to pipeline/.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/task_rules.h"
#include "pipeline/answer_cache.h"
#include "pipeline/checkpoint_targets.h"
#include "pipeline/study_analyzer.h"
#include "seg-writer/segment_description.h"

#ifndef UNIBIOMED_VERSION
#define UNIBIOMED_VERSION "0"
#endif

namespace unibiomed::pipeline {

// Appends `note` unless `notes` has it already.
void add_note(std::vector<std::string>& notes, const std::string& note);

struct SeriesRun;
struct SeriesResult;

class StudyAnalyzer : public Analyzer {
 public:
  StudyAnalyzer(AnalyzerSettings settings, config::TaskRules rules, std::unique_ptr<GroundingEngine> engine,
                std::optional<CheckpointTargets> trained)
      : settings_(std::move(settings)),
        rules_(std::move(rules)),
        engine_(std::move(engine)),
        trained_(std::move(trained)),
        cache_(settings_.answer_cache_bytes > 0 ? std::make_unique<AnswerCache>(settings_.answer_cache_bytes)
                                                : nullptr) {}

  StudyResult analyze(const std::vector<InstanceInput>& instances, const AnalysisRequest& request,
                      const ProgressCallback& progress, const std::atomic<bool>* cancel,
                      const std::string& result_uid_seed) override;
  AskResult ask(const InstanceInput& instance, int frame, const Question& question,
                const std::string& result_uid_seed) override;
  AskVideoResult ask_video(const std::vector<InstanceInput>& frames, const Question& question,
                           const std::function<void(int, int)>& on_frame) override;
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
  // One series: the model's pass, findings, its SEGs, SR groups, report text and previews, as
  // one value; throws on failure (Cancelled when asked to stop).
  SeriesResult analyze_series(SeriesRun& run);
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
  std::optional<CheckpointTargets> trained_;
  std::unique_ptr<AnswerCache> cache_;  // null: off (AnalyzerSettings::answer_cache_bytes 0)
  mutable std::mutex mutex_;  // one analysis at a time: the model is shared
  mutable std::mutex hash_mutex_;
  mutable std::string weights_hash_;
  StageTimings timings_;
};

}  // namespace unibiomed::pipeline
