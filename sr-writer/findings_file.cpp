// SPDX-License-Identifier: GPL-3.0-or-later
#include "sr-writer/findings_file.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace unibiomed::sr {
namespace {

using nlohmann::json;

// A palette of ten distinguishable colours (the order of 3D Slicer's generic anatomy colours is
// not needed here; these are spread around the hue circle).
const seg::RgbColour kPalette[10] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},  {245, 130, 48},
                                     {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {210, 245, 60}, {250, 190, 212}};

struct Context {
  std::string file;
  [[noreturn]] void fail(const std::string& path, const std::string& problem) const {
    throw ReportError(file + ": " + path + ": " + problem);
  }
  void only_keys(const json& object, const std::string& path, const std::set<std::string>& allowed) const {
    for (auto it = object.begin(); it != object.end(); ++it)
      if (!allowed.count(it.key())) {
        std::string list;
        for (const auto& k : allowed) list += (list.empty() ? "" : ", ") + k;
        fail(path + "." + it.key(), "unknown key (allowed: " + list + ")");
      }
  }
  std::string string(const json& object, const std::string& key, const std::string& path, bool required) const {
    if (!object.contains(key)) {
      if (required) fail(path + "." + key, "missing");
      return {};
    }
    if (!object[key].is_string()) fail(path + "." + key, "must be a string");
    return object[key].get<std::string>();
  }
  CodedConcept code(const json& value, const std::string& path) const {
    if (!value.is_object()) fail(path, "must be an object {\"value\", \"scheme\", \"meaning\"}");
    only_keys(value, path, {"value", "scheme", "meaning"});
    CodedConcept c{string(value, "value", path, true), string(value, "scheme", path, true),
                   string(value, "meaning", path, true)};
    if (c.value.empty() || c.scheme.empty() || c.meaning.empty())
      fail(path, "value, scheme and meaning must not be empty");
    return c;
  }
  seg::RgbColour colour(const json& value, const std::string& path) const {
    if (value.is_array()) {
      if (value.size() != 3) fail(path, "an [r, g, b] colour has 3 values");
      std::uint8_t rgb[3];
      for (size_t i = 0; i < 3; ++i) {
        if (!value[i].is_number_integer() || value[i].get<long>() < 0 || value[i].get<long>() > 255)
          fail(path, "colour values are whole numbers from 0 to 255");
        rgb[i] = static_cast<std::uint8_t>(value[i].get<long>());
      }
      return {rgb[0], rgb[1], rgb[2]};
    }
    if (value.is_string()) {
      const std::string text = value.get<std::string>();
      if (text.size() == 7 && text[0] == '#' &&
          text.find_first_not_of("0123456789abcdefABCDEF", 1) == std::string::npos) {
        const unsigned long v = std::stoul(text.substr(1), nullptr, 16);
        return {static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>((v >> 8) & 0xFF),
                static_cast<std::uint8_t>(v & 0xFF)};
      }
    }
    fail(path, "a colour is [r, g, b] or \"#rrggbb\"");
  }
};

}  // namespace

FindingEntry generic_finding(std::uint16_t label) {
  FindingEntry entry;
  entry.label = label;
  entry.segment.label = "Finding " + std::to_string(label);
  entry.segment.colour = kPalette[(label - 1u) % 10u];
  return entry;
}

FindingsFile parse_findings_json(const std::string& text, const std::string& name) {
  const Context context{name};
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ReportError(name + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) context.fail("$", "the file must hold a JSON object");
  context.only_keys(root, "$", {"algorithm", "findings", "report"});
  FindingsFile file;
  if (root.contains("algorithm")) {
    const json& a = root["algorithm"];
    if (!a.is_object()) context.fail("algorithm", "must be an object");
    context.only_keys(a, "algorithm", {"name", "version", "parameters"});
    seg::AlgorithmIdentity algorithm;
    algorithm.name = context.string(a, "name", "algorithm", true);
    if (algorithm.name.empty()) context.fail("algorithm.name", "must not be empty");
    algorithm.version = context.string(a, "version", "algorithm", false);
    algorithm.parameters = context.string(a, "parameters", "algorithm", false);
    file.algorithm = algorithm;
  }
  if (root.contains("report")) {
    const json& r = root["report"];
    if (!r.is_array()) context.fail("report", "must be an array of strings");
    for (size_t i = 0; i < r.size(); ++i) {
      if (!r[i].is_string()) context.fail("report[" + std::to_string(i) + "]", "must be a string");
      file.report.push_back(r[i].get<std::string>());
    }
  }
  if (!root.contains("findings")) return file;
  const json& findings = root["findings"];
  if (!findings.is_array()) context.fail("findings", "must be an array");
  std::set<long> labels;
  for (size_t i = 0; i < findings.size(); ++i) {
    const std::string path = "findings[" + std::to_string(i) + "]";
    const json& f = findings[i];
    if (!f.is_object()) context.fail(path, "must be an object");
    context.only_keys(f, path,
                      {"label", "name", "text", "confidence", "category", "type", "finding_site", "colour",
                       "tracking_id", "tracking_uid"});
    if (!f.contains("label")) context.fail(path + ".label", "missing (the finding's value in the label map)");
    if (!f["label"].is_number_integer() || f["label"].get<long>() < 1 || f["label"].get<long>() > 65535)
      context.fail(path + ".label", "must be a whole number from 1 to 65535");
    const long label = f["label"].get<long>();
    if (!labels.insert(label).second)
      context.fail(path + ".label", "label " + std::to_string(label) + " is listed twice");
    FindingEntry entry = generic_finding(static_cast<std::uint16_t>(label));
    entry.segment.label = context.string(f, "name", path, true);
    if (entry.segment.label.empty()) context.fail(path + ".name", "must not be empty");
    entry.text = context.string(f, "text", path, false);
    if (f.contains("confidence")) {
      const json& c = f["confidence"];
      if (!c.is_number() || c.get<double>() < 0 || c.get<double>() > 1)
        context.fail(path + ".confidence", "must be a number from 0 to 1");
      entry.confidence = c.get<double>();
    }
    if (f.contains("category")) entry.segment.category = context.code(f["category"], path + ".category");
    if (f.contains("type")) entry.segment.type = context.code(f["type"], path + ".type");
    if (f.contains("finding_site")) {
      entry.finding_site = context.code(f["finding_site"], path + ".finding_site");
      entry.segment.anatomic_region = entry.finding_site;
    }
    if (f.contains("colour")) entry.segment.colour = context.colour(f["colour"], path + ".colour");
    entry.segment.tracking_id = context.string(f, "tracking_id", path, false);
    entry.segment.tracking_uid = context.string(f, "tracking_uid", path, false);
    if (!entry.segment.tracking_uid.empty() &&
        (entry.segment.tracking_uid.size() > 64 ||
         entry.segment.tracking_uid.find_first_not_of("0123456789.") != std::string::npos))
      context.fail(path + ".tracking_uid", "must be a DICOM UID (digits and dots, at most 64 characters)");
    file.findings.push_back(std::move(entry));
  }
  return file;
}

FindingsFile read_findings_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ReportError(path.string() + ": cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_findings_json(text.str(), path.string());
}

}  // namespace unibiomed::sr
