// The whole grounded answer at the release size on CPU, with random weights (a checkpoint
// written by `model make-random --config real`): one 1024x1024 image and one segmentation
// prompt, the time split into vision encoder, prefill, decode, SAM2 image encoder and SAM2
// decoder; the SAM2 encoder's FLOP/s over the matmul throughput measured in the same run
// (target >= 0.5); what a second question on the same image saves (the SAM2 features are kept;
// the reference re-encodes the image for every [SEG]); peak resident memory per phase.
//
//   bench_grounded [--model DIR] [--keep] [--threads N] [--decode-tokens 8] [--sam2-only]
//
// Without --model a real-size checkpoint (2.3 GB, bfloat16) is written to a temporary folder
// and removed at the end (unless --keep). Random weights do not produce [SEG] by themselves, so
// the [SEG] part is driven directly: the SAM2 decoder gets text_hidden_fcs of a hidden state.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "inference/grounded_model.h"
#include "inference/image_preprocess.h"
#include "inference/model_config.h"
#include "inference/random_checkpoint.h"
#include "inference/runtime.h"
#include "inference/sam2_image_encoder.h"
#include "inference/sam2_mask_decoder.h"
#include "inference/weights.h"

namespace ib = unibiomed::inference;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// VmHWM / VmRSS of this process in MB; reset_peak() starts a new peak (Linux clear_refs 5).
double status_mb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::atof(line.c_str() + std::strlen(key)) / 1024.0;
  return 0;
}
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

// Best of a few float32 GEMMs of the SAM2 stage-3 shapes (4096 tokens x 576 -> 2304): what the
// BLAS delivers right now.
double matmul_gflops() {
  torch::NoGradGuard g;
  auto a = torch::randn({4096, 576}), w = torch::randn({2304, 576}), o = torch::empty({4096, 2304});
  auto b = torch::randn({4096, 2304}), w2 = torch::randn({576, 2304}), o2 = torch::empty({4096, 576});
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    at::mm_out(o, a, w.t());
    at::mm_out(o2, b, w2.t());
    best = std::max(best, 2.0 * 2 * 4096.0 * 576 * 2304 / since(t0) / 1e9);
  }
  return best;
}

ib::RgbImage test_image(int side) {
  ib::RgbImage im(side, side);
  for (int y = 0; y < side; ++y)
    for (int x = 0; x < side; ++x) {
      uint8_t* p = im.row(y) + 3 * x;
      const int d = (x - side / 2) * (x - side / 2) + (y - side / 3) * (y - side / 3);
      p[0] = static_cast<uint8_t>(d < side * side / 16 ? 200 : (x * 7 + y * 3) % 64);
      p[1] = static_cast<uint8_t>(p[0] * 3 / 4);
      p[2] = static_cast<uint8_t>((x ^ y) & 31);
    }
  return im;
}

void line(const char* what, double secs, const std::string& extra = "") {
  std::printf("  %-34s %8.2f s  %s\n", what, secs, extra.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_arg;
  bool keep = false, sam2_only = false;
  int threads = 0, decode_tokens = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model_arg = next();
    else if (a == "--keep") keep = true;
    else if (a == "--sam2-only") sam2_only = true;
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--decode-tokens") decode_tokens = std::max(2, std::stoi(next()));
    else {
      std::fprintf(stderr, "usage: bench_grounded [--model DIR] [--keep] [--threads N] [--decode-tokens N] [--sam2-only]\n");
      return 2;
    }
  }
  ib::configure_cpu_threads(threads);
  std::printf("bench_grounded: %s\n", ib::describe_cpu_runtime().c_str());

  fs::path dir = model_arg;
  bool remove_dir = false;
  if (dir.empty()) {
    dir = fs::temp_directory_path() / ("unibiomed-bench-real-" + std::to_string(::getpid()));
    ib::RandomCheckpointOptions o;
    o.kind = "real";
    o.seed = 1;
    auto t0 = Clock::now();
    const auto s = ib::write_random_checkpoint(dir, o);
    std::printf("random real checkpoint: %lld tensors, %.3f B parameters, %.2f GB (bf16) written in %.1f s to %s\n",
                static_cast<long long>(s.tensors), static_cast<double>(s.parameters) / 1e9,
                static_cast<double>(s.bytes) / 1e9, since(t0), dir.c_str());
    remove_dir = !keep;
  }
  const ib::ModelConfig config = ib::ModelConfig::load(dir / "config.json");
  const int side = 1024;
  const ib::RgbImage image = test_image(side);
  const std::string question = "<image>Please segment liver in CT.";
  c10::InferenceMode mode;

  double gemm_before = matmul_gflops();
  std::printf("matmul throughput (float32, same run): %.1f GFLOP/s\n\n", gemm_before);

  // ---- SAM2 with its own FLOP count (the components GroundedModel uses) ----
  std::printf("SAM2 (Hiera-L image encoder, prompt encoder + mask decoder), image %dx%d:\n", side, side);
  double sam2_encode_s = 0, sam2_decode_s = 0, sam2_flops = 0, sam2_peak = 0;
  {
    reset_peak();
    ib::Weights weights(ib::Checkpoint::open(dir), ib::ComputeOptions{});
    ib::Sam2ImageEncoder encoder(weights, config.grounding);
    ib::Sam2MaskDecoder decoder(weights, config.grounding);
    ib::LanguagePromptProjector fcs(weights, config.llm.hidden_size, config.grounding.neck.d_model);
    const torch::Tensor pixels = ib::sam2_pixel_values(image, config.grounding.image_size).unsqueeze(0);
    encoder.encode(pixels);  // warm-up: first-touch of weights and allocator
    double best = 1e30, cpu = 0;
    for (int rep = 0; rep < 2; ++rep) {
      const double c0 = cpu_seconds();
      auto t0 = Clock::now();
      encoder.encode(pixels);
      const double t = since(t0);
      if (t < best) {
        best = t;
        cpu = cpu_seconds() - c0;
      }
    }
    sam2_encode_s = best;
    sam2_flops = encoder.flops_per_image();
    const double gemm_after = matmul_gflops();
    const double gemm = std::max(gemm_before, gemm_after);
    char buf[200];
    std::snprintf(buf, sizeof buf, "%.0f GFLOP -> %.1f GFLOP/s = %.2f of matmul %.1f GFLOP/s (target >= 0.5); cpu %.1f s",
                  sam2_flops / 1e9, sam2_flops / best / 1e9, sam2_flops / best / 1e9 / gemm, gemm, cpu);
    line("image encoder (best of 2)", best, buf);
    const auto features = encoder.encode(pixels);
    const torch::Tensor hidden = torch::randn({1, config.llm.hidden_size});
    auto t0 = Clock::now();
    for (int rep = 0; rep < 3; ++rep) {
      const auto out = decoder.decode(features, fcs(hidden));
      const auto logits = decoder.upsample(out.best_low_res, side, side);
      (torch::sigmoid(logits) > 0.5).sum().item<int64_t>();
    }
    sam2_decode_s = since(t0) / 3;
    line("decoder per [SEG] (+ upsample)", sam2_decode_s, "text_hidden_fcs, prompt encoder, two-way transformer, masks");
    sam2_peak = status_mb("VmHWM:");
    std::printf("  peak resident memory (SAM2 + its float32 weights): %.0f MB\n", sam2_peak);
    std::printf("  [SEG] on an image already encoded: %.2f s instead of %.2f s (the reference re-encodes: saves %.2f s "
                "per [SEG] after the first)\n\n",
                sam2_decode_s, sam2_encode_s + sam2_decode_s, sam2_encode_s);
  }
  if (sam2_only) {
    if (remove_dir) fs::remove_all(dir);
    return 0;
  }

  // ---- The whole model through the public API ----
  std::printf("GroundedModel (the API the pipeline uses), same image, question \"%s\":\n", question.c_str());
  reset_peak();
  auto t0 = Clock::now();
  auto model = ib::GroundedModel::load(dir);
  line("load (bf16 -> float32)", since(t0),
       "resident " + std::to_string(static_cast<int>(status_mb("VmRSS:"))) + " MB");

  reset_peak();
  t0 = Clock::now();
  auto encoded = model->encode(image);
  const double vision_s = since(t0);
  line("vision encoder", vision_s,
       std::to_string(encoded->tiles()) + " tiles of 448; peak " + std::to_string(static_cast<int>(status_mb("VmHWM:"))) + " MB");

  ib::AnswerOptions one;
  one.max_new_tokens = 1;
  reset_peak();
  t0 = Clock::now();
  auto a1 = model->answer(*encoded, question, one);
  const double prefill_s = since(t0);
  const int prompt_tokens = encoded->tiles() * 256 + 20;  // approximate, for the rate only
  line("prefill (+ first token)", prefill_s,
       "~" + std::to_string(prompt_tokens) + " tokens; peak " + std::to_string(static_cast<int>(status_mb("VmHWM:"))) + " MB");

  ib::AnswerOptions many;
  many.max_new_tokens = decode_tokens;
  t0 = Clock::now();
  auto an = model->answer(*encoded, question, many);
  const double gen_s = since(t0);
  const double per_token = (gen_s - prefill_s) / std::max<double>(1, static_cast<double>(an.ids.size()) - 1);
  line("decode", per_token, "per token (" + std::to_string(an.ids.size()) + " generated, stop " + an.stop_reason + ")");

  reset_peak();
  t0 = Clock::now();
  model->encode_grounding({encoded});
  const double sam2_api_s = since(t0);
  line("SAM2 image encoder (first [SEG])", sam2_api_s,
       "peak " + std::to_string(static_cast<int>(status_mb("VmHWM:"))) + " MB");
  t0 = Clock::now();
  model->encode_grounding({encoded});
  line("SAM2 image encoder (next [SEG]s)", since(t0), "features kept with the encoded image");
  line("SAM2 decoder per [SEG]", sam2_decode_s, "(measured above)");

  const double total = vision_s + prefill_s + per_token * 19 + sam2_api_s + sam2_decode_s;
  std::printf("\n  one answer of 20 tokens with one [SEG]: %.1f s = vision %.0f%%, prefill %.0f%%, decode %.0f%%, "
              "SAM2 encoder %.0f%%, SAM2 decoder %.0f%%\n",
              total, 100 * vision_s / total, 100 * prefill_s / total, 100 * per_token * 19 / total,
              100 * sam2_api_s / total, 100 * sam2_decode_s / total);
  std::printf("  second question on the same image: %.1f s (vision and SAM2 encoders skipped: %.1f s saved)\n",
              total - vision_s - sam2_api_s, vision_s + sam2_api_s);
  std::printf("  peak resident memory of the process: %.0f MB (since the last reset)\n", status_mb("VmHWM:"));
  (void)a1;
  model.reset();
  if (remove_dir) fs::remove_all(dir);
  return 0;
}
