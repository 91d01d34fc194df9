// How far bfloat16 on a device (a GPU) lands from float32 on the CPU, for whole grounded
// answers: for each of a few 1024x1024 images the model runs once in float32 on the CPU and once
// in bfloat16 on --device, block by block as GroundedModel chains them (InternViT tiles, prompt
// with the image tokens spliced in, greedy decoding, text_hidden_fcs of the [SEG] state, SAM2
// image encoder and mask decoder, the mask at the image's size), and prints per image:
//   - the vision features (image tokens): relative L2 and largest error over the largest value;
//   - the language model's [SEG] hidden state: the same;
//   - SAM2's image embedding: the same;
//   - the answer's token ids: equal or not;
//   - the mask (logit > 0): IoU and the fraction of pixels that differ.
// Each figure is also a line "RESULT name=... case=... value=..." (grep '^RESULT ').
//
//   bench_agreement [--model DIR] [--config real|tiny] [--device cuda] [--images 4] [--keep]
//
// Without --model a random checkpoint of --config is written to a temporary folder with the
// make-random answer fixture "Sure, [SEG]." (random weights never say [SEG] by themselves), so
// every image gets a mask; removed at the end unless --keep. The images are seeded synthetic
// scenes of different kinds (a CT-like slice, an MR-like slice, a colour photograph-like and a
// stained-tissue-like image). On a CPU without bfloat16 instructions the real-size bfloat16 run
// is slow (minutes per image); --config tiny is the quick smoke run.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/bench_common.h"
#include "inference/device.h"
#include "inference/generation.h"
#include "inference/grounded_model.h"
#include "inference/image_preprocess.h"
#include "inference/image_tiling.h"
#include "inference/model_config.h"
#include "inference/prompt.h"
#include "inference/qwen2.h"
#include "inference/random_checkpoint.h"
#include "inference/runtime.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/splice.h"
#include "inference/tokenizer.h"
#include "inference/vision_encoder.h"
#include "inference/weights.h"

namespace ib = unibiomed::inference;
namespace fs = std::filesystem;
namespace bench = unibiomed::bench;

namespace {

// Seeded synthetic images of different kinds, side x side.
ib::RgbImage scene(int kind, int side, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  ib::RgbImage im(side, side);
  const double c = side / 2.0;
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x) {
      const double dx = (x - c) / side, dy = (y - c) / side, r = std::sqrt(dx * dx + dy * dy);
      double v[3] = {0, 0, 0};
      switch (kind) {
        case 0: {  // CT-like: a body ellipse, an organ, a bright spine
          const bool body = dx * dx / 0.19 + dy * dy / 0.12 < 1;
          const bool organ = (dx + 0.12) * (dx + 0.12) / 0.02 + (dy + 0.02) * (dy + 0.02) / 0.012 < 1;
          const bool bone = (dx * dx + (dy - 0.22) * (dy - 0.22)) < 0.002;
          const double g = bone ? 235 : organ ? 150 : body ? 105 : 5;
          v[0] = v[1] = v[2] = g + 6 * noise(rng);
          break;
        }
        case 1: {  // MR-like: a head with a ring and a lesion
          const double g = r < 0.36 ? (r > 0.32 ? 200 : 90 + 40 * std::cos(30 * r)) : 10;
          const bool lesion = (dx - 0.1) * (dx - 0.1) + (dy + 0.08) * (dy + 0.08) < 0.004;
          v[0] = v[1] = v[2] = (lesion ? 230 : g) + 8 * noise(rng);
          break;
        }
        case 2: {  // colour photograph-like: a reddish lesion on skin
          const bool lesion = r < 0.18 + 0.03 * std::sin(7 * std::atan2(dy, dx));
          v[0] = lesion ? 120 : 215;
          v[1] = lesion ? 60 : 170;
          v[2] = lesion ? 55 : 150;
          for (double& t : v) t += 5 * noise(rng);
          break;
        }
        default: {  // stained tissue-like: pink stroma with purple nuclei
          const double n = std::sin(x * 0.21 + 3 * std::sin(y * 0.05)) * std::sin(y * 0.19 + 2 * std::sin(x * 0.07));
          const bool nucleus = n > 0.75;
          v[0] = nucleus ? 90 : 225;
          v[1] = nucleus ? 50 : 160;
          v[2] = nucleus ? 150 : 200;
          for (double& t : v) t += 7 * noise(rng);
          break;
        }
      }
      uint8_t* p = im.row(y) + 3 * x;
      for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::clamp(v[k], 0.0, 255.0));
    }
  return im;
}
const char* kKinds[] = {"ct", "mr", "photo", "tissue"};

// One dtype on one device: the blocks of the grounded answer.
struct Pipeline {
  ib::ModelConfig config;
  ib::ComputeOptions compute;
  std::unique_ptr<ib::Tokenizer> tokenizer;
  std::unique_ptr<ib::VisionEncoder> vision;
  std::unique_ptr<ib::Qwen2Model> llm;
  std::unique_ptr<ib::LanguagePromptProjector> seg_head;
  std::unique_ptr<ib::Sam2ImageEncoder> sam_encoder;
  std::unique_ptr<ib::Sam2MaskDecoder> sam_decoder;
  ib::TilingOptions tiling;
  std::vector<std::string> stop_words;

  Pipeline(const fs::path& dir, ib::ComputeOptions options) : compute(options) {
    config = ib::ModelConfig::load(dir / "config.json");
    tokenizer = std::make_unique<ib::Tokenizer>(ib::Tokenizer::load(dir));
    tiling = ib::TilingOptions::from_config(config);
    stop_words = ib::chat_template(config.template_name).stop_words;
    ib::Weights w(ib::Checkpoint::open(dir), compute);
    vision = std::make_unique<ib::VisionEncoder>(w, config);
    llm = std::make_unique<ib::Qwen2Model>(w, config.llm);
    seg_head = std::make_unique<ib::LanguagePromptProjector>(w, config.llm.hidden_size, config.grounding.neck.d_model);
    sam_encoder = std::make_unique<ib::Sam2ImageEncoder>(w, config.grounding);
    sam_decoder = std::make_unique<ib::Sam2MaskDecoder>(w, config.grounding);
  }

  struct Out {
    torch::Tensor image_tokens, seg_hidden, sam_embedding, mask_logits;  // CPU float32
    std::vector<int64_t> ids;
    std::string text;
    double seconds = 0;
  };

  Out answer(const ib::RgbImage& image, const std::string& question, int max_new_tokens) const {
    c10::InferenceMode mode;
    if (compute.device.is_cpu()) ib::use_cpu_threads_for(compute.dtype == torch::kBFloat16);  // as GroundedModel
    Out o;
    const double t0 = bench::steady_seconds();
    const ib::InternVlInput input = ib::preprocess_internvl({image}, tiling);
    const torch::Tensor tokens = vision->encode(input.pixel_values);
    const std::string prompt = ib::build_prompt(ib::question_with_image(question), input.tiles_per_image[0],
                                                static_cast<int>(vision->tokens_per_tile()), config.template_name);
    const std::vector<int64_t> ids = tokenizer->encode(prompt);
    const torch::Tensor text = llm->embed(torch::tensor(ids, torch::kInt64).view({1, -1}))[0];
    const torch::Tensor embeds =
        ib::splice_image_embeddings(text, ids, tokenizer->token_id(ib::kImageContextToken), tokens);
    ib::GenerationOptions g;
    g.max_new_tokens = max_new_tokens;
    g.stop_words = stop_words;
    const auto r = ib::generate_greedy(*llm, *tokenizer, embeds.unsqueeze(0), g)[0];
    o.ids = r.ids;
    o.text = r.text;
    o.image_tokens = tokens.to(torch::kCPU, torch::kFloat32);
    if (r.seg_hidden_states.size(0) > 0) {
      o.seg_hidden = r.seg_hidden_states[0].to(torch::kCPU, torch::kFloat32);
      const auto lang = (*seg_head)(r.seg_hidden_states.narrow(0, 0, 1));
      const auto pixels = ib::sam2_pixel_values(image, sam_encoder->image_size(), tiling.max_pixels).unsqueeze(0);
      const auto f = sam_encoder->encode(pixels);
      o.sam_embedding = f.image_embedding.to(torch::kCPU, torch::kFloat32);
      const auto d = sam_decoder->decode(f, lang);
      o.mask_logits = sam_decoder->upsample(d.best_low_res, image.height, image.width).to(torch::kCPU, torch::kFloat32);
    }
    ib::synchronize(compute.device);
    o.seconds = bench::steady_seconds() - t0;
    return o;
  }
};

struct Errors {
  double rel_l2 = NAN, max_rel = NAN;
};
Errors compare(const torch::Tensor& low, const torch::Tensor& ref) {
  Errors e;
  if (!low.defined() || !ref.defined() || low.sizes() != ref.sizes()) return e;
  const auto a = low.to(torch::kFloat64), b = ref.to(torch::kFloat64);
  e.rel_l2 = ((a - b).norm() / b.norm()).item<double>();
  e.max_rel = ((a - b).abs().max() / b.abs().max()).item<double>();
  return e;
}

void result(const std::string& name, const std::string& image, double value, const std::string& device) {
  bench::ResultLine(name).set("case", image).set("device", device).set("dtype", "bfloat16").set("value", value).print();
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_arg, kind = "real", device = "cpu", question = "Please segment the main finding in this image.";
  bool keep = false;
  int images = 4, threads = 0, max_new_tokens = 32;
  bench::CommandLine cl(
      "bench_agreement",
      "bfloat16 on --device against float32 on the CPU for whole grounded answers on a few 1024x1024 images:\n"
      "vision features, [SEG] hidden state and SAM2 features (relative L2, largest error), token ids, and\n"
      "the masks (IoU, pixels that differ).");
  cl.option("--model", "DIR", "checkpoint folder (default: a random one with the answer fixture \"Sure, [SEG].\")",
            model_arg)
      .config_option(kind)
      .option("--device", "D", "where the bfloat16 run goes: cpu, cuda or cuda:N", device)
      .option("--images", "N", "images (1-4: ct, mr, photo, tissue)", images)
      .option("--question", "TEXT", "the question asked on every image", question)
      .option("--max-new-tokens", "N", "generation limit per answer", max_new_tokens)
      .option("--threads", "N", "CPU threads (0: every core this process may use)", threads)
      .flag("--keep", "keep the random checkpoint", keep);
  cl.parse(argc, argv);
  if (images < 1 || images > 4) cl.fail("--images must be 1 to 4");
  if (max_new_tokens < 1 || threads < 0) cl.fail("--max-new-tokens must be at least 1, --threads not negative");

  try {
    threads = ib::configure_cpu_threads(threads);
    const ib::ComputeOptions low = ib::ComputeOptions::from_strings(device, "bfloat16");
    const ib::ComputeOptions ref = ib::ComputeOptions::from_strings("cpu", "float32");
    std::printf("bench_agreement: %s\n  bfloat16 on %s; float32 on the CPU\n", ib::describe_cpu_runtime().c_str(),
                ib::describe_device(low.device).c_str());

    fs::path dir = model_arg;
    bool remove_dir = false;
    if (dir.empty()) {
      dir = fs::temp_directory_path() / ("unibiomed-agreement-" + kind + "-" + std::to_string(::getpid()));
      ib::RandomCheckpointOptions o;
      o.kind = kind;
      o.seed = 1;
      o.fixed_answer = "Sure, [SEG].";
      const double t0 = bench::steady_seconds();
      const auto s = ib::write_random_checkpoint(dir, o);
      std::printf("random %s checkpoint with the answer fixture: %.3f B parameters, written in %.1f s to %s\n",
                  kind.c_str(), static_cast<double>(s.parameters) / 1e9, bench::steady_seconds() - t0, dir.c_str());
      remove_dir = !keep;
    }

    double t0 = bench::steady_seconds();
    const Pipeline f32(dir, ref);
    std::printf("float32 model on the CPU loaded in %.1f s\n", bench::steady_seconds() - t0);
    t0 = bench::steady_seconds();
    const Pipeline bf16(dir, low);
    std::printf("bfloat16 model on %s loaded in %.1f s\n", low.device.str().c_str(), bench::steady_seconds() - t0);

    const int side = 1024;
    int failures = 0;
    for (int i = 0; i < images; ++i) {
      const std::string name = kKinds[i];
      const ib::RgbImage image = scene(i, side, 1000u + static_cast<uint32_t>(i));
      const auto a = f32.answer(image, question, max_new_tokens);
      const auto b = bf16.answer(image, question, max_new_tokens);
      std::printf("\n%s (%dx%d): float32 %.1f s, bfloat16 %.1f s\n  float32 answer:  %s\n  bfloat16 answer: %s\n",
                  name.c_str(), side, side, a.seconds, b.seconds, a.text.c_str(), b.text.c_str());
      const bool same_ids = a.ids == b.ids;
      const Errors vis = compare(b.image_tokens, a.image_tokens);
      std::printf("  %-28s relative L2 %.4g, max error %.4g of max |f32|\n", "vision features", vis.rel_l2, vis.max_rel);
      result("vision_rel_l2", name, vis.rel_l2, device);
      result("vision_max_rel_error", name, vis.max_rel, device);
      result("ids_equal", name, same_ids ? 1.0 : 0.0, device);
      std::printf("  %-28s %s\n", "token ids", same_ids ? "equal" : "differ");
      if (!a.seg_hidden.defined() || !b.seg_hidden.defined()) {
        std::printf("  no [SEG] in %s answer: no mask to compare\n", a.seg_hidden.defined() ? "the bfloat16" : "the float32");
        ++failures;
        continue;
      }
      const Errors seg = compare(b.seg_hidden, a.seg_hidden);
      const Errors sam = compare(b.sam_embedding, a.sam_embedding);
      std::printf("  %-28s relative L2 %.4g, max error %.4g of max |f32|\n", "[SEG] hidden state", seg.rel_l2, seg.max_rel);
      std::printf("  %-28s relative L2 %.4g, max error %.4g of max |f32|\n", "SAM2 image embedding", sam.rel_l2, sam.max_rel);
      result("seg_hidden_rel_l2", name, seg.rel_l2, device);
      result("seg_hidden_max_rel_error", name, seg.max_rel, device);
      result("sam2_features_rel_l2", name, sam.rel_l2, device);
      result("sam2_features_max_rel_error", name, sam.max_rel, device);
      const auto ma = a.mask_logits > 0, mb = b.mask_logits > 0;
      const double inter = (ma & mb).sum().item<double>(), uni = (ma | mb).sum().item<double>();
      const double iou = uni > 0 ? inter / uni : 1.0;
      const double differ = ma.ne(mb).sum().item<double>() / static_cast<double>(ma.numel());
      std::printf("  %-28s IoU %.4f, %.4g of the pixels differ (float32 area %.0f, bfloat16 %.0f)\n", "mask", iou, differ,
                  ma.sum().item<double>(), mb.sum().item<double>());
      result("mask_iou", name, iou, device);
      result("mask_pixels_differ", name, differ, device);
    }
    if (remove_dir) fs::remove_all(dir);
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_agreement: %s\n", e.what());
    return 1;
  }
}
