// Stores the pipeline's SEG and SR objects in Orthanc (POST /instances) and flags each stored
// instance as ours, so that the new series never trigger another analysis.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orthanc-plugin/orthanc_client.h"
#include "orthanc-plugin/study_record.h"
#include "pipeline/analyzer.h"

namespace unibiomed::orthanc {

struct StoredResult {
  std::string kind;                // SEG | SR
  std::string instance_id;         // Orthanc ids
  std::string series_id;
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::string status;              // Orthanc's answer: Success, or AlreadyStored for a re-run after a crash
  nlohmann::json to_json() const;
};

class ResultStore {
 public:
  ResultStore(const OrthancClient& client, const StudyRecords& records) : client_(client), records_(records) {}

  // Stores one object into the study `study_id`. Throws PluginError when Orthanc refuses it or
  // when it lands in another study (the pipeline must write into the source study).
  StoredResult store(const pipeline::ResultObject& object, const std::string& study_id, const std::string& study_uid,
                     int run) const;

 private:
  const OrthancClient& client_;
  const StudyRecords& records_;
};

}  // namespace unibiomed::orthanc
