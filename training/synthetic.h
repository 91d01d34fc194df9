// Synthetic training and evaluation examples for the demo checkpoint: images of the sample
// phantoms (samples/phantom.h: CT abdomen, MR brain, chest X-ray, ultrasound, fundus,
// dermoscopy, endoscopy; H&E slides with layouts drawn from the seed) drawn with other seeds,
// varied by a random affine transform and an intensity change, with and without their finding,
// rendered to 8-bit RGB the way the node renders DICOM (dicom/window.h: CT window presets, MR
// percentiles, the radiograph's VOI), padded to a square as the node pads its views
// (dicom::pad_to_square), and paired with a question and answer in the five task formats of
// MODEL.md and the prompts of config/task-rules.json. Deterministic: the same seed gives the
// same examples. Torch-free.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "inference/image.h"

namespace unibiomed::training {

// A finding counts as shown when it covers at least this many pixels of the phantom's image
// (about 190 pixels across): some 7 pixels wide, 4 in the model's 112-pixel tile. Slices that
// show less of it (a lesion's edge) are asked neither "is there" nor "is there not".
inline constexpr size_t kVisibleFinding = 40;

// Phantoms (patients) per modality at most: phantom k of modality m draws seed
// phantom_seed * 1000003 + m * 101 + k, so a larger k would repeat the next modality's seeds.
inline constexpr int kMaxPhantomsPerModality = 100;

struct Example {
  std::string modality;  // the rules' modality phrase: "CT", "MRI", "X-Ray", "ultrasound", ...
  std::string family;    // "segmentation", "disease", "vqa", "report", "region"
  std::string target;    // segmentation/region: the structure ("liver"); otherwise the finding
  bool positive = true;  // disease: the image shows the finding
  std::string question;  // user text without "<image>"
  std::string answer;    // the expected answer text (without the end token)
  inference::RgbImage image;
  std::vector<uint8_t> mask;  // image-sized ground truth of the answer's [SEG] (empty: none)
  // Image-sized: where the modality's finding is (all zero when the image shows none), whatever
  // the question; training teaches the image tokens to carry it (trainer.cpp).
  std::vector<uint8_t> finding;

  // Segmentation: the same question for the image's other structures, so that training can ask
  // for several targets on one image (what teaches the [SEG] to follow the question's target).
  std::vector<Example> companions() const;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> other_targets;  // phrase, mask
};

class SyntheticData {
 public:
  // `phantom_seed` selects the phantoms (training and held-out sets use different ones),
  // `example_seed` the sequence of examples drawn from them; 1 to kMaxPhantomsPerModality
  // phantoms per modality (std::invalid_argument otherwise).
  SyntheticData(uint64_t phantom_seed, uint64_t example_seed, int phantoms_per_modality = 3);
  ~SyntheticData();
  Example next();
  // Training only: the share of segmentation questions about a volume slice that does NOT show
  // the target (answer "Sure, [SEG]." with an empty mask). The node asks every target of a rule
  // on every slice of a volume (and on every key frame in video mode), so a model that only
  // ever saw the target present outlines something on the slices past an organ's end. 0 (the
  // default, and the held-out set's) draws exactly the examples it drew before.
  void set_absent_target_share(double share) { absent_target_share_ = share; }
  // Modality phrases covered, in a fixed order.
  static const std::vector<std::string>& modalities();
  // Task families of Example::family, in a fixed order.
  static const std::vector<std::string>& families();

  struct Pool;

 private:
  std::unique_ptr<Pool> pool_;
  double absent_target_share_ = 0;
};

// A sequence for the video path (SAM2 memory, inference/sam2_memory.h): consecutive slices of a
// CT or MR volume phantom or frames of an ultrasound cine, rendered as Example images (one
// random transform and intensity change for the whole sequence) and padded to a square, one
// question about the whole sequence (the language model sees the key frames, each as one
// tile, as GroundedModel::answer_video shows them) and the answer's object on every frame.
struct Clip {
  std::string modality, family, target;  // family: "segmentation" or "disease"
  bool positive = true;                  // disease: the key frames show the finding
  std::string question, answer;
  std::vector<inference::RgbImage> frames;    // all the same size, square
  std::vector<std::vector<uint8_t>> masks;    // per frame, frame-sized: the [SEG]'s object (empty: no [SEG])
  std::vector<int> key_frames;                // ascending
};

class SyntheticClips {
 public:
  // Phantoms of the video modalities (CT, MRI, ultrasound) from `phantom_seed` (the same draws
  // as SyntheticData for that seed), `example_seed` the sequence of clips.
  SyntheticClips(uint64_t phantom_seed, uint64_t example_seed, int phantoms_per_modality = 3);
  ~SyntheticClips();
  // A training clip of `frames` consecutive frames with one to five key frames: a segmentation
  // target that some frame shows, or the disease question (with or without the finding).
  Clip next(int frames);
  // Training only: how often each segmentation target is the question of a clip of its
  // modality, relative to the others (target phrase -> weight; a target left out weighs 1). The
  // small, low-contrast CT pancreas is the organ that video mode loses between slices. Empty (the
  // default, and the held-out set's) draws exactly the clips it drew before.
  // std::invalid_argument names a phrase that no video modality has, a negative weight, or a
  // modality whose targets all weigh 0.
  void set_target_weights(const std::map<std::string, double>& weights);
  // The same checks without a pool (a command line checks its options before drawing phantoms).
  static void check_target_weights(const std::map<std::string, double>& weights);
  // The segmentation targets of the video modalities (CT, MRI), the phrases set_target_weights takes.
  static std::vector<std::string> targets();
  // Whole volumes and cines, each with every segmentation target and the disease question where
  // it shows the finding, five key frames spread over it (the node's choice): the held-out video
  // score's objects.
  std::vector<Clip> whole();

  struct Pool;

 private:
  std::unique_ptr<Pool> pool_;
  std::map<std::string, double> target_weights_;
};

}  // namespace unibiomed::training
