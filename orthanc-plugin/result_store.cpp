// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/result_store.h"

#include "orthanc-plugin/plugin_error.h"

namespace unibiomed::orthanc {

nlohmann::json StoredResult::to_json() const {
  return {{"Kind", kind},
          {"ID", instance_id},
          {"ParentSeries", series_id},
          {"SOPClassUID", sop_class_uid},
          {"SOPInstanceUID", sop_instance_uid},
          {"SeriesInstanceUID", series_instance_uid},
          {"Status", status}};
}

StoredResult ResultStore::store(const pipeline::ResultObject& object, const std::string& study_id,
                                const std::string& study_uid, int run) const {
  const std::string what = object.kind + " " + object.sop_instance_uid;
  if (object.bytes.empty()) throw PluginError("the pipeline produced an empty " + what);
  nlohmann::json answer;
  try {
    answer = client_.post_bytes("/instances", std::string(object.bytes.begin(), object.bytes.end()));
  } catch (const PluginError& e) {
    throw PluginError("Orthanc refused the " + what + ": " + e.what());
  }
  StoredResult r;
  r.kind = object.kind;
  r.instance_id = answer.value("ID", std::string());
  r.series_id = answer.value("ParentSeries", std::string());
  r.status = answer.value("Status", std::string());
  r.sop_class_uid = object.sop_class_uid;
  r.sop_instance_uid = object.sop_instance_uid;
  r.series_instance_uid = object.series_instance_uid;
  // Orthanc answers 200 for an instance it did not keep too: a filter (a Lua
  // ReceivedInstanceFilter, a plugin's) refused it, or the storage is full.
  if (r.status == "FilteredOut")
    throw PluginError("Orthanc did not store the " + what +
                      ": a filter of this Orthanc refused it (a Lua ReceivedInstanceFilter or a plugin's filter)");
  if (!r.status.empty() && r.status != "Success" && r.status != "AlreadyStored")
    throw PluginError("Orthanc did not store the " + what + ": its answer was \"" + r.status + "\"");
  if (r.instance_id.empty()) throw PluginError("Orthanc stored the " + what + " but returned no instance id");
  // Flag first: whatever happens next, this instance must never count as a source image.
  records_.mark_result_instance(r.instance_id, study_uid, run);
  if (answer.value("ParentStudy", study_id) != study_id)
    throw PluginError("the " + what + " was stored into study " + answer.value("ParentStudy", std::string()) +
                      " instead of " + study_id + " (its StudyInstanceUID differs from the source study's)");
  return r;
}

}  // namespace unibiomed::orthanc
