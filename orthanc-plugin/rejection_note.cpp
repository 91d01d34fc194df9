// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/rejection_note.h"

#include <optional>

#include "dicom/instance.h"
#include "orthanc-plugin/plugin_error.h"
#include "seg-writer/part10_file.h"
#include "sr-writer/rejection_note.h"

#ifndef UNIBIOMED_VERSION
#define UNIBIOMED_VERSION "0"
#endif

namespace unibiomed::orthanc {

namespace {

std::string tag(const nlohmann::json& tags, const char* key) {
  const auto found = tags.find(key);
  return found != tags.end() && found->is_string() ? found->get<std::string>() : std::string();
}

}  // namespace

RejectionNote write_rejection_note(const OrthancClient& client, const std::string& study_uid,
                                   const nlohmann::json& retire, const std::string& report_id,
                                   const std::string& description, int run, const std::string& seed,
                                   const std::string& node_name) {
  RejectionNote note;
  std::vector<sr::DocumentReference> rejected;
  for (const auto& entry : retire) {
    if (!entry.is_object()) continue;
    sr::DocumentReference r{study_uid, entry.value("SeriesInstanceUID", std::string()),
                            entry.value("SOPClassUID", std::string()), entry.value("SOPInstanceUID", std::string())};
    const std::string id = entry.value("ID", std::string());
    if (r.sop_instance_uid.empty() || r.series_instance_uid.empty() || r.sop_class_uid.empty()) {
      const auto tags = id.empty() ? std::nullopt : client.find_json("/instances/" + id + "/tags?short");
      if (!tags) {
        note.unlisted.push_back(id);
        continue;
      }
      r = {tag(*tags, "0020,000d"), tag(*tags, "0020,000e"), tag(*tags, "0008,0016"), tag(*tags, "0008,0018")};
    }
    rejected.push_back(std::move(r));
  }
  if (rejected.empty()) throw PluginError("there is no result object to reject");

  sr::RejectionNoteOptions options;
  options.algorithm.version = UNIBIOMED_VERSION;
  options.device_name = node_name.empty() ? options.device_name : node_name;
  options.description = description;
  options.series_description = "UniBiomed rejection note (run " + std::to_string(run) + ")";
  options.series_number = first_result_series_number(run) - 1;
  options.uid_seed = seed;  // the same UIDs when a resumed run writes the note again
  sr::WrittenReport written;
  try {
    const std::string bytes = client.get_bytes("/instances/" + report_id + "/file");
    const dicom::Instance header =
        dicom::Instance::read_bytes(std::vector<uint8_t>(bytes.begin(), bytes.end()), "instance " + report_id);
    written = sr::write_rejection_note(*header.dataset(), rejected, options);
  } catch (const dicom::DicomError& e) {
    throw PluginError(std::string("the replaced report cannot be read: ") + e.what());
  } catch (const sr::ReportError& e) {
    throw PluginError(std::string("the rejection note cannot be written: ") + e.what());
  }
  note.rejected = rejected.size();
  note.object.kind = "KO";
  note.object.sop_class_uid = written.sop_class_uid;
  note.object.sop_instance_uid = written.sop_instance_uid;
  note.object.series_instance_uid = written.series_instance_uid;
  note.object.bytes = seg::part10_bytes(*written.file);
  note.object.file_name = "rejection-note.dcm";
  return note;
}

}  // namespace unibiomed::orthanc
