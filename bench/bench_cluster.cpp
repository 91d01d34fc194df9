// Throughput of a cluster of UniBiomed nodes: studies per minute with 1, 2, ... Orthanc nodes on
// one PostgreSQL index and one storage folder (the shared study queue), each node with one model
// thread and the demo checkpoint, on this machine. A PostgreSQL server and the Orthanc processes
// are started by the bench (the test harness of tests/orthanc-plugin), on loopback ports.
//
// Per node count: fresh database and storage, nodes started and their models loaded (not timed),
// N CT studies sent round-robin to the nodes with automatic analysis off (the ingest time is
// printed), then every study queued at once with POST /unibiomed/studies/{uid}/analyze (to the
// nodes in turn) and the time until the last study is recorded done is measured: the analysis
// throughput, which is what more nodes add (ingest is Orthanc's and scales with its own
// settings). Prints studies per minute, the studies each node analysed, the mean job runtime,
// and the speed-up of each node count over one node measured in the same run.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench/bench_common.h"
#include "tests/orthanc-plugin/orthanc_harness.h"
#include "tests/orthanc-plugin/postgres_server.h"
#include "tests/orthanc-plugin/test_studies.h"
#include "tests/support/test_support.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace unibiomed;

struct Run {
  int nodes = 0;
  double seconds = 0;
  double ingest_seconds = 0;
  double job_seconds = 0;                  // mean EffectiveRuntime of the analysis jobs
  std::map<std::string, size_t> per_node;  // successful analysis jobs
  size_t runs = 0;                         // analysis runs over all studies (> studies: re-runs)
};

const fs::path kIndexPlugin = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so";

Run measure(int nodes, int studies, int slices, int lease, const test::PostgresServer& pg, const fs::path& folder) {
  const std::string database = "cluster" + std::to_string(nodes);
  pg.create_database(database);
  fs::create_directories(folder / "storage");
  std::vector<std::unique_ptr<test::OrthancServer>> servers;
  for (int i = 0; i < nodes; ++i) {
    test::OrthancOptions o;
    o.unibiomed = {{"ModelDirectory", (test::source_dir() / "samples" / "demo-checkpoint").string()},
                   {"Threads", 1},
                   {"ConcurrentAnalyses", 1},
                   {"MaxNewTokens", 160},
                   {"ReconcileInterval", 1},
                   {"AutoAnalysis", false},
                   {"Queue", "postgresql"},
                   {"LeaseSeconds", lease}};
    o.extra = {{"StorageDirectory", (folder / "storage").string()},
               {"Plugins", {test::plugin_path().string(), test::dicomweb_path().string(), kIndexPlugin.string()}},
               {"PostgreSQL",
                {{"EnableIndex", true}, {"EnableStorage", false}, {"Host", "127.0.0.1"}, {"Port", pg.port()},
                 {"Database", database}, {"Username", "postgres"}, {"Lock", false}}},
               {"DatabaseServerIdentifier", "node-" + std::to_string(i)},
               {"CheckRevisions", true},
               {"ConcurrentJobs", 2},
               {"JobsHistorySize", 10000}};  // every job of the run stays listed (default 10)
    servers.push_back(std::make_unique<test::OrthancServer>(folder / ("node-" + std::to_string(i)), o));
    servers.back()->start();
  }
  for (auto& s : servers) {
    const bool ready = test::wait_until(
        [&] { return s->get_json("/unibiomed/status")["Model"]["State"] == "ready"; }, std::chrono::minutes(5));
    if (!ready) throw std::runtime_error("a node's model did not load:\n" + s->log());
  }
  std::vector<test::StudySpec> specs(studies);
  std::vector<std::vector<fs::path>> files(studies);
  for (int i = 0; i < studies; ++i) {
    specs[i].patient_id = "BENCH-" + std::to_string(i);
    specs[i].slices = slices;
    files[i] = test::write_ct_series(folder / ("study" + std::to_string(i)), specs[i]);
  }

  const double ingest0 = bench::steady_seconds();
  for (int i = 0; i < studies; ++i) {
    const auto [code, output] = servers[i % nodes]->store(files[i]);
    if (code != 0) throw std::runtime_error("storescu failed:\n" + output);
  }
  const double ingest_seconds = bench::steady_seconds() - ingest0;
  const double t0 = bench::steady_seconds();
  for (int i = 0; i < studies; ++i) {
    const auto r = servers[i % nodes]->post("/unibiomed/studies/" + specs[i].study_uid + "/analyze", "{}");
    if (r.status != 200) throw std::runtime_error("POST analyze answered " + std::to_string(r.status) + ": " + r.body);
  }
  size_t done = 0, run_count = 0;
  const bool finished = test::wait_until(
      [&] {
        done = 0;
        run_count = 0;
        for (const auto& spec : specs) {
          const auto r = servers[0]->get("/unibiomed/studies/" + spec.study_uid);
          if (r.status != 200) continue;
          const json j = r.json();
          if ((j["State"] == "done" || j["State"] == "failed") && !j["Queued"].get<bool>()) {
            ++done;
            run_count += j["Run"].get<size_t>();
          }
        }
        return done == specs.size();
      },
      std::chrono::minutes(30), std::chrono::milliseconds(250));
  Run run;
  run.nodes = nodes;
  run.seconds = bench::steady_seconds() - t0;
  run.runs = run_count;
  run.ingest_seconds = ingest_seconds;
  if (!finished) throw std::runtime_error(std::to_string(done) + " of " + std::to_string(studies) + " studies finished");
  // A job reports its end a moment after the study's record is written.
  for (size_t i = 0; i < servers.size(); ++i)
    for (const auto& j : servers[i]->settled_jobs("UniBiomedAnalysis", std::chrono::seconds(30)))
      if (j["State"] == "Success") {
        run.per_node["node-" + std::to_string(i)]++;
        run.job_seconds += j.value("EffectiveRuntime", 0.0);
      }
  size_t jobs = 0;
  for (const auto& [node, n] : run.per_node) jobs += n;
  if (jobs > 0) run.job_seconds /= static_cast<double>(jobs);
  for (auto& s : servers) s->stop();
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  int studies = 12, slices = 16, lease = 30;
  std::string node_list = "1,2";
  bench::CommandLine cli("bench_cluster",
                         "Studies per minute of 1, 2, ... UniBiomed nodes on one PostgreSQL index (the shared queue),\n"
                         "each node one model thread with the demo checkpoint; speed-up over one node.");
  cli.option("--studies", "N", "studies sent per node count", studies)
      .option("--slices", "N", "CT slices per study", slices)
      .option("--nodes", "LIST", "node counts to measure, e.g. 1,2", node_list)
      .option("--lease", "SECONDS", "UniBiomed.LeaseSeconds of the nodes", lease);
  cli.parse(argc, argv);
  std::vector<int64_t> counts;
  try {
    counts = bench::parse_integer_list(node_list);
  } catch (const std::exception& e) {
    cli.fail(std::string("--nodes: ") + e.what());
  }
  if (studies < 1 || slices < 1 || lease < 3) cli.fail("--studies and --slices must be positive, --lease at least 3");
  for (auto n : counts)
    if (n < 1 || n > 8) cli.fail("--nodes: each count must be 1 to 8");

  std::string missing = test::PostgresServer::missing();
  if (!fs::exists(kIndexPlugin)) missing += (missing.empty() ? "" : ", ") + kIndexPlugin.string();
  if (!fs::exists(test::plugin_path())) missing += (missing.empty() ? "" : ", ") + test::plugin_path().string();
  if (!missing.empty()) {
    std::cerr << "bench_cluster: missing " << missing << "\n";
    return 1;
  }
  try {
    test::TempDir dir("unibiomed-bench-cluster");
    test::PostgresServer pg(dir / "pg");
    std::printf("bench_cluster: %d studies of %d CT slices per node count, demo checkpoint, 1 model thread per node, "
                "%u cores, load average %s\n",
                studies, slices, std::thread::hardware_concurrency(), bench::load_average().c_str());
    std::vector<Run> runs;
    for (auto n : counts) {
      runs.push_back(measure(static_cast<int>(n), studies, slices, lease, pg, dir / ("nodes" + std::to_string(n))));
      const Run& r = runs.back();
      std::printf("  %d node%s: analysis %.1f s, %.2f studies/min (ingest before it %.1f s); job runtime %.2f s; "
                  "per node:",
                  r.nodes, r.nodes == 1 ? " " : "s", r.seconds, 60.0 * studies / r.seconds, r.ingest_seconds,
                  r.job_seconds);
      for (const auto& [node, n_jobs] : r.per_node) std::printf(" %s %zu", node.c_str(), n_jobs);
      std::printf("; %zu runs for %d studies\n", r.runs, studies);
      std::fflush(stdout);
    }
    for (const auto& r : runs)
      if (r.nodes != 1)
        for (const auto& one : runs)
          if (one.nodes == 1)
            std::printf("  speed-up of %d nodes over 1: %.2f\n", r.nodes, one.seconds / r.seconds);
    std::printf("  load average after: %s\n", bench::load_average().c_str());
  } catch (const std::exception& e) {
    std::cerr << "bench_cluster: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
