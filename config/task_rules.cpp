// Task rules: parsing and validation (schema in TASK-RULES.md), matching, prompt filling.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "config/task_rules.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

namespace unibiomed::config {

namespace {

using nlohmann::json;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// Where we are in the document, for messages: "rules[2].tasks[0].targets".
class Context {
 public:
  Context(std::string source) : source_(std::move(source)) {}
  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw ConfigError("task rules (" + source_ + "): " + (where.empty() ? "" : where + ": ") + what);
  }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string type_name(const json& j) {
  return j.type_name();
}

void check_keys(const Context& ctx, const std::string& where, const json& object,
                const std::vector<std::string>& allowed) {
  if (!object.is_object()) ctx.fail(where, "expected an object, found " + type_name(object));
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end())
      ctx.fail(where, "unknown key '" + it.key() + "' (allowed: " + join(allowed) + ")");
  }
}

const json* find(const json& object, const std::string& key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string get_string(const Context& ctx, const std::string& where, const json& object, const std::string& key,
                       bool required, bool allow_empty = false) {
  const json* v = find(object, key);
  if (!v) {
    if (required) ctx.fail(where, "missing required key '" + key + "'");
    return {};
  }
  if (!v->is_string()) ctx.fail(where + "." + key, "expected a string, found " + type_name(*v));
  std::string s = v->get<std::string>();
  if (!allow_empty && trim(s).empty()) ctx.fail(where + "." + key, "must not be empty");
  return s;
}

// A list of strings; a single string is accepted as a list of one.
std::vector<std::string> get_string_list(const Context& ctx, const std::string& where, const json& object,
                                         const std::string& key) {
  const json* v = find(object, key);
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (size_t i = 0; i < v->size(); ++i) {
      const json& item = (*v)[i];
      if (!item.is_string())
        ctx.fail(where + "." + key + "[" + std::to_string(i) + "]", "expected a string, found " + type_name(item));
      out.push_back(item.get<std::string>());
    }
    if (out.empty()) ctx.fail(where + "." + key, "must list at least one value (leave the key out to match anything)");
  } else {
    ctx.fail(where + "." + key, "expected a list of strings, found " + type_name(*v));
  }
  for (size_t i = 0; i < out.size(); ++i)
    if (trim(out[i]).empty()) ctx.fail(where + "." + key + "[" + std::to_string(i) + "]", "must not be empty");
  return out;
}

const std::vector<std::string> kFamilyNames = {"segmentation", "disease", "report", "vqa", "region"};

TaskFamily family_from_name(const Context& ctx, const std::string& where, const std::string& name) {
  for (size_t i = 0; i < kFamilyNames.size(); ++i)
    if (kFamilyNames[i] == name) return static_cast<TaskFamily>(i);
  ctx.fail(where, "unknown task family '" + name + "' (known: " + join(kFamilyNames) + ")");
}

std::optional<std::string> canonical_modality(const std::string& name) {
  for (const auto& m : modality_classes())
    if (lower(m) == lower(trim(name))) return m;
  return std::nullopt;
}

CodedConcept parse_code(const Context& ctx, const std::string& where, const json& j) {
  check_keys(ctx, where, j, {"value", "scheme", "meaning", "cid", "comment"});
  CodedConcept c;
  c.value = get_string(ctx, where, j, "value", true);
  c.scheme = get_string(ctx, where, j, "scheme", true);
  c.meaning = get_string(ctx, where, j, "meaning", true);
  // Code Value is SH (16 chars) and Code Meaning LO (64 chars) in the Code Sequence Macro.
  if (c.value.size() > 16) ctx.fail(where + ".value", "'" + c.value + "' is longer than 16 characters (SH)");
  if (c.meaning.size() > 64) ctx.fail(where + ".meaning", "longer than 64 characters (LO)");
  if (c.scheme == "SCT" &&
      !std::all_of(c.value.begin(), c.value.end(), [](unsigned char ch) { return std::isdigit(ch); }))
    ctx.fail(where + ".value", "'" + c.value + "' is not a SNOMED CT identifier (digits only)");
  if (const json* cid = find(j, "cid")) {
    if (!cid->is_number_integer() || cid->get<int>() <= 0)
      ctx.fail(where + ".cid", "expected a positive context group number");
    c.cid = cid->get<int>();
  }
  return c;
}

Target parse_target(const Context& ctx, const std::string& where, const std::string& key, const json& j) {
  check_keys(ctx, where, j,
             {"phrase", "label", "kind", "colour", "category", "type", "anatomic_region", "finding_site", "min_size",
              "min_confidence", "paired", "comment"});
  Target t;
  t.key = key;
  t.phrase = get_string(ctx, where, j, "phrase", true);
  t.label = get_string(ctx, where, j, "label", true);
  if (t.label.size() > 64) ctx.fail(where + ".label", "longer than 64 characters (Segment Label is LO)");
  const std::string kind = get_string(ctx, where, j, "kind", true);
  if (kind == "structure")
    t.kind = Target::Kind::Structure;
  else if (kind == "lesion")
    t.kind = Target::Kind::Lesion;
  else
    ctx.fail(where + ".kind", "'" + kind + "' is neither 'structure' nor 'lesion'");
  const json* colour = find(j, "colour");
  if (!colour) ctx.fail(where, "missing required key 'colour'");
  if (!colour->is_array() || colour->size() != 3) ctx.fail(where + ".colour", "expected [red, green, blue]");
  for (size_t i = 0; i < 3; ++i) {
    const json& c = (*colour)[i];
    if (!c.is_number_integer() || c.get<int>() < 0 || c.get<int>() > 255)
      ctx.fail(where + ".colour[" + std::to_string(i) + "]", "expected an integer 0..255");
    t.colour[i] = static_cast<uint8_t>(c.get<int>());
  }
  for (const char* required : {"category", "type"})
    if (!find(j, required)) ctx.fail(where, std::string("missing required key '") + required + "'");
  t.category = parse_code(ctx, where + ".category", j.at("category"));
  t.type = parse_code(ctx, where + ".type", j.at("type"));
  if (const json* r = find(j, "anatomic_region")) t.anatomic_region = parse_code(ctx, where + ".anatomic_region", *r);
  if (const json* s = find(j, "finding_site")) t.finding_site = parse_code(ctx, where + ".finding_site", *s);
  // A number, or per modality class: {"CT": 10, "Fundus": 0.01, "default": 0}.
  if (const json* m = find(j, "min_size")) {
    auto size_of = [&](const std::string& at, const json& v) {
      if (!v.is_number() || v.get<double>() < 0) ctx.fail(at, "expected a number >= 0");
      return v.get<double>();
    };
    if (m->is_object()) {
      for (const auto& [name, value] : m->items()) {
        const std::string at = where + ".min_size." + name;
        if (name == "default") {
          t.min_size = size_of(at, value);
          continue;
        }
        const auto canonical = canonical_modality(name);
        if (!canonical)
          ctx.fail(at, "'" + name + "' is neither 'default' nor one of the model's modalities (" +
                           join(modality_classes()) + ")");
        t.min_size_by_modality[*canonical] = size_of(at, value);
      }
    } else {
      t.min_size = size_of(where + ".min_size", *m);
    }
  }
  if (const json* c = find(j, "min_confidence")) {
    if (!c->is_number() || c->get<double>() < 0 || c->get<double>() > 1)
      ctx.fail(where + ".min_confidence", "expected a number from 0 to 1");
    t.min_confidence = c->get<double>();
  }
  if (const json* p = find(j, "paired")) {
    if (!p->is_boolean()) ctx.fail(where + ".paired", "expected true or false");
    t.paired = p->get<bool>();
    if (t.paired && t.kind != Target::Kind::Structure)
      ctx.fail(where + ".paired", "only a structure has sides (a lesion is one finding per piece already)");
  }
  return t;
}

SeriesMatch parse_match(const Context& ctx, const std::string& where, const json& j) {
  check_keys(ctx, where, j,
             {"modality", "body_part", "series_description", "not_body_part", "not_series_description", "comment"});
  SeriesMatch m;
  for (const auto& name : get_string_list(ctx, where, j, "modality")) {
    auto canonical = canonical_modality(name);
    if (!canonical)
      ctx.fail(where + ".modality",
               "'" + name + "' is not one of the model's modalities (" + join(modality_classes()) + ")");
    m.modalities.push_back(*canonical);
  }
  for (const auto& part : get_string_list(ctx, where, j, "body_part")) m.body_parts.push_back(trim(part));
  for (const auto& part : get_string_list(ctx, where, j, "not_body_part")) m.not_body_parts.push_back(trim(part));
  auto patterns = [&](const std::string& key) {
    std::vector<std::string> list = get_string_list(ctx, where, j, key);
    for (size_t i = 0; i < list.size(); ++i) {
      try {
        std::regex(list[i], std::regex::ECMAScript | std::regex::icase);
      } catch (const std::regex_error& e) {
        ctx.fail(where + "." + key + "[" + std::to_string(i) + "]",
                 "'" + list[i] + "' is not a valid regular expression (" + e.what() + ")");
      }
    }
    return list;
  };
  m.description_patterns = patterns("series_description");
  m.not_description_patterns = patterns("not_series_description");
  if (m.modalities.empty() && m.body_parts.empty() && m.description_patterns.empty() && m.not_body_parts.empty() &&
      m.not_description_patterns.empty())
    ctx.fail(where,
             "a match needs at least one of modality, body_part, series_description, not_body_part, "
             "not_series_description");
  return m;
}

Task parse_task(const Context& ctx, const std::string& where, const json& j,
                const std::map<std::string, Target>& targets) {
  check_keys(ctx, where, j, {"name", "family", "targets", "anatomy", "window", "prompt", "default", "comment"});
  Task t;
  t.name = get_string(ctx, where, j, "name", true);
  t.family = family_from_name(ctx, where + ".family", get_string(ctx, where, j, "family", true));
  t.targets = get_string_list(ctx, where, j, "targets");
  for (size_t i = 0; i < t.targets.size(); ++i) {
    if (!targets.count(t.targets[i])) {
      std::vector<std::string> known;
      for (const auto& [k, v] : targets) known.push_back(k);
      ctx.fail(where + ".targets[" + std::to_string(i) + "]",
               "unknown target '" + t.targets[i] + "' (defined targets: " + join(known) + ")");
    }
  }
  t.anatomy = get_string(ctx, where, j, "anatomy", false);
  t.window = trim(get_string(ctx, where, j, "window", false));
  t.prompt = get_string(ctx, where, j, "prompt", false);
  if (const json* d = find(j, "default")) {
    if (!d->is_boolean()) ctx.fail(where + ".default", "expected true or false");
    t.run_by_default = d->get<bool>();
  }
  switch (t.family) {
    case TaskFamily::Segmentation:
      if (t.targets.empty()) ctx.fail(where + ".targets", "a segmentation task needs at least one target");
      break;
    case TaskFamily::DiseaseRecognition:
    case TaskFamily::GroundedReport:
    case TaskFamily::Vqa:
      if (t.targets.size() != 1)
        ctx.fail(where + ".targets",
                 "a " + family_name(t.family) + " task needs exactly one target (the codes and colour of its masks)");
      if (t.family == TaskFamily::Vqa && t.anatomy.empty() && t.prompt.empty())
        ctx.fail(where, "a vqa task needs 'anatomy' (the {anatomy} of the prompt) or its own 'prompt'");
      break;
    case TaskFamily::RegionDiagnosis:
      ctx.fail(where + ".family", "region-aware diagnosis needs a box on the image: ask it as an explicit question");
  }
  return t;
}

SeriesMode parse_mode(const Context& ctx, const std::string& where, const json& j) {
  if (j.is_string() && j.get<std::string>() == "video") return SeriesMode::Video;
  if (j.is_string() && j.get<std::string>() == "slices") return SeriesMode::Slices;
  ctx.fail(where, "expected \"video\" (SAM2 memory propagation through the frames) or \"slices\" (every frame "
                  "on its own); got " + j.dump());
  return SeriesMode::Video;
}

SliceSelection parse_slices(const Context& ctx, const std::string& where, const json& j) {
  check_keys(ctx, where, j, {"from", "to", "stride", "comment"});
  SliceSelection s;
  auto number = [&](const char* key, double& out) {
    if (const json* v = find(j, key)) {
      if (!v->is_number() || v->get<double>() < 0 || v->get<double>() > 1)
        ctx.fail(where + "." + key, "expected a fraction of the stack between 0 and 1");
      out = v->get<double>();
    }
  };
  number("from", s.from);
  number("to", s.to);
  if (s.from >= s.to) ctx.fail(where, "'from' must be smaller than 'to'");
  if (const json* v = find(j, "stride")) {
    if (!v->is_number_integer() || v->get<int>() < 1) ctx.fail(where + ".stride", "expected an integer >= 1");
    s.stride = v->get<int>();
  }
  return s;
}

// Placeholders a template may use, per family.
void check_template(const Context& ctx, const std::string& where, const std::string& family, const std::string& text) {
  std::set<std::string> allowed = {"{modality}"};
  if (family == "segmentation") allowed.insert("{target}");
  if (family == "vqa") allowed.insert("{anatomy}");
  for (size_t pos = text.find('{'); pos != std::string::npos; pos = text.find('{', pos + 1)) {
    size_t end = text.find('}', pos);
    if (end == std::string::npos) ctx.fail(where, "unclosed '{' in \"" + text + "\"");
    std::string ph = text.substr(pos, end - pos + 1);
    if (!allowed.count(ph))
      ctx.fail(where, "placeholder " + ph + " is not available here (allowed: " +
                          join(std::vector<std::string>(allowed.begin(), allowed.end())) + ")");
  }
  if (family == "segmentation" && text.find("{target}") == std::string::npos)
    ctx.fail(where, "the segmentation prompt must contain {target}");
}

std::string line_column(std::string_view text, size_t byte) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

json parse_json(std::string_view text, const Context& ctx) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at line..".
    ctx.fail("", "not valid JSON at " + line_column(text, e.byte > 0 ? e.byte - 1 : 0) + ": " + what);
  }
}

}  // namespace

struct TaskRules::CompiledPatterns {
  struct Alternative {
    std::vector<std::regex> descriptions, not_descriptions;
  };
  std::vector<std::vector<Alternative>> by_rule;  // [rule][alternative]
};

const std::vector<std::string>& modality_classes() {
  static const std::vector<std::string> kClasses = {"CT",        "MRI",    "X-ray",      "Ultrasound", "Pathology",
                                                    "Endoscopy", "Fundus", "Dermoscopy", "OCT",        "Mammography"};
  return kClasses;
}

std::string mode_name(SeriesMode mode) { return mode == SeriesMode::Video ? "video" : "slices"; }

std::string family_name(TaskFamily family) {
  return kFamilyNames.at(static_cast<size_t>(family));
}

double Target::min_size_for(const std::string& modality) const {
  const auto it = min_size_by_modality.find(modality);
  return it == min_size_by_modality.end() ? min_size : it->second;
}

std::optional<CodedConcept> Target::effective_finding_site() const {
  if (finding_site) return finding_site;
  if (anatomic_region) return anatomic_region;
  if (kind == Kind::Structure) return type;
  return std::nullopt;
}

namespace {

// The document's parts, validated, before merging with the defaults.
struct Document {
  bool extends_defaults = false;
  std::optional<SeriesMode> mode;  // the top-level "mode"
  std::vector<bool> rule_mode_given;  // per rule: it said "mode" itself
  std::map<std::string, std::string> prompts;
  std::map<std::string, Target> targets;
  std::vector<Rule> rules;
};

Document parse_document(std::string_view text, const Context& ctx, const std::map<std::string, Target>* base_targets) {
  const json root = parse_json(text, ctx);
  check_keys(ctx, "", root, {"version", "comment", "extends", "mode", "prompts", "targets", "rules"});
  Document doc;
  const json* version = find(root, "version");
  if (!version) ctx.fail("", "missing required key 'version' (this node reads version 1)");
  if (!version->is_number_integer() || version->get<int>() != 1)
    ctx.fail("version", "unsupported version " + version->dump() + " (this node reads version 1)");
  if (const json* ext = find(root, "extends")) {
    if (!ext->is_string() || ext->get<std::string>() != "defaults")
      ctx.fail("extends", "the only value is \"defaults\" (leave the key out to replace the defaults)");
    doc.extends_defaults = true;
  }
  if (const json* mode = find(root, "mode")) doc.mode = parse_mode(ctx, "mode", *mode);
  if (const json* prompts = find(root, "prompts")) {
    check_keys(ctx, "prompts", *prompts, kFamilyNames);
    for (auto it = prompts->begin(); it != prompts->end(); ++it) {
      std::string where = "prompts." + it.key();
      if (!it->is_string() || trim(it->get<std::string>()).empty()) ctx.fail(where, "expected a non-empty string");
      check_template(ctx, where, it.key(), it->get<std::string>());
      doc.prompts[it.key()] = it->get<std::string>();
    }
  }
  if (const json* targets = find(root, "targets")) {
    if (!targets->is_object()) ctx.fail("targets", "expected an object of named targets");
    for (auto it = targets->begin(); it != targets->end(); ++it)
      doc.targets[it.key()] = parse_target(ctx, "targets." + it.key(), it.key(), *it);
  }
  // Tasks may refer to the file's own targets and, when extending, to the defaults'.
  std::map<std::string, Target> visible =
      base_targets && doc.extends_defaults ? *base_targets : std::map<std::string, Target>{};
  for (const auto& [k, v] : doc.targets) visible[k] = v;

  const json* rules = find(root, "rules");
  if (!rules && !doc.extends_defaults) ctx.fail("", "missing required key 'rules'");
  if (rules) {
    if (!rules->is_array()) ctx.fail("rules", "expected a list of rules");
    std::set<std::string> names;
    for (size_t i = 0; i < rules->size(); ++i) {
      const std::string where = "rules[" + std::to_string(i) + "]";
      const json& r = (*rules)[i];
      check_keys(ctx, where, r, {"name", "comment", "match", "modality_phrase", "tasks", "slices", "mode", "slide_um"});
      Rule rule;
      rule.name = get_string(ctx, where, r, "name", true);
      if (!names.insert(rule.name).second) ctx.fail(where + ".name", "rule name '" + rule.name + "' is used twice");
      const std::string named = where + " (" + rule.name + ")";
      const json* match = find(r, "match");
      if (!match) ctx.fail(named, "missing required key 'match'");
      if (match->is_object()) {
        rule.match.push_back(parse_match(ctx, named + ".match", *match));
      } else if (match->is_array() && !match->empty()) {
        for (size_t m = 0; m < match->size(); ++m)
          rule.match.push_back(parse_match(ctx, named + ".match[" + std::to_string(m) + "]", (*match)[m]));
      } else {
        ctx.fail(named + ".match", "expected an object or a non-empty list of objects");
      }
      rule.modality_phrase = get_string(ctx, named, r, "modality_phrase", true);
      const json* tasks = find(r, "tasks");
      if (!tasks) ctx.fail(named, "missing required key 'tasks'");
      if (!tasks->is_array() || tasks->empty()) ctx.fail(named + ".tasks", "expected a non-empty list of tasks");
      std::set<std::string> task_names;
      for (size_t t = 0; t < tasks->size(); ++t) {
        Task task = parse_task(ctx, named + ".tasks[" + std::to_string(t) + "]", (*tasks)[t], visible);
        if (!task_names.insert(task.name).second)
          ctx.fail(named + ".tasks[" + std::to_string(t) + "].name",
                   "task name '" + task.name + "' is used twice in this rule");
        rule.tasks.push_back(std::move(task));
      }
      if (const json* s = find(r, "slices")) rule.slices = parse_slices(ctx, named + ".slices", *s);
      if (const json* um = find(r, "slide_um")) {
        if (!um->is_number() || um->get<double>() < 0.05 || um->get<double>() > 100)
          ctx.fail(named + ".slide_um",
                   "expected the whole-slide resolution in micrometres per pixel, 0.05 to 100; got " + um->dump());
        rule.slide_um = um->get<double>();
      }
      const json* mode = find(r, "mode");
      if (mode) rule.mode = parse_mode(ctx, named + ".mode", *mode);
      doc.rule_mode_given.push_back(mode != nullptr);
      doc.rules.push_back(std::move(rule));
    }
  }
  return doc;
}

}  // namespace

TaskRules TaskRules::parse(std::string_view json_text, const std::string& source) {
  // The defaults are the base: the prompt templates are the model's (MODEL.md), not policy, so
  // a replacement file may leave them out; "extends" also inherits targets and rules.
  const TaskRules base = defaults();
  return build(json_text, source, &base);
}

TaskRules TaskRules::build(std::string_view json_text, const std::string& source, const TaskRules* base) {
  Context ctx(source);
  Document doc = parse_document(json_text, ctx, base ? &base->targets_ : nullptr);

  TaskRules rules;
  rules.source_ = source;
  // The file's "mode" is the default of its own rules that say none; an extending file's
  // also of the defaults' rules it inherits (the whole node switches with one line).
  if (doc.extends_defaults && base) rules.default_mode_ = base->default_mode_;
  if (doc.mode) rules.default_mode_ = *doc.mode;
  for (size_t i = 0; i < doc.rules.size(); ++i)
    if (!doc.rule_mode_given[i]) doc.rules[i].mode = rules.default_mode_;
  if (base) rules.prompts_ = base->prompts_;
  for (const auto& [k, v] : doc.prompts) rules.prompts_[k] = v;
  for (const auto& family : kFamilyNames)
    if (!rules.prompts_.count(family)) ctx.fail("prompts", "missing the '" + family + "' prompt template");
  if (doc.extends_defaults && base) {
    rules.targets_ = base->targets_;
    rules.rules_ = doc.rules;
    rules.rule_mode_given_ = doc.rule_mode_given;
    for (size_t i = 0; i < base->rules_.size(); ++i) {
      const Rule& r = base->rules_[i];
      bool overridden =
          std::any_of(doc.rules.begin(), doc.rules.end(), [&](const Rule& mine) { return mine.name == r.name; });
      if (overridden) continue;
      rules.rules_.push_back(r);
      const bool given = base->rule_mode_given_.at(i);
      if (!given) rules.rules_.back().mode = rules.default_mode_;
      rules.rule_mode_given_.push_back(given);
    }
  } else {
    rules.rules_ = std::move(doc.rules);
    rules.rule_mode_given_ = doc.rule_mode_given;
  }
  for (auto& [k, v] : doc.targets) rules.targets_[k] = v;
  if (rules.rules_.empty()) ctx.fail("rules", "no rules: nothing would ever be analysed");

  auto compiled = std::make_shared<CompiledPatterns>();
  for (const auto& rule : rules.rules_) {
    auto& per_rule = compiled->by_rule.emplace_back();
    for (const auto& alt : rule.match) {
      auto& per_alt = per_rule.emplace_back();
      const auto flags = std::regex::ECMAScript | std::regex::icase | std::regex::optimize;
      for (const auto& p : alt.description_patterns) per_alt.descriptions.emplace_back(p, flags);
      for (const auto& p : alt.not_description_patterns) per_alt.not_descriptions.emplace_back(p, flags);
    }
  }
  rules.patterns_ = std::move(compiled);
  return rules;
}

TaskRules TaskRules::defaults() {
  return build(default_task_rules_json(), "built-in defaults", nullptr);
}

TaskRules TaskRules::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("task rules: cannot open " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("task rules: cannot read " + path.string());
  return parse(text.str(), path.string());
}

TaskRules TaskRules::load_or_defaults(const std::filesystem::path& path) {
  return path.empty() ? defaults() : load(path);
}

const Target& TaskRules::target(const std::string& key) const {
  auto it = targets_.find(key);
  if (it == targets_.end()) throw ConfigError("task rules (" + source_ + "): unknown target '" + key + "'");
  return it->second;
}

const std::string& TaskRules::prompt_template(TaskFamily family) const {
  return prompts_.at(family_name(family));
}

std::string TaskRules::unknown_window(const std::vector<std::string>& known) const {
  for (const auto& rule : rules_)
    for (const auto& task : rule.tasks)
      if (!task.window.empty() && std::find(known.begin(), known.end(), task.window) == known.end()) {
        std::string names;
        for (const auto& k : known) names += (names.empty() ? "" : ", ") + k;
        return "task rules (" + source_ + "): rule " + rule.name + ", task " + task.name + ": unknown window preset '" +
               task.window + "' (known: " + names + ")";
      }
  return "";
}

const Rule* TaskRules::select(const SeriesFacts& series) const {
  const std::string modality = lower(trim(series.modality));
  const std::string body_part = lower(trim(series.body_part_examined));
  for (size_t r = 0; r < rules_.size(); ++r) {
    const Rule& rule = rules_[r];
    for (size_t a = 0; a < rule.match.size(); ++a) {
      const SeriesMatch& m = rule.match[a];
      if (!m.modalities.empty() && std::none_of(m.modalities.begin(), m.modalities.end(),
                                                [&](const std::string& x) { return lower(x) == modality; }))
        continue;
      auto is_body_part = [&](const std::string& x) { return lower(x) == body_part; };
      if (!m.body_parts.empty() && std::none_of(m.body_parts.begin(), m.body_parts.end(), is_body_part)) continue;
      if (std::any_of(m.not_body_parts.begin(), m.not_body_parts.end(), is_body_part)) continue;
      const auto& patterns = patterns_->by_rule[r][a];
      auto in_description = [&](const std::regex& re) { return std::regex_search(series.series_description, re); };
      if (!patterns.descriptions.empty() &&
          std::none_of(patterns.descriptions.begin(), patterns.descriptions.end(), in_description))
        continue;
      if (std::any_of(patterns.not_descriptions.begin(), patterns.not_descriptions.end(), in_description)) continue;
      return &rule;
    }
  }
  return nullptr;
}

std::string TaskRules::prompt_for(const Rule& rule, const Task& task, const Target* target) const {
  std::string text = task.prompt.empty() ? prompt_template(task.family) : task.prompt;
  auto replace_all = [&text](const std::string& from, const std::string& to) {
    for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
      text.replace(pos, from.size(), to);
  };
  if (text.find("{target}") != std::string::npos) {
    if (!target)
      throw ConfigError("task rules (" + source_ + "): rule " + rule.name + ", task " + task.name +
                        ": the prompt needs a target");
    replace_all("{target}", target->phrase);
  }
  replace_all("{modality}", rule.modality_phrase);
  replace_all("{anatomy}", task.anatomy);
  return text;
}

}  // namespace unibiomed::config
