// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/forwarder.h"

#include <chrono>
#include <thread>

#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/study_record.h"

namespace unibiomed::orthanc {

nlohmann::json ForwardOutcome::to_json() const {
  return {{"Modality", modality}, {"Job", job}, {"State", state}, {"Error", error}, {"Updated", updated}};
}

std::string Forwarder::modality_for_sender(const std::string& source_instance) const {
  auto aet = client_.find_text("/instances/" + source_instance + "/metadata/RemoteAET");
  if (!aet || aet->empty())
    throw PluginError("the study was not received over DICOM (its instances have no RemoteAET), so there is no "
                      "sender to send the results back to");
  const auto modalities = client_.get_json("/modalities?expand");
  for (const auto& [name, parameters] : modalities.items())
    if (parameters.value("AET", std::string()) == *aet) return name;
  throw PluginError("the sending AE title \"" + *aet +
                    "\" is not declared in DicomModalities, so the results cannot be sent back to it");
}

ForwardOutcome Forwarder::forward(const std::vector<std::string>& instances, const std::string& source_instance,
                                  const std::atomic<bool>& cancel) const {
  ForwardOutcome out;
  out.state = "NotSent";
  try {
    out.modality = target_.kind == ForwardTarget::Kind::Sender ? modality_for_sender(source_instance) : target_.modality;
    if (instances.empty()) throw PluginError("there are no stored results to send");
    const auto answer = client_.post_json("/modalities/" + out.modality + "/store",
                                          {{"Resources", instances}, {"Synchronous", false}});
    out.job = answer.value("ID", std::string());
    if (out.job.empty()) throw PluginError("Orthanc created no store job: " + answer.dump());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds_);
    for (;;) {
      const auto job = client_.get_json("/jobs/" + out.job);
      const std::string state = job.value("State", std::string());
      if (state == "Success") {
        out.state = "Success";
        break;
      }
      if (state == "Failure") {
        out.state = "Failure";
        out.error = "store job " + out.job + " to modality \"" + out.modality + "\" failed: " +
                    job.value("ErrorDescription", std::string("unknown error"));
        if (job.contains("ErrorDetails") && job["ErrorDetails"].is_string() &&
            !job["ErrorDetails"].get<std::string>().empty())
          out.error += " (" + job["ErrorDetails"].get<std::string>() + ")";
        break;
      }
      if (cancel.load()) {
        client_.call(OrthancPluginHttpMethod_Post, "/jobs/" + out.job + "/cancel", "{}");
        out.state = "Cancelled";
        out.error = "forwarding was cancelled while store job " + out.job + " was " + state;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        out.state = "TimedOut";
        out.error = "store job " + out.job + " to modality \"" + out.modality + "\" did not finish within " +
                    std::to_string(timeout_seconds_) + " s (UniBiomed.ForwardTimeout); it is left " + state;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  } catch (const std::exception& e) {
    out.state = out.job.empty() ? "NotSent" : "Failure";
    out.error = std::string("forwarding failed: ") + e.what();
  }
  out.updated = now_iso();
  return out;
}

}  // namespace unibiomed::orthanc
