// `unibiomed model train` (the demo checkpoint: a small model of the UniBiomed architecture
// trained on synthetic studies) and `unibiomed model evaluate` (its held-out scores).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "inference/error.h"
#include "pipeline/checkpoint_targets.h"
#include "training/synthetic.h"
#include "training/trainer.h"

namespace unibiomed::cli {

namespace fs = std::filesystem;

namespace {

void log_line(const std::string& line) { std::cerr << line << std::endl; }

// A default as the help shows it: 29, not 29.000000.
template <typename T>
std::string shown(T value) {
  std::ostringstream s;
  s << value;
  return s.str();
}

}  // namespace

int run_model_train(const Args& args) {
  ArgParser p("unibiomed model train [--seed N] [--steps N] [--batch N] [--clips N] [--clip-frames N] [--phantoms N] [--minutes M] "
              "[--learning-rate X] [--memory-lr-scale X] [--absent-targets X] [--init DIR [--fresh-memory-path]] [--threads N] "
              "[--family NAME] DIR",
              "Trains the demo checkpoint: a small model of the UniBiomed architecture (same code and tensor names "
              "as the release, small sizes) on synthetic examples made from the sample phantoms (CT, MRI, X-ray, "
              "ultrasound, fundus, dermoscopy, endoscopy, H&E slide regions) in the five task formats. Next-token loss on the answers, "
              "BCE + Dice on the [SEG] masks, and a training-only read-out of where each image token shows the "
              "finding (not written). Each step also tracks clips of CT and MR slices and ultrasound frames through "
              "SAM2's memory (video mode: the language model sees the key frames, the masks of every frame are "
              "learned). Deterministic for a seed and thread count. Writes config.json, the "
              "tokenizer files and model.safetensors into DIR (saved every 500 steps and at the end). For "
              "demonstration only, not for clinical use.");
  const training::TrainOptions defaults;
  p.option("--seed", "N", "random seed (initial weights and examples)", std::to_string(defaults.seed))
      .option("--steps", "N", "optimiser steps", std::to_string(defaults.steps))
      .option("--batch", "N", "examples per step", std::to_string(defaults.batch))
      .option("--clips", "N", "video clips per step (0: images only)", std::to_string(defaults.clips))
      .option("--clip-frames", "N", "frames per video clip", std::to_string(defaults.clip_frames))
      .option("--phantoms", "N", "synthetic patients per modality (each with its own anatomy)",
              std::to_string(defaults.phantoms))
      .option("--minutes", "M", "stop (and save) after this many minutes", shown(defaults.max_minutes))
      .option("--learning-rate", "X", "peak learning rate (AdamW, warm-up then cosine)", shown(defaults.learning_rate))
      .option("--memory-lr-scale", "X", "the memory path's learning rate relative to --learning-rate",
              shown(defaults.memory_learning_rate_scale))
      .option("--absent-targets", "X",
              "share of the CT and MR segmentation questions asked of a slice without the target (empty mask)",
              shown(defaults.absent_target_share))
      .option("--clip-target-weight", "TARGET=W",
              "how often a CT/MR segmentation target is a clip's question, relative to the others of its modality "
              "(default 1 each; repeatable)",
              std::nullopt, true)
      .option("--init", "DIR", "start from this demo checkpoint's weights (fine-tuning) instead of fresh ones")
      .flag("--fresh-memory-path", "with --init: the memory path (video mode) starts over from fresh weights")
      .option("--threads", "N", "worker threads; 0: the machine's cores", std::to_string(defaults.threads))
      .option("--family", "NAME", "train on this task family only (for experiments)", std::nullopt, true)
      .positional("DIR", "the checkpoint folder to write (created when missing)", 1, 1);
  if (!p.parse(args)) return kExitOk;
  training::TrainOptions o;
  o.seed = p.get_seed("--seed");
  o.steps = static_cast<int>(p.get_int("--steps"));
  o.batch = static_cast<int>(p.get_int("--batch"));
  o.threads = static_cast<int>(p.get_int("--threads"));
  o.clips = static_cast<int>(p.get_int("--clips"));
  o.clip_frames = static_cast<int>(p.get_int("--clip-frames"));
  o.phantoms = static_cast<int>(p.get_int("--phantoms"));
  const std::pair<const char*, double*> numbers[] = {
      {"--minutes", &o.max_minutes},
      {"--learning-rate", &o.learning_rate},
      {"--memory-lr-scale", &o.memory_learning_rate_scale},
      {"--absent-targets", &o.absent_target_share}};
  for (const auto& [name, value] : numbers) {
    try {
      size_t used = 0;
      *value = std::stod(p.get(name), &used);
      if (used != p.get(name).size()) throw std::invalid_argument(name);
    } catch (const std::exception&) {
      throw UsageError(std::string(name) + " must be a number, not '" + p.get(name) + "'");
    }
  }
  if (o.steps <= 0 || o.batch <= 0 || o.max_minutes <= 0 || o.learning_rate <= 0 || o.memory_learning_rate_scale <= 0 ||
      o.threads < 0 || o.clips < 0 || o.clip_frames < 2 || o.clip_frames > 24 || o.phantoms < 1 || o.phantoms > training::kMaxPhantomsPerModality)
    throw UsageError("--steps, --batch, --minutes, --learning-rate and --memory-lr-scale must be positive, --threads "
                     "and --clips not negative, --clip-frames 2 to 24, --phantoms 1 to " +
                     std::to_string(training::kMaxPhantomsPerModality));
  if (!(o.absent_target_share >= 0 && o.absent_target_share <= 1))
    throw UsageError("--absent-targets must be a share from 0 to 1, not '" + p.get("--absent-targets") + "'");
  if (auto init = p.get_optional("--init")) {
    o.init = *init;
    if (!std::filesystem::exists(o.init / "model.safetensors") || !std::filesystem::exists(o.init / "config.json"))
      throw UsageError("--init " + *init + " is not a checkpoint folder (config.json and model.safetensors)");
  }
  for (const auto& item : p.get_all("--clip-target-weight")) {
    const auto eq = item.rfind('=');
    const std::string phrase = eq == std::string::npos ? item : item.substr(0, eq);
    double weight = -1;
    try {
      size_t used = 0;
      if (eq != std::string::npos) weight = std::stod(item.substr(eq + 1), &used);
      if (used != item.size() - eq - 1) weight = -1;
    } catch (const std::exception&) {
    }
    if (eq == std::string::npos || !(weight >= 0) || !std::isfinite(weight))
      throw UsageError("--clip-target-weight wants TARGET=W with a weight >= 0, not '" + item + "'");
    o.clip_target_weights[phrase] = weight;
  }
  try {
    training::SyntheticClips::check_target_weights(o.clip_target_weights);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--clip-target-weight: ") + e.what());
  }
  o.fresh_memory_path = p.is_set("--fresh-memory-path");
  if (o.fresh_memory_path && o.init.empty()) throw UsageError("--fresh-memory-path needs --init DIR");
  o.families = p.get_all("--family");
  const auto& known = training::SyntheticData::families();
  for (const auto& f : o.families)
    if (std::find(known.begin(), known.end(), f) == known.end())
      throw UsageError("--family must be segmentation, disease, vqa, report or region, not '" + f + "'");
  o.log = log_line;
  const auto s = training::train_demo_checkpoint(p.positionals()[0], o);
  std::cout << "trained " << p.positionals()[0] << ": " << s.steps << " steps, " << s.seconds / 60 << " minutes, "
            << s.parameters << " parameters, last loss " << s.last_loss << "\n";
  return kExitOk;
}

int run_model_evaluate(const Args& args) {
  ArgParser p("unibiomed model evaluate [--seed N] [--examples N] [--video-phantoms N] [--threads N] [--dtype T] "
              "[--dump DIR] DIR",
              "Scores a checkpoint folder on held-out synthetic examples (phantoms and examples that training "
              "never saw) through the normal inference path: mean Dice of the mask on segmentation prompts (per "
              "target too) and answer accuracy on disease recognition (the answer text exactly as expected: the "
              "finding's name with its [SEG], or that there is no abnormality), plus the other task families. Then "
              "whole held-out volumes and cines (CT, MRI, ultrasound): Dice per object over all frames in video mode "
              "(five key frames, SAM2 memory propagation both ways, as the node reads series) next to slice by "
              "slice.");
  const training::EvaluateOptions defaults;
  p.option("--seed", "N", "held-out set seed", std::to_string(defaults.seed))
      .option("--examples", "N", "number of held-out examples", std::to_string(defaults.examples))
      .option("--video-phantoms", "N", "held-out volumes/cines per video modality (0: no video score)",
              std::to_string(defaults.video_phantoms))
      .option("--threads", "N", "torch threads; 0: the machine's cores", std::to_string(defaults.threads))
      .option("--dtype", "T", "compute dtype: float32, bfloat16 or auto", defaults.dtype)
      .option("--dump", "DIR",
              "write each example's image with the true (green) and predicted (red) outline, and video.txt: per "
              "frame of each held-out volume or cine, the object's pixels, the video-mode and slices-mode masks' "
              "pixels, object-score logits and overlap with the object")
      .option("--prompt-every", "N",
              "video mode: SAM2 also gets the [SEG] prompt on every Nth frame, 0: key frames only (default: the "
              "checkpoint's targets.json, as the node reads it, else 0)")
      .option("--prompted-in-attention", "N",
              "video mode: a tracked frame attends to the N nearest prompted frames, -1: all (default: 4 with "
              "--prompt-every above 0, else -1)")
      .flag("--training-set",
            "score the checkpoint's own training patients instead (the seed it was trained with): "
            "not held out, whether the model fits its training data")
      .positional("DIR", "the checkpoint folder", 1, 1);
  if (!p.parse(args)) return kExitOk;
  training::EvaluateOptions o;
  o.training_set = p.is_set("--training-set");
  // The node's way of reading a video with this checkpoint (its targets.json), unless asked otherwise.
  pipeline::CheckpointTargets how =
      pipeline::read_checkpoint_targets(p.positionals()[0]).value_or(pipeline::CheckpointTargets{});
  if (p.get_optional("--prompt-every")) how.video_prompt_every = static_cast<int>(p.get_int("--prompt-every"));
  o.prompt_every = how.video_prompt_every;
  o.prompted_in_attention = how.prompted_in_attention();
  if (p.get_optional("--prompted-in-attention"))
    o.prompted_in_attention = static_cast<int>(p.get_int("--prompted-in-attention"));
  if (o.prompt_every < 0 || o.prompted_in_attention < -1 || o.prompted_in_attention == 0 ||
      o.prompted_in_attention == 1)
    throw UsageError("--prompt-every must be 0 or more, --prompted-in-attention -1 (all) or 2 or more");
  if (o.prompt_every > 0)
    std::cerr << "video mode: SAM2 prompted on one frame in " << o.prompt_every << " as well as on the key frames, the "
              << o.prompted_in_attention << " nearest in attention\n";
  if (o.training_set && p.get("--seed") != std::to_string(defaults.seed))
    throw UsageError("--training-set scores the seed the checkpoint was trained with: leave out --seed");
  o.seed = p.get_seed("--seed");
  o.examples = static_cast<int>(p.get_int("--examples"));
  o.threads = static_cast<int>(p.get_int("--threads"));
  o.video_phantoms = static_cast<int>(p.get_int("--video-phantoms"));
  o.dtype = p.get("--dtype");
  if (auto d = p.get_optional("--dump")) o.dump_dir = *d;
  if (o.examples <= 0 || o.threads < 0 || o.video_phantoms < 0 || o.video_phantoms > training::kMaxPhantomsPerModality)
    throw UsageError("--examples must be positive, --threads and --video-phantoms not negative, --video-phantoms at most " +
                     std::to_string(training::kMaxPhantomsPerModality));
  o.log = log_line;
  try {
    std::cout << training::evaluate_checkpoint(p.positionals()[0], o).table();
  } catch (const std::invalid_argument& e) {  // the checkpoint's own training seed
    throw UsageError(e.what());
  } catch (const inference::InferenceError& e) {
    std::cerr << "unibiomed model evaluate: " << e.what() << "\n";
    return kExitModelError;
  }
  return kExitOk;
}

}  // namespace unibiomed::cli
