// SPDX-License-Identifier: GPL-3.0-or-later
// The single-node StudyQueue (see study_queue.h).
#include <algorithm>
#include <deque>
#include <mutex>

#include "orthanc-plugin/orthanc_client.h"
#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/study_queue.h"

namespace unibiomed::orthanc {

nlohmann::json QueueEntry::to_json() const {
  return {{"Study", study_id}, {"Run", run}, {"Mode", mode}, {"Request", request}};
}

QueueEntry QueueEntry::from_json(const nlohmann::json& j) {
  QueueEntry e;
  e.study_id = j.at("Study").get<std::string>();
  e.run = j.value("Run", 1);
  e.mode = j.value("Mode", std::string("analyze"));
  e.request = j.contains("Request") ? j["Request"] : nlohmann::json(nullptr);
  return e;
}

namespace {

class LocalStudyQueue final : public StudyQueue {
 public:
  explicit LocalStudyQueue(const OrthancClient& client) : client_(client) {}

  std::vector<QueueEntry> recover() override {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
    auto stored = client_.global_property(kQueueGlobalProperty);
    if (stored) {
      try {
        for (const auto& j : nlohmann::json::parse(*stored)) entries_.push_back({QueueEntry::from_json(j), false});
      } catch (const std::exception& e) {
        // Losing the list is recoverable (the /changes scan and the study metadata find the
        // studies again); refusing to start is not.
        client_.log_error("the stored queue (global property " + std::to_string(kQueueGlobalProperty) +
                          ") is unreadable and is ignored: " + e.what());
        entries_.clear();
      }
    }
    std::vector<QueueEntry> out;
    for (const auto& s : entries_) out.push_back(s.entry);
    return out;
  }

  void put(const QueueEntry& entry) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto waiting = std::find_if(entries_.begin(), entries_.end(),
                                [&](const Slot& s) { return s.entry.study_id == entry.study_id && !s.held; });
    if (waiting != entries_.end())
      waiting->entry = entry;
    else
      entries_.push_back({entry, false});
    persist();
  }

  bool offer(const QueueEntry& entry) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool known = std::any_of(entries_.begin(), entries_.end(), [&](const Slot& s) {
      return s.entry.study_id == entry.study_id && (!s.held || s.entry.run == entry.run);
    });
    if (known) return false;
    entries_.push_back({entry, false});
    persist();
    return true;
  }

  std::optional<QueueEntry> claim() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& s : entries_) {
      if (s.held) continue;
      const bool study_busy = std::any_of(entries_.begin(), entries_.end(), [&](const Slot& o) {
        return o.held && o.entry.study_id == s.entry.study_id;
      });
      if (study_busy) continue;
      s.held = true;
      return s.entry;
    }
    return std::nullopt;
  }

  bool hold(const QueueEntry& entry) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool study_busy = std::any_of(entries_.begin(), entries_.end(), [&](const Slot& o) {
      return o.held && o.entry.study_id == entry.study_id;
    });
    if (study_busy) return false;
    entries_.push_back({entry, true});
    persist();
    return true;
  }

  void finish(const std::string& study_id, int run, QueueOutcome /*outcome*/) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Slot& s) {
      return s.held && s.entry.study_id == study_id && s.entry.run == run;
    });
    if (it == entries_.end()) return;
    entries_.erase(it);
    persist();
  }

  void release(const std::string& study_id, int run) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Slot& s) {
      return s.held && s.entry.study_id == study_id && s.entry.run == run;
    });
    if (it == entries_.end()) return;
    Slot slot = *it;
    entries_.erase(it);
    const bool newer_waiting = std::any_of(entries_.begin(), entries_.end(),
                                           [&](const Slot& s) { return s.entry.study_id == study_id; });
    if (!newer_waiting) entries_.push_front({slot.entry, false});
    persist();
  }

  void drop(const std::string& study_id, int run) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t before = entries_.size();
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                  [&](const Slot& s) { return s.entry.study_id == study_id && s.entry.run == run; }),
                   entries_.end());
    if (entries_.size() != before) persist();
  }

  bool contains(const std::string& study_id) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::any_of(entries_.begin(), entries_.end(), [&](const Slot& s) { return s.entry.study_id == study_id; });
  }

  QueueCounts counts() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    QueueCounts c;
    for (const auto& s : entries_) (s.held ? c.running : c.pending)++;
    return c;
  }

 private:
  struct Slot {
    QueueEntry entry;
    bool held = false;
  };

  // Held entries are stored too: after a crash they are exactly the interrupted studies.
  void persist() {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : entries_) list.push_back(s.entry.to_json());
    client_.set_global_property(kQueueGlobalProperty, list.dump());
  }

  const OrthancClient& client_;
  mutable std::mutex mutex_;
  std::deque<Slot> entries_;
};

}  // namespace

std::unique_ptr<StudyQueue> make_local_study_queue(const OrthancClient& client) {
  return std::make_unique<LocalStudyQueue>(client);
}

#ifndef UNIBIOMED_WITH_POSTGRESQL
std::unique_ptr<StudyQueue> make_postgres_study_queue(const SharedQueueSettings& /*settings*/) {
  throw PluginError("this build of the UniBiomed plugin has no PostgreSQL support (libpq was not found when it was "
                    "built): UniBiomed.Queue \"postgresql\" is unavailable",
                    503);
}
#endif

}  // namespace unibiomed::orthanc
