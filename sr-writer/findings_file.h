// The findings file of `unibiomed results write` (JSON, schema in sr-writer/findings.schema.json,
// example in sr-writer/findings.example.json): per label value of the mask, the segment's name,
// codes, colour and the model's text; optionally the algorithm and report-level text. Every
// problem is an error naming the file and the JSON path (e.g. findings[2].colour).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "seg-writer/segment_description.h"
#include "sr-writer/measurement_report.h"

namespace unibiomed::sr {

struct FindingEntry {
  std::uint16_t label = 0;                   // the value of its pixels in the label map
  seg::SegmentDescription segment;           // name (segment.label), codes, colour, tracking
  std::optional<CodedConcept> finding_site;  // SR finding site and SEG anatomic region
  std::string text;                          // the model's sentence
  std::optional<double> confidence;          // 0 to 1: the SR's Certainty of Finding
};

struct FindingsFile {
  std::optional<seg::AlgorithmIdentity> algorithm;
  std::vector<FindingEntry> findings;
  std::vector<std::string> report;  // report-level text (answers without a mask)
};

FindingsFile parse_findings_json(const std::string& json, const std::string& name);
FindingsFile read_findings_file(const std::filesystem::path& path);

// What a label gets without a findings file: "Finding <label>", a lesion (SCT), a colour from a
// fixed palette of ten.
FindingEntry generic_finding(std::uint16_t label);

}  // namespace unibiomed::sr
