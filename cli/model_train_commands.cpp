// `unibiomed model train` (the demo checkpoint: a small model of the UniBiomed architecture
// trained on synthetic studies) and `unibiomed model evaluate` (its held-out scores).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "inference/error.h"
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
  ArgParser p("unibiomed model train [--seed N] [--steps N] [--batch N] [--minutes M] [--threads N] [--family NAME] DIR",
              "Trains the demo checkpoint: a small model of the UniBiomed architecture (same code and tensor names "
              "as the release, small sizes) on synthetic examples made from the sample phantoms (CT, MRI, X-ray, "
              "ultrasound, fundus, dermoscopy, endoscopy, H&E slide regions) in the five task formats. Next-token loss on the answers, "
              "BCE + Dice on the [SEG] masks, and a training-only read-out of where each image token shows the "
              "finding (not written). Deterministic for a seed and thread count. Writes config.json, the "
              "tokenizer files and model.safetensors into DIR (saved every 500 steps and at the end). For "
              "demonstration only, not for clinical use.");
  const training::TrainOptions defaults;
  p.option("--seed", "N", "random seed (initial weights and examples)", std::to_string(defaults.seed))
      .option("--steps", "N", "optimiser steps", std::to_string(defaults.steps))
      .option("--batch", "N", "examples per step", std::to_string(defaults.batch))
      .option("--minutes", "M", "stop (and save) after this many minutes", shown(defaults.max_minutes))
      .option("--threads", "N", "worker threads; 0: the machine's cores", std::to_string(defaults.threads))
      .option("--family", "NAME", "train on this task family only (for experiments)", std::nullopt, true)
      .positional("DIR", "the checkpoint folder to write (created when missing)", 1, 1);
  if (!p.parse(args)) return kExitOk;
  training::TrainOptions o;
  o.seed = p.get_seed("--seed");
  o.steps = static_cast<int>(p.get_int("--steps"));
  o.batch = static_cast<int>(p.get_int("--batch"));
  o.threads = static_cast<int>(p.get_int("--threads"));
  try {
    o.max_minutes = std::stod(p.get("--minutes"));
  } catch (const std::exception&) {
    throw UsageError("--minutes must be a number, not '" + p.get("--minutes") + "'");
  }
  if (o.steps <= 0 || o.batch <= 0 || o.max_minutes <= 0 || o.threads < 0)
    throw UsageError("--steps, --batch and --minutes must be positive, --threads not negative");
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
  ArgParser p("unibiomed model evaluate [--seed N] [--examples N] [--threads N] [--dtype T] [--dump DIR] DIR",
              "Scores a checkpoint folder on held-out synthetic examples (phantoms and examples that training "
              "never saw) through the normal inference path: mean Dice of the mask on segmentation prompts (per "
              "target too) and answer accuracy on disease recognition (the answer text exactly as expected: the "
              "finding's name with its [SEG], or that there is no abnormality), plus the other task families.");
  const training::EvaluateOptions defaults;
  p.option("--seed", "N", "held-out set seed", std::to_string(defaults.seed))
      .option("--examples", "N", "number of held-out examples", std::to_string(defaults.examples))
      .option("--threads", "N", "torch threads; 0: the machine's cores", std::to_string(defaults.threads))
      .option("--dtype", "T", "compute dtype: float32, bfloat16 or auto", defaults.dtype)
      .option("--dump", "DIR", "write each example's image with the true (green) and predicted (red) outline")
      .positional("DIR", "the checkpoint folder", 1, 1);
  if (!p.parse(args)) return kExitOk;
  training::EvaluateOptions o;
  o.seed = p.get_seed("--seed");
  o.examples = static_cast<int>(p.get_int("--examples"));
  o.threads = static_cast<int>(p.get_int("--threads"));
  o.dtype = p.get("--dtype");
  if (auto d = p.get_optional("--dump")) o.dump_dir = *d;
  if (o.examples <= 0 || o.threads < 0) throw UsageError("--examples must be positive, --threads not negative");
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
