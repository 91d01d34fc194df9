// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/orthanc_client.h"

#include <strings.h>

#include <vector>

#include "orthanc-plugin/plugin_error.h"

namespace unibiomed::orthanc {

namespace {

// Owns one buffer filled by the core; freed with the SDK's own function.
class MemoryBuffer {
 public:
  explicit MemoryBuffer(OrthancPluginContext* context) : context_(context) {}
  ~MemoryBuffer() {
    if (buffer_.data) OrthancPluginFreeMemoryBuffer(context_, &buffer_);
  }
  MemoryBuffer(const MemoryBuffer&) = delete;
  MemoryBuffer& operator=(const MemoryBuffer&) = delete;
  OrthancPluginMemoryBuffer* get() { return &buffer_; }
  std::string str() const {
    return buffer_.data ? std::string(static_cast<const char*>(buffer_.data), buffer_.size) : std::string();
  }

 private:
  OrthancPluginContext* context_;
  OrthancPluginMemoryBuffer buffer_{nullptr, 0};
};

// Owns one string allocated by the core.
class CoreString {
 public:
  CoreString(OrthancPluginContext* context, char* s) : context_(context), s_(s) {}
  ~CoreString() {
    if (s_) OrthancPluginFreeString(context_, s_);
  }
  CoreString(const CoreString&) = delete;
  CoreString& operator=(const CoreString&) = delete;
  const char* get() const { return s_; }

 private:
  OrthancPluginContext* context_;
  char* s_;
};

const char* method_name(OrthancPluginHttpMethod m) {
  switch (m) {
    case OrthancPluginHttpMethod_Get: return "GET";
    case OrthancPluginHttpMethod_Post: return "POST";
    case OrthancPluginHttpMethod_Put: return "PUT";
    case OrthancPluginHttpMethod_Delete: return "DELETE";
    default: return "?";
  }
}

nlohmann::json parse_json(const std::string& text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw PluginError(what + " answered something that is not JSON: " + e.what());
  }
}

}  // namespace

RestResponse OrthancClient::call(OrthancPluginHttpMethod method, const std::string& uri,
                                 const std::string& body) const {
  return call(method, uri, body, {}, nullptr);
}

RestResponse OrthancClient::call(OrthancPluginHttpMethod method, const std::string& uri, const std::string& body,
                                 const std::map<std::string, std::string>& headers,
                                 nlohmann::json* answer_headers) const {
  MemoryBuffer answer(context_), answer_header_buffer(context_);
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : headers) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  uint16_t status = 0;
  const OrthancPluginErrorCode code = OrthancPluginCallRestApi(
      context_, answer.get(), answer_headers ? answer_header_buffer.get() : nullptr, &status, method, uri.c_str(),
      static_cast<uint32_t>(keys.size()), keys.empty() ? nullptr : keys.data(),
      values.empty() ? nullptr : values.data(), body.empty() ? nullptr : body.data(),
      static_cast<uint32_t>(body.size()), 0);
  RestResponse response;
  response.status = status;
  response.body = answer.str();
  if (answer_headers) {
    try {
      *answer_headers = nlohmann::json::parse(answer_header_buffer.str());
    } catch (const nlohmann::json::exception&) {
      *answer_headers = nlohmann::json::object();
    }
  }
  if (code != OrthancPluginErrorCode_Success && response.ok()) {
    // The core failed without an HTTP status (e.g. it is stopping).
    response.status = 500;
    response.body = OrthancPluginGetErrorDescription(context_, code);
  }
  if (response.status == 0) {
    response.status = code == OrthancPluginErrorCode_UnknownResource ? 404 : 500;
    if (response.body.empty()) response.body = OrthancPluginGetErrorDescription(context_, code);
  }
  return response;
}

RestResponse OrthancClient::checked(OrthancPluginHttpMethod method, const std::string& uri, const std::string& body,
                                    bool allow_404) const {
  RestResponse r = call(method, uri, body);
  if (r.ok() || (allow_404 && r.status == 404)) return r;
  throw_for(method, uri, r);
}

void OrthancClient::throw_for(OrthancPluginHttpMethod method, const std::string& uri, const RestResponse& r) const {
  std::string detail = r.body;
  // Orthanc's error answers are JSON with "Message" and sometimes "Details".
  try {
    auto j = nlohmann::json::parse(r.body);
    if (j.is_object()) {
      detail = j.value("Message", std::string());
      if (j.contains("Details") && j["Details"].is_string()) detail += ": " + j["Details"].get<std::string>();
    }
  } catch (const nlohmann::json::exception&) {
  }
  if (detail.size() > 500) detail = detail.substr(0, 500) + "...";
  throw PluginError(std::string("Orthanc ") + method_name(method) + " " + uri + " answered HTTP " +
                        std::to_string(r.status) + (detail.empty() ? "" : " (" + detail + ")"),
                    r.status == 404 ? 404 : 500);
}

nlohmann::json OrthancClient::get_json(const std::string& uri) const {
  return parse_json(checked(OrthancPluginHttpMethod_Get, uri, {}, false).body, "GET " + uri);
}

std::optional<nlohmann::json> OrthancClient::find_json(const std::string& uri) const {
  RestResponse r = checked(OrthancPluginHttpMethod_Get, uri, {}, true);
  if (r.status == 404) return std::nullopt;
  return parse_json(r.body, "GET " + uri);
}

std::optional<std::string> OrthancClient::find_text(const std::string& uri) const {
  RestResponse r = checked(OrthancPluginHttpMethod_Get, uri, {}, true);
  if (r.status == 404) return std::nullopt;
  return r.body;
}

bool OrthancClient::remove(const std::string& uri) const {
  return checked(OrthancPluginHttpMethod_Delete, uri, {}, true).status != 404;
}

std::string OrthancClient::get_bytes(const std::string& uri) const {
  return checked(OrthancPluginHttpMethod_Get, uri, {}, false).body;
}

nlohmann::json OrthancClient::post_json(const std::string& uri, const nlohmann::json& body) const {
  return parse_json(checked(OrthancPluginHttpMethod_Post, uri, body.dump(), false).body, "POST " + uri);
}

nlohmann::json OrthancClient::post_bytes(const std::string& uri, const std::string& body) const {
  return parse_json(checked(OrthancPluginHttpMethod_Post, uri, body, false).body, "POST " + uri);
}

void OrthancClient::write_metadata(const std::string& uri, const std::optional<std::string>& text) const {
  const OrthancPluginHttpMethod method = text ? OrthancPluginHttpMethod_Put : OrthancPluginHttpMethod_Delete;
  RestResponse r;
  for (int attempt = 0; attempt < 5; ++attempt) {
    nlohmann::json headers;
    const RestResponse current = call(OrthancPluginHttpMethod_Get, uri, {}, {}, &headers);
    if (current.status == 404 && !text) return;  // nothing to delete
    std::map<std::string, std::string> if_match;
    if (current.ok() && headers.is_object())
      for (const auto& [key, value] : headers.items())
        if (value.is_string() && strcasecmp(key.c_str(), "etag") == 0) if_match["If-Match"] = value;
    r = call(method, uri, text.value_or(std::string()), if_match, nullptr);
    if (r.ok() || (!text && r.status == 404)) return;
    if (r.status != 409) break;  // 409: changed since it was read; read the new revision and retry
  }
  throw_for(method, uri, r);
}

std::optional<std::string> OrthancClient::global_property(int32_t id) const {
  // The core answers the given default ("") when the property was never set; the plugin never
  // stores an empty value, so "" means absent.
  CoreString value(context_, OrthancPluginGetGlobalProperty(context_, id, ""));
  if (!value.get() || !*value.get()) return std::nullopt;
  return std::string(value.get());
}

void OrthancClient::set_global_property(int32_t id, const std::string& value) const {
  const OrthancPluginErrorCode code = OrthancPluginSetGlobalProperty(context_, id, value.c_str());
  if (code != OrthancPluginErrorCode_Success)
    throw PluginError("cannot write Orthanc global property " + std::to_string(id) + ": " +
                      OrthancPluginGetErrorDescription(context_, code));
}

void OrthancClient::log_info(const std::string& message) const {
  OrthancPluginLogInfo(context_, ("UniBiomed: " + message).c_str());
}
void OrthancClient::log_warning(const std::string& message) const {
  OrthancPluginLogWarning(context_, ("UniBiomed: " + message).c_str());
}
void OrthancClient::log_error(const std::string& message) const {
  OrthancPluginLogError(context_, ("UniBiomed: " + message).c_str());
}

}  // namespace unibiomed::orthanc
