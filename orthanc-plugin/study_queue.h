// The durable queue of studies waiting for (or in) analysis. An interface, because a cluster of
// Orthanc nodes sharing one PostgreSQL index needs a shared queue (a table claimed with
// SELECT ... FOR UPDATE SKIP LOCKED, leases and a sweeper: ORTHANC.md "Scale-out"), while a
// single node keeps it in a global property of its own database (LocalStudyQueue).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace unibiomed::orthanc {

class OrthancClient;

struct QueueEntry {
  std::string study_id;              // Orthanc study id
  int run = 1;                       // the run this entry asks for (see RunInfo)
  std::string mode = "analyze";      // analyze | forward
  nlohmann::json request = nullptr;  // explicit tasks/questions, or null for the rules
  nlohmann::json to_json() const;
  static QueueEntry from_json(const nlohmann::json& j);
};

struct QueueCounts {
  size_t pending = 0;  // waiting for a worker
  size_t running = 0;  // claimed by a worker of this node
};

class StudyQueue {
 public:
  virtual ~StudyQueue() = default;

  // What a previous life of this node left: pending and interrupted entries, oldest first. All of
  // them are pending again afterwards.
  virtual std::vector<QueueEntry> recover() = 0;

  // Adds the entry, durably before returning. A study has at most one waiting entry (a newer
  // request replaces the waiting one) besides the one a worker holds.
  virtual void put(const QueueEntry& entry) = 0;

  // The oldest waiting entry whose study no worker holds; it is then held until finish/release.
  virtual std::optional<QueueEntry> claim() = 0;

  // Holds `entry` directly (a job resubmitted by the user runs without waiting in line). False
  // when a worker already holds that study.
  virtual bool hold(const QueueEntry& entry) = 0;

  // Removes the held entry of that study and run (a newer waiting entry keeps its place).
  virtual void finish(const std::string& study_id, int run) = 0;

  // Returns a held entry to the waiting ones (shutdown, model not ready), at the front.
  virtual void release(const std::string& study_id, int run) = 0;

  // Removes every entry of that study and run, held or not (recovery found nothing left to do).
  virtual void drop(const std::string& study_id, int run) = 0;

  virtual bool contains(const std::string& study_id) const = 0;
  virtual QueueCounts counts() const = 0;
};

// Single node: entries in memory, persisted as a JSON array in a global property of this server
// (id 4411, "UniBiomedQueue") on every change. Thread-safe.
std::unique_ptr<StudyQueue> make_local_study_queue(const OrthancClient& client);

inline constexpr int kQueueGlobalProperty = 4411;
inline constexpr int kChangesCursorGlobalProperty = 4410;

}  // namespace unibiomed::orthanc
