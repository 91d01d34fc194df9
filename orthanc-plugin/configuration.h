// The "UniBiomed" section of the Orthanc configuration file, read and validated in one place.
// Every key, its type and its default is listed here; the README's configuration reference is
// generated from the same list (Configuration::reference()).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/analyzer.h"

namespace unibiomed::orthanc {

// Where results go after they are stored in Orthanc.
struct ForwardTarget {
  enum class Kind { None, Sender, Modality } kind = Kind::None;
  std::string modality;  // the DicomModalities key when kind == Modality
};

struct Configuration {
  pipeline::AnalyzerSettings analyzer;           // ModelDirectory, Device, DataType, Threads, TaskRules,
                                                 // MaxSlicesPerSeries, MaxNewTokens, BatchSize,
                                                 // AnswerCacheMegabytes, NodeName
  bool auto_analysis = true;                     // AutoAnalysis
  std::vector<std::string> trigger_modalities;   // TriggerModalities (empty = any)
  std::vector<std::string> trigger_calling_aets; // TriggerCallingAETitles (empty = any)
  ForwardTarget forward;                         // ForwardTo
  int concurrent_analyses = 1;                   // ConcurrentAnalyses
  int max_attempts = 3;                          // MaxAttempts
  int job_priority = 0;                          // JobPriority
  int reconcile_interval_seconds = 10;           // ReconcileInterval
  int forward_timeout_seconds = 600;             // ForwardTimeout
  // SupersededResults: what becomes of the results a later run of the same request replaces.
  enum class Superseded { Keep, Delete, Reject };
  Superseded superseded_results = Superseded::Keep;

  // Scale-out (docs/ORTHANC.md "Scale-out"): the study queue shared by every node of a cluster.
  std::string queue = "local";                   // Queue: local | postgresql
  std::string queue_connection;                  // QueueConnection, else from the "PostgreSQL" section
  int lease_seconds = 60;                        // LeaseSeconds
  std::string cluster_node;                      // ClusterNodeId, else DatabaseServerIdentifier, else host:HttpPort

  // Facts from the rest of the Orthanc configuration that the plugin depends on.
  int orthanc_concurrent_jobs = 2;               // "ConcurrentJobs" (Orthanc's default 2)
  int orthanc_stable_age = 60;                   // "StableAge" (Orthanc's default 60)
  std::vector<std::string> declared_modalities;  // keys of "DicomModalities"

  // The task names of the task rules in effect (TaskRules, else the built-in rules), for checking
  // requests before they are accepted. The rules file is loaded and validated by parse().
  std::vector<std::string> task_names;

  // Parses the whole Orthanc configuration (as OrthancPluginGetConfiguration returns it).
  // Throws PluginError listing every problem (unknown keys, wrong types, bad values, a task rules
  // file that does not load), each naming the key as "UniBiomed.Key".
  static Configuration parse(const nlohmann::json& orthanc_configuration);

  // The configuration as JSON (for GET /unibiomed/status): every key with its effective value.
  nlohmann::json to_json() const;

  // One line per key: name, type, default, meaning (for documentation and --help-like output).
  static std::vector<std::string> reference();
};

}  // namespace unibiomed::orthanc
