// Sends stored results to a DICOM modality with an asynchronous store job of Orthanc
// (POST /modalities/{name}/store with "Synchronous": false: a synchronous store from a job would
// block a jobs-engine worker, ORTHANC.md) and follows that job to its end.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orthanc-plugin/configuration.h"
#include "orthanc-plugin/orthanc_client.h"

namespace unibiomed::orthanc {

struct ForwardOutcome {
  std::string modality;  // DicomModalities entry used
  std::string job;       // Orthanc job id of the store job
  std::string state;     // Success | Failure | Cancelled | TimedOut | NotSent
  std::string error;     // why it failed
  std::string updated;
  bool succeeded() const { return state == "Success"; }
  nlohmann::json to_json() const;
};

class Forwarder {
 public:
  Forwarder(const OrthancClient& client, ForwardTarget target, int timeout_seconds)
      : client_(client), target_(std::move(target)), timeout_seconds_(timeout_seconds) {}

  bool enabled() const { return target_.kind != ForwardTarget::Kind::None; }

  // Sends `instances` (Orthanc ids). `source_instance` gives RemoteAET for the Sender target.
  // Never throws: every failure is described in the outcome. `cancel` stops the wait (and the job).
  ForwardOutcome forward(const std::vector<std::string>& instances, const std::string& source_instance,
                         const std::atomic<bool>& cancel) const;

 private:
  std::string modality_for_sender(const std::string& source_instance) const;  // throws PluginError
  const OrthancClient& client_;
  const ForwardTarget target_;
  const int timeout_seconds_;
};

}  // namespace unibiomed::orthanc
