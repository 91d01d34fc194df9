// The Orthanc entry points of the UniBiomed node. This file only wires things up: it reads the
// configuration, builds the node's single context, and registers the callbacks; each
// responsibility lives in its own file (configuration, study_trigger, local_study_queue,
// analysis_scheduler, analysis_job, study_analysis, result_store, forwarder, rest_api).
// Only the four functions below are exported (exports.map).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <orthanc/OrthancCPlugin.h>

#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "orthanc-plugin/analysis_scheduler.h"
#include "orthanc-plugin/configuration.h"
#include "orthanc-plugin/node_services.h"
#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/rest_api.h"
#include "pipeline/study_plan.h"

#ifndef UNIBIOMED_VERSION
#define UNIBIOMED_VERSION "dev"
#endif

namespace {

using namespace unibiomed::orthanc;

// The plugin's single context: the only state that lives outside the callbacks' arguments.
struct PluginContext {
  OrthancPluginContext* orthanc = nullptr;
  std::shared_ptr<NodeServices> services;
  std::shared_ptr<AnalysisScheduler> scheduler;  // null when the configuration is invalid
  std::unique_ptr<RestApi> rest;
};

std::unique_ptr<PluginContext> plugin;

OrthancPluginErrorCode on_change(OrthancPluginChangeType type, OrthancPluginResourceType resource_type,
                                 const char* resource_id) {
  // Runs on Orthanc's change thread: only hand work over, never call the REST API here.
  if (!plugin || !plugin->scheduler) return OrthancPluginErrorCode_Success;
  try {
    switch (type) {
      case OrthancPluginChangeType_OrthancStarted: plugin->scheduler->start(); break;
      case OrthancPluginChangeType_OrthancStopped: plugin->scheduler->stop(); break;
      case OrthancPluginChangeType_StableStudy:
        if (resource_type == OrthancPluginResourceType_Study && resource_id)
          plugin->scheduler->notify_stable_study(resource_id);
        break;
      default: break;
    }
  } catch (const std::exception& e) {
    OrthancPluginLogError(plugin->orthanc, (std::string("UniBiomed: ") + e.what()).c_str());
  }
  return OrthancPluginErrorCode_Success;
}

const char* method_name(OrthancPluginHttpMethod method) {
  switch (method) {
    case OrthancPluginHttpMethod_Get: return "GET";
    case OrthancPluginHttpMethod_Post: return "POST";
    case OrthancPluginHttpMethod_Put: return "PUT";
    case OrthancPluginHttpMethod_Delete: return "DELETE";
    default: return "OTHER";
  }
}

// One trampoline per row of RestApi::kRoutes (the SDK passes no user data to REST callbacks).
// Runs on one of Orthanc's HTTP threads; RestApi::handle never throws.
template <size_t Route>
OrthancPluginErrorCode on_rest(OrthancPluginRestOutput* output, const char* /*url*/,
                               const OrthancPluginHttpRequest* request) {
  std::vector<std::string> groups;
  for (uint32_t i = 0; i < request->groupsCount; ++i) groups.emplace_back(request->groups[i]);
  const std::string body(static_cast<const char*>(request->body), request->bodySize);
  const RestAnswer answer = plugin->rest->handle(Route, method_name(request->method), groups, body);
  const std::string text = answer.body.dump(3, ' ', false, nlohmann::json::error_handler_t::replace);
  if (answer.status == 200) {
    OrthancPluginAnswerBuffer(plugin->orthanc, output, text.c_str(), static_cast<uint32_t>(text.size()),
                              "application/json");
  } else if (answer.status == 405) {
    OrthancPluginSendMethodNotAllowed(plugin->orthanc, output, answer.allow.c_str());
  } else {
    OrthancPluginSetHttpHeader(plugin->orthanc, output, "Content-Type", "application/json");
    OrthancPluginSendHttpStatus(plugin->orthanc, output, static_cast<uint16_t>(answer.status), text.c_str(),
                                static_cast<uint32_t>(text.size()));
  }
  return OrthancPluginErrorCode_Success;
}

template <size_t... Routes>
void register_routes(OrthancPluginContext* context, std::index_sequence<Routes...>) {
  (OrthancPluginRegisterRestCallbackNoLock(context, RestApi::kRoutes[Routes].uri, &on_rest<Routes>), ...);
}

}  // namespace

extern "C" {

ORTHANC_PLUGINS_API int32_t OrthancPluginInitialize(OrthancPluginContext* context) {
  if (!OrthancPluginCheckVersion(context)) {
    const std::string message = std::string("UniBiomed: this plugin needs Orthanc ") +
                                std::to_string(ORTHANC_PLUGINS_MINIMAL_MAJOR_NUMBER) + "." +
                                std::to_string(ORTHANC_PLUGINS_MINIMAL_MINOR_NUMBER) + "." +
                                std::to_string(ORTHANC_PLUGINS_MINIMAL_REVISION_NUMBER) + " or newer, not " +
                                context->orthancVersion;
    OrthancPluginLogError(context, message.c_str());
    return -1;
  }
  OrthancPluginSetDescription(context,
                              "UniBiomed: grounded findings (DICOM SEG + TID 1500 SR) for every study that arrives");
  plugin = std::make_unique<PluginContext>();
  plugin->orthanc = context;
  try {
    char* text = OrthancPluginGetConfiguration(context);
    const std::string json_text = text ? text : "{}";
    if (text) OrthancPluginFreeString(context, text);
    const Configuration configuration = Configuration::parse(nlohmann::json::parse(json_text));
    plugin->services =
        std::make_shared<NodeServices>(context, configuration, &unibiomed::pipeline::Analyzer::create,
                                       unibiomed::pipeline::automatic_analysis_screen(configuration.analyzer));
    plugin->scheduler = std::make_shared<AnalysisScheduler>(plugin->services);
    plugin->rest = std::make_unique<RestApi>(plugin->services, plugin->scheduler, UNIBIOMED_VERSION, std::string());
    OrthancPluginLogWarning(context, ("UniBiomed: configuration " + configuration.to_json().dump()).c_str());
  } catch (const std::exception& e) {
    // Orthanc keeps running; every route of ours answers 503 with this reason.
    OrthancPluginLogError(context, (std::string("UniBiomed: ") + e.what()).c_str());
    plugin->services.reset();
    plugin->scheduler.reset();
    plugin->rest = std::make_unique<RestApi>(e.what(), UNIBIOMED_VERSION);
  }
  OrthancPluginRegisterOnChangeCallback(context, on_change);
  register_routes(context, std::make_index_sequence<std::size(RestApi::kRoutes)>{});
  return 0;
}

ORTHANC_PLUGINS_API void OrthancPluginFinalize() {
  if (plugin && plugin->scheduler) plugin->scheduler->stop();
  plugin.reset();
}

ORTHANC_PLUGINS_API const char* OrthancPluginGetName() { return "unibiomed"; }

ORTHANC_PLUGINS_API const char* OrthancPluginGetVersion() { return UNIBIOMED_VERSION; }
}
