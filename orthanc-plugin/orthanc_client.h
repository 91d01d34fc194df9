// Calls into the Orthanc core from the plugin's own threads (never from a change callback: the
// SDK warns that this can deadlock): its REST API, global properties and the log.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <orthanc/OrthancCPlugin.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace unibiomed::orthanc {

struct RestResponse {
  int status = 0;    // HTTP status as the core answered it
  std::string body;  // the answer (or Orthanc's error description)
  bool ok() const { return status >= 200 && status < 300; }
};

class OrthancClient {
 public:
  explicit OrthancClient(OrthancPluginContext* context) : context_(context) {}

  OrthancPluginContext* context() const { return context_; }

  // One call into Orthanc's built-in REST API (full access, no credentials involved).
  RestResponse call(OrthancPluginHttpMethod method, const std::string& uri, const std::string& body = {}) const;
  // The same with request headers, and the answer's headers (a JSON object) when asked for.
  RestResponse call(OrthancPluginHttpMethod method, const std::string& uri, const std::string& body,
                    const std::map<std::string, std::string>& headers, nlohmann::json* answer_headers) const;

  // Throwing conveniences: a PluginError names the method, the URI, the status and Orthanc's
  // message; a 404 becomes a PluginError with http_status 404.
  nlohmann::json get_json(const std::string& uri) const;
  std::optional<nlohmann::json> find_json(const std::string& uri) const;  // nullopt on 404
  std::optional<std::string> find_text(const std::string& uri) const;     // nullopt on 404
  std::string get_bytes(const std::string& uri) const;
  nlohmann::json post_json(const std::string& uri, const nlohmann::json& body) const;
  nlohmann::json post_bytes(const std::string& uri, const std::string& body) const;
  bool remove(const std::string& uri) const;  // DELETE; false when it was already gone (404)

  // Writes one metadata item (nullopt: deletes it) in a way that also works where Orthanc's
  // "CheckRevisions" is on (clusters): the revision just read goes along as If-Match, and a
  // concurrent change (409) is read again and retried. Last writer wins: in a cluster only the
  // node holding the study's queue entry writes its records.
  void write_metadata(const std::string& uri, const std::optional<std::string>& text) const;

  // Global properties of this server (the plugin's own ids are >= 1024).
  std::optional<std::string> global_property(int32_t id) const;
  void set_global_property(int32_t id, const std::string& value) const;

  void log_info(const std::string& message) const;
  void log_warning(const std::string& message) const;
  void log_error(const std::string& message) const;

 private:
  RestResponse checked(OrthancPluginHttpMethod method, const std::string& uri, const std::string& body,
                       bool allow_404) const;
  [[noreturn]] void throw_for(OrthancPluginHttpMethod method, const std::string& uri, const RestResponse& r) const;
  OrthancPluginContext* context_;
};

}  // namespace unibiomed::orthanc
