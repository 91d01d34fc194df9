// A real PostgreSQL server for tests: Debian's postgresql-15 binaries, a cluster made with initdb
// in a temporary folder (trust authentication, fsync off), listening on a free 127.0.0.1 port,
// stopped by its PID. Run as the "postgres" user when the tests run as root (initdb refuses root).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <string>

#include "tests/orthanc-plugin/orthanc_harness.h"

namespace unibiomed::test {

class PostgresServer {
 public:
  // Empty when the server binaries are there; else what is missing.
  static std::string missing();

  explicit PostgresServer(const std::filesystem::path& folder);  // initdb + start; throws with the log
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  // CREATE DATABASE; returns a libpq connection string for it (user postgres, no password).
  std::string create_database(const std::string& name) const;
  std::string connection(const std::string& database) const;
  // One SQL command through psql; returns its unaligned, tuples-only output. Throws on failure.
  std::string sql(const std::string& database, const std::string& command) const;
  void stop();

 private:
  std::filesystem::path folder_;
  int port_ = 0;
  ChildProcess process_;
};

}  // namespace unibiomed::test
