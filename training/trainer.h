// Training and evaluating the demo checkpoint (`unibiomed model train` / `model evaluate`):
// a small model of the UniBiomed architecture (same code, same tensor names, small sizes)
// trained end to end on synthetic examples (training/synthetic.h): next-token cross-entropy on
// the answers, BCE + Dice on the masks of every [SEG], and the IoU head on the masks' real IoU.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "inference/checkpoint_layout.h"
#include "training/synthetic.h"

namespace unibiomed::training {

// config.json of the demo checkpoint: InternViT 3 x 96 on one 112-pixel tile (16 image
// tokens), Qwen2 3 x 128 with the byte-level vocabulary of 512 ids, SAM2 Hiera (16 wide) at
// 256 pixels with a 64-wide mask decoder.
std::string demo_config_json();

// The target of the training-only finding head (not part of the checkpoint) for a one-tile
// input of e.image: per image token, in the order the model lays them out, the pixels of
// e.finding under it divided by kVisibleFinding, at most 1. `grid`: patches per tile side
// (image_size / patch_size); `downsample_ratio`: the config's pixel-shuffle ratio.
std::vector<float> finding_token_targets(const Example& e, int grid, double downsample_ratio);

// Scales a never-trained memory path to the image features the mask decoder learned on (the
// final memory-attention norm to their per-channel spread and mean, the cross-attention outputs
// up and the memory encoder's feature projection down by their overall spread), from the raw
// SAM2 features of `frames`. `train_demo_checkpoint` does it when it starts a memory path.
class TrainableModel;
void calibrate_memory_path(const TrainableModel& model, const std::vector<inference::RgbImage>& frames,
                           const inference::Sam2MemoryConfig& memory, const std::function<void(const std::string&)>& log);

struct TrainOptions {
  uint64_t seed = 1;
  int steps = 5000;           // optimiser steps (the learning-rate schedule spans them)
  double max_minutes = 40;    // stops early (and saves) when training takes longer
  int batch = 8;              // examples per step
  double learning_rate = 1e-3;
  // The memory path's (video-only tensors') learning rate relative to the rest: fine-tuning a
  // checkpoint whose memory path was never trained wants it higher than the trained parts'.
  double memory_learning_rate_scale = 1;
  // Share of the segmentation questions about CT and MR slices asked of a slice that does not
  // show the target (answer "Sure, [SEG]." with an empty mask; SyntheticData::set_absent_target_share).
  double absent_target_share = 0;
  int threads = 0;            // 0: the machine's cores
  int save_every = 500;       // steps between checkpoints written to the output folder
  std::vector<std::string> families;  // only these task families (empty: all), for experiments
  // The video path: clips per step (SyntheticClips, one key frame to five) tracked through
  // SAM2's memory with losses on every frame's mask; 0: images only.
  int clips = 2;
  int clip_frames = 6;
  // How often each CT/MR segmentation target is a clip's question, relative to the others of its
  // modality (SyntheticClips::set_target_weights; empty: all alike).
  std::map<std::string, double> clip_target_weights;
  // Patients (phantoms, each drawing its anatomy from its seed) per modality, for the images and
  // for the clips. Three (before) taught the model three patients' anatomy: disease answers on
  // held-out patients rose from 0.855 to 0.92 over the first two runs with 24 (CARD.md). Drawing 24 takes about a minute.
  int phantoms = 24;
  // Start from this checkpoint's weights instead of fresh ones (fine-tuning; same config).
  std::filesystem::path init;
  // With `init`: the memory path starts over from fresh weights (then calibrated) while the rest
  // keeps the checkpoint's.
  bool fresh_memory_path = false;
  std::function<void(const std::string&)> log;
};

struct TrainSummary {
  int steps = 0;
  double seconds = 0;
  double last_loss = 0;  // mean over the last logged window
  int64_t parameters = 0;
};

// Writes config.json, the tokenizer files and model.safetensors into `out` (created).
TrainSummary train_demo_checkpoint(const std::filesystem::path& out, const TrainOptions& options);

struct EvaluateOptions {
  uint64_t seed = 90001;   // held-out phantoms and examples (training uses seed .. seed+1 of its own)
  int examples = 400;      // the card's held-out scores are measured on 400
  int threads = 0;
  std::string dtype = "float32";  // the compute dtype (LoadOptions::dtype): float32, bfloat16, auto
  // When set: each example's image with its ground truth (green) and predicted (red) outlines
  // as NNN-family.png, and index.txt with the questions and answers.
  std::filesystem::path dump_dir;
  // Video score: whole held-out volumes and cines per modality (0: none), each object tracked
  // in video mode and answered slice by slice. Five per modality (39 objects): with three (23
  // objects, two of them CT lesions) two checkpoints swapped places from one seed to another.
  int video_phantoms = 5;
  // Score the checkpoint on its own training patients instead (the seed its metadata records,
  // `seed` unused): not a held-out score, but whether the model fits what it was trained on.
  bool training_set = false;
  // Video mode's prompted frames (inference::VideoOptions::prompt_every and
  // max_prompted_in_attention; the node takes them from the checkpoint's targets.json, and so
  // does `model evaluate`). 0 and -1: the reference, the key frames only, all in attention.
  int prompt_every = 0;
  int prompted_in_attention = -1;
  std::function<void(const std::string&)> log;
};

// How far below reading every frame on its own a modality class's video-mode score may be for
// a checkpoint's targets.json to read that class in video mode (the demo checkpoint's rule).
constexpr double kVideoModeMargin = 0.03;

// One object of a held-out volume or cine, scored over all its frames (Dice of the stacked
// masks) in video mode (five key frames, propagation both ways) and in slices mode (each frame
// asked on its own).
struct VideoScore {
  std::string object;  // "CT liver", "ultrasound Cyst", ...
  std::string modality_class;  // the model's modality class ("CT", "MRI", "Ultrasound"), as targets.json names it
  int frames = 0;
  double video_dice = 0, slices_dice = 0;
};

struct EvaluationReport {
  std::string examples_from = "held-out";  // or "training-set (seed N, not held out)"
  int examples = 0;
  double segmentation_dice = 0;        // mean Dice over segmentation prompts
  int segmentation_count = 0;
  std::map<std::string, std::pair<double, int>> dice_by_target;  // "CT liver" -> (mean, n)
  double disease_accuracy = 0;         // disease recognition: answer text exactly as expected
  int disease_count = 0;
  double finding_dice = 0;             // Dice of the [SEG] of correct positive disease answers
  int finding_count = 0;
  std::map<std::string, std::pair<double, int>> exact_by_family;  // answer text exact, per family
  std::vector<VideoScore> video;       // per object
  double video_dice = 0, slices_dice = 0;  // means over `video`
  // Per modality class: the means over its objects, video mode and slices mode.
  std::map<std::string, std::pair<double, double>> video_by_modality() const;
  double seconds = 0;
  std::string table() const;           // a plain-text summary
};

// Runs the checkpoint in `dir` through the inference path (GroundedModel) on held-out examples.
EvaluationReport evaluate_checkpoint(const std::filesystem::path& dir, const EvaluateOptions& options);

}  // namespace unibiomed::training
