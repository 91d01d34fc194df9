// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/study_analysis.h"

#include <algorithm>

#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/rejection_note.h"
#include "orthanc-plugin/result_json.h"

namespace unibiomed::orthanc {

namespace {

// Thrown inside run() once a failure has already been written to the study.
struct RecordedFailure {
  std::string message;
};
struct Cancelled {};

// Progress of the whole attempt: reading the images, the model, storing, forwarding.
constexpr float kReadEnd = 0.10f, kModelEnd = 0.85f, kStoreEnd = 0.95f;

// Whether the study's records say this run already finished its analysis (stored its results,
// or found nothing to analyse).
bool finished(const StudyRecord& record, int run) {
  return (record.state == StudyState::Done || record.state == StudyState::Skipped) && record.run.run == run;
}

// The study's current report of the task rules (summary "Report"): the SR of the last run that
// asked rule tasks and stored one, with what that run asked, which series it analysed and every
// object it stored. A run that does not replace it (questions only, nothing found, failed)
// carries it on into its own summary. null: none.
nlohmann::json recorded_report(const nlohmann::json& summary) {
  if (!summary.is_object() || !summary.contains("Report") || !summary["Report"].is_object()) return nullptr;
  return summary["Report"];
}

// Whether that report's SR is still in the study (a user may have deleted it).
bool in_study(const nlohmann::json& report, const StudyInventory& inventory) {
  const std::string id = report.value("ID", std::string());
  for (const auto& s : inventory.series)
    if (s.result && s.series_instance_uid == report.value("SeriesInstanceUID", std::string()) &&
        std::find(s.instances.begin(), s.instances.end(), id) != s.instances.end())
      return true;
  return false;
}

// The seed of a run's result UIDs: a resumed attempt writes the same objects again.
std::string run_seed(const std::string& study_uid, int run) {
  return study_uid + "/unibiomed-run-" + std::to_string(run);
}

bool asks_rules(const pipeline::AnalysisRequest& request) {
  return request.rules || !request.tasks.empty();
}

// A request as two runs compare it, in one form whatever way it was written: no request, {} and
// {"Tasks": []} all ask the rules alone; tasks are a set.
nlohmann::json comparable(const nlohmann::json& request) {
  pipeline::AnalysisRequest r;
  try {
    r = request_from_json(request);
  } catch (const PluginError&) {
    return request;  // not a request this node reads (it was checked when accepted): as written
  }
  std::sort(r.tasks.begin(), r.tasks.end());
  r.tasks.erase(std::unique(r.tasks.begin(), r.tasks.end()), r.tasks.end());
  nlohmann::json questions = nlohmann::json::array();
  for (const auto& q : r.questions)
    questions.push_back({{"Text", q.text},
                         {"SeriesInstanceUID", q.series_instance_uid},
                         {"Box", q.box ? nlohmann::json(*q.box) : nlohmann::json(nullptr)}});
  return {{"Rules", r.rules}, {"Tasks", r.tasks}, {"Questions", questions}};
}

}  // namespace

StudyAnalysis::StudyAnalysis(std::shared_ptr<NodeServices> services, QueueEntry entry, std::string job_id)
    : services_(std::move(services)), entry_(std::move(entry)), job_id_(std::move(job_id)) {}

void StudyAnalysis::cancel(CancelReason reason) {
  cancel_reason_ = reason;
  cancel_ = true;
  changed_.notify_all();
}

void StudyAnalysis::check_cancelled() const {
  if (cancel_) throw Cancelled{};
}

void StudyAnalysis::check_lease() {
  // A node that paused longer than its lease (not one that died: that one writes nothing) must
  // not commit over the node that took the study over. Both would store the same result UIDs.
  if (services_->queue->shared() && !services_->queue->holds(entry_.study_id, entry_.run)) {
    cancel(CancelReason::LeaseLost);
    throw Cancelled{};
  }
}

void StudyAnalysis::set_stage(const std::string& stage, const std::string& message, float progress) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stage_ = stage;
    message_ = message;
    progress_ = std::max(progress_, progress);
  }
  changed_.notify_all();
}

void StudyAnalysis::wait(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, timeout);
}

StudyAnalysis::Snapshot StudyAnalysis::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Snapshot s;
  s.outcome = outcome_;
  s.progress = progress_;
  s.error = error_;
  s.skipped = skipped_;
  const int done = outcome_ == Outcome::Running ? std::max(0, static_cast<int>(series_seen_.size()) - 1)
                                                : static_cast<int>(series_.size());
  // The key "Type" is reserved by Orthanc's job serialisation; it is not used here.
  s.content = {{"Study", entry_.study_id},
               {"StudyInstanceUID", study_uid_},
               {"Run", entry_.run},
               {"Attempt", attempt_},
               {"Mode", entry_.mode},
               {"Stage", stage_},
               {"Message", message_},
               {"SeriesTotal", series_total_},
               {"SeriesDone", done},
               {"Series", series_},
               {"FindingsCount", findings_.size()},
               {"Findings", findings_},
               {"Errors", errors_},
               {"Results", results_},
               {"Forward", forward_}};
  if (!error_.empty()) s.content["Error"] = error_;
  return s;
}

void StudyAnalysis::run() noexcept {
  const auto& records = services_->records;
  const std::string& study = entry_.study_id;
  Outcome outcome = Outcome::Failed;
  std::string error;
  try {
    check_cancelled();
    auto record = records.read(study);
    if (!record) throw PluginError("study " + study + " no longer exists in Orthanc");
    nlohmann::json summary;
    if (entry_.mode == "forward") {
      if (record->state != StudyState::Done)
        throw PluginError("study " + study + " has no finished analysis to forward (its state is " +
                          to_string(record->state) + ")");
      summary = record->summary.is_object() ? record->summary : nlohmann::json::object();
    } else if (finished(*record, entry_.run)) {
      // A previous attempt of this run stored everything and crashed (or failed) after that:
      // only what follows the analysis is left to do.
      summary = record->summary.is_object() ? record->summary : nlohmann::json::object();
      const bool skipped = record->state == StudyState::Skipped;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        skipped_ = skipped;
      }
      set_stage("resuming",
                "run " + std::to_string(entry_.run) + " was already analysed; " +
                    (skipped ? "it had nothing to analyse" : "results are stored"),
                kStoreEnd);
    } else {
      summary = analyse(*record);
    }
    if (entry_.mode != "forward" && !skipped_) retire_superseded(summary);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (summary.contains("Results")) results_ = summary["Results"];
      if (summary.contains("Findings") && findings_.empty()) findings_ = summary["Findings"];
      if (summary.contains("Series") && series_.empty()) series_ = summary["Series"];
    }
    const bool forward_needed =
        entry_.mode == "forward" || (services_->forwarder.enabled() && !skipped_ &&
                                     !(summary.contains("Forward") && summary["Forward"].is_object() &&
                                       summary["Forward"].value("State", std::string()) == "Success"));
    if (forward_needed) forward(summary, *record);
    outcome = Outcome::Succeeded;
  } catch (const Cancelled&) {
    if (cancel_reason_ == CancelReason::Shutdown) {
      outcome = Outcome::Interrupted;
      error = "interrupted by Orthanc's shutdown; it resumes at the next start";
    } else if (cancel_reason_ == CancelReason::LeaseLost) {
      outcome = Outcome::Interrupted;
      error = "stopped: this node lost its claim on the study (UniBiomed.LeaseSeconds) and another node finishes it";
    } else {
      error = "cancelled by the user (job " + job_id_ + "); resubmit the job or POST /unibiomed/studies/" + study +
              "/analyze to retry";
    }
  } catch (const RecordedFailure& f) {
    error = f.message;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown error while analysing study " + study;
  }

  // Record the end on the study (the commit point is the state) and in the queue.
  try {
    if (cancel_reason_ == CancelReason::LeaseLost) {
      // Nothing to record: the study belongs to the node that took it over.
    } else if (outcome == Outcome::Interrupted) {
      records.write_state(study, StudyState::Pending);
      services_->queue->release(study, entry_.run);
    } else {
      if (outcome == Outcome::Failed && !error.empty()) {
        auto record = records.read(study);
        // A forwarding failure leaves the analysis done; anything else marks the run failed.
        if (record && !finished(*record, entry_.run)) {
          records.write_error(study, error);
          records.write_state(study, StudyState::Failed);
        } else if (record) {
          records.write_error(study, error);
        }
      }
      services_->queue->finish(study, entry_.run,
                               outcome == Outcome::Succeeded ? QueueOutcome::Done : QueueOutcome::Failed);
    }
  } catch (const std::exception& e) {
    services_->client.log_error("cannot record the end of the analysis of study " + study + ": " + e.what());
  }
  if (outcome == Outcome::Failed)
    services_->client.log_warning("analysis of study " + study + " failed: " + error);
  else if (outcome == Outcome::Succeeded)
    services_->client.log_info("analysis of study " + study + " run " + std::to_string(entry_.run) +
                               (skipped_ ? " finished with nothing to analyse" : " finished"));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    outcome_ = outcome;
    error_ = error;
    if (outcome == Outcome::Succeeded) progress_ = 1;
    stage_ = outcome == Outcome::Succeeded     ? (skipped_ ? "skipped" : "done")
             : outcome == Outcome::Interrupted ? "interrupted"
                                               : "failed";
  }
  changed_.notify_all();
  if (on_finished) on_finished();
}

nlohmann::json StudyAnalysis::analyse(const StudyRecord& record) {
  const auto& records = services_->records;
  const auto& client = services_->client;
  const std::string& study = entry_.study_id;

  RunInfo run = record.run.run == entry_.run ? record.run : RunInfo{};
  run.run = entry_.run;
  run.attempt += 1;
  run.mode = entry_.mode;
  run.request = entry_.request;
  run.job = job_id_;
  run.updated = now_iso();
  records.write_run(study, run);
  records.write_state(study, StudyState::Running);
  const std::string started = run.updated;

  auto inventory = records.inventory(study);
  if (!inventory) throw PluginError("study " + study + " no longer exists in Orthanc");
  const auto sources = inventory->source_instances();
  // What a later arrival is compared with: only new images start a new run.
  nlohmann::json image_series = nlohmann::json::object();
  for (const auto& [id, images] : records.image_series(*inventory)) image_series[id] = images.to_json();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    attempt_ = run.attempt;
    study_uid_ = inventory->study_instance_uid;
    for (const auto& s : inventory->series) series_total_ += s.result ? 0 : 1;
  }
  if (sources.empty()) throw PluginError("study " + study + " holds no images to analyse (only UniBiomed results)");
  pipeline::AnalysisRequest request = request_from_json(entry_.request);
  // A study analysed again: its result series say which run they are from (the first run's are
  // named as they always were).
  if (entry_.run > 1) request.result_label = "run " + std::to_string(entry_.run);
  request.first_series_number = first_result_series_number(entry_.run);
  // The report this run revises: the study's report of the rules, when this run asks them too.
  // The new SR names it as its predecessor; a resumed attempt finds the same one (the summary is
  // written only when a run ends).
  const nlohmann::json recorded = recorded_report(record.summary);
  const nlohmann::json previous_report = !recorded.is_null() && in_study(recorded, *inventory) ? recorded : nullptr;
  const bool revises = asks_rules(request) && !previous_report.is_null();
  if (revises)
    request.revises.push_back({previous_report.value("SeriesInstanceUID", std::string()),
                               previous_report.value("SOPClassUID", std::string()),
                               previous_report.value("SOPInstanceUID", std::string())});

  std::vector<pipeline::InstanceInput> inputs;
  inputs.reserve(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    check_cancelled();
    set_stage("reading", "instance " + std::to_string(i + 1) + "/" + std::to_string(sources.size()),
              kReadEnd * static_cast<float>(i) / static_cast<float>(sources.size()));
    pipeline::InstanceInput input;
    input.id = sources[i];
    const std::string bytes = client.get_bytes("/instances/" + sources[i] + "/file");
    input.bytes.assign(bytes.begin(), bytes.end());
    inputs.push_back(std::move(input));
  }

  check_cancelled();
  set_stage("model", "waiting for the model", kReadEnd);
  const std::string seed = run_seed(inventory->study_instance_uid, entry_.run);
  auto on_progress = [this](const pipeline::Progress& p) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!p.series_instance_uid.empty()) series_seen_.insert(p.series_instance_uid);
    }
    const float fraction = static_cast<float>(std::clamp(p.fraction, 0.0, 1.0));
    set_stage(p.stage.empty() ? "model" : p.stage, p.message, kReadEnd + (kModelEnd - kReadEnd) * fraction);
  };
  pipeline::StudyResult result;
  try {
    result = services_->model.use([&](pipeline::Analyzer& analyzer) {
      return analyzer.analyze(inputs, request, on_progress, &cancel_, seed);
    });
  } catch (const pipeline::Cancelled&) {
    throw Cancelled{};
  } catch (const pipeline::PipelineError& e) {
    if (cancel_) throw Cancelled{};
    throw PluginError(std::string("the pipeline could not analyse study ") + inventory->study_instance_uid + ": " +
                      e.what());
  }
  inputs.clear();

  nlohmann::json summary = {
      {"StudyInstanceUID", inventory->study_instance_uid},
      {"Run", run.run},
      {"Attempt", run.attempt},
      {"Model", services_->model.description()},
      {"WeightsHash", result.weights_hash.empty() ? services_->model.weights_hash() : result.weights_hash},
      {"SourceInstances", sources.size()},
      {"ImageSeries", image_series},
      {"Started", started}};
  nlohmann::json series = nlohmann::json::array(), findings = nlohmann::json::array(),
                 errors = nlohmann::json::array();
  int analysed = 0;
  std::string not_analysed;
  for (const auto& o : result.series) {
    series.push_back(to_json(o));
    if (o.state == pipeline::SeriesOutcome::State::Analysed) {
      ++analysed;
    } else {
      const std::string line = to_string(o.state) + " series " + o.series_instance_uid +
                               (o.modality.empty() ? "" : " (" + o.modality + ")") + ": " + o.reason;
      if (o.state == pipeline::SeriesOutcome::State::Failed) errors.push_back(line);
      not_analysed += (not_analysed.empty() ? "" : "; ") + line;
    }
  }
  for (const auto& f : result.findings) findings.push_back(to_json(f));
  summary["Series"] = series;
  summary["Findings"] = findings;
  summary["Answers"] = result.answers;
  summary["Errors"] = errors;
  if (!previous_report.is_null()) {
    summary["Report"] = previous_report;  // until this run replaces it
  } else if (recorded.is_object() && !recorded.value("Unretired", nlohmann::json::array()).empty()) {
    // Its SR was deleted, but objects of replaced runs are still to be withdrawn: they stay on
    // record (with ReportMissing) until a report of the rules takes them, also through runs that
    // write none (no rules asked, nothing analysed).
    summary["Report"] = recorded;
  }
  if (!recorded.is_null() && previous_report.is_null())
    summary["ReportMissing"] = "the report of run " + std::to_string(recorded.value("Run", 0)) + " (SR " +
                               recorded.value("SOPInstanceUID", std::string()) +
                               ") is no longer in the study: this run's report names no predecessor";
  try {
    summary["Pipeline"] = result.summary_json.empty() ? nlohmann::json(nullptr) : nlohmann::json::parse(result.summary_json);
  } catch (const nlohmann::json::exception&) {
    summary["Pipeline"] = result.summary_json;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    series_ = series;
    findings_ = findings;
    errors_ = errors;
  }

  if (analysed == 0 && !result.series.empty() && errors.empty()) {
    // Every series was skipped for what it is (a report, a document, a waveform): the run ends
    // without error, stores nothing, and new images in the study start a new run.
    const std::string note = "nothing to analyse: " + not_analysed;
    summary["Note"] = note;
    summary["Results"] = nlohmann::json::array();
    summary["Finished"] = now_iso();
    check_lease();
    records.write_summary(study, summary);
    records.write_error(study, "");
    records.write_state(study, StudyState::Skipped);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      skipped_ = true;
    }
    client.log_info("study " + study + " (" + inventory->study_instance_uid + ") run " + std::to_string(run.run) +
                    ": " + note);
    set_stage("skipped", note, kStoreEnd);
    return summary;
  }
  if (analysed == 0) {
    const std::string message = result.series.empty()
                                    ? "no series could be analysed: the pipeline found no series in the study"
                                    : "no series could be analysed: " + not_analysed;
    summary["Error"] = message;
    summary["Finished"] = now_iso();
    records.write_summary(study, summary);
    records.write_error(study, message);
    records.write_state(study, StudyState::Failed);
    throw RecordedFailure{message};
  }

  check_lease();
  nlohmann::json stored = nlohmann::json::array();
  for (size_t i = 0; i < result.objects.size(); ++i) {
    set_stage("storing", result.objects[i].kind + " " + std::to_string(i + 1) + "/" + std::to_string(result.objects.size()),
              kModelEnd + (kStoreEnd - kModelEnd) * static_cast<float>(i) / static_cast<float>(result.objects.size()));
    stored.push_back(services_->results.store(result.objects[i], study, inventory->study_instance_uid, run.run).to_json());
    std::lock_guard<std::mutex> lock(mutex_);
    results_ = stored;
  }
  summary["Results"] = stored;
  const auto sr = std::find_if(stored.begin(), stored.end(), [](const nlohmann::json& r) { return r["Kind"] == "SR"; });
  if (asks_rules(request) && sr != stored.end()) {
    nlohmann::json analysed_series = nlohmann::json::array(), objects = nlohmann::json::array();
    for (const auto& o : result.series)
      if (o.state == pipeline::SeriesOutcome::State::Analysed) analysed_series.push_back(o.series_instance_uid);
    nlohmann::json references = nlohmann::json::array();
    for (const auto& r : stored) {
      objects.push_back(r["ID"]);
      references.push_back({{"ID", r["ID"]},
                            {"SOPClassUID", r["SOPClassUID"]},
                            {"SOPInstanceUID", r["SOPInstanceUID"]},
                            {"SeriesInstanceUID", r["SeriesInstanceUID"]}});
    }
    summary["Report"] = {{"Run", run.run},
                         {"ID", (*sr)["ID"]},
                         {"SOPInstanceUID", (*sr)["SOPInstanceUID"]},
                         {"SeriesInstanceUID", (*sr)["SeriesInstanceUID"]},
                         {"SOPClassUID", (*sr)["SOPClassUID"]},
                         {"Request", entry_.request},
                         {"AnalysedSeries", analysed_series},
                         {"Objects", objects},
                         {"References", references}};
    if (revises) {
      // Whether this run replaces the earlier one's results as a whole: the same request, and
      // every series it analysed analysed again. Only then may SupersededResults delete them.
      nlohmann::json superseded = previous_report;
      std::string kept;
      if (comparable(previous_report.value("Request", nlohmann::json())) != comparable(entry_.request))
        kept = "run " + std::to_string(previous_report.value("Run", 0)) + " asked another request";
      else
        for (const auto& uid : previous_report.value("AnalysedSeries", nlohmann::json::array()))
          if (std::find(analysed_series.begin(), analysed_series.end(), uid) == analysed_series.end()) {
            kept = "series " + uid.get<std::string>() + " of run " + std::to_string(previous_report.value("Run", 0)) +
                   " was not analysed again";
            break;
          }
      superseded["Replaced"] = kept.empty();
      if (!kept.empty()) superseded["Kept"] = kept;
      summary["Supersedes"] = superseded;
    }
    // Objects of earlier replaced runs still to be withdrawn (Unretired) pass to this report when
    // it does not replace the one that lists them (it asked another request, or that report's SR
    // was deleted): the run that replaces this one withdraws them. One that does replace it
    // takes them from Supersedes (retire_superseded).
    const nlohmann::json unretired =
        recorded.is_object() ? recorded.value("Unretired", nlohmann::json::array()) : nlohmann::json::array();
    if (!unretired.empty() && !(revises && summary["Supersedes"].value("Replaced", false)))
      summary["Report"]["Unretired"] = unretired;
  }
  summary["Finished"] = now_iso();
  check_lease();
  records.write_summary(study, summary);
  records.write_error(study, "");
  records.write_state(study, StudyState::Done);
  set_stage("stored", std::to_string(stored.size()) + " result objects stored", kStoreEnd);
  return summary;
}

void StudyAnalysis::retire_superseded(nlohmann::json& summary) {
  const auto mode = services_->config.superseded_results;
  if (mode == Configuration::Superseded::Keep || !summary.contains("Supersedes")) return;
  nlohmann::json& superseded = summary["Supersedes"];
  if (!superseded.is_object() || !superseded.value("Replaced", false) || superseded.value("Deleted", false)) return;
  check_lease();
  const int replaced = superseded.value("Run", 0);
  const std::string run = "run " + std::to_string(replaced);
  const std::string study_uid = summary.value("StudyInstanceUID", std::string());
  const std::string study = "study " + entry_.study_id + " (" + study_uid + ") run " + std::to_string(entry_.run);
  // What leaves: the replaced run's objects, and those of earlier replaced runs that could not be
  // retired then (Unretired). Each with its UIDs where the summary has them (References).
  nlohmann::json retire = nlohmann::json::array();
  if (superseded.contains("References") && superseded["References"].is_array())
    retire = superseded["References"];
  else
    for (const auto& id : superseded.value("Objects", nlohmann::json::array())) retire.push_back({{"ID", id}});
  for (const auto& entry : superseded.value("Unretired", nlohmann::json::array())) retire.push_back(entry);
  // Left for the next run that replaces this one (a failure here fails neither this run nor its
  // forwarding).
  auto leave = [&](const nlohmann::json& entries) {
    if (summary.contains("Report") && summary["Report"].is_object()) summary["Report"]["Unretired"] = entries;
  };

  if (mode == Configuration::Superseded::Reject && !superseded.contains("RejectionNote")) {
    // The note first: it joins this run's results, so that forwarding takes it wherever they go.
    // Without a note nothing is deleted, so that this Orthanc and the archive stay alike.
    set_stage("rejecting", "the results of " + run + ", which this run replaces", kStoreEnd);
    try {
      const std::string description =
          "Run " + std::to_string(entry_.run) + " of the UniBiomed analysis of this study replaces these results of " +
          run +
          (superseded.value("Unretired", nlohmann::json::array()).empty() ? std::string() : " and of earlier runs") +
          " (its report revises report " + superseded.value("SOPInstanceUID", std::string()) + ").";
      const RejectionNote note =
          write_rejection_note(services_->client, study_uid, retire, superseded.value("ID", std::string()), description,
                               entry_.run, run_seed(study_uid, entry_.run), services_->config.analyzer.node_name);
      const StoredResult stored = services_->results.store(note.object, entry_.study_id, study_uid, entry_.run);
      if (!summary.contains("Results") || !summary["Results"].is_array()) summary["Results"] = nlohmann::json::array();
      summary["Results"].push_back(stored.to_json());
      superseded["RejectionNote"] = {{"ID", stored.instance_id},
                                     {"SOPInstanceUID", stored.sop_instance_uid},
                                     {"SeriesInstanceUID", stored.series_instance_uid},
                                     {"Rejects", note.rejected}};
      if (!note.unlisted.empty()) superseded["RejectionNote"]["Unlisted"] = note.unlisted;
      superseded.erase("RejectError");
      services_->client.log_info(study + ": stored a rejection note (Key Object Selection " + stored.sop_instance_uid +
                                 ") of the " + std::to_string(note.rejected) + " result objects of " + run +
                                 " (UniBiomed.SupersededResults)");
    } catch (const std::exception& e) {
      superseded["RejectError"] = e.what();
      leave(retire);
      services_->client.log_warning(study + ": could not reject the results of " + run +
                                    ", so they are kept until a later run replaces this one: " + e.what());
      services_->records.write_summary(entry_.study_id, summary);
      return;
    }
    services_->records.write_summary(entry_.study_id, summary);
  }
  set_stage("deleting", "the results of " + run + ", which this run replaces", kStoreEnd);
  size_t deleted = 0, next = 0;
  nlohmann::json gone = nlohmann::json::array();
  try {
    for (; next < retire.size(); ++next) {
      const std::string id = retire[next].value("ID", std::string());
      if (id.empty()) continue;
      if (services_->client.remove("/instances/" + id))
        ++deleted;
      else
        gone.push_back(id);
    }
    superseded["Deleted"] = true;
    superseded.erase("DeleteError");
    if (summary.contains("Report") && summary["Report"].is_object()) summary["Report"].erase("Unretired");
    services_->client.log_info(study + ": deleted the " + std::to_string(deleted) + " result objects of " + run +
                               ", which it replaces (UniBiomed.SupersededResults)");
  } catch (const PluginError& e) {
    // The new results are stored: a deletion that fails leaves old results behind, it does not
    // fail the run (nor keep it from being forwarded).
    superseded["DeleteError"] = e.what();
    leave(nlohmann::json(retire.begin() + static_cast<std::ptrdiff_t>(next), retire.end()));
    services_->client.log_warning(study + ": could not delete the results of " + run + ": " + e.what());
  }
  // Deleted before (by a user): a note still lists them, for the archive's forwarded copies.
  if (!gone.empty()) superseded["AlreadyGone"] = gone;
  services_->records.write_summary(entry_.study_id, summary);
}

void StudyAnalysis::forward(nlohmann::json& summary, const StudyRecord& record) {
  (void)record;
  if (!services_->forwarder.enabled())
    throw PluginError("forwarding is not configured (UniBiomed.ForwardTo is empty)", 400);
  std::vector<std::string> instances;
  for (const auto& r : summary.value("Results", nlohmann::json::array())) instances.push_back(r.value("ID", std::string()));
  auto inventory = services_->records.inventory(entry_.study_id);
  const auto sources = inventory ? inventory->source_instances() : std::vector<std::string>{};
  set_stage("forwarding", std::to_string(instances.size()) + " result objects", kStoreEnd);
  const ForwardOutcome outcome =
      services_->forwarder.forward(instances, sources.empty() ? std::string() : sources.front(), cancel_);
  summary["Forward"] = outcome.to_json();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    forward_ = summary["Forward"];
  }
  services_->records.write_summary(entry_.study_id, summary);
  if (outcome.state == "Cancelled" && cancel_) throw Cancelled{};
  if (!outcome.succeeded()) {
    services_->records.write_error(entry_.study_id, outcome.error);
    throw RecordedFailure{outcome.error};
  }
  services_->records.write_error(entry_.study_id, "");
}

}  // namespace unibiomed::orthanc
