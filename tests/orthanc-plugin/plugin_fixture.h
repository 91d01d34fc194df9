// The fixture of the node's end-to-end tests (plugin_test.cpp, cluster_test.cpp): real Orthanc
// processes started by the test with the plugin and the shipped demo checkpoint, and the calls the
// tests make to them (study records, series counts over QIDO-RS, our jobs).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <memory>

#include "tests/orthanc-plugin/orthanc_harness.h"
#include "tests/orthanc-plugin/test_studies.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// Generous: the loops return as soon as the condition holds.
constexpr auto kAnalysisTimeout = std::chrono::seconds(600);

// The shipped demo checkpoint (the real architecture trained on the sample phantoms): the CT
// rule's questions get grounded answers and SEG objects through the whole pipeline, SAM2 included.
inline fs::path demo_checkpoint() { return source_dir() / "samples" / "demo-checkpoint"; }

// Slices of a study whose analysis lasts long enough to be interrupted (crash and cancel tests).
constexpr int kSlowStudySlices = 24;

// What these tests need besides the plugin; empty when everything is there.
inline std::string missing_tools() {
  std::string missing;
  for (const char* program : {"storescu", "storescp", "curl"})
    if (!have_program(program)) missing += std::string(missing.empty() ? "" : ", ") + program + " (not on PATH)";
  if (!fs::exists("/usr/sbin/Orthanc")) missing += std::string(missing.empty() ? "" : ", ") + "/usr/sbin/Orthanc";
  if (!fs::exists(dicomweb_path())) missing += std::string(missing.empty() ? "" : ", ") + dicomweb_path().string();
  return missing;
}

class OrthancPlugin : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string missing = missing_tools();
    ASSERT_TRUE(missing.empty()) << "missing: " << missing << " (scripts/install-deps.sh installs them)";
    ASSERT_TRUE(fs::exists(plugin_path())) << "the plugin is not built: " << plugin_path();
    ASSERT_TRUE(fs::exists(demo_checkpoint() / "config.json"))
        << "the demo checkpoint is missing: " << (demo_checkpoint() / "config.json");
    model_ = demo_checkpoint();
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& server : servers_)
        std::cerr << "---- Orthanc log (" << server->folder() << ") ----\n" << tail(server->log(), 6000) << "\n";
  }

  static std::string tail(const std::string& s, size_t n) { return s.size() > n ? s.substr(s.size() - n) : s; }

  json base_settings() const {
    // The demo checkpoint ends its answers (the longest, a report, is about 100 byte tokens); the
    // cap keeps a question it was not trained on from running to the default 2048 tokens.
    return {{"ModelDirectory", model_.string()}, {"ReconcileInterval", 1}, {"ForwardTimeout", 60},
            {"MaxNewTokens", 160}};
  }

  // A storescp that receives as `aet` on `port` into dir_/<folder>, naming each file
  // <modality>.<SOP Instance UID>; it stops with the returned process.
  ChildProcess start_storescp(const std::string& aet, const std::string& folder, int port) const {
    fs::create_directories(dir_ / folder);
    return ChildProcess({"storescp", "-aet", aet, "-od", (dir_ / folder).string(), std::to_string(port)},
                        dir_ / "storescp.log");
  }

  // What that storescp received: SOP Instance UID -> file.
  std::map<std::string, fs::path> received(const std::string& folder) const {
    std::map<std::string, fs::path> files;
    for (const auto& f : fs::directory_iterator(dir_ / folder)) {
      const std::string name = f.path().filename().string();
      files[name.substr(name.find('.') + 1)] = f.path();
    }
    return files;
  }

  OrthancServer& make_server(OrthancOptions options, const std::string& name = "orthanc") {
    servers_.push_back(std::make_unique<OrthancServer>(dir_ / name, std::move(options)));
    return *servers_.back();
  }

  OrthancServer& start_server(json settings, json extra = json::object()) {
    OrthancOptions o;
    o.unibiomed = std::move(settings);
    o.extra = std::move(extra);
    auto& server = make_server(std::move(o), "orthanc" + std::to_string(servers_.size()));
    server.start();
    return server;
  }

  static void send(const OrthancServer& server, const std::vector<fs::path>& files, const std::string& aet = "SCU") {
    const auto [code, output] = server.store(files, aet);
    ASSERT_EQ(code, 0) << "storescu failed:\n" << output;
  }

  // GET /unibiomed/studies/{uid}; null when the study is not (yet) known.
  static json study(const OrthancServer& server, const std::string& uid) {
    const HttpResult r = server.get("/unibiomed/studies/" + uid);
    if (r.status == 404) return nullptr;
    if (r.status != 200) throw std::runtime_error("GET /unibiomed/studies/" + uid + ": HTTP " + std::to_string(r.status) + " " + r.body);
    return r.json();
  }

  static json wait_for_end(const OrthancServer& server, const std::string& uid) {
    json last;
    wait_until(
        [&] {
          last = study(server, uid);
          if (last.is_null()) return false;
          const std::string state = last["State"];
          return (state == "done" || state == "skipped" || state == "failed") && !last["Queued"].get<bool>();
        },
        kAnalysisTimeout, 200ms);
    return last;
  }

  // POST /unibiomed/studies/{uid}/analyze with `body`, which must start run `number`; waits for
  // its end (forwarding included) and returns the study's record.
  static json analyze_again(const OrthancServer& server, const std::string& uid, const std::string& body, int number) {
    const HttpResult r = server.post("/unibiomed/studies/" + uid + "/analyze", body);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status == 200) {
      EXPECT_EQ(r.json().value("Run", 0), number);
    }
    return wait_for_run(server, uid, number);
  }

  // Waits until run `number` of the study is done and out of the queue (forwarding included)
  // and returns the study's record (a failed expectation when it never is).
  static json wait_for_run(const OrthancServer& server, const std::string& uid, int number) {
    json done;
    EXPECT_TRUE(wait_until(
        [&] {
          done = study(server, uid);
          return done.is_object() && done["Run"] == number && done["State"] == "done" && !done["Queued"].get<bool>();
        },
        kAnalysisTimeout, 200ms))
        << "run " << number << " never ended: " << done.dump(2);
    return done;
  }

  // Orthanc's id of the series with this SeriesInstanceUID; "" when there is none.
  static std::string find_series_id(const OrthancServer& server, const std::string& series_uid) {
    const HttpResult r = server.post("/tools/lookup", series_uid);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return "";
    for (const auto& hit : r.json())
      if (hit.value("Type", "") == "Series") return hit.value("ID", "");
    return "";
  }

  static size_t count_series(const OrthancServer& server, const std::string& uid, const std::string& modality) {
    const HttpResult r = server.get("/dicom-web/studies/" + uid + "/series?Modality=" + modality);
    if (r.status == 204 || r.body.empty()) return 0;
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json().size();
  }

  // Waits until the study is running and its job on `server` is in the model stage (so that a
  // kill or a cancel interrupts the model). `seen` gets the study's last record.
  static bool wait_for_model_stage(const OrthancServer& server, const std::string& uid, json& seen) {
    return wait_until(
        [&] {
          seen = study(server, uid);
          if (seen.is_null() || seen["State"] != "running") return false;
          for (const auto& j : our_jobs(server))
            if (j["Content"]["Stage"] == "model" && j["Content"]["Study"] == seen["ID"]) return true;
          return false;
        },
        kAnalysisTimeout, 20ms);
  }

  // Sends `server` a slow study (kSlowStudySlices) and returns once its model works on it, so
  // that a kill, a pause or a cancel interrupts the model.
  void send_slow_study_until_model_stage(const OrthancServer& server, StudySpec& spec) {
    spec.slices = kSlowStudySlices;
    send(server, write_ct_series(dir_ / "ct", spec));
    json seen;
    ASSERT_TRUE(wait_for_model_stage(server, spec.study_uid, seen))
        << "the analysis never reached the model stage: " << seen.dump(2);
  }

  static std::vector<json> our_jobs(const OrthancServer& server) { return server.jobs("UniBiomedAnalysis"); }

  // Our jobs once none is pending or running: the study record is written by the job's work,
  // a moment before its last Step() reports the outcome to Orthanc.
  static std::vector<json> our_settled_jobs(const OrthancServer& server,
                                            std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    return server.settled_jobs("UniBiomedAnalysis", timeout);
  }

  TempDir dir_{"unibiomed-plugin-test"};
  fs::path model_;
  std::vector<std::unique_ptr<OrthancServer>> servers_;
};

}  // namespace unibiomed::test
