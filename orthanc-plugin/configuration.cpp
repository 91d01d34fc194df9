// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/configuration.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include "config/task_rules.h"
#include "dicom/window.h"
#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/request_checks.h"

namespace unibiomed::orthanc {

namespace {

using nlohmann::json;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "a value of another type";
  }
}

// One documented key: how to read it into the Configuration, and its help line.
struct Key {
  const char* name;
  const char* type;
  const char* default_text;
  const char* meaning;
  // Reads the value; returns a problem description (empty when the value is fine).
  std::function<std::string(const json&, Configuration&)> read;
};

std::string read_string(const json& v, std::string& out) {
  if (!v.is_string()) return std::string("must be a string, not ") + type_name(v);
  out = v.get<std::string>();
  return {};
}

std::string read_bool(const json& v, bool& out) {
  if (!v.is_boolean()) return std::string("must be true or false, not ") + type_name(v);
  out = v.get<bool>();
  return {};
}

std::string read_int(const json& v, int& out, long min, long max) {
  if (!v.is_number_integer()) return std::string("must be an integer, not ") + type_name(v);
  const long value = v.get<long>();
  if (value < min || value > max)
    return "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", not " + std::to_string(value);
  out = static_cast<int>(value);
  return {};
}

std::string read_string_list(const json& v, std::vector<std::string>& out, const std::regex& pattern,
                             const char* what) {
  if (!v.is_array()) return std::string("must be an array of strings, not ") + type_name(v);
  out.clear();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string())
      return "entry " + std::to_string(i) + " must be a string, not " + type_name(v[i]);
    const auto s = v[i].get<std::string>();
    if (!std::regex_match(s, pattern)) return "entry " + std::to_string(i) + " (\"" + s + "\") is not " + what;
    out.push_back(s);
  }
  return {};
}

const std::vector<Key>& keys() {
  static const std::vector<Key> table = {
      {"ModelDirectory", "string", "\"\"",
       "UniBiomed checkpoint folder (config.json, *.safetensors, tokenizer). Without it the plugin runs, "
       "records arriving studies as pending and says why on every request",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         c.analyzer.model_dir = s;
         return std::string();
       }},
      {"Device", "string", "\"cpu\"", "cpu, cuda or cuda:N",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (!std::regex_match(s, std::regex("cpu|cuda(:[0-9]+)?")))
           return "must be \"cpu\", \"cuda\" or \"cuda:N\", not \"" + s + "\"";
         c.analyzer.device = s;
         return std::string();
       }},
      {"DataType", "string", "\"auto\"",
       "auto (bfloat16 on a GPU and on a CPU with bfloat16 dot products, float32 on other CPUs), float32, bfloat16 or "
       "float16",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (s != "auto" && s != "float32" && s != "bfloat16" && s != "float16")
           return "must be \"auto\", \"float32\", \"bfloat16\" or \"float16\", not \"" + s + "\"";
         c.analyzer.dtype = s;
         return std::string();
       }},
      {"Threads", "integer", "0", "CPU threads for the model (0 = every core)",
       [](const json& v, Configuration& c) { return read_int(v, c.analyzer.threads, 0, 1024); }},
      {"TaskRules", "string", "\"\"", "task rules file (JSON); empty = the built-in rules (config/task-rules.json)",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (!s.empty() && !std::filesystem::is_regular_file(s))
           return "names \"" + s + "\", which is not a readable file";
         c.analyzer.task_rules = s;
         return std::string();
       }},
      {"MaxSlicesPerSeries", "integer", "300",
       "the most views of one series the model sees; longer series are subsampled (the rules' selection, then an "
       "even stride within each stack, cine or image, each keeping at least one view)",
       [](const json& v, Configuration& c) { return read_int(v, c.analyzer.max_slices_per_series, 1, 100000); }},
      {"MaxNewTokens", "integer", "0",
       "longest answer the model may generate per question, in tokens (0 = the model's default, 2048)",
       [](const json& v, Configuration& c) { return read_int(v, c.analyzer.max_new_tokens, 0, 1000000); }},
      {"BatchSize", "integer", "8", "views the model encodes and answers together",
       [](const json& v, Configuration& c) { return read_int(v, c.analyzer.batch_size, 1, 1024); }},
      {"AnswerCacheMegabytes", "integer", "256",
       "memory (MiB) kept for the model's answers per series, so that a study analysed again (a series that "
       "arrived later, a corrected slice) asks the model only about series whose images or questions changed; the "
       "others' answers are reused (0 = off)",
       [](const json& v, Configuration& c) {
         int megabytes = 0;
         if (auto e = read_int(v, megabytes, 0, 1 << 20); !e.empty()) return e;
         c.analyzer.answer_cache_bytes = size_t(megabytes) << 20;
         return std::string();
       }},
      {"NodeName", "string", "\"UniBiomed node\"", "device name written into the SR observer context",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (s.empty()) return std::string("must not be empty");
         if (s.size() > 64)
           return "has " + std::to_string(s.size()) +
                  " bytes; it is the SR's Device Observer Name, which holds at most 64 (UTF-8)";
         c.analyzer.node_name = s;
         return std::string();
       }},
      {"AutoAnalysis", "boolean", "true", "analyse every study that becomes stable (false: only on request)",
       [](const json& v, Configuration& c) { return read_bool(v, c.auto_analysis); }},
      {"TriggerModalities", "array of strings", "[]",
       "auto-analysis only for studies with a series of one of these modalities, e.g. [\"CT\", \"MR\"] (empty = any)",
       [](const json& v, Configuration& c) {
         return read_string_list(v, c.trigger_modalities, std::regex("[A-Z0-9_ ]{1,16}"),
                                 "a DICOM Modality value (upper case, at most 16 characters)");
       }},
      {"TriggerCallingAETitles", "array of strings", "[]",
       "auto-analysis only for studies received from one of these calling AE titles (empty = any sender, "
       "including REST uploads)",
       [](const json& v, Configuration& c) {
         return read_string_list(v, c.trigger_calling_aets, std::regex("[^\\\\]{1,16}"),
                                 "an AE title (1 to 16 characters, no backslash)");
       }},
      {"ForwardTo", "string", "\"\"",
       "where results are sent after they are stored: \"\" (nowhere), \"RemoteAET\" (the modality whose AET sent "
       "the study) or the name of an entry of DicomModalities",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (s.empty())
           c.forward = {ForwardTarget::Kind::None, ""};
         else if (s == "RemoteAET")
           c.forward = {ForwardTarget::Kind::Sender, ""};
         else
           c.forward = {ForwardTarget::Kind::Modality, s};
         return std::string();
       }},
      {"ConcurrentAnalyses", "integer", "1",
       "studies analysed at the same time (each holds one of Orthanc's ConcurrentJobs workers; when "
       "forwarding, it must stay below ConcurrentJobs so that the store jobs can run)",
       [](const json& v, Configuration& c) { return read_int(v, c.concurrent_analyses, 1, 64); }},
      {"MaxAttempts", "integer", "3",
       "a study whose analysis was interrupted by a crash this many times is marked failed instead of resumed",
       [](const json& v, Configuration& c) { return read_int(v, c.max_attempts, 1, 100); }},
      {"JobPriority", "integer", "0", "priority of the UniBiomedAnalysis jobs in Orthanc's jobs engine",
       [](const json& v, Configuration& c) { return read_int(v, c.job_priority, -1000000, 1000000); }},
      {"ReconcileInterval", "integer", "10",
       "seconds between scans of /changes that catch studies whose StableStudy event was missed",
       [](const json& v, Configuration& c) { return read_int(v, c.reconcile_interval_seconds, 1, 86400); }},
      {"ForwardTimeout", "integer", "600", "seconds to wait for a forwarding store job before recording a failure",
       [](const json& v, Configuration& c) { return read_int(v, c.forward_timeout_seconds, 1, 86400); }},
      {"SupersededResults", "string", "\"keep\"",
       "what happens to the SEGs and SR of an analysis that a later run of the same request replaces (every series "
       "it analysed analysed again; its report named as the new report's predecessor): \"keep\"; \"delete\" them "
       "from this Orthanc (copies already forwarded stay where they went); or \"reject\": delete them and store an "
       "IHE IOCM rejection note (a Key Object Selection \"Rejected for Quality Reasons\" listing them) that is "
       "forwarded with the new results, so that an archive supporting IOCM withdraws its copies too",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (s == "keep")
           c.superseded_results = Configuration::Superseded::Keep;
         else if (s == "delete")
           c.superseded_results = Configuration::Superseded::Delete;
         else if (s == "reject")
           c.superseded_results = Configuration::Superseded::Reject;
         else
           return "must be \"keep\", \"delete\" or \"reject\", not \"" + s + "\"";
         return std::string();
       }},
      {"Queue", "string", "\"local\"",
       "\"local\" (one node: the queue in a global property of this Orthanc) or \"postgresql\" (several nodes on one "
       "PostgreSQL index: a shared queue table in which each study is claimed by exactly one node)",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (s != "local" && s != "postgresql") return "must be \"local\" or \"postgresql\", not \"" + s + "\"";
         c.queue = s;
         return std::string();
       }},
      {"QueueConnection", "string", "\"\"",
       "libpq connection string or URI of the shared queue's database (\"\" = the database of the PostgreSQL plugin's "
       "section: Host, Port, Database, Username, Password or ConnectionUri)",
       [](const json& v, Configuration& c) { return read_string(v, c.queue_connection); }},
      {"LeaseSeconds", "integer", "60",
       "with the shared queue: a node renews its claim on a study every LeaseSeconds/3; a node that stops renewing "
       "(it died) loses the study to another node after this long",
       [](const json& v, Configuration& c) { return read_int(v, c.lease_seconds, 3, 86400); }},
      {"ClusterNodeId", "string", "\"\"",
       "this node's name in the shared queue, unique per node (\"\" = Orthanc's DatabaseServerIdentifier, else "
       "<host name>:<HttpPort>)",
       [](const json& v, Configuration& c) {
         std::string s;
         if (auto e = read_string(v, s); !e.empty()) return e;
         if (s.size() > 128) return std::string("must be at most 128 characters");
         c.cluster_node = s;
         return std::string();
       }},
  };
  return table;
}

// libpq keyword=value with the value quoted (PostgreSQL docs, "Keyword/Value Connection Strings").
std::string conninfo_value(const std::string& value) {
  std::string out = "'";
  for (char ch : value) {
    if (ch == '\'' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "'";
}

// The shared queue's connection (from the PostgreSQL plugin's section unless given) and this
// node's name. The queue holds Orthanc ids, which mean the same thing on every node only when
// the index itself is shared: without the PostgreSQL index the setting is refused.
void derive_cluster_settings(const json& orthanc, Configuration& c, std::vector<std::string>& problems) {
  const auto pg = orthanc.find("PostgreSQL");
  const bool has_section = pg != orthanc.end() && pg->is_object();
  const bool shared_index = has_section && pg->value("EnableIndex", false) == true;
  if (!shared_index)
    problems.push_back(
        "UniBiomed.Queue \"postgresql\" needs Orthanc's index in PostgreSQL (\"PostgreSQL\": {\"EnableIndex\": true, "
        "...} with the orthanc-postgresql plugin), so that every node sees the same studies");
  if (c.queue_connection.empty() && has_section) {
    if (pg->contains("ConnectionUri") && (*pg)["ConnectionUri"].is_string()) {
      c.queue_connection = (*pg)["ConnectionUri"].get<std::string>();
    } else {
      auto text = [&](const char* key, const std::string& fallback) {
        auto it = pg->find(key);
        if (it == pg->end()) return fallback;
        return it->is_string() ? it->get<std::string>() : it->dump();
      };
      c.queue_connection = "host=" + conninfo_value(text("Host", "localhost")) +
                           " port=" + conninfo_value(text("Port", "5432")) +
                           " dbname=" + conninfo_value(text("Database", "orthanc"));
      if (pg->contains("Username")) c.queue_connection += " user=" + conninfo_value(text("Username", ""));
      if (pg->contains("Password")) c.queue_connection += " password=" + conninfo_value(text("Password", ""));
    }
  }
  if (c.queue_connection.empty())
    problems.push_back("UniBiomed.Queue \"postgresql\" needs UniBiomed.QueueConnection or a \"PostgreSQL\" section");
  if (c.cluster_node.empty()) {
    if (auto it = orthanc.find("DatabaseServerIdentifier"); it != orthanc.end() && it->is_string())
      c.cluster_node = it->get<std::string>();
  }
  if (c.cluster_node.empty()) {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "%s", "localhost");
    const auto port = orthanc.find("HttpPort");
    c.cluster_node = std::string(host) + ":" +
                     (port != orthanc.end() && port->is_number_integer() ? std::to_string(port->get<int>()) : "8042");
  }
}

// The connection string for display: passwords replaced.
std::string without_password(const std::string& connection) {
  std::string out = std::regex_replace(connection, std::regex("(password\\s*=\\s*)('([^'\\\\]|\\\\.)*'|\\S+)"), "$1***");
  return std::regex_replace(out, std::regex("(://[^:/@]*:)[^@]*@"), "$1***@");
}

}  // namespace

Configuration Configuration::parse(const json& orthanc_configuration) {
  Configuration c;
  // The plugin stores SEG and SR; the pipeline's PNG previews would be computed for nothing.
  c.analyzer.previews = false;
  // A node analyses a study again when images arrive later: it keeps the answers (AnswerCacheMegabytes).
  c.analyzer.answer_cache_bytes = size_t(256) << 20;
  std::vector<std::string> problems;

  if (orthanc_configuration.contains("ConcurrentJobs")) {
    const auto& v = orthanc_configuration["ConcurrentJobs"];
    if (v.is_number_integer() && v.get<long>() >= 0) c.orthanc_concurrent_jobs = v.get<int>();
  }
  if (auto it = orthanc_configuration.find("StableAge");
      it != orthanc_configuration.end() && it->is_number_integer() && it->get<long>() >= 0)
    c.orthanc_stable_age = it->get<int>();
  bool modalities_in_database = false;
  if (auto it = orthanc_configuration.find("DicomModalitiesInDatabase");
      it != orthanc_configuration.end() && it->is_boolean())
    modalities_in_database = it->get<bool>();
  if (auto it = orthanc_configuration.find("DicomModalities"); it != orthanc_configuration.end() && it->is_object())
    for (const auto& [name, value] : it->items()) c.declared_modalities.push_back(name);

  const auto section = orthanc_configuration.find("UniBiomed");
  if (section != orthanc_configuration.end()) {
    if (!section->is_object()) {
      problems.push_back(std::string("\"UniBiomed\" must be an object, not ") + type_name(*section));
    } else {
      std::map<std::string, const Key*> by_name;
      for (const auto& k : keys()) by_name[k.name] = &k;
      for (const auto& [name, value] : section->items()) {
        auto k = by_name.find(name);
        if (k == by_name.end()) {
          std::string known;
          for (const auto& kk : keys()) known += std::string(known.empty() ? "" : ", ") + kk.name;
          problems.push_back("UniBiomed." + name + ": unknown key (known keys: " + known + ")");
          continue;
        }
        if (auto problem = k->second->read(value, c); !problem.empty())
          problems.push_back("UniBiomed." + name + " " + problem);
      }
    }
  }

  // The rules file the analyzer will load, loaded now: a broken file is a configuration problem
  // reported at start, and requests can be checked against its task names.
  try {
    const config::TaskRules rules = config::TaskRules::load_or_defaults(c.analyzer.task_rules);
    c.task_names = orthanc::task_names(rules);
    // A window the renderer does not have would fail the model's loading, reported as such.
    std::vector<std::string> windows;
    for (const auto& preset : dicom::ct_window_presets()) windows.push_back(preset.name);
    if (const std::string unknown = rules.unknown_window(windows); !unknown.empty())
      problems.push_back("UniBiomed.TaskRules: " + unknown);
  } catch (const config::ConfigError& e) {
    problems.push_back(std::string("UniBiomed.TaskRules: ") + e.what());
  }

  if (c.queue == "postgresql") derive_cluster_settings(orthanc_configuration, c, problems);

  if (c.forward.kind == ForwardTarget::Kind::Modality && !modalities_in_database) {
    bool found = false;
    for (const auto& m : c.declared_modalities) found = found || m == c.forward.modality;
    if (!found)
      problems.push_back("UniBiomed.ForwardTo names \"" + c.forward.modality +
                         "\", which is not an entry of DicomModalities (use \"RemoteAET\" to answer the sender)");
  }
  // Each analysis holds a jobs-engine worker while it waits for its forwarding store job, so at
  // least one worker must stay free or all of them wait forever (ORTHANC.md, jobs engine).
  if (c.forward.kind != ForwardTarget::Kind::None && c.concurrent_analyses >= c.orthanc_concurrent_jobs)
    problems.push_back("UniBiomed.ConcurrentAnalyses (" + std::to_string(c.concurrent_analyses) +
                       ") must be lower than Orthanc's ConcurrentJobs (" + std::to_string(c.orthanc_concurrent_jobs) +
                       ") when results are forwarded, or the forwarding jobs can never run");

  if (!problems.empty()) {
    std::ostringstream message;
    message << "invalid UniBiomed configuration: ";
    for (size_t i = 0; i < problems.size(); ++i) message << (i ? "; " : "") << problems[i];
    throw PluginError(message.str(), 503);
  }
  return c;
}

nlohmann::json Configuration::to_json() const {
  json forward_to = "";
  if (forward.kind == ForwardTarget::Kind::Sender) forward_to = "RemoteAET";
  if (forward.kind == ForwardTarget::Kind::Modality) forward_to = forward.modality;
  return {{"ModelDirectory", analyzer.model_dir.string()},
          {"Device", analyzer.device},
          {"DataType", analyzer.dtype},
          {"Threads", analyzer.threads},
          {"TaskRules", analyzer.task_rules.string()},
          {"MaxSlicesPerSeries", analyzer.max_slices_per_series},
          {"MaxNewTokens", analyzer.max_new_tokens},
          {"BatchSize", analyzer.batch_size},
          {"AnswerCacheMegabytes", static_cast<int64_t>(analyzer.answer_cache_bytes >> 20)},
          {"NodeName", analyzer.node_name},
          {"AutoAnalysis", auto_analysis},
          {"TriggerModalities", trigger_modalities},
          {"TriggerCallingAETitles", trigger_calling_aets},
          {"ForwardTo", forward_to},
          {"ConcurrentAnalyses", concurrent_analyses},
          {"MaxAttempts", max_attempts},
          {"JobPriority", job_priority},
          {"ReconcileInterval", reconcile_interval_seconds},
          {"ForwardTimeout", forward_timeout_seconds},
          {"SupersededResults", superseded_results == Superseded::Reject   ? "reject"
                                : superseded_results == Superseded::Delete ? "delete"
                                                                           : "keep"},
          {"Queue", queue},
          {"QueueConnection", without_password(queue_connection)},
          {"LeaseSeconds", lease_seconds},
          {"ClusterNodeId", cluster_node}};
}

std::vector<std::string> Configuration::reference() {
  std::vector<std::string> lines;
  for (const auto& k : keys())
    lines.push_back(std::string(k.name) + " (" + k.type + ", default " + k.default_text + "): " + k.meaning);
  return lines;
}

}  // namespace unibiomed::orthanc
