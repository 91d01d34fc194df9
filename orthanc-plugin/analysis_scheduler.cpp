// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/analysis_scheduler.h"

#include <boost/asio/post.hpp>
#include <chrono>

#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/request_checks.h"
#include "orthanc-plugin/result_json.h"

namespace unibiomed::orthanc {

AnalysisScheduler::AnalysisScheduler(std::shared_ptr<NodeServices> services)
    : services_(std::move(services)), trigger_(services_) {}

AnalysisScheduler::~AnalysisScheduler() { stop(); }

void AnalysisScheduler::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_) return;
  started_ = true;
  pool_ = std::make_unique<boost::asio::thread_pool>(static_cast<size_t>(services_->config.concurrent_analyses));
  model_loader_ = std::thread([this] {
    const auto& client = services_->client;
    client.log_warning("loading the model from \"" + services_->config.analyzer.model_dir.string() + "\" on " +
                       services_->config.analyzer.device);
    services_->model.load();
    if (services_->model.state() == ModelHost::State::Ready)
      client.log_warning("model ready: " + services_->model.description());
    else
      client.log_error(services_->model.error() +
                       " -- arriving studies are recorded as pending and analysed once the model loads");
    std::lock_guard<std::mutex> lock(mutex_);
    poke_ = true;
    wake_.notify_all();
  });
  dispatcher_ = std::thread([this] { dispatch_loop(); });
  if (services_->queue->renew_interval_seconds() > 0) lease_keeper_ = std::thread([this] { keep_leases(); });
}

void AnalysisScheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_ || stopping_) return;
    stopping_ = true;
    for (auto& [raw, analysis] : active_) analysis->cancel(StudyAnalysis::CancelReason::Shutdown);
  }
  wake_.notify_all();
  if (dispatcher_.joinable()) dispatcher_.join();
  if (pool_) pool_->join();  // interrupted analyses record themselves as pending
  if (lease_keeper_.joinable()) lease_keeper_.join();
  if (model_loader_.joinable()) model_loader_.join();
}

void AnalysisScheduler::notify_stable_study(const std::string& study_id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inbox_.push_back(study_id);
  }
  wake_.notify_all();
}

void AnalysisScheduler::recover() {
  auto& s = *services_;
  const auto entries = s.queue->recover();
  size_t kept = 0;
  for (const auto& entry : entries) {
    bool keep = true;
    try {
      keep = trigger_.check_recovered(entry);
    } catch (const std::exception& e) {
      s.client.log_error("cannot check queued study " + entry.study_id + ": " + e.what());
    }
    if (keep)
      ++kept;
    else
      s.queue->drop(entry.study_id, entry.run);
  }
  if (!entries.empty())
    s.client.log_warning("recovered the analysis queue: " + std::to_string(kept) + " of " +
                         std::to_string(entries.size()) + " studies still to do");
}

void AnalysisScheduler::dispatch_loop() {
  auto& s = *services_;
  try {
    recover();
  } catch (const std::exception& e) {
    s.client.log_error(std::string("queue recovery failed: ") + e.what());
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    recovered_ = true;
  }
  auto next_scan = std::chrono::steady_clock::now();
  for (;;) {
    std::deque<std::string> inbox;
    std::deque<std::pair<QueueEntry, std::string>> abandoned;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      const auto until = std::min(next_scan, std::chrono::steady_clock::now() + std::chrono::seconds(1));
      wake_.wait_until(lock, until, [&] { return stopping_ || poke_ || !inbox_.empty() || !abandoned_.empty(); });
      poke_ = false;
      if (stopping_) break;
      inbox.swap(inbox_);
      abandoned.swap(abandoned_);
    }
    for (const auto& [entry, job] : abandoned) record_abandoned(entry, job);
    for (const auto& id : inbox) {
      try {
        // Unstable here (another node received a later instance): the /changes scan retries it.
        trigger_.consider(id, StudyTrigger::Source::Event);
      } catch (const std::exception& e) {
        // The /changes scan will look at it again.
        s.client.log_error("cannot check study " + id + ": " + e.what());
      }
    }
    if (std::chrono::steady_clock::now() >= next_scan) {
      try {
        trigger_.scan_changes();
      } catch (const std::exception& e) {
        s.client.log_error(std::string("scan of /changes failed: ") + e.what());
      }
      next_scan = std::chrono::steady_clock::now() + std::chrono::seconds(s.config.reconcile_interval_seconds);
    }
    try {
      submit_ready_entries();
    } catch (const std::exception& e) {
      // The shared queue's database may be unreachable for a while: nothing is lost (the
      // entries stay in the table, the /changes scan finds studies again), so keep going.
      std::lock_guard<std::mutex> lock(mutex_);
      if (last_error_ != e.what()) s.client.log_error(std::string("cannot take work from the queue: ") + e.what());
      last_error_ = e.what();
    }
  }
}

void AnalysisScheduler::keep_leases() {
  auto& s = *services_;
  const auto interval = std::chrono::seconds(s.queue->renew_interval_seconds());
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (wake_.wait_for(lock, interval, [&] { return stopping_; })) return;
    }
    std::vector<QueueEntry> lost;
    try {
      lost = s.queue->renew();
    } catch (const std::exception& e) {
      s.client.log_error(std::string("cannot renew the leases of this node's studies: ") + e.what());
      continue;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& entry : lost) {
      s.client.log_error("study " + entry.study_id + " run " + std::to_string(entry.run) +
                         ": this node's claim expired (it did not renew it within UniBiomed.LeaseSeconds) and "
                         "another node may have taken the study over; stopping this node's attempt");
      for (auto& [raw, analysis] : active_)
        if (analysis->entry().study_id == entry.study_id && analysis->entry().run == entry.run)
          analysis->cancel(StudyAnalysis::CancelReason::LeaseLost);
    }
  }
}

void AnalysisScheduler::submit_ready_entries() {
  auto& s = *services_;
  if (s.model.state() != ModelHost::State::Ready) return;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_ || in_flight_ >= s.config.concurrent_analyses) return;
    }
    auto entry = s.queue->claim();
    if (!entry) return;
    if (entry->takeover && !take_over(*entry)) continue;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++in_flight_;
    }
    try {
      const std::string job = submit_analysis_job(s.client.context(), weak_from_this(), *entry, s.config.job_priority);
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_[entry->study_id] = job;
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --in_flight_;
        last_error_ = e.what();
      }
      s.queue->release(entry->study_id, entry->run);
      s.client.log_error(e.what());
      return;  // try again on the next wake-up
    }
  }
}

bool AnalysisScheduler::take_over(const QueueEntry& entry) {
  auto& s = *services_;
  s.client.log_warning("study " + entry.study_id + " run " + std::to_string(entry.run) + ": node \"" +
                       entry.previous_owner + "\" stopped renewing its claim (UniBiomed.LeaseSeconds passed); taking it over");
  bool keep = true;
  try {
    keep = trigger_.check_recovered(entry);  // MaxAttempts, or finished but not recorded in the queue
  } catch (const std::exception& e) {
    s.client.log_error("cannot check the taken-over study " + entry.study_id + ": " + e.what());
  }
  if (!keep) {
    auto record = s.records.read(entry.study_id);
    s.queue->finish(entry.study_id, entry.run,
                    record && record->state == StudyState::Failed ? QueueOutcome::Failed : QueueOutcome::Done);
  }
  return keep;
}

std::shared_ptr<StudyAnalysis> AnalysisScheduler::start_attempt(const QueueEntry& entry, const std::string& job_id,
                                                                bool resubmitted, std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || !pool_) {
      why = "the UniBiomed plugin is stopping; the study resumes at the next start";
      if (!resubmitted) --in_flight_;
      return nullptr;
    }
  }
  if (resubmitted && !services_->queue->hold(entry)) {
    why = "study " + entry.study_id + " is already being analysed by another job";
    return nullptr;
  }
  auto analysis = std::make_shared<StudyAnalysis>(services_, entry, job_id);
  std::weak_ptr<AnalysisScheduler> self = weak_from_this();
  StudyAnalysis* raw = analysis.get();
  const bool counted = !resubmitted;
  analysis->on_finished = [self, raw, counted, study_id = entry.study_id] {
    auto scheduler = self.lock();
    if (!scheduler) return;
    std::lock_guard<std::mutex> lock(scheduler->mutex_);
    auto it = scheduler->active_.find(raw);
    if (it != scheduler->active_.end()) {
      const auto end = it->second->snapshot();
      (end.outcome == StudyAnalysis::Outcome::Succeeded ? scheduler->succeeded_ : scheduler->failed_) +=
          end.outcome == StudyAnalysis::Outcome::Interrupted ? 0 : 1;
      scheduler->skipped_ += end.outcome == StudyAnalysis::Outcome::Succeeded && end.skipped ? 1 : 0;
      // Images that arrived while it ran became stable while the study was still queued, so
      // their StableStudy event found nothing to do; a run that stores results makes the study
      // change (and settle) again, one that stores nothing does not. Look at the study once more.
      // Not after a failure: its summary may be the earlier run's, and the same difference would
      // queue the same failing run again and again.
      if (end.outcome == StudyAnalysis::Outcome::Succeeded) scheduler->inbox_.push_back(study_id);
      scheduler->active_.erase(it);
    }
    if (counted) --scheduler->in_flight_;
    scheduler->poke_ = true;
    scheduler->wake_.notify_all();
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    active_[raw] = analysis;
    if (!job_id.empty()) jobs_[entry.study_id] = job_id;
  }
  boost::asio::post(*pool_, [analysis] { analysis->run(); });
  return analysis;
}

void AnalysisScheduler::abandon(const QueueEntry& entry, const std::string& job_id, bool resubmitted) {
  // Called by the jobs engine (possibly while it holds its registry lock): the records are
  // written by the dispatcher thread instead.
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!resubmitted) {
      --in_flight_;
      abandoned_.push_back({entry, job_id});
    }
  }
  wake_.notify_all();
}

void AnalysisScheduler::record_abandoned(const QueueEntry& entry, const std::string& job_id) {
  auto& s = *services_;
  try {
    const std::string error = "cancelled by the user before it started (job " + job_id +
                              "); resubmit the job or POST /unibiomed/studies/" + entry.study_id + "/analyze";
    s.records.write_error(entry.study_id, error);
    s.records.write_state(entry.study_id, StudyState::Failed);
    s.queue->finish(entry.study_id, entry.run, QueueOutcome::Failed);
  } catch (const std::exception& e) {
    s.client.log_error("cannot record the cancellation of study " + entry.study_id + ": " + e.what());
  }
}

QueueEntry AnalysisScheduler::request(const std::string& study_id, const nlohmann::json& request,
                                      const std::string& mode) {
  auto& s = *services_;
  auto record = s.records.read(study_id);
  if (!record) throw PluginError("unknown study " + study_id, 404);
  QueueEntry entry;
  entry.study_id = study_id;
  entry.mode = mode;
  if (mode == "forward") {
    if (!s.forwarder.enabled())
      throw PluginError("forwarding is not configured: set UniBiomed.ForwardTo in the Orthanc configuration", 400);
    if (record->state != StudyState::Done)
      throw PluginError("study " + study_id + " has no finished analysis to forward (its state is " +
                            to_string(record->state) +
                            (record->state == StudyState::Skipped ? ": it holds no series the model reads)" : ")"),
                        409);
    entry.run = record->run.run;
  } else {
    // Everything that can be checked is checked before anything is written: a rejected request
    // leaves the study's state and records as they were.
    const pipeline::AnalysisRequest parsed = request_from_json(request);  // 400 naming the field
    auto inventory = s.records.inventory(study_id);
    if (!inventory) throw PluginError("unknown study " + study_id, 404);
    if (inventory->source_instance_count() == 0)
      throw PluginError("study " + study_id + " holds no images to analyse", 400);
    check_analysis_request(parsed, *inventory, s.config.task_names, s.client);  // 400 naming the field
    entry.request = request;
    // A run that has not started yet is replaced; otherwise a new run (new result UIDs).
    entry.run = record->state == StudyState::Pending ? std::max(1, record->run.run) : record->run.run + 1;
  }
  s.queue->put(entry);
  // With a shared queue only the node that claims the entry writes the study's records; the
  // waiting entry is what GET /unibiomed/studies/{id} reports as pending.
  if (mode == "analyze" && record->state != StudyState::Running && !s.queue->shared()) {
    RunInfo run = record->run.run == entry.run ? record->run : RunInfo{};
    run.run = entry.run;
    run.mode = mode;
    run.request = entry.request;
    run.updated = now_iso();
    s.records.write_run(study_id, run);
    s.records.write_state(study_id, StudyState::Pending);
  }
  s.client.log_info("study " + study_id + ": " + mode + " requested (run " + std::to_string(entry.run) + ")");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    poke_ = true;
  }
  wake_.notify_all();
  return entry;
}

std::optional<std::string> AnalysisScheduler::job_of(const std::string& study_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(study_id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

nlohmann::json AnalysisScheduler::status() const {
  nlohmann::json j;
  try {
    j = services_->queue->describe();
  } catch (const std::exception& e) {
    j = {{"Error", e.what()}};
  }
  std::lock_guard<std::mutex> lock(mutex_);
  j["JobsInFlight"] = in_flight_;
  j["SucceededSinceStart"] = succeeded_;
  j["FailedSinceStart"] = failed_;
  j["SkippedSinceStart"] = skipped_;  // succeeded with nothing to analyse (also in SucceededSinceStart)
  j["Recovered"] = recovered_;
  if (!last_error_.empty()) j["LastError"] = last_error_;
  return j;
}

}  // namespace unibiomed::orthanc
