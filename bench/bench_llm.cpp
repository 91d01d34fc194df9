// Language-model speed on this machine, at the real size (Qwen2.5-0.5B shape, random weights made
// in memory), for each dtype of --dtypes in the same run: prefill tokens/s and decode tokens/s,
// each printed beside the shared probes of bench_common.h measured just before, as efficiency
// ratios:
//   prefill: useful FLOP/s (projections + causal attention + last-position lm_head) / the same
//            dtype's matmul probe (torch::mm 2048^2, median of 5)
//   decode:  weight bytes streamed per token x tokens/s / memory read bandwidth of std::thread
//            workers on every BLAS thread's core (the 1-thread figure printed beside it)
// and the peak resident memory against 1.3 x the weights + 0.5 GB. Timings are medians after a
// warm-up: prefill of --runs runs, decode of --decode-tokens steps after 2 warm-up steps.
//
//   bench_llm [--threads N] [--dtypes auto|float32,bfloat16] [--prefill 300,2600] [--runs 3]
//             [--decode-tokens 16] [--decode-context 300] [--batch 4] [--layers N]
//             [--no-thread-study] [--torch-threads N] [--help]
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
#include "inference/checkpoint_layout.h"
#include "inference/cpu_matvec.h"
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

void decode_kernel_study() {
  // Rows x lm_head-sized weights [151679, 896] float32 (543 MB, far beyond the caches): weight
  // bytes per second for OpenBLAS GEMM (linear), OpenBLAS matrix-vector per row, and matvec_rows.
  torch::NoGradGuard g;
  const torch::Tensor w = torch::randn({151679, 896});
  const double bytes = static_cast<double>(w.numel()) * 4;
  std::cout << "decode kernels (weight GB/s per step of R rows): R | GEMM | mv per row | matvec_rows\n";
  for (int64_t rows : {1, 2, 4, 8}) {
    const torch::Tensor x = torch::randn({rows, 896});
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
  bench::DtypeChoice dtypes;
  std::vector<int64_t> prefill_lengths = {300, 2600};
  int decode_tokens = 16, batch = 4, runs = 3, layers = 0;
  int64_t decode_context = 300;
  bool no_study = false;
  bench::CommandLine cl(
      "bench_llm",
      "Language-model speed at the real size (Qwen2.5-0.5B shape, random weights made in memory), per dtype in\n"
      "one run: prefill tokens/s as useful FLOP/s over the same dtype's matmul probe; decode tokens/s as weight\n"
      "bytes streamed per second over the memory read bandwidth of every core; peak resident memory.");
  cl.option("--threads", "N", "BLAS threads (0: every core this process may use)", threads)
      .option("--torch-threads", "N", "libtorch intra-op threads (0: as configure_cpu_threads sets them)",
              torch_threads)
      .option(
          "--dtypes", "LIST", bench::kDtypesHelp, [&](const std::string& v) { dtypes = bench::choose_dtypes(v); },
          "auto")
      .option(
          "--prefill", "LIST", "prompt lengths to prefill",
          [&](const std::string& v) { prefill_lengths = bench::parse_integer_list(v); }, "300,2600")
      .option("--runs", "N", "timed prefills per length after one warm-up (median)", runs)
      .option("--decode-tokens", "N", "timed decode steps after 2 warm-up steps (median step)", decode_tokens)
      .option("--decode-context", "N", "prompt tokens before decoding", decode_context)
      .option("--batch", "N", "decode batch measured after batch 1 (1: batch 1 only)", batch)
      .option("--layers", "N", "decoder layers (0: the real 24; e.g. 2 for a quick check)", layers)
      .flag("--no-thread-study", "skip the thread and decode-kernel studies", no_study);
  cl.parse(argc, argv);
  if (runs < 1 || decode_tokens < 1 || batch < 1 || decode_context < 1 || layers < 0 || threads < 0 ||
      torch_threads < 0)
    cl.fail("--runs, --decode-tokens, --batch and --decode-context must be at least 1");
  for (int64_t T : prefill_lengths)
    if (T < 1) cl.fail("prefill lengths must be at least 1");
  if (dtypes.dtypes.empty()) dtypes = bench::choose_dtypes("auto");

  threads = configure_cpu_threads(threads);
  if (torch_threads > 0) torch::set_num_threads(torch_threads);
  std::cout << "runtime: " << describe_cpu_runtime() << "\n";
  if (!dtypes.note.empty()) std::cout << dtypes.note << "\n";
  std::printf("prefill ratio = useful FLOP/s / the same dtype's matmul probe (torch::mm %d^2, median of 5 after 1 "
              "warm-up); decode ratio = weight GB/s / memory read GB/s of %d std::thread workers (bench_common.h); "
              "float32 decode's matvec_rows runs on libtorch's intra-op pool: %d thread(s)\n",
              bench::kProbeMatmulSize, threads, torch::get_num_threads());
  if (!no_study) {
    thread_study(threads);
    decode_kernel_study();
    if (torch_threads > 0) torch::set_num_threads(torch_threads);
  }

  LlmConfig config;  // the defaults are Qwen2.5-0.5B's sizes
  if (layers > 0) config.num_hidden_layers = layers;
  std::vector<int> batches = {1};
  if (batch != 1) batches.push_back(batch);
  std::vector<std::vector<Row>> table;
  std::vector<double> peaks;
  bool all_resets = true;
  for (const auto& dtype_name : dtypes.dtypes) {
    std::printf("\n== %s ==\n", dtype_name.c_str());
    const ComputeOptions options = ComputeOptions::from_strings("cpu", dtype_name);
    const double weight_bytes = decode_weight_bytes(config, options.dtype) +
                                static_cast<double>(config.vocab_size) * config.hidden_size *
                                    torch::elementSize(options.dtype);
    // The tensor memory cache still holds the blocks of the previous dtype's model: freed so
    // that this dtype's peak is its own.
    release_cpu_tensor_cache();
    const bool peak_resets = bench::reset_peak_memory();
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
      std::printf("model: Qwen2 %d layers, hidden %d, vocab %lld, %s, %.2f GB of weights, made in %.1f s, RSS %.2f GB\n",
                  config.num_hidden_layers, config.hidden_size, static_cast<long long>(config.vocab_size),
                  dtype_name.c_str(), weight_bytes / 1e9, made.wall(), bench::status_mib("VmRSS:") * 1048576 / 1e9);
      model_peak = bench::status_mib("VmHWM:");

      // Prefill: the prompt at once, then the last position's logits (what generation does).
      for (int64_t T : prefill_lengths) {
        const bench::MatmulProbe gemm = bench::matmul_probe(dtype_name);
        bench::reset_peak_memory();
        const torch::Tensor embeds = torch::randn({1, T, config.hidden_size}).to(options.dtype);
        const bench::Stopwatch sw;
        const double s = bench::median_seconds(
            [&] {
              KvCache cache = model.make_cache(1, T);
              const torch::Tensor last = model.forward(embeds, cache).select(1, T - 1);
              (void)model.logits(last).argmax(-1).item<int64_t>();
            },
            1, runs);
        const double share = sw.cpu_share(threads);
        model_peak = std::max(model_peak, bench::status_mib("VmHWM:"));
        const double achieved = prefill_flops(config, T) / s / 1e9;
        std::printf("prefill %5lld tokens: %7.2f s (median of %d), %7.1f tokens/s, %6.1f GFLOP/s | matmul %6.1f "
                    "GFLOP/s | ratio %.2f (target >= 0.6) | cpu share %.2f | RSS %.2f GB\n",
                    static_cast<long long>(T), s, runs, T / s, achieved, gemm.gflops, achieved / gemm.gflops, share,
                    bench::status_mib("VmRSS:") * 1048576 / 1e9);
        std::fflush(stdout);
        rows.push_back({"prefill " + std::to_string(T) + " tokens", T / s, achieved / gemm.gflops});
      }

      // Decode: the greedy step of generate_greedy (last position's logits, argmax, embed,
      // forward one position) after a prompt of decode_context tokens; the median of the timed
      // steps after two warm-up steps.
      for (int b : batches) {
        const bench::BandwidthProbe all = bench::memory_read_probe(threads);
        const bench::BandwidthProbe one = bench::memory_read_probe(1);
        bench::reset_peak_memory();
        const torch::Tensor embeds = torch::randn({b, decode_context, config.hidden_size}).to(options.dtype);
        const int warmup = 2;
        KvCache cache = model.make_cache(b, decode_context + warmup + decode_tokens);
        torch::Tensor last = model.forward(embeds, cache).select(1, decode_context - 1);
        const bench::Stopwatch sw;
        const double per_step = bench::median_seconds(
            [&] {
              const torch::Tensor next = model.logits(last).argmax(-1).view({b, 1});
              last = model.forward(model.embed(next), cache).select(1, 0);
              (void)last.sum().item<float>();
            },
            warmup, decode_tokens);
        const double share = sw.cpu_share(threads);
        model_peak = std::max(model_peak, bench::status_mib("VmHWM:"));
        const double streamed = decode_weight_bytes(config, options.dtype) / per_step / 1e9;
        std::printf("decode batch %d (context %lld): %6.1f ms/step (median of %d), %6.2f tokens/s | weights %5.1f "
                    "GB/s | memory read %5.1f GB/s on %d threads (1 thread: %5.1f) | ratio %.2f (target >= 0.5) | "
                    "cpu share %.2f\n",
                    b, static_cast<long long>(decode_context), per_step * 1e3, decode_tokens, b / per_step, streamed,
                    all.gbps, all.threads, one.gbps, streamed / all.gbps, share);
        std::fflush(stdout);
        rows.push_back({"decode batch " + std::to_string(b), b / per_step, streamed / all.gbps});
      }
    }
    // Without resets (old kernels) the process peak, measuring buffers included, is all there is.
    const double peak = (peak_resets ? model_peak : bench::status_mib("VmHWM:")) * 1048576 / 1e9;
    const double limit = 1.3 * weight_bytes / 1e9 + 0.5;
    std::printf("peak resident memory %s %.2f GB | limit 1.3 x %.2f GB + 0.5 GB = %.2f GB | %s\n",
                peak_resets ? "while the model ran (measuring buffers excluded)" : "of the process", peak,
                weight_bytes / 1e9, limit, peak <= limit ? "within" : "OVER");
    table.push_back(std::move(rows));
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
