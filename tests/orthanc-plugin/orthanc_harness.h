// A real Orthanc for tests: a temporary configuration (StorageDirectory and index in a temp
// folder, free loopback ports, RemoteAccessAllowed false, the UniBiomed plugin and Debian's
// DICOMweb plugin), started as a child process and stopped by its PID (SIGTERM, or SIGKILL to
// simulate a crash). Also: background programs (storescp as a PACS), HTTP calls with curl, and
// sending files with storescu -R (SEG is refused without -R).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace unibiomed::test {

// A port on 127.0.0.1 that was free a moment ago.
int free_port();

// Polls `done` every `interval` until it returns true or `timeout` passes; returns its last value.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(100));

// A program running in the background, its output going to a log file.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const std::vector<std::string>& argv, const std::filesystem::path& log,
               const std::map<std::string, std::string>& env = {});
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool running();
  // Sends `signal` to this PID and waits (up to `timeout`, then SIGKILL). Returns the exit status.
  int stop(int signal = 15, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

struct HttpResult {
  int status = 0;
  std::string body;
  nlohmann::json json() const;  // throws with the body in the message when it is not JSON
};

struct OrthancOptions {
  nlohmann::json unibiomed = nlohmann::json::object();  // the "UniBiomed" section (null: none)
  nlohmann::json extra = nlohmann::json::object();      // merged into the top level
  bool dicomweb = true;                                 // load Debian's DICOMweb plugin
  bool verbose = false;                                 // --verbose: info lines in the log too
};

class OrthancServer {
 public:
  // Writes the configuration into `folder` (storage in folder/storage); does not start.
  OrthancServer(const std::filesystem::path& folder, OrthancOptions options);
  ~OrthancServer();

  void start();  // spawns Orthanc and waits until /system answers (throws with the log if not)
  int stop();    // SIGTERM, then waits for a clean exit; returns the exit status
  void kill();   // SIGKILL: a crash, for restart tests
  void pause();  // SIGSTOP: a node that hangs (swapping, a long GC-like stall), for lease tests
  void resume(); // SIGCONT
  bool running() { return process_.running(); }

  int http_port() const { return http_port_; }
  int dicom_port() const { return dicom_port_; }
  std::string url(const std::string& path) const;
  const std::filesystem::path& folder() const { return folder_; }
  std::string log() const;  // the Orthanc log so far
  const nlohmann::json& configuration() const { return config_; }

  HttpResult get(const std::string& path, const std::string& user = {}) const;
  HttpResult post(const std::string& path, const std::string& body, const std::string& user = {}) const;
  HttpResult del(const std::string& path) const;
  nlohmann::json get_json(const std::string& path) const;  // throws unless HTTP 200

  // This server's jobs of one type (e.g. "UniBiomedAnalysis"), expanded; and the same once none
  // of them is Pending or Running, or `timeout` passed (a job reports its end a moment after its
  // work wrote the study's record).
  std::vector<nlohmann::json> jobs(const std::string& type) const;
  std::vector<nlohmann::json> settled_jobs(const std::string& type, std::chrono::milliseconds timeout) const;

  // storescu -R -aet <calling> -aec ORTHANC to this server; returns storescu's exit code and output.
  std::pair<int, std::string> store(const std::vector<std::filesystem::path>& files,
                                    const std::string& calling_aet = "SCU") const;

 private:
  HttpResult request(const std::string& method, const std::string& path, const std::string* body,
                     const std::string& user) const;
  std::filesystem::path folder_;
  OrthancOptions options_;
  nlohmann::json config_;
  int http_port_ = 0, dicom_port_ = 0;
  ChildProcess process_;
  int starts_ = 0;
};

std::filesystem::path plugin_path();    // the built libUniBiomedOrthanc.so
std::filesystem::path dicomweb_path();  // Debian's libOrthancDicomWeb.so

}  // namespace unibiomed::test
