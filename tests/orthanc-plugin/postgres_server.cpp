// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/orthanc-plugin/postgres_server.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <stdexcept>

#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;

namespace {

const fs::path kBin = "/usr/lib/postgresql/15/bin";

// argv run as the postgres user when we are root (initdb and postgres refuse to run as root).
std::vector<std::string> as_server_user(std::vector<std::string> argv) {
  if (::geteuid() != 0) return argv;
  std::vector<std::string> wrapped = {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

void give_to_server_user(const fs::path& path) {
  if (::geteuid() != 0) return;
  const passwd* pw = ::getpwnam("postgres");
  if (!pw) throw std::runtime_error("running as root but there is no \"postgres\" user to run PostgreSQL as");
  if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0)
    throw std::runtime_error("cannot hand " + path.string() + " to the postgres user");
}

}  // namespace

std::string PostgresServer::missing() {
  std::string missing;
  for (const char* program : {"initdb", "postgres"})
    if (!fs::exists(kBin / program)) missing += (missing.empty() ? "" : ", ") + (kBin / program).string();
  if (!have_program("psql")) missing += std::string(missing.empty() ? "" : ", ") + "psql";
  if (::geteuid() == 0 && !have_program("setpriv")) missing += std::string(missing.empty() ? "" : ", ") + "setpriv";
  return missing;
}

PostgresServer::PostgresServer(const fs::path& folder) : folder_(folder) {
  fs::create_directories(folder_);
  // The server user must reach the folder through its parents (temporary folders are 0700).
  for (fs::path p = folder_; p.has_relative_path() && p != p.root_path(); p = p.parent_path()) {
    if (p == fs::temp_directory_path()) break;
    fs::permissions(p, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec,
                    fs::perm_options::add);
  }
  give_to_server_user(folder_);
  const fs::path data = folder_ / "data";
  const CommandResult init = run_command(as_server_user(
      {(kBin / "initdb").string(), "-D", data.string(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"}));
  if (init.exit_code != 0) throw std::runtime_error("initdb failed:\n" + init.output);
  port_ = free_port();
  const fs::path log = folder_ / "postgres.log";
  write_file(log, "");
  give_to_server_user(log);
  process_ = ChildProcess(as_server_user({(kBin / "postgres").string(), "-D", data.string(), "-k", folder_.string(),
                                          "-c", "listen_addresses=127.0.0.1", "-p", std::to_string(port_), "-c",
                                          "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=60"}),
                          log);
  const bool up = wait_until(
      [&] {
        if (!process_.running()) return true;
        return run_command({"psql", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", "postgres", "-d", "postgres",
                            "-tAc", "SELECT 1"})
                   .exit_code == 0;
      },
      std::chrono::seconds(30), std::chrono::milliseconds(100));
  if (!up || !process_.running())
    throw std::runtime_error("PostgreSQL did not start; log:\n" + read_file(log));
}

PostgresServer::~PostgresServer() { stop(); }

void PostgresServer::stop() {
  if (process_.running()) process_.stop(SIGINT, std::chrono::seconds(30));  // SIGINT: fast shutdown
}

std::string PostgresServer::connection(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + database;
}

std::string PostgresServer::sql(const std::string& database, const std::string& command) const {
  const CommandResult r = run_command({"psql", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", "postgres", "-d",
                                       database, "-v", "ON_ERROR_STOP=1", "-tAc", command});
  if (r.exit_code != 0) throw std::runtime_error("psql \"" + command + "\" failed:\n" + r.output);
  std::string out = r.output;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string PostgresServer::create_database(const std::string& name) const {
  sql("postgres", "CREATE DATABASE " + name);
  return connection(name);
}

}  // namespace unibiomed::test
