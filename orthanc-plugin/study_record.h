// What the plugin remembers about a study, kept where it survives restarts and is visible to
// every node sharing the index: user metadata on the study (and a flag on our own instances).
//
// Metadata ids (declare them in Orthanc's "UserMetadata" to see names instead of numbers; numeric
// ids work without the declaration in Orthanc 1.10.1):
//   4401 UniBiomedState    study     pending | running | done | skipped | failed
//                                    (skipped: no series the model reads, none failed; nothing stored)
//   4402 UniBiomedRun      study     JSON {Run, Attempt, Mode, Request, Job, Updated}
//   4403 UniBiomedSummary  study     JSON summary of the last finished run (findings, series, results)
//   4404 UniBiomedError    study     why the last run failed (absent when it succeeded)
//   4405 UniBiomedResult   instance  "<StudyInstanceUID> run <N>" on every instance the plugin stored
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "orthanc-plugin/orthanc_client.h"

namespace unibiomed::orthanc {

namespace metadata {
inline constexpr int kState = 4401;
inline constexpr int kRun = 4402;
inline constexpr int kSummary = 4403;
inline constexpr int kError = 4404;
inline constexpr int kResult = 4405;
}  // namespace metadata

// What our SEG/SR series carry as Manufacturer (seg-writer/sr-writer name the algorithm there,
// DICOM-OUTPUT.md): a second way to recognise our own output besides the instance flag.
inline constexpr const char* kResultManufacturerPrefix = "UniBiomed";

// Skipped: the run finished without error but found no series the model reads (a study of
// documents, reports or waveforms only): nothing was stored and nothing is forwarded.
enum class StudyState { None, Pending, Running, Done, Skipped, Failed };
std::string to_string(StudyState state);
StudyState parse_study_state(const std::string& text);  // unknown text -> None

// One analysis run: Run is bumped by every new request for new results (new result UIDs);
// Attempt counts the starts of that run (a crash-resume is a new attempt with the same UIDs).
struct RunInfo {
  int run = 0;
  int attempt = 0;
  std::string mode = "analyze";     // analyze | forward (re-send stored results only)
  nlohmann::json request = nullptr; // {"Tasks": [...], "Questions": [...], "Rules": bool} or null
  std::string job;                  // the Orthanc job id of the latest attempt (this server)
  std::string updated;              // ISO time of the last change
  nlohmann::json to_json() const;
  static RunInfo from_json(const nlohmann::json& j);
};

struct StudyRecord {
  StudyState state = StudyState::None;
  RunInfo run;
  nlohmann::json summary = nullptr;
  std::string error;
};

struct SeriesInfo {
  std::string id;           // Orthanc series id
  std::string series_instance_uid;
  std::string modality;
  std::string description;
  std::string manufacturer;
  std::vector<std::string> instances;  // Orthanc instance ids
  // Orthanc's LastUpdate of the series (UTC, whole seconds): when an instance was last stored
  // into it. Deleting instances or sending one it already has leaves it as it is.
  std::string last_update;
  bool result = false;                 // one of ours (SEG/SR written by this plugin)
  std::string name() const;            // "CT series <uid>", for messages
};

// What a run read of one series of images, as its summary records it ("ImageSeries"):
// {"Instances": n, "Digest": "<16 hex digits>", "LastUpdate": "20261208T034317"}. The digest
// (FNV-1a of the sorted Orthanc instance ids) tells an image that replaced a deleted one from no
// change at all; LastUpdate tells images stored since, also where deletions left fewer in all.
struct SeriesImages {
  size_t instances = 0;
  std::string digest;
  std::string last_update;  // "" in summaries of earlier versions
  nlohmann::json to_json() const;
  static SeriesImages from_json(const nlohmann::json& j);  // anything else: 0 instances
};

struct StudyInventory {
  std::string id;                  // Orthanc study id
  std::string study_instance_uid;
  bool stable = true;           // this node's view (Orthanc's IsStable)
  std::string last_update;      // Orthanc's LastUpdate of the study (UTC, shared by a cluster)
  std::vector<SeriesInfo> series;
  size_t source_instance_count() const;
  std::vector<std::string> source_instances() const;
  std::vector<std::string> source_modalities() const;
};

// Reads and writes the records through the core's REST API (plugin threads only).
// PS3.5 9.1: components of digits without leading zeros ("0" alone allowed), at most 64 chars.
bool is_dicom_uid(const std::string& text);
// Orthanc's resource ids: five groups of eight lower-case hex digits (SHA-1 of the UIDs).
bool is_orthanc_id(const std::string& text);

class StudyRecords {
 public:
  explicit StudyRecords(const OrthancClient& client) : client_(client) {}

  std::optional<StudyRecord> read(const std::string& study_id) const;  // nullopt: no such study
  void write_state(const std::string& study_id, StudyState state) const;
  void write_run(const std::string& study_id, const RunInfo& run) const;
  void write_summary(const std::string& study_id, const nlohmann::json& summary) const;
  void write_error(const std::string& study_id, const std::string& error) const;  // "" removes it

  void mark_result_instance(const std::string& instance_id, const std::string& study_uid, int run) const;
  // The run that stored a result instance (0: a SEG stored by /unibiomed/ask); nullopt when the
  // instance carries no flag (an output of another node version, recognised by its Manufacturer).
  std::optional<int> result_run(const std::string& instance_id) const;

  // The study's series, with our own result series recognised. nullopt: no such study.
  std::optional<StudyInventory> inventory(const std::string& study_id) const;

  // The source series that may hold images the model reads, by Orthanc id: a new run starts for
  // new images only. The others (a report, a presentation state, a document, a modality outside
  // the model's ten: dicom::classify_without_pixels on the series' Modality and its first
  // instance's SOP class) are described in `not_read` when given ("SR series <uid>: <reason>").
  std::map<std::string, SeriesImages> image_series(const StudyInventory& inventory,
                                                   std::vector<std::string>* not_read = nullptr) const;

  // Orthanc study id from either an Orthanc id or a StudyInstanceUID; nullopt when unknown.
  // Throws PluginError 409 listing the Orthanc ids when the UID names several studies (the same
  // StudyInstanceUID under different PatientIDs), 400 when the text is neither.
  std::optional<std::string> resolve_study(const std::string& id_or_uid) const;

 private:
  const OrthancClient& client_;
};

std::string now_iso();

}  // namespace unibiomed::orthanc
