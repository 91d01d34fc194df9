// Task rules: the defaults cover the ten modalities with the prompts of MODEL.md and codes of
// DICOM PS3.16; user files extend or replace them; every broken file gives an error naming
// the file and the place.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "config/task_rules.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "tests/support/test_support.h"

namespace unibiomed::config {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

TEST(TaskRulesDefaults, EmbeddedTextIsTheFileInTheSourceTree) {
  const std::string on_disk = test::read_file(test::source_dir() / "config" / "task-rules.json");
  EXPECT_EQ(std::string(default_task_rules_json()), on_disk);
}

TEST(TaskRulesDefaults, EveryModalityClassHasARuleAndEveryRuleIsReachable) {
  const TaskRules rules = TaskRules::defaults();
  for (const auto& modality : modality_classes()) {
    const Rule* rule = rules.select({modality, "", ""});
    ASSERT_NE(rule, nullptr) << "no default rule for " << modality;
    EXPECT_FALSE(rule->tasks.empty()) << modality;
    bool has_default_task = false;
    for (const auto& t : rule->tasks) has_default_task |= t.run_by_default;
    EXPECT_TRUE(has_default_task) << modality << ": rule " << rule->name << " runs nothing by default";
  }
  EXPECT_EQ(rules.select({"PET", "", ""}), nullptr);
}

TEST(TaskRulesDefaults, SeriesAreMatchedByBodyPartAndDescription) {
  const TaskRules rules = TaskRules::defaults();
  struct Case {
    SeriesFacts series;
    std::string rule;
  };
  const std::vector<Case> cases = {
      {{"CT", "ABDOMEN", "Abdomen 5mm"}, "ct-abdomen"},
      {{"CT", "", ""}, "ct-abdomen"},
      {{"CT", "chest", ""}, "ct-chest"},  // BodyPartExamined compared case-insensitively
      {{"CT", "", "THORAX 1.0 B60f"}, "ct-chest"},
      {{"CT", "", "Lung nodules follow-up"}, "ct-chest"},
      {{"MRI", "BRAIN", "t1_mprage"}, "mr-brain"},
      {{"MRI", "", "AX FLAIR"}, "mr-brain"},
      {{"MRI", "PROSTATE", ""}, "mr-prostate"},
      {{"MRI", "", "SAX cine"}, "mr-heart"},
      {{"MRI", "ABDOMEN", "T2 HASTE"}, "mr-abdomen"},
      {{"X-ray", "CHEST", "PA"}, "xray-chest"},
      {{"Ultrasound", "BREAST", ""}, "us-breast"},
      {{"Ultrasound", "", "Liver lesion"}, "us-liver"},
      {{"Ultrasound", "", "Echo apical 4ch"}, "us-heart"},
      {{"Ultrasound", "THYROID", ""}, "ultrasound"},
      {{"ultrasound", "", ""}, "ultrasound"},  // modality classes too
      {{"Fundus", "EYE", ""}, "fundus"},
      {{"OCT", "", ""}, "oct"},
      {{"Dermoscopy", "", ""}, "dermoscopy"},
      {{"Endoscopy", "", ""}, "endoscopy"},
      {{"Pathology", "", ""}, "pathology"},
      {{"Mammography", "BREAST", ""}, "mammography"},
  };
  for (const auto& c : cases) {
    const Rule* rule = rules.select(c.series);
    ASSERT_NE(rule, nullptr) << c.series.modality << "/" << c.series.body_part_examined;
    EXPECT_EQ(rule->name, c.rule) << c.series.modality << " / " << c.series.body_part_examined << " / "
                                  << c.series.series_description;
  }
}

TEST(TaskRulesDefaults, OtherBodyPartsAndLocalizersAreNotAsked) {
  // The "every other" rules are for the trunk (CT, MRI) and the chest (X-ray): a series that
  // says it shows another part, or is a localizer, gets no rule (and is skipped, saying so)
  // rather than abdominal or chest questions. The first cases are real series of pydicom's
  // test files (dicomdirtests: a head CT, a cervical spine radiograph, MR localizers).
  const TaskRules rules = TaskRules::defaults();
  const std::vector<SeriesFacts> not_asked = {
      {"CT", "HEAD", "Routine Brain"},
      {"X-ray", "CSPINE", "Cervical LAT"},
      {"MRI", "", "FAST LOCALIZER"},
      {"MRI", "", "T/S/C RF FAST PILOT"},
      {"CT", "", "CT HEAD W/O"},
      {"CT", "", "Routine Brain"},
      {"CT", "knee", ""},
      {"CT", "", "AAHead_Scout"},
      {"CT", "CHEST", "Scout"},
      {"MRI", "LSPINE", "SAG T2"},
      {"MRI", "", "sag t2 l-spine"},
      {"MRI", "KNEE", "PD FS cor"},
      {"MRI", "HEAD", "3-plane localizer"},
      {"MRI", "", "Survey_SHC"},
      {"X-ray", "", "L-Spine AP"},
      {"X-ray", "HAND", "PA"},
      {"X-ray", "", "Knee lat"},
      {"X-ray", "ABDOMEN", "KUB"},
  };
  for (const auto& series : not_asked) {
    const Rule* rule = rules.select(series);
    EXPECT_EQ(rule, nullptr) << series.modality << " / " << series.body_part_examined << " / "
                             << series.series_description << ": " << (rule ? rule->name : "");
  }
  struct Case {
    SeriesFacts series;
    std::string rule;
  };
  const std::vector<Case> asked = {
      {{"CT", "WHOLEBODY", ""}, "ct-abdomen"},        {{"CT", "ABDOMEN", "Abdomen/Pelvis 5mm"}, "ct-abdomen"},
      {{"CT", "", "Portal venous"}, "ct-abdomen"},    {{"MRI", "HEAD", "AX FLAIR"}, "mr-brain"},
      {{"MRI", "", "T1 VIBE dixon"}, "mr-abdomen"},   {{"X-ray", "", "Thorax ap"}, "xray-chest"},
      {{"X-ray", "CHEST", "Chest PA"}, "xray-chest"}, {{"X-ray", "", ""}, "xray-chest"},
  };
  for (const auto& c : asked) {
    const Rule* rule = rules.select(c.series);
    ASSERT_NE(rule, nullptr) << c.series.modality << " / " << c.series.series_description;
    EXPECT_EQ(rule->name, c.rule) << c.series.modality << " / " << c.series.series_description;
  }
}

TEST(TaskRulesDefaults, KidneysAndLungsArePaired) {
  const TaskRules rules = TaskRules::defaults();
  for (const auto& [key, target] : rules.targets()) EXPECT_EQ(target.paired, key == "kidney" || key == "lung") << key;
}

TEST(TaskRulesDefaults, BriefExamplesAreTheDefaultTasks) {
  // The issue: CT abdomen segments liver, kidneys, spleen, pancreas; chest X-ray lungs, heart.
  const TaskRules rules = TaskRules::defaults();
  const Rule* ct = rules.select({"CT", "ABDOMEN", ""});
  ASSERT_NE(ct, nullptr);
  EXPECT_EQ(ct->tasks.at(0).family, TaskFamily::Segmentation);
  EXPECT_EQ(ct->tasks.at(0).targets, (std::vector<std::string>{"liver", "kidney", "spleen", "pancreas"}));
  EXPECT_EQ(ct->tasks.at(0).window, "abdomen");
  const Rule* xr = rules.select({"X-ray", "CHEST", ""});
  ASSERT_NE(xr, nullptr);
  EXPECT_EQ(xr->tasks.at(0).targets, (std::vector<std::string>{"lung", "heart"}));
  std::set<TaskFamily> families;
  for (const auto& r : rules.rules())
    for (const auto& t : r.tasks) families.insert(t.family);
  EXPECT_TRUE(families.count(TaskFamily::DiseaseRecognition));
  EXPECT_TRUE(families.count(TaskFamily::GroundedReport));
}

// The prompt table of docs/MODEL.md (task families and their prompts) is the independent source.
TEST(TaskRulesDefaults, PromptsAreThoseOfTheModelDocumentation) {
  const fs::path model_md = test::source_dir() / "docs" / "MODEL.md";
  ASSERT_TRUE(fs::exists(model_md)) << model_md << " is missing: the repository documents the model's prompts there";
  const std::string doc = test::read_file(model_md);
  std::map<std::string, std::string> table;  // row name -> first backquoted cell
  const std::regex row(R"(\n\| (segmentation|grounded disease recognition|grounded VQA|grounded report) \| `([^`]*)`)");
  for (std::sregex_iterator it(doc.begin(), doc.end(), row), end; it != end; ++it) table[(*it)[1]] = (*it)[2];
  ASSERT_EQ(table.size(), 4u) << "the MODEL.md task table changed shape";

  const TaskRules rules = TaskRules::defaults();
  // MODEL.md's example: `Please segment liver in CT.`
  const Rule* ct = rules.select({"CT", "ABDOMEN", ""});
  ASSERT_NE(ct, nullptr);
  EXPECT_EQ(rules.prompt_for(*ct, ct->tasks.at(0), &rules.target("liver")), "Please segment liver in CT.");
  EXPECT_EQ(std::regex_replace(table["segmentation"], std::regex(R"(\{target\})"), "liver in CT"),
            "Please segment liver in CT.");
  EXPECT_EQ(rules.prompt_template(TaskFamily::DiseaseRecognition), table["grounded disease recognition"]);
  EXPECT_EQ(rules.prompt_template(TaskFamily::GroundedReport), table["grounded report"]);
  EXPECT_EQ(rules.prompt_template(TaskFamily::Vqa), table["grounded VQA"]);
  const Task disease{"abnormality", TaskFamily::DiseaseRecognition, {"lesion"}, "", "", "", true};
  EXPECT_EQ(rules.prompt_for(*ct, disease, nullptr), table["grounded disease recognition"]);
}

// Codes verified by hand against DICOM PS3.16 (2024-2026 editions; each row names the context
// group it was read from). The defaults must use exactly these values and meanings.
struct Ps316Code {
  const char* value;
  const char* meaning;
  int cid;
};
const Ps316Code kPs316[] = {
    {"91723000", "Anatomical Structure", 7150},  // CID 7150 Segmentation Property Category
    {"49755003", "Morphologically Abnormal Structure", 7150},
    {"10200004", "Liver", 7154},  // CID 7154 Abdominal Segmentation Type
    {"64033007", "Kidney", 7154},
    {"78961009", "Spleen", 7154},
    {"15776009", "Pancreas", 7154},
    {"39607008", "Lung", 7155},   // CID 7155 Thoracic Segmentation Type
    {"80891009", "Heart", 7152},  // CID 7152 Cardiac Structure Segmentation Type
    {"87878005", "Left Ventricle", 7152},
    {"41216001", "Prostate", 7160},          // CID 7160 Pelvic Organ Segmentation Type
    {"12738006", "Brain", 7153},             // CID 7153 CNS Segmentation Type
    {"81016008", "Optic nerve head", 4209},  // CID 4209 Ophthalmic Anatomic Structure Imaged
    {"81745001", "Eye", 4209},
    {"5665001", "Retina", 4209},
    {"76752008", "Breast", 4031},  // CID 4031 Common Anatomic Region
    {"71854001", "Colon", 4031},
    {"39937001", "Skin", 7166},    // CID 7166 Common Tissue Segmentation Type
    {"52988006", "Lesion", 7159},  // CID 7159 Lesion Segmentation Type
    {"108369006", "Neoplasm", 7159},
    {"27925004", "Nodule", 7159},
    {"79654002", "Edema", 7159},
};

std::vector<std::pair<std::string, CodedConcept>> all_codes(const TaskRules& rules) {
  std::vector<std::pair<std::string, CodedConcept>> out;
  for (const auto& [key, t] : rules.targets()) {
    out.emplace_back(key + ".category", t.category);
    out.emplace_back(key + ".type", t.type);
    if (t.anatomic_region) out.emplace_back(key + ".anatomic_region", *t.anatomic_region);
    if (t.finding_site) out.emplace_back(key + ".finding_site", *t.finding_site);
  }
  return out;
}

TEST(TaskRulesDefaults, CodesAreThoseOfPs316) {
  const TaskRules rules = TaskRules::defaults();
  for (const auto& [where, code] : all_codes(rules)) {
    EXPECT_EQ(code.scheme, "SCT") << where;
    const Ps316Code* ref = nullptr;
    for (const auto& r : kPs316)
      if (code.value == r.value) ref = &r;
    ASSERT_NE(ref, nullptr) << where << ": code " << code.value << " (" << code.meaning
                            << ") is not in the verified table";
    EXPECT_EQ(code.meaning, ref->meaning) << where;
    EXPECT_EQ(code.cid, ref->cid) << where;
  }
  for (const auto& [key, t] : rules.targets()) {
    // Categories come from CID 7150; lesions are morphologically abnormal, structures anatomical.
    EXPECT_EQ(t.category.cid, 7150) << key;
    EXPECT_EQ(t.category.value, t.kind == Target::Kind::Lesion ? "49755003" : "91723000") << key;
    EXPECT_TRUE(t.effective_finding_site() || t.kind == Target::Kind::Lesion) << key;
  }
}

// pixelmed (Debian pixelmed-apps) ships its own copy of the PS3.16 context groups; every code
// value found there must carry the same SNOMED CT identity (an independent check of typos).
TEST(TaskRulesDefaults, CodesAgreeWithPixelmedsContextGroups) {
  const std::string jar = "/usr/share/java/pixelmed.jar";
  ASSERT_TRUE(fs::exists(jar)) << test::install_hint(jar, "Debian's pixelmed-apps");
  ASSERT_TRUE(test::have_program("unzip")) << test::install_hint("unzip", "Debian's unzip");
  const auto xml = test::run_command({"unzip", "-p", jar, "com/pixelmed/validate/DicomContextGroupsSource.xml"});
  ASSERT_EQ(xml.exit_code, 0) << xml.output.substr(0, 200);
  std::map<std::string, std::set<std::string>> meanings;  // SCT value -> meanings in pixelmed
  const std::regex entry(R"re(csd="SCT" cv="([0-9]+)" cm="([^"]*)")re");
  for (std::sregex_iterator it(xml.output.begin(), xml.output.end(), entry), end; it != end; ++it)
    meanings[(*it)[1]].insert((*it)[2]);
  ASSERT_GT(meanings.size(), 100u);
  std::set<std::string> checked;
  for (const auto& [where, code] : all_codes(TaskRules::defaults())) {
    auto it = meanings.find(code.value);
    if (it == meanings.end()) continue;  // pixelmed's copy predates some groups (CID 7150-7160)
    checked.insert(code.value);
    // 108369006 is "Tumor" in pixelmed's 2017 copy and "Neoplasm" in CID 7159 of current editions.
    if (code.value == "108369006") {
      EXPECT_TRUE(it->second.count("Tumor") || it->second.count("Neoplasm")) << where;
      continue;
    }
    EXPECT_TRUE(it->second.count(code.meaning)) << where << ": " << code.value << " is '" << *it->second.begin()
                                                << "' in pixelmed, '" << code.meaning << "' here";
  }
  std::cout << "distinct codes cross-checked against pixelmed's PS3.16 copy: " << checked.size() << "\n";
  // Liver, Kidney, Spleen, Pancreas, Lung, Heart, Prostate, Brain, Eye, Breast, Colon, Skin,
  // Edema and Neoplasm are in pixelmed's copy.
  EXPECT_GE(checked.size(), 14u);
}

// --- user files ------------------------------------------------------------------------------

json minimal_file() {
  return json::parse(R"({
    "version": 1,
    "targets": {
      "liver": {"phrase": "liver", "label": "Liver", "kind": "structure", "colour": [1, 2, 3],
                "category": {"value": "91723000", "scheme": "SCT", "meaning": "Anatomical Structure"},
                "type": {"value": "10200004", "scheme": "SCT", "meaning": "Liver"}}
    },
    "rules": [
      {"name": "ct-liver", "match": {"modality": ["CT"]}, "modality_phrase": "CT",
       "tasks": [{"name": "liver", "family": "segmentation", "targets": ["liver"], "window": "liver"}]}
    ]
  })");
}

TEST(TaskRulesFiles, AReplacementFileHasOnlyItsOwnRulesButKeepsThePromptTemplates) {
  const TaskRules rules = TaskRules::parse(minimal_file().dump(), "mine.json");
  EXPECT_EQ(rules.rules().size(), 1u);
  EXPECT_EQ(rules.targets().size(), 1u);
  EXPECT_EQ(rules.select({"MRI", "", ""}), nullptr);
  const Rule* ct = rules.select({"CT", "", ""});
  ASSERT_NE(ct, nullptr);
  EXPECT_EQ(rules.prompt_for(*ct, ct->tasks[0], &rules.target("liver")), "Please segment liver in CT.");
}

TEST(TaskRulesFiles, ExclusionsLeaveOutWhatTheyName) {
  json f = minimal_file();
  f["rules"][0]["match"] = json::parse(R"({"not_body_part": ["head"], "not_series_description": ["^loc"]})");
  const TaskRules rules = TaskRules::parse(f.dump(), "mine.json");
  EXPECT_NE(rules.select({"CT", "ABDOMEN", "Portal venous"}), nullptr);
  EXPECT_NE(rules.select({"MRI", "", ""}), nullptr);  // an exclusion alone matches every modality
  EXPECT_EQ(rules.select({"CT", "HEAD", ""}), nullptr);
  EXPECT_EQ(rules.select({"CT", " Head ", ""}), nullptr);  // trimmed, case-insensitive
  EXPECT_EQ(rules.select({"CT", "", "Localizer"}), nullptr);
  EXPECT_NE(rules.select({"CT", "", "Axial localizer"}), nullptr);  // a regex: "^loc" only at the start
}

TEST(TaskRulesFiles, SlideResolutionIsTheRulesOrHalfAMicrometre) {
  json f = minimal_file();
  EXPECT_DOUBLE_EQ(TaskRules::parse(f.dump(), "mine.json").rules()[0].slide_um, 0.5);
  f["rules"][0]["slide_um"] = 1.0;
  EXPECT_DOUBLE_EQ(TaskRules::parse(f.dump(), "mine.json").rules()[0].slide_um, 1.0);
  const TaskRules defaults = TaskRules::defaults();
  const Rule* pathology = defaults.select({"Pathology", "", ""});
  ASSERT_NE(pathology, nullptr);
  EXPECT_DOUBLE_EQ(pathology->slide_um, 0.5);
}

TEST(TaskRulesFiles, AnExtendingFileIsTriedFirstAndOverridesByName) {
  json f = minimal_file();
  f["extends"] = "defaults";
  f["rules"][0]["match"] = json::parse(R"({"modality": ["CT"], "series_description": ["^liver"]})");
  f["targets"]["spleen"] = f["targets"]["liver"];
  f["targets"]["spleen"]["colour"] = {9, 9, 9};
  f["targets"]["spleen"]["phrase"] = "spleen";
  f["targets"]["spleen"]["label"] = "Spleen";
  f["targets"]["spleen"]["type"] = json::parse(R"({"value": "78961009", "scheme": "SCT", "meaning": "Spleen"})");
  f["rules"].push_back(
      json::parse(R"({"name": "fundus", "match": {"modality": ["Fundus"]}, "modality_phrase": "fundus photograph",
      "tasks": [{"name": "disc", "family": "segmentation", "targets": ["optic_disc"]}]})"));
  const TaskRules rules = TaskRules::parse(f.dump(), "site.json");
  EXPECT_EQ(rules.select({"CT", "", "LIVER arterial"})->name, "ct-liver");
  EXPECT_EQ(rules.select({"CT", "", "abdomen"})->name, "ct-abdomen");  // defaults still there
  EXPECT_EQ(rules.target("spleen").colour, (std::array<uint8_t, 3>{9, 9, 9}));
  EXPECT_EQ(rules.target("kidney").label, "Kidney");
  const Rule* fundus = rules.select({"Fundus", "", ""});
  ASSERT_NE(fundus, nullptr);
  EXPECT_EQ(fundus->tasks.size(), 1u);  // the default rule of that name was replaced
  EXPECT_EQ(rules.prompt_for(*fundus, fundus->tasks[0], &rules.target("optic_disc")),
            "Please segment optic disc in fundus photograph.");
  size_t fundus_rules = 0;
  for (const auto& r : rules.rules()) fundus_rules += r.name == "fundus";
  EXPECT_EQ(fundus_rules, 1u);
}

TEST(TaskRulesFiles, LoadReadsAFileAndNamesAMissingOne) {
  test::TempDir dir;
  test::write_file(dir / "rules.json", minimal_file().dump(2));
  EXPECT_EQ(TaskRules::load(dir / "rules.json").source(), (dir / "rules.json").string());
  EXPECT_EQ(TaskRules::load_or_defaults("").source(), "built-in defaults");
  try {
    TaskRules::load(dir / "absent.json");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.json"), std::string::npos) << e.what();
  }
}

struct BadCase {
  const char* name;
  std::function<void(json&)> mutate;
  const char* expected;  // substring of the message (besides the file name)
};

TEST(TaskRulesFiles, EveryBrokenFileNamesTheFileAndThePlace) {
  const std::vector<BadCase> cases = {
      {"version missing", [](json& f) { f.erase("version"); }, "missing required key 'version'"},
      {"version 2", [](json& f) { f["version"] = 2; }, "version: unsupported version 2"},
      {"unknown top key", [](json& f) { f["rulez"] = json::array(); }, "unknown key 'rulez'"},
      {"no rules", [](json& f) { f.erase("rules"); }, "missing required key 'rules'"},
      {"empty rules", [](json& f) { f["rules"] = json::array(); }, "no rules"},
      {"bad extends", [](json& f) { f["extends"] = "default"; }, "extends: the only value is \"defaults\""},
      {"typo in task key", [](json& f) { f["rules"][0]["tasks"][0]["tagets"] = json::array({"liver"}); },
       "rules[0] (ct-liver).tasks[0]: unknown key 'tagets'"},
      {"unknown target", [](json& f) { f["rules"][0]["tasks"][0]["targets"] = {"livr"}; },
       "rules[0] (ct-liver).tasks[0].targets[0]: unknown target 'livr'"},
      {"unknown family", [](json& f) { f["rules"][0]["tasks"][0]["family"] = "segment"; },
       "unknown task family 'segment'"},
      {"region family in rules", [](json& f) { f["rules"][0]["tasks"][0]["family"] = "region"; },
       "region-aware diagnosis needs a box"},
      {"disease without target",
       [](json& f) { f["rules"][0]["tasks"][0] = json::parse(R"({"name":"d","family":"disease"})"); },
       "needs exactly one target"},
      {"vqa without anatomy",
       [](json& f) { f["rules"][0]["tasks"][0] = json::parse(R"({"name":"v","family":"vqa","targets":["liver"]})"); },
       "needs 'anatomy'"},
      {"duplicate task", [](json& f) { f["rules"][0]["tasks"].push_back(f["rules"][0]["tasks"][0]); },
       "task name 'liver' is used twice"},
      {"duplicate rule", [](json& f) { f["rules"].push_back(f["rules"][0]); },
       "rules[1].name: rule name 'ct-liver' is used twice"},
      {"unknown modality", [](json& f) { f["rules"][0]["match"]["modality"] = {"PET"}; },
       "rules[0] (ct-liver).match.modality: 'PET' is not one of the model's modalities"},
      {"bad regex", [](json& f) { f["rules"][0]["match"]["series_description"] = {"abd(omen"}; },
       "series_description[0]: 'abd(omen' is not a valid regular expression"},
      {"bad exclusion regex",
       [](json& f) {
         f["rules"][0]["match"]["not_series_description"] = {"x", "head("};
       },
       "rules[0] (ct-liver).match.not_series_description[1]: 'head(' is not a valid regular expression"},
      {"empty exclusion list", [](json& f) { f["rules"][0]["match"]["not_body_part"] = json::array(); },
       "must list at least one value"},
      {"empty match", [](json& f) { f["rules"][0]["match"] = json::object(); }, "a match needs at least one of"},
      {"empty match list", [](json& f) { f["rules"][0]["match"] = json::array(); },
       "expected an object or a non-empty list"},
      {"empty value list", [](json& f) { f["rules"][0]["match"]["body_part"] = json::array(); },
       "must list at least one value"},
      {"no tasks", [](json& f) { f["rules"][0]["tasks"] = json::array(); },
       "tasks: expected a non-empty list of tasks"},
      {"no phrase", [](json& f) { f["rules"][0].erase("modality_phrase"); }, "missing required key 'modality_phrase'"},
      {"colour range",
       [](json& f) {
         f["targets"]["liver"]["colour"] = {1, 2, 300};
       },
       "targets.liver.colour[2]: expected an integer 0..255"},
      {"colour shape",
       [](json& f) {
         f["targets"]["liver"]["colour"] = {1, 2};
       },
       "targets.liver.colour: expected [red, green, blue]"},
      {"bad kind", [](json& f) { f["targets"]["liver"]["kind"] = "organ"; },
       "'organ' is neither 'structure' nor 'lesion'"},
      {"paired lesion",
       [](json& f) {
         f["targets"]["liver"]["kind"] = "lesion";
         f["targets"]["liver"]["paired"] = true;
       },
       "targets.liver.paired: only a structure has sides"},
      {"paired not a boolean", [](json& f) { f["targets"]["liver"]["paired"] = "yes"; },
       "targets.liver.paired: expected true or false"},
      {"missing code", [](json& f) { f["targets"]["liver"].erase("type"); },
       "targets.liver: missing required key 'type'"},
      {"SCT not digits", [](json& f) { f["targets"]["liver"]["type"]["value"] = "T-62000"; },
       "targets.liver.type.value: 'T-62000' is not a SNOMED CT identifier"},
      {"meaning too long", [](json& f) { f["targets"]["liver"]["type"]["meaning"] = std::string(65, 'x'); },
       "longer than 64 characters"},
      {"min_size negative", [](json& f) { f["targets"]["liver"]["min_size"] = -1; },
       "targets.liver.min_size: expected a number >= 0"},
      {"segmentation prompt without target", [](json& f) { f["prompts"]["segmentation"] = "Segment it."; },
       "prompts.segmentation: the segmentation prompt must contain {target}"},
      {"unknown placeholder", [](json& f) { f["prompts"]["disease"] = "Is there {target}?"; },
       "prompts.disease: placeholder {target} is not available here"},
      {"unknown prompt family", [](json& f) { f["prompts"]["segment"] = "x {target}"; },
       "prompts: unknown key 'segment'"},
      {"slices order", [](json& f) { f["rules"][0]["slices"] = json::parse(R"({"from": 0.8, "to": 0.2})"); },
       "slices: 'from' must be smaller than 'to'"},
      {"slices stride", [](json& f) { f["rules"][0]["slices"] = json::parse(R"({"stride": 0})"); },
       "slices.stride: expected an integer >= 1"},
      {"string instead of bool", [](json& f) { f["rules"][0]["tasks"][0]["default"] = "no"; },
       "default: expected true or false"},
      {"slide resolution", [](json& f) { f["rules"][0]["slide_um"] = 0; },
       "rules[0] (ct-liver).slide_um: expected the whole-slide resolution in micrometres per pixel, 0.05 to 100; got "
       "0"},
      {"slide resolution text", [](json& f) { f["rules"][0]["slide_um"] = "0.5"; }, "slide_um: expected"},
      {"wrong type", [](json& f) { f["rules"][0]["modality_phrase"] = 3; },
       "modality_phrase: expected a string, found number"},
  };
  for (const auto& c : cases) {
    json f = minimal_file();
    c.mutate(f);
    try {
      TaskRules::parse(f.dump(), "broken.json");
      ADD_FAILURE() << c.name << ": accepted";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("broken.json"), std::string::npos) << c.name << ": " << what;
      EXPECT_NE(what.find(c.expected), std::string::npos) << c.name << ": " << what;
    }
  }
}

TEST(TaskRulesFiles, InvalidJsonNamesTheLineAndColumn) {
  const std::string text = "{\n  \"version\": 1,\n  \"rules\": [\n    {\"name\": \"x\",, }\n  ]\n}\n";
  try {
    TaskRules::parse(text, "typo.json");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("typo.json"), std::string::npos) << what;
    EXPECT_NE(what.find("line 4"), std::string::npos) << what;
  }
}

TEST(TaskRulesFiles, PromptFillsTargetModalityAndAnatomy) {
  json f = minimal_file();
  f["rules"][0]["tasks"].push_back(
      json::parse(R"({"name": "q", "family": "vqa", "targets": ["liver"], "anatomy": "the liver"})"));
  f["rules"][0]["tasks"].push_back(json::parse(
      R"({"name": "own", "family": "segmentation", "targets": ["liver"], "prompt": "Please segment {target} on this {modality} slice."})"));
  const TaskRules rules = TaskRules::parse(f.dump(), "q.json");
  const Rule& r = rules.rules()[0];
  EXPECT_EQ(
      rules.prompt_for(r, r.tasks[1], nullptr),
      "Can we observe any signs of abnormality in the liver? Please respond with interleaved segmentation masks for "
      "the corresponding parts.");
  EXPECT_EQ(rules.prompt_for(r, r.tasks[2], &rules.target("liver")), "Please segment liver on this CT slice.");
  EXPECT_THROW(rules.prompt_for(r, r.tasks[0], nullptr), ConfigError);
}

// "mode": how multi-frame series are put to the model. Video unless a rule or the file says
// otherwise; an extending file's top-level mode also switches the defaults' rules.
TEST(TaskRulesFiles, ModeIsVideoUnlessTheRuleOrTheFileSaysSlices) {
  const TaskRules defaults = TaskRules::defaults();
  for (const auto& r : defaults.rules()) EXPECT_EQ(mode_name(r.mode), mode_name(defaults.default_mode())) << r.name;
  EXPECT_EQ(mode_name(TaskRules::parse(minimal_file().dump(), "mine.json").rules()[0].mode), "video");
  EXPECT_EQ(mode_name(SeriesMode::Slices), "slices");

  json f = minimal_file();
  f["rules"][0]["mode"] = "slices";
  EXPECT_EQ(TaskRules::parse(f.dump(), "mine.json").rules()[0].mode, SeriesMode::Slices);

  json all = minimal_file();
  all["mode"] = "slices";
  all["rules"].push_back(json::parse(R"({"name": "mr", "match": {"modality": ["MRI"]}, "modality_phrase": "MRI",
      "mode": "video", "tasks": [{"name": "liver", "family": "segmentation", "targets": ["liver"]}]})"));
  const TaskRules mixed = TaskRules::parse(all.dump(), "mine.json");
  EXPECT_EQ(mixed.default_mode(), SeriesMode::Slices);
  EXPECT_EQ(mixed.select({"CT", "", ""})->mode, SeriesMode::Slices);  // the file's
  EXPECT_EQ(mixed.select({"MRI", "", ""})->mode, SeriesMode::Video);  // its own

  const TaskRules extending = TaskRules::parse(R"({"version": 1, "extends": "defaults", "mode": "slices"})", "site.json");
  EXPECT_EQ(extending.default_mode(), SeriesMode::Slices);
  for (const auto& r : extending.rules()) EXPECT_EQ(r.mode, SeriesMode::Slices) << r.name;

  for (const json& bad : {json("video mode"), json(1), json(nullptr)}) {
    json b = minimal_file();
    b["rules"][0]["mode"] = bad;
    try {
      TaskRules::parse(b.dump(), "broken.json");
      ADD_FAILURE() << bad.dump() << " accepted";
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("rules[0] (ct-liver).mode: expected \"video\""), std::string::npos) << what;
      EXPECT_NE(what.find("broken.json"), std::string::npos) << what;
    }
  }
  json top = minimal_file();
  top["mode"] = "frames";
  EXPECT_THROW(TaskRules::parse(top.dump(), "broken.json"), ConfigError);
}

}  // namespace
}  // namespace unibiomed::config
