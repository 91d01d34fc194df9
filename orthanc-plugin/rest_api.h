// The plugin's REST API under /unibiomed/ (registered NoLock: every handler is thread-safe, and
// Orthanc applies its own authentication settings before calling it):
//   GET  /unibiomed/status                 model, device, queue, counters, configuration
//   GET  /unibiomed/studies/{id}           state, run, findings, series outcomes, result series
//   POST /unibiomed/studies/{id}/analyze   queue a new run; body optional: {Tasks, Questions, Rules}
//   POST /unibiomed/studies/{id}/forward   send the stored results again (UniBiomed.ForwardTo)
//   POST /unibiomed/ask                    {Instance, Frame, Question, Box, Store}: answered at once
// {id} is an Orthanc study id or a StudyInstanceUID. Errors answer JSON {"Error": "..."} with
// 400 (bad request), 404 (unknown study or instance), 409 (wrong state) or 503 (not ready: the
// configuration is invalid or the model is not loaded, with the reason).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orthanc-plugin/analysis_scheduler.h"
#include "orthanc-plugin/node_services.h"

namespace unibiomed::orthanc {

struct RestAnswer {
  int status = 200;
  nlohmann::json body;
};

class RestApi {
 public:
  // A working node.
  RestApi(std::shared_ptr<NodeServices> services, std::shared_ptr<AnalysisScheduler> scheduler, std::string version,
          std::string build_note);
  // A node that could not start (invalid configuration): every route answers 503 with `reason`.
  RestApi(std::string reason, std::string version);

  // The URI regular expressions to register, in the order of the route ids below.
  static std::vector<std::string> routes();

  // route: index into routes(); groups: the regex groups; body: the request body.
  RestAnswer handle(size_t route, const std::string& method, const std::vector<std::string>& groups,
                    const std::string& body) const;

 private:
  RestAnswer status() const;
  RestAnswer study(const std::string& id) const;
  RestAnswer analyze(const std::string& id, const std::string& body, const std::string& mode) const;
  RestAnswer ask(const std::string& body) const;

  std::shared_ptr<NodeServices> services_;
  std::shared_ptr<AnalysisScheduler> scheduler_;
  std::string unavailable_;  // non-empty: the node could not start, and why
  std::string version_, build_note_;
};

}  // namespace unibiomed::orthanc
