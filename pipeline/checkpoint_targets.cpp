// Reading a checkpoint's targets.json.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/checkpoint_targets.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pipeline/analyzer.h"

namespace unibiomed::pipeline {

bool CheckpointTargets::knows(const std::string& modality, const std::string& target) const {
  const auto it = by_modality.find(modality);
  return it != by_modality.end() && it->second.count(target) > 0;
}

bool CheckpointTargets::video_for(const std::string& modality) const {
  if (!video_modalities) return true;
  return !modality.empty() && video_modalities->count(modality) > 0;
}

std::string CheckpointTargets::video_off_reason(const std::string& modality) const {
  if (!video_modalities || video_modalities->empty())
    return "this checkpoint's video mode (SAM2 memory path) is not to be used (" + source + " says \"video\": false)";
  std::string listed;
  for (const auto& m : *video_modalities) listed += (listed.empty() ? "" : ", ") + m;
  return "this checkpoint's video mode (SAM2 memory path) is not to be used for " +
         (modality.empty() ? std::string("images of unknown modality") : modality) + " (" + source +
         " allows it for " + listed + " only)";
}

std::optional<CheckpointTargets> read_checkpoint_targets(const std::filesystem::path& model_dir) {
  if (model_dir.empty()) return std::nullopt;
  const std::filesystem::path path = model_dir / "targets.json";
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) return std::nullopt;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  CheckpointTargets out;
  out.source = path.string();
  auto fail = [&](const std::string& why) { throw PipelineError(out.source + ": " + why); };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("not JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("modalities") || !j["modalities"].is_object())
    fail("expected {\"modalities\": {\"CT\": [\"liver\", ...], ...}}");
  const auto& classes = config::modality_classes();
  if (j.contains("video")) {
    const auto& v = j["video"];
    if (v.is_boolean()) {
      if (!v.get<bool>()) out.video_modalities.emplace();
    } else if (v.is_array()) {
      out.video_modalities.emplace();
      for (const auto& m : v) {
        if (!m.is_string()) fail("\"video\" must be true, false or a list of modality classes");
        const std::string name = m.get<std::string>();
        if (std::find(classes.begin(), classes.end(), name) == classes.end())
          fail("\"video\": '" + name + "' is not one of the model's modality classes");
        out.video_modalities->insert(name);
      }
    } else {
      fail("\"video\" must be true, false or a list of modality classes");
    }
  }
  if (j.contains("video_prompt_every")) {
    const auto& v = j["video_prompt_every"];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1000)
      fail("\"video_prompt_every\" must be a whole number of frames from 0 (key frames only) to 1000, not " + v.dump());
    out.video_prompt_every = v.get<int>();
  }
  for (const auto& [modality, targets] : j["modalities"].items()) {
    if (std::find(classes.begin(), classes.end(), modality) == classes.end())
      fail("'" + modality + "' is not one of the model's modality classes");
    if (!targets.is_array()) fail(modality + ": expected a list of target names");
    auto& known = out.by_modality[modality];
    for (const auto& t : targets) {
      if (!t.is_string()) fail(modality + ": expected a list of target names");
      const std::string name = t.get<std::string>();
      known.insert(name);
    }
  }
  return out;
}

}  // namespace unibiomed::pipeline
