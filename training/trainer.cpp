// SPDX-License-Identifier: GPL-3.0-or-later
#include "training/trainer.h"

#include <nlohmann/json.hpp>
#include <torch/nn/functional.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "dicom/raster_file.h"
#include "inference/answer_parser.h"
#include "inference/error.h"
#include "inference/grounded_model.h"
#include "inference/image_preprocess.h"
#include "inference/prompt.h"
#include "inference/random_checkpoint.h"
#include "inference/runtime.h"
#include "inference/safetensors_file.h"
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

Prepared prepare(const Example& e, const inference::ModelConfig& config, const inference::Tokenizer& tok,
                 const inference::TilingOptions& tiling, int64_t eos, int64_t context_id, int64_t seg_id) {
  Prepared p;
  const auto input = inference::preprocess_internvl({e.image}, tiling);
  p.tiles = input.pixel_values;
  const int tiles = input.tiles_per_image.at(0);
  const std::string prompt = inference::build_prompt(inference::question_with_image(e.question), {tiles},
                                                     config.tokens_per_tile(), config.template_name);
  p.ids = tok.encode(prompt);
  p.prompt_length = static_cast<int64_t>(p.ids.size());
  for (int64_t id : tok.encode(e.answer)) p.ids.push_back(id);
  p.ids.push_back(eos);
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
    // DirectResize of the ground truth: nearest neighbour to the SAM2 input size.
    auto m = torch::from_blob(const_cast<uint8_t*>(e.mask.data()), {1, 1, e.image.height, e.image.width}, torch::kUInt8)
                 .to(torch::kFloat32);
    p.sam_mask = F::interpolate(m, F::InterpolateFuncOptions().size(std::vector<int64_t>{side, side}).mode(torch::kNearest))
                     .view({side, side});
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
  const auto token_weights = torch::tensor(weights);
  auto text_loss = (F::cross_entropy(logits, torch::tensor(targets, torch::kLong),
                                     F::CrossEntropyFuncOptions().reduction(torch::kNone)) *
                    token_weights)
                       .sum() /
                   token_weights.sum();
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
  // Losses at the decoder's resolution (a quarter of the SAM2 input): the ground truth is
  // area-averaged to it, so mask edges are soft targets.
  const auto& mask_logits = decoded.all_mask_logits;  // [N, 4, s/4, s/4]
  const int64_t low = mask_logits.size(-1), factor = model.config().grounding.image_size / low;
  const auto target = F::avg_pool2d(torch::stack(sam_masks).unsqueeze(1), F::AvgPool2dFuncOptions(factor)).expand_as(mask_logits);
  const auto bce = F::binary_cross_entropy_with_logits(mask_logits, target);
  const auto prob = torch::sigmoid(mask_logits);
  const auto inter = (prob * target).sum({2, 3});
  const auto dice = (1 - (2 * inter + 1) / (prob.sum({2, 3}) + target.sum({2, 3}) + 1)).mean();
  torch::Tensor real_iou;
  {
    torch::NoGradGuard no_grad;
    const auto hard = (mask_logits > 0).to(torch::kFloat32);
    const auto truth = (target > 0.5).to(torch::kFloat32);
    const auto i = (hard * truth).sum({2, 3}), u = ((hard + truth) > 0).to(torch::kFloat32).sum({2, 3});
    real_iou = i / u.clamp_min(1);
  }
  const auto iou = F::mse_loss(decoded.all_iou, real_iou);
  out.bce = bce.item<double>();
  out.dice = dice.item<double>();
  out.iou = iou.item<double>();
  out.total = out.total + 4.0 * bce + 2.0 * dice + 0.5 * iou;
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

  TrainableModel model(config, inference::memory_config_from_json(config_text, "demo config"), o.seed);
  // One BLAS and intra-op thread per worker: the operators of this small model are too short
  // to split (a second OpenBLAS or OpenMP thread made a step twice slower here).
  inference::configure_cpu_threads(1);
  log("model: " + std::to_string(model.parameter_count()) + " parameters; " + std::to_string(o.steps) + " steps of " +
      std::to_string(o.batch) + " examples, at most " + fixed(o.max_minutes, 1) + " minutes, " +
      std::to_string(std::min(thread_count(o.threads), o.batch)) + " worker threads");
  SyntheticData data(o.seed, o.seed + 1);
  const FindingHead head(config.llm.hidden_size);
  std::vector<torch::Tensor> params = model.trainable();
  params.push_back(head.weight);
  params.push_back(head.bias);
  const int workers = std::min(thread_count(o.threads), o.batch);
  torch::optim::AdamW optimizer(params,
                                torch::optim::AdamWOptions(o.learning_rate).betas({0.9, 0.99}).weight_decay(0.01));

  const auto start = std::chrono::steady_clock::now();
  auto minutes = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60; };
  auto save = [&](int step) {
    model.save_weights(out, {{"format", "pt"},
                             {"generator", "unibiomed model train"},
                             {"seed", std::to_string(o.seed)},
                             {"steps", std::to_string(step)},
                             {"batch", std::to_string(o.batch)}});
  };
  TrainSummary summary;
  summary.parameters = model.parameter_count();
  double window_loss = 0, window_text = 0, window_bce = 0, window_dice = 0, window_finding = 0;
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
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

    const double data_start = minutes();
    std::vector<Prepared> batch;
    while (static_cast<int>(batch.size()) < o.batch) {
      const Example e = data.next();
      if (!o.families.empty() && std::find(o.families.begin(), o.families.end(), e.family) == o.families.end()) continue;
      batch.push_back(prepare(e, config, tok, tiling, eos, context, seg));
      for (const Example& c : e.companions())
        if (static_cast<int>(batch.size()) < o.batch) batch.push_back(prepare(c, config, tok, tiling, eos, context, seg));
    }
    data_minutes += minutes() - data_start;
    // Data parallel: each worker thread takes a share of the batch with one intra-op thread
    // (these small operators run slower when split further) and returns its gradients, which
    // are summed in worker order, so a run is reproducible for a seed and worker count.
    std::vector<std::vector<Prepared>> shares(static_cast<size_t>(workers));
    for (size_t i = 0; i < batch.size(); ++i) shares[i * shares.size() / batch.size()].push_back(std::move(batch[i]));
    std::vector<std::vector<torch::Tensor>> grads(shares.size());
    std::vector<StepLosses> losses(shares.size());
    std::vector<std::string> errors(shares.size());
    auto work = [&](size_t w) {
      try {
        torch::set_num_threads(1);
        if (shares[w].empty()) return;
        losses[w] = step_loss(model, head, shares[w]);
        const double weight = static_cast<double>(shares[w].size()) / o.batch;
        grads[w] = torch::autograd::grad({losses[w].total * weight}, params, {}, false, false, true);
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
      params[i].mutable_grad() = sum.defined() ? sum : torch::zeros_like(params[i]);
    }
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    optimizer.step();

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
  if (fs::exists(dir / "model.safetensors")) {
    const inference::SafetensorsFile weights(dir / "model.safetensors");
    const auto it = weights.metadata().find("seed");
    if (it != weights.metadata().end() && it->second == std::to_string(o.seed))
      throw std::invalid_argument("evaluation seed " + std::to_string(o.seed) + " is the seed " +
                                  (dir / "model.safetensors").string() +
                                  " was trained with: its phantoms are the training set, not held out; choose "
                                  "another --seed");
  }
  torch::set_num_threads(thread_count(o.threads));
  const auto start = std::chrono::steady_clock::now();
  inference::LoadOptions load;
  load.dtype = o.dtype;
  const auto model = inference::GroundedModel::load(dir, load);
  SyntheticData data(o.seed, o.seed + 1, 2);
  inference::AnswerOptions answer_options;
  answer_options.max_new_tokens = 96;
  answer_options.probability_maps = false;
  EvaluationReport r;
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

std::string EvaluationReport::table() const {
  std::ostringstream s;
  s << "held-out examples: " << examples << " (" << fixed(seconds, 1) << " s)\n";
  s << "segmentation prompts: mean Dice " << fixed(segmentation_dice, 3) << " over " << segmentation_count << "\n";
  for (const auto& [target, v] : dice_by_target)
    s << "  " << std::left << std::setw(24) << target << " Dice " << fixed(v.first, 3) << "  (n=" << v.second << ")\n";
  s << "disease recognition: answer accuracy " << fixed(disease_accuracy, 3) << " over " << disease_count << "\n";
  s << "  Dice of the finding's mask (correct positive answers): " << fixed(finding_dice, 3) << " over " << finding_count
    << "\n";
  s << "answer text exactly as expected, per task family:\n";
  for (const auto& [family, v] : exact_by_family)
    s << "  " << std::left << std::setw(14) << family << fixed(v.first, 3) << "  (n=" << v.second << ")\n";
  return s.str();
}

}  // namespace unibiomed::training
