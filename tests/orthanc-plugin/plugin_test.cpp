// The UniBiomed node end to end: a real Orthanc 1.10.1 process started by the test with the
// plugin and Debian's DICOMweb plugin, studies sent with storescu -R, results checked over the
// plugin's REST API, Orthanc's /jobs and QIDO-RS, forwarding received by a real storescp.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "tests/orthanc-plugin/plugin_fixture.h"
#include "tests/support/validators.h"

namespace unibiomed::test {
namespace {

TEST(PluginLibrary, ExportsOnlyTheFourOrthancEntryPoints) {
  ASSERT_TRUE(fs::exists(plugin_path())) << "the plugin is not built: " << plugin_path();
  const CommandResult r = run_command({"nm", "-D", "--defined-only", plugin_path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::set<std::string> exported;
  std::istringstream lines(r.output);
  std::string address, type, name;
  while (lines >> address >> type >> name)
    if (type == "T" || type == "W" || type == "D" || type == "B" || type == "V" || type == "i") exported.insert(name);
  EXPECT_EQ(exported, (std::set<std::string>{"OrthancPluginInitialize", "OrthancPluginFinalize",
                                             "OrthancPluginGetName", "OrthancPluginGetVersion"}));
}

TEST_F(OrthancPlugin, CtStudyIsAnalysedAndItsSegAndSrAreFoundWithQido) {
  auto& server = start_server(base_settings());
  StudySpec spec;
  const auto files = sample_ct_study(dir_ / "ct", spec);
  send(server, files);

  const json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  EXPECT_EQ(s["Run"], 1);
  EXPECT_EQ(s["Attempt"], 1);
  EXPECT_TRUE(s["Error"].is_null()) << s["Error"];
  EXPECT_EQ(s["SourceInstances"], files.size());
  ASSERT_FALSE(s["Series"].empty());
  EXPECT_EQ(s["Series"][0]["State"], "Analysed") << s["Series"].dump(2);
  // The demo checkpoint's targets.json reads CT volumes in video mode, with SAM2 prompted on one
  // frame in three as well as on the five key frames; the series says so.
  EXPECT_EQ(s["Series"][0]["Mode"], "video") << s["Series"].dump(2);
  EXPECT_EQ(s["Series"][0]["KeyFrames"].size(), static_cast<size_t>(spec.slices)) << "fewer than five: all of them";
  bool how = false;
  for (const auto& n : s["Series"][0]["Notes"])
    how |=
        n.get<std::string>().find("SAM2 prompted on one frame in 3 as well as on the key frames") != std::string::npos;
  EXPECT_TRUE(how) << s["Series"].dump(2);

  // The results, as a reporting system finds them: QIDO-RS on the indexed Modality.
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u);
  EXPECT_EQ(count_series(server, spec.study_uid, "SR"), 1u);
  size_t result_instances = 0;
  for (const auto& r : s["ResultSeries"]) result_instances += r["Instances"].get<size_t>();
  EXPECT_EQ(result_instances, s["Results"].size());

  // The Orthanc job: type, success, full progress, content with series done and findings.
  const auto jobs = our_settled_jobs(server);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["State"], "Success");
  EXPECT_EQ(jobs[0]["Progress"], 100);
  EXPECT_EQ(jobs[0]["Content"]["Study"], s["ID"]);
  EXPECT_EQ(jobs[0]["Content"]["SeriesDone"], jobs[0]["Content"]["SeriesTotal"]);
  EXPECT_EQ(jobs[0]["Content"]["FindingsCount"], s["Findings"].size());
  EXPECT_EQ(jobs[0]["ID"], s["Job"]);

  // Storing our own SEG/SR made the study unstable again: wait for that StableStudy and two
  // /changes scans, and check that nothing was analysed a second time.
  std::this_thread::sleep_for(4s);
  const json again = study(server, spec.study_uid);
  EXPECT_EQ(again["Run"], 1);
  EXPECT_EQ(our_jobs(server).size(), 1u);
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u);

  // The status page.
  const json status = server.get_json("/unibiomed/status");
  EXPECT_TRUE(status["Ready"].get<bool>()) << status.dump(2);
  EXPECT_EQ(status["Model"]["State"], "ready");
  EXPECT_EQ(status["Queue"]["Pending"], 0);
  EXPECT_EQ(status["Queue"]["SucceededSinceStart"], 1);
}

TEST_F(OrthancPlugin, ResultsAreForwardedToTheConfiguredPacs) {
  const int pacs_port = free_port();
  ChildProcess pacs = start_storescp("PACS", "pacs", pacs_port);
  json settings = base_settings();
  settings["ForwardTo"] = "pacs";
  auto& server = start_server(settings, {{"DicomModalities", {{"pacs", {"PACS", "127.0.0.1", pacs_port}}}}});
  StudySpec spec, document;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec));
  send(server, {write_pdf_document(dir_ / "doc", document)});

  // A study with nothing the model reads has nothing to forward: no attempt, and a request to
  // forward is refused saying why.
  const json d = wait_for_end(server, document.study_uid);
  ASSERT_EQ(d["State"], "skipped") << d.dump(2);
  EXPECT_TRUE(d["Forward"].is_null()) << d.dump(2);
  const HttpResult refused = server.post("/unibiomed/studies/" + document.study_uid + "/forward", "");
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_NE(refused.body.find("no series the model reads"), std::string::npos) << refused.body;

  const json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  ASSERT_TRUE(s["Forward"].is_object()) << s.dump(2);
  EXPECT_EQ(s["Forward"]["State"], "Success") << s["Forward"].dump(2);
  EXPECT_EQ(s["Forward"]["Modality"], "pacs");
  // Every stored result arrived.
  const auto files = received("pacs");
  ASSERT_FALSE(s["Results"].empty());
  for (const auto& r : s["Results"])
    EXPECT_EQ(files.count(r["SOPInstanceUID"].get<std::string>()), 1u)
        << r["SOPInstanceUID"] << " did not reach the PACS; storescp log:\n"
        << read_file(dir_ / "storescp.log");
  EXPECT_EQ(files.size(), s["Results"].size());
  // The store job is a real Orthanc job, referenced from the study.
  EXPECT_EQ(server.get_json("/jobs/" + s["Forward"]["Job"].get<std::string>())["State"], "Success");
}

TEST_F(OrthancPlugin, ResultsGoBackToTheSendingAe) {
  const int pacs_port = free_port();
  ChildProcess sender = start_storescp("MODALITY1", "sender", pacs_port);
  json settings = base_settings();
  settings["ForwardTo"] = "RemoteAET";
  auto& server = start_server(settings, {{"DicomModalities", {{"modality1", {"MODALITY1", "127.0.0.1", pacs_port}}}}});
  StudySpec spec;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec), "MODALITY1");
  const json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  EXPECT_EQ(s["Forward"]["State"], "Success") << s["Forward"].dump(2);
  EXPECT_EQ(s["Forward"]["Modality"], "modality1");
  EXPECT_EQ(received("sender").size(), s["Results"].size());
}

TEST_F(OrthancPlugin, ForwardingFailureIsRecordedVisibleInTheJobAndRetryable) {
  const int pacs_port = free_port();  // nobody listens there yet
  json settings = base_settings();
  settings["ForwardTo"] = "pacs";
  auto& server = start_server(settings, {{"DicomModalities", {{"pacs", {"PACS", "127.0.0.1", pacs_port}}}}});
  StudySpec spec;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec));
  const json s = wait_for_end(server, spec.study_uid);
  // The analysis is done and stored; forwarding failed and says so, on the study and in the job.
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  EXPECT_EQ(s["Forward"]["State"], "Failure") << s.dump(2);
  ASSERT_TRUE(s["Error"].is_string());
  EXPECT_NE(s["Error"].get<std::string>().find("pacs"), std::string::npos) << s["Error"];
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u);
  const auto jobs = our_settled_jobs(server);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["State"], "Failure");
  EXPECT_EQ(jobs[0]["Content"]["Forward"]["State"], "Failure");

  // Retry once the PACS is up: POST .../forward re-sends the stored results (no re-analysis).
  ChildProcess pacs = start_storescp("PACS", "pacs", pacs_port);
  std::this_thread::sleep_for(300ms);
  const HttpResult retry = server.post("/unibiomed/studies/" + spec.study_uid + "/forward", "");
  ASSERT_EQ(retry.status, 200) << retry.body;
  json after;
  ASSERT_TRUE(wait_until(
      [&] {
        after = study(server, spec.study_uid);
        return !after["Queued"].get<bool>() && after["Forward"]["State"] != "Failure";
      },
      kAnalysisTimeout));
  EXPECT_EQ(after["Forward"]["State"], "Success") << after.dump(2);
  EXPECT_TRUE(after["Error"].is_null());
  EXPECT_EQ(after["Run"], 1);  // the same results, not a new analysis
  size_t files = 0;
  for (const auto& f : fs::directory_iterator(dir_ / "pacs")) files += f.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, after["Results"].size());
}

TEST_F(OrthancPlugin, KilledDuringAJobTheStudyCompletesExactlyOnceAfterRestart) {
  OrthancOptions o;
  o.unibiomed = base_settings();
  o.extra = {{"SaveJobs", true}};
  auto& server = make_server(o);
  server.start();
  StudySpec spec;
  // Kill Orthanc (SIGKILL: no clean shutdown) while the model is working on the study.
  ASSERT_NO_FATAL_FAILURE(send_slow_study_until_model_stage(server, spec));
  server.kill();

  server.start();
  const json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  EXPECT_EQ(s["Run"], 1);
  EXPECT_EQ(s["Attempt"], 2) << "the second attempt should be the resumed one";
  // Exactly once: one SEG series and one SR series, and no instance stored twice.
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u);
  EXPECT_EQ(count_series(server, spec.study_uid, "SR"), 1u);
  size_t result_instances = 0;
  for (const auto& r : s["ResultSeries"]) result_instances += r["Instances"].get<size_t>();
  EXPECT_EQ(result_instances, s["Results"].size());
  // The interrupted job was not reloaded and re-run by Orthanc: one job in this life, successful.
  const auto jobs = our_settled_jobs(server);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["State"], "Success");
  EXPECT_NE(server.log().find("was interrupted at attempt 1"), std::string::npos);

  // And nothing runs again later (StableStudy of our results, /changes scans).
  std::this_thread::sleep_for(4s);
  EXPECT_EQ(study(server, spec.study_uid)["Run"], 1);
  EXPECT_EQ(our_jobs(server).size(), 1u);
}

TEST_F(OrthancPlugin, TenStudiesSentAtOnceAllComplete) {
  auto& server = start_server(base_settings());
  std::vector<fs::path> files;
  std::vector<StudySpec> specs(10);
  for (size_t i = 0; i < specs.size(); ++i) {
    specs[i].patient_id = "TEN-" + std::to_string(i);
    specs[i].slices = 2;
    const auto f = write_ct_series(dir_ / ("study" + std::to_string(i)), specs[i]);
    files.insert(files.end(), f.begin(), f.end());
  }
  send(server, files);
  for (const auto& spec : specs) {
    const json s = wait_for_end(server, spec.study_uid);
    EXPECT_EQ(s["State"], "done") << spec.patient_id << ": " << s.dump(2);
    EXPECT_EQ(s["Run"], 1) << spec.patient_id;
    EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u) << spec.patient_id;
    EXPECT_EQ(count_series(server, spec.study_uid, "SR"), 1u) << spec.patient_id;
  }
  const json status = server.get_json("/unibiomed/status");
  EXPECT_EQ(status["Queue"]["SucceededSinceStart"], 10) << status.dump(2);
  EXPECT_EQ(status["Queue"]["FailedSinceStart"], 0);
}

TEST_F(OrthancPlugin, CorruptInstanceAndUnsupportedSeriesAreRecordedWhileOrthancKeepsServing) {
  auto& server = start_server(base_settings());
  StudySpec corrupt, document, mixed;
  const fs::path truncated = write_truncated_ct(dir_ / "corrupt", corrupt);
  const fs::path pdf = write_pdf_document(dir_ / "doc", document);
  mixed.slices = 2;
  auto mixed_files = write_ct_series(dir_ / "mixed", mixed);
  StudySpec mixed_doc = mixed;
  const fs::path mixed_pdf = write_pdf_document(dir_ / "mixed", mixed_doc);
  mixed_files.push_back(mixed_pdf);
  send(server, {truncated});
  send(server, {pdf});
  send(server, mixed_files);

  // The truncated image: the study failed, and the error names the series.
  const json c = wait_for_end(server, corrupt.study_uid);
  EXPECT_EQ(c["State"], "failed") << c.dump(2);
  ASSERT_TRUE(c["Error"].is_string()) << c.dump(2);
  EXPECT_NE(c["Error"].get<std::string>().find(corrupt.series_uid), std::string::npos) << c["Error"];
  // Only a document: nothing the model can read. Not an error: the study is "skipped", its
  // job succeeds, nothing is stored, and the summary says why.
  const json d = wait_for_end(server, document.study_uid);
  EXPECT_EQ(d["State"], "skipped") << d.dump(2);
  EXPECT_TRUE(d["Error"].is_null()) << d.dump(2);
  EXPECT_TRUE(d["Results"].empty()) << d.dump(2);
  ASSERT_TRUE(d["Summary"]["Note"].is_string()) << d.dump(2);
  const std::string note = d["Summary"]["Note"];
  EXPECT_EQ(note.rfind("nothing to analyse: Skipped series ", 0), 0u) << note;
  EXPECT_NE(note.find("encapsulated document"), std::string::npos) << note;
  ASSERT_EQ(d["Series"].size(), 1u) << d.dump(2);
  EXPECT_EQ(d["Series"][0]["State"], "Skipped");
  EXPECT_NE(note.find(d["Series"][0]["SeriesInstanceUID"].get<std::string>()), std::string::npos) << note;
  EXPECT_EQ(count_series(server, document.study_uid, "SEG"), 0u);
  EXPECT_EQ(count_series(server, document.study_uid, "SR"), 0u);
  // Images plus a document: the images are analysed, the document is skipped with a reason.
  const json m = wait_for_end(server, mixed.study_uid);
  EXPECT_EQ(m["State"], "done") << m.dump(2);
  bool skipped_doc = false, analysed_ct = false;
  for (const auto& series : m["Series"]) {
    skipped_doc |= series["State"] == "Skipped" && !series["Reason"].get<std::string>().empty();
    analysed_ct |= series["SeriesInstanceUID"] == mixed.series_uid && series["State"] == "Analysed";
  }
  EXPECT_TRUE(skipped_doc) << m["Series"].dump(2);
  EXPECT_TRUE(analysed_ct) << m["Series"].dump(2);
  // The failed job is visible as such; the skipped study's job succeeded.
  bool failed_job = false, skipped_job = false;
  for (const auto& j : our_settled_jobs(server)) {
    failed_job |= j["State"] == "Failure" && j["Content"].contains("Error");
    skipped_job |= j["State"] == "Success" && j["Content"]["Stage"] == "skipped" &&
                   j["Content"]["StudyInstanceUID"] == document.study_uid;
  }
  EXPECT_TRUE(failed_job);
  EXPECT_TRUE(skipped_job);
  const json status = server.get("/unibiomed/status").json();
  EXPECT_EQ(status["Queue"]["SkippedSinceStart"], 1) << status.dump(2);

  // Images arriving later in the skipped study start a new run, which analyses them.
  StudySpec later = document;
  later.series_uid.clear();
  later.slices = 2;
  send(server, write_ct_series(dir_ / "later", later));
  json again = wait_for_run(server, document.study_uid, 2);
  EXPECT_EQ(count_series(server, document.study_uid, "SEG"), 1u);
  // Orthanc and the plugin keep serving.
  EXPECT_EQ(server.get("/system").status, 200);
  EXPECT_EQ(server.get("/unibiomed/status").status, 200);
  EXPECT_TRUE(server.running());
}

TEST_F(OrthancPlugin, WhatOtherSystemsAddToAnAnalysedStudyStartsNoNewRunNewImagesDo) {
  OrthancOptions options;
  options.unibiomed = base_settings();
  options.verbose = true;  // the trigger's decisions are info lines
  auto& server = make_server(options);
  server.start();
  StudySpec spec;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec));
  json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  ASSERT_EQ(s["Run"], 1);
  // The summary records the series of images the run read, by Orthanc id, with their counts.
  json image_series = s["Summary"]["ImageSeries"];
  ASSERT_TRUE(image_series.is_object()) << s["Summary"].dump(2);
  ASSERT_EQ(image_series.size(), 1u) << image_series.dump();
  const std::string ct_series_id = find_series_id(server, spec.series_uid);
  ASSERT_TRUE(image_series.contains(ct_series_id)) << image_series.dump();
  EXPECT_EQ(image_series[ct_series_id]["Instances"], 2);
  EXPECT_EQ(image_series[ct_series_id]["Digest"].get<std::string>().size(), 16u);
  image_series = image_series[ct_series_id];

  // A report dictated elsewhere, a viewer's presentation state and a scanned requisition arrive
  // after the analysis: the study changed, but nothing in it is new to the model.
  StudySpec others = spec;
  send(server, write_other_systems_objects(dir_ / "others", others));
  const std::string no_run =
      "study " + s["ID"].get<std::string>() + " changed since run 1, but not in images the model reads: no new run (";
  ASSERT_TRUE(wait_until([&] { return server.log().find(no_run) != std::string::npos; }, 60s))
      << "the trigger never looked at the study again";
  const std::string log = server.log();
  const std::string line = log.substr(log.find(no_run), log.find('\n', log.find(no_run)) - log.find(no_run));
  EXPECT_NE(line.find("SR series "), std::string::npos) << line;
  EXPECT_NE(line.find("structured report"), std::string::npos) << line;
  EXPECT_NE(line.find("PR series "), std::string::npos) << line;
  EXPECT_NE(line.find("presentation state"), std::string::npos) << line;
  // The scanned PDF says Modality OT: Orthanc's record of its SOP class tells it apart.
  EXPECT_NE(line.find("OT series "), std::string::npos) << line;
  EXPECT_NE(line.find("encapsulated document"), std::string::npos) << line;
  s = study(server, spec.study_uid);
  EXPECT_EQ(s["Run"], 1) << s.dump(2);
  EXPECT_EQ(s["State"], "done");
  EXPECT_FALSE(s["Queued"].get<bool>());
  EXPECT_EQ(our_settled_jobs(server).size(), 1u);
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u);

  // An image the analysis would skip (a secondary capture that does not say what it shows) is
  // told apart by its first instance, as the pipeline classifies it: no run either.
  send(server, {write_undescribed_capture(dir_ / "capture", others)});
  const std::string capture_reason = "secondary capture / other image whose descriptions do not say";
  ASSERT_TRUE(wait_until([&] { return server.log().find(capture_reason) != std::string::npos; }, 60s))
      << "the trigger never named the capture";
  s = study(server, spec.study_uid);
  EXPECT_EQ(s["Run"], 1) << s.dump(2);
  EXPECT_EQ(our_settled_jobs(server).size(), 1u);

  // A CT of the head: images the model reads, but no task rule asks anything of them (the
  // abdominal rule leaves heads out), so a run would only repeat run 1's results.
  StudySpec head = spec;
  head.series_uid.clear();
  head.frame_of_reference.clear();
  head.body_part = "HEAD";
  head.series_description = "Head routine";
  send(server, write_ct_series(dir_ / "head", head));
  const std::string head_reason = "CT series " + head.series_uid +
                                  ": no task rule in built-in defaults matches this CT series (body part 'HEAD', "
                                  "description 'Head routine')";
  ASSERT_TRUE(wait_until([&] { return server.log().find(head_reason) != std::string::npos; }, 60s))
      << "the trigger never named the head CT";
  s = study(server, spec.study_uid);
  EXPECT_EQ(s["Run"], 1) << s.dump(2);
  EXPECT_EQ(our_settled_jobs(server).size(), 1u);

  // A series of images that arrives later does start a run; the log names it.
  StudySpec later = spec;
  later.series_uid.clear();
  later.slices = 2;
  send(server, write_ct_series(dir_ / "later", later));
  s = wait_for_run(server, spec.study_uid, 2);
  EXPECT_NE(
      server.log().find("received new images (CT series " + later.series_uid + ": 0 -> 2 instances): run 2 queued"),
      std::string::npos);
  // The capture and the head CT were read by run 2 (and skipped, for the reasons the trigger
  // gave): ImageSeries lists what may hold images.
  const json image_series2 = s["Summary"]["ImageSeries"];
  EXPECT_EQ(image_series2.size(), 4u) << image_series2.dump();
  EXPECT_EQ(image_series2[ct_series_id], image_series) << image_series2.dump();
  EXPECT_EQ(s["Summary"]["SourceInstances"], 2 + 3 + 1 + 2 + 2) << "every instance but the node's own results";
  // The model was asked only about the new series: run 1's answers about the first one were
  // kept (AnswerCacheMegabytes) and its findings come out the same.
  for (const auto& series : s["Series"]) {
    if (series["State"] != "Analysed") continue;
    bool reused = false;
    for (const auto& note : series["Notes"])
      reused |= note.get<std::string>().find("answer cache") != std::string::npos;
    EXPECT_EQ(reused, series["SeriesInstanceUID"] == spec.series_uid) << series.dump(2);
  }
  for (const auto& series : s["Series"])
    if (series["SeriesInstanceUID"] == head.series_uid) {
      EXPECT_EQ(series["State"], "Skipped") << series.dump(2);
      EXPECT_NE(head_reason.find(series.value("Reason", std::string("?"))), std::string::npos) << series.dump(2);
    }

  // A slice of the later series is deleted and a corrected one (a new SOP Instance UID at the
  // same place) sent: the count is the same, the images are not, and run 3 reads them.
  std::string second_slice;
  for (const auto& instance : server.get_json("/series/" + find_series_id(server, later.series_uid) + "/instances"))
    if (instance["MainDicomTags"].value("InstanceNumber", "") == "2") second_slice = instance["ID"];
  ASSERT_FALSE(second_slice.empty());
  ASSERT_EQ(server.del("/instances/" + second_slice).status, 200);
  StudySpec corrected = later;
  const auto corrected_files = write_ct_series(dir_ / "corrected", corrected);
  send(server, {corrected_files.at(1)});
  s = wait_for_run(server, spec.study_uid, 3);
  EXPECT_NE(server.log().find("received new images (CT series " + later.series_uid +
                              ": 2 instances, some of them new (they replace deleted ones)): run 3 queued"),
            std::string::npos);
  // Both slices deleted and one new sent: fewer than run 3 read, and yet one it never saw. The
  // series' LastUpdate (an instance stored since the run) tells it, and run 4 reads it.
  const std::string later_id = find_series_id(server, later.series_uid);
  EXPECT_EQ(s["Summary"]["ImageSeries"][later_id].value("LastUpdate", "").size(), 15u) << s["Summary"].dump(2);
  for (const auto& instance : server.get_json("/series/" + later_id + "/instances"))
    ASSERT_EQ(server.del("/instances/" + instance["ID"].get<std::string>()).status, 200);
  send(server, {corrected_files.at(0)});
  s = wait_for_run(server, spec.study_uid, 4);
  EXPECT_NE(server.log().find("received new images (CT series " + later.series_uid +
                              ": 2 -> 1 instances, some of them stored since run 3): run 4 queued"),
            std::string::npos);
  EXPECT_EQ(s["Summary"]["ImageSeries"][later_id]["Instances"], 1) << s["Summary"].dump(2);
}

TEST_F(OrthancPlugin, ImagesThatArriveWhileTheStudyIsAnalysedGetARunOfTheirOwn) {
  OrthancOptions options;
  options.unibiomed = base_settings();
  options.verbose = true;
  auto& server = make_server(options);
  server.start();
  StudySpec spec;
  spec.slices = 100;  // a run of several seconds (about 8 on 2 cores)
  send(server, write_ct_series(dir_ / "ct", spec));
  json s;
  ASSERT_TRUE(wait_for_model_stage(server, spec.study_uid, s)) << s.dump(2);
  // A second series arrives while the model works on the first: the study becomes stable again
  // (StableAge 1 s) while its run goes on, and that run read the study before these images came.
  StudySpec later = spec;
  later.series_uid.clear();
  later.slices = 2;
  send(server, write_ct_series(dir_ / "later", later));
  std::this_thread::sleep_for(2500ms);
  s = study(server, spec.study_uid);
  ASSERT_EQ(s["State"], "running") << "run 1 ended before the new images were stable: " << s.dump(2);
  ASSERT_EQ(s["Run"], 1);
  s = wait_for_run(server, spec.study_uid, 2);
  bool analysed_later = false;
  for (const auto& series : s["Series"])
    analysed_later |= series["SeriesInstanceUID"] == later.series_uid && series["State"] == "Analysed";
  EXPECT_TRUE(analysed_later) << s["Series"].dump(2);
  EXPECT_NE(server.log().find("received new images (CT series " + later.series_uid + ": 0 -> 2 instances): run 2"),
            std::string::npos);
  // And no third run: run 2 read everything.
  std::this_thread::sleep_for(4s);
  EXPECT_EQ(study(server, spec.study_uid)["Run"], 2);
  EXPECT_EQ(our_jobs(server).size(), 2u);
}

TEST_F(OrthancPlugin, JapaneseAndLatin1StudiesAreAnalysedAndTheirTextReadBackInUtf8) {
  // Japanese in ISO 2022 (PS3.5 Annex H's name; DCMTK cannot convert it with iconv) and a
  // Latin-1 series description. Before, the first study failed ("cannot convert its text") and
  // the second could not write its summary.
  auto& server = start_server(base_settings());
  const std::string esc = "\x1b";
  StudySpec japanese, latin1;
  japanese.specific_character_set = "ISO 2022 IR 13\\ISO 2022 IR 87";
  japanese.patient_name = "\xD4\xCF\xC0\xDE^\xC0\xDB\xB3=" + esc + "$B;3ED" + esc + "(B^" + esc + "$BB@O:" + esc + "(B";
  latin1.specific_character_set = "ISO_IR 100";
  latin1.patient_name = "M\xFCller^J\xFCrgen";
  latin1.series_description = "Abdomen \xE0 jeun";
  send(server, write_ct_series(dir_ / "japanese", japanese));
  send(server, write_ct_series(dir_ / "latin1", latin1));
  const std::vector<std::pair<const StudySpec*, std::string>> expected = {
      {&japanese,
       "\xEF\xBE\x94\xEF\xBE\x8F\xEF\xBE\x80\xEF\xBE\x9E^\xEF\xBE\x80\xEF\xBE\x9B\xEF\xBD\xB3="
       "\xE5\xB1\xB1\xE7\x94\xB0^\xE5\xA4\xAA\xE9\x83\x8E"},
      {&latin1, "M\xC3\xBCller^J\xC3\xBCrgen"}};
  for (const auto& [spec, name] : expected) {
    SCOPED_TRACE(spec->specific_character_set);
    const json s = wait_for_end(server, spec->study_uid);
    ASSERT_EQ(s["State"], "done") << s.dump(2);
    ASSERT_FALSE(s["Series"].empty());
    EXPECT_EQ(s["Series"][0]["State"], "Analysed") << s["Series"].dump(2);
    if (spec == &latin1) {
      EXPECT_EQ(s["Series"][0]["Description"], "Abdomen \xC3\xA0 jeun");
    }
    // The SEG and SR carry the name in UTF-8 (ISO_IR 192); Orthanc reads them back the same.
    ASSERT_FALSE(s["Results"].empty());
    for (const auto& r : s["Results"]) {
      const json tags = server.get_json("/instances/" + r["ID"].get<std::string>() + "/simplified-tags");
      EXPECT_EQ(tags["SpecificCharacterSet"], "ISO_IR 192");
      EXPECT_EQ(tags["PatientName"], name) << r.dump();
    }
  }
  EXPECT_TRUE(server.running());
}

TEST_F(OrthancPlugin, InvalidConfigurationIsReportedOnEveryRoute) {
  auto& server = start_server({{"ModelDirectory", model_.string()}, {"Threads", "many"}, {"Colour", "blue"}});
  EXPECT_EQ(server.get("/system").status, 200);  // Orthanc runs
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/unibiomed/status"},
           {"GET", "/unibiomed/studies/1.2.3"},
           {"POST", "/unibiomed/studies/1.2.3/analyze"},
           {"POST", "/unibiomed/ask"}}) {
    const HttpResult r = method == "GET" ? server.get(path) : server.post(path, "{}");
    EXPECT_EQ(r.status, 503) << path;
    const std::string error = r.json()["Error"];
    EXPECT_NE(error.find("UniBiomed.Threads must be an integer"), std::string::npos) << path << ": " << error;
    EXPECT_NE(error.find("UniBiomed.Colour: unknown key"), std::string::npos) << path << ": " << error;
  }
  EXPECT_NE(server.log().find("UniBiomed.Colour: unknown key"), std::string::npos);
}

TEST_F(OrthancPlugin, MissingModelKeepsStudiesPendingSaysWhyAndLosesNothing) {
  OrthancOptions o;
  o.unibiomed = base_settings();
  o.unibiomed["ModelDirectory"] = (dir_ / "no-such-model").string();
  auto& broken = make_server(o, "node");
  broken.start();
  const json status = broken.get_json("/unibiomed/status");
  EXPECT_FALSE(status["Ready"].get<bool>());
  EXPECT_NE(status["Error"].get<std::string>().find("no-such-model"), std::string::npos) << status.dump(2);

  StudySpec spec;
  spec.slices = 2;
  send(broken, write_ct_series(dir_ / "ct", spec));
  json s;
  ASSERT_TRUE(wait_until([&] { s = study(broken, spec.study_uid); return !s.is_null() && s["State"] == "pending"; },
                         60s))
      << s.dump(2);
  EXPECT_NE(s["ModelError"].get<std::string>().find("no-such-model"), std::string::npos);
  const HttpResult analyze = broken.post("/unibiomed/studies/" + spec.study_uid + "/analyze", "");
  EXPECT_EQ(analyze.status, 503);
  EXPECT_NE(analyze.json()["Error"].get<std::string>().find("no-such-model"), std::string::npos);
  broken.stop();

  // Same storage, model fixed: the pending study is analysed after the restart.
  OrthancOptions fixed = o;
  fixed.unibiomed["ModelDirectory"] = model_.string();
  fs::remove(dir_ / "node" / "orthanc.json");
  auto& server = make_server(fixed, "node");
  server.start();
  const json done = wait_for_end(server, spec.study_uid);
  EXPECT_EQ(done["State"], "done") << done.dump(2);
  EXPECT_EQ(done["Run"], 1);
}

TEST_F(OrthancPlugin, RoutesRespectOrthancAuthentication) {
  auto& server = start_server(base_settings(),
                              {{"AuthenticationEnabled", true}, {"RegisteredUsers", {{"alice", "s3cret"}}}});
  EXPECT_EQ(server.get("/unibiomed/status").status, 401);
  EXPECT_EQ(server.get("/unibiomed/status", "alice:wrong").status, 401);
  EXPECT_EQ(server.get("/unibiomed/status", "alice:s3cret").status, 200);
  EXPECT_EQ(server.post("/unibiomed/ask", "{}").status, 401);
}

// A run still waiting for a worker takes a newer request in place of the one it waited with (no
// second run), and the answer says which request it replaces.
TEST_F(OrthancPlugin, AWaitingRunTakesTheNewerRequestAndTheAnswerSaysSo) {
  json settings = base_settings();
  settings["AutoAnalysis"] = false;  // ConcurrentAnalyses 1: study B waits while A is analysed
  auto& server = start_server(settings);
  StudySpec a, b;
  a.slices = 100;  // a run of several seconds
  b.slices = 2;
  b.patient_id = "UNIBIOMED-TEST-B";
  send(server, write_ct_series(dir_ / "a", a));
  send(server, write_ct_series(dir_ / "b", b));
  ASSERT_TRUE(wait_until([&] { return server.get("/unibiomed/studies/" + b.study_uid).status == 200; }, 30s));
  ASSERT_EQ(server.post("/unibiomed/studies/" + a.study_uid + "/analyze", "").status, 200);
  json seen;
  ASSERT_TRUE(wait_for_model_stage(server, a.study_uid, seen)) << seen.dump(2);
  const std::string analyze_b = "/unibiomed/studies/" + b.study_uid + "/analyze";
  const HttpResult first = server.post(analyze_b, "");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_FALSE(first.json().contains("Replaces")) << first.body;
  const HttpResult second = server.post(analyze_b, R"({"Tasks": ["organs"]})");
  ASSERT_EQ(second.status, 200) << second.body;
  ASSERT_EQ(study(server, a.study_uid)["State"], "running") << "A ended before B's requests: nothing waited";
  EXPECT_EQ(second.json()["Run"], first.json()["Run"]);
  ASSERT_TRUE(second.json().contains("Replaces")) << second.body;
  EXPECT_EQ(second.json()["Replaces"]["Run"], first.json()["Run"]);
  EXPECT_TRUE(second.json()["Replaces"]["Request"].is_null()) << second.body;  // the rules: no body
  const json done = wait_for_run(server, b.study_uid, first.json()["Run"].get<int>());
  EXPECT_EQ(done["Request"], json({{"Tasks", {"organs"}}})) << done.dump(2);
}

TEST_F(OrthancPlugin, ExplicitRequestStartsANewRunAndBadRequestsNameTheProblem) {
  auto& server = start_server(base_settings());
  StudySpec spec;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec));
  ASSERT_EQ(wait_for_end(server, spec.study_uid)["State"], "done");

  const HttpResult r = server.post("/unibiomed/studies/" + spec.study_uid + "/analyze",
                                   R"({"Questions": [{"Text": "Is there a lesion?"}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["Run"], 2);
  const json s = wait_for_run(server, spec.study_uid, 2);
  EXPECT_EQ(s["Request"]["Questions"][0]["Text"], "Is there a lesion?");
  EXPECT_FALSE(s["Answers"].empty()) << s.dump(2);
  // A new run is a new analysis with its own result series.
  EXPECT_EQ(count_series(server, spec.study_uid, "SR"), 2u);

  auto error_of = [&](const std::string& path, const std::string& body) {
    const HttpResult e = server.post(path, body);
    return std::to_string(e.status) + " " + e.json().value("Error", std::string());
  };
  const std::string analyze = "/unibiomed/studies/" + spec.study_uid + "/analyze";
  EXPECT_EQ(error_of(analyze, "{not json").substr(0, 3), "400");
  EXPECT_NE(error_of(analyze, R"({"Question": []})").find("unknown field \"Question\""), std::string::npos);
  EXPECT_NE(error_of(analyze, R"({"Questions": [{"Text": ""}]})").find("Questions[0]"), std::string::npos);
  EXPECT_NE(error_of(analyze, R"({"Questions": [{"Text": "x", "Box": [5, 5, 1, 1]}]})").find("Questions[0].Box"),
            std::string::npos);
  EXPECT_NE(error_of(analyze, R"({"Rules": false})").find("asks for nothing"), std::string::npos);
  EXPECT_EQ(error_of("/unibiomed/studies/1.2.840.999999/analyze", "").substr(0, 3), "404");
  // Orthanc decodes %2F before routing: the path no longer matches our route (404 from Orthanc)
  // or reaches it as a malformed id (400 from us); never /system.
  const std::string traversal = error_of("/unibiomed/studies/..%2Fsystem/analyze", "").substr(0, 3);
  EXPECT_TRUE(traversal == "400" || traversal == "404") << traversal;
  EXPECT_EQ(server.get("/unibiomed/studies/1.2.840.999999").status, 404);
}

// The SOP Instance UIDs an SR stored in `server` names in its Predecessor Documents Sequence.
std::vector<std::string> predecessors(const OrthancServer& server, const std::string& instance) {
  const json tags = server.get_json("/instances/" + instance + "/tags?short");
  std::vector<std::string> uids;
  for (const auto& study : tags.value("0040,a360", json::array()))
    for (const auto& series : study.value("0008,1115", json::array()))
      for (const auto& sop : series.value("0008,1199", json::array())) uids.push_back(sop.value("0008,1155", ""));
  return uids;
}

// A study analysed again. Each run that asks the task rules revises the study's last report of
// the rules: its SR names that report in its Predecessor Documents Sequence. A run of questions
// only revises nothing. With SupersededResults "delete", the results of a run that a run of the
// same request replaces leave Orthanc; those of another request stay.
TEST_F(OrthancPlugin, ANewRunRevisesTheLastReportAndDeletesTheResultsItReplacesWhenAsked) {
  json settings = base_settings();
  settings["SupersededResults"] = "delete";
  auto& server = start_server(settings);
  StudySpec spec;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec));
  json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  const json report1 = s["Summary"]["Report"];
  ASSERT_TRUE(report1.is_object()) << s.dump(2);
  EXPECT_EQ(report1["Run"], 1);
  EXPECT_FALSE(s["Summary"].contains("Supersedes"));
  EXPECT_TRUE(predecessors(server, report1["ID"]).empty());
  const size_t segs1 = count_series(server, spec.study_uid, "SEG");
  ASSERT_GE(segs1, 1u) << "the demo checkpoint outlines the CT phantom's organs";

  auto run = [&](const std::string& body, int number) { return analyze_again(server, spec.study_uid, body, number); };
  auto sr_of = [](const json& study) {
    for (const auto& r : study["Results"])
      if (r["Kind"] == "SR") return r;
    return json();
  };

  // Run 2, one question without the rules: its SR revises nothing, and run 1's report stays the
  // study's report of the rules.
  s = run(R"({"Rules": false, "Questions": [{"Text": "Is there a lesion?"}]})", 2);
  ASSERT_TRUE(sr_of(s).is_object()) << s.dump(2);
  EXPECT_TRUE(predecessors(server, sr_of(s)["ID"]).empty());
  EXPECT_EQ(s["Summary"]["Report"], report1);
  EXPECT_FALSE(s["Summary"].contains("Supersedes"));

  // Run 3, the rules and a question: it revises run 1's report, but asked something else, so
  // run 1's results stay.
  const std::string rules_and_question = R"({"Questions": [{"Text": "Is there a lesion?"}]})";
  s = run(rules_and_question, 3);
  const json report3 = s["Summary"]["Report"];
  ASSERT_TRUE(report3.is_object()) << s.dump(2);
  EXPECT_EQ(report3["Run"], 3);
  EXPECT_EQ(report3["SOPInstanceUID"], sr_of(s)["SOPInstanceUID"]);
  EXPECT_EQ(predecessors(server, report3["ID"]), std::vector<std::string>{report1["SOPInstanceUID"]});
  EXPECT_EQ(s["Summary"]["Supersedes"]["SOPInstanceUID"], report1["SOPInstanceUID"]);
  EXPECT_EQ(s["Summary"]["Supersedes"]["Replaced"], false);
  EXPECT_EQ(s["Summary"]["Supersedes"].value("Kept", ""), "run 1 asked another request");
  EXPECT_EQ(count_series(server, spec.study_uid, "SR"), 3u);
  EXPECT_EQ(server.get("/instances/" + report1["ID"].get<std::string>()).status, 200);
  // A viewer's series list tells the runs apart; the first run's series keep their names.
  auto description = [&](const json& id) {
    return server.get_json("/instances/" + id.get<std::string>() + "/tags?short").value("0008,103e", "");
  };
  EXPECT_EQ(description(report1["ID"]), "UniBiomed findings");
  EXPECT_EQ(description(report3["ID"]), "UniBiomed findings (run 3)");
  for (const auto& id : report3["Objects"])
    EXPECT_EQ(description(id), id == report3["ID"] ? "UniBiomed findings (run 3)" : "UniBiomed segmentation (run 3)");
  for (const auto& id : report1["Objects"])
    EXPECT_EQ(description(id), id == report1["ID"] ? "UniBiomed findings" : "UniBiomed segmentation");

  // Run 4 asks what run 3 asked, written another way: it replaces run 3, whose SEGs and SR are
  // deleted.
  s = run(R"({"Rules": true, "Tasks": [], "Questions": [{"Text": "Is there a lesion?"}]})", 4);
  const json report4 = s["Summary"]["Report"];
  ASSERT_TRUE(report4.is_object()) << s.dump(2);
  EXPECT_EQ(predecessors(server, report4["ID"]), std::vector<std::string>{report3["SOPInstanceUID"]});
  EXPECT_EQ(s["Summary"]["Supersedes"]["Run"], 3);
  EXPECT_EQ(s["Summary"]["Supersedes"]["Replaced"], true);
  EXPECT_EQ(s["Summary"]["Supersedes"]["Deleted"], true);
  ASSERT_EQ(report3["Objects"].size(), segs1 + 1) << report3.dump(2);
  for (const auto& id : report3["Objects"])
    EXPECT_EQ(server.get("/instances/" + id.get<std::string>()).status, 404) << id;
  EXPECT_EQ(server.get("/instances/" + report1["ID"].get<std::string>()).status, 200);
  EXPECT_EQ(count_series(server, spec.study_uid, "SR"), 3u) << "runs 1, 2 and 4";
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 2 * segs1) << "runs 1 and 4";
  EXPECT_EQ(s["ResultSeries"].size(), 3 + 2 * segs1);
  std::multiset<int> runs;
  for (const auto& series : s["ResultSeries"]) runs.insert(series.value("Run", -1));
  EXPECT_EQ(runs.count(1), 1 + segs1);
  EXPECT_EQ(runs.count(2), 1u);
  EXPECT_EQ(runs.count(3), 0u);
  EXPECT_EQ(runs.count(4), 1 + segs1);

  // The revised report is a valid SR.
  const fs::path file = dir_ / "report4.dcm";
  write_file(file, server.get("/instances/" + report4["ID"].get<std::string>() + "/file").body);
  std::string output;
  EXPECT_TRUE(dciodvfy_errors(file, &output).empty()) << output;

  // The deletion is no new image: nothing starts again once the study is stable.
  std::this_thread::sleep_for(3s);
  s = study(server, spec.study_uid);
  EXPECT_EQ(s["Run"], 4);
  EXPECT_EQ(s["State"], "done");

  // A user deletes run 4's report: run 5 revises nothing, replaces nothing, and says why.
  ASSERT_EQ(server.del("/instances/" + report4["ID"].get<std::string>()).status, 200);
  s = run(rules_and_question, 5);
  EXPECT_FALSE(s["Summary"].contains("Supersedes")) << s["Summary"].dump(2);
  EXPECT_TRUE(predecessors(server, s["Summary"]["Report"]["ID"]).empty());
  EXPECT_EQ(s["Summary"].value("ReportMissing", ""),
            "the report of run 4 (SR " + report4["SOPInstanceUID"].get<std::string>() +
                ") is no longer in the study: this run's report names no predecessor");
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 3 * segs1) << "runs 1, 4 and 5";

  // A second series arrives: run 6 (automatic) analyses both. Once a user deletes it, run 7 of
  // the same request revises run 6's report but cannot replace it: a series of run 6 is gone.
  StudySpec second = spec;
  second.series_uid.clear();
  send(server, write_ct_series(dir_ / "ct2", second));
  ASSERT_TRUE(wait_until(
      [&] {
        s = study(server, spec.study_uid);
        return s["Run"] == 6 && s["State"] == "done" && !s["Queued"].get<bool>();
      },
      kAnalysisTimeout))
      << s.dump(2);
  ASSERT_EQ(s["Summary"]["Report"]["AnalysedSeries"].size(), 2u) << s["Summary"].dump(2);
  const std::string second_id = find_series_id(server, second.series_uid);
  ASSERT_FALSE(second_id.empty());
  ASSERT_EQ(server.del("/series/" + second_id).status, 200);
  s = run("{}", 7);
  const json& superseded = s["Summary"]["Supersedes"];
  EXPECT_EQ(superseded["Run"], 6) << s["Summary"].dump(2);
  EXPECT_EQ(superseded["Replaced"], false);
  EXPECT_EQ(superseded.value("Kept", ""), "series " + second.series_uid + " of run 6 was not analysed again");
  EXPECT_FALSE(superseded.contains("Deleted"));
  for (const auto& id : superseded["Objects"])
    EXPECT_EQ(server.get("/instances/" + id.get<std::string>()).status, 200) << "run 6 is kept: " << id;
}

// Objects still to be withdrawn (a rejection note was refused) stay on record when a user
// deletes the report that lists them and the next run writes no report of the rules (it asks
// explicit questions only): the next report of the rules takes them.
TEST_F(OrthancPlugin, ObjectsStillToBeWithdrawnOutliveADeletedReportAndARunWithoutRules) {
  write_file(dir_ / "filter.lua",
             "function ReceivedInstanceFilter(dicom, origin, info)\n"
             "  return dicom.Modality ~= 'KO'\n"
             "end\n");
  json settings = base_settings();
  settings["SupersededResults"] = "reject";
  auto& server = start_server(settings, {{"LuaScripts", {(dir_ / "filter.lua").string()}}});
  StudySpec spec;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec));
  json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  const json run1 = s["Results"];
  // Run 2 replaces run 1, but the note is refused: run 1 is still to be withdrawn.
  s = analyze_again(server, spec.study_uid, "{}", 2);
  ASSERT_EQ(s["Summary"]["Report"]["Unretired"].size(), run1.size()) << s["Summary"].dump(2);
  // A user deletes run 2's report; run 3 asks a question without the rules.
  const auto sr2 =
      std::find_if(s["Results"].begin(), s["Results"].end(), [](const json& result) { return result["Kind"] == "SR"; });
  ASSERT_NE(sr2, s["Results"].end());
  ASSERT_EQ(server.del("/instances/" + (*sr2)["ID"].get<std::string>()).status, 200);
  s = analyze_again(server, spec.study_uid, R"({"Rules": false, "Questions": [{"Text": "Is there a lesion?"}]})", 3);
  EXPECT_EQ(s["State"], "done") << s.dump(2);
  EXPECT_EQ(s["Summary"]["Report"]["Unretired"].size(), run1.size()) << s["Summary"].dump(2);
  EXPECT_NE(s["Summary"].value("ReportMissing", "").find("the report of run 2"), std::string::npos)
      << s["Summary"].dump(2);
  // Run 4 asks the rules again: its report (no predecessor) takes them on.
  s = analyze_again(server, spec.study_uid, "{}", 4);
  EXPECT_EQ(s["Summary"]["Report"]["Run"], 4) << s["Summary"].dump(2);
  EXPECT_EQ(s["Summary"]["Report"]["Unretired"].size(), run1.size()) << s["Summary"].dump(2);
}

// SupersededResults "reject": a run that replaces an earlier one stores an IHE IOCM rejection
// note listing the earlier results and forwards it with its own, so that the PACS that holds
// forwarded copies can withdraw them; here the earlier results are deleted. A note that cannot be
// stored (here a Lua filter of this Orthanc refuses it) deletes nothing, and what it would have
// withdrawn passes from report to report (also through a run of another request, which replaces
// nothing) until a run replaces the report that lists it.
TEST_F(OrthancPlugin, AReplacedRunIsWithdrawnWithARejectionNoteForwardedToThePacs) {
  const int pacs_port = free_port();
  ChildProcess pacs = start_storescp("PACS", "pacs", pacs_port);
  // While the file "refuse-notes" exists, this Orthanc refuses Key Object Selections.
  write_file(dir_ / "refuse-notes", "");
  write_file(dir_ / "filter.lua",
             "function ReceivedInstanceFilter(dicom, origin, info)\n"
             "  local marker = io.open('" +
                 (dir_ / "refuse-notes").string() +
                 "', 'r')\n"
                 "  if marker == nil then return true end\n"
                 "  marker:close()\n"
                 "  return dicom.Modality ~= 'KO'\n"
                 "end\n");
  json settings = base_settings();
  settings["ForwardTo"] = "pacs";
  settings["SupersededResults"] = "reject";
  auto& server = start_server(settings, {{"DicomModalities", {{"pacs", {"PACS", "127.0.0.1", pacs_port}}}},
                                         {"LuaScripts", {(dir_ / "filter.lua").string()}}});
  StudySpec spec;
  spec.slices = 2;
  send(server, write_ct_series(dir_ / "ct", spec));
  json s = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(s["State"], "done") << s.dump(2);
  ASSERT_EQ(s["Forward"]["State"], "Success") << s.dump(2);
  const json run1 = s["Results"];
  ASSERT_GE(run1.size(), 2u) << "the demo checkpoint outlines the CT phantom's organs: SEGs and an SR";
  EXPECT_EQ(received("pacs").size(), run1.size());
  auto run = [&](int number, const std::string& body = "{}") {
    json done = analyze_again(server, spec.study_uid, body, number);
    EXPECT_EQ(done["Forward"]["State"], "Success") << done.dump(2);
    return done;
  };

  // Run 2 asks the same and replaces run 1, but this Orthanc refuses the note: run 1 stays (here
  // and at the PACS) and is left for the next run; run 2's own results are delivered.
  s = run(2);
  const json run2 = s["Results"];
  json superseded = s["Summary"]["Supersedes"];
  EXPECT_EQ(superseded["Run"], 1) << s["Summary"].dump(2);
  EXPECT_EQ(superseded["Replaced"], true);
  EXPECT_NE(superseded.value("RejectError", "").find("a filter of this Orthanc refused it"), std::string::npos)
      << superseded.dump(2);
  EXPECT_FALSE(superseded.contains("Deleted"));
  EXPECT_FALSE(superseded.contains("RejectionNote"));
  EXPECT_EQ(s["Summary"]["Report"]["Unretired"].size(), run1.size()) << s["Summary"]["Report"].dump(2);
  for (const auto& result : run1)
    EXPECT_EQ(server.get("/instances/" + result["ID"].get<std::string>()).status, 200) << result.dump();
  EXPECT_EQ(count_series(server, spec.study_uid, "KO"), 0u);
  EXPECT_EQ(received("pacs").size(), run1.size() + run2.size());

  // Run 3 asks another request (a question besides the rules): it revises run 2's report but
  // replaces nothing, so run 2 stays; run 1, still to be withdrawn, passes to run 3's report.
  const std::string other_request = R"({"Questions": [{"Text": "Is there a lesion?"}]})";
  s = run(3, other_request);
  const json run3 = s["Results"];
  superseded = s["Summary"]["Supersedes"];
  EXPECT_EQ(superseded["Run"], 2) << s["Summary"].dump(2);
  EXPECT_EQ(superseded["Replaced"], false);
  EXPECT_EQ(s["Summary"]["Report"]["Unretired"], s["Summary"]["Supersedes"]["Unretired"]) << s["Summary"].dump(2);
  EXPECT_EQ(s["Summary"]["Report"]["Unretired"].size(), run1.size()) << s["Summary"]["Report"].dump(2);
  EXPECT_EQ(count_series(server, spec.study_uid, "KO"), 0u);

  // The filter lets notes through again, and a user deletes a SEG of run 3 by hand. Run 4 asks
  // what run 3 asked, replaces it and withdraws run 1 with it; the deleted SEG is still listed,
  // for its copy at the PACS. Run 2, which no run replaced, stays.
  fs::remove(dir_ / "refuse-notes");
  const auto seg3 = std::find_if(run3.begin(), run3.end(), [](const json& result) { return result["Kind"] == "SEG"; });
  ASSERT_NE(seg3, run3.end());
  ASSERT_EQ(server.del("/instances/" + (*seg3)["ID"].get<std::string>()).status, 200);
  s = run(4, other_request);
  superseded = s["Summary"]["Supersedes"];
  EXPECT_EQ(superseded["Run"], 3) << s["Summary"].dump(2);
  EXPECT_EQ(superseded["Deleted"], true);
  ASSERT_TRUE(superseded["RejectionNote"].is_object()) << superseded.dump(2);
  EXPECT_EQ(superseded["RejectionNote"]["Rejects"], run1.size() + run3.size());
  EXPECT_EQ(superseded["AlreadyGone"], json::array({(*seg3)["ID"]}));
  EXPECT_FALSE(s["Summary"]["Report"].contains("Unretired")) << s["Summary"]["Report"].dump(2);
  for (const auto& results : {run1, run3})
    for (const auto& result : results)
      EXPECT_EQ(server.get("/instances/" + result["ID"].get<std::string>()).status, 404) << result.dump();
  for (const auto& result : run2)
    EXPECT_EQ(server.get("/instances/" + result["ID"].get<std::string>()).status, 200) << result.dump();

  // The note is one of run 4's results: stored in the study as a KO series of run 4 ...
  const auto note =
      std::find_if(s["Results"].begin(), s["Results"].end(), [](const json& result) { return result["Kind"] == "KO"; });
  ASSERT_NE(note, s["Results"].end()) << s["Results"].dump(2);
  EXPECT_EQ((*note)["SOPInstanceUID"], superseded["RejectionNote"]["SOPInstanceUID"]);
  EXPECT_EQ((*note)["SOPClassUID"], "1.2.840.10008.5.1.4.1.1.88.59");
  EXPECT_EQ(count_series(server, spec.study_uid, "KO"), 1u);
  EXPECT_EQ(server.get_json("/instances/" + (*note)["ID"].get<std::string>() + "/tags?short").value("0008,103e", ""),
            "UniBiomed rejection note (run 4)");
  bool listed = false;
  for (const auto& series : s["ResultSeries"])
    if (series["SeriesInstanceUID"] == (*note)["SeriesInstanceUID"]) listed = series.value("Run", -1) == 4;
  EXPECT_TRUE(listed) << s["ResultSeries"].dump(2);

  // ... and forwarded with them: the PACS has every object of the four runs, and the note lists
  // exactly those of runs 1 and 3, each in its evidence too, under the IOCM title.
  const auto files = received("pacs");
  EXPECT_EQ(files.size(), run1.size() + run2.size() + run3.size() + s["Results"].size());
  for (const auto& result : s["Results"])
    EXPECT_EQ(files.count(result["SOPInstanceUID"].get<std::string>()), 1u) << result.dump();
  ASSERT_EQ(files.count((*note)["SOPInstanceUID"].get<std::string>()), 1u);
  const fs::path note_file = files.at((*note)["SOPInstanceUID"].get<std::string>());
  std::string output;
  EXPECT_TRUE(dciodvfy_errors(note_file, &output).empty()) << output;
  DcmFileFormat kos;
  ASSERT_TRUE(kos.loadFile(note_file.c_str()).good());
  DcmDataset& ds = *kos.getDataset();
  auto text = [](DcmItem& item, const DcmTagKey& tag) {
    OFString value;
    item.findAndGetOFString(tag, value);
    return std::string(value.c_str());
  };
  DcmItem* title = nullptr;
  ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ConceptNameCodeSequence, title, 0).good());
  EXPECT_EQ(text(*title, DCM_CodeValue) + " " + text(*title, DCM_CodingSchemeDesignator), "113001 DCM");
  std::set<std::string> expected, referenced, evidence;
  for (const auto& results : {run1, run3})
    for (const auto& result : results) expected.insert(result["SOPInstanceUID"].get<std::string>());
  DcmItem* item = nullptr;
  for (unsigned long i = 0; ds.findAndGetSequenceItem(DCM_ContentSequence, item, i).good(); ++i) {
    DcmItem* sop = nullptr;
    if (item->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, 0).good())
      referenced.insert(text(*sop, DCM_ReferencedSOPInstanceUID));
  }
  DcmItem* study_item = nullptr;
  for (unsigned long i = 0;
       ds.findAndGetSequenceItem(DCM_CurrentRequestedProcedureEvidenceSequence, study_item, i).good(); ++i) {
    DcmItem* series = nullptr;
    for (unsigned long j = 0; study_item->findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series, j).good(); ++j) {
      DcmItem* sop = nullptr;
      for (unsigned long k = 0; series->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, k).good(); ++k)
        evidence.insert(text(*sop, DCM_ReferencedSOPInstanceUID));
    }
  }
  EXPECT_EQ(referenced, expected);
  EXPECT_EQ(evidence, expected);

  // Each run's result series are numbered in a range of their own (9001..., 9101..., ...) and
  // the note just before run 4's, so that a viewer lists the runs the study keeps apart and in
  // order.
  std::map<std::string, Sint32> number_of_series;  // Series Instance UID -> Series Number
  const json run4 = s["Results"];
  int run_index = 0;
  for (const json* results : {&run1, &run2, &run3, &run4}) {
    const Sint32 first = 9001 + 100 * run_index++;
    for (const auto& result : *results) {
      DcmFileFormat file;
      ASSERT_TRUE(file.loadFile(files.at(result["SOPInstanceUID"].get<std::string>()).c_str()).good());
      Sint32 number = -1;
      EXPECT_TRUE(file.getDataset()->findAndGetSint32(DCM_SeriesNumber, number).good());
      if (result["Kind"] == "KO") {
        EXPECT_EQ(number, first - 1) << result.dump();
      } else {
        EXPECT_GE(number, first) << result.dump();
        EXPECT_LT(number, first + static_cast<Sint32>(results->size())) << result.dump();
      }
      const auto [known, added] = number_of_series.emplace(result["SeriesInstanceUID"].get<std::string>(), number);
      EXPECT_EQ(known->second, number) << "one series, one number: " << result.dump();
    }
  }
  std::set<Sint32> numbers;
  for (const auto& [uid, number] : number_of_series) numbers.insert(number);
  EXPECT_EQ(numbers.size(), number_of_series.size()) << "two result series share a number";

  // Storing the note and deleting the replaced results start no new run.
  std::this_thread::sleep_for(3s);
  s = study(server, spec.study_uid);
  EXPECT_EQ(s["Run"], 4);
  EXPECT_EQ(s["State"], "done");
}

TEST_F(OrthancPlugin, RejectedAnalyzeRequestsNameTheFieldAndLeaveTheStudyAsItWas) {
  auto& server = start_server(base_settings());
  StudySpec spec;
  spec.slices = 2;
  spec.rows = spec.columns = 64;
  send(server, write_ct_series(dir_ / "ct", spec));
  const json done = wait_for_end(server, spec.study_uid);
  ASSERT_EQ(done["State"], "done") << done.dump(2);
  const size_t jobs_before = our_jobs(server).size();
  const std::string analyze = "/unibiomed/studies/" + spec.study_uid + "/analyze";
  auto rejected = [&](const std::string& body) {
    const HttpResult r = server.post(analyze, body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    return r.status == 400 ? r.json().value("Error", std::string()) : std::string();
  };

  // A task name that no rule has (the node trial: this answered 200, then the run failed).
  const std::string task = rejected(R"({"Tasks": ["organs", "foo"]})");
  EXPECT_NE(task.find("Tasks[1]: unknown task \"foo\" (known: "), std::string::npos) << task;
  EXPECT_NE(task.find("organs"), std::string::npos) << task;
  // A question about a series the study does not have.
  const std::string series = rejected(R"({"Questions": [{"Text": "Any lesion?", "SeriesInstanceUID": "1.2.3.4"}]})");
  EXPECT_NE(series.find("Questions[0].SeriesInstanceUID \"1.2.3.4\" is not a series of study"), std::string::npos)
      << series;
  EXPECT_NE(series.find(spec.series_uid), std::string::npos) << series;
  // A box outside the 64 x 64 images.
  const std::string box = rejected(R"({"Questions": [{"Text": "What is here?", "Box": [0, 0, 5000, 5000]}]})");
  EXPECT_NE(box.find("Questions[0].Box [0, 0, 5000, 5000] does not fit series " + spec.series_uid), std::string::npos)
      << box;
  EXPECT_NE(box.find("64 x 64 pixels"), std::string::npos) << box;
  // Bodies no request of this API has: refused before they are parsed (a deeply nested array
  // crashed Orthanc's HTTP thread in a helper's trial), and Orthanc goes on.
  const std::string deep = rejected(std::string(10000, '[') + std::string(10000, ']'));
  EXPECT_NE(deep.find("nests arrays and objects more than 8 deep"), std::string::npos) << deep;
  const HttpResult huge = server.post(analyze, "{\"Tasks\": [" + std::string(2 << 20, ' ') + "\"organs\"]}");
  EXPECT_EQ(huge.status, 413) << huge.body.substr(0, 300);
  EXPECT_NE(huge.body.find("requests are at most 1048576"), std::string::npos) << huge.body.substr(0, 300);
  json many = {{"Questions", json::array()}};
  for (int i = 0; i < 33; ++i) many["Questions"].push_back({{"Text", "Question " + std::to_string(i)}});
  EXPECT_NE(rejected(many.dump()).find("Questions holds 33 questions; a request asks at most 32"), std::string::npos);
  const std::string longer = rejected(json({{"Questions", {{{"Text", std::string(2001, 'x')}}}}}).dump());
  EXPECT_NE(longer.find("Questions[0].Text has 2001 bytes; a question is at most 2000"), std::string::npos) << longer;
  EXPECT_EQ(server.get("/unibiomed/status").status, 200) << "Orthanc stopped answering";

  // Nothing changed: same state, run, request and time; no job, no queue entry, and it stays so.
  std::this_thread::sleep_for(3s);
  const json after = study(server, spec.study_uid);
  for (const char* key : {"State", "Run", "Attempt", "Request", "Updated", "Error", "Queued", "Job"})
    EXPECT_EQ(after[key], done[key]) << key;
  EXPECT_EQ(our_jobs(server).size(), jobs_before);
  EXPECT_EQ(server.get_json("/unibiomed/status")["Queue"]["Pending"], 0);

  // The same box inside the images is accepted.
  const HttpResult fits = server.post(analyze, R"({"Questions": [{"Text": "What is here?", "Box": [8, 8, 40, 40]}]})");
  EXPECT_EQ(fits.status, 200) << fits.body;
}

TEST_F(OrthancPlugin, EveryRouteAnswersOtherMethodsWith405) {
  json settings = base_settings();
  settings["AutoAnalysis"] = false;
  auto& server = start_server(settings);
  EXPECT_EQ(server.get("/unibiomed/ask").status, 405);
  EXPECT_EQ(server.get("/unibiomed/studies/1.2.3/analyze").status, 405);
  EXPECT_EQ(server.get("/unibiomed/studies/1.2.3/forward").status, 405);
  EXPECT_EQ(server.post("/unibiomed/status", "{}").status, 405);
  EXPECT_EQ(server.post("/unibiomed/studies/1.2.3", "{}").status, 405);
  EXPECT_EQ(server.del("/unibiomed/status").status, 405);
  EXPECT_EQ(server.del("/unibiomed/studies/1.2.3/analyze").status, 405);
  // The right methods still reach the handlers.
  EXPECT_EQ(server.get("/unibiomed/status").status, 200);
  EXPECT_EQ(server.get("/unibiomed/studies/1.2.3").status, 404);
}

TEST_F(OrthancPlugin, AStudyInstanceUidOfTwoPatientsIsAConflictListingBothStudies) {
  json settings = base_settings();
  settings["AutoAnalysis"] = false;
  auto& server = start_server(settings);
  StudySpec first, second;
  first.slices = second.slices = 1;
  first.patient_id = "PATIENT-A";
  second.patient_id = "PATIENT-B";
  second.study_uid = first.study_uid = new_uid();
  send(server, write_ct_series(dir_ / "a", first));
  send(server, write_ct_series(dir_ / "b", second));
  std::vector<std::string> ids;
  for (const auto& r : server.get_json("/studies?expand"))
    if (r["MainDicomTags"]["StudyInstanceUID"] == first.study_uid) ids.push_back(r["ID"]);
  ASSERT_EQ(ids.size(), 2u) << "Orthanc should keep the two patients' studies apart";

  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/unibiomed/studies/" + first.study_uid},
           {"POST", "/unibiomed/studies/" + first.study_uid + "/analyze"}}) {
    const HttpResult r = method == "GET" ? server.get(path) : server.post(path, "");
    EXPECT_EQ(r.status, 409) << method << " " << path << ": " << r.body;
    const std::string error = r.json().value("Error", std::string());
    for (const auto& id : ids) EXPECT_NE(error.find(id), std::string::npos) << error;
    EXPECT_NE(error.find("PATIENT-A"), std::string::npos) << error;
    EXPECT_NE(error.find("PATIENT-B"), std::string::npos) << error;
  }
  // Each Orthanc id still names one study.
  for (const auto& id : ids) {
    const HttpResult r = server.get("/unibiomed/studies/" + id);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["ID"], id);
    EXPECT_EQ(r.json()["State"], "none");
  }
}

TEST_F(OrthancPlugin, AskAnswersAtOnceAndStoresTheGroundedSegmentation) {
  auto& server = start_server(base_settings());
  StudySpec spec;
  spec.slices = 1;
  const auto files = write_ct_series(dir_ / "ct", spec);
  send(server, files);
  ASSERT_EQ(wait_for_end(server, spec.study_uid)["State"], "done");
  const auto instances = server.get_json("/series/" +
                                         server.get_json("/studies/" + study(server, spec.study_uid)["ID"].get<std::string>())["Series"][0].get<std::string>())["Instances"];
  const std::string instance = instances[0];

  const std::string question = "Please segment liver in CT.";
  const HttpResult r = server.post("/unibiomed/ask", json{{"Instance", instance}, {"Question", question}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json a = r.json();
  // The demo checkpoint's answer "Sure, [SEG]." says nothing but the acknowledgement, so the
  // node's sentence names the rules' target the question names (liver), as does its one
  // grounded finding.
  EXPECT_EQ(a["Text"], "Liver.") << a.dump(2);
  ASSERT_EQ(a["Findings"].size(), 1u) << a.dump(2);
  EXPECT_EQ(a["Findings"][0]["Label"], "Liver");
  // Measured in mm: the notes may only say what was dropped (specks under the minimum size).
  ASSERT_TRUE(a["Notes"].is_array()) << a.dump(2);
  for (const auto& note : a["Notes"])
    EXPECT_NE(note.get<std::string>().find("dropped as noise"), std::string::npos) << note;
  // A grounded answer: its SEG is in Orthanc, in the same study, flagged as ours.
  ASSERT_FALSE(a["Segmentation"].is_null()) << a.dump(2);
  const std::string seg = a["Segmentation"]["ID"];
  EXPECT_EQ(server.get_json("/instances/" + seg + "/study")["MainDicomTags"]["StudyInstanceUID"], spec.study_uid);
  EXPECT_EQ(server.get("/instances/" + seg + "/metadata/4405").status, 200);
  // Asking again stores nothing new (same UIDs).
  const HttpResult again = server.post("/unibiomed/ask", json{{"Instance", instance}, {"Question", question}}.dump());
  EXPECT_EQ(again.json()["Segmentation"]["Status"], "AlreadyStored");
  // The ask SEG is ours: it does not trigger another analysis of the study. The study lists it
  // as a result series of no run (0).
  std::this_thread::sleep_for(3s);
  const json after = study(server, spec.study_uid);
  EXPECT_EQ(after["Run"], 1);
  const std::string seg_series = a["Segmentation"]["ParentSeries"];
  bool listed = false;
  for (const auto& series : after["ResultSeries"])
    if (series["ID"] == seg_series) {
      listed = true;
      EXPECT_EQ(series["Run"], 0);
    } else {
      EXPECT_EQ(series["Run"], 1) << series.dump();
    }
  EXPECT_TRUE(listed) << after.dump(2);

  EXPECT_EQ(server.post("/unibiomed/ask", json{{"Instance", "0000"}, {"Question", "x"}}.dump()).status, 400);
  EXPECT_EQ(server.post("/unibiomed/ask", json{{"Instance", "1.2.3.4"}, {"Question", "x"}}.dump()).status, 404);
  EXPECT_EQ(server.post("/unibiomed/ask", json{{"Instance", instance}, {"Question", "x"}, {"Frame", 2}}.dump()).status, 400);
  // Without a question: the message names the field /ask has.
  const HttpResult no_question = server.post("/unibiomed/ask", json{{"Instance", instance}}.dump());
  EXPECT_EQ(no_question.status, 400);
  const std::string no_question_error = no_question.json()["Error"];
  EXPECT_NE(no_question_error.find("\"Question\""), std::string::npos) << no_question_error;
  EXPECT_EQ(no_question_error.find("Text"), std::string::npos) << no_question_error;
  // A box outside the image: named, with the image's size.
  const HttpResult outside = server.post(
      "/unibiomed/ask", json{{"Instance", instance}, {"Question", "x"}, {"Box", {0, 0, 5000, 5000}}}.dump());
  EXPECT_EQ(outside.status, 400) << outside.body;
  const std::string outside_error = outside.json()["Error"];
  EXPECT_NE(outside_error.find("Box [0, 0, 5000, 5000] does not fit instance " + instance), std::string::npos)
      << outside_error;
  EXPECT_NE(outside_error.find(std::to_string(spec.columns) + " x " + std::to_string(spec.rows) + " pixels"),
            std::string::npos)
      << outside_error;
  EXPECT_EQ(server.post("/unibiomed/ask", json{{"Instance", instance}, {"Question", "x"}, {"Box", {0, 0, 5, 5}},
                                                {"Store", false}}.dump())
                .status,
            200);
  // A question longer than the model's context may hold, and a SEG (no image to ask about):
  // request errors, named.
  const HttpResult longer =
      server.post("/unibiomed/ask", json{{"Instance", instance}, {"Question", std::string(2001, 'x')}}.dump());
  EXPECT_EQ(longer.status, 400) << longer.body.substr(0, 300);
  EXPECT_NE(longer.body.find("has 2001 bytes; a question is at most 2000"), std::string::npos) << longer.body;
  const HttpResult of_seg = server.post("/unibiomed/ask", json{{"Instance", seg}, {"Question", "x"}}.dump());
  EXPECT_EQ(of_seg.status, 400) << of_seg.body;
  EXPECT_NE(of_seg.body.find("is no image to ask about: the series is a segmentation (SEG)"), std::string::npos)
      << of_seg.body;
}

TEST_F(OrthancPlugin, TriggerRulesDecideWhatIsAnalysedAutomatically) {
  json settings = base_settings();
  settings["TriggerModalities"] = {"MR"};
  auto& server = start_server(settings);
  StudySpec spec;
  spec.slices = 1;
  send(server, write_ct_series(dir_ / "ct", spec));
  // StableAge 1 s plus two scans: the CT study is left alone...
  std::this_thread::sleep_for(4s);
  EXPECT_EQ(study(server, spec.study_uid)["State"], "none");
  EXPECT_TRUE(our_jobs(server).empty());
  // ...until someone asks.
  ASSERT_EQ(server.post("/unibiomed/studies/" + spec.study_uid + "/analyze", "").status, 200);
  EXPECT_EQ(wait_for_end(server, spec.study_uid)["State"], "done");
}

TEST_F(OrthancPlugin, CancelledJobIsRecordedAndCanBeResubmitted) {
  auto& server = start_server(base_settings());
  StudySpec spec;
  spec.slices = kSlowStudySlices;
  send(server, write_ct_series(dir_ / "ct", spec));
  std::string job;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& j : our_jobs(server))
          if (j["State"] == "Running" && j["Content"]["Stage"] == "model") job = j["ID"];
        return !job.empty();
      },
      kAnalysisTimeout, 20ms));
  ASSERT_EQ(server.post("/jobs/" + job + "/cancel", "").status, 200);
  json s = wait_for_end(server, spec.study_uid);
  EXPECT_EQ(s["State"], "failed") << s.dump(2);
  EXPECT_NE(s["Error"].get<std::string>().find("cancelled"), std::string::npos) << s["Error"];
  ASSERT_EQ(server.post("/jobs/" + job + "/resubmit", "").status, 200);
  ASSERT_TRUE(wait_until([&] { s = study(server, spec.study_uid); return s["State"] == "done"; }, kAnalysisTimeout))
      << s.dump(2);
  EXPECT_EQ(s["Run"], 1);
  EXPECT_EQ(s["Attempt"], 2);
  // The record is written before the job's last step reports to Orthanc.
  EXPECT_TRUE(wait_until([&] { return server.get_json("/jobs/" + job)["State"] == "Success"; }, 30s))
      << server.get_json("/jobs/" + job).dump(2);
  EXPECT_EQ(count_series(server, spec.study_uid, "SEG"), 1u);
}

}  // namespace
}  // namespace unibiomed::test
