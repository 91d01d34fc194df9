// The one error type inside orthanc-plugin/: a configuration problem, a failed call into the
// Orthanc core (which method, which URI, the HTTP status and Orthanc's message), a bad REST request.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <stdexcept>
#include <string>

namespace unibiomed::orthanc {

class PluginError : public std::runtime_error {
 public:
  // http_status: what a REST route of ours answers when this error reaches it (400 bad request,
  // 404 unknown resource, 503 not ready, 500 anything else).
  explicit PluginError(const std::string& message, int http_status = 500)
      : std::runtime_error(message), http_status_(http_status) {}
  int http_status() const { return http_status_; }

 private:
  int http_status_;
};

}  // namespace unibiomed::orthanc
