// The sentence a reader reads for a finding: [SEG] placeholders and the filler around them
// removed from the model's answers of every shape, the target's name when nothing is left; the
// SR's text; the choice of a series' report-level answer; which rule target an explicit
// question names (how ask() codes its segments); a checkpoint's list of trained targets.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include "pipeline/checkpoint_targets.h"
#include "pipeline/report_text.h"
#include "pipeline/result_objects.h"
#include "pipeline/study_plan.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

TEST(FindingSentence, FillerAroundSegIsRemoved) {
  EXPECT_EQ(finding_sentence("It is [SEG]. Liver lesion."), "Liver lesion.");
  EXPECT_EQ(finding_sentence("It is [SEG]. Liver lesion.<|im_end|>"), "Liver lesion.");
  EXPECT_EQ(finding_sentence("Sure, [SEG].", "Liver"), "Liver.");
  EXPECT_EQ(finding_sentence("Sure, it is [SEG].", "Liver"), "Liver.");
  EXPECT_EQ(finding_sentence("Sure, the segmentation result is [SEG].", "Optic disc"), "Optic disc.");
  EXPECT_EQ(finding_sentence("It is [SEG].", "Kidney."), "Kidney.");
  EXPECT_EQ(finding_sentence("[SEG] Liver."), "Liver.");
  EXPECT_EQ(finding_sentence("[SEG]Liver"), "Liver.");
  EXPECT_EQ(finding_sentence("<p> Lung nodule. A round opacity of 3.5 cm. </p> [SEG]"),
            "Lung nodule. A round opacity of 3.5 cm.");
  EXPECT_EQ(finding_sentence("It is [SEG]. Liver lesion. It is [SEG]. Cyst."), "Liver lesion. Cyst.");
  EXPECT_EQ(finding_sentence("Sure , it is [SEG] ."), "");
}

TEST(FindingSentence, AnswersWithoutSegStayAsTheyAre) {
  EXPECT_EQ(finding_sentence("No, there is no sign of abnormality."), "No, there is no sign of abnormality.");
  EXPECT_EQ(finding_sentence("Lesion in liver CT"), "Lesion in liver CT.");
  EXPECT_EQ(finding_sentence("It is a cyst.", "Lesion"), "It is a cyst.");
  EXPECT_EQ(finding_sentence(""), "");
  EXPECT_EQ(finding_sentence("", "Lesion"), "Lesion.");
}

TEST(FindingSentence, TheModelsAnswerIsKeptWithoutEndTokens) {
  EXPECT_EQ(model_answer("It is [SEG]. Liver lesion.<|im_end|>"), "It is [SEG]. Liver lesion.");
  EXPECT_EQ(model_answer(" Sure, [SEG]. "), "Sure, [SEG].");
  EXPECT_EQ(model_answer("<|endoftext|>"), "");
}

TEST(FindingSentence, TheSrSaysTheLabelOnceWhenTheSentenceOnlyRepeatsIt) {
  EXPECT_EQ(reported_text("Liver", "Liver."), "Liver");
  EXPECT_EQ(reported_text("Liver lesion", "liver lesion"), "Liver lesion");
  EXPECT_EQ(reported_text("Cyst", ""), "Cyst");
  EXPECT_EQ(reported_text("Lung nodule", "Lung nodule. A round opacity."), "Lung nodule: Lung nodule. A round opacity.");
}

TEST(ReportAnswer, KeyFrameOfTheLargestElseTheMostFrequent) {
  const std::vector<std::pair<size_t, std::string>> texts{{0, "Cyst."}, {1, "Liver lesion."}, {2, "Liver lesion."}};
  auto chosen = choose_answer(texts, size_t{0});
  ASSERT_TRUE(chosen);
  EXPECT_EQ(chosen->text, "Cyst.");
  EXPECT_EQ(chosen->frame, 0u);
  chosen = choose_answer(texts, std::nullopt);
  ASSERT_TRUE(chosen);
  EXPECT_EQ(chosen->text, "Liver lesion.");
  EXPECT_EQ(chosen->frame, 0u);  // the answers differ: the series' first frame
  EXPECT_FALSE(choose_answer({{0, ""}}, std::nullopt));
}

TEST(AskMatch, AQuestionNamingARuleTargetIsCodedAsIt) {
  const config::TaskRules rules = config::TaskRules::defaults();
  const config::Rule* ct = rules.select({"CT", "ABDOMEN", ""});
  ASSERT_NE(ct, nullptr);
  AskMatch m = match_question(rules, ct, "Please segment liver in CT.");
  ASSERT_NE(m.target, nullptr);
  EXPECT_EQ(m.target->key, "liver");
  EXPECT_EQ(m.target->type.value, "10200004");
  EXPECT_EQ(m.window, "abdomen");
  EXPECT_TRUE(m.segmentation);
  // The longest name wins: a lung nodule is not the lung; any modality, no rule needed.
  m = match_question(rules, nullptr, "<image>Please segment lung nodule in CT.");
  ASSERT_NE(m.target, nullptr);
  EXPECT_EQ(m.target->key, "lung_nodule");
  m = match_question(rules, nullptr, "please segment the Optic disc");
  ASSERT_NE(m.target, nullptr);
  EXPECT_EQ(m.target->key, "optic_disc");
  // The rule's abnormality prompt: its target and window, the model's phrase names the finding.
  m = match_question(rules, ct, rules.prompt_template(config::TaskFamily::DiseaseRecognition));
  ASSERT_NE(m.target, nullptr);
  EXPECT_EQ(m.target->key, "lesion");
  EXPECT_EQ(m.window, "liver");
  EXPECT_FALSE(m.segmentation);
  // Anything else: no target (ask() codes it as the generic lesion).
  EXPECT_EQ(match_question(rules, ct, "What is shown?").target, nullptr);
  EXPECT_EQ(match_question(rules, ct, "Please segment unicorn in CT.").target, nullptr);
}

TEST(CheckpointTargetsFile, ReadWhenPresentRefusedWhenMalformed) {
  test::TempDir dir;
  EXPECT_FALSE(read_checkpoint_targets(dir.path()));
  EXPECT_FALSE(read_checkpoint_targets({}));
  test::write_file(dir / "targets.json", R"({"comment": "x", "modalities": {"CT": ["liver", "lesion"], "Fundus": []}})");
  const auto t = read_checkpoint_targets(dir.path());
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->knows("CT", "liver"));
  EXPECT_FALSE(t->knows("CT", "pancreas"));
  EXPECT_FALSE(t->knows("Fundus", "lesion"));
  EXPECT_FALSE(t->knows("MRI", "lesion"));
  EXPECT_EQ(t->video_prompt_every, 0) << "without it: the key frames only, as the reference";
  EXPECT_EQ(t->prompted_in_attention(), -1);
  test::write_file(dir / "targets.json", R"({"video_prompt_every": 3, "modalities": {"CT": ["liver"]}})");
  EXPECT_EQ(read_checkpoint_targets(dir.path())->video_prompt_every, 3);
  EXPECT_EQ(read_checkpoint_targets(dir.path())->prompted_in_attention(), CheckpointTargets::kPromptedInAttention);
  for (const char* bad : {"-1", "2.5", "\"3\""}) {
    test::write_file(dir / "targets.json",
                     std::string(R"({"video_prompt_every": )") + bad + R"(, "modalities": {"CT": ["liver"]}})");
    try {
      read_checkpoint_targets(dir.path());
      ADD_FAILURE() << bad;
    } catch (const PipelineError& e) {
      EXPECT_NE(std::string(e.what()).find("\"video_prompt_every\" must be a whole number"), std::string::npos)
          << e.what();
    }
  }
  test::write_file(dir / "targets.json", R"({"modalities": {"Xray": ["lung"]}})");
  try {
    read_checkpoint_targets(dir.path());
    FAIL();
  } catch (const PipelineError& e) {
    EXPECT_NE(std::string(e.what()).find("'Xray' is not one of the model's modality classes"), std::string::npos)
        << e.what();
  }
  test::write_file(dir / "targets.json", "[1, 2]");
  EXPECT_THROW(read_checkpoint_targets(dir.path()), PipelineError);
}

TEST(DicomText, ControlCharactersAndBackslashesOfAModelsPhraseBecomeSpaces) {
  // A label (LO): control characters, white space runs and backslashes become one space, none
  // at the ends; bytes that begin no UTF-8 character become U+FFFD.
  EXPECT_EQ(dicom_text("\x03 liver\\lesion\t\x07\n", 64, false), "liver lesion");
  EXPECT_EQ(dicom_text("\x01\x02\\", 64, false), "");
  EXPECT_EQ(dicom_text("a\xff"
                       "b",
                       64, false),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(dicom_text("a\xC3", 64, false), "a\xEF\xBF\xBD");  // cut inside a character
  // Free text (UT, ST) keeps backslashes and line breaks.
  EXPECT_EQ(dicom_text("C:\\x\x18 y\r\nz ", 100, true), "C:\\x y\r\nz");
  // Cut to whole characters within the byte limit (validators count LO's 64 in bytes).
  std::string accents;
  for (int k = 0; k < 40; ++k) accents += "\xC3\xA9";  // e acute, two bytes
  EXPECT_EQ(dicom_text(accents, 64, false).size(), 64u);
  EXPECT_EQ(dicom_text("a" + accents, 64, false).size(), 63u);
  EXPECT_EQ(dicom_text("abc   def", 4, false), "abc");
}

TEST(DicomText, ASegmentLabelLeftEmptyIsTheTargets) {
  config::Target target;
  target.label = "Liver lesion";
  const auto d = segment_description(target, "\x03\x04", "\x05text", "\x06", "", {});
  EXPECT_EQ(d.label, "Liver lesion");
  EXPECT_EQ(d.description, "text");
  EXPECT_EQ(d.tracking_id, "");
}

}  // namespace
}  // namespace unibiomed::pipeline
