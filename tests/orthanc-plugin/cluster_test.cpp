// Scale-out end to end: a PostgreSQL server started by the test, two Orthanc 1.10.1 processes
// with Debian's PostgreSQL index plugin on one database and one storage folder, each with the
// UniBiomed plugin configured for the shared queue ("Queue": "postgresql") and Orthanc's
// CheckRevisions on. Studies are sent to different nodes (one is split across both, so that
// StableStudy fires on each); every study must be analysed exactly once, a node killed while it
// holds a study must lose it to the other after the lease, and a node started later takes over
// the waiting work.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "tests/orthanc-plugin/plugin_fixture.h"
#include "tests/orthanc-plugin/postgres_server.h"

namespace unibiomed::test {
namespace {

// Short, so that takeovers happen within the test, yet several renewals (every second) long, so
// that a node slowed down by the other suites sharing the cores does not lose its claim.
constexpr int kLeaseSeconds = 5;

fs::path postgresql_index_plugin() { return "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"; }

class OrthancCluster : public OrthancPlugin {
 protected:
  void SetUp() override {
    OrthancPlugin::SetUp();
    const std::string missing = PostgresServer::missing();
    ASSERT_TRUE(missing.empty()) << "missing: " << missing << " (scripts/install-deps.sh installs postgresql)";
    ASSERT_TRUE(fs::exists(postgresql_index_plugin()))
        << "missing: " << postgresql_index_plugin() << " (apt install orthanc-postgresql)";
    pg_ = std::make_unique<PostgresServer>(dir_ / "pg");
    pg_->create_database("orthanc");
    fs::create_directories(dir_ / "storage");
  }

  void TearDown() override {
    OrthancPlugin::TearDown();
    for (auto& server : servers_)
      if (server->running()) server->stop();
  }

  // One node of the cluster; not started.
  OrthancServer& node(const std::string& name, json overrides = json::object(), json orthanc = json::object()) {
    json settings = base_settings();
    settings["Queue"] = "postgresql";
    settings["LeaseSeconds"] = kLeaseSeconds;
    for (const auto& [k, v] : overrides.items()) settings[k] = v;
    OrthancOptions o;
    o.unibiomed = settings;
    o.extra = {{"StorageDirectory", (dir_ / "storage").string()},
               {"Plugins", {plugin_path().string(), dicomweb_path().string(), postgresql_index_plugin().string()}},
               {"PostgreSQL",
                {{"EnableIndex", true},
                 {"EnableStorage", false},
                 {"Host", "127.0.0.1"},
                 {"Port", pg_->port()},
                 {"Database", "orthanc"},
                 {"Username", "postgres"},
                 {"Password", "not-shown"},  // trust authentication: accepted, unused
                 {"Lock", false}}},
               {"DatabaseServerIdentifier", name},
               {"CheckRevisions", true}};
    for (const auto& [k, v] : orthanc.items()) o.extra[k] = v;
    return make_server(o, name);
  }

  // UniBiomedAnalysis jobs of every node: {node name -> successful jobs}.
  std::map<std::string, size_t> successful_jobs() {
    std::map<std::string, size_t> per_node;
    for (auto& server : servers_) {
      if (!server->running()) continue;
      for (const auto& j : our_settled_jobs(*server))
        if (j["State"] == "Success") per_node[server->folder().filename().string()]++;
    }
    return per_node;
  }

  // Starts `holder` alone, sends it a slow study and returns once its model works on it (so
  // `holder` holds the study in the queue), then starts `other`.
  void hold_slow_study(OrthancServer& holder, OrthancServer& other, StudySpec& spec) {
    holder.start();
    ASSERT_NO_FATAL_FAILURE(send_slow_study_until_model_stage(holder, spec));
    other.start();
  }

  static void expect_analysed_once(const OrthancServer& server, const StudySpec& spec, int attempt = 1) {
    const json s = wait_for_end(server, spec.study_uid);
    ASSERT_EQ(s["State"], "done") << spec.patient_id << ": " << s.dump(2);
    EXPECT_EQ(s["Run"], 1) << spec.patient_id;
    EXPECT_EQ(s["Attempt"], attempt) << spec.patient_id;
    EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u) << spec.patient_id;
    EXPECT_EQ(count_series(server, spec.study_uid, "SR"), 1u) << spec.patient_id;
    size_t result_instances = 0;
    for (const auto& r : s["ResultSeries"]) result_instances += r["Instances"].get<size_t>();
    EXPECT_EQ(result_instances, s["Results"].size()) << spec.patient_id << ": an instance stored twice";
  }

  std::unique_ptr<PostgresServer> pg_;
};

TEST_F(OrthancCluster, EveryStudySentToAnyNodeIsAnalysedExactlyOnce) {
  auto& a = node("node-a");
  auto& b = node("node-b");
  a.start();
  b.start();
  std::vector<StudySpec> specs(5);
  std::vector<std::vector<fs::path>> files(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    specs[i].patient_id = "CLUSTER-" + std::to_string(i);
    specs[i].slices = i == 4 ? 4 : 2;
    files[i] = write_ct_series(dir_ / ("study" + std::to_string(i)), specs[i]);
  }
  send(a, files[0]);
  send(a, files[1]);
  send(b, files[2]);
  send(b, files[3]);
  // The last study arrives half at each node: StableStudy fires on both, and both nodes' /changes
  // scans see it; the idempotent enqueue must still make one analysis.
  send(a, {files[4][0], files[4][1]});
  send(b, {files[4][2], files[4][3]});

  for (const auto& spec : specs) {
    expect_analysed_once(a, spec);
    // Both nodes see the same records (one index); the results are in the shared storage.
    EXPECT_EQ(study(b, spec.study_uid)["State"], "done") << spec.patient_id;
    EXPECT_EQ(count_series(b, spec.study_uid, "SEG"), 1u) << spec.patient_id;
  }
  // Scans keep running on both nodes: nothing is analysed a second time.
  std::this_thread::sleep_for(4s);
  size_t jobs = 0;
  for (const auto& [name, n] : successful_jobs()) jobs += n;
  EXPECT_EQ(jobs, specs.size()) << "one successful analysis job per study over the whole cluster";
  for (const auto& spec : specs) EXPECT_EQ(study(a, spec.study_uid)["Run"], 1) << spec.patient_id;

  // An explicit request on the other node: a new run, analysed once, its request recorded by
  // whichever node claims it.
  const HttpResult r = b.post("/unibiomed/studies/" + specs[0].study_uid + "/analyze",
                              R"({"Questions": [{"Text": "Is there a lesion?"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["Run"], 2);
  json s;
  ASSERT_TRUE(wait_until(
      [&] {
        s = study(a, specs[0].study_uid);
        return s["Run"] == 2 && s["State"] == "done" && !s["Queued"].get<bool>();
      },
      kAnalysisTimeout))
      << s.dump(2);
  EXPECT_EQ(s["Request"]["Questions"][0]["Text"], "Is there a lesion?");
  EXPECT_EQ(count_series(a, specs[0].study_uid, "SR"), 2u);
  jobs = 0;
  for (const auto& [name, n] : successful_jobs()) jobs += n;
  EXPECT_EQ(jobs, specs.size() + 1);

  const json status = a.get_json("/unibiomed/status");
  EXPECT_EQ(status["Queue"]["Kind"], "postgresql") << status.dump(2);
  EXPECT_EQ(status["Queue"]["Node"], "node-a");
  EXPECT_EQ(status["Queue"]["Pending"], 0);
  EXPECT_EQ(status["Queue"]["RunningPerNode"].size(), 0u) << status.dump(2);
  EXPECT_EQ(status["Queue"]["Failed"], 0);
  EXPECT_EQ(status["Configuration"]["Queue"], "postgresql");
  EXPECT_EQ(status["Configuration"]["QueueConnection"].get<std::string>().find("not-shown"), std::string::npos)
      << status["Configuration"].dump(2);
}

TEST_F(OrthancCluster, AStudyStillArrivingAtOneNodeIsNotTakenByAnother) {
  // node-b received none of the study, so its Orthanc calls the study stable at once; its /changes
  // scan must still wait until the study's LastUpdate is StableAge old, or it would queue the
  // first half and the second half would make a second run.
  const json stable_age = {{"StableAge", 3}};
  auto& a = node("node-a", json::object(), stable_age);
  auto& b = node("node-b", json::object(), stable_age);
  a.start();
  b.start();
  StudySpec spec;
  spec.slices = 6;
  const auto files = write_ct_series(dir_ / "ct", spec);
  send(a, {files.begin(), files.begin() + 3});
  std::this_thread::sleep_for(2s);  // several of node-b's scans (ReconcileInterval 1) see it meanwhile
  send(a, {files.begin() + 3, files.end()});
  expect_analysed_once(a, spec);
  EXPECT_EQ(study(a, spec.study_uid)["Summary"]["SourceInstances"], 6);
}

TEST_F(OrthancCluster, ANodeKilledWhileItHoldsAStudyLosesItToAnotherNodeAfterTheLease) {
  auto& a = node("node-a");
  auto& b = node("node-b");
  // Kill node-a (SIGKILL: no clean shutdown) while its model works on the study, node-b running.
  StudySpec spec;
  ASSERT_NO_FATAL_FAILURE(hold_slow_study(a, b, spec));
  const json before = b.get_json("/unibiomed/status")["Queue"];
  EXPECT_EQ(before["RunningPerNode"]["node-a"], 1) << before.dump(2);
  a.kill();

  const auto killed = std::chrono::steady_clock::now();
  expect_analysed_once(b, spec, /*attempt=*/2);
  EXPECT_GE(std::chrono::steady_clock::now() - killed, std::chrono::seconds(kLeaseSeconds) - 500ms)
      << "taken over before the lease expired";
  EXPECT_NE(b.log().find("node \"node-a\" stopped renewing its claim"), std::string::npos) << b.log();
  const auto jobs = successful_jobs();
  EXPECT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs.count("node-b"), 1u);

  // node-a comes back: nothing of this study is left for it to resume.
  a.start();
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(our_jobs(a).size(), 0u);
  expect_analysed_once(a, spec, 2);
}

TEST_F(OrthancCluster, ANodePausedPastItsLeaseStopsWithoutWritingWhenItResumes) {
  auto& a = node("node-a");
  auto& b = node("node-b");
  StudySpec spec;
  ASSERT_NO_FATAL_FAILURE(hold_slow_study(a, b, spec));
  // node-a hangs (SIGSTOP) in the middle of the model; node-b takes the study over after the
  // lease and finishes it.
  a.pause();
  expect_analysed_once(b, spec, /*attempt=*/2);
  const json done = study(b, spec.study_uid);
  // node-a wakes up: its next renewal or its check before storing finds the claim gone, and its
  // attempt ends without writing anything over node-b's results.
  a.resume();
  for (const auto& j : our_settled_jobs(a, 60s))
    ASSERT_TRUE(j["State"] != "Running" && j["State"] != "Pending") << "node-a's attempt never ended: " << j.dump(2);
  std::this_thread::sleep_for(2s);
  const json after = study(b, spec.study_uid);
  EXPECT_EQ(after["Attempt"], 2) << after.dump(2);
  EXPECT_EQ(after["Job"], done["Job"]) << "node-a overwrote node-b's record";
  EXPECT_EQ(after["Updated"], done["Updated"]);
  EXPECT_EQ(after["Results"], done["Results"]);
  expect_analysed_once(b, spec, 2);
  const std::string log = a.log();
  EXPECT_TRUE(log.find("claim expired") != std::string::npos || log.find("lost its claim") != std::string::npos)
      << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
  const json status = b.get_json("/unibiomed/status")["Queue"];
  EXPECT_EQ(status["RunningPerNode"].size(), 0u) << status.dump(2);
  EXPECT_EQ(status["Failed"], 0) << status.dump(2);
}

TEST_F(OrthancCluster, ANodeStartedLaterTakesTheWaitingStudies) {
  // node-a has no model: it receives and queues the studies but cannot analyse them.
  auto& a = node("node-a", {{"ModelDirectory", (dir_ / "no-model").string()}});
  a.start();
  std::vector<StudySpec> specs(2);
  for (size_t i = 0; i < specs.size(); ++i) {
    specs[i].patient_id = "LATER-" + std::to_string(i);
    specs[i].slices = 2;
    send(a, write_ct_series(dir_ / ("study" + std::to_string(i)), specs[i]));
  }
  ASSERT_TRUE(wait_until([&] { return a.get_json("/unibiomed/status")["Queue"]["Pending"] == 2; }, 60s))
      << a.get_json("/unibiomed/status").dump(2);
  for (const auto& spec : specs) {
    const json s = study(a, spec.study_uid);
    EXPECT_EQ(s["State"], "pending") << s.dump(2);
    EXPECT_TRUE(s["Queued"].get<bool>());
  }

  auto& b = node("node-b");
  b.start();
  for (const auto& spec : specs) expect_analysed_once(b, spec);
  for (const auto& spec : specs) EXPECT_EQ(study(a, spec.study_uid)["State"], "done");
  EXPECT_EQ(our_jobs(a).size(), 0u);
}

}  // namespace
}  // namespace unibiomed::test
