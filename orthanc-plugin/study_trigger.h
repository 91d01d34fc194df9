// Decides which studies to analyse: on a StableStudy event, on a scan of Orthanc's /changes log
// from a persisted cursor (which catches events that were lost: StableStudy is decided in memory
// and never emitted if Orthanc stops before StableAge, ORTHANC.md), and on recovery at start.
// It runs on the scheduler's thread only (it calls the REST API, which a change callback must not).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "orthanc-plugin/node_services.h"

namespace unibiomed::orthanc {

class StudyTrigger {
 public:
  enum class Decision { Queued, AlreadyQueued, Ignored, Unstable, Gone };
  // Where the study id came from: this node's StableStudy event, or a scan of /changes.
  enum class Source { Event, Scan };

  explicit StudyTrigger(std::shared_ptr<NodeServices> services) : services_(std::move(services)) {}

  // Looks at one study and queues it when it needs an analysis (never analysed and matching the
  // trigger rules, or new images since the last run). Our own SEG/SR never count as new images,
  // nor do other objects the model does not read (another system's report, a viewer's
  // presentation state, a scanned document, a PET series beside the CT: StudyRecords::image_series).
  // With a shared queue the study must also have settled cluster-wide: IsStable is this node's
  // own view (a node that received none of the study's instances calls it stable at once), so
  // the study's LastUpdate, written by whichever node received the latest instance, must be
  // StableAge old (a second less for this node's own event, a second more for a scan: LastUpdate
  // has whole seconds). Nodes' clocks must agree (NTP).
  Decision consider(const std::string& study_id, Source source);

  // Checks the entries recovered from the queue: a study found "running" was interrupted by a
  // crash; after MaxAttempts such interruptions it is marked failed instead of resumed.
  // Returns whether the entry should stay queued.
  bool check_recovered(const QueueEntry& entry);

  // Reads /changes from the persisted cursor. The cursor stops before the first study that is
  // still receiving images, so nothing between the cursor and the end of the log is unhandled.
  void scan_changes();

 private:
  // What came into a finished study since its last run that calls for a new one, as the log
  // says it ("received new images (CT series <uid>: 40 -> 60 instances)"); empty when nothing
  // arrived that the model reads (logged when `explain`, naming
  // series it does not read: once per change, on this node's event, not again on each scan).
  std::string new_images(const StudyInventory& inventory, const StudyRecord& record, bool explain) const;
  // Why the analysis would skip the series of this instance (its first): the pipeline's modality
  // classification, then (NodeServices::screen) what the task rules and the checkpoint ask of
  // it; nullopt when it reads it, or when the file cannot be read here.
  std::optional<std::string> unread_image(const std::string& instance_id) const;
  int64_t cursor();
  void save_cursor(int64_t value);
  const std::shared_ptr<NodeServices> services_;
  int64_t cursor_ = -1;  // -1: not read yet
};

}  // namespace unibiomed::orthanc
