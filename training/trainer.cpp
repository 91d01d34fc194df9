// SPDX-License-Identifier: GPL-3.0-or-later
#include "training/trainer.h"

#include <nlohmann/json.hpp>
#include <torch/nn/functional.h>
#include <torch/torch.h>

#include <array>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "dicom/modality.h"
#include "dicom/raster_file.h"
#include "inference/answer_parser.h"
#include "inference/error.h"
#include "inference/grounded_model.h"
#include "inference/image_preprocess.h"
#include "inference/prompt.h"
#include "inference/random_checkpoint.h"
#include "inference/runtime.h"
#include "inference/safetensors_file.h"
#include "inference/sam2_memory.h"
#include "inference/tokenizer.h"
#include "inference/vision_encoder.h"
#include "training/synthetic.h"
#include "training/trainable_model.h"

namespace unibiomed::training {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;
using inference::InferenceError;
using ojson = nlohmann::ordered_json;

namespace {

// The added tokens of the byte-level vocabulary (ids 256...), as the small reference checkpoint.
std::map<std::string, int64_t> special_ids() {
  return inference::ModelConfig::parse(demo_config_json(), "demo config").special_token_ids;
}

int thread_count(int requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

// One example made ready for the model.
struct Prepared {
  std::vector<int64_t> ids;  // prompt + answer + end token
  int64_t prompt_length = 0;
  int64_t image_at = 0;      // first <IMG_CONTEXT>
  torch::Tensor tiles;       // [t, 3, S, S]
  torch::Tensor sam_pixels;  // [3, s, s] (only with a [SEG])
  torch::Tensor sam_mask;    // [s, s] float ground truth at the SAM2 input size
  std::vector<int64_t> seg_positions;
  torch::Tensor finding_cells;  // [tokens_per_tile]: how much of the finding each image token shows (0..1)
  bool disease = false;  // a disease-recognition question: the answer's first token is its decision
};

// The prompt's token ids (one image block per entry of `tiles`, with that many tiles) followed
// by the answer's and the end token; `prompt_length` is set to the prompt's count.
std::vector<int64_t> encode_example(const std::string& question, const std::vector<int>& tiles,
                                    const std::string& answer, const inference::ModelConfig& config,
                                    const inference::Tokenizer& tok, int64_t eos, int64_t& prompt_length) {
  const std::string prompt = inference::build_prompt(inference::question_with_image(question), tiles,
                                                     config.tokens_per_tile(), config.template_name);
  std::vector<int64_t> ids = tok.encode(prompt);
  prompt_length = static_cast<int64_t>(ids.size());
  for (int64_t id : tok.encode(answer)) ids.push_back(id);
  ids.push_back(eos);
  return ids;
}

// DirectResize of an image-sized ground truth: nearest neighbour to side x side, float 0/1.
torch::Tensor mask_at_side(const std::vector<uint8_t>& mask, const inference::RgbImage& image, int side) {
  auto m = torch::from_blob(const_cast<uint8_t*>(mask.data()), {1, 1, image.height, image.width}, torch::kUInt8)
               .to(torch::kFloat32);
  return F::interpolate(m, F::InterpolateFuncOptions().size(std::vector<int64_t>{side, side}).mode(torch::kNearest))
      .view({side, side});
}

Prepared prepare(const Example& e, const inference::ModelConfig& config, const inference::Tokenizer& tok,
                 const inference::TilingOptions& tiling, int64_t eos, int64_t context_id, int64_t seg_id) {
  Prepared p;
  const auto input = inference::preprocess_internvl({e.image}, tiling);
  p.tiles = input.pixel_values;
  const int tiles = input.tiles_per_image.at(0);
  p.ids = encode_example(e.question, {tiles}, e.answer, config, tok, eos, p.prompt_length);
  p.disease = e.family == "disease";
  if (tiles == 1) {
    const int grid = config.vision.image_size / config.vision.patch_size;
    p.finding_cells = torch::tensor(finding_token_targets(e, grid, config.downsample_ratio));
  }
  p.image_at = std::find(p.ids.begin(), p.ids.end(), context_id) - p.ids.begin();
  for (int64_t t = p.prompt_length; t < static_cast<int64_t>(p.ids.size()); ++t)
    if (p.ids[static_cast<size_t>(t)] == seg_id) p.seg_positions.push_back(t);
  if (!p.seg_positions.empty()) {
    const int side = config.grounding.image_size;
    p.sam_pixels = inference::sam2_pixel_values(e.image, side);
    p.sam_mask = mask_at_side(e.mask, e.image, side);
  }
  return p;
}

constexpr float kDecisionWeight = 8;

// Training only (not part of the checkpoint): a linear read-out of each image token, taught
// where the finding is (finding_cells). The answer's decision needs the image tokens to carry
// small findings; this gives the vision encoder that signal directly, on every example, instead
// of only through the one decision token of disease questions.
struct FindingHead {
  torch::Tensor weight, bias;  // [1, H], [1]
  explicit FindingHead(int64_t hidden)
      : weight((torch::randn({1, hidden}) * 0.02).requires_grad_()), bias(torch::zeros({1}).requires_grad_()) {}
};
constexpr float kFindingWeight = 2;
constexpr float kFindingPositiveWeight = 4;  // finding cells are rare

struct StepLosses {
  torch::Tensor total;
  double text = 0, bce = 0, dice = 0, iou = 0, finding = 0;
  int decisions = 0, decisions_right = 0;  // disease answers' first tokens predicted right (argmax)
  int images = 0, images_right = 0;        // finding head: "some token shows the finding" right
};

// What the losses on the masks of several [SEG]s (or frames) need, at the decoder's resolution
// (a quarter of the SAM2 input): the ground truth area-averaged to it (mask edges are soft
// targets), BCE over everything, the smoothed Dice loss per row and output [N, 4], the outputs'
// real IoU against the ground truth [N, 4] (no gradient), whether each row's ground truth
// has any pixel [N, 1] (no gradient), and the Dice loss over the rows that show their object.
// On a row without it the smoothed Dice loss is 1 - 1 / (1 + predicted area), which punishes
// any doubt at all (it taught the tracker to answer "nothing" everywhere); BCE, over every row,
// teaches the empty ones.
struct MaskTerms {
  torch::Tensor target, bce, dice, real_iou, present, dice_where_present;
};

MaskTerms mask_terms(const torch::Tensor& mask_logits, const torch::Tensor& masks_at_side, int64_t image_size) {
  MaskTerms t;
  const int64_t low = mask_logits.size(-1), factor = image_size / low;
  t.target = F::avg_pool2d(masks_at_side.unsqueeze(1), F::AvgPool2dFuncOptions(factor)).expand_as(mask_logits);
  t.bce = F::binary_cross_entropy_with_logits(mask_logits, t.target);
  const auto prob = torch::sigmoid(mask_logits);
  const auto inter = (prob * t.target).sum({2, 3});
  t.dice = 1 - (2 * inter + 1) / (prob.sum({2, 3}) + t.target.sum({2, 3}) + 1);
  torch::NoGradGuard no_grad;
  const auto hard = (mask_logits > 0).to(torch::kFloat32);
  const auto truth = (t.target > 0.5).to(torch::kFloat32);
  const auto i = (hard * truth).sum({2, 3}), u = ((hard + truth) > 0).to(torch::kFloat32).sum({2, 3});
  t.real_iou = i / u.clamp_min(1);
  t.present = (t.target.select(1, 0).sum({1, 2}) > 0).to(torch::kFloat32).view({-1, 1});
  t.dice_where_present = (t.dice * t.present).sum() / (t.present.sum() * t.dice.size(1)).clamp_min(1);
  return t;
}

// Cross-entropy of each row's logits against its target id, weighted per row, normalised by
// the weights.
torch::Tensor weighted_cross_entropy(const torch::Tensor& logits, const std::vector<int64_t>& targets,
                                     const std::vector<float>& weights) {
  const auto w = torch::tensor(weights);
  return (F::cross_entropy(logits, torch::tensor(targets, torch::kLong), F::CrossEntropyFuncOptions().reduction(torch::kNone)) *
          w)
             .sum() /
         w.sum();
}

StepLosses step_loss(const TrainableModel& model, const FindingHead& head, const std::vector<Prepared>& batch) {
  const int64_t H = model.config().llm.hidden_size;
  std::vector<torch::Tensor> tiles;
  for (const auto& p : batch) tiles.push_back(p.tiles);
  const auto vision = model.vision_tokens(torch::cat(tiles, 0));  // [sum t, tokens, H]
  StepLosses out;
  torch::Tensor finding_loss;
  {
    std::vector<int64_t> at;
    std::vector<torch::Tensor> targets;
    int64_t tile_at = 0;
    for (const auto& p : batch) {
      if (p.finding_cells.defined()) at.push_back(tile_at), targets.push_back(p.finding_cells);
      tile_at += p.tiles.size(0);
    }
    if (!at.empty()) {
      const auto logits = torch::linear(vision.index_select(0, torch::tensor(at, torch::kLong)), head.weight, head.bias).squeeze(-1);
      const auto target = torch::stack(targets);
      finding_loss = F::binary_cross_entropy_with_logits(
          logits, target, F::BinaryCrossEntropyWithLogitsFuncOptions().pos_weight(torch::tensor({kFindingPositiveWeight})));
      out.finding = finding_loss.item<double>();
      // With positive cells weighted w, a logit of log(w) is an even chance.
      const auto shown = std::get<0>(target.max(1)) >= 0.5;
      const auto said = std::get<0>(logits.max(1)) > std::log(kFindingPositiveWeight);
      out.images = static_cast<int>(at.size());
      out.images_right = static_cast<int>((shown == said).sum().item<int64_t>());
    }
  }
  int64_t longest = 0;
  for (const auto& p : batch) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.ids.size()));
  std::vector<torch::Tensor> rows;
  int64_t tile_at = 0;
  for (const auto& p : batch) {
    const int64_t T = static_cast<int64_t>(p.ids.size()), t = p.tiles.size(0);
    const auto ids = torch::tensor(p.ids, torch::kLong).view({1, T});
    const auto text = model.embed(ids).squeeze(0);
    const auto image = vision.narrow(0, tile_at, t).reshape({-1, H});
    tile_at += t;
    const int64_t n = image.size(0);
    auto row = torch::cat({text.narrow(0, 0, p.image_at), image, text.narrow(0, p.image_at + n, T - p.image_at - n)}, 0);
    if (T < longest) row = torch::cat({row, torch::zeros({longest - T, H})}, 0);
    rows.push_back(row);
  }
  const auto hidden = model.llm_hidden(torch::stack(rows));  // [B, longest, H]

  // Next-token loss on the answer and its end token.
  std::vector<int64_t> rows_at, targets;
  std::vector<float> weights;
  std::vector<uint8_t> decision_rows;  // the first answer token of a disease question
  std::vector<int64_t> seg_rows;
  std::vector<int64_t> seg_image;
  std::vector<torch::Tensor> sam_pixels, sam_masks;
  for (size_t b = 0; b < batch.size(); ++b) {
    const auto& p = batch[b];
    for (int64_t t = p.prompt_length - 1; t + 1 < static_cast<int64_t>(p.ids.size()); ++t) {
      rows_at.push_back(static_cast<int64_t>(b) * longest + t);
      targets.push_back(p.ids[static_cast<size_t>(t + 1)]);
      // The answer's first token carries its decision ("It is [SEG]..." or "No, ..."): it
      // weighs as much as kDecisionWeight ordinary tokens.
      weights.push_back(t == p.prompt_length - 1 ? kDecisionWeight : 1.0f);
      decision_rows.push_back(p.disease && t == p.prompt_length - 1 ? 1 : 0);
    }
    if (!p.seg_positions.empty()) {
      for (int64_t t : p.seg_positions) {
        seg_rows.push_back(static_cast<int64_t>(b) * longest + t);
        seg_image.push_back(static_cast<int64_t>(sam_pixels.size()));
        sam_masks.push_back(p.sam_mask);
      }
      sam_pixels.push_back(p.sam_pixels);
    }
  }
  const auto flat = hidden.reshape({-1, H});
  const auto logits = model.logits(flat.index_select(0, torch::tensor(rows_at, torch::kLong)));
  const auto text_loss = weighted_cross_entropy(logits, targets, weights);
  out.text = text_loss.item<double>();
  {
    const auto first = torch::tensor(decision_rows, torch::kUInt8).to(torch::kBool);
    const auto right = (logits.argmax(-1) == torch::tensor(targets, torch::kLong)) & first;
    out.decisions = static_cast<int>(first.sum().item<int64_t>());
    out.decisions_right = static_cast<int>(right.sum().item<int64_t>());
  }
  out.total = finding_loss.defined() ? text_loss + kFindingWeight * finding_loss : text_loss;
  if (seg_rows.empty()) return out;

  // Masks of every [SEG]: all four decoder outputs learn the mask (inference keeps the best of
  // outputs 1-3 by predicted IoU), the IoU head learns their real IoU.
  const auto language = model.seg_head()(flat.index_select(0, torch::tensor(seg_rows, torch::kLong)));
  const auto features = model.sam_encoder().encode(torch::stack(sam_pixels));
  const auto index = torch::tensor(seg_image, torch::kLong);
  const inference::Sam2ImageFeatures per_seg{features.image_embedding.index_select(0, index),
                                             features.high_res_s0.index_select(0, index),
                                             features.high_res_s1.index_select(0, index)};
  const auto decoded = model.sam_decoder().decode(per_seg, language);
  const MaskTerms m = mask_terms(decoded.all_mask_logits, torch::stack(sam_masks), model.config().grounding.image_size);
  const auto& bce = m.bce;
  const auto& dice = m.dice_where_present;  // an absent target's empty mask: BCE's
  const auto iou = F::mse_loss(decoded.all_iou, m.real_iou);
  out.bce = bce.item<double>();
  out.dice = dice.item<double>();
  out.iou = iou.item<double>();
  out.total = out.total + 4.0 * bce + 2.0 * dice + 0.5 * iou;
  return out;
}

// One clip made ready for the video path.
struct PreparedClip {
  std::vector<int64_t> ids;  // prompt + answer + end token
  int64_t prompt_length = 0;
  std::vector<int64_t> image_positions;  // every <IMG_CONTEXT>, in order
  torch::Tensor tiles;                   // [keys, 3, S, S]: each key frame as one tile
  std::vector<int> key_frames;
  int64_t seg_position = -1;             // the answer's [SEG] (-1: none)
  torch::Tensor sam_pixels;              // [frames, 3, s, s] (only with a [SEG])
  torch::Tensor sam_masks;               // [frames, s, s] ground truth at the SAM2 input size
};

PreparedClip prepare_clip(const Clip& c, const inference::ModelConfig& config, const inference::Tokenizer& tok,
                          const inference::TilingOptions& tiling, int64_t eos, int64_t context_id, int64_t seg_id) {
  PreparedClip p;
  p.key_frames = c.key_frames;
  std::vector<torch::Tensor> tiles;
  for (int k : c.key_frames) {
    const auto input = inference::preprocess_internvl({c.frames.at(static_cast<size_t>(k))}, tiling);
    if (input.tiles_per_image.at(0) != 1) throw InferenceError("train: a clip's key frame is not one tile");
    tiles.push_back(input.pixel_values);
  }
  p.tiles = torch::cat(tiles, 0);
  p.ids = encode_example(c.question, std::vector<int>(c.key_frames.size(), 1), c.answer, config, tok, eos,
                         p.prompt_length);
  for (int64_t t = 0; t < p.prompt_length; ++t)
    if (p.ids[static_cast<size_t>(t)] == context_id) p.image_positions.push_back(t);
  for (int64_t t = p.prompt_length; t < static_cast<int64_t>(p.ids.size()) && p.seg_position < 0; ++t)
    if (p.ids[static_cast<size_t>(t)] == seg_id) p.seg_position = t;
  if (p.seg_position >= 0) {
    const int side = config.grounding.image_size;
    std::vector<torch::Tensor> pixels, masks;
    for (size_t f = 0; f < c.frames.size(); ++f) {
      const auto& frame = c.frames[f];
      pixels.push_back(inference::sam2_pixel_values(frame, side));
      masks.push_back(mask_at_side(c.masks[f], frame, side));
    }
    p.sam_pixels = torch::stack(pixels);
    p.sam_masks = torch::stack(masks);
  }
  return p;
}

struct ClipLosses {
  torch::Tensor total;
  double text = 0, bce = 0, dice = 0, object = 0;
};

// The video path on one clip, as GroundedModel::answer_video runs it: the language model sees
// the key frames (one tile each); the answer's [SEG] prompts SAM2 on every key frame and SAM2's
// memory tracks it through the others, both ways. Losses: next-token on the answer; on every
// frame BCE + Dice on the four mask outputs, the IoU head on their real IoU, and the object
// score on whether the frame shows the object.
ClipLosses clip_loss(const TrainableModel& model, const PreparedClip& p) {
  const int64_t H = model.config().llm.hidden_size;
  const int64_t T = static_cast<int64_t>(p.ids.size());
  const auto vision = model.vision_tokens(p.tiles).reshape({-1, H});
  if (vision.size(0) != static_cast<int64_t>(p.image_positions.size()))
    throw InferenceError("train: a clip's prompt has " + std::to_string(p.image_positions.size()) +
                         " image tokens for " + std::to_string(vision.size(0)));
  const auto text = model.embed(torch::tensor(p.ids, torch::kLong).view({1, T})).squeeze(0);
  const auto row = text.index_put({torch::tensor(p.image_positions, torch::kLong)}, vision);
  const auto hidden = model.llm_hidden(row.unsqueeze(0)).squeeze(0);  // [T, H]
  std::vector<int64_t> at, targets;
  std::vector<float> weights;
  for (int64_t t = p.prompt_length - 1; t + 1 < T; ++t) {
    at.push_back(t);
    targets.push_back(p.ids[static_cast<size_t>(t + 1)]);
    weights.push_back(t == p.prompt_length - 1 ? kDecisionWeight : 1.0f);
  }
  const auto logits = model.logits(hidden.index_select(0, torch::tensor(at, torch::kLong)));
  const auto text_loss = weighted_cross_entropy(logits, targets, weights);
  ClipLosses out;
  out.text = text_loss.item<double>();
  out.total = text_loss;
  if (p.seg_position < 0) return out;

  const auto language = model.seg_head()(hidden.narrow(0, p.seg_position, 1));
  const auto features = model.sam_encoder().encode(p.sam_pixels, nullptr, nullptr, /*add_no_mem_embed=*/false);
  inference::TrackOptions o;
  o.conditioning_frames = p.key_frames;
  o.both_directions = true;
  o.gradients = true;
  const int frames = static_cast<int>(p.sam_pixels.size(0));
  const auto tracked = inference::track_object(model.sam_decoder(), model.sam_memory(), model.sam_encoder().no_mem_embed(),
                                               frames, [&](int t) { return features.select(t); }, language, o);
  std::vector<torch::Tensor> masks, ious, scores;
  for (const auto& f : tracked.frames) {
    if (!f.tracked) throw InferenceError("train: a clip frame was not tracked");
    masks.push_back(f.all_low_res);
    ious.push_back(f.all_iou);
    scores.push_back(f.object_score_logit);
  }
  const MaskTerms m = mask_terms(torch::cat(masks, 0), p.sam_masks, model.config().grounding.image_size);  // [F, 4, ...]
  const auto& bce = m.bce;
  // The frames without the object: BCE and the object score.
  const auto& dice = m.dice_where_present;
  // all_iou of the track holds outputs 1..3 (the multimask ones), as the inference reports them.
  const auto iou = F::mse_loss(torch::cat(ious, 0), m.real_iou.narrow(1, 1, 3));
  const auto object = F::binary_cross_entropy_with_logits(torch::cat(scores, 0).to(torch::kFloat32), m.present);
  out.bce = bce.item<double>();
  out.dice = dice.item<double>();
  out.object = object.item<double>();
  out.total = out.total + 4.0 * bce + 2.0 * dice + 0.5 * iou + 0.5 * object;
  return out;
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

double dice_of(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double inter = 0, sa = 0, sb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    inter += (a[i] && b[i]) ? 1 : 0;
    sa += a[i] ? 1 : 0;
    sb += b[i] ? 1 : 0;
  }
  return sa + sb == 0 ? 1.0 : 2 * inter / (sa + sb);
}

// Dice of masks stacked over frames (a volume's or cine's object); an empty prediction of a
// frame may be given as an empty vector.
double stacked_dice(const std::vector<std::vector<uint8_t>>& predicted, const std::vector<std::vector<uint8_t>>& truth) {
  double inter = 0, sp = 0, st = 0;
  for (size_t f = 0; f < truth.size(); ++f) {
    const auto& t = truth[f];
    const auto* p = f < predicted.size() && predicted[f].size() == t.size() ? &predicted[f] : nullptr;
    for (size_t i = 0; i < t.size(); ++i) {
      const bool a = p && (*p)[i], b = t[i] != 0;
      inter += a && b ? 1 : 0;
      sp += a ? 1 : 0;
      st += b ? 1 : 0;
    }
  }
  return sp + st == 0 ? 1.0 : 2 * inter / (sp + st);
}

// The example's image with the outline of the ground truth in green and of the first predicted
// mask in red, and a line in index.txt.
void dump_example(const fs::path& dir, int index, const Example& e, const inference::GroundedAnswer& a) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  dicom::RgbImage im{e.image.width, e.image.height, e.image.rgb};
  const int w = im.width, h = im.height;
  auto outline = [&](const std::vector<uint8_t>& m, uint8_t r, uint8_t g) {
    if (m.size() != size_t(w) * h) return;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const size_t i = size_t(y) * w + x;
        if (!m[i]) continue;
        const bool edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !m[i - 1] || !m[i + 1] || !m[i - w] || !m[i + w];
        if (!edge) continue;
        im.rgb[i * 3] = r, im.rgb[i * 3 + 1] = g, im.rgb[i * 3 + 2] = 0;
      }
  };
  outline(e.mask, 0, 255);
  if (!a.segments.empty()) outline(a.segments.front().mask, 255, 0);
  char name[64];
  std::snprintf(name, sizeof name, "%03d-%s.png", index, e.family.c_str());
  dicom::write_png(dir / name, im);
  std::ofstream index_file(dir / "index.txt", std::ios::app);
  index_file << name << "\t" << e.modality << "\t" << e.question << "\texpected: " << e.answer << "\tgot: " << a.text
             << "\n";
}

}  // namespace

std::vector<float> finding_token_targets(const Example& e, int grid, double downsample_ratio) {
  // The per-patch pixel counts go through pixel_shuffle itself as a one-channel map: each
  // token's channels are then its patches, in the model's own order.
  const int64_t g = grid;
  std::vector<float> per_patch(static_cast<size_t>(g * g), 0.f);
  const int w = e.image.width, h = e.image.height;
  if (e.finding.size() != size_t(w) * h) throw std::invalid_argument("finding_token_targets: the finding map is not image-sized");
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (e.finding[size_t(y) * w + x]) per_patch[static_cast<size_t>((y * g / h) * g + x * g / w)] += 1;
  const auto map = torch::tensor(per_patch).view({1, g, g, 1});
  const auto shuffled = inference::VisionEncoder::pixel_shuffle(map, downsample_ratio);
  const auto tokens = (shuffled.reshape({-1, shuffled.size(-1)}).sum(-1) / static_cast<float>(kVisibleFinding)).clamp_max(1);
  return std::vector<float>(tokens.data_ptr<float>(), tokens.data_ptr<float>() + tokens.numel());
}

std::string demo_config_json() {
  // The tiny reference layout (vocabulary, template, Hiera stages, special token ids) with the
  // demo's sizes.
  auto c = ojson::parse(inference::random_config_json("tiny"));
  c["torch_dtype"] = "bfloat16";
  c["force_image_size"] = 112;
  c["max_dynamic_patch"] = 1;
  c["hidden_size"] = 128;
  auto& v = c["vision_config"];
  v["hidden_size"] = 96, v["image_size"] = 112, v["intermediate_size"] = 192, v["num_hidden_layers"] = 3;
  auto& l = c["llm_config"];
  l["hidden_size"] = 128, l["intermediate_size"] = 384, l["num_hidden_layers"] = 3;
  auto& g = c["grounding_encoder_config"];
  g["image_size"] = 256;
  g["neck"]["d_model"] = 64;
  g["memory_attention"]["d_model"] = 64;
  auto& t = c["tiny_test"];
  t["comment"] = "unibiomed demo checkpoint: sizes used by predict_forward (see CARD.md)";
  t["internvl_tile_size"] = 112;
  t["sam_target_length"] = 256;
  t["max_dynamic_patch_used_by_predict_forward"] = 1;
  return c.dump(2);
}

// Scales the memory path of a model whose memory path was never trained to the image features
// the decoder learned on. The demo's SAM2 features grow large in training (a stride-16 feature
// of the shipped 2D checkpoint has a standard deviation of about 30 per channel), while a fresh
// memory attention ends in a LayerNorm of unit scale: the decoder then sees tracked frames at a
// thirtieth of the scale it knows, and Adam takes thousands of steps to grow the weights back
// (measured: tracked frames stayed near empty after 500 steps). So, from the raw features of a
// few training frames: the final norm's weight and bias become the features' per-channel
// standard deviation and mean, the cross-attention output projections are multiplied by their
// overall standard deviation (what the memory adds lands on the features' scale), and the memory
// encoder's feature projection is divided by it (memories start at unit scale like the mask
// part). Architecture and code paths are unchanged: only starting values.
void calibrate_memory_path(const TrainableModel& model, const std::vector<inference::RgbImage>& frames,
                           const inference::Sam2MemoryConfig& memory, const std::function<void(const std::string&)>& log) {
  torch::NoGradGuard no_grad;
  const int side = model.config().grounding.image_size;
  std::vector<torch::Tensor> pixels;
  for (const auto& f : frames) pixels.push_back(inference::sam2_pixel_values(f, side));
  const auto raw = model.sam_encoder().encode(torch::stack(pixels), nullptr, nullptr, false).image_embedding;
  const auto mean = raw.mean({0, 2, 3});
  const auto spread = (raw - mean.view({1, -1, 1, 1})).pow(2).mean({0, 2, 3}).sqrt().clamp_min(1e-3);
  const double overall = raw.std().item<double>();
  namespace L = inference::layout;
  model.tensor(L::memory_attention_norm().weight).copy_(spread);
  model.tensor(L::memory_attention_norm().bias).copy_(mean);
  for (int i = 0; i < memory.num_layers; ++i) {
    const auto& out = L::memory_attention_layer(i).cross_attn_image.out_proj;
    model.tensor(out.weight).mul_(overall);
    model.tensor(out.bias).mul_(overall);
  }
  model.tensor(L::memory_encoder().pix_feat_proj.weight).div_(overall);

  // Where to look: a fresh cross-attention attends almost evenly over every memory token (random
  // projections of features it has not learned to match), so what it reads is the masks'
  // average over the whole bank, the same for every object, and the gradient that would teach
  // it to match features is as weak. Consecutive slices and cine frames show the object nearly
  // where the memory frame had it, so the attention starts out reading the memory tokens at the
  // query's own place: equal query and key biases on the highest rotary frequencies of both
  // axes make the score sum_j a^2 cos(f_j * offset) / sqrt(D), which peaks at offset 0 and falls
  // by about 3 per grid cell (a^2 set from the frequencies); the content projections are damped
  // so they do not drown it. Training then learns to follow movement from the features.
  const int64_t d = model.tensor(L::memory_attention_layer(0).cross_attn_image.q_proj.bias).size(0);
  const int64_t quarter = d / 4;
  std::vector<int64_t> pairs;
  double drop = 0;  // the score's fall per unit a^2 one cell away along an axis
  for (int64_t j = 0; j < quarter; ++j) {
    const double f = std::pow(1e4, -4.0 * static_cast<double>(j) / static_cast<double>(d));
    if (f < 0.15) break;
    pairs.push_back(j);
    drop += 1 - std::cos(f);
  }
  const double a = std::sqrt(3.0 * std::sqrt(static_cast<double>(d)) / drop);
  auto bias = torch::zeros({d});
  for (int64_t j : pairs) {
    bias[2 * j] = a;              // x: pairs 0 .. D/4-1
    bias[2 * (quarter + j)] = a;  // y: pairs D/4 .. D/2-1
  }
  for (int i = 0; i < memory.num_layers; ++i) {
    const auto& cross = L::memory_attention_layer(i).cross_attn_image;
    model.tensor(cross.q_proj.weight).mul_(0.3);
    model.tensor(cross.k_proj.weight).mul_(0.3);
    model.tensor(cross.q_proj.bias).copy_(bias);
    model.tensor(cross.k_proj.bias).copy_(bias);
  }
  if (log) log("memory path scaled to the image features (standard deviation " + fixed(overall, 2) + ", from " +
      std::to_string(frames.size()) + " frames); cross-attention starts at the query's own place (" +
      std::to_string(pairs.size()) + " rotary frequencies per axis)");
}

// Whether a run starting from `init` (empty: fresh weights) starts with an untrained memory
// path: fresh weights, or a checkpoint that `model train` wrote without clips.
static bool memory_path_untrained(const fs::path& init) {
  if (init.empty()) return true;
  const inference::SafetensorsFile weights(init / "model.safetensors");
  const auto it = weights.metadata().find("clips");
  return it == weights.metadata().end() || it->second == "0";
}

TrainSummary train_demo_checkpoint(const fs::path& out, const TrainOptions& o) {
  auto log = [&](const std::string& line) {
    if (o.log) o.log(line);
  };
  if (o.steps <= 0 || o.batch <= 0 || o.learning_rate <= 0)
    throw InferenceError("train: steps, batch and learning rate must be positive");
  std::error_code ec;
  fs::create_directories(out, ec);
  if (!fs::is_directory(out)) throw InferenceError("train: cannot create the folder " + out.string());
#if defined(__GLIBC__)
  // Training allocates and frees the same large activations every step; above glibc's mmap
  // threshold each would be mapped afresh and page-faulted in (a third of the time here).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // the largest value glibc accepts
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif

  const std::string config_text = demo_config_json();
  {
    std::ofstream f(out / "config.json");
    f << config_text << "\n";
    if (!f) throw InferenceError("train: cannot write " + (out / "config.json").string());
  }
  inference::write_byte_level_tokenizer(out, special_ids());
  const auto config = inference::ModelConfig::parse(config_text, "demo config");
  const auto tok = inference::Tokenizer::load(out);
  const auto tiling = inference::TilingOptions::from_config(config);
  const int64_t eos = config.llm.eos_token_id, context = tok.token_id(inference::kImageContextToken);
  const int64_t seg = tok.token_id(inference::kSegToken);

  const auto memory_config = inference::memory_config_from_json(config_text, "demo config");
  std::unique_ptr<TrainableModel> model_owner;
  if (o.init.empty()) {
    model_owner = std::make_unique<TrainableModel>(config, memory_config, o.seed);
  } else {
    // Fine-tuning: the starting checkpoint must be a demo checkpoint (the sizes written here).
    const auto init_config = inference::ModelConfig::load(o.init / "config.json");
    if (init_config.llm.hidden_size != config.llm.hidden_size || init_config.vision.hidden_size != config.vision.hidden_size ||
        init_config.grounding.image_size != config.grounding.image_size ||
        init_config.llm.num_hidden_layers != config.llm.num_hidden_layers)
      throw InferenceError("train: " + o.init.string() + " is not a demo checkpoint of this version (its sizes differ)");
    model_owner = std::make_unique<TrainableModel>(o.init, memory_config);
    log("starting from the weights in " + o.init.string());
  }
  TrainableModel& model = *model_owner;
  // One BLAS and intra-op thread per worker: the operators of this small model are too short
  // to split (a second OpenBLAS or OpenMP thread made a step twice slower here).
  inference::configure_cpu_threads(1);
  log("model: " + std::to_string(model.parameter_count()) + " parameters; " + std::to_string(o.steps) + " steps of " +
      std::to_string(o.batch) + " examples, at most " + fixed(o.max_minutes, 1) + " minutes, " +
      std::to_string(std::min(thread_count(o.threads), o.batch)) + " worker threads");
  log("drawing " + std::to_string(o.phantoms) + " synthetic patients per modality");
  SyntheticData data(o.seed, o.seed + 1, o.phantoms);
  data.set_absent_target_share(o.absent_target_share);
  std::unique_ptr<SyntheticClips> clips;
  if (o.clips > 0) {
    clips = std::make_unique<SyntheticClips>(o.seed, o.seed + 2, o.phantoms);
    try {
      clips->set_target_weights(o.clip_target_weights);
    } catch (const std::invalid_argument& e) {
      throw InferenceError(std::string("train: ") + e.what());
    }
    for (const auto& [phrase, weight] : o.clip_target_weights)
      log("clips ask for the " + phrase + " with weight " + fixed(weight, 2) + " (the other targets 1)");
  }
  if (o.fresh_memory_path) {
    if (o.init.empty()) throw InferenceError("train: a fresh memory path needs a checkpoint to start from (--init)");
    model.reset_memory_path(memory_config, o.seed + 4);
    log("memory path (memory encoder, memory attention, object pointers) starts over from fresh weights");
  }
  if (clips && (o.fresh_memory_path || memory_path_untrained(o.init))) {
    std::vector<inference::RgbImage> frames;
    SyntheticClips sample(o.seed, o.seed + 3, 1);
    for (int i = 0; i < 4; ++i)
      for (auto& f : sample.next(o.clip_frames).frames) frames.push_back(std::move(f));
    calibrate_memory_path(model, frames, memory_config, log);
  }
  const FindingHead head(config.llm.hidden_size);
  // Two parameter groups: everything else, then the memory path (its own learning-rate scale).
  std::vector<torch::Tensor> params = model.trainable(false);
  params.push_back(head.weight);
  params.push_back(head.bias);
  const std::vector<torch::Tensor> memory_params = model.trainable(true);
  const auto adamw = torch::optim::AdamWOptions(o.learning_rate).betas({0.9, 0.99}).weight_decay(0.01);
  torch::optim::AdamW optimizer({torch::optim::OptimizerParamGroup(params, std::make_unique<torch::optim::AdamWOptions>(adamw)),
                                 torch::optim::OptimizerParamGroup(memory_params,
                                                                   std::make_unique<torch::optim::AdamWOptions>(adamw))},
                                adamw);
  params.insert(params.end(), memory_params.begin(), memory_params.end());
  const int workers = std::min(thread_count(o.threads), o.batch);

  const auto start = std::chrono::steady_clock::now();
  auto minutes = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60; };
  std::string target_weights;  // "pancreas=4.00" (metadata only where set)
  for (const auto& [phrase, weight] : o.clip_target_weights)
    target_weights += (target_weights.empty() ? "" : ",") + phrase + "=" + fixed(weight, 2);
  auto save = [&](int step) {
    std::map<std::string, std::string> metadata{
        {"format", "pt"},
        {"generator", "unibiomed model train"},
        {"seed", std::to_string(o.seed)},
        {"steps", std::to_string(step)},
        {"batch", std::to_string(o.batch)},
        {"clips", std::to_string(o.clips)},
        {"learning_rate", fixed(o.learning_rate, 6)},
        {"memory_learning_rate_scale", fixed(o.memory_learning_rate_scale, 3)},
        {"init", o.init.empty() ? std::string("none") : o.init.filename().string()},
        {"fresh_memory_path", o.fresh_memory_path ? "1" : "0"}};
    if (!target_weights.empty()) metadata["clip_target_weights"] = target_weights;
    model.save_weights(out, metadata);
  };
  TrainSummary summary;
  summary.parameters = model.parameter_count();
  double window_loss = 0, window_text = 0, window_bce = 0, window_dice = 0, window_finding = 0;
  double window_clip_text = 0, window_clip_bce = 0, window_clip_dice = 0, window_clip_object = 0;
  int window_clips = 0;
  int window = 0;
  double data_minutes = 0;
  int decisions = 0, decisions_right = 0, images = 0, images_right = 0;
  const int warmup = std::min(200, o.steps / 10 + 1);
  int step = 0;
  for (; step < o.steps; ++step) {
    if (minutes() > o.max_minutes) {
      log("time limit of " + fixed(o.max_minutes, 1) + " minutes reached at step " + std::to_string(step));
      break;
    }
    // Learning rate: linear warm-up, then cosine down to a tenth.
    const double progress = static_cast<double>(step) / o.steps;
    double lr = o.learning_rate * (0.1 + 0.9 * 0.5 * (1 + std::cos(3.14159265358979 * progress)));
    if (step < warmup) lr = o.learning_rate * (step + 1) / warmup;
    auto& groups = optimizer.param_groups();
    static_cast<torch::optim::AdamWOptions&>(groups.at(0).options()).lr(lr);
    static_cast<torch::optim::AdamWOptions&>(groups.at(1).options()).lr(lr * o.memory_learning_rate_scale);

    const double data_start = minutes();
    std::vector<Prepared> batch;
    while (static_cast<int>(batch.size()) < o.batch) {
      const Example e = data.next();
      if (!o.families.empty() && std::find(o.families.begin(), o.families.end(), e.family) == o.families.end()) continue;
      batch.push_back(prepare(e, config, tok, tiling, eos, context, seg));
      for (const Example& c : e.companions())
        if (static_cast<int>(batch.size()) < o.batch) batch.push_back(prepare(c, config, tok, tiling, eos, context, seg));
    }
    std::vector<PreparedClip> step_clips;
    for (int c = 0; c < o.clips; ++c)
      step_clips.push_back(prepare_clip(clips->next(o.clip_frames), config, tok, tiling, eos, context, seg));
    data_minutes += minutes() - data_start;
    // Data parallel: each worker thread takes a share of the batch with one intra-op thread
    // (these small operators run slower when split further) and returns its gradients, which
    // are summed in worker order, so a run is reproducible for a seed and worker count.
    std::vector<std::vector<Prepared>> shares(static_cast<size_t>(workers));
    for (size_t i = 0; i < batch.size(); ++i) shares[i * shares.size() / batch.size()].push_back(std::move(batch[i]));
    // Clips go to the workers in turn; each weighs as much as the whole image batch divided by
    // the clips per step.
    std::vector<std::vector<const PreparedClip*>> clip_shares(shares.size());
    for (size_t i = 0; i < step_clips.size(); ++i) clip_shares[i % shares.size()].push_back(&step_clips[i]);
    std::vector<std::vector<torch::Tensor>> grads(shares.size());
    std::vector<StepLosses> losses(shares.size());
    std::vector<ClipLosses> clip_losses(shares.size());
    std::vector<std::string> errors(shares.size());
    auto work = [&](size_t w) {
      try {
        torch::set_num_threads(1);
        if (shares[w].empty() && clip_shares[w].empty()) return;
        torch::Tensor total;
        if (!shares[w].empty()) {
          losses[w] = step_loss(model, head, shares[w]);
          total = losses[w].total * (static_cast<double>(shares[w].size()) / o.batch);
        }
        for (const PreparedClip* c : clip_shares[w]) {
          ClipLosses l = clip_loss(model, *c);
          const auto part = l.total / static_cast<double>(o.clips);
          total = total.defined() ? total + part : part;
          auto& sum = clip_losses[w];
          sum.text += l.text, sum.bce += l.bce, sum.dice += l.dice, sum.object += l.object;
        }
        grads[w] = torch::autograd::grad({total}, params, {}, false, false, true);
      } catch (const std::exception& e) {
        errors[w] = e.what();
      }
    };
    std::vector<std::thread> threads;
    for (size_t w = 1; w < shares.size(); ++w) threads.emplace_back(work, w);
    work(0);
    for (auto& t : threads) t.join();
    for (const auto& e : errors)
      if (!e.empty()) throw InferenceError("train: step " + std::to_string(step + 1) + ": " + e);
    for (size_t i = 0; i < params.size(); ++i) {
      torch::Tensor sum;
      for (const auto& g : grads)
        if (!g.empty() && g[i].defined()) sum = sum.defined() ? sum + g[i] : g[i];
      // A tensor no loss of this step reached (the memory path in a step whose clips had no
      // [SEG]) keeps no gradient: AdamW then leaves it alone, weight decay included.
      params[i].mutable_grad() = sum.defined() ? sum : torch::Tensor();
    }
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    optimizer.step();

    for (const auto& c : clip_losses)
      window_clip_text += c.text, window_clip_bce += c.bce, window_clip_dice += c.dice, window_clip_object += c.object;
    window_clips += static_cast<int>(step_clips.size());
    for (size_t w = 0; w < shares.size(); ++w) {
      if (shares[w].empty()) continue;
      const double weight = static_cast<double>(shares[w].size()) / o.batch;
      window_loss += losses[w].total.item<double>() * weight;
      window_text += losses[w].text * weight;
      window_bce += losses[w].bce * weight;
      window_dice += losses[w].dice * weight;
      window_finding += losses[w].finding * weight;
      images += losses[w].images;
      images_right += losses[w].images_right;
      decisions += losses[w].decisions;
      decisions_right += losses[w].decisions_right;
    }
    ++window;
    if ((step + 1) % 50 == 0 || step + 1 == o.steps) {
      summary.last_loss = window_loss / window;
      log("step " + std::to_string(step + 1) + "/" + std::to_string(o.steps) + "  loss " + fixed(window_loss / window, 4) +
          "  (text " + fixed(window_text / window, 4) + ", mask BCE " + fixed(window_bce / window, 4) + ", Dice loss " +
           fixed(window_dice / window, 4) + ", finding map " + fixed(window_finding / window, 4) +
          "; disease decisions right " + fixed(decisions ? 100.0 * decisions_right / decisions : 0, 1) +
          " %, finding map's image decisions " + fixed(images ? 100.0 * images_right / images : 0, 1) + " %)  lr " + fixed(lr * 1e3, 3) + "e-3  " + fixed(minutes(), 1) + " min (examples " + fixed(data_minutes, 1) + ")");
      if (window_clips > 0) {
        const double n = window_clips;
        log("  clips: text " + fixed(window_clip_text / n, 4) + ", mask BCE " + fixed(window_clip_bce / n, 4) +
            ", Dice loss " + fixed(window_clip_dice / n, 4) + ", object score " + fixed(window_clip_object / n, 4) +
            " over " + std::to_string(window_clips) + " clips");
      }
      window_clip_text = window_clip_bce = window_clip_dice = window_clip_object = 0;
      window_clips = 0;
      window_loss = window_text = window_bce = window_dice = window_finding = 0;
      decisions = decisions_right = images = images_right = 0;
      window = 0;
    }
    if (o.save_every > 0 && (step + 1) % o.save_every == 0) save(step + 1);
  }
  save(step);
  summary.steps = step;
  summary.seconds = minutes() * 60;
  fs::remove(out / "unibiomed-weights-hash.json", ec);
  log("wrote " + (out / "model.safetensors").string() + " after " + std::to_string(step) + " steps, " +
      fixed(summary.seconds / 60, 1) + " minutes");
  return summary;
}

EvaluationReport evaluate_checkpoint(const fs::path& dir, const EvaluateOptions& o) {
  // A held-out score must come from phantoms training never drew: the checkpoint's training seed
  // (its safetensors metadata, written by `model train`) is refused as the evaluation seed.
  // With `training_set`, that seed is the one scored instead.
  const auto file = dir / "model.safetensors";
  std::optional<std::string> trained;  // the seed the metadata records
  if (fs::exists(file)) {
    const inference::SafetensorsFile weights(file);
    const auto it = weights.metadata().find("seed");
    if (it != weights.metadata().end()) trained = it->second;
  }
  uint64_t seed = o.seed;
  if (o.training_set) {
    try {
      size_t used = 0;
      if (trained) seed = std::stoull(*trained, &used);
      if (trained && used != trained->size()) trained.reset();
    } catch (const std::exception&) {
      trained.reset();
    }
    if (!trained)
      throw std::invalid_argument(file.string() +
                                  " records no training seed (only `model train` writes one): there is no training "
                                  "set to score it on");
  } else if (trained && *trained == std::to_string(o.seed)) {
    throw std::invalid_argument("evaluation seed " + std::to_string(o.seed) + " is the seed " + file.string() +
                                " was trained with: its phantoms are the training set, not held out; choose "
                                "another --seed");
  }
  torch::set_num_threads(thread_count(o.threads));
  const auto start = std::chrono::steady_clock::now();
  inference::LoadOptions load;
  load.dtype = o.dtype;
  const auto model = inference::GroundedModel::load(dir, load);
  SyntheticData data(seed, seed + 1, 2);
  inference::AnswerOptions answer_options;
  answer_options.max_new_tokens = 96;
  answer_options.probability_maps = false;
  EvaluationReport r;
  if (o.training_set) r.examples_from = "training-set (seed " + std::to_string(seed) + ", not held out)";
  double seg_sum = 0, disease_right = 0, finding_sum = 0;
  std::map<std::string, std::pair<double, int>> exact;
  for (int i = 0; i < o.examples; ++i) {
    const Example e = data.next();
    const auto a = model->answer(e.image, e.question, answer_options);
    const bool same_text = a.parsed.text == inference::parse_answer(e.answer, e.question).text;
    auto& x = exact[e.family];
    x.first += same_text ? 1 : 0;
    x.second += 1;
    if (e.family == "segmentation") {
      const double d = a.segments.empty() ? 0.0 : dice_of(a.segments.front().mask, e.mask);
      seg_sum += d;
      ++r.segmentation_count;
      auto& t = r.dice_by_target[e.modality + " " + e.target];
      t.first += d;
      t.second += 1;
    } else if (e.family == "disease") {
      ++r.disease_count;
      disease_right += same_text ? 1 : 0;
      if (same_text && e.positive) {
        finding_sum += a.segments.empty() ? 0.0 : dice_of(a.segments.front().mask, e.mask);
        ++r.finding_count;
      }
    }
    if (!o.dump_dir.empty()) dump_example(o.dump_dir, i, e, a);
    if (o.log && (i + 1) % 20 == 0) o.log("evaluated " + std::to_string(i + 1) + "/" + std::to_string(o.examples));
  }
  if (o.video_phantoms > 0) {
    SyntheticClips held_out(seed, seed + 2, o.video_phantoms);
    inference::VideoOptions video_options;
    video_options.both_directions = true;  // as the node runs volumes and cine
    video_options.prompt_every = o.prompt_every;
    video_options.max_prompted_in_attention = o.prompted_in_attention;
    video_options.max_new_tokens = answer_options.max_new_tokens;
    double video_sum = 0, slices_sum = 0;
    for (const Clip& c : held_out.whole()) {
      VideoScore v;
      v.object = c.modality + " " + c.target;
      v.modality_class = dicom::modality_name(dicom::modality_from_name(c.modality).value());
      v.frames = static_cast<int>(c.frames.size());
      video_options.key_frames = c.key_frames;
      const auto video = model->encode_video(c.frames);
      const auto a = model->answer_video(*video, c.question, video_options);
      std::vector<std::vector<uint8_t>> predicted(c.frames.size());
      if (!a.segments.empty()) predicted = a.segments.front().masks;
      v.video_dice = stacked_dice(predicted, c.masks);
      const auto per_slice = model->answer_batch(c.frames, c.question, answer_options);
      std::vector<float> slice_score(per_slice.size(), 0.0f);
      for (size_t f = 0; f < per_slice.size(); ++f) {
        const bool none = per_slice[f].segments.empty();
        predicted[f] = none ? std::vector<uint8_t>() : per_slice[f].segments.front().mask;
        slice_score[f] = none ? 0.0f : per_slice[f].segments.front().object_score;
      }
      v.slices_dice = stacked_dice(predicted, c.masks);
      if (!o.dump_dir.empty()) {
        // Per frame: pixels of the object, of the video-mode mask and of the slice's own answer,
        // both object-score logits, and each mask's overlap with the object.
        std::error_code ec;
        fs::create_directories(o.dump_dir, ec);
        std::ofstream f(o.dump_dir / "video.txt", std::ios::app);
        auto pixels = [](const std::vector<uint8_t>& m) {
          return std::count_if(m.begin(), m.end(), [](uint8_t v) { return v != 0; });
        };
        auto overlap = [](const std::vector<uint8_t>& m, const std::vector<uint8_t>& truth) {
          int64_t n = 0;
          for (size_t i = 0; i < m.size() && i < truth.size(); ++i) n += (m[i] && truth[i]) ? 1 : 0;
          return n;
        };
        f << "object " << r.video.size() << " " << v.object << " (" << c.question << "; answer: " << a.text
          << "): Dice video " << fixed(v.video_dice, 3) << ", slices " << fixed(v.slices_dice, 3) << "\n";
        const inference::VideoSegment* tracked = a.segments.empty() ? nullptr : &a.segments.front();
        const std::vector<uint8_t> none;
        for (size_t t = 0; t < c.frames.size(); ++t) {
          const bool key = std::count(c.key_frames.begin(), c.key_frames.end(), static_cast<int>(t)) > 0;
          const std::vector<uint8_t>& video_mask = tracked ? tracked->masks[t] : none;
          f << "  frame " << t << (key ? " key" : "    ") << "  truth " << pixels(c.masks[t]) << "  video "
            << pixels(video_mask) << "  slice " << pixels(predicted[t]) << "  score video "
            << fixed(tracked ? tracked->object_score[t] : 0.0, 2) << " slice " << fixed(slice_score[t], 2)
            << "  overlap video " << overlap(video_mask, c.masks[t]) << " slice " << overlap(predicted[t], c.masks[t])
            << "\n";
        }
      }
      video_sum += v.video_dice;
      slices_sum += v.slices_dice;
      r.video.push_back(v);
      if (o.log) o.log("video object " + std::to_string(r.video.size()) + ": " + v.object + ", " + std::to_string(v.frames) +
                       " frames: Dice " + fixed(v.video_dice, 3) + " video mode, " + fixed(v.slices_dice, 3) + " slices mode");
    }
    if (!r.video.empty()) {
      r.video_dice = video_sum / static_cast<double>(r.video.size());
      r.slices_dice = slices_sum / static_cast<double>(r.video.size());
    }
  }
  r.examples = o.examples;
  r.segmentation_dice = r.segmentation_count ? seg_sum / r.segmentation_count : 0;
  r.disease_accuracy = r.disease_count ? disease_right / r.disease_count : 0;
  r.finding_dice = r.finding_count ? finding_sum / r.finding_count : 0;
  for (auto& [target, v] : r.dice_by_target) v.first /= v.second;
  for (auto& [family, v] : exact) v.first /= v.second;
  r.exact_by_family = exact;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

namespace {

struct VideoMeans {
  double video = 0, slices = 0;
  int count = 0;
};

// The video-mode and slices-mode means of the objects that share a key (object, modality class).
std::map<std::string, VideoMeans> video_means_by(const std::vector<VideoScore>& scores,
                                                 std::string VideoScore::*key) {
  std::map<std::string, VideoMeans> out;
  for (const auto& v : scores) {
    auto& m = out[v.*key];
    m.video += v.video_dice, m.slices += v.slices_dice, m.count += 1;
  }
  for (auto& [k, m] : out) m.video /= m.count, m.slices /= m.count;
  return out;
}

}  // namespace

std::map<std::string, std::pair<double, double>> EvaluationReport::video_by_modality() const {
  std::map<std::string, std::pair<double, double>> out;
  for (const auto& [m, means] : video_means_by(video, &VideoScore::modality_class)) out[m] = {means.video, means.slices};
  return out;
}

std::string EvaluationReport::table() const {
  std::ostringstream s;
  s << examples_from << " examples: " << examples << " (" << fixed(seconds, 1) << " s)\n";
  s << "segmentation prompts: mean Dice " << fixed(segmentation_dice, 3) << " over " << segmentation_count << "\n";
  for (const auto& [target, v] : dice_by_target)
    s << "  " << std::left << std::setw(24) << target << " Dice " << fixed(v.first, 3) << "  (n=" << v.second << ")\n";
  s << "disease recognition: answer accuracy " << fixed(disease_accuracy, 3) << " over " << disease_count << "\n";
  s << "  Dice of the finding's mask (correct positive answers): " << fixed(finding_dice, 3) << " over " << finding_count
    << "\n";
  s << "answer text exactly as expected, per task family:\n";
  for (const auto& [family, v] : exact_by_family)
    s << "  " << std::left << std::setw(14) << family << fixed(v.first, 3) << "  (n=" << v.second << ")\n";
  if (!video.empty()) {
    s << "whole volumes and cines: mean Dice per object " << fixed(video_dice, 3) << " in video mode, "
      << fixed(slices_dice, 3) << " slice by slice, over " << video.size() << " objects\n";
    for (const auto& [object, m] : video_means_by(video, &VideoScore::object))
      s << "  " << std::left << std::setw(24) << object << " video " << fixed(m.video, 3) << "  slices "
        << fixed(m.slices, 3) << "  (n=" << m.count << ")\n";
    const std::string margin = fixed(kVideoModeMargin, 2);
    s << "  per modality class (targets.json's \"video\" list names those whose video mode is within " << margin
      << " of slices):\n";
    for (const auto& [m, means] : video_by_modality())
      s << "  " << std::left << std::setw(24) << m << " video " << fixed(means.first, 3) << "  slices "
        << fixed(means.second, 3) << "  ("
        << (means.first >= means.second - kVideoModeMargin ? "within " + margin : std::string("below by more")) << ")\n";
  }
  return s.str();
}

}  // namespace unibiomed::training
