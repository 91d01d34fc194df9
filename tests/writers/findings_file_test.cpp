// The findings file: the C++ parser and the published JSON schema (checked with Python's
// jsonschema, an independent validator) accept and reject the same documents, and every
// rejection names the JSON path.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "sr-writer/findings_file.h"

#include <gtest/gtest.h>

#include "tests/support/test_support.h"

namespace unibiomed::sr {
namespace {

bool schema_accepts(const test::TempDir& dir, const std::string& json) {
  const auto path = dir / "findings.json";
  test::write_file(path, json);
  const auto result =
      test::run_command({"/usr/bin/python3", (test::source_dir() / "tests/writers/check_findings_schema.py").string(),
                         (test::source_dir() / "sr-writer/findings.schema.json").string(), path.string()});
  EXPECT_TRUE(result.exit_code == 0 || result.exit_code == 1) << result.output;
  return result.exit_code == 0;
}

TEST(FindingsFile, TheExampleIsValidAndComplete) {
  const auto file = read_findings_file(test::source_dir() / "sr-writer/findings.example.json");
  ASSERT_TRUE(file.algorithm);
  EXPECT_EQ(file.algorithm->name, "UniBiomed");
  EXPECT_EQ(file.algorithm->parameters, "weights sha256:5f1c0b2e");
  ASSERT_EQ(file.findings.size(), 2u);
  EXPECT_EQ(file.findings[0].label, 1);
  EXPECT_EQ(file.findings[0].segment.label, "Liver");
  EXPECT_EQ(file.findings[0].segment.type.meaning, "Liver");
  EXPECT_EQ(file.findings[0].segment.colour.red, 221);
  EXPECT_EQ(file.findings[1].segment.colour.red, 0xe6);
  EXPECT_EQ(file.findings[1].segment.colour.blue, 0x4b);
  ASSERT_TRUE(file.findings[1].finding_site);
  EXPECT_EQ(file.findings[1].segment.anatomic_region->value, "10200004");
  EXPECT_EQ(file.findings[1].segment.tracking_id, "liver lesion 1");
  EXPECT_FALSE(file.findings[0].confidence);
  EXPECT_EQ(file.findings[1].confidence, 0.87);
  ASSERT_EQ(file.report.size(), 1u);
  test::TempDir dir("findings");
  EXPECT_TRUE(schema_accepts(dir, test::read_file(test::source_dir() / "sr-writer/findings.example.json")));
}

TEST(FindingsFile, ParserAndSchemaAgree) {
  test::TempDir dir("findings");
  const std::vector<std::string> valid{
      R"({})",
      R"({"findings": []})",
      R"({"findings": [{"label": 3, "name": "Spleen"}]})",
      R"({"findings": [{"label": 3, "name": "Spleen", "confidence": 0}, {"label": 4, "name": "x", "confidence": 1}]})",
      R"({"findings": [{"label": 65535, "name": "x", "colour": [0, 0, 255], "tracking_uid": "1.2.3"}], "report": ["a"]})",
      R"({"algorithm": {"name": "Other model"}, "findings": [{"label": 1, "name": "x", "colour": "#00FF7f"}]})",
  };
  for (const auto& json : valid) {
    EXPECT_NO_THROW(parse_findings_json(json, "valid.json")) << json;
    EXPECT_TRUE(schema_accepts(dir, json)) << json;
  }
  // Each invalid document, with the path the parser's message must name.
  const std::vector<std::pair<std::string, std::string>> invalid{
      {R"([])", "$: the file must hold a JSON object"},
      {R"({"finding": []})", "$.finding: unknown key"},
      {R"({"findings": {}})", "findings: must be an array"},
      {R"({"findings": [{"name": "x"}]})", "findings[0].label: missing"},
      {R"({"findings": [{"label": 0, "name": "x"}]})", "findings[0].label: must be a whole number from 1 to 65535"},
      {R"({"findings": [{"label": 1.5, "name": "x"}]})", "findings[0].label: must be a whole number"},
      {R"({"findings": [{"label": 1}]})", "findings[0].name: missing"},
      {R"({"findings": [{"label": 1, "name": ""}]})", "findings[0].name: must not be empty"},
      {R"({"findings": [{"label": 1, "name": "x", "colour": [1, 2]}]})",
       "findings[0].colour: an [r, g, b] colour has 3"},
      {R"({"findings": [{"label": 1, "name": "x", "colour": [1, 2, 300]}]})", "findings[0].colour: colour values"},
      {R"({"findings": [{"label": 1, "name": "x", "colour": "red"}]})", "findings[0].colour: a colour is"},
      {R"({"findings": [{"label": 1, "name": "x", "type": {"value": "1", "scheme": "SCT"}}]})",
       "findings[0].type.meaning: missing"},
      {R"({"findings": [{"label": 1, "name": "x", "type": {"value": "1", "scheme": "SCT", "meaning": "m", "x": 1}}]})",
       "findings[0].type.x: unknown key"},
      {R"({"findings": [{"label": 1, "name": "x", "tracking_uid": "not-a-uid"}]})",
       "findings[0].tracking_uid: must be a DICOM UID"},
      {R"({"findings": [{"label": 1, "name": "x", "colour": [1, 2, 3], "extra": true}]})",
       "findings[0].extra: unknown key"},
      {R"({"findings": [{"label": 1, "name": "x", "confidence": 1.2}]})",
       "findings[0].confidence: must be a number from 0 to 1"},
      {R"({"findings": [{"label": 1, "name": "x", "confidence": -0.5}]})",
       "findings[0].confidence: must be a number from 0 to 1"},
      {R"({"findings": [{"label": 1, "name": "x", "confidence": "high"}]})",
       "findings[0].confidence: must be a number from 0 to 1"},
      {R"({"algorithm": {"version": "1"}})", "algorithm.name: missing"},
      {R"({"report": [1]})", "report[0]: must be a string"},
  };
  for (const auto& [json, message] : invalid) {
    try {
      parse_findings_json(json, "bad.json");
      ADD_FAILURE() << "accepted: " << json;
    } catch (const ReportError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.json: " + message), std::string::npos) << e.what();
    }
    EXPECT_FALSE(schema_accepts(dir, json)) << "the schema accepts " << json;
  }
  // Duplicate labels and broken JSON: the parser says so (JSON Schema cannot express uniqueness
  // of a property across items).
  EXPECT_THROW(parse_findings_json(R"({"findings": [{"label": 1, "name": "a"}, {"label": 1, "name": "b"}]})", "d.json"),
               ReportError);
  EXPECT_THROW(parse_findings_json("{", "broken.json"), ReportError);
}

}  // namespace
}  // namespace unibiomed::sr
