// One attempt at one study, run on the plugin's worker pool: read the study's images from
// Orthanc, run the pipeline, store the SEG and SR, record the outcome on the study, forward the
// results. The Orthanc job (AnalysisJob) only watches it, so that Step() stays short.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "orthanc-plugin/node_services.h"
#include "orthanc-plugin/study_queue.h"

namespace unibiomed::orthanc {

class StudyAnalysis {
 public:
  enum class Outcome { Running, Succeeded, Failed, Interrupted };
  // LeaseLost: another node may have taken the study over (shared queue); this attempt stops and
  // writes nothing more.
  enum class CancelReason { None, User, Shutdown, LeaseLost };

  struct Snapshot {
    Outcome outcome = Outcome::Running;
    float progress = 0;
    nlohmann::json content;  // what the job shows: stage, series, findings, errors, results, forwarding
    std::string error;       // why it failed
    bool skipped = false;    // succeeded without a series the model reads (StudyState::Skipped)
  };

  StudyAnalysis(std::shared_ptr<NodeServices> services, QueueEntry entry, std::string job_id);

  // Runs the attempt to its end (worker thread). Never throws: the outcome is recorded on the
  // study, the queue entry is finished (or released on shutdown), then `on_finished` is called.
  void run() noexcept;

  void cancel(CancelReason reason);
  Snapshot snapshot() const;
  // Waits until something changed or `timeout` passed.
  void wait(std::chrono::milliseconds timeout) const;
  const QueueEntry& entry() const { return entry_; }

  std::function<void()> on_finished;

 private:
  nlohmann::json analyse(const StudyRecord& record);
  void forward(nlohmann::json& summary, const StudyRecord& record);
  // SupersededResults "delete" / "reject": the replaced run's results leave this Orthanc, after a
  // rejection note listing them joins this run's results ("reject").
  void retire_superseded(nlohmann::json& summary);
  void set_stage(const std::string& stage, const std::string& message, float progress);
  void check_cancelled() const;
  void check_lease();

  const std::shared_ptr<NodeServices> services_;
  const QueueEntry entry_;
  const std::string job_id_;
  std::atomic<bool> cancel_{false};
  std::atomic<CancelReason> cancel_reason_{CancelReason::None};

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  Outcome outcome_ = Outcome::Running;
  float progress_ = 0;
  std::string stage_ = "waiting", message_, error_;
  std::string study_uid_;
  bool skipped_ = false;
  int attempt_ = 0;
  int series_total_ = 0;
  std::set<std::string> series_seen_;
  nlohmann::json series_ = nlohmann::json::array(), findings_ = nlohmann::json::array(),
                 errors_ = nlohmann::json::array(), results_ = nlohmann::json::array(), forward_ = nullptr;
};

}  // namespace unibiomed::orthanc
