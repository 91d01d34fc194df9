// Language-model speed on this machine, at the real size (Qwen2.5-0.5B shape, random weights made
// in memory): prefill tokens/s and decode tokens/s, each printed beside the matrix-multiply
// throughput and memory bandwidth measured in the same run, as efficiency ratios:
//   prefill: useful FLOP/s (projections + causal attention + last-position lm_head) / GEMM FLOP/s
//   decode:  weight bytes streamed per token x tokens/s / memory read bandwidth
// and the peak resident memory against 1.3 x the weights + 0.5 GB.
//
//   bench_llm [--threads N] [--dtype float32|bfloat16] [--prefill 300,2600] [--decode-tokens 16]
//             [--decode-context 300] [--batch 4] [--no-thread-study] [--torch-threads N]
// SPDX-License-Identifier: GPL-3.0-or-later
#include <torch/torch.h>

#include <algorithm>
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

#include "inference/checkpoint_layout.h"
#include "inference/cpu_matvec.h"
#include "inference/model_config.h"
#include "inference/qwen2.h"
#include "inference/runtime.h"
#include "inference/weights.h"

namespace {

using namespace unibiomed::inference;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

template <typename F>
double best_of(int reps, F&& f) {
  double best = 1e300;
  for (int i = 0; i < reps; ++i) {
    const auto t = Clock::now();
    f();
    best = std::min(best, seconds_since(t));
  }
  return best;
}

// float32 GEMM throughput: best of 5 products of two 2048x2048 matrices.
double matmul_gflops() {
  torch::NoGradGuard g;
  const torch::Tensor a = torch::randn({2048, 2048}), b = torch::randn({2048, 2048});
  torch::Tensor c = torch::empty({2048, 2048});
  torch::mm_out(c, a, b);
  return 2.0 * 2048 * 2048 * 2048 / best_of(5, [&] { torch::mm_out(c, a, b); }) / 1e9;
}

// Memory read bandwidth: best of 5 sums over 128 MiB (4x the last-level cache), and copy
// bandwidth counting bytes read plus written.
std::pair<double, double> memory_gbps() {
  torch::NoGradGuard g;
  const torch::Tensor src = torch::rand({32 << 20});
  torch::Tensor dst = torch::empty_like(src);
  dst.copy_(src);
  const double bytes = static_cast<double>(src.numel()) * 4;
  const double read = bytes / best_of(5, [&] { (void)src.sum().item<float>(); }) / 1e9;
  const double copy = 2 * bytes / best_of(5, [&] { dst.copy_(src); }) / 1e9;
  return {read, copy};
}

double status_gb(const char* field) {  // VmHWM / VmRSS of /proc/self/status, in GB
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(std::strlen(field))) * 1024 / 1e9;
  return -1;
}

// Resets the peak resident size (VmHWM) to the current size (Linux: "5" to clear_refs), so that
// the peak reported is the model's own and not that of this program's measuring buffers (the
// bandwidth measurement alone holds 256 MB); returns false where the kernel refuses.
bool reset_peak_memory() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// CPU seconds of the whole process: on a shared machine the wall time also counts time other
// programs held the cores; "cpu share" = CPU seconds / (wall seconds x threads) shows that.
double cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

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

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
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
    const double lin = 2.0 * 512 * 896 * 9728 / best_of(3, [&] { (void)torch::linear(x, w); }) / 1e9;
    const double qk = 2.0 * 896 * 64 * 2600 / best_of(5, [&] { (void)torch::mm(q, k.t()); }) / 1e9;
    const double pv = 2.0 * 896 * 64 * 2600 / best_of(5, [&] { (void)torch::mm(p, k); }) / 1e9;
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
    const double gemm = bytes / best_of(3, [&] { (void)torch::linear(x, w); }) / 1e9;
    const double mv = bytes / best_of(3, [&] {
                        for (int64_t r = 0; r < rows; ++r) (void)torch::mv(w, x[r]);
                      }) / 1e9;
    const double ours = bytes / best_of(3, [&] { (void)matvec_rows(x, w); }) / 1e9;
    std::printf("  %lld | %5.1f | %5.1f | %5.1f\n", static_cast<long long>(rows), gemm, mv, ours);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  std::string dtype_name = "float32";
  std::vector<int64_t> prefill_lengths = {300, 2600};
  int decode_tokens = 16, batch = 4;
  int64_t decode_context = 300;
  bool study = true;
  int torch_threads = 0;  // 0: the same as --threads
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "bench_llm: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::stoi(value());
    else if (a == "--dtype") dtype_name = value();
    else if (a == "--prefill") prefill_lengths = parse_list(value());
    else if (a == "--decode-tokens") decode_tokens = std::stoi(value());
    else if (a == "--decode-context") decode_context = std::stoll(value());
    else if (a == "--batch") batch = std::stoi(value());
    else if (a == "--no-thread-study") study = false;
    else if (a == "--torch-threads") torch_threads = std::stoi(value());
    else {
      std::cerr << "usage: bench_llm [--threads N] [--dtype float32|bfloat16] [--prefill 300,2600] "
                   "[--decode-tokens 16] [--decode-context 300] [--batch 4] [--no-thread-study] [--torch-threads N]\n";
      return 2;
    }
  }
  threads = configure_cpu_threads(threads);
  if (torch_threads > 0) torch::set_num_threads(torch_threads);
  std::cout << "runtime: " << describe_cpu_runtime() << "\n";
  if (study) {
    thread_study(threads);
    decode_kernel_study();
  }

  const ComputeOptions options = ComputeOptions::from_strings("cpu", dtype_name);
  const LlmConfig config;  // the defaults are Qwen2.5-0.5B's sizes
  const double weight_bytes = decode_weight_bytes(config, options.dtype) +
                              static_cast<double>(config.vocab_size) * config.hidden_size * torch::elementSize(options.dtype);
  const bool peak_resets = reset_peak_memory();
  auto t0 = Clock::now();
  Weights weights(random_llm(config, options.dtype), options);
  Qwen2Model model(weights, config);
  std::printf("model: Qwen2 %d layers, hidden %d, vocab %lld, %s, %.2f GB of weights, made in %.1f s, RSS %.2f GB\n",
              config.num_hidden_layers, config.hidden_size, static_cast<long long>(config.vocab_size),
              dtype_name.c_str(), weight_bytes / 1e9, seconds_since(t0), status_gb("VmRSS:"));
  double model_peak = status_gb("VmHWM:");

  // Prefill: the prompt at once, then the last position's logits (what generation does).
  for (int64_t T : prefill_lengths) {
    const double gemm = matmul_gflops();
    reset_peak_memory();
    const torch::Tensor embeds = torch::randn({1, T, config.hidden_size}).to(options.dtype);
    KvCache cache = model.make_cache(1, T);
    t0 = Clock::now();
    const double cpu0 = cpu_seconds();
    const torch::Tensor last = model.forward(embeds, cache).select(1, T - 1);
    (void)model.logits(last).argmax(-1).item<int64_t>();
    const double s = seconds_since(t0), cpu = cpu_seconds() - cpu0;
    model_peak = std::max(model_peak, status_gb("VmHWM:"));
    const double achieved = prefill_flops(config, T) / s / 1e9;
    std::printf("prefill %5lld tokens: %7.2f s, %7.1f tokens/s, %6.1f GFLOP/s | GEMM %6.1f GFLOP/s | ratio %.2f "
                "(target >= 0.6) | cpu share %.2f | RSS %.2f GB\n",
                static_cast<long long>(T), s, T / s, achieved, gemm, achieved / gemm, cpu / (s * threads),
                status_gb("VmRSS:"));
  }

  // Decode: the greedy step of generate_greedy (last position's logits, argmax, embed, forward
  // one position) after a prompt of decode_context tokens; median step time.
  for (int b : {1, batch}) {
    const auto [read_bw, copy_bw] = memory_gbps();
    reset_peak_memory();
    const torch::Tensor embeds = torch::randn({b, decode_context, config.hidden_size}).to(options.dtype);
    KvCache cache = model.make_cache(b, decode_context + decode_tokens);
    torch::Tensor last = model.forward(embeds, cache).select(1, decode_context - 1);
    std::vector<double> steps;
    const auto decode_start = Clock::now();
    const double cpu0 = cpu_seconds();
    for (int i = 0; i < decode_tokens; ++i) {
      t0 = Clock::now();
      const torch::Tensor next = model.logits(last).argmax(-1).view({b, 1});
      last = model.forward(model.embed(next), cache).select(1, 0);
      (void)last.sum().item<float>();
      steps.push_back(seconds_since(t0));
    }
    model_peak = std::max(model_peak, status_gb("VmHWM:"));
    const double share = (cpu_seconds() - cpu0) / (seconds_since(decode_start) * threads);
    std::sort(steps.begin(), steps.end());
    const double per_step = steps[steps.size() / 2];
    const double streamed = decode_weight_bytes(config, options.dtype) / per_step / 1e9;
    std::printf("decode batch %d (context %lld): %6.1f ms/step, %6.2f tokens/s | weights %5.1f GB/s | memory read "
                "%5.1f GB/s (copy %5.1f) | ratio %.2f (target >= 0.5) | cpu share %.2f\n",
                b, static_cast<long long>(decode_context), per_step * 1e3, b / per_step, streamed, read_bw, copy_bw,
                streamed / read_bw, share);
  }
  // Without resets (old kernels) the process peak, measuring buffers included, is all there is.
  const double peak = peak_resets ? model_peak : status_gb("VmHWM:"), limit = 1.3 * weight_bytes / 1e9 + 0.5;
  std::printf("peak resident memory %s %.2f GB | limit 1.3 x %.2f GB + 0.5 GB = %.2f GB | %s\n",
              peak_resets ? "while the model ran (measuring buffers excluded)" : "of the process", peak,
              weight_bytes / 1e9, limit, peak <= limit ? "within" : "OVER");
  return 0;
}
