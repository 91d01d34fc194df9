// Minimum sizes of findings: per target, or per modality class with a default; the built-in
// values documented in TASK-RULES.md. Minimum confidences: a number from 0 to 1, 0 by default.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include "config/task_rules.h"

namespace unibiomed::config {
namespace {

std::string rules_with_lesion_min_size(const std::string& min_size) {
  return R"({"version": 1, "extends": "defaults", "targets": {"lesion": {
    "phrase": "lesion", "label": "Lesion", "kind": "lesion", "colour": [255, 60, 60], "min_size": )" +
         min_size + R"(,
    "category": {"value": "49755003", "scheme": "SCT", "meaning": "Morphologically Abnormal Structure"},
    "type": {"value": "52988006", "scheme": "SCT", "meaning": "Lesion"}}},
    "rules": [{"name": "x", "match": {"modality": ["CT"]}, "modality_phrase": "CT",
               "tasks": [{"name": "t", "family": "segmentation", "targets": ["lesion"]}]}]})";
}

TEST(TaskRulesMinSize, ANumberOrOnePerModalityClass) {
  TaskRules rules = TaskRules::parse(rules_with_lesion_min_size("7.5"), "test");
  EXPECT_EQ(rules.target("lesion").min_size_for("CT"), 7.5);
  EXPECT_EQ(rules.target("lesion").min_size_for("Fundus"), 7.5);
  rules = TaskRules::parse(rules_with_lesion_min_size(R"({"CT": 12, "fundus": 0.02, "default": 1})"), "test");
  EXPECT_EQ(rules.target("lesion").min_size_for("CT"), 12);
  EXPECT_EQ(rules.target("lesion").min_size_for("Fundus"), 0.02);  // spelled as the modality classes are
  EXPECT_EQ(rules.target("lesion").min_size_for("MRI"), 1);
  rules = TaskRules::parse(rules_with_lesion_min_size(R"({"CT": 12})"), "test");
  EXPECT_EQ(rules.target("lesion").min_size_for("MRI"), 0);
}

TEST(TaskRulesMinSize, BadValuesNameThePlace) {
  auto error_of = [](const std::string& min_size) {
    try {
      TaskRules::parse(rules_with_lesion_min_size(min_size), "test.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("-1").find("targets.lesion.min_size"), std::string::npos) << error_of("-1");
  EXPECT_NE(error_of(R"({"PET": 3})").find("'PET' is neither 'default' nor one of the model's modalities"),
            std::string::npos)
      << error_of(R"({"PET": 3})");
  EXPECT_NE(error_of(R"({"CT": "big"})").find("min_size.CT"), std::string::npos) << error_of(R"({"CT": "big"})");
}

TEST(TaskRulesMinConfidence, ANumberFromZeroToOneAndNoneByDefault) {
  // Given after min_size in the target: "min_size": 10, "min_confidence": X.
  auto parse = [](const std::string& confidence) {
    return TaskRules::parse(rules_with_lesion_min_size("10, \"min_confidence\": " + confidence), "test.json");
  };
  EXPECT_EQ(parse("0.6").target("lesion").min_confidence, 0.6);
  EXPECT_EQ(parse("1").target("lesion").min_confidence, 1);
  for (const char* bad : {"-0.1", "1.5", "\"high\"", "[0.5]"}) {
    try {
      parse(bad);
      ADD_FAILURE() << bad << " was taken";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("targets.lesion.min_confidence: expected a number from 0 to 1"),
                std::string::npos)
          << e.what();
    }
  }
  const TaskRules defaults = TaskRules::defaults();
  for (const auto& [key, t] : defaults.targets()) EXPECT_EQ(t.min_confidence, 0) << key;
}

TEST(TaskRulesMinSize, DefaultsDropSpecksPerModality) {
  const TaskRules rules = TaskRules::defaults();
  const Target& lesion = rules.target("lesion");
  // CT/MR lesions: about 3 mm (14 mm3 as a sphere, 7 mm2 on a slice).
  EXPECT_EQ(lesion.min_size_for("CT"), 10);
  EXPECT_EQ(lesion.min_size_for("MRI"), 10);
  EXPECT_EQ(lesion.min_size_for("X-ray"), 10);
  // Fundus: a large microaneurysm.
  EXPECT_EQ(lesion.min_size_for("Fundus"), 0.01);
  EXPECT_EQ(lesion.min_size_for("Pathology"), 0);
  for (const char* organ : {"liver", "kidney", "spleen", "pancreas", "lung", "heart", "left_ventricle", "prostate"})
    EXPECT_EQ(rules.target(organ).min_size, 20) << organ;
  EXPECT_EQ(rules.target("optic_disc").min_size, 0.1);
  EXPECT_EQ(rules.target("lung_nodule").min_size, 10);
  // Every target but the slides' states a minimum.
  for (const auto& [key, t] : rules.targets()) {
    if (key == "neoplastic_cells") continue;
    EXPECT_GT(t.min_size_for("CT") + t.min_size_for("Fundus"), 0) << key;
  }
}

}  // namespace
}  // namespace unibiomed::config
