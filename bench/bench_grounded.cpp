// The whole grounded answer at the release size, with random weights (a checkpoint written by
// `model make-random --config real --answer "Sure, [SEG]."`: its language model answers that to
// any question, so every answer reaches SAM2), on the CPU or a GPU (--device), for each dtype of
// --dtypes in the same run:
//   - the SAM2 image encoder at each --sam2-batch (frames per second; FLOP/s over the same dtype's
//     matmul probe on the same device measured just before it, target >= 0.5), its time the median
//     of --runs after a warm-up, and the SAM2 decoder per [SEG];
//   - through the public API (GroundedModel) each stage once: vision encoder, prefill, SAM2 image
//     encoder, decode; what a second question on the same image saves (the SAM2 features are
//     kept; the reference re-encodes the image for every [SEG]);
//   - the whole answer to one 1024x1024 image with one [SEG], end to end (image in, mask out:
//     preprocessing, vision, prefill, decoding, SAM2 encoder and decoder, the mask at full size),
//     the median of --answer-runs (issue 23's target on a GPU: < 200 ms);
//   - the peak memory of every stage (GPU: tensor bytes; CPU: resident, VmHWM).
// On a GPU every timing waits for the device before the clock is read. Each figure is also a
// RESULT line (bench_common.h).
//
//   bench_grounded [--device cpu|cuda[:N]] [--model DIR] [--config real|tiny] [--keep] [--threads N]
//                  [--dtypes auto|float32,bfloat16] [--runs 3] [--sam2-batch 1] [--answer-runs 1]
//                  [--decode-tokens 8] [--max-new-tokens 32] [--sam2-only]
//
// e.g. on a GPU: bench_grounded --device cuda --sam2-batch 1,8 --runs 10 --answer-runs 20
//      quick check: bench_grounded --config tiny --runs 1
//
// Without --model the checkpoint is written to a temporary folder and removed at the end (unless
// --keep); a --model folder without the fixture may answer without [SEG] (the end-to-end line
// says how many segments its answer had).
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
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/bench_common.h"
#include "bench/bench_device.h"
#include "inference/device.h"
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
  std::printf("  %-34s %9.4f s  %s\n", what, secs, extra.c_str());
  std::fflush(stdout);
}

// One dtype's figures for the side-by-side table at the end.
struct Figures {
  double sam2_encode = 0, sam2_efficiency = 0, sam2_decode = 0, vision = 0, prefill = 0, decode = 0, total = 0;
  double sam2_peak = 0, peak = 0, answer = 0;
  bool whole = false;
};

std::string mib_text(double mib) {
  return std::to_string(static_cast<int>(mib)) + " MiB";
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_arg, kind = "real", dtype_list_arg = "auto";
  bool keep = false, sam2_only = false;
  int threads = 0, decode_tokens = 8, runs = 3, answer_runs = 0, max_new_tokens = 32;
  std::vector<int64_t> sam2_batches;  // empty: 1 on the CPU, 1,8 on a GPU
  c10::Device device(c10::kCPU);
  bench::CommandLine cl(
      "bench_grounded",
      "The whole grounded answer (random weights, the make-random --answer \"Sure, [SEG].\" fixture) for one\n"
      "1024x1024 image and one segmentation prompt, on the CPU or a GPU, per dtype in one run: SAM2 image\n"
      "encoder frames/s at each --sam2-batch (FLOP/s over the same dtype's matmul probe on the device, target\n"
      ">= 0.5) and decoder; vision encoder, prefill, decode; the answer with one [SEG] end to end (median of\n"
      "--answer-runs); what a second question on the same image saves; peak memory per stage (GPU: tensors;\n"
      "CPU: resident). One RESULT line per figure. Quick check: --config tiny --runs 1.");
  cl.option(
        "--device", "cpu|cuda[:N]", bench::kDeviceHelp, [&](const std::string& v) { device = bench::parse_device(v); },
        "cpu")
      .option("--model", "DIR", "checkpoint folder (default: the --answer fixture of --config, written to a temporary folder)",
              model_arg)
      .config_option(kind)
      .flag("--keep", "keep the random checkpoint", keep)
      .option("--threads", "N", "BLAS threads (0: every core this process may use)", threads)
      .option("--dtypes", "LIST", std::string(bench::kDtypesHelp) + "; on cuda auto is bfloat16", dtype_list_arg)
      .option("--runs", "N", "timed SAM2 image encodings per batch after one warm-up (median); decoder: the same", runs)
      .option(
          "--sam2-batch", "LIST", "images per SAM2 image encoder call, one frames/s figure each",
          [&](const std::string& v) { sam2_batches = bench::parse_integer_list(v); }, "1 on cpu, 1,8 on cuda")
      .option("--answer-runs", "N",
              "timed whole answers (image in, mask out), median; on cuda after one untimed answer (0: 1 on cpu, 10 on "
              "cuda)",
              answer_runs)
      .option("--decode-tokens", "N", "tokens generated for the decode figure (at least 2)", decode_tokens)
      .option("--max-new-tokens", "N", "most tokens of the whole answer (the fixture stops after 5 or so)",
              max_new_tokens)
      .flag("--sam2-only", "only the SAM2 part", sam2_only);
  cl.parse(argc, argv);
  if (runs < 1 || decode_tokens < 2 || threads < 0 || answer_runs < 0 || max_new_tokens < 1)
    cl.fail("--runs and --max-new-tokens must be at least 1, --decode-tokens at least 2");
  bench::DtypeChoice dtypes;
  try {
    dtypes = bench::choose_dtypes(dtype_list_arg, device);
  } catch (const std::exception& e) {
    cl.fail("--dtypes: " + std::string(e.what()));
  }
  if (sam2_batches.empty()) sam2_batches = device.is_cpu() ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 8};
  for (int64_t b : sam2_batches)
    if (b < 1 || b > 256) cl.fail("--sam2-batch: every size must be within 1..256");
  if (answer_runs == 0) answer_runs = device.is_cpu() ? 1 : 10;
  const std::string device_text = bench::device_name(device);

  threads = ib::configure_cpu_threads(threads);
  std::printf("bench_grounded: %s\n", ib::describe_cpu_runtime().c_str());
  std::printf("device: %s%s\n", ib::describe_device(device).c_str(),
              device.is_cpu() ? "" : " (every timing ends with a device synchronisation)");
  if (!dtypes.note.empty()) std::printf("%s\n", dtypes.note.c_str());

  fs::path dir = model_arg;
  bool remove_dir = false;
  const std::string fixture = "Sure, [SEG].";
  if (dir.empty()) {
    dir = fs::temp_directory_path() / ("unibiomed-bench-" + kind + "-" + std::to_string(::getpid()));
    ib::RandomCheckpointOptions o;
    o.kind = kind;
    o.seed = 1;
    o.fixed_answer = fixture;
    const bench::Stopwatch sw;
    const auto s = ib::write_random_checkpoint(dir, o);
    std::printf("random %s checkpoint answering \"%s\" (make-random --answer): %lld tensors, %.3f B parameters, %.2f GB "
                "written in %.1f s to %s\n",
                kind.c_str(), fixture.c_str(), static_cast<long long>(s.tensors),
                static_cast<double>(s.parameters) / 1e9, static_cast<double>(s.bytes) / 1e9, sw.wall(), dir.c_str());
    remove_dir = !keep;
  }
  const ib::ModelConfig config = ib::ModelConfig::load(dir / "config.json");
  const int side = 1024;
  const ib::RgbImage image = test_image(side);
  const std::string question = "<image>Please segment liver in CT.";
  c10::InferenceMode mode;
  std::vector<Figures> figures;
  bench::StagePeak stage(device);  // one peak counter per device: reset before each stage

  for (const auto& dtype : dtypes.dtypes) {
    Figures f;
    if (device.is_cpu()) ib::use_cpu_threads_for(dtype == "bfloat16");  // before the probe: its threads
    const auto result = [&](const std::string& name) {
      bench::ResultLine r(name);
      r.set("device", device_text).set("dtype", dtype).set("config", model_arg.empty() ? kind : std::string("model"));
      return r;
    };
    std::printf("\n== %s on %s ==\n", dtype.c_str(), device_text.c_str());
    // ---- SAM2 with its own FLOP count (the components GroundedModel uses) ----
    std::printf("SAM2 (Hiera image encoder, prompt encoder + mask decoder), image %dx%d, %s:\n", side, side,
                dtype.c_str());
    {
      // The tensor memory cache still holds the blocks of the previous dtype's models: freed so
      // that this dtype's peak is its own.
      ib::release_cpu_tensor_cache();
      ib::release_device_cache(device);
      stage.reset();
      const bool resets = stage.resets();
      ib::Weights weights(ib::Checkpoint::open(dir), ib::ComputeOptions::from_strings(device_text, dtype));
      ib::Sam2ImageEncoder encoder(weights, config.grounding);
      ib::Sam2MaskDecoder decoder(weights, config.grounding);
      ib::LanguagePromptProjector fcs(weights, config.llm.hidden_size, config.grounding.neck.d_model);
      const torch::Tensor pixels = ib::sam2_pixel_values(image, config.grounding.image_size).unsqueeze(0);
      const double sam2_flops = encoder.flops_per_image();
      bool first = true;
      for (int64_t b : sam2_batches) {
        // The images already on the device in the compute dtype, so that the figure is the
        // encoder's; one warm-up call of the shape, then --runs timed calls.
        const torch::Tensor batch = pixels.expand({b, pixels.size(1), pixels.size(2), pixels.size(3)})
                                        .contiguous()
                                        .to(weights.options().device, weights.options().dtype);
        const bench::MatmulProbe mm = bench::matmul_probe(device, dtype);  // its operands freed before the reset
        stage.reset();
        encoder.encode(batch);  // warm-up: first touch of weights and allocator
        if (first) std::printf("  %s\n", mm.describe().c_str());
        const bench::Stopwatch sw;
        const double t = bench::median_device_seconds(device, [&] { encoder.encode(batch); }, 0, runs);
        const double cpu_share = sw.cpu_share(threads);
        const double peak = stage.peak_mib();
        const double efficiency = b * sam2_flops / t / 1e9 / mm.gflops;
        if (first || b == 1) {
          f.sam2_encode = t / b;
          f.sam2_efficiency = efficiency;
          f.sam2_peak = peak;
        }
        first = false;
        char buf[320];
        std::snprintf(buf, sizeof buf,
                      "%.1f frames/s; %.0f GFLOP -> %.1f GFLOP/s = %.2f of matmul %.1f GFLOP/s (target >= 0.5); cpu "
                      "share %.2f; %s %.0f MiB",
                      b / t, b * sam2_flops / 1e9, b * sam2_flops / t / 1e9, efficiency, mm.gflops, cpu_share,
                      stage.label(), peak);
        line(("image encoder, batch " + std::to_string(b) + " (median of " + std::to_string(runs) + ")").c_str(), t,
             buf);
        result("sam2_frames_per_s")
            .set("batch", b)
            .set("value", b / t)
            .set("unit", "frames/s")
            .set("seconds_per_call", t)
            .set("efficiency", efficiency)
            .set(stage.field(), peak)
            .print();
      }
      const auto features = encoder.encode(pixels);
      const torch::Tensor hidden = torch::randn({1, config.llm.hidden_size}, torch::TensorOptions().device(device));
      stage.reset();
      f.sam2_decode = bench::median_device_seconds(
          device,
          [&] {
            const auto out = decoder.decode(features, fcs(hidden));
            const auto logits = decoder.upsample(out.best_low_res, side, side);
            (void)(torch::sigmoid(logits) > 0.5).sum().item<int64_t>();
          },
          1, runs);
      const double decoder_peak = stage.peak_mib();
      line(("decoder per [SEG] (median of " + std::to_string(runs) + ")").c_str(), f.sam2_decode,
           "text_hidden_fcs, prompt encoder, two-way transformer, masks, upsample; " + std::string(stage.label()) +
               " " + mib_text(decoder_peak));
      result("sam2_decoder_ms")
          .set("value", f.sam2_decode * 1e3)
          .set("unit", "ms")
          .set(stage.field(), decoder_peak)
          .print();
      std::printf("  %s (SAM2 + its %s weights, batch %lld): %.0f MiB%s\n", stage.label(), dtype.c_str(),
                  static_cast<long long>(sam2_batches.front()), f.sam2_peak,
                  resets ? "" : " (of the process: VmHWM reset refused)");
      std::printf("  [SEG] on an image already encoded: %.3f s instead of %.3f s (the reference re-encodes: saves %.3f "
                  "s per [SEG] after the first)\n",
                  f.sam2_decode, f.sam2_encode + f.sam2_decode, f.sam2_encode);
    }
    if (sam2_only) {
      figures.push_back(f);
      continue;
    }

    // ---- The whole model through the public API (each stage once) ----
    std::printf("GroundedModel (the API the pipeline uses), %s on %s, same image, question \"%s\", each stage once:\n",
                dtype.c_str(), device_text.c_str(), question.c_str());
    ib::release_cpu_tensor_cache();  // the SAM2 part's freed blocks
    ib::release_device_cache(device);
    stage.reset();
    ib::LoadOptions load_options;
    load_options.device = device_text;
    load_options.dtype = dtype;
    bench::Stopwatch sw;
    auto model = ib::GroundedModel::load(dir, load_options);
    ib::synchronize(device);
    line(("load (checkpoint -> " + dtype + ")").c_str(), sw.wall(),
         "resident " + std::to_string(static_cast<int>(bench::status_mib("VmRSS:"))) + " MiB" +
             (stage.gpu() ? "; GPU tensors " + mib_text(stage.current_mib()) : std::string()));
    result("grounded_load_seconds").set("value", sw.wall()).set("unit", "s").set(stage.field(), stage.peak_mib()).print();

    // Each stage timed to the device's end of its work (synchronised), its peak from a reset.
    const auto timed = [&](const std::function<void()>& fn) {
      ib::synchronize(device);
      stage.reset();
      const bench::Stopwatch t;
      fn();
      ib::synchronize(device);
      return t.wall();
    };

    std::shared_ptr<const ib::EncodedImage> encoded;
    f.vision = timed([&] { encoded = model->encode(image); });
    double peak = stage.peak_mib();
    line("vision encoder", f.vision,
         std::to_string(encoded->tiles()) + " tiles of 448; " + stage.label() + " " + mib_text(peak));
    result("grounded_stage_seconds").set("stage", "vision").set("value", f.vision).set("unit", "s").set(stage.field(), peak).print();

    ib::AnswerOptions one;
    one.max_new_tokens = 1;
    f.prefill = timed([&] { (void)model->answer(*encoded, question, one); });
    peak = stage.peak_mib();
    const int prompt_tokens = encoded->tiles() * 256 + 20;  // approximate, for the rate only
    line("prefill (+ first token)", f.prefill,
         "~" + std::to_string(prompt_tokens) + " tokens; " + stage.label() + " " + mib_text(peak));
    result("grounded_stage_seconds").set("stage", "prefill").set("value", f.prefill).set("unit", "s").set(stage.field(), peak).print();

    const double sam2_api_s = timed([&] { model->encode_grounding({encoded}); });
    peak = stage.peak_mib();
    line("SAM2 image encoder (first [SEG])", sam2_api_s, std::string(stage.label()) + " " + mib_text(peak));
    result("grounded_stage_seconds").set("stage", "sam2_encoder").set("value", sam2_api_s).set("unit", "s").set(stage.field(), peak).print();
    const double again = timed([&] { model->encode_grounding({encoded}); });
    line("SAM2 image encoder (next [SEG]s)", again, "features kept with the encoded image");

    // Decoding, with the SAM2 features already kept: the answer's time less its prefill and the
    // SAM2 decoder of each of its [SEG]s, over the tokens after the first.
    ib::AnswerOptions many;
    many.max_new_tokens = decode_tokens;
    ib::GroundedAnswer an;
    const double gen_s = timed([&] { an = model->answer(*encoded, question, many); });
    const double segs = static_cast<double>(an.segments.size());
    f.decode = std::max(0.0, gen_s - f.prefill - segs * f.sam2_decode) /
               std::max<double>(1, static_cast<double>(an.ids.size()) - 1);
    line("decode", f.decode,
         "per token, mean over the answer (" + std::to_string(an.ids.size()) + " generated, stop " + an.stop_reason +
             ", " + std::to_string(an.segments.size()) + " [SEG] decoded, their decoder time taken out)");
    result("grounded_stage_seconds").set("stage", "decode_per_token").set("value", f.decode).set("unit", "s").print();
    line("SAM2 decoder per [SEG]", f.sam2_decode, "(measured above)");

    f.total = f.vision + f.prefill + f.decode * 19 + sam2_api_s + f.sam2_decode;
    std::printf("\n  one answer of 20 tokens with one [SEG] (sum of the stages): %.3f s = vision %.0f%%, prefill %.0f%%, "
                "decode %.0f%%, SAM2 encoder %.0f%%, SAM2 decoder %.0f%%\n",
                f.total, 100 * f.vision / f.total, 100 * f.prefill / f.total, 100 * f.decode * 19 / f.total,
                100 * sam2_api_s / f.total, 100 * f.sam2_decode / f.total);
    std::printf("  second question on the same image: %.3f s (vision and SAM2 encoders skipped: %.3f s saved)\n",
                f.total - f.vision - sam2_api_s, f.vision + sam2_api_s);

    // The whole answer, end to end: the RGB image in, the answer and its full-size mask out.
    ib::AnswerOptions whole;
    whole.max_new_tokens = max_new_tokens;
    ib::GroundedAnswer last;
    const int answer_warmup = device.is_cpu() ? 0 : 1;  // every CPU kernel ran above already
    stage.reset();
    f.answer = bench::median_device_seconds(device, [&] { last = model->answer(image, question, whole); },
                                            answer_warmup, answer_runs);
    const double answer_peak = stage.peak_mib();
    std::printf("  whole answer, image in, mask out (median of %d%s): %.1f ms, %zu tokens \"%s\", %zu [SEG] masks of "
                "%dx%d%s; %s %.0f MiB\n",
                answer_runs, answer_warmup ? " after 1 untimed" : "", f.answer * 1e3, last.ids.size(),
                last.text.c_str(), last.segments.size(), side, side,
                device.is_cpu() ? "" : " (issue 23's target on a GPU: < 200 ms)", stage.label(), answer_peak);
    if (last.segments.size() != 1)
      std::printf("  NOTE: the answer had %zu [SEG] masks, not 1: a --model folder without the make-random --answer "
                  "fixture?\n",
                  last.segments.size());
    result("grounded_answer_ms")
        .set("image", "1024x1024")
        .set("segments", static_cast<int64_t>(last.segments.size()))
        .set("tokens", static_cast<int64_t>(last.ids.size()))
        .set("runs", answer_runs)
        .set("value", f.answer * 1e3)
        .set("unit", "ms")
        .set(stage.field(), answer_peak)
        .print();
    f.peak = answer_peak;
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
    row("SAM2 image encoder per frame", [&](const Figures& f) { return fmt("%.3f s", f.sam2_encode); });
    row("  efficiency (same-dtype matmul)", [&](const Figures& f) { return fmt("%.2f", f.sam2_efficiency); });
    row("SAM2 decoder per [SEG]", [&](const Figures& f) { return fmt("%.3f s", f.sam2_decode); });
    row("SAM2 peak", [&](const Figures& f) { return fmt("%.0f MiB", f.sam2_peak); });
    if (!sam2_only) {
      row("vision encoder", [&](const Figures& f) { return fmt("%.3f s", f.vision); });
      row("prefill (+ first token)", [&](const Figures& f) { return fmt("%.3f s", f.prefill); });
      row("decode per token", [&](const Figures& f) { return fmt("%.4f s", f.decode); });
      row("answer of 20 tokens with one [SEG]", [&](const Figures& f) { return fmt("%.2f s", f.total); });
      row("whole answer, end to end", [&](const Figures& f) { return fmt("%.1f ms", f.answer * 1e3); });
    }
  }
  if (remove_dir) fs::remove_all(dir);
  return 0;
}
