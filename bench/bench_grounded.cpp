// The whole grounded answer at the release size on CPU, with random weights (a checkpoint
// written by `model make-random --config real`): one 1024x1024 image and one segmentation
// prompt, the time split into vision encoder, prefill, decode, SAM2 image encoder and SAM2
// decoder, for each dtype of --dtypes in the same run; the SAM2 encoder's FLOP/s over the same
// dtype's matmul probe (bench_common.h) measured just before it (target >= 0.5), its time the
// median of --runs after a warm-up; what a second question on the same image saves (the SAM2
// features are kept; the reference re-encodes the image for every [SEG]); peak resident memory
// per phase.
//
//   bench_grounded [--model DIR] [--config real|tiny] [--keep] [--threads N]
//                  [--dtypes auto|float32,bfloat16] [--runs 3] [--decode-tokens 8] [--sam2-only]
//
// Without --model a checkpoint (real: 2.3 GB, bfloat16) is written to a temporary folder and
// removed at the end (unless --keep). Random weights do not produce [SEG] by themselves, so
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
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/bench_common.h"
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
namespace bench = unibiomed::bench;

namespace {

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

// One dtype's figures for the side-by-side table at the end.
struct Figures {
  double sam2_encode = 0, sam2_efficiency = 0, sam2_decode = 0, vision = 0, prefill = 0, decode = 0, total = 0;
  double sam2_peak = 0, peak = 0;
  bool whole = false;
};

}  // namespace

int main(int argc, char** argv) {
  std::string model_arg, kind = "real";
  bool keep = false, sam2_only = false;
  int threads = 0, decode_tokens = 8, runs = 3;
  bench::DtypeChoice dtypes;
  bench::CommandLine cl(
      "bench_grounded",
      "The whole grounded answer (random weights) for one 1024x1024 image and one segmentation prompt, per dtype\n"
      "in one run: vision encoder, prefill, decode, SAM2 image encoder (FLOP/s over the same dtype's matmul\n"
      "probe, target >= 0.5) and decoder; what a second question on the same image saves; peak memory.");
  cl.option("--model", "DIR", "checkpoint folder (default: a random one written to a temporary folder)", model_arg)
      .option(
          "--config", "real|tiny", "size of the random checkpoint written without --model (tiny: a quick check)",
          [&](const std::string& v) {
            if (v != "real" && v != "tiny") throw std::invalid_argument("real or tiny");
            kind = v;
          },
          kind)
      .flag("--keep", "keep the random checkpoint", keep)
      .option("--threads", "N", "BLAS threads (0: every core this process may use)", threads)
      .option(
          "--dtypes", "LIST", bench::kDtypesHelp, [&](const std::string& v) { dtypes = bench::choose_dtypes(v); },
          "auto")
      .option("--runs", "N", "timed SAM2 image encodings after one warm-up (median); decoder: the same", runs)
      .option("--decode-tokens", "N", "tokens generated for the decode figure (at least 2)", decode_tokens)
      .flag("--sam2-only", "only the SAM2 part", sam2_only);
  cl.parse(argc, argv);
  if (runs < 1 || decode_tokens < 2 || threads < 0) cl.fail("--runs must be at least 1, --decode-tokens at least 2");
  if (dtypes.dtypes.empty()) dtypes = bench::choose_dtypes("auto");

  threads = ib::configure_cpu_threads(threads);
  std::printf("bench_grounded: %s\n", ib::describe_cpu_runtime().c_str());
  if (!dtypes.note.empty()) std::printf("%s\n", dtypes.note.c_str());

  fs::path dir = model_arg;
  bool remove_dir = false;
  if (dir.empty()) {
    dir = fs::temp_directory_path() / ("unibiomed-bench-" + kind + "-" + std::to_string(::getpid()));
    ib::RandomCheckpointOptions o;
    o.kind = kind;
    o.seed = 1;
    const bench::Stopwatch sw;
    const auto s = ib::write_random_checkpoint(dir, o);
    std::printf("random %s checkpoint: %lld tensors, %.3f B parameters, %.2f GB written in %.1f s to %s\n",
                kind.c_str(), static_cast<long long>(s.tensors), static_cast<double>(s.parameters) / 1e9,
                static_cast<double>(s.bytes) / 1e9, sw.wall(), dir.c_str());
    remove_dir = !keep;
  }
  const ib::ModelConfig config = ib::ModelConfig::load(dir / "config.json");
  const int side = 1024;
  const ib::RgbImage image = test_image(side);
  const std::string question = "<image>Please segment liver in CT.";
  c10::InferenceMode mode;
  std::vector<Figures> figures;

  for (const auto& dtype : dtypes.dtypes) {
    Figures f;
    std::printf("\n== %s ==\n", dtype.c_str());
    // ---- SAM2 with its own FLOP count (the components GroundedModel uses) ----
    std::printf("SAM2 (Hiera image encoder, prompt encoder + mask decoder), image %dx%d, %s:\n", side, side,
                dtype.c_str());
    {
      // The tensor memory cache still holds the blocks of the previous dtype's models: freed so
      // that this dtype's peak is its own.
      ib::release_cpu_tensor_cache();
      const bool resets = bench::reset_peak_memory();
      ib::Weights weights(ib::Checkpoint::open(dir), ib::ComputeOptions::from_strings("cpu", dtype));
      ib::Sam2ImageEncoder encoder(weights, config.grounding);
      ib::Sam2MaskDecoder decoder(weights, config.grounding);
      ib::LanguagePromptProjector fcs(weights, config.llm.hidden_size, config.grounding.neck.d_model);
      const torch::Tensor pixels = ib::sam2_pixel_values(image, config.grounding.image_size).unsqueeze(0);
      encoder.encode(pixels);  // warm-up: first touch of weights and allocator
      const bench::MatmulProbe mm = bench::matmul_probe(dtype);
      std::printf("  %s\n", mm.describe().c_str());
      const bench::Stopwatch sw;
      f.sam2_encode = bench::median_seconds([&] { encoder.encode(pixels); }, 0, runs);
      const double cpu_share = sw.cpu_share(threads);
      const double sam2_flops = encoder.flops_per_image();
      f.sam2_efficiency = sam2_flops / f.sam2_encode / 1e9 / mm.gflops;
      char buf[240];
      std::snprintf(buf, sizeof buf, "%.0f GFLOP -> %.1f GFLOP/s = %.2f of matmul %.1f GFLOP/s (target >= 0.5); cpu share %.2f",
                    sam2_flops / 1e9, sam2_flops / f.sam2_encode / 1e9, f.sam2_efficiency, mm.gflops, cpu_share);
      line(("image encoder (median of " + std::to_string(runs) + ")").c_str(), f.sam2_encode, buf);
      const auto features = encoder.encode(pixels);
      const torch::Tensor hidden = torch::randn({1, config.llm.hidden_size});
      f.sam2_decode = bench::median_seconds(
          [&] {
            const auto out = decoder.decode(features, fcs(hidden));
            const auto logits = decoder.upsample(out.best_low_res, side, side);
            (void)(torch::sigmoid(logits) > 0.5).sum().item<int64_t>();
          },
          1, runs);
      line(("decoder per [SEG] (median of " + std::to_string(runs) + ")").c_str(), f.sam2_decode,
           "text_hidden_fcs, prompt encoder, two-way transformer, masks, upsample");
      f.sam2_peak = bench::status_mib("VmHWM:");
      std::printf("  peak resident memory (SAM2 + its %s weights): %.0f MiB%s\n", dtype.c_str(), f.sam2_peak,
                  resets ? "" : " (of the process: VmHWM reset refused)");
      std::printf("  [SEG] on an image already encoded: %.2f s instead of %.2f s (the reference re-encodes: saves %.2f "
                  "s per [SEG] after the first)\n",
                  f.sam2_decode, f.sam2_encode + f.sam2_decode, f.sam2_encode);
    }
    if (sam2_only) {
      figures.push_back(f);
      continue;
    }

    // ---- The whole model through the public API (each stage once) ----
    std::printf("GroundedModel (the API the pipeline uses), %s, same image, question \"%s\", each stage once:\n",
                dtype.c_str(), question.c_str());
    ib::release_cpu_tensor_cache();  // the SAM2 part's freed blocks
    bench::reset_peak_memory();
    ib::LoadOptions load_options;
    load_options.dtype = dtype;
    bench::Stopwatch sw;
    auto model = ib::GroundedModel::load(dir, load_options);
    line(("load (checkpoint -> " + dtype + ")").c_str(), sw.wall(),
         "resident " + std::to_string(static_cast<int>(bench::status_mib("VmRSS:"))) + " MiB");

    bench::reset_peak_memory();
    sw = bench::Stopwatch();
    auto encoded = model->encode(image);
    f.vision = sw.wall();
    line("vision encoder", f.vision,
         std::to_string(encoded->tiles()) + " tiles of 448; peak " +
             std::to_string(static_cast<int>(bench::status_mib("VmHWM:"))) + " MiB");

    ib::AnswerOptions one;
    one.max_new_tokens = 1;
    bench::reset_peak_memory();
    sw = bench::Stopwatch();
    (void)model->answer(*encoded, question, one);
    f.prefill = sw.wall();
    const int prompt_tokens = encoded->tiles() * 256 + 20;  // approximate, for the rate only
    line("prefill (+ first token)", f.prefill,
         "~" + std::to_string(prompt_tokens) + " tokens; peak " +
             std::to_string(static_cast<int>(bench::status_mib("VmHWM:"))) + " MiB");

    ib::AnswerOptions many;
    many.max_new_tokens = decode_tokens;
    sw = bench::Stopwatch();
    auto an = model->answer(*encoded, question, many);
    const double gen_s = sw.wall();
    f.decode = (gen_s - f.prefill) / std::max<double>(1, static_cast<double>(an.ids.size()) - 1);
    line("decode", f.decode,
         "per token, mean over the answer (" + std::to_string(an.ids.size()) + " generated, stop " + an.stop_reason +
             ")");

    bench::reset_peak_memory();
    sw = bench::Stopwatch();
    model->encode_grounding({encoded});
    const double sam2_api_s = sw.wall();
    line("SAM2 image encoder (first [SEG])", sam2_api_s,
         "peak " + std::to_string(static_cast<int>(bench::status_mib("VmHWM:"))) + " MiB");
    sw = bench::Stopwatch();
    model->encode_grounding({encoded});
    line("SAM2 image encoder (next [SEG]s)", sw.wall(), "features kept with the encoded image");
    line("SAM2 decoder per [SEG]", f.sam2_decode, "(measured above)");

    f.total = f.vision + f.prefill + f.decode * 19 + sam2_api_s + f.sam2_decode;
    std::printf("\n  one answer of 20 tokens with one [SEG]: %.1f s = vision %.0f%%, prefill %.0f%%, decode %.0f%%, "
                "SAM2 encoder %.0f%%, SAM2 decoder %.0f%%\n",
                f.total, 100 * f.vision / f.total, 100 * f.prefill / f.total, 100 * f.decode * 19 / f.total,
                100 * sam2_api_s / f.total, 100 * f.sam2_decode / f.total);
    std::printf("  second question on the same image: %.1f s (vision and SAM2 encoders skipped: %.1f s saved)\n",
                f.total - f.vision - sam2_api_s, f.vision + sam2_api_s);
    f.peak = bench::status_mib("VmHWM:");
    std::printf("  peak resident memory of the process: %.0f MiB (since the last reset)\n", f.peak);
    f.whole = true;
    model.reset();
    figures.push_back(f);
  }

  if (figures.size() > 1) {
    std::printf("\nside by side:\n%-34s", "");
    for (const auto& d : dtypes.dtypes) std::printf(" | %-16s", d.c_str());
    std::printf("\n");
    auto row = [&](const char* name, auto get) {
      std::printf("%-34s", name);
      for (const auto& f : figures) std::printf(" | %-16s", get(f).c_str());
      std::printf("\n");
    };
    auto fmt = [](const char* format, double v) {
      char buf[64];
      std::snprintf(buf, sizeof buf, format, v);
      return std::string(buf);
    };
    row("SAM2 image encoder", [&](const Figures& f) { return fmt("%.2f s", f.sam2_encode); });
    row("  efficiency (same-dtype matmul)", [&](const Figures& f) { return fmt("%.2f", f.sam2_efficiency); });
    row("SAM2 decoder per [SEG]", [&](const Figures& f) { return fmt("%.2f s", f.sam2_decode); });
    row("SAM2 peak", [&](const Figures& f) { return fmt("%.0f MiB", f.sam2_peak); });
    if (!sam2_only) {
      row("vision encoder", [&](const Figures& f) { return fmt("%.2f s", f.vision); });
      row("prefill (+ first token)", [&](const Figures& f) { return fmt("%.2f s", f.prefill); });
      row("decode per token", [&](const Figures& f) { return fmt("%.3f s", f.decode); });
      row("answer of 20 tokens with one [SEG]", [&](const Figures& f) { return fmt("%.1f s", f.total); });
    }
  }
  if (remove_dir) fs::remove_all(dir);
  return 0;
}
