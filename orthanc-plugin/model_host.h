// The model, loaded once per Orthanc process and shared by every analysis and every ask request.
// Loading happens on its own thread after Orthanc has started (it can take minutes); until it
// succeeds, requests that need the model get the reason.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "orthanc-plugin/plugin_error.h"
#include "pipeline/analyzer.h"

namespace unibiomed::orthanc {

class ModelHost {
 public:
  enum class State { NotLoaded, Loading, Ready, Failed };
  using Factory = std::function<std::unique_ptr<pipeline::Analyzer>(const pipeline::AnalyzerSettings&)>;

  explicit ModelHost(pipeline::AnalyzerSettings settings, Factory factory = &pipeline::Analyzer::create)
      : settings_(std::move(settings)), factory_(std::move(factory)) {}

  // Loads the model (blocking; call on a thread of its own). Records success or the reason.
  void load();

  State state() const;
  std::string state_name() const;
  std::string error() const;        // why the model is not available ("" when ready)
  std::string description() const;  // Analyzer::model_description() once ready
  std::string weights_hash() const;
  const pipeline::AnalyzerSettings& settings() const { return settings_; }

  // Runs `work(analyzer)` with the model. The pipeline's Analyzer is not documented as
  // thread-safe, so model calls are serialised; reading and storing DICOM happens outside.
  // Throws PluginError (HTTP 503) with the reason when the model is not available.
  template <class Work>
  auto use(Work&& work) {
    std::lock_guard<std::mutex> use_lock(use_mutex_);
    pipeline::Analyzer* analyzer = ready_analyzer();
    return work(*analyzer);
  }

 private:
  pipeline::Analyzer* ready_analyzer() const;

  const pipeline::AnalyzerSettings settings_;
  const Factory factory_;
  mutable std::mutex state_mutex_;
  std::mutex use_mutex_;
  State state_ = State::NotLoaded;
  std::string error_ = "the model has not been loaded yet (Orthanc is starting)";
  std::string description_, weights_hash_;
  std::unique_ptr<pipeline::Analyzer> analyzer_;
};

}  // namespace unibiomed::orthanc
