// The plugin's REST API under /unibiomed/. Every route is one row of RestApi::kRoutes: its URI
// regex (registered with Orthanc as it stands), the HTTP methods it accepts (anything else
// answers 405 with an Allow header made from the same row) and its handler. plugin.cpp
// registers exactly these rows; nothing else names a route.
// The routes are registered NoLock: every handler is thread-safe and runs on one of Orthanc's
// HTTP threads, after Orthanc applied its own authentication settings.
// {id} is an Orthanc study id or a StudyInstanceUID. Errors answer JSON {"Error": "..."} with
// 400 (bad request, naming the field), 404 (unknown study or instance), 405 (method), 409 (wrong
// state, or a StudyInstanceUID/SOPInstanceUID that names several Orthanc resources) or 503 (not
// ready: the configuration is invalid or the model is not loaded, with the reason).
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
  RestAnswer(int status_code, nlohmann::json json_body, std::string allowed = {})
      : status(status_code), body(std::move(json_body)), allow(std::move(allowed)) {}
  int status;
  nlohmann::json body;
  std::string allow;  // 405: the methods the route accepts (RestApi::method_names)
};

class RestApi {
 public:
  // HTTP methods a route accepts (bits).
  enum Method : unsigned { kGet = 1u << 0, kPost = 1u << 1 };

  using Handler = RestAnswer (RestApi::*)(const std::vector<std::string>& groups, const std::string& body) const;
  struct Route {
    const char* uri;   // the regex Orthanc matches; its groups reach the handler
    unsigned methods;  // Method bits
    Handler handler;
    const char* path;  // the URI as the README writes it ({id} for a group)
    const char* what;  // one line for documentation
  };
  // The routes, defined below the class (their count is a compile-time constant for plugin.cpp).
  static const Route kRoutes[];

  // "GET", "POST" or "GET,POST" (Orthanc's Allow header and our 405 message).
  static std::string method_names(unsigned methods);
  // The Method bit of an HTTP method name; 0 for any other method (PUT, DELETE...).
  static unsigned method_bit(const std::string& name);

  // A working node.
  RestApi(std::shared_ptr<NodeServices> services, std::shared_ptr<AnalysisScheduler> scheduler, std::string version,
          std::string build_note);
  // A node that could not start (invalid configuration): every route answers 503 with `reason`.
  RestApi(std::string reason, std::string version);

  // route: index into kRoutes; method: "GET", "POST"...; groups: the regex groups; body: the
  // request body. Never throws.
  RestAnswer handle(size_t route, const std::string& method, const std::vector<std::string>& groups,
                    const std::string& body) const;

 private:
  RestAnswer status(const std::vector<std::string>& groups, const std::string& body) const;
  RestAnswer study(const std::vector<std::string>& groups, const std::string& body) const;
  RestAnswer analyze(const std::vector<std::string>& groups, const std::string& body) const;
  RestAnswer forward(const std::vector<std::string>& groups, const std::string& body) const;
  RestAnswer ask(const std::vector<std::string>& groups, const std::string& body) const;
  RestAnswer queue_request(const std::string& id, const std::string& body, const std::string& mode) const;
  // The documented path of the handler's route with `id` for {id}, e.g. "/unibiomed/studies/<id>".
  static std::string path_of(Handler handler, const std::string& id);

  std::shared_ptr<NodeServices> services_;
  std::shared_ptr<AnalysisScheduler> scheduler_;
  std::string unavailable_;  // non-empty: the node could not start, and why
  std::string version_, build_note_;
};

inline constexpr RestApi::Route RestApi::kRoutes[] = {
    {"/unibiomed/status", kGet, &RestApi::status, "/unibiomed/status",
     "model, device, queue, counters, the configuration in effect"},
    {"/unibiomed/studies/([^/]+)", kGet, &RestApi::study, "/unibiomed/studies/{id}",
     "a study's state, run, findings, series outcomes, result series, forwarding"},
    {"/unibiomed/studies/([^/]+)/analyze", kPost, &RestApi::analyze, "/unibiomed/studies/{id}/analyze",
     "queue a new run; optional body {Tasks, Questions, Rules}, checked before anything changes"},
    {"/unibiomed/studies/([^/]+)/forward", kPost, &RestApi::forward, "/unibiomed/studies/{id}/forward",
     "send the stored results again (UniBiomed.ForwardTo)"},
    {"/unibiomed/ask", kPost, &RestApi::ask, "/unibiomed/ask",
     "{Instance, Frame, Question, Box, Store}: answered at once"},
};

}  // namespace unibiomed::orthanc
