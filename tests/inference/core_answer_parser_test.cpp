// Splitting answers into findings, on the answer formats of each task family (MODEL.md).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include "inference/answer_parser.h"

namespace unibiomed::inference {
namespace {

TEST(AnswerParser, SegmentationAnswersTakeTheTargetFromTheQuestion) {
  for (const char* answer : {"It is [SEG].<|im_end|>", "Sure, [SEG].", "Sure, the segmentation result is [SEG].<|end|>"}) {
    auto p = parse_answer(answer, "<image>Please segment liver in CT.");
    ASSERT_EQ(p.findings.size(), 1u) << answer;
    EXPECT_EQ(p.findings[0].phrase, "liver in CT") << answer;
    EXPECT_EQ(p.findings[0].seg_index, 0);
    EXPECT_EQ(p.seg_count, 1);
  }
  EXPECT_EQ(parse_answer("Sure, the segmentation result is [SEG].").text, "Sure, the segmentation result is.");
  // Without a segmentation question nothing names the region.
  EXPECT_EQ(parse_answer("It is [SEG].", "What is this?").findings.at(0).phrase, "");
}

TEST(AnswerParser, DiseaseRecognitionNamesTheDiseaseAfterEachSeg) {
  auto p = parse_answer(
      "It is [SEG]. liver tumor.<|im_end|>",
      "<image>Can we observe any signs of abnormality? Please respond with interleaved segmentation masks for the "
      "corresponding parts.");
  ASSERT_EQ(p.findings.size(), 1u);
  EXPECT_EQ(p.findings[0].phrase, "liver tumor");
  EXPECT_EQ(p.findings[0].text, "liver tumor.");
  EXPECT_EQ(p.text, "It is. liver tumor.");

  auto two = parse_answer("It is [SEG]. pneumonia. It is [SEG]. pleural effusion.");
  ASSERT_EQ(two.findings.size(), 2u);
  EXPECT_EQ(two.findings[0].phrase, "pneumonia");
  EXPECT_EQ(two.findings[1].phrase, "pleural effusion");
  EXPECT_EQ(two.findings[1].seg_index, 1);
}

TEST(AnswerParser, GroundedVqaAndReportUseTheParagraphBeforeTheSeg) {
  auto vqa = parse_answer("<p> Pneumothorax. </p> [SEG]<|im_end|>");
  ASSERT_EQ(vqa.findings.size(), 1u);
  EXPECT_EQ(vqa.findings[0].phrase, "Pneumothorax");
  EXPECT_EQ(vqa.text, "Pneumothorax.");

  auto report = parse_answer(
      "<p> Pneumonia. Patchy consolidation in the right lower lobe, no effusion. </p> [SEG] <p> Cardiomegaly. </p> "
      "[SEG]");
  ASSERT_EQ(report.findings.size(), 2u);
  EXPECT_EQ(report.findings[0].phrase, "Pneumonia");
  EXPECT_EQ(report.findings[0].text, "Pneumonia. Patchy consolidation in the right lower lobe, no effusion.");
  EXPECT_EQ(report.findings[1].phrase, "Cardiomegaly");
  EXPECT_EQ(report.findings[1].seg_index, 1);
  EXPECT_EQ(report.seg_count, 2);
}

TEST(AnswerParser, RegionDiagnosisIsOneFindingWithoutMask) {
  auto p = parse_answer("benign tumor in breast ultrasound<|im_end|>", "<image>What is the <region> in the picture?");
  ASSERT_EQ(p.findings.size(), 1u);
  EXPECT_EQ(p.findings[0].phrase, "benign tumor in breast ultrasound");
  EXPECT_EQ(p.findings[0].seg_index, -1);
  EXPECT_EQ(p.seg_count, 0);
}

TEST(AnswerParser, OddAnswersDoNotBreakIt) {
  EXPECT_TRUE(parse_answer("").findings.empty());
  EXPECT_TRUE(parse_answer("<|im_end|>").findings.empty());
  // A [SEG] with nothing around it, unbalanced markup, a dangling </p>.
  auto p = parse_answer("[SEG]");
  ASSERT_EQ(p.findings.size(), 1u);
  EXPECT_EQ(p.findings[0].phrase, "");
  auto q = parse_answer("</p> [SEG] <p> open paragraph [SEG]");
  ASSERT_EQ(q.findings.size(), 2u);
  EXPECT_EQ(q.findings[0].phrase, "");  // no paragraph closes before either [SEG]
  EXPECT_EQ(q.findings[1].phrase, "");
  // The reference's tiny-model answer (tests/reference e2e.json prediction_text): bytes around [SEG].
  auto r = parse_answer("\x03\xEF\xBF\xBD[SEG]\xEF\xBF\xBD,<unused_442>\x0c" "d<|im_end|>");
  EXPECT_EQ(r.seg_count, 1);
  ASSERT_EQ(r.findings.size(), 1u);
}

TEST(AnswerParser, SegmentationTarget) {
  EXPECT_EQ(segmentation_target("Please segment liver in CT.").value_or("?"), "liver in CT");
  EXPECT_EQ(segmentation_target("<image>please segment the left kidney").value_or("?"), "the left kidney");
  EXPECT_FALSE(segmentation_target("Please segment.").has_value());
  EXPECT_FALSE(segmentation_target("Describe the image.").has_value());
}

}  // namespace
}  // namespace unibiomed::inference
