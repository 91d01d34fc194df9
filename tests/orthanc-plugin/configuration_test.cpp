// The "UniBiomed" configuration section: defaults, every key, and the errors a user gets for
// unknown keys, wrong types and bad values (each naming the key).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include "orthanc-plugin/configuration.h"
#include "orthanc-plugin/plugin_error.h"
#include "tests/support/test_support.h"

namespace unibiomed::orthanc {
namespace {

using nlohmann::json;

std::string error_of(const json& orthanc) {
  try {
    Configuration::parse(orthanc);
  } catch (const PluginError& e) {
    EXPECT_EQ(e.http_status(), 503);
    return e.what();
  }
  return "";
}

TEST(PluginConfiguration, DefaultsWithoutSection) {
  const Configuration c = Configuration::parse(json::object());
  EXPECT_TRUE(c.analyzer.model_dir.empty());
  EXPECT_EQ(c.analyzer.device, "cpu");
  EXPECT_EQ(c.analyzer.dtype, "auto");
  EXPECT_EQ(c.analyzer.threads, 0);
  EXPECT_EQ(c.analyzer.max_slices_per_series, 300);
  EXPECT_EQ(c.analyzer.node_name, "UniBiomed node");
  EXPECT_EQ(c.analyzer.max_new_tokens, 0);
  EXPECT_EQ(c.analyzer.batch_size, 8);
  EXPECT_EQ(c.analyzer.answer_cache_bytes, size_t(256) << 20);
  EXPECT_FALSE(c.analyzer.previews);
  EXPECT_TRUE(c.auto_analysis);
  EXPECT_TRUE(c.trigger_modalities.empty());
  EXPECT_TRUE(c.trigger_calling_aets.empty());
  EXPECT_EQ(c.forward.kind, ForwardTarget::Kind::None);
  EXPECT_EQ(c.concurrent_analyses, 1);
  EXPECT_EQ(c.max_attempts, 3);
  EXPECT_EQ(c.reconcile_interval_seconds, 10);
  EXPECT_EQ(c.forward_timeout_seconds, 600);
  EXPECT_EQ(c.superseded_results, Configuration::Superseded::Keep) << "results of earlier runs are kept unless asked";
  EXPECT_EQ(c.orthanc_concurrent_jobs, 2);
}

TEST(PluginConfiguration, TheSharedQueueTakesItsDatabaseFromThePostgreSqlSection) {
  const Configuration local = Configuration::parse(json::object());
  EXPECT_EQ(local.queue, "local");
  EXPECT_EQ(local.lease_seconds, 60);

  const json pg = {{"EnableIndex", true}, {"Host", "db.example"}, {"Port", 5433}, {"Database", "pacs"},
                   {"Username", "orthanc"}, {"Password", "it's secret"}, {"Lock", false}};
  const Configuration c = Configuration::parse(
      {{"PostgreSQL", pg}, {"DatabaseServerIdentifier", "gpu-1"}, {"UniBiomed", {{"Queue", "postgresql"}, {"LeaseSeconds", 30}}}});
  EXPECT_EQ(c.queue, "postgresql");
  EXPECT_EQ(c.lease_seconds, 30);
  EXPECT_EQ(c.queue_connection,
            "host='db.example' port='5433' dbname='pacs' user='orthanc' password='it\\'s secret'");
  EXPECT_EQ(c.cluster_node, "gpu-1");
  // The password never shows in GET /unibiomed/status.
  const std::string shown = c.to_json()["QueueConnection"];
  EXPECT_EQ(shown.find("secret"), std::string::npos) << shown;
  EXPECT_NE(shown.find("password=***"), std::string::npos) << shown;

  // A URI, its own connection and node name, and the host:port fallback for the name.
  json with_uri = pg;
  with_uri["ConnectionUri"] = "postgresql://orthanc:pw@db.example:5433/pacs";
  const Configuration u = Configuration::parse({{"PostgreSQL", with_uri}, {"HttpPort", 8043},
                                                {"UniBiomed", {{"Queue", "postgresql"}}}});
  EXPECT_EQ(u.queue_connection, "postgresql://orthanc:pw@db.example:5433/pacs");
  EXPECT_EQ(u.to_json()["QueueConnection"], "postgresql://orthanc:***@db.example:5433/pacs");
  EXPECT_NE(u.cluster_node.find(":8043"), std::string::npos) << u.cluster_node;
  const Configuration own = Configuration::parse(
      {{"PostgreSQL", pg},
       {"UniBiomed", {{"Queue", "postgresql"}, {"QueueConnection", "host=queue-db dbname=q"}, {"ClusterNodeId", "n7"}}}});
  EXPECT_EQ(own.queue_connection, "host=queue-db dbname=q");
  EXPECT_EQ(own.cluster_node, "n7");
}

TEST(PluginConfiguration, TheSharedQueueNeedsTheSharedIndex) {
  // Orthanc ids in the queue mean the same study on every node only with one shared index.
  const std::string e = error_of({{"UniBiomed", {{"Queue", "postgresql"}, {"QueueConnection", "host=db"}}}});
  EXPECT_NE(e.find("needs Orthanc's index in PostgreSQL"), std::string::npos) << e;
  const std::string off = error_of(
      {{"PostgreSQL", {{"EnableIndex", false}}}, {"UniBiomed", {{"Queue", "postgresql"}}}});
  EXPECT_NE(off.find("needs Orthanc's index in PostgreSQL"), std::string::npos) << off;
  EXPECT_NE(error_of({{"UniBiomed", {{"Queue", "redis"}}}}).find("UniBiomed.Queue must be \"local\" or \"postgresql\""),
            std::string::npos);
  EXPECT_NE(error_of({{"UniBiomed", {{"LeaseSeconds", 1}}}}).find("UniBiomed.LeaseSeconds must be between 3"),
            std::string::npos);
}

TEST(PluginConfiguration, ReadsEveryKey) {
  test::TempDir dir;
  test::write_file(dir / "rules.json", R"({"version": 1, "extends": "defaults"})");
  const json orthanc = {{"ConcurrentJobs", 4},
                        {"DicomModalities", {{"pacs", {"PACS", "127.0.0.1", 104}}}},
                        {"UniBiomed",
                         {{"ModelDirectory", "/models/unibiomed"},
                          {"Device", "cuda:1"},
                          {"DataType", "bfloat16"},
                          {"Threads", 8},
                          {"TaskRules", (dir / "rules.json").string()},
                          {"MaxSlicesPerSeries", 120},
                          {"MaxNewTokens", 32},
                          {"BatchSize", 2},
                          {"AnswerCacheMegabytes", 0},
                          {"NodeName", "Node A"},
                          {"AutoAnalysis", false},
                          {"TriggerModalities", {"CT", "MR"}},
                          {"TriggerCallingAETitles", {"SCANNER1"}},
                          {"ForwardTo", "pacs"},
                          {"ConcurrentAnalyses", 3},
                          {"MaxAttempts", 5},
                          {"JobPriority", 7},
                          {"ReconcileInterval", 30},
                          {"ForwardTimeout", 60},
                          {"SupersededResults", "delete"}}}};
  const Configuration c = Configuration::parse(orthanc);
  EXPECT_EQ(c.analyzer.model_dir, "/models/unibiomed");
  EXPECT_EQ(c.analyzer.device, "cuda:1");
  EXPECT_EQ(c.analyzer.dtype, "bfloat16");
  EXPECT_EQ(c.analyzer.threads, 8);
  EXPECT_EQ(c.analyzer.task_rules, dir / "rules.json");
  EXPECT_EQ(c.analyzer.max_slices_per_series, 120);
  EXPECT_EQ(c.analyzer.max_new_tokens, 32);
  EXPECT_EQ(c.analyzer.batch_size, 2);
  EXPECT_EQ(c.analyzer.answer_cache_bytes, 0u);
  EXPECT_EQ(c.analyzer.node_name, "Node A");
  EXPECT_FALSE(c.auto_analysis);
  EXPECT_EQ(c.trigger_modalities, (std::vector<std::string>{"CT", "MR"}));
  EXPECT_EQ(c.trigger_calling_aets, (std::vector<std::string>{"SCANNER1"}));
  EXPECT_EQ(c.forward.kind, ForwardTarget::Kind::Modality);
  EXPECT_EQ(c.forward.modality, "pacs");
  EXPECT_EQ(c.concurrent_analyses, 3);
  EXPECT_EQ(c.max_attempts, 5);
  EXPECT_EQ(c.job_priority, 7);
  EXPECT_EQ(c.reconcile_interval_seconds, 30);
  EXPECT_EQ(c.forward_timeout_seconds, 60);
  EXPECT_EQ(c.superseded_results, Configuration::Superseded::Delete);
  // to_json gives back what was read, key for key.
  for (const auto& [key, value] : orthanc["UniBiomed"].items()) EXPECT_EQ(c.to_json()[key], value) << key;
}

TEST(PluginConfiguration, SupersededResultsCanBeRejectedWithANote) {
  const Configuration c = Configuration::parse({{"UniBiomed", {{"SupersededResults", "reject"}}}});
  EXPECT_EQ(c.superseded_results, Configuration::Superseded::Reject);
  EXPECT_EQ(c.to_json()["SupersededResults"], "reject");
  EXPECT_EQ(Configuration::parse(json::object()).to_json()["SupersededResults"], "keep");
}

TEST(PluginConfiguration, ForwardToRemoteAetNeedsNoModality) {
  const Configuration c = Configuration::parse({{"UniBiomed", {{"ForwardTo", "RemoteAET"}}}});
  EXPECT_EQ(c.forward.kind, ForwardTarget::Kind::Sender);
}

TEST(PluginConfiguration, EveryProblemIsNamedAtOnce) {
  const std::string e = error_of({{"UniBiomed",
                                   {{"Modeldirectory", "/x"},
                                    {"Threads", "four"},
                                    {"Device", "gpu"},
                                    {"DataType", "fp8"},
                                    {"MaxSlicesPerSeries", 0},
                                    {"AutoAnalysis", "yes"},
                                    {"TriggerModalities", "CT"},
                                    {"TriggerCallingAETitles", {"AN_AE_TITLE_LONGER_THAN_16"}},
                                    {"TaskRules", "/nonexistent/rules.json"},
                                    {"ConcurrentAnalyses", 1.5},
                                    {"SupersededResults", "remove"}}}});
  EXPECT_NE(e.find("UniBiomed.Modeldirectory: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("known keys: ModelDirectory"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.Threads must be an integer, not a string"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.Device must be \"cpu\", \"cuda\" or \"cuda:N\", not \"gpu\""), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.DataType"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.MaxSlicesPerSeries must be between 1 and"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.AutoAnalysis must be true or false"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.TriggerModalities must be an array of strings"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.TriggerCallingAETitles entry 0"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.TaskRules names \"/nonexistent/rules.json\""), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.ConcurrentAnalyses must be an integer, not a number"), std::string::npos) << e;
  EXPECT_NE(e.find("UniBiomed.SupersededResults must be \"keep\", \"delete\" or \"reject\", not \"remove\""),
            std::string::npos)
      << e;
}

// Values that would only fail later, named at start: a node name longer than the SR's Device
// Observer Name holds, a task rule's window the renderer does not have (it would fail the
// model's loading, reported as such), a negative answer cache.
TEST(PluginConfiguration, ValuesThatWouldFailLaterAreNamedAtStart) {
  test::TempDir dir;
  test::write_file(dir / "rules.json", R"({"version": 1, "extends": "defaults", "rules": [{"name": "ct-x",
      "match": {"modality": ["CT"]}, "modality_phrase": "CT", "tasks": [{"name": "liv", "family": "segmentation", "targets": ["liver"],
      "window": "brain"}]}]})");
  const std::string e = error_of({{"UniBiomed",
                                   {{"NodeName", std::string(63, 'N') + "\xC3\xA9tail"},
                                    {"TaskRules", (dir / "rules.json").string()},
                                    {"AnswerCacheMegabytes", -1}}}});
  EXPECT_NE(e.find("UniBiomed.NodeName has 69 bytes; it is the SR's Device Observer Name, which holds at most 64"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("UniBiomed.TaskRules: task rules (" + (dir / "rules.json").string() +
                   "): rule ct-x, task liv: unknown window preset 'brain' (known: "),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("UniBiomed.AnswerCacheMegabytes must be between 0 and"), std::string::npos) << e;
}

TEST(PluginConfiguration, SectionMustBeAnObject) {
  EXPECT_NE(error_of({{"UniBiomed", {1, 2}}}).find("\"UniBiomed\" must be an object, not an array"), std::string::npos);
}

TEST(PluginConfiguration, ForwardToMustNameADeclaredModality) {
  const std::string e = error_of({{"DicomModalities", {{"pacs", {"PACS", "127.0.0.1", 104}}}},
                                  {"UniBiomed", {{"ForwardTo", "archive"}}}});
  EXPECT_NE(e.find("UniBiomed.ForwardTo names \"archive\", which is not an entry of DicomModalities"),
            std::string::npos)
      << e;
  // With modalities kept in the database, the name can only be checked when forwarding.
  EXPECT_NO_THROW(Configuration::parse(
      {{"DicomModalitiesInDatabase", true}, {"UniBiomed", {{"ForwardTo", "archive"}}}}));
}

TEST(PluginConfiguration, ForwardingKeepsAJobsWorkerFree) {
  const json base = {{"ConcurrentJobs", 2},
                     {"DicomModalities", {{"pacs", {"PACS", "127.0.0.1", 104}}}},
                     {"UniBiomed", {{"ForwardTo", "pacs"}, {"ConcurrentAnalyses", 2}}}};
  const std::string e = error_of(base);
  EXPECT_NE(e.find("UniBiomed.ConcurrentAnalyses (2) must be lower than Orthanc's ConcurrentJobs (2)"),
            std::string::npos)
      << e;
  json more_workers = base;
  more_workers["ConcurrentJobs"] = 3;
  EXPECT_NO_THROW(Configuration::parse(more_workers));
  json no_forwarding = base;
  no_forwarding["UniBiomed"].erase("ForwardTo");
  EXPECT_NO_THROW(Configuration::parse(no_forwarding));
}

TEST(PluginConfiguration, ReferenceListsEveryKeyWithItsDefault) {
  const auto lines = Configuration::reference();
  const auto keys = Configuration::parse(json::object()).to_json();
  EXPECT_EQ(lines.size(), keys.size());
  for (const auto& [key, value] : keys.items()) {
    bool found = false;
    for (const auto& line : lines) found = found || line.rfind(key + " (", 0) == 0;
    EXPECT_TRUE(found) << key << " is not documented in Configuration::reference()";
  }
}

}  // namespace
}  // namespace unibiomed::orthanc
