// Task rules: which questions the model is asked for which series, so that nobody has to write
// a prompt. A rule matches a series by the model's modality class, BodyPartExamined and
// SeriesDescription patterns and lists tasks (segmentation targets, grounded disease
// recognition, grounded report, VQA) with the CT window each needs. Targets carry the coded
// concepts (SNOMED CT, DICOM PS3.16 CID 7150/7151) and colours the SEG and SR need.
// The schema is documented in config/TASK-RULES.md; the defaults are config/task-rules.json,
// embedded in the binary (default_task_rules_json()).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/error.h"

namespace unibiomed::config {

// The model's ten modality classes, in the words of dicom/modality.h: "CT", "MRI", "X-ray",
// "Ultrasound", "Pathology", "Endoscopy", "Fundus", "Dermoscopy", "OCT", "Mammography".
const std::vector<std::string>& modality_classes();

// A coded concept (Code Sequence Macro, PS3.3 Table 8.8-1). `cid` is the PS3.16 context group
// the code was taken from (documentation; checked by the tests), 0 when not stated.
struct CodedConcept {
  std::string value;
  std::string scheme;
  std::string meaning;
  int cid = 0;
};

// What a segmentation target (or the masks of a disease/report answer) is.
struct Target {
  std::string key;     // the name in the rules file, e.g. "liver"
  std::string phrase;  // what goes into the prompt, e.g. "liver"
  std::string label;   // Segment Label / finding name, e.g. "Liver"
  // structure: one finding for all of its connected components (an organ, even when cut in
  // two); lesion: one finding per 3D connected component (each lesion measured on its own).
  enum class Kind { Structure, Lesion } kind = Kind::Structure;
  CodedConcept category;                        // CID 7150
  CodedConcept type;                            // CID 7151 (and the groups it includes)
  std::optional<CodedConcept> anatomic_region;  // where a lesion type does not say it
  std::optional<CodedConcept> finding_site;     // SR finding site; default: region, else type
  std::array<uint8_t, 3> colour{255, 0, 0};     // sRGB display colour
  // Connected components smaller than this are dropped as noise (mm3 in volumes, mm2 in 2D
  // images; pixels when the geometry is unknown): min_size_by_modality's value for the series'
  // modality class when it has one, else min_size.
  double min_size = 0;
  std::map<std::string, double> min_size_by_modality;  // modality class -> minimum
  // Findings whose confidence (pipeline/consolidation.h: the geometric mean of the mask's
  // probability and the IoU head's score, 0..1) is under this are left out, from the findings
  // and the SEG alike, and the series' notes say how many. 0 (the default) keeps every one.
  double min_confidence = 0;
  // A structure of both sides (kidneys, lungs): where the images say where the patient's left
  // is and its pieces lie apart on the two sides, one finding per side ("Right kidney", "Left
  // kidney"), coded with the laterality; one finding for both otherwise. Structures only.
  bool paired = false;

  double min_size_for(const std::string& modality) const;

  // The finding site the SR states: finding_site, else anatomic_region, else (for a
  // structure) the type itself; empty for a lesion without a region.
  std::optional<CodedConcept> effective_finding_site() const;
};

enum class TaskFamily {
  Segmentation,        // "Please segment {target} in {modality}." once per target
  DiseaseRecognition,  // grounded disease recognition: "It is [SEG]. {disease}."
  GroundedReport,      // "<p> {abnormality}. {report} </p> [SEG]"
  Vqa,                 // "... abnormality in {anatomy}? ..."
  RegionDiagnosis,     // a green box drawn on the view; only from explicit questions
};
std::string family_name(TaskFamily family);  // "segmentation", "disease", "report", "vqa", "region"

struct Task {
  std::string name;  // unique within its rule, e.g. "organs"
  TaskFamily family = TaskFamily::Segmentation;
  // segmentation: the targets to segment (one question each); other families: one target
  // whose codes and colour describe the masks of the answer (the label is the model's phrase).
  std::vector<std::string> targets;
  std::string anatomy;         // vqa: the {anatomy} of the prompt
  std::string window;          // CT window preset for the views ("" = the modality's default rendering)
  std::string prompt;          // replaces the family's prompt template when set
  bool run_by_default = true;  // false: only when a request names the task
};

// One alternative of a rule's match: every criterion given must hold (an absent one matches
// anything); within a criterion any listed value does. The exclusions leave out a series that
// any of their values fits: a head CT is not an abdomen, whatever else matches.
struct SeriesMatch {
  std::vector<std::string> modalities;            // modality classes (canonical spelling)
  std::vector<std::string> body_parts;            // BodyPartExamined, compared case-insensitively
  std::vector<std::string> description_patterns;  // ECMAScript regexes searched case-insensitively
  std::vector<std::string> not_body_parts;        // as body_parts, excluding
  std::vector<std::string> not_description_patterns;  // as description_patterns, excluding
};

// Which slices of a volume to analyse: the part between `from` and `to` (fractions of the
// stack in slice order) and every `stride`-th slice of it.
struct SliceSelection {
  double from = 0;
  double to = 1;
  int stride = 1;
};

// How a multi-frame series (the slices of a volume, the frames of a cine or endoscopy clip) is
// put to the model. video: the language model sees a few key frames and SAM2's memory tracks
// each [SEG] through every frame (one finding per tracked object); slices: every frame is a
// question of its own and the masks are joined afterwards by connected components. A series
// of one frame is always asked as slices.
enum class SeriesMode { Video, Slices };
std::string mode_name(SeriesMode mode);  // "video", "slices"

struct Rule {
  std::string name;
  std::vector<SeriesMatch> match;  // any alternative
  std::string modality_phrase;     // the {modality} of prompts, e.g. "CT", "X-Ray"
  std::vector<Task> tasks;
  std::optional<SliceSelection> slices;
  // Whole slides: the resolution the regions are cut at, in micrometres per pixel (the pyramid
  // level nearest it); 0.5 um is about 20x.
  double slide_um = 0.5;
  // The rule's "mode", else the file's top-level "mode", else video.
  SeriesMode mode = SeriesMode::Video;
};

// What a rule is matched against.
struct SeriesFacts {
  std::string modality;  // a modality class, e.g. "CT"
  std::string body_part_examined;
  std::string series_description;
};

class TaskRules {
 public:
  // Parses and validates rules JSON; `source` names it in errors ("/etc/x.json", "built-in
  // defaults"). Throws ConfigError naming the source and the place of the first problem.
  static TaskRules parse(std::string_view json_text, const std::string& source);
  // The embedded defaults.
  static TaskRules defaults();
  // A user file: replaces the defaults, or extends them when it says "extends": "defaults"
  // (its targets and prompts override those of the same name, its rules are tried first).
  static TaskRules load(const std::filesystem::path& path);
  // load(path) for a non-empty path, defaults() otherwise.
  static TaskRules load_or_defaults(const std::filesystem::path& path);

  const std::string& source() const { return source_; }
  const std::map<std::string, std::string>& prompts() const { return prompts_; }
  const std::map<std::string, Target>& targets() const { return targets_; }
  const std::vector<Rule>& rules() const { return rules_; }
  // The file's top-level "mode" (video when absent): for series no rule matches.
  SeriesMode default_mode() const { return default_mode_; }

  const Target& target(const std::string& key) const;  // throws ConfigError when unknown
  // The prompt template of a family ("Please segment {target} in {modality}.").
  const std::string& prompt_template(TaskFamily family) const;

  // The first rule matching the series, or null when none does.
  const Rule* select(const SeriesFacts& series) const;

  // The first task whose CT window is not one of `known` (the renderer's presets), as an error
  // naming the rules' source, the rule, the task and the known ones; "" when every window is known.
  std::string unknown_window(const std::vector<std::string>& known) const;

  // The user text of one question: the task's prompt or the family template with {target},
  // {modality} and {anatomy} filled in. `target` is ignored by families without {target}.
  std::string prompt_for(const Rule& rule, const Task& task, const Target* target) const;

 private:
  struct CompiledPatterns;
  static TaskRules build(std::string_view json_text, const std::string& source, const TaskRules* base);
  std::string source_;
  std::map<std::string, std::string> prompts_;
  std::map<std::string, Target> targets_;
  std::vector<Rule> rules_;
  SeriesMode default_mode_ = SeriesMode::Video;
  std::vector<bool> rule_mode_given_;  // per rule: it says "mode" itself
  // Regexes compiled once per rule alternative (rules_[i].match[j] -> patterns_[i][j]).
  std::shared_ptr<const CompiledPatterns> patterns_;
};

// The text of config/task-rules.json as compiled into the binary.
std::string_view default_task_rules_json();

}  // namespace unibiomed::config
