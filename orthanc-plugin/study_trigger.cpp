// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/study_trigger.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <optional>
#include <vector>

#include "dicom/instance.h"
#include "dicom/modality.h"
#include "dicom/series.h"
#include "orthanc-plugin/plugin_error.h"

namespace unibiomed::orthanc {

namespace {

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Seconds since an Orthanc LastUpdate ("20261205T043238", UTC); nullopt when unreadable.
std::optional<double> seconds_since_utc(const std::string& text) {
  std::tm tm{};
  if (text.size() != 15 || text[8] != 'T' || !strptime(text.c_str(), "%Y%m%dT%H%M%S", &tm)) return std::nullopt;
  const std::time_t then = timegm(&tm);
  return std::difftime(std::time(nullptr), then);
}

}  // namespace

StudyTrigger::Decision StudyTrigger::consider(const std::string& study_id, Source source) {
  auto& s = *services_;
  if (s.queue->contains(study_id)) return Decision::AlreadyQueued;
  auto inventory = s.records.inventory(study_id);
  if (!inventory) return Decision::Gone;
  if (!inventory->stable) return Decision::Unstable;
  if (s.queue->shared()) {
    const auto age = seconds_since_utc(inventory->last_update);
    const int needed = s.config.orthanc_stable_age + (source == Source::Event ? -1 : 1);
    if (age && *age < needed) return Decision::Unstable;
  }
  auto record = s.records.read(study_id);
  if (!record) return Decision::Gone;
  const size_t sources = inventory->source_instance_count();
  if (sources == 0) return Decision::Ignored;  // nothing but results (e.g. an ask SEG alone)

  switch (record->state) {
    case StudyState::Pending:
    case StudyState::Running: {
      // Recorded as waiting but in no queue: a request from before a crash whose queue write
      // was lost. Resume it.
      QueueEntry entry{study_id, std::max(1, record->run.run), record->run.mode, record->run.request, false, {}};
      if (!s.queue->offer(entry)) return Decision::AlreadyQueued;
      s.client.log_info("study " + study_id + " was " + to_string(record->state) + " without a queue entry: resumed");
      return Decision::Queued;
    }
    case StudyState::Done:
    case StudyState::Skipped:
    case StudyState::Failed: {
      const size_t analysed = record->summary.is_object() ? record->summary.value("SourceInstances", size_t{0}) : 0;
      if (!s.config.auto_analysis) return Decision::Ignored;
      if (record->summary.is_null() || analysed == 0) return Decision::Ignored;  // failed before counting
      // Our own results were excluded from `sources`, so only arrivals or deletions change it. The
      // same count may still hold other images (a slice deleted, a corrected one sent), which
      // the series' digests tell (a summary of an earlier version has none).
      const bool counted_change = analysed != sources;
      if (!counted_change && !record->summary.contains("ImageSeries")) return Decision::Ignored;
      const std::string news = new_images(*inventory, *record, source == Source::Event && counted_change);
      if (news.empty()) return Decision::Ignored;
      QueueEntry entry{study_id, record->run.run + 1, "analyze", nullptr, false, {}};
      if (!s.queue->offer(entry)) return Decision::AlreadyQueued;  // another node queued it
      s.client.log_info("study " + study_id + " " + news + ": run " + std::to_string(entry.run) + " queued");
      if (s.queue->shared()) return Decision::Queued;  // the claiming node writes the records
      RunInfo run = record->run;
      run.run = entry.run;
      run.attempt = 0;
      run.mode = entry.mode;
      run.request = nullptr;
      run.updated = now_iso();
      s.records.write_run(study_id, run);
      s.records.write_state(study_id, StudyState::Pending);
      return Decision::Queued;
    }
    case StudyState::None:
      break;
  }

  if (!s.config.auto_analysis) return Decision::Ignored;
  if (!s.config.trigger_modalities.empty()) {
    bool match = false;
    for (const auto& m : inventory->source_modalities()) match = match || contains(s.config.trigger_modalities, m);
    if (!match) {
      s.client.log_info("study " + study_id + " not analysed: none of its modalities is in UniBiomed.TriggerModalities");
      return Decision::Ignored;
    }
  }
  if (!s.config.trigger_calling_aets.empty()) {
    bool match = false;
    for (const auto& series : inventory->series) {
      if (series.result || series.instances.empty()) continue;
      auto aet = s.client.find_text("/instances/" + series.instances.front() + "/metadata/RemoteAET");
      match = match || (aet && contains(s.config.trigger_calling_aets, *aet));
    }
    if (!match) {
      s.client.log_info("study " + study_id +
                        " not analysed: it was not sent by an AE title of UniBiomed.TriggerCallingAETitles");
      return Decision::Ignored;
    }
  }
  QueueEntry entry{study_id, 1, "analyze", nullptr, false, {}};
  // Queue first, then the study record: a crash in between leaves a queue entry, which resumes.
  // Several nodes may get here for one study (each that received instances, each /changes scan):
  // the enqueue is idempotent and only the node whose offer added the entry goes on.
  if (!s.queue->offer(entry)) return Decision::AlreadyQueued;
  s.client.log_info("study " + study_id + " (" + inventory->study_instance_uid + ") queued for analysis");
  // With a shared queue the node that claims the entry writes the records (the queue is the
  // only arbiter of who writes; docs/ORTHANC.md "Scale-out").
  if (s.queue->shared()) return Decision::Queued;
  RunInfo run;
  run.run = 1;
  run.updated = now_iso();
  s.records.write_run(study_id, run);
  s.records.write_state(study_id, StudyState::Pending);
  return Decision::Queued;
}

std::string StudyTrigger::new_images(const StudyInventory& inventory, const StudyRecord& record, bool explain) const {
  auto& s = *services_;
  const auto recorded = record.summary.find("ImageSeries");
  if (recorded == record.summary.end() || !recorded->is_object()) {
    // A summary of an earlier version of the plugin counted every instance, images or not.
    return "changed (" + std::to_string(record.summary.value("SourceInstances", size_t{0})) + " -> " +
           std::to_string(inventory.source_instance_count()) +
           " instances of any kind; the last run's summary is of an earlier plugin version, which counted them all)";
  }
  std::vector<std::string> not_read, unread;  // unread: new series of images the analysis skips
  std::string news;
  for (const auto& [id, images] : s.records.image_series(inventory, &not_read)) {
    const auto before = recorded->find(id);
    const SeriesImages had = before != recorded->end() ? SeriesImages::from_json(*before) : SeriesImages{};
    const auto series = std::find_if(inventory.series.begin(), inventory.series.end(),
                                     [&id = id](const SeriesInfo& info) { return info.id == id; });
    std::string change;
    if (images.instances > had.instances)
      change = std::to_string(had.instances) + " -> " + std::to_string(images.instances) + " instances";
    else if (images.instances == had.instances && !had.digest.empty() && images.digest != had.digest)
      change = std::to_string(images.instances) + " instances, some of them new (they replace deleted ones)";
    else if (!had.last_update.empty() && images.last_update > had.last_update)
      // Stored into since the run, though deletions left no more in all (or the same ones,
      // overwritten); LastUpdate is the same text format, so the later is the greater.
      change = std::to_string(had.instances) + " -> " + std::to_string(images.instances) +
               " instances, some of them stored since run " + std::to_string(record.run.run);
    else
      continue;  // unchanged, or deletions alone
    if (had.instances == 0) {
      // A new series: what its first image is, as the analysis will classify it (a secondary
      // capture that does not say what it shows, a localizer, a screenshot): a run for images
      // the analysis then skips would only repeat the others' results.
      if (auto reason = unread_image(series->instances.front())) {
        unread.push_back(series->name() + ": " + *reason);
        continue;
      }
    }
    news += (news.empty() ? "" : ", ") + series->name() + ": " + change;
  }
  if (!news.empty()) return "received new images (" + news + ")";
  if (explain) {
    // The series the model does not read, a few of them (a study collects viewers' objects),
    // new series of images first.
    not_read.insert(not_read.begin(), unread.begin(), unread.end());
    constexpr size_t kNamed = 3;
    std::string others;
    for (size_t i = 0; i < std::min(not_read.size(), kNamed); ++i) others += (i ? "; " : "") + not_read[i];
    if (not_read.size() > kNamed) others += "; and " + std::to_string(not_read.size() - kNamed) + " more series";
    s.client.log_info("study " + inventory.id + " changed since run " + std::to_string(record.run.run) +
                      ", but not in images the model reads: no new run" + (others.empty() ? "" : " (" + others + ")"));
  }
  return news;
}

std::optional<std::string> StudyTrigger::unread_image(const std::string& instance_id) const {
  auto& s = *services_;
  try {
    const std::string bytes = s.client.get_bytes("/instances/" + instance_id + "/file");
    dicom::Instance instance =
        dicom::Instance::read_bytes(std::vector<uint8_t>(bytes.begin(), bytes.end()), "instance " + instance_id);
    const dicom::ModalityClass c = dicom::classify_modality(instance);
    if (!c.modality) return c.reason;
    // What the task rules and the checkpoint ask of it (a CT of the head in an abdominal study,
    // a hand radiograph, a mammogram the checkpoint was not trained on): nothing, no run.
    if (s.screen) {
      std::vector<dicom::Instance> first;
      first.push_back(std::move(instance));
      const dicom::SeriesCollection series = dicom::group_into_series(std::move(first));
      if (!series.series.empty())
        if (std::string reason = s.screen(series.series.front()); !reason.empty()) return reason;
    }
  } catch (const std::exception&) {
    // Unreadable here: the run says what is wrong with it.
  }
  return std::nullopt;
}

bool StudyTrigger::check_recovered(const QueueEntry& entry) {
  auto& s = *services_;
  auto record = s.records.read(entry.study_id);
  if (!record) return false;  // deleted while we were down
  if (record->run.run == entry.run && record->state == StudyState::Done && entry.mode == "analyze") {
    // Finished but the queue update was lost; only forwarding may be left.
    const bool forwarded = !s.forwarder.enabled() ||
                           (record->summary.is_object() && record->summary.contains("Forward") &&
                            record->summary["Forward"].is_object() &&
                            record->summary["Forward"].value("State", std::string()) == "Success");
    return !forwarded;
  }
  if (record->run.run == entry.run && (record->state == StudyState::Failed || record->state == StudyState::Skipped))
    return false;  // nothing stored, nothing to forward
  if (record->run.run == entry.run && record->state == StudyState::Running &&
      record->run.attempt >= s.config.max_attempts) {
    const std::string error = "the analysis was interrupted " + std::to_string(record->run.attempt) +
                              " times (Orthanc stopped or crashed while it ran; UniBiomed.MaxAttempts is " +
                              std::to_string(s.config.max_attempts) + "); POST /unibiomed/studies/" + entry.study_id +
                              "/analyze to try again";
    s.records.write_error(entry.study_id, error);
    s.records.write_state(entry.study_id, StudyState::Failed);
    s.client.log_error("study " + entry.study_id + ": " + error);
    return false;
  }
  if (record->run.run == entry.run && record->state == StudyState::Running)
    s.client.log_warning("study " + entry.study_id + " run " + std::to_string(entry.run) + " was interrupted at attempt " +
                         std::to_string(record->run.attempt) + "; resuming (same result UIDs, no duplicates)");
  return true;
}

int64_t StudyTrigger::cursor() {
  if (cursor_ >= 0) return cursor_;
  auto& s = *services_;
  if (auto stored = s.client.global_property(kChangesCursorGlobalProperty)) {
    try {
      cursor_ = std::stoll(*stored);
      return cursor_;
    } catch (const std::exception&) {
      s.client.log_error("the stored /changes cursor \"" + *stored + "\" is unreadable; starting from the end of the log");
    }
  }
  // First start with this plugin: studies already in Orthanc are not analysed automatically
  // (POST /unibiomed/studies/{id}/analyze does it on request); everything from now on is.
  const auto last = s.client.get_json("/changes?last");
  cursor_ = last.value("Last", int64_t{0});
  save_cursor(cursor_);
  return cursor_;
}

void StudyTrigger::save_cursor(int64_t value) {
  services_->client.set_global_property(kChangesCursorGlobalProperty, std::to_string(value));
  cursor_ = value;
}

void StudyTrigger::scan_changes() {
  auto& s = *services_;
  int64_t since = cursor();
  int64_t hold = -1;  // the cursor may not pass this seq (a study still receiving images)
  int64_t last = since;
  for (;;) {
    const auto page = s.client.get_json("/changes?since=" + std::to_string(since) + "&limit=500");
    // Studies in order of first appearance; the seq of each study's first change in this page.
    std::vector<std::pair<std::string, int64_t>> studies;
    std::map<std::string, size_t> seen;
    for (const auto& change : page.value("Changes", nlohmann::json::array())) {
      const std::string type = change.value("ChangeType", std::string());
      if (type != "StableStudy" && type != "NewStudy") continue;
      const std::string id = change.value("ID", std::string());
      if (seen.count(id) == 0) {
        seen[id] = studies.size();
        studies.emplace_back(id, change.value("Seq", int64_t{0}));
      }
    }
    for (const auto& [id, seq] : studies) {
      Decision d = Decision::Ignored;
      try {
        d = consider(id, Source::Scan);
      } catch (const std::exception& e) {
        s.client.log_error("cannot check study " + id + ": " + e.what());
        d = Decision::Unstable;  // try again on the next scan
      }
      if (d == Decision::Unstable && hold < 0) hold = seq - 1;
    }
    last = page.value("Last", since);
    if (page.value("Done", true) || last <= since) break;
    since = last;
  }
  const int64_t next = hold >= 0 ? std::max(hold, cursor_) : last;
  if (next != cursor_) save_cursor(next);
}

}  // namespace unibiomed::orthanc
