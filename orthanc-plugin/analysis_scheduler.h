// The node's engine room: recovers the queue at start, turns StableStudy events and /changes
// scans into queue entries (StudyTrigger), loads the model once, and submits one Orthanc job per
// queued study, at most UniBiomed.ConcurrentAnalyses at a time, whose work runs on a Boost.Asio
// thread pool of the same size. Change callbacks only hand it study ids (notify_stable_study).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "orthanc-plugin/analysis_job.h"
#include "orthanc-plugin/node_services.h"
#include "orthanc-plugin/study_trigger.h"

namespace unibiomed::orthanc {

class AnalysisScheduler final : public AnalysisRunner, public std::enable_shared_from_this<AnalysisScheduler> {
 public:
  explicit AnalysisScheduler(std::shared_ptr<NodeServices> services);
  ~AnalysisScheduler() override;

  // At OrthancStarted (the REST API is usable from then on): starts loading the model and the
  // dispatcher thread, which first recovers the queue and scans /changes.
  void start();
  // At OrthancStopped: stops taking work, interrupts running analyses (they return to pending
  // and resume at the next start), joins every thread.
  void stop();

  // From the change callback: only records the id and wakes the dispatcher.
  void notify_stable_study(const std::string& study_id);

  // POST /unibiomed/studies/{id}/analyze and .../forward: queues a new run (mode "analyze") or
  // re-sending of the stored results (mode "forward"). Returns the queued entry.
  QueueEntry request(const std::string& study_id, const nlohmann::json& request, const std::string& mode);

  // The job of the study's latest attempt on this node, if any.
  std::optional<std::string> job_of(const std::string& study_id) const;

  nlohmann::json status() const;  // queue and counters for GET /unibiomed/status

  std::shared_ptr<StudyAnalysis> start_attempt(const QueueEntry& entry, const std::string& job_id, bool resubmitted,
                                               std::string& why) override;
  void abandon(const QueueEntry& entry, const std::string& job_id, bool resubmitted) override;

 private:
  void dispatch_loop();
  void recover();
  void submit_ready_entries();
  void record_abandoned(const QueueEntry& entry, const std::string& job_id);
  // Shared queue: renews this node's leases every LeaseSeconds/3; an analysis whose lease was
  // lost is stopped without writing anything (the node that took it over does).
  void keep_leases();
  // A claimed entry whose previous holder's lease expired: checked like a recovered one.
  bool take_over(const QueueEntry& entry);

  const std::shared_ptr<NodeServices> services_;
  StudyTrigger trigger_;
  std::unique_ptr<boost::asio::thread_pool> pool_;
  std::thread dispatcher_, model_loader_, lease_keeper_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool started_ = false, stopping_ = false, recovered_ = false;
  bool poke_ = false;  // something changed that may allow a submission
  std::deque<std::string> inbox_;           // study ids from StableStudy events
  std::deque<std::pair<QueueEntry, std::string>> abandoned_;  // jobs cancelled before they started
  int in_flight_ = 0;                       // jobs submitted by the dispatcher and not finished
  std::map<std::string, std::string> jobs_; // study id -> latest job id
  std::map<StudyAnalysis*, std::shared_ptr<StudyAnalysis>> active_;
  size_t succeeded_ = 0, failed_ = 0, skipped_ = 0;
  std::string last_error_;
};

}  // namespace unibiomed::orthanc
