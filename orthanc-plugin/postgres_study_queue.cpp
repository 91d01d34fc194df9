// SPDX-License-Identifier: GPL-3.0-or-later
// The cluster's StudyQueue (see study_queue.h): one row per study, run and mode in a PostgreSQL
// table shared by every node. Claims are one UPDATE over a row picked with FOR UPDATE SKIP LOCKED,
// so two nodes never obtain the same row and never wait for each other; a held row carries its
// node and a lease that the node renews; a row whose lease expired is claimed again by any node.
// Two partial unique indexes are the hard guards: at most one waiting and one running row per
// study. Ended rows stay a week, so that a late enqueue of a run that already ran is a no-op.
#include <libpq-fe.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>

#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/study_queue.h"

namespace unibiomed::orthanc {

namespace {

constexpr const char* kUniqueViolation = "23505";

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

std::string cell(const Result& r, int row, int column) {
  return PQgetisnull(r.get(), row, column) ? std::string() : std::string(PQgetvalue(r.get(), row, column));
}

// A failed statement: SQLSTATE kept so that callers can tell a lost race (unique violation)
// from a real problem.
class SqlError : public PluginError {
 public:
  SqlError(const std::string& message, std::string sqlstate) : PluginError(message), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const { return sqlstate_; }

 private:
  std::string sqlstate_;
};

class PostgresStudyQueue final : public StudyQueue {
 public:
  explicit PostgresStudyQueue(SharedQueueSettings settings) : settings_(std::move(settings)) {
    if (!std::regex_match(settings_.table, std::regex("[a-z_][a-z0-9_]{0,40}")))
      throw PluginError("the shared queue's table name \"" + settings_.table + "\" is not a plain SQL identifier");
    if (settings_.node.empty()) throw PluginError("the shared queue needs a node name");
    if (settings_.lease_seconds < 1) throw PluginError("the shared queue's lease must be at least one second");
    lease_ = std::to_string(settings_.lease_seconds);
  }

  ~PostgresStudyQueue() override {
    if (conn_) PQfinish(conn_);
  }

  std::vector<QueueEntry> recover() override {
    std::lock_guard<std::mutex> lock(mutex_);
    held_.clear();
    // Rows this node held in a previous life go back to waiting (unless the study has a waiting
    // row already: then the interrupted one is superseded).
    auto r = transaction({
        {"DELETE FROM " + t() + " h WHERE h.state = 'running' AND h.owner = $1 AND EXISTS (SELECT 1 FROM " + t() +
             " w WHERE w.study = h.study AND w.state = 'waiting')",
         {settings_.node}},
        {"UPDATE " + t() +
             " SET state = 'waiting', owner = NULL, lease_until = NULL, updated = now() WHERE state = 'running' AND "
             "owner = $1 RETURNING study, run, mode, request",
         {settings_.node}},
    });
    return entries(r);
  }

  void put(const QueueEntry& entry) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::vector<std::string> params = {entry.study_id, std::to_string(entry.run), entry.mode,
                                             entry.request.dump()};
    retry_lost_race([&] {
      transaction({
          {"DELETE FROM " + t() + " WHERE study = $1 AND state = 'waiting' AND NOT (run = $2 AND mode = $3)",
           {params[0], params[1], params[2]}},
          {"INSERT INTO " + t() + " AS q (study, run, mode, request, state) VALUES ($1, $2, $3, $4, 'waiting') "
               "ON CONFLICT (study, run, mode) DO UPDATE SET request = EXCLUDED.request, state = 'waiting', "
               "owner = NULL, lease_until = NULL, enqueued = now(), updated = now() WHERE q.state <> 'running'",
           params},
      });
    });
  }

  bool offer(const QueueEntry& entry) override {
    std::lock_guard<std::mutex> lock(mutex_);
    // Without a conflict target, DO NOTHING covers every unique index: the (study, run, mode)
    // key and the one-waiting-row-per-study index.
    auto r = exec("INSERT INTO " + t() +
                      " (study, run, mode, request, state) VALUES ($1, $2, $3, $4, 'waiting') ON CONFLICT DO NOTHING "
                      "RETURNING id",
                  {entry.study_id, std::to_string(entry.run), entry.mode, entry.request.dump()});
    return PQntuples(r.get()) == 1;
  }

  std::optional<QueueEntry> claim() override {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      auto r = exec("WITH next AS (SELECT w.id, w.state AS before, w.owner AS before_owner FROM " + t() +
                        " w WHERE (w.state = 'waiting' AND NOT EXISTS (SELECT 1 FROM " + t() +
                        " r WHERE r.study = w.study AND r.state = 'running')) OR (w.state = 'running' AND "
                        "w.lease_until < now()) ORDER BY w.id LIMIT 1 FOR UPDATE OF w SKIP LOCKED) "
                        "UPDATE " + t() + " q SET state = 'running', owner = $1, lease_until = now() + "
                        "make_interval(secs => $2::int), attempts = q.attempts + 1, updated = now() FROM next "
                        "WHERE q.id = next.id RETURNING q.study, q.run, q.mode, q.request, next.before, "
                        "next.before_owner",
                    {settings_.node, lease_});
      if (PQntuples(r.get()) == 0) return std::nullopt;
      QueueEntry e = entry_at(r, 0);
      e.takeover = cell(r, 0, 4) == "running";
      e.previous_owner = cell(r, 0, 5);
      held_[e.study_id] = e.run;
      return e;
    } catch (const SqlError& e) {
      // Another node claimed a row of the same study at the same moment: the one-running-row
      // index refused the second. Nothing to claim now; the dispatcher asks again.
      if (e.sqlstate() == kUniqueViolation) return std::nullopt;
      throw;
    }
  }

  bool hold(const QueueEntry& entry) override {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      auto r = exec("INSERT INTO " + t() +
                        " AS q (study, run, mode, request, state, owner, lease_until, attempts) VALUES ($1, $2, $3, "
                        "$4, 'running', $5, now() + make_interval(secs => $6::int), 1) ON CONFLICT (study, run, mode) "
                        "DO UPDATE SET state = 'running', owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, "
                        "request = EXCLUDED.request, attempts = q.attempts + 1, updated = now() "
                        "WHERE q.state <> 'running' RETURNING id",
                    {entry.study_id, std::to_string(entry.run), entry.mode, entry.request.dump(), settings_.node,
                     lease_});
      if (PQntuples(r.get()) != 1) return false;
      held_[entry.study_id] = entry.run;
      return true;
    } catch (const SqlError& e) {
      if (e.sqlstate() == kUniqueViolation) return false;  // another run of the study is held
      throw;
    }
  }

  void finish(const std::string& study_id, int run, QueueOutcome outcome) override {
    std::lock_guard<std::mutex> lock(mutex_);
    forget(study_id, run);
    exec("UPDATE " + t() + " SET state = $3, lease_until = NULL, updated = now() WHERE study = $1 AND run = $2 AND "
         "state = 'running' AND owner = $4",
         {study_id, std::to_string(run), outcome == QueueOutcome::Done ? "done" : "failed", settings_.node});
  }

  void release(const std::string& study_id, int run) override {
    std::lock_guard<std::mutex> lock(mutex_);
    forget(study_id, run);
    const std::vector<std::string> params = {study_id, std::to_string(run), settings_.node};
    transaction({
        {"DELETE FROM " + t() + " h WHERE h.study = $1 AND h.run = $2 AND h.state = 'running' AND h.owner = $3 AND "
             "EXISTS (SELECT 1 FROM " + t() + " w WHERE w.study = $1 AND w.state = 'waiting')",
         params},
        {"UPDATE " + t() + " SET state = 'waiting', owner = NULL, lease_until = NULL, updated = now() WHERE study = $1 "
             "AND run = $2 AND state = 'running' AND owner = $3",
         params},
    });
  }

  void drop(const std::string& study_id, int run) override {
    std::lock_guard<std::mutex> lock(mutex_);
    forget(study_id, run);
    exec("DELETE FROM " + t() + " WHERE study = $1 AND run = $2 AND (state <> 'running' OR owner = $3 OR "
         "lease_until < now())",
         {study_id, std::to_string(run), settings_.node});
  }

  bool contains(const std::string& study_id) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto r = exec("SELECT 1 FROM " + t() + " WHERE study = $1 AND state IN ('waiting', 'running') LIMIT 1",
                  {study_id});
    return PQntuples(r.get()) > 0;
  }

  QueueCounts counts() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto r = exec("SELECT count(*) FILTER (WHERE state = 'waiting'), count(*) FILTER (WHERE state = 'running' AND "
                  "owner = $1) FROM " + t(),
                  {settings_.node});
    QueueCounts c;
    c.pending = std::stoul(cell(r, 0, 0));
    c.running = std::stoul(cell(r, 0, 1));
    return c;
  }

  bool shared() const override { return true; }

  bool holds(const std::string& study_id, int run) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto r = exec("SELECT 1 FROM " + t() + " WHERE study = $1 AND run = $2 AND state = 'running' AND owner = $3 AND "
                  "lease_until >= now()",
                  {study_id, std::to_string(run), settings_.node});
    return PQntuples(r.get()) > 0;
  }

  std::vector<QueueEntry> renew() override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto r = exec("UPDATE " + t() + " SET lease_until = now() + make_interval(secs => $2::int), updated = now() "
                  "WHERE owner = $1 AND state = 'running' RETURNING study, run, mode, request",
                  {settings_.node, lease_});
    std::set<std::pair<std::string, int>> renewed;
    for (const auto& e : entries(r)) renewed.insert({e.study_id, e.run});
    std::vector<QueueEntry> lost;
    for (auto it = held_.begin(); it != held_.end();) {
      if (renewed.count({it->first, it->second}) == 0) {
        QueueEntry e;
        e.study_id = it->first;
        e.run = it->second;
        lost.push_back(e);
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
    // Ended rows are only needed while late duplicates of their enqueue can arrive.
    if (++renewals_ % 1000 == 1)
      exec("DELETE FROM " + t() + " WHERE state IN ('done', 'failed') AND updated < now() - interval '7 days'", {});
    return lost;
  }

  int renew_interval_seconds() const override { return std::max(1, settings_.lease_seconds / 3); }

  nlohmann::json describe() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto r = exec("SELECT state, coalesce(owner, ''), count(*), count(*) FILTER (WHERE lease_until < now()) FROM " +
                      t() + " WHERE state IN ('waiting', 'running', 'failed') GROUP BY state, owner ORDER BY 1, 2",
                  {});
    size_t pending = 0, failed = 0, expired = 0;
    nlohmann::json running = nlohmann::json::object(), failed_by_node = nlohmann::json::object();
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      const std::string state = cell(r, i, 0), owner = cell(r, i, 1);
      const size_t n = std::stoul(cell(r, i, 2));
      if (state == "waiting") pending += n;
      if (state == "running") {
        running[owner] = n;
        expired += std::stoul(cell(r, i, 3));
      }
      if (state == "failed") {
        failed += n;
        failed_by_node[owner] = n;
      }
    }
    return {{"Kind", "postgresql"},
            {"Node", settings_.node},
            {"LeaseSeconds", settings_.lease_seconds},
            {"Database", where()},
            {"Pending", pending},
            {"Running", held_.size()},
            {"RunningPerNode", running},
            {"ExpiredLeases", expired},
            {"Failed", failed},
            {"FailedPerNode", failed_by_node}};
  }

 private:
  struct Statement {
    std::string sql;
    std::vector<std::string> params;
  };

  std::string t() const { return settings_.table; }

  // host:port/database of the connection, for messages (never the password).
  std::string where() const {
    if (!conn_) return "(not connected)";
    const char* host = PQhost(conn_);
    return std::string(host ? host : "?") + ":" + (PQport(conn_) ? PQport(conn_) : "?") + "/" +
           (PQdb(conn_) ? PQdb(conn_) : "?");
  }

  void connect() const {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK) return;
    if (conn_) {
      PQreset(conn_);
    } else {
      const std::string application = "UniBiomed " + settings_.node.substr(0, 40);
      const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
      const char* values[] = {"10", application.c_str(), settings_.connection.c_str(), nullptr};
      conn_ = PQconnectdbParams(keys, values, 1);
    }
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
      const std::string why = conn_ ? PQerrorMessage(conn_) : "out of memory";
      if (conn_) PQfinish(conn_);
      conn_ = nullptr;
      schema_ready_ = false;
      throw PluginError("the shared study queue cannot connect to PostgreSQL (UniBiomed.QueueConnection or the "
                        "PostgreSQL section): " + trim(why), 503);
    }
    // "relation already exists, skipping" and similar notices would go to Orthanc's stderr.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    if (!schema_ready_) {
      create_schema();
      schema_ready_ = true;
    }
  }

  static std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

  void create_schema() const {
    const std::string table = t();
    // Nodes starting together would race on CREATE ... IF NOT EXISTS (duplicate catalogue
    // rows); the advisory lock serialises them.
    run_transaction({
        {"SELECT pg_advisory_xact_lock(hashtext($1))", {table}},
        {"CREATE TABLE IF NOT EXISTS " + table +
             " (id BIGSERIAL PRIMARY KEY, study TEXT NOT NULL, run INTEGER NOT NULL, mode TEXT NOT NULL, "
             "request TEXT NOT NULL DEFAULT 'null', state TEXT NOT NULL CHECK (state IN ('waiting', 'running', "
             "'done', 'failed')), owner TEXT, lease_until TIMESTAMPTZ, attempts INTEGER NOT NULL DEFAULT 0, "
             "enqueued TIMESTAMPTZ NOT NULL DEFAULT now(), updated TIMESTAMPTZ NOT NULL DEFAULT now(), "
             "UNIQUE (study, run, mode))",
         {}},
        {"CREATE UNIQUE INDEX IF NOT EXISTS " + table + "_one_waiting ON " + table + " (study) WHERE state = 'waiting'",
         {}},
        {"CREATE UNIQUE INDEX IF NOT EXISTS " + table + "_one_running ON " + table + " (study) WHERE state = 'running'",
         {}},
        {"CREATE INDEX IF NOT EXISTS " + table + "_by_state ON " + table + " (state, id)", {}},
    });
  }

  Result raw_exec(const std::string& sql, const std::vector<std::string>& params) const {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    Result r(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                          nullptr, 0));
    const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return r;
    const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    const std::string message = r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn_);
    throw SqlError("the shared study queue (PostgreSQL " + where() + ", table " + t() + "): " + trim(message),
                   state ? state : "");
  }

  // Runs `f` on a connection; once more on a new one when the connection was lost meanwhile (a
  // database restart, a failover), not when the statement itself failed.
  template <class F>
  Result reconnecting(F&& f) const {
    connect();
    try {
      return f();
    } catch (const SqlError&) {
      if (PQstatus(conn_) == CONNECTION_OK) throw;
    }
    connect();
    return f();
  }

  // One statement in its own transaction.
  Result exec(const std::string& sql, const std::vector<std::string>& params) const {
    return reconnecting([&] { return raw_exec(sql, params); });
  }

  // Several statements in one transaction; returns the last one's result.
  Result run_transaction(const std::vector<Statement>& statements) const {
    raw_exec("BEGIN", {});
    try {
      Result last;
      for (const auto& s : statements) last = raw_exec(s.sql, s.params);
      raw_exec("COMMIT", {});
      return last;
    } catch (...) {
      if (PQstatus(conn_) == CONNECTION_OK) PQclear(PQexec(conn_, "ROLLBACK"));
      throw;
    }
  }

  Result transaction(const std::vector<Statement>& statements) const {
    return reconnecting([&] { return run_transaction(statements); });
  }

  // Two nodes replacing the waiting row of one study at once: the loser's insert hits the
  // one-waiting-row index; its second try sees the winner's row and replaces it.
  template <class F>
  void retry_lost_race(F&& f) const {
    try {
      f();
    } catch (const SqlError& e) {
      if (e.sqlstate() != kUniqueViolation) throw;
      f();
    }
  }

  static QueueEntry entry_at(const Result& r, int row) {
    QueueEntry e;
    e.study_id = cell(r, row, 0);
    e.run = std::stoi(cell(r, row, 1));
    e.mode = cell(r, row, 2);
    try {
      e.request = nlohmann::json::parse(cell(r, row, 3));
    } catch (const nlohmann::json::exception&) {
      e.request = nullptr;  // written by this code only; unreadable means the rules
    }
    return e;
  }

  static std::vector<QueueEntry> entries(const Result& r) {
    std::vector<QueueEntry> out;
    for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(entry_at(r, i));
    return out;
  }

  void forget(const std::string& study_id, int run) {
    auto it = held_.find(study_id);
    if (it != held_.end() && it->second == run) held_.erase(it);
  }

  const SharedQueueSettings settings_;
  std::string lease_;
  mutable std::mutex mutex_;
  mutable PGconn* conn_ = nullptr;
  mutable bool schema_ready_ = false;
  std::map<std::string, int> held_;  // study -> run this node holds
  size_t renewals_ = 0;
};

}  // namespace

std::unique_ptr<StudyQueue> make_postgres_study_queue(const SharedQueueSettings& settings) {
  return std::make_unique<PostgresStudyQueue>(settings);
}

}  // namespace unibiomed::orthanc
