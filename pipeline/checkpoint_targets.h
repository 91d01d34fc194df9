// What a checkpoint was trained to find: the optional targets.json of its folder, per modality
// class the rule targets it knows (samples/demo-checkpoint/targets.json). The analysis asks a
// checkpoint only about those and notes the others, so that an answer the model was never
// taught (the demo checkpoint's pancreas) does not become a finding. Without the file (the
// released weights) every target is asked.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "config/task_rules.h"

namespace unibiomed::pipeline {

struct CheckpointTargets {
  std::string source;                                         // the file, for messages
  std::map<std::string, std::set<std::string>> by_modality;  // modality class -> target keys
  // Where the checkpoint's SAM2 memory path (video mode) may be used: everywhere (no value,
  // "video": true), nowhere (empty, "video": false) or for the listed modality classes only
  // ("video": ["Ultrasound"]). Elsewhere it is not to be used (never trained, or trained but
  // worse than reading frame by frame): series that would be read as a video are read slice by
  // slice and the series says why, and a question about several images is refused.
  std::optional<std::set<std::string>> video_modalities;
  // "video_prompt_every": N: in video mode SAM2 also takes the answer's [SEG] as its prompt on
  // every Nth frame (inference::VideoOptions::prompt_every), and each tracked frame attends to
  // the kPromptedInAttention nearest prompted frames. 0 (absent): the key frames only, all of
  // them in attention, as the reference.
  int video_prompt_every = 0;
  static constexpr int kPromptedInAttention = 4;
  int prompted_in_attention() const { return video_prompt_every > 0 ? kPromptedInAttention : -1; }
  bool knows(const std::string& modality, const std::string& target) const;
  // Whether a multi-frame series of this modality class may be read in video mode (an empty
  // `modality`, an image of unknown class: only when video mode is allowed everywhere).
  bool video_for(const std::string& modality) const;
  // Why video mode is off for `modality`, naming the file (for notes and errors): meaningful
  // when !video_for(modality).
  std::string video_off_reason(const std::string& modality) const;
};

// `model_dir`/targets.json when it exists: {"modalities": {"CT": ["liver", ...], ...}} and an
// optional "video": true, false or a list of modality classes, and "video_prompt_every": N >= 0.
// Target names the rules do not have are kept (they are never asked). Throws PipelineError
// naming the file when it is not of that shape or names an unknown modality class.
std::optional<CheckpointTargets> read_checkpoint_targets(const std::filesystem::path& model_dir);

}  // namespace unibiomed::pipeline
