// The cluster's study queue (make_postgres_study_queue) against a real PostgreSQL server started
// by the test: several queue objects with different node names play the nodes of a cluster.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/study_queue.h"
#include "tests/orthanc-plugin/postgres_server.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {
namespace {

using orthanc::QueueEntry;
using orthanc::QueueOutcome;
using orthanc::SharedQueueSettings;
using orthanc::StudyQueue;
using namespace std::chrono_literals;

QueueEntry entry(const std::string& study, int run, const std::string& mode = "analyze") {
  QueueEntry e;
  e.study_id = study;
  e.run = run;
  e.mode = mode;
  return e;
}

class SharedQueue : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string missing = PostgresServer::missing();
    if (!missing.empty()) GTEST_FAIL() << "missing: " << missing << " (scripts/install-deps.sh installs postgresql)";
    dir_ = new TempDir("unibiomed-queue-test");
    server_ = new PostgresServer(dir_->path() / "pg");
    server_->create_database("queue");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
    server_ = nullptr;
    dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    // One table per test: the tests share the server, not their rows.
    table_ = "q_" + std::to_string(++tables_);
  }

  std::unique_ptr<StudyQueue> node(const std::string& name, int lease_seconds = 60) const {
    SharedQueueSettings s;
    s.connection = server_->connection("queue");
    s.node = name;
    s.lease_seconds = lease_seconds;
    s.table = table_;
    return orthanc::make_postgres_study_queue(s);
  }

  std::string sql(const std::string& command) const { return server_->sql("queue", command); }

  static TempDir* dir_;
  static PostgresServer* server_;
  static int tables_;
  std::string table_;
};

TempDir* SharedQueue::dir_ = nullptr;
PostgresServer* SharedQueue::server_ = nullptr;
int SharedQueue::tables_ = 0;

TEST_F(SharedQueue, OfferIsIdempotentPerStudyAndRunAcrossNodes) {
  auto a = node("a"), b = node("b");
  EXPECT_TRUE(a->offer(entry("S1", 1)));
  EXPECT_FALSE(b->offer(entry("S1", 1))) << "the second node's offer of the same study and run must be a no-op";
  EXPECT_FALSE(a->offer(entry("S1", 1)));
  EXPECT_TRUE(a->contains("S1"));
  EXPECT_TRUE(b->contains("S1"));
  EXPECT_FALSE(b->contains("S2"));

  // A late offer of a run that already ran (a slow /changes scan) does not queue it again.
  auto claimed = b->claim();
  ASSERT_TRUE(claimed);
  EXPECT_EQ(claimed->study_id, "S1");
  EXPECT_FALSE(a->offer(entry("S1", 1))) << "offered while held";
  b->finish("S1", 1, QueueOutcome::Done);
  EXPECT_FALSE(b->contains("S1"));
  EXPECT_FALSE(a->offer(entry("S1", 1))) << "offered after it ended";
  EXPECT_FALSE(a->claim());
  // New images make a new run, which is queued.
  EXPECT_TRUE(a->offer(entry("S1", 2)));
  EXPECT_EQ(sql("SELECT count(*) FROM " + table_ + " WHERE study = 'S1'"), "2");
}

TEST_F(SharedQueue, ConcurrentOffersFromManyNodesMakeOneEntry) {
  std::vector<std::unique_ptr<StudyQueue>> nodes;
  for (int i = 0; i < 6; ++i) nodes.push_back(node("n" + std::to_string(i)));
  std::atomic<int> added{0};
  std::vector<std::thread> threads;
  for (auto& n : nodes)
    threads.emplace_back([&, q = n.get()] {
      for (int s = 0; s < 30; ++s) added += q->offer(entry("S" + std::to_string(s), 1)) ? 1 : 0;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(added.load(), 30);
  EXPECT_EQ(sql("SELECT count(*) FROM " + table_), "30");
}

TEST_F(SharedQueue, EveryEntryIsClaimedByExactlyOneNode) {
  constexpr int kStudies = 200;
  auto seed = node("seed");
  for (int s = 0; s < kStudies; ++s) ASSERT_TRUE(seed->offer(entry("S" + std::to_string(s), 1)));

  std::mutex mutex;
  std::map<std::string, std::vector<std::string>> claimed_by;  // study -> nodes
  std::vector<std::unique_ptr<StudyQueue>> nodes;
  for (int i = 0; i < 4; ++i) nodes.push_back(node("node" + std::to_string(i)));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < nodes.size(); ++i)
    threads.emplace_back([&, i] {
      for (;;) {
        auto e = nodes[i]->claim();
        if (!e) break;
        {
          std::lock_guard<std::mutex> lock(mutex);
          claimed_by[e->study_id].push_back("node" + std::to_string(i));
        }
        nodes[i]->finish(e->study_id, e->run, QueueOutcome::Done);
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_EQ(claimed_by.size(), static_cast<size_t>(kStudies));
  std::map<std::string, int> per_node;
  for (const auto& [study, who] : claimed_by) {
    EXPECT_EQ(who.size(), 1u) << study << " was claimed " << who.size() << " times";
    per_node[who.front()]++;
  }
  EXPECT_GT(per_node.size(), 1u) << "the claims did not run side by side";
  EXPECT_EQ(sql("SELECT count(*) FROM " + table_ + " WHERE state = 'done'"), std::to_string(kStudies));
}

TEST_F(SharedQueue, AStudyIsHeldByOneNodeAtATimeAndItsNextRunWaits) {
  auto a = node("a"), b = node("b");
  a->put(entry("S", 1));
  auto first = a->claim();
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->takeover);
  b->put(entry("S", 2));  // a new request while run 1 runs
  EXPECT_FALSE(b->claim()) << "run 2 must wait while run 1 is held";
  EXPECT_FALSE(b->hold(entry("S", 3))) << "a resubmitted job cannot hold a study another node holds";
  EXPECT_EQ(a->counts().running, 1u);
  EXPECT_EQ(b->counts().running, 0u);
  EXPECT_EQ(b->counts().pending, 1u);
  a->finish("S", 1, QueueOutcome::Done);
  auto second = b->claim();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->run, 2);
}

TEST_F(SharedQueue, PutReplacesTheWaitingRequestAndRequeuesAnEndedRun) {
  auto a = node("a");
  QueueEntry with_tasks = entry("S", 1);
  with_tasks.request = {{"Tasks", {"organs"}}};
  a->put(entry("S", 1));
  a->put(with_tasks);
  a->put(entry("S", 2));
  EXPECT_EQ(sql("SELECT count(*) FROM " + table_ + " WHERE state = 'waiting'"), "1");
  auto e = a->claim();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->run, 2);
  a->finish("S", 2, QueueOutcome::Done);
  // Forwarding the finished run again is an explicit request: queued even though run 2 ended.
  a->put(entry("S", 2, "forward"));
  a->put(entry("S", 2, "forward"));
  auto f = a->claim();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->mode, "forward");
  a->finish("S", 2, QueueOutcome::Done);
  a->put(entry("S", 2, "forward"));
  EXPECT_TRUE(a->contains("S"));
}

TEST_F(SharedQueue, ANodeThatStopsRenewingLosesTheStudyToAnotherAfterTheLease) {
  auto a = node("a", 2), b = node("b", 2);
  a->offer(entry("S", 1));
  ASSERT_TRUE(a->claim());
  // While a renews, nobody else gets the study.
  const auto renew_until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < renew_until) {
    EXPECT_TRUE(a->renew().empty());
    EXPECT_FALSE(b->claim());
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(a->holds("S", 1));
  // a stops renewing (it died, or paused): after the lease b takes it over.
  std::optional<QueueEntry> taken;
  ASSERT_TRUE(wait_until([&] { return (taken = b->claim()).has_value(); }, 10s, 200ms));
  EXPECT_EQ(taken->study_id, "S");
  EXPECT_TRUE(taken->takeover);
  EXPECT_EQ(taken->previous_owner, "a");
  EXPECT_TRUE(b->holds("S", 1));
  // a finds out at its next renewal, and its late finish changes nothing.
  EXPECT_FALSE(a->holds("S", 1));
  const auto lost = a->renew();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].study_id, "S");
  a->finish("S", 1, QueueOutcome::Failed);
  EXPECT_TRUE(b->holds("S", 1));
  EXPECT_EQ(sql("SELECT state || ' ' || owner || ' ' || attempts FROM " + table_), "running b 2");
  b->finish("S", 1, QueueOutcome::Done);
  EXPECT_EQ(sql("SELECT state FROM " + table_), "done");
}

TEST_F(SharedQueue, ARestartedNodeRecoversItsInterruptedStudies) {
  auto a = node("a"), b = node("b");
  a->offer(entry("S1", 1));
  a->offer(entry("S2", 1));
  ASSERT_TRUE(a->claim());
  ASSERT_TRUE(b->claim());
  a.reset();  // "a" crashes; its lease (60 s) has not expired yet
  auto a_again = node("a");
  const auto recovered = a_again->recover();
  ASSERT_EQ(recovered.size(), 1u) << "only this node's own interrupted entry";
  EXPECT_EQ(recovered[0].study_id, "S1");
  EXPECT_TRUE(b->holds("S2", 1)) << "another node's entry is left alone";
  auto again = a_again->claim();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->study_id, "S1");
  EXPECT_FALSE(again->takeover);
}

TEST_F(SharedQueue, ReleaseAndDropAndTheClusterView) {
  auto a = node("a"), b = node("b");
  for (const char* s : {"S1", "S2", "S3", "S4"}) a->offer(entry(s, 1));
  auto e1 = a->claim(), e2 = b->claim(), e3 = b->claim();
  ASSERT_TRUE(e1 && e2 && e3);
  b->finish(e3->study_id, 1, QueueOutcome::Failed);
  const auto view = a->describe();
  EXPECT_EQ(view["Kind"], "postgresql");
  EXPECT_EQ(view["Node"], "a");
  EXPECT_EQ(view["Pending"], 1);
  EXPECT_EQ(view["Running"], 1);
  EXPECT_EQ(view["RunningPerNode"]["a"], 1);
  EXPECT_EQ(view["RunningPerNode"]["b"], 1);
  EXPECT_EQ(view["Failed"], 1);
  EXPECT_EQ(view["FailedPerNode"]["b"], 1);
  // Shutdown: the entry goes back to waiting, first in line.
  a->release(e1->study_id, 1);
  auto next = b->claim();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->study_id, e1->study_id);
  b->drop(next->study_id, 1);
  EXPECT_FALSE(a->contains(e1->study_id));
}

TEST_F(SharedQueue, AnUnreachableDatabaseIsAClearError) {
  SharedQueueSettings s;
  s.connection = "host=127.0.0.1 port=" + std::to_string(free_port()) + " user=postgres dbname=queue";
  s.node = "a";
  auto q = orthanc::make_postgres_study_queue(s);
  try {
    q->contains("S");
    FAIL() << "no error";
  } catch (const orthanc::PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect to PostgreSQL"), std::string::npos) << e.what();
    EXPECT_EQ(e.http_status(), 503);
  }
  s.table = "bad name; drop table x";
  EXPECT_THROW(orthanc::make_postgres_study_queue(s), orthanc::PluginError);
}

TEST_F(SharedQueue, TheQueueSurvivesARestartOfTheDatabaseConnection) {
  auto a = node("a");
  a->offer(entry("S", 1));
  // Every other session is cut, as a database restart or failover would.
  sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'queue' AND pid <> pg_backend_pid()");
  EXPECT_TRUE(a->contains("S")) << "the queue reconnects once after a lost connection";
  auto e = a->claim();
  ASSERT_TRUE(e);
}

}  // namespace
}  // namespace unibiomed::test
