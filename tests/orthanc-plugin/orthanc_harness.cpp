// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/orthanc-plugin/orthanc_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("bind() to a free port failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() > deadline) return done();
    std::this_thread::sleep_for(interval);
  }
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const fs::path& log,
                           const std::map<std::string, std::string>& env) {
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) stop(SIGTERM, std::chrono::seconds(30));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept : pid_(other.pid_), status_(other.status_) {
  other.pid_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) stop();
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

bool ChildProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return false;
  }
  return true;
}

int ChildProcess::stop(int signal, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return status_;
  ::kill(pid_, signal);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      status_ = 128 + SIGKILL;
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status_;
}

nlohmann::json HttpResult::json() const {
  try {
    return nlohmann::json::parse(body);
  } catch (const std::exception& e) {
    throw std::runtime_error("HTTP " + std::to_string(status) + " answer is not JSON: " + body.substr(0, 500));
  }
}

fs::path plugin_path() { return binary_dir() / "orthanc-plugin" / "libUniBiomedOrthanc.so"; }
fs::path dicomweb_path() { return "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"; }

OrthancServer::OrthancServer(const fs::path& folder, OrthancOptions options)
    : folder_(folder), options_(std::move(options)) {
  http_port_ = free_port();
  dicom_port_ = free_port();
  while (dicom_port_ == http_port_) dicom_port_ = free_port();
  fs::create_directories(folder_ / "storage");
  nlohmann::json plugins = {plugin_path().string()};
  if (options_.dicomweb) plugins.push_back(dicomweb_path().string());
  config_ = {{"Name", "UniBiomedTest"},
             {"StorageDirectory", (folder_ / "storage").string()},
             {"IndexDirectory", (folder_ / "storage").string()},
             {"HttpPort", http_port_},
             {"DicomPort", dicom_port_},
             {"DicomAet", "ORTHANC"},
             {"RemoteAccessAllowed", false},
             {"AuthenticationEnabled", false},
             {"StableAge", 1},
             {"SaveJobs", false},
             {"ConcurrentJobs", 2},
             {"HttpDescribeErrors", true},
             {"UserMetadata",
              {{"UniBiomedState", 4401},
               {"UniBiomedRun", 4402},
               {"UniBiomedSummary", 4403},
               {"UniBiomedError", 4404},
               {"UniBiomedResult", 4405}}},
             {"Plugins", plugins},
             {"DicomWeb",
              {{"Enable", true}, {"Root", "/dicom-web/"}, {"Host", "127.0.0.1:" + std::to_string(http_port_)}}}};
  if (!options_.unibiomed.is_null()) config_["UniBiomed"] = options_.unibiomed;
  for (const auto& [k, v] : options_.extra.items()) config_[k] = v;
  write_file(folder_ / "orthanc.json", config_.dump(2));
}

OrthancServer::~OrthancServer() {
  if (process_.running()) stop();
}

void OrthancServer::start() {
  ++starts_;
  std::vector<std::string> argv = {"/usr/sbin/Orthanc", (folder_ / "orthanc.json").string()};
  if (options_.verbose) argv.push_back("--verbose");
  process_ = ChildProcess(argv, folder_ / "orthanc.log");
  const bool up = wait_until(
      [&] {
        if (!process_.running()) return true;
        // Any HTTP answer means it is up (401 where authentication is enabled).
        return get("/system").status != 0;
      },
      std::chrono::seconds(60));
  if (!up || !process_.running())
    throw std::runtime_error("Orthanc did not start (start #" + std::to_string(starts_) + "); log:\n" + log());
}

int OrthancServer::stop() { return process_.stop(SIGTERM, std::chrono::seconds(60)); }

void OrthancServer::kill() { process_.stop(SIGKILL); }

void OrthancServer::pause() { ::kill(process_.pid(), SIGSTOP); }

void OrthancServer::resume() { ::kill(process_.pid(), SIGCONT); }

std::string OrthancServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(http_port_) + path;
}

std::string OrthancServer::log() const {
  try {
    return read_file(folder_ / "orthanc.log");
  } catch (const std::exception&) {
    return "(no log)";
  }
}

HttpResult OrthancServer::request(const std::string& method, const std::string& path, const std::string* body,
                                  const std::string& user) const {
  std::vector<std::string> argv = {"curl", "-s", "-S", "--max-time", "120", "-X", method, "-o", "-", "-w",
                                   "\n%{http_code}"};
  if (!user.empty()) argv.insert(argv.end(), {"-u", user});
  if (body) argv.insert(argv.end(), {"--data-binary", "@-", "-H", "Content-Type: application/json"});
  argv.push_back(url(path));
  const CommandResult r = run_command(argv, body ? std::optional<std::string>(*body) : std::nullopt);
  HttpResult h;
  const auto newline = r.output.find_last_of('\n');
  if (newline == std::string::npos) return h;
  h.body = r.output.substr(0, newline);
  h.status = std::atoi(r.output.c_str() + newline + 1);
  return h;
}

HttpResult OrthancServer::get(const std::string& path, const std::string& user) const {
  return request("GET", path, nullptr, user);
}

HttpResult OrthancServer::post(const std::string& path, const std::string& body, const std::string& user) const {
  return request("POST", path, &body, user);
}

HttpResult OrthancServer::del(const std::string& path) const { return request("DELETE", path, nullptr, {}); }

nlohmann::json OrthancServer::get_json(const std::string& path) const {
  const HttpResult r = get(path);
  if (r.status != 200) throw std::runtime_error("GET " + path + " answered HTTP " + std::to_string(r.status) + ": " + r.body);
  return r.json();
}

std::vector<nlohmann::json> OrthancServer::jobs(const std::string& type) const {
  std::vector<nlohmann::json> out;
  for (const auto& j : get_json("/jobs?expand"))
    if (j["Type"] == type) out.push_back(j);
  return out;
}

std::vector<nlohmann::json> OrthancServer::settled_jobs(const std::string& type,
                                                        std::chrono::milliseconds timeout) const {
  std::vector<nlohmann::json> out;
  wait_until(
      [&] {
        out = jobs(type);
        for (const auto& j : out)
          if (j["State"] == "Running" || j["State"] == "Pending") return false;
        return true;
      },
      timeout);
  return out;
}

std::pair<int, std::string> OrthancServer::store(const std::vector<fs::path>& files,
                                                 const std::string& calling_aet) const {
  std::vector<std::string> argv = {"storescu", "-R", "-aet", calling_aet, "-aec", "ORTHANC", "127.0.0.1",
                                   std::to_string(dicom_port_)};
  for (const auto& f : files) argv.push_back(f.string());
  const CommandResult r = run_command(argv);
  return {r.exit_code, r.output};
}

}  // namespace unibiomed::test
