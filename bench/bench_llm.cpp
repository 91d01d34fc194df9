// Language-model speed at the real size (Qwen2.5-0.5B shape, random weights made in memory), on
// the CPU or a GPU (--device), for each dtype of --dtypes in the same run: prefill tokens/s at
// each --prefill-batch and decode tokens/s at each --batch, each printed beside the shared probes
// (bench_common.h, bench_device.h) measured on the same device just before, as efficiency ratios:
//   prefill: useful FLOP/s (projections + causal attention + last-position lm_head) / the same
//            dtype's matmul probe (torch::mm 2048^2 on the CPU, 8192^2 on a GPU, median of 5)
//   decode:  weight bytes streamed per token x steps/s / the device's read bandwidth (CPU:
//            std::thread workers on every BLAS thread's core, the 1-thread figure beside it;
//            GPU: torch::sum over 1 GiB)
// and the peak memory per stage (GPU: tensor bytes; CPU: resident), on the CPU checked against
// 1.3 x the weights + 0.5 GB. Timings are medians after a warm-up: prefill of --runs runs, decode
// of --decode-tokens steps after 2 warm-up steps; on a GPU each timed call waits for the device.
// Each figure also as a RESULT line (bench_common.h).
//
//   bench_llm [--device cpu|cuda[:N]] [--threads N] [--dtypes auto|float32,bfloat16]
//             [--prefill 300,2600] [--prefill-batch 1] [--runs 3] [--decode-tokens 16]
//             [--decode-context 300] [--batch 1,4] [--layers N] [--no-thread-study]
//             [--torch-threads N] [--help]
//
// e.g. on a GPU: bench_llm --device cuda --prefill 300,2600 --prefill-batch 1,8 --batch 1,8 --runs 5
//                          --decode-tokens 32
//      quick check: bench_llm --layers 2 --prefill 64 --decode-context 32 --decode-tokens 4 --runs 1
//                             --batch 1,2 --no-thread-study
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dlfcn.h>

#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "bench/bench_device.h"
#include "inference/checkpoint_layout.h"
#include "inference/cpu_matvec.h"
#include "inference/device.h"
#include "inference/model_config.h"
#include "inference/qwen2.h"
#include "inference/runtime.h"
#include "inference/weights.h"

namespace {

using namespace unibiomed::inference;
namespace bench = unibiomed::bench;

// Median seconds of `reps` calls after one warm-up call (bench_common.h's statistic).
template <typename F>
double median_of(int reps, F&& f) {
  return unibiomed::bench::median_seconds(std::forward<F>(f), 1, reps);
}

double matmul_gflops() { return unibiomed::bench::matmul_probe("float32").gflops; }

// The language model's tensors of the layout table, made in memory: weights ~ N(0, 0.02),
// norms 1.
std::map<std::string, torch::Tensor> random_llm(const LlmConfig& c, torch::ScalarType dtype) {
  torch::NoGradGuard g;
  ModelConfig model;
  model.llm = c;
  std::set<std::string> norms = {layout::language_model().norm_weight};
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const auto l = layout::language_layer(i);
    norms.insert({l.input_layernorm_weight, l.post_attention_layernorm_weight});
  }
  std::map<std::string, torch::Tensor> t;
  for (const auto& spec : checkpoint_layout(model, Sam2MemoryConfig{}))
    if (spec.block == CheckpointBlock::kLanguage)
      t[spec.name] = norms.count(spec.name) ? torch::ones(spec.shape, dtype) : torch::empty(spec.shape, dtype).normal_(0, 0.02);
  return t;
}

// Multiply-adds x 2 of a prefill of T tokens: the projections of every position, the causal
// attention (position t sees t+1 keys: QK^T and PV), and the lm_head for the last position only.
double prefill_flops(const LlmConfig& c, int64_t T) {
  const double H = c.hidden_size, I = c.intermediate_size, kv = c.head_dim() * c.num_key_value_heads;
  const double per_token = H * (H + 2 * kv) + H * H + 3 * H * I;
  const double attention = 2.0 * 2.0 * c.head_dim() * c.num_attention_heads * (static_cast<double>(T) * (T + 1) / 2);
  return c.num_hidden_layers * (2.0 * per_token * T + attention) + 2.0 * H * c.vocab_size;
}

// Bytes of weights read per decoded token: every layer, the final norm and the lm_head.
double decode_weight_bytes(const LlmConfig& c, torch::ScalarType dtype) {
  const double H = c.hidden_size, I = c.intermediate_size, kv = c.head_dim() * c.num_key_value_heads;
  const double layer = H * (H + 2 * kv) + (H + 2 * kv) + H * H + 3 * H * I + 2 * H;
  return (c.num_hidden_layers * layer + H + H * c.vocab_size) * torch::elementSize(dtype);
}

void thread_study(int threads) {
  // Does libtorch's pool plus OpenBLAS's pool oversubscribe? Single GEMM and the attention-shaped
  // products (K = 64 and K = keys) under each combination.
  auto set_blas = reinterpret_cast<void (*)(int)>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set_blas) {
    std::cout << "thread study: the BLAS is not OpenBLAS, skipped\n";
    return;
  }
  torch::NoGradGuard g;
  const torch::Tensor q = torch::randn({896, 64}), k = torch::randn({2600, 64}), p = torch::rand({896, 2600});
  const torch::Tensor x = torch::randn({512, 896}), w = torch::randn({9728, 896});
  std::cout << "thread study (GFLOP/s): torch/openblas threads | GEMM 2048^2 | linear 512x896x9728 | "
               "scores 896x64x2600 | probs.V 896x2600x64\n";
  for (auto [t, b] : std::vector<std::pair<int, int>>{{threads, threads}, {threads, 1}, {1, threads}}) {
    torch::set_num_threads(t);
    set_blas(b);
    const double mm = matmul_gflops();
    const double lin = 2.0 * 512 * 896 * 9728 / median_of(3, [&] { (void)torch::linear(x, w); }) / 1e9;
    const double qk = 2.0 * 896 * 64 * 2600 / median_of(5, [&] { (void)torch::mm(q, k.t()); }) / 1e9;
    const double pv = 2.0 * 896 * 64 * 2600 / median_of(5, [&] { (void)torch::mm(p, k); }) / 1e9;
    std::printf("  %d/%d | %7.1f | %7.1f | %7.1f | %7.1f\n", t, b, mm, lin, qk, pv);
  }
  configure_cpu_threads(threads);
}

void decode_kernel_study(torch::ScalarType dtype) {
  // Rows x lm_head-sized weights [151679, 896] of the dtype (543 MB in float32, far beyond the
  // caches): weight bytes per second for libtorch's GEMM (linear), its matrix-vector product per
  // row, and matvec_rows, on the threads the dtype's model gets.
  torch::NoGradGuard g;
  const torch::Tensor w = torch::randn({151679, 896}).to(dtype);
  const double bytes = static_cast<double>(w.numel()) * torch::elementSize(dtype);
  std::cout << "decode kernels, " << c10::toString(dtype)
            << " (weight GB/s per step of R rows): R | GEMM | mv per row | matvec_rows\n";
  for (int64_t rows : {1, 2, 4, 8}) {
    const torch::Tensor x = torch::randn({rows, 896}).to(dtype);
    const double gemm = bytes / median_of(3, [&] { (void)torch::linear(x, w); }) / 1e9;
    const double mv = bytes / median_of(3, [&] {
                        for (int64_t r = 0; r < rows; ++r) (void)torch::mv(w, x[r]);
                      }) / 1e9;
    const double ours = bytes / median_of(3, [&] { (void)matvec_rows(x, w); }) / 1e9;
    std::printf("  %lld | %5.1f | %5.1f | %5.1f\n", static_cast<long long>(rows), gemm, mv, ours);
  }
}

// One dtype's figures for the side-by-side table at the end.
struct Row {
  std::string name;
  double rate = 0, ratio = 0;  // tokens/s; efficiency against the probe
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, torch_threads = 0;  // torch_threads 0: as configure_cpu_threads leaves it
  std::string dtype_list_arg = "auto";
  c10::Device device(c10::kCPU);
  std::vector<int64_t> prefill_lengths = {300, 2600};
  std::vector<int64_t> decode_batches, prefill_batches;  // empty: the device's defaults
  int decode_tokens = 16, runs = 3, layers = 0;
  int64_t decode_context = 300;
  bool no_study = false;
  bench::CommandLine cl(
      "bench_llm",
      "Language-model speed at the real size (Qwen2.5-0.5B shape, random weights made in memory) on the CPU or\n"
      "a GPU, per dtype in one run: prefill tokens/s as useful FLOP/s over the same dtype's matmul probe on the\n"
      "device; decode tokens/s as weight bytes streamed per second over the device's read bandwidth; peak\n"
      "memory per stage (GPU: tensors; CPU: resident). One RESULT line per figure. Quick check: --layers 2\n"
      "--prefill 64 --decode-context 32 --decode-tokens 4 --runs 1 --batch 1,2 --no-thread-study.");
  cl.option(
        "--device", "cpu|cuda[:N]", bench::kDeviceHelp, [&](const std::string& v) { device = bench::parse_device(v); },
        "cpu")
      .option("--threads", "N", "BLAS threads (0: every core this process may use)", threads)
      .option("--torch-threads", "N", "libtorch intra-op threads (0: as configure_cpu_threads sets them)",
              torch_threads)
      .option("--dtypes", "LIST", std::string(bench::kDtypesHelp) + "; on cuda auto is bfloat16", dtype_list_arg)
      .option(
          "--prefill", "LIST", "prompt lengths to prefill",
          [&](const std::string& v) { prefill_lengths = bench::parse_integer_list(v); }, "300,2600")
      .option(
          "--prefill-batch", "LIST", "prompts prefilled together, one figure per size and length",
          [&](const std::string& v) { prefill_batches = bench::parse_integer_list(v); }, "1 on cpu, 1,8 on cuda")
      .option("--runs", "N", "timed prefills per length after one warm-up (median)", runs)
      .option("--decode-tokens", "N", "timed decode steps after 2 warm-up steps (median step)", decode_tokens)
      .option("--decode-context", "N", "prompt tokens before decoding", decode_context)
.option(
          "--batch", "LIST", "decode batches, one figure each",
          [&](const std::string& v) { decode_batches = bench::parse_integer_list(v); }, "1,4 on cpu, 1,8 on cuda")
      .option("--layers", "N", "decoder layers (0: the real 24; e.g. 2 for a quick check)", layers)
      .flag("--no-thread-study", "skip the thread and (per dtype) decode-kernel studies", no_study);
  cl.parse(argc, argv);
  if (runs < 1 || decode_tokens < 1 || decode_context < 1 || layers < 0 || threads < 0 || torch_threads < 0)
    cl.fail("--runs, --decode-tokens and --decode-context must be at least 1");
  for (int64_t T : prefill_lengths)
    if (T < 1) cl.fail("prefill lengths must be at least 1");
  if (decode_batches.empty()) decode_batches = device.is_cpu() ? std::vector<int64_t>{1, 4} : std::vector<int64_t>{1, 8};
  if (prefill_batches.empty()) prefill_batches = device.is_cpu() ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 8};
  for (int64_t b : decode_batches)
    if (b < 1 || b > 1024) cl.fail("--batch: every size must be within 1..1024");
  for (int64_t b : prefill_batches)
    if (b < 1 || b > 1024) cl.fail("--prefill-batch: every size must be within 1..1024");
  bench::DtypeChoice dtypes;
  try {
    dtypes = bench::choose_dtypes(dtype_list_arg, device);
  } catch (const std::exception& e) {
    cl.fail("--dtypes: " + std::string(e.what()));
  }
  const std::string device_text = bench::device_name(device);

  threads = configure_cpu_threads(threads);
  if (torch_threads > 0) torch::set_num_threads(torch_threads);
  std::cout << "device: " << describe_device(device) << "\n";
  std::cout << "runtime: " << describe_cpu_runtime() << "\n";
  if (!dtypes.note.empty()) std::cout << dtypes.note << "\n";
  if (device.is_cpu())
    std::printf("prefill ratio = useful FLOP/s / the same dtype's matmul probe (torch::mm %d^2, median of 5 after 1 "
                "warm-up); decode ratio = weight GB/s / memory read GB/s of %d std::thread workers (bench_common.h), the "
                "higher of a probe before and one after the steps; "
                "decode's matvec_rows runs on %d thread(s) in every dtype\n",
                bench::kProbeMatmulSize, threads, configured_cpu_threads());
  else
    std::printf("prefill ratio = useful FLOP/s / the same dtype's matmul probe on %s (torch::mm %d^2, median of 5 after "
                "1 warm-up); decode ratio = weight GB/s / the GPU's read GB/s (torch::sum of 1 GiB); every timing ends "
                "with a device synchronisation\n",
                device_text.c_str(), bench::probe_matmul_size(device));
  if (!no_study && !device.is_cpu()) {
    std::printf("thread and decode-kernel studies: CPU only, skipped on %s\n", device_text.c_str());
  } else if (!no_study) {
    thread_study(threads);
    if (torch_threads > 0) torch::set_num_threads(torch_threads);
  }

  LlmConfig config;  // the defaults are Qwen2.5-0.5B's sizes
  if (layers > 0) config.num_hidden_layers = layers;
  std::vector<std::vector<Row>> table;
  std::vector<double> peaks;
  bool all_resets = true;
  for (const auto& dtype_name : dtypes.dtypes) {
    std::printf("\n== %s ==\n", dtype_name.c_str());
    if (device.is_cpu()) {  // before the probe: its threads
      use_cpu_threads_for(dtype_name == "bfloat16");
      if (torch_threads > 0) torch::set_num_threads(torch_threads);
    }
    const ComputeOptions options = ComputeOptions::from_strings(device_text, dtype_name);
    const auto on_device = torch::TensorOptions().device(device);
    const auto result = [&](const std::string& name) {
      bench::ResultLine r(name);
      r.set("device", device_text).set("dtype", dtype_name).set("layers", config.num_hidden_layers);
      return r;
    };
    const double weight_bytes = decode_weight_bytes(config, options.dtype) +
                                static_cast<double>(config.vocab_size) * config.hidden_size *
                                    torch::elementSize(options.dtype);
    // The tensor memory cache still holds the blocks of the previous dtype's model: freed so
    // that this dtype's peak is its own.
    release_cpu_tensor_cache();
    release_device_cache(device);
    // One peak counter per device (GPU tensors, or VmHWM): reset before each stage.
    bench::StagePeak stage(device);
    stage.reset();
    const bool peak_resets = stage.resets();
    all_resets = all_resets && peak_resets;
    std::vector<Row> rows;
    double model_peak = 0;
    {
      const bench::Stopwatch made;
      // Built as GroundedModel::load builds a model: without the tensor cache (each tensor is
      // converted once, so its freed temporaries would only stay as cached blocks).
      std::optional<CpuTensorCachePause> building(std::in_place);
      Weights weights(random_llm(config, options.dtype), options);
      Qwen2Model model(weights, config);
      building.reset();
      synchronize(device);
      std::printf("model: Qwen2 %d layers, hidden %d, vocab %lld, %s on %s, %.2f GB of weights, made in %.1f s, RSS "
                  "%.2f GB%s\n",
                  config.num_hidden_layers, config.hidden_size, static_cast<long long>(config.vocab_size),
                  dtype_name.c_str(), device_text.c_str(), weight_bytes / 1e9, made.wall(),
                  bench::status_mib("VmRSS:") * 1048576 / 1e9,
                  stage.gpu() ? (", GPU tensors " + std::to_string(stage.current_mib() * 1048576 / 1e9).substr(0, 5) +
                                 " GB")
                                    .c_str()
                              : "");
      model_peak = stage.peak_mib();

      // Prefill: B prompts of T tokens at once, then the last position's logits and their argmax
      // (what generation does).
      for (int64_t T : prefill_lengths)
        for (int64_t b : prefill_batches) {
          const bench::MatmulProbe gemm = bench::matmul_probe(device, dtype_name);
          stage.reset();
          const torch::Tensor embeds = torch::randn({b, T, config.hidden_size}, on_device).to(options.dtype);
          const bench::Stopwatch sw;
          const double s = bench::median_device_seconds(
              device,
              [&] {
                KvCache cache = model.make_cache(b, T);
                const torch::Tensor last = model.forward(embeds, cache).select(1, T - 1);
                (void)model.logits(last).argmax(-1).sum().item<int64_t>();
              },
              1, runs);
          const double share = sw.cpu_share(threads);
          const double peak = stage.peak_mib();
          model_peak = std::max(model_peak, peak);
          const double tokens = static_cast<double>(b * T);
          const double achieved = b * prefill_flops(config, T) / s / 1e9;
          std::printf("prefill %5lld tokens x %lld: %8.4f s (median of %d), %9.1f tokens/s, %8.1f GFLOP/s | matmul "
                      "%8.1f GFLOP/s | ratio %.2f (target >= 0.6) | cpu share %.2f | RSS %.2f GB | %s %.0f MiB\n",
                      static_cast<long long>(T), static_cast<long long>(b), s, runs, tokens / s, achieved, gemm.gflops,
                      achieved / gemm.gflops, share, bench::status_mib("VmRSS:") * 1048576 / 1e9, stage.label(), peak);
          std::fflush(stdout);
          result("llm_prefill_tok_per_s")
              .set("tokens", T)
              .set("batch", b)
              .set("value", tokens / s)
              .set("unit", "tok/s")
              .set("seconds", s)
              .set("efficiency", achieved / gemm.gflops)
              .set(stage.field(), peak)
              .print();
          rows.push_back({"prefill " + std::to_string(T) + (b > 1 ? " x " + std::to_string(b) : std::string()),
                          tokens / s, achieved / gemm.gflops});
        }

      // Decode: the greedy step of generate_greedy (last position's logits, argmax, embed,
      // forward one position) after a prompt of decode_context tokens; the median of the timed
      // steps after two warm-up steps.
      for (int64_t b : decode_batches) {
        // The memory's read bandwidth swings by half on a shared VM: probed before and after the
        // steps, the higher of the two taken (the ratio errs low, not high).
        bench::DeviceBandwidth all = bench::read_bandwidth(device, threads);
        const std::string one_thread =
            device.is_cpu() ? " (1 thread: " + std::to_string(bench::memory_read_probe(1).gbps).substr(0, 5) + ")" : "";
        stage.reset();
        const torch::Tensor embeds =
            torch::randn({b, decode_context, config.hidden_size}, on_device).to(options.dtype);
        const int warmup = 2;
        KvCache cache = model.make_cache(b, decode_context + warmup + decode_tokens);
        torch::Tensor last = model.forward(embeds, cache).select(1, decode_context - 1);
        const bench::Stopwatch sw;
        const double per_step = bench::median_device_seconds(
            device,
            [&] {
              const torch::Tensor next = model.logits(last).argmax(-1).view({b, 1});
              last = model.forward(model.embed(next), cache).select(1, 0);
              (void)last.sum().item<float>();
            },
            warmup, decode_tokens);
        const double share = sw.cpu_share(threads);
        const double peak = stage.peak_mib();
        model_peak = std::max(model_peak, peak);
        if (const bench::DeviceBandwidth after = bench::read_bandwidth(device, threads); after.gbps > all.gbps)
          all = after;
        const double streamed = decode_weight_bytes(config, options.dtype) / per_step / 1e9;
        std::printf("decode batch %lld (context %lld): %8.2f ms/step (median of %d), %8.2f tokens/s | weights %7.1f "
                    "GB/s | read %s%s | ratio %.2f (target >= %.1f) | cpu share %.2f | %s %.0f MiB\n",
                    static_cast<long long>(b), static_cast<long long>(decode_context), per_step * 1e3, decode_tokens,
                    b / per_step, streamed, all.describe().c_str(), one_thread.c_str(), streamed / all.gbps,
                    options.dtype == torch::kBFloat16 ? 0.6 : 0.5, share, stage.label(), peak);
        std::fflush(stdout);
        result("llm_decode_tok_per_s")
            .set("batch", b)
            .set("context", decode_context)
            .set("value", b / per_step)
            .set("unit", "tok/s")
            .set("ms_per_step", per_step * 1e3)
            .set("efficiency", streamed / all.gbps)
            .set(stage.field(), peak)
            .print();
        rows.push_back({"decode batch " + std::to_string(b), b / per_step, streamed / all.gbps});
      }
    }
    // Without resets (old kernels) the process peak, measuring buffers included, is all there is.
    const double peak = (peak_resets ? model_peak : bench::status_mib("VmHWM:")) * 1048576 / 1e9;
    const double limit = 1.3 * weight_bytes / 1e9 + 0.5;
    if (stage.gpu())
      std::printf("peak GPU memory (tensors) while the model was made and ran: %.2f GB (weights %.2f GB; the KV caches "
                  "and activations of the largest batch on top)\n",
                  peak, weight_bytes / 1e9);
    else
      std::printf("peak resident memory %s %.2f GB | limit 1.3 x %.2f GB + 0.5 GB = %.2f GB | %s\n",
                  peak_resets ? "while the model ran (measuring buffers excluded)" : "of the process", peak,
                  weight_bytes / 1e9, limit, peak <= limit ? "within" : "OVER");
    result("llm_peak_memory_mib").set("value", peak * 1e9 / 1048576).set("unit", "MiB").set("kind", stage.field()).print();
    table.push_back(std::move(rows));
    // After the model's figures, so that its buffers do not count in the model's peak.
    if (device.is_cpu() && !no_study) decode_kernel_study(options.dtype);
    peaks.push_back(peak);
  }

  if (table.size() > 1) {
    std::printf("\nside by side (tokens/s, ratio against the same dtype's matmul probe for prefill and the memory "
                "read bandwidth for decode):\n%-22s",
                "");
    for (const auto& d : dtypes.dtypes) std::printf(" | %-24s", d.c_str());
    std::printf("\n");
    for (size_t i = 0; i < table[0].size(); ++i) {
      std::printf("%-22s", table[0][i].name.c_str());
      for (const auto& rows : table) std::printf(" | %8.1f tok/s ratio %.2f", rows[i].rate, rows[i].ratio);
      std::printf("\n");
    }
    std::printf("%-22s", all_resets ? "peak (model)" : "peak (process)");
    for (double p : peaks) std::printf(" | %8.2f GB%14s", p, "");
    std::printf("\n");
  }
  return 0;
}
