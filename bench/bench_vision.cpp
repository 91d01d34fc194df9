// Speed of the vision path at the release size (InternViT-300M-448px + mlp1) with random
// weights, on the CPU or a GPU (--device): tiles per second at each --batch (448-pixel tiles
// encoded by one call, batch 1 = "one 448 tile"), the 10 tiles of a 1024x1024 image, and
// --slices slices encoded as one batch against single calls, for each dtype of --dtypes in the
// same run. Efficiency is the achieved FLOP/s over the shared matmul probe of the same dtype on
// the same device (bench_device.h), measured just before each phase (the machine's speed drifts
// by 20-30% from minute to minute, MODEL.md); repeated phases report the median after a warm-up;
// on a GPU every timing waits for the device. The peak memory per phase (GPU: tensor bytes; CPU:
// resident) and per dtype. Each figure also as a RESULT line (bench_common.h).
//
//   bench_vision [--device cpu|cuda[:N]] [--threads N] [--dtypes auto|float32,bfloat16]
//                [--batch 1] [--runs 3] [--image-runs 1] [--slices 16] [--max-batch 8]
//                [--layers N] [--help]
//
// e.g. on a GPU: bench_vision --device cuda --batch 1,8,32 --runs 10 --image-runs 10
//      quick check: bench_vision --layers 1 --slices 2 --runs 1 --image-runs 1
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/bench_common.h"
#include "bench/bench_device.h"
#include "inference/checkpoint_layout.h"
#include "inference/device.h"
#include "inference/image_preprocess.h"
#include "inference/model_config.h"
#include "inference/runtime.h"
#include "inference/safetensors_file.h"
#include "inference/vision_encoder.h"
#include "inference/weights.h"

namespace ib = unibiomed::inference;
namespace bench = unibiomed::bench;

namespace {

// Multiply-adds x 2 of one tile through InternViT (all layers) and mlp1.
double flops_per_tile(const ib::ModelConfig& c) {
  const double C = c.vision.hidden_size, I = c.vision.intermediate_size, P = c.vision.patch_size;
  const double g = c.tile_size / c.vision.patch_size, N = 1 + g * g, T = g * g / 4, H = c.llm.hidden_size;
  const double patch = 2 * g * g * 3 * P * P * C;
  const double layer = 2 * N * C * 3 * C   // qkv
                       + 4 * N * N * C     // q k^T and p v over all heads
                       + 2 * N * C * C     // proj
                       + 4 * N * C * I;    // fc1 + fc2
  const double mlp1 = 2 * T * (4 * C * H + H * H);
  return patch + c.vision.num_hidden_layers * layer + mlp1;
}

// The vision encoder's and projector's tensors of the layout table, N(0, 0.02) in bfloat16;
// norm weights around 1, layer scales around 0.1.
void write_random_checkpoint(const std::filesystem::path& path, const ib::ModelConfig& c) {
  std::set<std::string> norms = {ib::layout::projector().norm.weight}, scales;
  for (int i = 0; i < c.vision.num_hidden_layers; ++i) {
    const auto l = ib::layout::vision_layer(i);
    norms.insert({l.norm1.weight, l.norm2.weight});
    scales.insert({l.ls1, l.ls2});
  }
  std::vector<ib::TensorBlob> blobs;
  for (const auto& spec : ib::checkpoint_layout(c, ib::Sam2MemoryConfig{})) {
    if (spec.block != ib::CheckpointBlock::kVision && spec.block != ib::CheckpointBlock::kProjector) continue;
    const double mean = norms.count(spec.name) ? 1.0 : scales.count(spec.name) ? 0.1 : 0.0;
    const double std = scales.count(spec.name) ? 0.01 : 0.02;
    torch::Tensor t = (torch::randn(spec.shape) * std + mean).to(torch::kBFloat16).contiguous();
    ib::TensorBlob b{spec.name, ib::DType::BF16, spec.shape, std::vector<std::byte>(t.nbytes())};
    std::memcpy(b.bytes.data(), t.data_ptr(), t.nbytes());
    blobs.push_back(std::move(b));
  }
  ib::write_safetensors(path, blobs);
}

ib::RgbImage synthetic_image(int width, int height, int seed) {
  ib::RgbImage im(width, height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      uint8_t* p = im.row(y) + 3 * x;
      p[0] = static_cast<uint8_t>((x * 7 + y * 3 + seed * 11) & 0xFF);
      p[1] = static_cast<uint8_t>(((x ^ y) + seed) & 0xFF);
      p[2] = static_cast<uint8_t>((x * y / 64 + seed * 5) & 0xFF);
    }
  return im;
}

// One phase's figures for the side-by-side table at the end.
struct Phase {
  std::string name;
  double seconds = 0, tiles = 0, matmul_gflops = 0, cpu_share = 0;
  int runs = 0;
  double peak_mib = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;  // 0: every core this process may use
  int slices = 16, max_batch = 0, runs = 3, image_runs = 1, layers = 0;
  std::string dtype_list_arg = "auto";
  std::vector<int64_t> batches;  // empty: 1 on the CPU, 1,8,32 on a GPU
  c10::Device device(c10::kCPU);
  bench::CommandLine cl("bench_vision",
                        "Speed of the vision path (InternViT-300M-448px + mlp1, random weights) on the CPU or a GPU:\n"
                        "448 tiles per second at each --batch, a 1024x1024 image (10 tiles), 512x512 slices batched vs\n"
                        "single calls; each phase's FLOP/s over the same-dtype matmul probe on the same device measured\n"
                        "just before it, and the peak memory (GPU: tensors; CPU: resident) per phase and per dtype.\n"
                        "One RESULT line per figure. Quick check: --layers 1 --slices 2 --runs 1.");
  cl.option(
        "--device", "cpu|cuda[:N]", bench::kDeviceHelp, [&](const std::string& v) { device = bench::parse_device(v); },
        "cpu")
      .option("--threads", "N", "BLAS threads (0: every core this process may use)", threads)
      .option("--dtypes", "LIST", std::string(bench::kDtypesHelp) + "; on cuda auto is bfloat16", dtype_list_arg)
      .option(
          "--batch", "LIST", "448 tiles per encoder call for the tiles/s figures, one phase each",
          [&](const std::string& v) { batches = bench::parse_integer_list(v); }, "1 on cpu, 1,8,32 on cuda")
      .option("--runs", "N", "timed runs of each --batch phase after one warm-up call (median)", runs)
      .option("--image-runs", "N", "timed runs of the 1024x1024 image after one warm-up image (median)", image_runs)
      .option("--slices", "N", "512x512 slices, one pass single calls and one batched call (0: skip)", slices)
      .option("--max-batch", "N", "most tiles per encoder call in the image and slices phases (0: the encoder's default, 8 on cpu, 32 on cuda)", max_batch)
      .option("--layers", "N", "vision layers (0: the release's 24; e.g. 1 for a quick check)", layers);
  cl.parse(argc, argv);
  if (runs < 1 || image_runs < 1) cl.fail("--runs and --image-runs must be at least 1");
  if (slices < 0 || max_batch < 0 || layers < 0 || threads < 0) cl.fail("--slices, --max-batch, --layers and --threads must not be negative");
  bench::DtypeChoice dtypes;
  try {
    dtypes = bench::choose_dtypes(dtype_list_arg, device);
  } catch (const std::exception& e) {
    cl.fail("--dtypes: " + std::string(e.what()));
  }
  if (batches.empty()) batches = device.is_cpu() ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 8, 32};
  for (int64_t b : batches)
    if (b < 1 || b > 4096) cl.fail("--batch: every size must be within 1..4096");
  const std::string device_text = bench::device_name(device);

  threads = ib::configure_cpu_threads(threads);
  torch::manual_seed(0);
  ib::ModelConfig config;  // release sizes: InternViT-300M-448px, Qwen2.5-0.5B hidden 896
  if (layers > 0) config.vision.num_hidden_layers = layers;
  const double tile_gflop = flops_per_tile(config) / 1e9;
  std::string dtype_list;
  for (const auto& d : dtypes.dtypes) dtype_list += (dtype_list.empty() ? "" : ",") + d;
  std::printf("bench_vision: InternViT-300M + mlp1 (vision layers: %d), random weights, dtypes %s, %d threads, %.1f GFLOP per "
              "448 tile, load %s\n",
              config.vision.num_hidden_layers, dtype_list.c_str(), threads, tile_gflop, bench::load_average().c_str());
  std::printf("device: %s\n", ib::describe_device(device).c_str());
  std::printf("%s\n", ib::describe_cpu_runtime().c_str());
  if (!dtypes.note.empty()) std::printf("%s\n", dtypes.note.c_str());
  std::printf("efficiency = achieved FLOP/s / the same dtype's matmul probe on %s (torch::mm %d^2, median of 5 after 1 "
              "warm-up) measured just before the phase; cpu share = CPU seconds / (wall x %d threads)%s\n",
              device_text.c_str(), bench::probe_matmul_size(device), threads,
              device.is_cpu() ? "" : "; every timing ends with a device synchronisation");

  const auto dir = std::filesystem::temp_directory_path() / ("bench_vision_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    bench::Stopwatch sw;
    write_random_checkpoint(dir / "model.safetensors", config);
    std::printf("random checkpoint (bfloat16) written: %.1f s\n", sw.wall());
  }
  std::vector<std::vector<Phase>> results;
  try {
    for (const auto& dtype : dtypes.dtypes) {
      std::printf("\n== %s ==\n", dtype.c_str());
      if (device.is_cpu()) ib::use_cpu_threads_for(dtype == "bfloat16");  // before the probe: its threads
      // The tensor memory cache still holds the blocks of the previous dtype's model: freed so
      // that this dtype's peak is its own.
      ib::release_cpu_tensor_cache();
      ib::release_device_cache(device);
      const bool peak_resets = bench::reset_peak_memory();
      // One peak counter per device: reset before each phase; the dtype's peak is the largest.
      bench::StagePeak stage(device);
      stage.reset();
      double dtype_peak = 0;
      bench::Stopwatch load;
      ib::Weights weights(ib::Checkpoint::open(dir / "model.safetensors"),
                          ib::ComputeOptions::from_strings(device_text, dtype));
      ib::VisionEncoder encoder(weights, config);
      if (max_batch > 0) encoder.set_max_batch_tiles(max_batch);
      const int encoder_batch = encoder.max_batch_tiles();
      ib::synchronize(device);
      dtype_peak = stage.peak_mib();
      std::printf("loaded as %s on %s: %.1f s, resident %.0f MiB%s\n", dtype.c_str(), device_text.c_str(), load.wall(),
                  bench::status_mib("VmRSS:"),
                  stage.gpu() ? (", GPU tensors " + std::to_string(static_cast<int>(stage.current_mib())) + " MiB").c_str()
                              : "");
      const auto result = [&](const std::string& name) {
        bench::ResultLine r(name);
        r.set("device", device_text).set("dtype", dtype).set("layers", config.vision.num_hidden_layers);
        return r;
      };

      const ib::TilingOptions tiling = ib::TilingOptions::from_config(config);
      std::vector<Phase> phases;
      auto report = [&](Phase p) {
        const double achieved = p.tiles * tile_gflop / p.seconds;
        std::printf("%-28s %8.4f s (%s) %8.4f s/tile %7.1f tiles/s %8.1f GFLOP/s | matmul %8.1f GFLOP/s | efficiency "
                    "%.2f | cpu share %.2f | %s %.0f MiB\n",
                    p.name.c_str(), p.seconds, p.runs > 1 ? ("median of " + std::to_string(p.runs)).c_str() : "1 run",
                    p.seconds / p.tiles, p.tiles / p.seconds, achieved, p.matmul_gflops, achieved / p.matmul_gflops,
                    p.cpu_share, stage.label(), p.peak_mib);
        std::fflush(stdout);
        dtype_peak = std::max(dtype_peak, p.peak_mib);
        phases.push_back(std::move(p));
      };

      // Tiles per second at each --batch: B 448 tiles (already on the device, so that the
      // figure is the encoder's) encoded by one call; one warm-up call of the shape (thread
      // pools, BLAS buffers, first touch of weights; on a GPU its kernels and allocator blocks),
      // then --runs timed calls.
      {
        const torch::Tensor tile = ib::preprocess_internvl({synthetic_image(448, 448, 1)}, tiling).pixel_values;
        for (int64_t b : batches) {
          const torch::Tensor tiles = tile.expand({b, tile.size(1), tile.size(2), tile.size(3)})
                                          .contiguous()
                                          .to(weights.options().device, weights.options().dtype);
          encoder.set_max_batch_tiles(static_cast<int>(b));
          ib::synchronize(device);
          const double mm = bench::matmul_probe(device, dtype).gflops;  // its operands freed before the reset
          stage.reset();
          encoder.encode(tiles);
          bench::Stopwatch sw;
          const double t = bench::median_device_seconds(device, [&] { encoder.encode(tiles); }, 0, runs);
          const double peak = stage.peak_mib();
          report({b == 1 ? std::string("one 448 tile") : "batch of " + std::to_string(b) + " tiles", t,
                  static_cast<double>(b), mm, sw.cpu_share(threads), runs, peak});
          const double achieved = b * tile_gflop / t;
          result("vision_tiles_per_s")
              .set("batch", b)
              .set("value", b / t)
              .set("unit", "tiles/s")
              .set("seconds_per_call", t)
              .set("efficiency", achieved / mm)
              .set(stage.field(), peak)
              .print();
        }
        encoder.set_max_batch_tiles(encoder_batch);
      }

      // A 1024x1024 image: 3x3 tiles + thumbnail, batched by up to --max-batch tiles.
      {
        ib::RgbImage image = synthetic_image(1024, 1024, 2);
        bench::Stopwatch prep;
        ib::InternVlInput in = ib::preprocess_internvl({image}, tiling);
        const double prep_s = prep.wall();
        const double mm = bench::matmul_probe(device, dtype).gflops;
        stage.reset();
        torch::Tensor out = encoder.encode(in.pixel_values);  // warm-up of the batch shapes
        bench::Stopwatch sw;
        // From the preprocessed pixels on the host, as the model gets them (the copy to a GPU
        // included).
        const double t =
            bench::median_device_seconds(device, [&] { out = encoder.encode(in.pixel_values); }, 0, image_runs);
        const double peak = stage.peak_mib();
        report({"1024x1024 image (" + std::to_string(in.tiles_per_image[0]) + " tiles)", t,
                static_cast<double>(in.tiles_per_image[0]), mm, sw.cpu_share(threads), image_runs, peak});
        result("vision_image_seconds")
            .set("image", "1024x1024")
            .set("tiles", in.tiles_per_image[0])
            .set("max_batch", encoder_batch)
            .set("value", t)
            .set("unit", "s")
            .set(stage.field(), peak)
            .print();
        std::printf("  preprocessing %.3f s, output [%ld, %ld, %ld]\n", prep_s, static_cast<long>(out.size(0)),
                    static_cast<long>(out.size(1)), static_cast<long>(out.size(2)));
      }

      // Slices of a volume (512x512: one tile each): one pass of single calls against one batched
      // call, each including its preprocessing (the shapes were warmed up above).
      if (slices > 0) {
        std::vector<ib::RgbImage> images;
        for (int i = 0; i < slices; ++i) images.push_back(synthetic_image(512, 512, 10 + i));
        double mm = bench::matmul_probe(device, dtype).gflops;
        stage.reset();
        bench::Stopwatch single_sw;
        for (const auto& im : images) encoder.encode(ib::preprocess_internvl({im}, tiling).pixel_values);
        ib::synchronize(device);
        const double single = single_sw.wall();
        report({"slices, single calls", single, static_cast<double>(slices), mm, single_sw.cpu_share(threads), 1,
                stage.peak_mib()});
        mm = bench::matmul_probe(device, dtype).gflops;
        stage.reset();
        bench::Stopwatch batched_sw;
        encoder.encode(ib::preprocess_internvl(images, tiling).pixel_values);
        ib::synchronize(device);
        const double batched = batched_sw.wall();
        const double batched_peak = stage.peak_mib();
        report({"slices, one batched call", batched, static_cast<double>(slices), mm, batched_sw.cpu_share(threads), 1,
                batched_peak});
        std::printf("batched vs single calls: %.3f s vs %.3f s per slice, speed-up %.2fx (max batch %d tiles)\n",
                    batched / slices, single / slices, single / batched, encoder_batch);
        result("vision_slices_per_s")
            .set("slices", slices)
            .set("mode", "batched")
            .set("max_batch", encoder_batch)
            .set("value", slices / batched)
            .set("unit", "slices/s")
            .set("speedup_over_single", single / batched)
            .set(stage.field(), batched_peak)
            .print();
      }
      std::printf("peak resident memory (%s): %.0f MiB %s\n", dtype.c_str(), bench::status_mib("VmHWM:"),
                  peak_resets ? "since just before the load (VmHWM reset there)"
                              : "of the whole process (the kernel refused the VmHWM reset)");
      if (stage.gpu())
        std::printf("peak GPU memory (%s), loading and every phase: %.0f MiB of tensors\n", dtype.c_str(), dtype_peak);
      result("vision_peak_memory_mib").set("value", dtype_peak).set("unit", "MiB").set("kind", stage.field()).print();
      results.push_back(std::move(phases));
    }
  } catch (...) {
    std::filesystem::remove_all(dir);
    throw;
  }
  std::filesystem::remove_all(dir);

  if (results.size() > 1) {
    std::printf("\nside by side (s/tile, efficiency against the same dtype's matmul):\n%-28s", "phase");
    for (const auto& d : dtypes.dtypes) std::printf(" | %-22s", d.c_str());
    std::printf("\n");
    for (size_t i = 0; i < results[0].size(); ++i) {
      std::printf("%-28s", results[0][i].name.c_str());
      for (const auto& r : results) {
        if (i >= r.size()) continue;
        const Phase& p = r[i];
        std::printf(" | %6.2f s/tile eff %.2f ", p.seconds / p.tiles, p.tiles * tile_gflop / p.seconds / p.matmul_gflops);
      }
      std::printf("\n");
    }
  }
  std::printf("load average at the end: %s\n", bench::load_average().c_str());
  return 0;
}
