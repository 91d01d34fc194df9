// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/study_record.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <regex>

#include "dicom/modality.h"
#include "orthanc-plugin/plugin_error.h"

namespace unibiomed::orthanc {

namespace {

std::string meta_uri(const std::string& level, const std::string& id, int key) {
  return "/" + level + "/" + id + "/metadata/" + std::to_string(key);
}

std::string string_field(const nlohmann::json& tags, const char* name) {
  auto it = tags.find(name);
  return it != tags.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string to_string(StudyState state) {
  switch (state) {
    case StudyState::Pending: return "pending";
    case StudyState::Running: return "running";
    case StudyState::Done: return "done";
    case StudyState::Skipped: return "skipped";
    case StudyState::Failed: return "failed";
    default: return "none";
  }
}

StudyState parse_study_state(const std::string& text) {
  if (text == "pending") return StudyState::Pending;
  if (text == "running") return StudyState::Running;
  if (text == "done") return StudyState::Done;
  if (text == "skipped") return StudyState::Skipped;
  if (text == "failed") return StudyState::Failed;
  return StudyState::None;
}

std::string now_iso() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json RunInfo::to_json() const {
  return {{"Run", run}, {"Attempt", attempt}, {"Mode", mode}, {"Request", request}, {"Job", job}, {"Updated", updated}};
}

RunInfo RunInfo::from_json(const nlohmann::json& j) {
  RunInfo r;
  if (!j.is_object()) return r;
  r.run = j.value("Run", 0);
  r.attempt = j.value("Attempt", 0);
  r.mode = j.value("Mode", std::string("analyze"));
  r.request = j.contains("Request") ? j["Request"] : nlohmann::json(nullptr);
  r.job = j.value("Job", std::string());
  r.updated = j.value("Updated", std::string());
  return r;
}

std::string SeriesInfo::name() const {
  return (modality.empty() ? std::string() : modality + " ") + "series " + series_instance_uid;
}

size_t StudyInventory::source_instance_count() const {
  size_t n = 0;
  for (const auto& s : series)
    if (!s.result) n += s.instances.size();
  return n;
}

std::vector<std::string> StudyInventory::source_instances() const {
  std::vector<std::string> ids;
  for (const auto& s : series)
    if (!s.result) ids.insert(ids.end(), s.instances.begin(), s.instances.end());
  return ids;
}

std::vector<std::string> StudyInventory::source_modalities() const {
  std::vector<std::string> m;
  for (const auto& s : series)
    if (!s.result) m.push_back(s.modality);
  return m;
}

std::optional<StudyRecord> StudyRecords::read(const std::string& study_id) const {
  // One GET per key: "/metadata?expand" names user metadata by their "UserMetadata" names when
  // the Orthanc configuration declares them (any name the administrator chose), by number
  // otherwise; the numbered URI works in both cases.
  if (!client_.find_json("/studies/" + study_id)) return std::nullopt;
  StudyRecord record;
  auto text = [&](int key) { return client_.find_text(meta_uri("studies", study_id, key)).value_or(std::string()); };
  record.state = parse_study_state(text(metadata::kState));
  try {
    if (auto run = text(metadata::kRun); !run.empty()) record.run = RunInfo::from_json(nlohmann::json::parse(run));
    if (auto summary = text(metadata::kSummary); !summary.empty()) record.summary = nlohmann::json::parse(summary);
  } catch (const nlohmann::json::exception& e) {
    // A hand-edited or truncated record must not stop the node: report it, start over.
    record.error = "unreadable UniBiomed metadata on study " + study_id + ": " + e.what();
  }
  if (auto error = text(metadata::kError); !error.empty()) record.error = error;
  return record;
}

void StudyRecords::write_state(const std::string& study_id, StudyState state) const {
  client_.write_metadata(meta_uri("studies", study_id, metadata::kState), to_string(state));
}

void StudyRecords::write_run(const std::string& study_id, const RunInfo& run) const {
  client_.write_metadata(meta_uri("studies", study_id, metadata::kRun), run.to_json().dump());
}

void StudyRecords::write_summary(const std::string& study_id, const nlohmann::json& summary) const {
  client_.write_metadata(meta_uri("studies", study_id, metadata::kSummary),
                         summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void StudyRecords::write_error(const std::string& study_id, const std::string& error) const {
  client_.write_metadata(meta_uri("studies", study_id, metadata::kError),
                         error.empty() ? std::nullopt : std::optional<std::string>(error));
}

void StudyRecords::mark_result_instance(const std::string& instance_id, const std::string& study_uid, int run) const {
  client_.write_metadata(meta_uri("instances", instance_id, metadata::kResult), study_uid + " run " + std::to_string(run));
}

std::optional<int> StudyRecords::result_run(const std::string& instance_id) const {
  const auto text = client_.find_text(meta_uri("instances", instance_id, metadata::kResult));
  if (!text) return std::nullopt;
  const size_t at = text->rfind(" run ");
  if (at == std::string::npos) return std::nullopt;
  try {
    size_t used = 0;
    const int run = std::stoi(text->substr(at + 5), &used);
    if (used == text->size() - at - 5 && run >= 0) return run;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::optional<StudyInventory> StudyRecords::inventory(const std::string& study_id) const {
  auto study = client_.find_json("/studies/" + study_id);
  if (!study) return std::nullopt;
  StudyInventory inv;
  inv.id = study_id;
  inv.study_instance_uid = string_field(study->value("MainDicomTags", nlohmann::json::object()), "StudyInstanceUID");
  inv.stable = study->value("IsStable", true);
  inv.last_update = study->value("LastUpdate", std::string());
  auto series = client_.find_json("/studies/" + study_id + "/series");
  if (!series) return std::nullopt;  // deleted meanwhile
  for (const auto& s : *series) {
    SeriesInfo info;
    info.id = s.value("ID", std::string());
    const auto tags = s.value("MainDicomTags", nlohmann::json::object());
    info.series_instance_uid = string_field(tags, "SeriesInstanceUID");
    info.modality = string_field(tags, "Modality");
    info.description = string_field(tags, "SeriesDescription");
    info.manufacturer = string_field(tags, "Manufacturer");
    for (const auto& i : s.value("Instances", nlohmann::json::array())) info.instances.push_back(i.get<std::string>());
    info.last_update = s.value("LastUpdate", std::string());
    if ((info.modality == "SEG" || info.modality == "SR" || info.modality == "KO") &&
        info.manufacturer.rfind(kResultManufacturerPrefix, 0) == 0) {
      info.result = true;
    } else if (!info.instances.empty()) {
      info.result = client_.find_text(meta_uri("instances", info.instances.front(), metadata::kResult)).has_value();
    }
    inv.series.push_back(std::move(info));
  }
  return inv;
}

nlohmann::json SeriesImages::to_json() const {
  nlohmann::json j = {{"Instances", instances}, {"Digest", digest}};
  if (!last_update.empty()) j["LastUpdate"] = last_update;
  return j;
}

SeriesImages SeriesImages::from_json(const nlohmann::json& j) {
  SeriesImages images;
  if (!j.is_object()) return images;
  const auto n = j.find("Instances");
  if (n != j.end() && n->is_number_unsigned()) images.instances = n->get<size_t>();
  images.digest = string_field(j, "Digest");
  images.last_update = string_field(j, "LastUpdate");
  return images;
}

namespace {

std::string digest_of(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  uint64_t h = 1469598103934665603ull;  // FNV-1a, 64 bits
  for (const auto& id : ids)
    for (const char c : id + '\n') {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace

std::map<std::string, SeriesImages> StudyRecords::image_series(const StudyInventory& inventory,
                                                               std::vector<std::string>* not_read) const {
  std::map<std::string, SeriesImages> images;
  for (const auto& s : inventory.series) {
    if (s.result || s.instances.empty()) continue;
    // Orthanc records every instance's SOP class ("SopClassUid"); an index that lacks it leaves
    // the Modality to decide.
    const std::string sop_class =
        client_.find_text("/instances/" + s.instances.front() + "/metadata/SopClassUid").value_or("");
    if (auto never = dicom::classify_without_pixels(sop_class, s.modality)) {
      if (not_read) not_read->push_back(s.name() + ": " + never->reason);
      continue;
    }
    images[s.id] = SeriesImages{s.instances.size(), digest_of(s.instances), s.last_update};
  }
  return images;
}

bool is_dicom_uid(const std::string& text) {
  static const std::regex uid("(0|[1-9][0-9]*)(\\.(0|[1-9][0-9]*))*");
  return text.size() <= 64 && std::regex_match(text, uid);
}

bool is_orthanc_id(const std::string& text) {
  static const std::regex id("[0-9a-f]{8}(-[0-9a-f]{8}){4}");
  return std::regex_match(text, id);
}

std::optional<std::string> StudyRecords::resolve_study(const std::string& id_or_uid) const {
  if (is_orthanc_id(id_or_uid)) {
    if (client_.find_json("/studies/" + id_or_uid)) return id_or_uid;
    return std::nullopt;
  }
  if (is_dicom_uid(id_or_uid)) {
    // Orthanc's study id hashes PatientID and StudyInstanceUID: two patients' studies may share
    // the UID, and then the UID alone does not say which one is meant.
    std::vector<std::string> studies;
    for (const auto& r : client_.post_bytes("/tools/lookup", id_or_uid))
      if (r.value("Type", std::string()) == "Study") studies.push_back(r.value("ID", std::string()));
    if (studies.empty()) return std::nullopt;
    if (studies.size() == 1) return studies.front();
    std::string list;
    for (const auto& id : studies) {
      const auto study = client_.find_json("/studies/" + id);
      const std::string patient =
          study ? string_field(study->value("PatientMainDicomTags", nlohmann::json::object()), "PatientID") : "";
      list += (list.empty() ? "" : ", ") + id + " (PatientID \"" + patient + "\")";
    }
    throw PluginError("StudyInstanceUID " + id_or_uid + " names " + std::to_string(studies.size()) +
                          " Orthanc studies: " + list + "; use the Orthanc study id",
                      409);
  }
  throw PluginError("\"" + id_or_uid + "\" is neither an Orthanc study id nor a StudyInstanceUID", 400);
}

}  // namespace unibiomed::orthanc
