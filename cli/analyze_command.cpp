// `unibiomed analyze PATH... -o OUT`: DICOM files and folders in, grounded findings out, no
// prompt to write: the task rules pick the questions per series. One folder of results per
// study: a SEG per analysed series, one SR, PNG previews, summary.json.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "config/task_rules.h"
#include "dicom/raster_file.h"
#include "dicom/series.h"
#include "dicom/toolkit_logging.h"
#include "pipeline/analyzer.h"
#include "pipeline/report_text.h"
#include "pipeline/result_objects.h"
#include "pipeline/study_plan.h"
#include "pipeline/summary.h"
#include "seg-writer/dicom_uid.h"
#include "sr-writer/rejection_note.h"

namespace unibiomed::cli {
namespace {

// Whether a file that could not be read was meant to be DICOM: it is empty (a transfer that
// failed) or has the Part 10 prefix "DICM" (a damaged instance). Other files (a README, a
// spreadsheet, an index) are not part of the study: passed over, not a failure.
bool meant_as_dicom(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::file_size(file, ec) == 0 && !ec) return true;
  std::ifstream in(file, std::ios::binary);
  char head[132] = {};
  return in.read(head, sizeof head) && std::string(head + 128, 4) == "DICM";
}

namespace fs = std::filesystem;

// Ctrl-C asks the analysis to stop between model calls. A signal handler can only reach
// process-wide state; this flag is the command's one global.
std::atomic<bool> g_cancel{false};
extern "C" void on_interrupt(int) { g_cancel.store(true); }

std::optional<std::array<int, 4>> parse_box(const std::string& text) {
  std::array<int, 4> box{};
  std::istringstream in(text);
  char comma = 0;
  for (int i = 0; i < 4; ++i) {
    if (!(in >> box[i]) || (i < 3 && (!(in >> comma) || comma != ',')))
      throw UsageError("--box expects X0,Y0,X1,Y1 in view pixels, not '" + text + "'");
  }
  std::string rest;
  if (in >> rest) throw UsageError("--box expects X0,Y0,X1,Y1 in view pixels, not '" + text + "'");
  if (box[2] <= box[0] || box[3] <= box[1]) throw UsageError("--box: X1,Y1 must be right of and below X0,Y0");
  return box;
}

// Progress: a one-line bar on a terminal, plain lines otherwise (logs, CI).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool quiet) : quiet_(quiet), terminal_(::isatty(STDERR_FILENO) == 1) {}
  ~ProgressPrinter() { finish(); }
  void set_study(int index, int count) {
    study_ = count > 1 ? "study " + std::to_string(index) + "/" + std::to_string(count) + ": " : "";
  }
  void operator()(const pipeline::Progress& p) {
    if (quiet_) return;
    const std::string message = study_ + p.message;
    if (terminal_) {
      const int width = 30;
      const int filled = static_cast<int>(p.fraction * width + 0.5);
      std::string line = "\r[" + std::string(filled, '#') + std::string(width - filled, '.') + "] " +
                         std::to_string(static_cast<int>(p.fraction * 100 + 0.5)) + "% " + message;
      if (line.size() > 118) line = line.substr(0, 118);
      std::cerr << line << std::string(last_length_ > line.size() ? last_length_ - line.size() : 0, ' ') << std::flush;
      last_length_ = line.size();
      open_ = true;
    } else if (message != last_) {
      std::cerr << message << "\n";
      last_ = message;
    }
  }
  void finish() {
    if (open_) std::cerr << "\n";
    open_ = false;
    last_length_ = 0;
  }

 private:
  bool quiet_;
  bool terminal_;
  bool open_ = false;
  size_t last_length_ = 0;
  std::string last_, study_;
};

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// The summary.json an earlier `analyze` wrote into `out`; null when there is none (or it is not
// one this program wrote: it is simply replaced). The functions below take it as `j`.
nlohmann::json previous_summary(const fs::path& out) {
  std::ifstream in(out / "summary.json");
  if (!in) return nullptr;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return j.is_object() ? j : nlohmann::json();
}

// A file name of a summary that stays inside its folder.
bool plain(const nlohmann::json& name) {
  if (!name.is_string()) return false;
  const std::string n = name.get<std::string>();
  return !n.empty() && n != "." && n != ".." && n.find_first_of("/\\") == std::string::npos;
}

// The SOP class of an object a summary.json lists. Summaries written before sop_class_uid was
// listed: by its kind, since the node writes a Comprehensive 3D SR and SEGs only.
std::string recorded_sop_class(const nlohmann::json& object) {
  const std::string kind = object.value("kind", std::string());
  return object.value("sop_class_uid", std::string(kind == "SR"    ? "1.2.840.10008.5.1.4.1.1.88.34"
                                                   : kind == "SEG" ? "1.2.840.10008.5.1.4.1.1.66.4"
                                                                   : ""));
}

// The report of an earlier analysis of study `study_uid` in `out` (listed in its summary.json, its
// file still there): the one a new report of the task rules revises, as the plugin's does.
std::optional<pipeline::ReportReference> previous_report(const fs::path& out, const nlohmann::json& j,
                                                         const std::string& study_uid) {
  if (j.is_null() || j.value("study_instance_uid", std::string()) != study_uid) return std::nullopt;
  for (const auto& o : j.value("objects", nlohmann::json::array())) {
    if (!o.is_object() || o.value("kind", std::string()) != "SR" || !o.contains("file") || !plain(o["file"]) ||
        !fs::exists(out / o["file"].get<std::string>()))
      continue;
    pipeline::ReportReference r;
    r.series_instance_uid = o.value("series_instance_uid", std::string());
    r.sop_class_uid = recorded_sop_class(o);
    r.sop_instance_uid = o.value("sop_instance_uid", std::string());
    if (!r.series_instance_uid.empty() && !r.sop_instance_uid.empty()) return r;
  }
  return std::nullopt;
}

// --reject-previous, first half: what the IHE IOCM rejection note of this analysis withdraws. The
// SEGs and SR of the earlier analysis of study `study_uid` in `out` by the UIDs its summary.json
// records (never an earlier note), and what an earlier note failed to withdraw ("unretired").
// Empty when `out` holds no earlier analysis of the study.
nlohmann::json to_reject(const fs::path& out, const nlohmann::json& j, const std::string& study_uid) {
  nlohmann::json refs = nlohmann::json::array();
  if (j.is_null() || j.value("study_instance_uid", std::string()) != study_uid) return refs;
  for (const auto& o : j.value("objects", nlohmann::json::array())) {
    const std::string kind = o.is_object() ? o.value("kind", std::string()) : std::string();
    if (kind != "SEG" && kind != "SR") continue;
    refs.push_back({{"sop_class_uid", recorded_sop_class(o)},
                    {"sop_instance_uid", o.value("sop_instance_uid", std::string())},
                    {"series_instance_uid", o.value("series_instance_uid", std::string())}});
  }
  for (const auto& r : j.value("unretired", nlohmann::json::array())) refs.push_back(r);
  // An entry that names no instance (a summary edited by hand) cannot be withdrawn: said once, and
  // left out so that it does not fail every later note.
  nlohmann::json valid = nlohmann::json::array();
  for (const auto& r : refs) {
    const bool ok = r.is_object() && seg::is_valid_uid(r.value("sop_instance_uid", std::string())) &&
                    seg::is_valid_uid(r.value("series_instance_uid", std::string())) &&
                    seg::is_valid_uid(r.value("sop_class_uid", std::string()));
    if (ok)
      valid.push_back(r);
    else
      std::cerr << "unibiomed analyze: --reject-previous: " << (out / "summary.json").string() << " lists " << r.dump()
                << ", which names no instance to withdraw; left out\n";
  }
  return valid;
}

// Second half, once the new results are in `out`: the note, with the patient and study attributes
// of this analysis' SR (or a SEG), else of `earlier` (a file of the earlier analysis read before
// it was removed). Throws std::runtime_error naming the cause.
pipeline::ResultObject rejection_note(const fs::path& out, const std::vector<pipeline::ResultObject>& written,
                                      DcmFileFormat* earlier, const nlohmann::json& refs, const std::string& seed) {
  std::vector<sr::DocumentReference> rejected;
  for (const auto& r : refs)
    rejected.push_back({"", r.value("series_instance_uid", std::string()), r.value("sop_class_uid", std::string()),
                        r.value("sop_instance_uid", std::string())});
  DcmFileFormat file;
  DcmDataset* header = nullptr;
  for (const char* kind : {"SR", "SEG"})
    for (const auto& o : written)
      if (!header && o.kind == kind && file.loadFile((out / o.file_name).c_str()).good()) header = file.getDataset();
  if (!header && earlier) header = earlier->getDataset();
  if (!header)
    throw std::runtime_error("neither this analysis nor the earlier one in " + out.string() +
                             " has a readable SR or SEG to take the patient and study from");
  OFString study;
  header->findAndGetOFString(DCM_StudyInstanceUID, study);
  for (auto& r : rejected) r.study_instance_uid = study.c_str();
  sr::RejectionNoteOptions options;
  options.description = "A new UniBiomed analysis of this study replaces these results of an earlier one.";
  options.series_description = "UniBiomed rejection note";
  options.uid_seed = seed.empty() ? std::string() : seed + "/rejection-note";
  sr::WrittenReport note;
  try {
    note = sr::write_rejection_note(*header, rejected, options);
  } catch (const sr::ReportError& e) {
    throw std::runtime_error(e.what());
  }
  return pipeline::result_object("KO", *note.file, note.sop_instance_uid, note.series_instance_uid,
                                 "rejection-note.dcm");
}

// A file of the earlier analysis in `out` to take the study from if the new one has none (its SR,
// else a SEG); nullptr when none can be read.
std::unique_ptr<DcmFileFormat> earlier_header(const fs::path& out, const nlohmann::json& j) {
  if (j.is_null()) return nullptr;
  for (const char* kind : {"SR", "SEG"})
    for (const auto& o : j.value("objects", nlohmann::json::array()))
      if (o.is_object() && o.value("kind", std::string()) == kind && o.contains("file") && plain(o["file"])) {
        auto file = std::make_unique<DcmFileFormat>();
        if (file->loadFile((out / o["file"].get<std::string>()).c_str()).good()) return file;
      }
  return nullptr;
}

// The files an earlier `analyze` wrote into `out`, as its summary.json lists them (result objects,
// previews): removed before new results are written there, so that the folder holds one analysis
// and no SEG or preview of the earlier one is taken for the new one's. Other files stay; names
// that are not plain file names are never followed. Returns how many were removed.
size_t remove_previous_results(const fs::path& out, const nlohmann::json& j) {
  if (j.is_null()) return 0;
  std::vector<fs::path> files;
  for (const auto& o : j.value("objects", nlohmann::json::array()))
    if (o.is_object() && o.contains("file") && plain(o["file"])) files.push_back(out / o["file"].get<std::string>());
  for (const auto& f : j.value("findings", nlohmann::json::array()))
    if (f.is_object() && f.contains("preview") && plain(f["preview"]))
      files.push_back(out / "previews" / f["preview"].get<std::string>());
  size_t removed = 0;
  std::error_code error;
  for (const auto& file : files) removed += fs::remove(file, error) ? 1 : 0;
  if (fs::is_empty(out / "previews", error)) fs::remove(out / "previews", error);
  return removed;
}

const char* state_word(pipeline::SeriesOutcome::State s) {
  switch (s) {
    case pipeline::SeriesOutcome::State::Analysed:
      return "analysed";
    case pipeline::SeriesOutcome::State::Skipped:
      return "skipped";
    case pipeline::SeriesOutcome::State::Failed:
      return "FAILED";
  }
  return "?";
}

}  // namespace

int run_analyze(const Args& args) {
  ArgParser p("unibiomed analyze PATH... -o OUT [--model DIR] [--device cpu|cuda] [--task NAME]... [--ask TEXT]...",
              "Analyses DICOM files and folders: every series is matched to the task rules (config/task-rules.json, "
              "or --task-rules), the model answers their questions on every view (slice), and the findings are "
              "written per study as a DICOM SEG per analysed series, one TID 1500 SR, PNG previews and summary.json. "
              "Exit codes: 0 done, 1 failed, 2 usage, 3 no usable input, 4 model not loadable, 5 some series failed "
              "(the others were delivered).");
  p.positional("PATH", "DICOM files or folders (searched recursively)", 1, 100000)
      .option("-o", "OUT", "output folder (created; one sub-folder per study when there are several)")
      .option("--model", "DIR", "UniBiomed checkpoint folder (default: $UNIBIOMED_MODEL)")
      .option("--device", "DEVICE", "cpu, cuda or cuda:N", std::string("cpu"))
      .option("--dtype", "TYPE", "auto, float32, bfloat16 or float16", std::string("auto"))
      .option("--threads", "N", "CPU threads for the model (0 = all cores)", std::string("0"))
      .option("--task", "NAME", "run only the rule tasks of this name, e.g. organs, abnormality, report", std::nullopt,
              true)
      .option("--ask", "TEXT", "an explicit question asked on every analysed view", std::nullopt, true)
      .option("--box", "X0,Y0,X1,Y1",
              "region-aware diagnosis: draw this green box on the views for the --ask questions")
      .flag("--no-rules", "ask only the --ask questions, not the task rules")
      .option("--task-rules", "FILE", "task rules file replacing (or, with \"extends\", extending) the defaults")
      .option("--max-slices", "N",
              "most views analysed per series; longer series are strided within each stack, cine or image",
              std::string("300"))
      .option("--batch-size", "N", "views encoded and decoded together", std::string("8"))
      .option("--max-new-tokens", "N", "generation limit per answer (0 = the model's default, 2048)", std::string("0"))
      .option("--seed", "TEXT", "seed of the result UIDs (same seed, same UIDs); default: random")
      .flag("--reject-previous",
            "when OUT holds an earlier analysis of the study, also write rejection-note.dcm: an IHE IOCM rejection "
            "note (Key Object Selection \"Rejected for Quality Reasons\") listing its SEGs and SR, to send to the "
            "archive with the new results so that it withdraws them")
      .flag("--no-previews", "do not write PNG previews")
      .flag("--quiet", "no progress output");
  if (!p.parse(args)) return kExitOk;
  if (!p.has("-o")) throw UsageError("-o OUT is required");
  std::string model_dir = p.get_optional("--model").value_or("");
  if (model_dir.empty())
    if (const char* env = std::getenv("UNIBIOMED_MODEL")) model_dir = env;
  if (model_dir.empty()) throw UsageError("--model DIR is required (or set UNIBIOMED_MODEL)");

  pipeline::AnalyzerSettings settings;
  settings.model_dir = model_dir;
  settings.device = p.get("--device");
  settings.dtype = p.get("--dtype");
  settings.threads = static_cast<int>(p.get_int("--threads"));
  settings.max_slices_per_series = static_cast<int>(p.get_int("--max-slices"));
  settings.batch_size = static_cast<int>(p.get_int("--batch-size"));
  settings.max_new_tokens = static_cast<int>(p.get_int("--max-new-tokens"));
  settings.previews = !p.is_set("--no-previews");
  if (auto rules = p.get_optional("--task-rules")) settings.task_rules = *rules;
  if (settings.max_slices_per_series < 1) throw UsageError("--max-slices must be at least 1");
  if (settings.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (settings.max_new_tokens < 0) throw UsageError("--max-new-tokens must not be negative");

  pipeline::AnalysisRequest request;
  request.tasks = p.get_all("--task");
  request.rules = !p.is_set("--no-rules");
  std::optional<std::array<int, 4>> box;
  if (auto b = p.get_optional("--box")) box = parse_box(*b);
  for (const auto& text : p.get_all("--ask")) request.questions.push_back({text, "", box, ""});
  if (box && request.questions.empty()) request.questions.push_back({"", "", box, ""});
  if (!request.rules && request.questions.empty()) throw UsageError("--no-rules needs at least one --ask question");
  // The rules are checked before the model loads (seconds to minutes): a typo fails at once.
  try {
    pipeline::check_requested_tasks(config::TaskRules::load_or_defaults(settings.task_rules), request);
  } catch (const config::ConfigError& e) {
    std::cerr << "unibiomed analyze: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const pipeline::PipelineError& e) {
    throw UsageError(e.what());
  }
  const std::string seed = p.get_optional("--seed").value_or("");
  const bool quiet = p.is_set("--quiet");
  dicom::silence_toolkit_logs();

  // --- inputs, grouped by study -----------------------------------------------------------------
  std::vector<fs::path> paths;
  for (const auto& s : p.positionals()) paths.emplace_back(s);
  std::vector<fs::path> files;
  try {
    files = dicom::list_input_files(paths);
  } catch (const dicom::DicomError& e) {
    std::cerr << "unibiomed analyze: " << e.what() << "\n";
    return kExitBadInput;
  }
  std::map<std::string, std::vector<pipeline::InstanceInput>> studies;  // study UID -> files
  std::vector<std::string> unreadable;
  size_t damaged = 0;  // of them, files meant as DICOM instances (exit code 5)
  for (const auto& f : files) {
    try {
      const auto instance = dicom::Instance::read_file(f);
      if (instance.sop_class_uid() == "1.2.840.10008.1.3.10") {  // Media Storage Directory Storage
        // A DICOMDIR under another name (one named DICOMDIR is passed over in a folder).
        unreadable.push_back(f.string() +
                             ": a DICOMDIR (media storage directory), not an instance: the instances it lists are "
                             "read from their own files (give their folder)");
        continue;
      }
      if (instance.study().study_instance_uid.empty()) {
        unreadable.push_back(f.string() + ": no Study Instance UID (0020,000D): its results would belong to no study");
        continue;
      }
      pipeline::InstanceInput in;
      in.id = f.string();
      in.path = f;
      studies[instance.study().study_instance_uid].push_back(std::move(in));
    } catch (const dicom::DicomError& e) {
      unreadable.push_back(e.what());
      damaged += meant_as_dicom(f) ? 1 : 0;
    }
  }
  for (const auto& u : unreadable) std::cerr << "unibiomed analyze: skipped: " << u << "\n";
  if (studies.empty()) {
    std::cerr << "unibiomed analyze: no readable DICOM instance among " << files.size() << " files\n";
    return kExitBadInput;
  }

  // --- the model ----------------------------------------------------------------------------------
  std::unique_ptr<pipeline::Analyzer> analyzer;
  try {
    if (!quiet) std::cerr << "loading the model from " << model_dir << "\n";
    analyzer = pipeline::Analyzer::create(settings);
  } catch (const pipeline::PipelineError& e) {
    const std::string what = e.what();
    std::cerr << "unibiomed analyze: " << what << "\n";
    // Bad task rules are the user's input; everything else here is the model.
    return what.rfind("task rules", 0) == 0 ? kExitBadInput : kExitModelError;
  }
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);

  // --- one study at a time ------------------------------------------------------------------
  const fs::path out_root = p.get("-o");
  fs::create_directories(out_root);
  ProgressPrinter printer(quiet);
  int analysed = 0, failed = 0, skipped = 0, study_index = 0, findings = 0;
  bool any_error = damaged > 0;
  size_t problems = 0;  // the analyses' problems with their instances (printed with each study)
  for (const auto& [study_uid, inputs] : studies) {
    ++study_index;
    const fs::path out = studies.size() == 1 ? out_root : out_root / ("study-" + std::to_string(study_index));
    fs::create_directories(out);
    printer.set_study(study_index, static_cast<int>(studies.size()));
    // A report of the task rules revises the report of an earlier analysis of the study here.
    pipeline::AnalysisRequest study_request = request;
    // The earlier analysis in this folder, read once: revised, rejected and removed below.
    const nlohmann::json earlier_summary = previous_summary(out);
    const auto revised =
        request.rules || !request.tasks.empty() ? previous_report(out, earlier_summary, study_uid) : std::nullopt;
    if (revised) study_request.revises.push_back(*revised);
    pipeline::StudyResult result;
    try {
      result = analyzer->analyze(
          inputs, study_request, [&](const pipeline::Progress& pr) { printer(pr); }, &g_cancel,
          seed.empty() ? std::string() : seed + "/" + study_uid);
    } catch (const pipeline::Cancelled& e) {
      printer.finish();
      std::cerr << "unibiomed analyze: study " << study_uid << ": " << e.what() << "\n";
      return kExitFailure;
    } catch (const pipeline::PipelineError& e) {
      printer.finish();
      std::cerr << "unibiomed analyze: study " << study_uid << ": " << e.what() << "\n";
      any_error = true;
      ++failed;
      continue;
    }
    printer.finish();
    // --reject-previous: what the note withdraws, read before the earlier analysis is removed.
    const nlohmann::json rejecting =
        p.is_set("--reject-previous") ? to_reject(out, earlier_summary, study_uid) : nlohmann::json::array();
    const auto earlier = rejecting.empty() ? nullptr : earlier_header(out, earlier_summary);
    const std::string earlier_study =
        earlier_summary.is_object() ? earlier_summary.value("study_instance_uid", std::string()) : std::string();
    const size_t replaced = remove_previous_results(out, earlier_summary);
    for (const auto& o : result.objects) write_bytes(out / o.file_name, o.bytes);
    if (!rejecting.empty()) {
      // Listed in summary.json like the other objects, so that a later analysis here replaces it;
      // a note that cannot be written leaves what it would have withdrawn to the next one.
      nlohmann::json summary = nlohmann::json::parse(result.summary_json, nullptr, false);
      try {
        pipeline::ResultObject note = rejection_note(out, result.objects, earlier.get(), rejecting,
                                                     seed.empty() ? std::string() : seed + "/" + study_uid);
        write_bytes(out / note.file_name, note.bytes);
        if (summary.is_object()) summary["objects"].push_back(pipeline::summary_object(note));
        result.objects.push_back(std::move(note));
      } catch (const std::exception& e) {
        std::cerr << "unibiomed analyze: study " << study_uid << ": --reject-previous: " << e.what()
                  << "; the next --reject-previous here withdraws those results too\n";
        any_error = true;
        if (summary.is_object()) summary["unretired"] = rejecting;
      }
      if (summary.is_object()) result.summary_json = summary.dump(2);
    }
    if (!result.previews.empty()) {
      fs::create_directories(out / "previews");
      for (const auto& pv : result.previews)
        dicom::write_png(out / "previews" / pv.file_name, dicom::RgbImage{pv.width, pv.height, pv.rgb});
    }
    {
      std::ofstream summary(out / "summary.json");
      summary << result.summary_json;
      if (!summary) throw std::runtime_error("cannot write " + (out / "summary.json").string());
    }
    findings += static_cast<int>(result.findings.size());
    // What happened, one line per series, on stdout (the data) for scripts and people.
    std::cout << "study " << study_uid << " -> " << out.string() << "\n";
    if (replaced > 0)
      std::cout << "  replaced the earlier analysis"
                << (earlier_study.empty() || earlier_study == study_uid ? std::string()
                                                                        : " (of another study, " + earlier_study + ")")
                << " in " << out.string() << " (" << replaced << " of its files removed first)\n";
    if (revised && std::any_of(result.objects.begin(), result.objects.end(), [&](const pipeline::ResultObject& o) {
          return o.kind == "SR" && o.sop_instance_uid != revised->sop_instance_uid;
        }))
      std::cout << "  the new report revises the earlier one (SR " << revised->sop_instance_uid << ")\n";
    if (!result.objects.empty() && result.objects.back().kind == "KO")
      std::cout << "  wrote " << result.objects.back().file_name
                << ": it withdraws the SEGs and SR of the earlier analysis from an archive that they were sent to "
                   "(send it there with the new results)\n";
    for (const auto& s : result.series) {
      std::cout << "  " << state_word(s.state) << "  " << (s.modality.empty() ? "-" : s.modality) << " series "
                << s.series_instance_uid;
      if (!s.description.empty()) std::cout << " (" << s.description << ")";
      if (s.state == pipeline::SeriesOutcome::State::Analysed)
        std::cout << ": rule " << (s.rule.empty() ? "-" : s.rule) << ", " << s.views << " views"
                  << (s.mode.empty() ? "" : ", " + s.mode + " mode");
      else
        std::cout << ": " << s.reason;
      std::cout << "\n";
      if (s.state == pipeline::SeriesOutcome::State::Analysed) ++analysed;
      if (s.state == pipeline::SeriesOutcome::State::Failed) ++failed;
      if (s.state == pipeline::SeriesOutcome::State::Skipped) ++skipped;
    }
    for (const auto& f : result.findings) {
      std::cout << "  finding: " << f.label;
      for (const auto& m : f.measurements) std::cout << ", " << m.name << " " << m.value << " " << m.unit;
      std::cout << " (confidence " << f.confidence << ")";
      // The sentence, unless it only repeats the label ("Liver." for Liver).
      if (const std::string said = pipeline::reported_text(f.label, f.text); said != f.label)
        std::cout << ": " << f.text;
      std::cout << "\n";
    }
    for (const auto& a : result.answers) std::cout << "  answer: " << a << "\n";
    for (const auto& o : result.objects) std::cout << "  wrote " << (out / o.file_name).string() << "\n";
    std::cout << "  wrote " << (out / "summary.json").string() << "\n";
    for (const auto& problem : result.problems) std::cerr << "unibiomed analyze: " << problem << "\n";
    any_error |= !result.problems.empty();
    problems += result.problems.size();
  }
  if (analysed == 0) {
    std::cerr << "unibiomed analyze: no series was analysed (" << skipped << " skipped, " << failed << " failed)\n";
    return failed > 0 ? kExitFailure : kExitBadInput;
  }
  if (failed > 0 || any_error) {
    // Exit code 5 and why, after the progress lines that came between.
    std::string why;
    if (failed > 0) why += std::to_string(failed) + " series or studies failed";
    if (damaged > 0)
      why += (why.empty() ? "" : "; ") + std::to_string(damaged) + " damaged or empty DICOM file(s) were not read";
    if (problems > 0)
      why += (why.empty() ? "" : "; ") + std::to_string(problems) + " problem(s) with instances of the studies";
    if (why.empty()) why = "a rejection note could not be written";
    std::cerr << "unibiomed analyze: exit code 5: " << why << " (see the lines above); the rest was delivered\n";
    return kExitPartial;
  }
  return kExitOk;
}

}  // namespace unibiomed::cli
