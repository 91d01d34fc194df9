// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/model_host.h"

#include <filesystem>

namespace unibiomed::orthanc {

void ModelHost::load() {
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    state_ = State::Loading;
    error_ = "the model is being loaded from " + settings_.model_dir.string();
  }
  std::unique_ptr<pipeline::Analyzer> analyzer;
  std::string failure;
  if (settings_.model_dir.empty()) {
    failure = "no model configured: set UniBiomed.ModelDirectory in the Orthanc configuration to a UniBiomed "
              "checkpoint folder";
  } else if (!std::filesystem::is_directory(settings_.model_dir)) {
    failure = "UniBiomed.ModelDirectory \"" + settings_.model_dir.string() + "\" is not a folder";
  } else {
    try {
      analyzer = factory_(settings_);
      if (!analyzer) failure = "the pipeline returned no analyzer for " + settings_.model_dir.string();
    } catch (const std::exception& e) {
      failure = std::string("cannot load the model from ") + settings_.model_dir.string() + ": " + e.what();
    }
  }
  std::string description, hash;
  if (analyzer) {
    description = analyzer->model_description();
    hash = analyzer->weights_hash();
  }
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (analyzer) {
    analyzer_ = std::move(analyzer);
    description_ = description;
    weights_hash_ = hash;
    state_ = State::Ready;
    error_.clear();
  } else {
    state_ = State::Failed;
    error_ = failure;
  }
}

ModelHost::State ModelHost::state() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return state_;
}

std::string ModelHost::state_name() const {
  switch (state()) {
    case State::NotLoaded: return "not loaded";
    case State::Loading: return "loading";
    case State::Ready: return "ready";
    default: return "failed";
  }
}

std::string ModelHost::error() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return error_;
}

std::string ModelHost::description() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return description_;
}

std::string ModelHost::weights_hash() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  return weights_hash_;
}

pipeline::Analyzer* ModelHost::ready_analyzer() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (state_ != State::Ready) throw PluginError("the model is not available: " + error_, 503);
  return analyzer_.get();
}

}  // namespace unibiomed::orthanc
