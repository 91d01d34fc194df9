// Speed of the vision path at the release size (InternViT-300M-448px + mlp1) with random
// weights: one 448-pixel tile, the 10 tiles of a 1024x1024 image, and 16 slices encoded as one
// batch against 16 single calls. Efficiency is the achieved FLOP/s over the matmul throughput
// of this machine measured in the same run, next to each phase (the machine's speed drifts by
// 20-30% from minute to minute, MODEL.md).
//
//   bench_vision [--threads N] [--slices 16] [--dtype float32|bfloat16] [--max-batch 8]
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

#include "inference/checkpoint_layout.h"
#include "inference/image_preprocess.h"
#include "inference/model_config.h"
#include "inference/runtime.h"
#include "inference/safetensors_file.h"
#include "inference/vision_encoder.h"
#include "inference/weights.h"

namespace ib = unibiomed::inference;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU seconds of the whole process: on a shared machine, wall time also counts the time other
// programs held the cores; CPU time per thread shows what the work itself cost.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

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

// The best of several timed float32 matmuls of the encoder's own shapes (fc1 and fc2 of one
// tile): what this machine's BLAS delivers right now.
double matmul_gflops(const torch::TensorOptions& o) {
  torch::NoGradGuard guard;
  const int64_t n = 1025;
  torch::Tensor a = torch::randn({n, 1024}, o), w1 = torch::randn({4096, 1024}, o), b = torch::randn({n, 4096}, o),
                w2 = torch::randn({1024, 4096}, o);
  torch::Tensor o1 = torch::empty({n, 4096}, o), o2 = torch::empty({n, 1024}, o);
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    at::mm_out(o1, a, w1.t());
    at::mm_out(o2, b, w2.t());
    const double t = seconds_since(t0);
    best = std::max(best, 2.0 * 2 * n * 1024 * 4096 / t / 1e9);
  }
  return best;
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

// Wall and CPU time of one phase.
struct Stopwatch {
  std::chrono::steady_clock::time_point wall0 = std::chrono::steady_clock::now();
  double cpu0 = process_cpu_seconds();
  double wall() const { return seconds_since(wall0); }
  double cpu() const { return process_cpu_seconds() - cpu0; }
};

std::string load_average() {
  char buf[128] = {0};
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
    std::fclose(f);
  }
  std::string s(buf);
  return s.substr(0, s.find(' ', s.find(' ', s.find(' ') + 1) + 1));
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;  // 0: every core this process may use
  int slices = 16, max_batch = 8;
  std::string dtype = "float32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads") threads = std::stoi(v);
    else if (k == "--slices") slices = std::stoi(v);
    else if (k == "--dtype") dtype = v;
    else if (k == "--max-batch") max_batch = std::stoi(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  threads = ib::configure_cpu_threads(threads);
  torch::manual_seed(0);
  ib::ModelConfig config;  // release sizes: InternViT-300M-448px, Qwen2.5-0.5B hidden 896
  const double tile_gflop = flops_per_tile(config) / 1e9;
  std::printf("bench_vision: InternViT-300M + mlp1, random weights, %s, %d threads, %.1f GFLOP per 448 tile, load %s\n",
              dtype.c_str(), threads, tile_gflop, load_average().c_str());
  std::printf("%s\n", ib::describe_cpu_runtime().c_str());

  const auto dir = std::filesystem::temp_directory_path() / ("bench_vision_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  Stopwatch load;
  write_random_checkpoint(dir / "model.safetensors", config);
  ib::Weights weights(ib::Checkpoint::open(dir / "model.safetensors"), ib::ComputeOptions::from_strings("cpu", dtype));
  ib::VisionEncoder encoder(weights, config);
  encoder.set_max_batch_tiles(max_batch);
  std::filesystem::remove_all(dir);
  std::printf("checkpoint written and loaded: %.1f s\n", load.wall());

  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const ib::TilingOptions tiling = ib::TilingOptions::from_config(config);
  // Efficiency: FLOP/s achieved over the matmul FLOP/s measured just before the phase. The CPU
  // share says how much of `threads` cores the process got (other programs, waiting).
  auto report = [&](const char* what, const Stopwatch& sw, double tiles, double gflops_machine) {
    const double secs = sw.wall(), achieved = tiles * tile_gflop / secs;
    std::printf("%-30s %8.2f s %6.2f s/tile %6.1f GFLOP/s | matmul %6.1f GFLOP/s | efficiency %.2f | cpu share %.2f\n",
                what, secs, secs / tiles, achieved, gflops_machine, achieved / gflops_machine,
                sw.cpu() / (secs * threads));
  };

  // Warm-up: thread pools, BLAS buffers.
  {
    ib::InternVlInput in = ib::preprocess_internvl({synthetic_image(448, 448, 0)}, tiling);
    encoder.encode(in.pixel_values);
  }

  // One 448 tile.
  {
    const double mm = matmul_gflops(f32);
    ib::InternVlInput in = ib::preprocess_internvl({synthetic_image(448, 448, 1)}, tiling);
    for (int rep = 0; rep < 2; ++rep) {
      Stopwatch sw;
      encoder.encode(in.pixel_values);
      report(rep == 0 ? "one 448 tile" : "one 448 tile (again)", sw, 1, mm);
    }
  }

  // A 1024x1024 image: 3x3 tiles + thumbnail.
  {
    const double mm = matmul_gflops(f32);
    ib::RgbImage image = synthetic_image(1024, 1024, 2);
    Stopwatch prep;
    ib::InternVlInput in = ib::preprocess_internvl({image}, tiling);
    const double prep_s = prep.wall();
    Stopwatch enc;
    torch::Tensor out = encoder.encode(in.pixel_values);
    report("1024x1024 image (10 tiles)", enc, in.tiles_per_image[0], mm);
    std::printf("  preprocessing %.3f s, output [%ld, %ld, %ld]\n", prep_s, static_cast<long>(out.size(0)),
                static_cast<long>(out.size(1)), static_cast<long>(out.size(2)));
  }

  // Slices of a volume (512x512 each: one tile each): one batched call against single calls,
  // each including its preprocessing.
  if (slices > 0) {
    std::vector<ib::RgbImage> images;
    for (int i = 0; i < slices; ++i) images.push_back(synthetic_image(512, 512, 10 + i));
    double mm = matmul_gflops(f32);
    Stopwatch single_sw;
    for (const auto& im : images) encoder.encode(ib::preprocess_internvl({im}, tiling).pixel_values);
    const double single = single_sw.wall();
    report("slices, single calls", single_sw, slices, mm);
    mm = matmul_gflops(f32);
    Stopwatch batched_sw;
    encoder.encode(ib::preprocess_internvl(images, tiling).pixel_values);
    const double batched = batched_sw.wall();
    report("slices, one batched call", batched_sw, slices, mm);
    std::printf("batched vs single calls: %.3f s vs %.3f s per slice, speed-up %.2fx (max batch %d tiles)\n",
                batched / slices, single / slices, single / batched, max_batch);
  }
  std::printf("load average at the end: %s\n", load_average().c_str());
  return 0;
}
