// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/analysis_job.h"

#include <mutex>

#include "orthanc-plugin/plugin_error.h"

namespace unibiomed::orthanc {

namespace {

// Orthanc calls every callback of one job from one thread at a time (OrthancCPlugin.h,
// OrthancPluginCreateJob); the mutex only guards the id, which the submitting thread sets.
class AnalysisJob {
 public:
  AnalysisJob(std::weak_ptr<AnalysisRunner> runner, QueueEntry entry)
      : runner_(std::move(runner)), entry_(std::move(entry)) {
    content_ = nlohmann::json{{"Study", entry_.study_id}, {"Run", entry_.run}, {"Stage", "queued"}}.dump();
  }

  void set_id(const std::string& id) {
    std::lock_guard<std::mutex> lock(id_mutex_);
    id_ = id;
  }

  OrthancPluginJobStepStatus step() {
    if (!analysis_) {
      auto runner = runner_.lock();
      std::string why = "the UniBiomed plugin is stopping";
      if (runner) analysis_ = runner->start_attempt(entry_, id(), resubmitted_, why);
      if (!analysis_) {
        content_ =
            nlohmann::json{{"Study", entry_.study_id}, {"Run", entry_.run}, {"Stage", "failed"}, {"Error", why}}.dump(
                -1, ' ', false, nlohmann::json::error_handler_t::replace);
        return OrthancPluginJobStepStatus_Failure;
      }
    }
    analysis_->wait(std::chrono::milliseconds(100));
    const auto snapshot = analysis_->snapshot();
    progress_ = snapshot.progress;
    auto content = snapshot.content;
    content["Job"] = id();
    content_ = content.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // never throws here
    switch (snapshot.outcome) {
      case StudyAnalysis::Outcome::Succeeded: return OrthancPluginJobStepStatus_Success;
      case StudyAnalysis::Outcome::Running: return OrthancPluginJobStepStatus_Continue;
      default: return OrthancPluginJobStepStatus_Failure;
    }
  }

  void stop(OrthancPluginJobStopReason reason) {
    // A paused job keeps computing in the background; its result is picked up on resume.
    if (reason != OrthancPluginJobStopReason_Canceled) return;
    if (analysis_) {
      analysis_->cancel(StudyAnalysis::CancelReason::User);
    } else if (auto runner = runner_.lock()) {
      runner->abandon(entry_, id(), resubmitted_);
      resubmitted_ = true;  // a later resubmission must hold the queue entry itself
    }
  }

  void reset() {
    // Resubmission of a failed or cancelled job: a new attempt of the same run.
    analysis_.reset();
    resubmitted_ = true;
    progress_ = 0;
  }

  float progress() const { return progress_; }
  const char* content() const { return content_.c_str(); }

 private:
  std::string id() const {
    std::lock_guard<std::mutex> lock(id_mutex_);
    return id_;
  }

  const std::weak_ptr<AnalysisRunner> runner_;
  const QueueEntry entry_;
  mutable std::mutex id_mutex_;
  std::string id_;
  std::shared_ptr<StudyAnalysis> analysis_;
  bool resubmitted_ = false;
  float progress_ = 0;
  std::string content_;
};

AnalysisJob* as_job(void* job) { return static_cast<AnalysisJob*>(job); }

void job_finalize(void* job) { delete as_job(job); }
float job_progress(void* job) { return as_job(job)->progress(); }
const char* job_content(void* job) { return as_job(job)->content(); }
// Not serialisable on purpose: the durable state of an analysis is the study metadata and the
// queue, which resume it after a restart; a reloaded job would run it a second time.
const char* job_serialized(void*) { return nullptr; }

OrthancPluginJobStepStatus job_step(void* job) {
  try {
    return as_job(job)->step();
  } catch (...) {
    return OrthancPluginJobStepStatus_Failure;
  }
}

OrthancPluginErrorCode job_stop(void* job, OrthancPluginJobStopReason reason) {
  as_job(job)->stop(reason);
  return OrthancPluginErrorCode_Success;
}

OrthancPluginErrorCode job_reset(void* job) {
  as_job(job)->reset();
  return OrthancPluginErrorCode_Success;
}

}  // namespace

std::string submit_analysis_job(OrthancPluginContext* context, std::weak_ptr<AnalysisRunner> runner,
                                const QueueEntry& entry, int priority) {
  auto owned = std::make_unique<AnalysisJob>(std::move(runner), entry);
  AnalysisJob* job = owned.get();
  OrthancPluginJob* handle = OrthancPluginCreateJob(context, job, job_finalize, kAnalysisJobType, job_progress,
                                                    job_content, job_serialized, job_step, job_stop, job_reset);
  if (!handle) throw PluginError("Orthanc could not create an analysis job for study " + entry.study_id);
  owned.release();  // from here on, Orthanc owns the job and calls job_finalize
  char* id = OrthancPluginSubmitJob(context, handle, priority);
  if (!id) {
    // The SDK keeps the job's ownership with us when submission fails.
    OrthancPluginFreeJob(context, handle);
    throw PluginError("Orthanc refused to submit the analysis job for study " + entry.study_id);
  }
  std::string job_id(id);
  OrthancPluginFreeString(context, id);
  job->set_id(job_id);
  return job_id;
}

}  // namespace unibiomed::orthanc
