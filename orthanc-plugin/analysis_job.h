// The Orthanc job (type "UniBiomedAnalysis") that shows one study's analysis in /jobs and in
// Orthanc Explorer: progress, content (series done, findings, errors, results, forwarding),
// cancellation and resubmission. Step() never does the work: it starts a StudyAnalysis on the
// plugin's worker pool, then waits at most a tenth of a second for news and returns Continue
// (a long Step() would hold one of Orthanc's ConcurrentJobs workers hostage, ORTHANC.md).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <orthanc/OrthancCPlugin.h>

#include <memory>
#include <string>

#include "orthanc-plugin/study_analysis.h"
#include "orthanc-plugin/study_queue.h"

namespace unibiomed::orthanc {

inline constexpr const char* kAnalysisJobType = "UniBiomedAnalysis";

// What a job needs from the node: start an attempt for an entry. `resubmitted`: the user
// resubmitted a failed or cancelled job, so the entry is not held in the queue yet.
class AnalysisRunner {
 public:
  virtual ~AnalysisRunner() = default;
  // Returns the running attempt, or nullptr with `why` filled when it cannot start.
  virtual std::shared_ptr<StudyAnalysis> start_attempt(const QueueEntry& entry, const std::string& job_id,
                                                       bool resubmitted, std::string& why) = 0;
  // The job was cancelled before its first step: the attempt never started.
  virtual void abandon(const QueueEntry& entry, const std::string& job_id, bool resubmitted) = 0;
};

// Creates and submits the job; returns its id. Throws PluginError when Orthanc refuses it.
std::string submit_analysis_job(OrthancPluginContext* context, std::weak_ptr<AnalysisRunner> runner,
                                const QueueEntry& entry, int priority);

}  // namespace unibiomed::orthanc
