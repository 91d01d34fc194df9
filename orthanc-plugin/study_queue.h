// The durable queue of studies waiting for (or in) analysis. An interface, because a cluster of
// Orthanc nodes sharing one PostgreSQL index needs a shared queue (PostgresStudyQueue: a table
// claimed with SELECT ... FOR UPDATE SKIP LOCKED and leases, docs/ORTHANC.md "Scale-out"), while
// a single node keeps it in a global property of its own database (LocalStudyQueue).
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
  // Set by claim() of the shared queue when the entry was held by a node whose lease expired (a
  // node that died mid-analysis): the claimer checks it like a recovered entry. Not persisted.
  bool takeover = false;
  std::string previous_owner;  // that node, for the log
  nlohmann::json to_json() const;
  static QueueEntry from_json(const nlohmann::json& j);
};

struct QueueCounts {
  size_t pending = 0;  // waiting for a worker
  size_t running = 0;  // claimed by a worker of this node
};

// How an entry ended (the shared queue keeps ended entries a while: they make a late, repeated
// enqueue of the same run a no-op, and the cluster status counts failures).
enum class QueueOutcome { Done, Failed };

class StudyQueue {
 public:
  virtual ~StudyQueue() = default;

  // What a previous life of this node left: pending and interrupted entries, oldest first. All of
  // them are pending again afterwards.
  virtual std::vector<QueueEntry> recover() = 0;

  // Adds the entry, durably before returning. A study has at most one waiting entry (a newer
  // request replaces the waiting one) besides the one a worker holds. For explicit requests: an
  // entry of that run that already ended is queued again.
  virtual void put(const QueueEntry& entry) = 0;

  // The automatic trigger's enqueue, idempotent per study and run: adds the entry only when the
  // queue has no entry of that study and run (waiting, held, or ended recently in the shared
  // queue) and no waiting entry of that study. Several nodes may offer the same study at once
  // (StableStudy on each node that received instances, every node's /changes scan); exactly one
  // entry results. Returns whether this call added it.
  virtual bool offer(const QueueEntry& entry) = 0;

  // The oldest waiting entry whose study no worker holds; it is then held until finish/release.
  virtual std::optional<QueueEntry> claim() = 0;

  // Holds `entry` directly (a job resubmitted by the user runs without waiting in line). False
  // when a worker already holds that study.
  virtual bool hold(const QueueEntry& entry) = 0;

  // Ends the held entry of that study and run (a newer waiting entry keeps its place).
  virtual void finish(const std::string& study_id, int run, QueueOutcome outcome) = 0;

  // Returns a held entry to the waiting ones (shutdown, model not ready), at the front.
  virtual void release(const std::string& study_id, int run) = 0;

  // Removes every entry of that study and run, held or not (recovery found nothing left to do).
  virtual void drop(const std::string& study_id, int run) = 0;

  virtual bool contains(const std::string& study_id) const = 0;
  virtual QueueCounts counts() const = 0;

  // Whether several nodes share this queue. Then the queue is the only arbiter of who works on a
  // study: only the node holding a study's entry writes its records (docs/ORTHANC.md), and a
  // waiting entry is what "pending" means.
  virtual bool shared() const { return false; }

  // Whether this node still holds that entry (false once a shared queue's lease was lost).
  virtual bool holds(const std::string& /*study_id*/, int /*run*/) const { return true; }

  // Extends the leases of every entry this node holds; returns the held entries whose lease was
  // lost (another node may have taken them over). Called periodically by the scheduler.
  virtual std::vector<QueueEntry> renew() { return {}; }
  virtual int renew_interval_seconds() const { return 0; }  // 0: no leases to renew

  // For GET /unibiomed/status: the counts, and for a shared queue the whole cluster's view
  // (pending, running per node, failed).
  virtual nlohmann::json describe() const {
    const QueueCounts c = counts();
    return {{"Kind", "local"}, {"Pending", c.pending}, {"Running", c.running}};
  }
};

// Single node: entries in memory, persisted as a JSON array in a global property of this server
// (id 4411, "UniBiomedQueue") on every change. Thread-safe.
std::unique_ptr<StudyQueue> make_local_study_queue(const OrthancClient& client);

// Cluster: the queue in a table of a PostgreSQL database (normally the one holding Orthanc's
// shared index). Thread-safe; connects lazily and reconnects after a lost connection.
struct SharedQueueSettings {
  std::string connection;   // libpq connection string or URI
  std::string node;         // this node's name in the queue (unique per node)
  int lease_seconds = 60;   // a held entry not renewed for this long can be taken over
  std::string table = "unibiomed_queue";
};
std::unique_ptr<StudyQueue> make_postgres_study_queue(const SharedQueueSettings& settings);

inline constexpr int kQueueGlobalProperty = 4411;
inline constexpr int kChangesCursorGlobalProperty = 4410;

}  // namespace unibiomed::orthanc
