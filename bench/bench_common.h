// What every benchmark shares, so that their figures mean the same thing:
//
//   - CommandLine: `--help` (usage on stdout, exit 0) and the rejection of anything else it does
//     not know (message and usage on stderr, exit 2), before any work starts;
//   - median_seconds: the one statistic of a repeated timing, the median of `runs` timed calls
//     after `warmup` untimed ones;
//   - matmul_probe: the one throughput reference, a square GEMM of kProbeMatmulSize through
//     torch::mm in the dtype asked for, on the threads configure_cpu_threads set up, reported as
//     the median of its runs; every "efficiency" of a bench is achieved FLOP/s over this probe's
//     figure for the same dtype in the same run;
//   - memory_read_probe: read bandwidth of plain threads summing disjoint slices of a buffer
//     (libtorch's own reductions run on its intra-op pool, which is 1 thread when OpenBLAS has
//     its own pthread pool, see inference/runtime.h), so that the figure is what `threads` cores
//     can stream;
//   - resident memory (VmRSS / VmHWM) with a reset of the peak, CPU time, load average;
//   - the dtypes a bench compares (--dtypes);
//   - ResultLine: one machine-readable line per figure ("RESULT name=... key=value ..."), printed
//     beside the human-readable output, for scripts that collect the figures into a table;
//   - bench_device.h: the device a model bench runs on (--device cpu|cuda[:N]), timings that
//     wait for the device, the probes on the device, the peak memory of a stage.
//
// bench_common.cpp has no libtorch in it; the probes and the dtype list that need libtorch or
// inference/ are in bench_common_torch.cpp (library unibiomed_bench_torch).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace unibiomed::bench {

// ---- command line ----

class CommandLine {
 public:
  // `program` as it is called, `synopsis` the lines printed under the usage line (what it
  // measures).
  CommandLine(std::string program, std::string synopsis);

  // --NAME VALUE (also --NAME=VALUE). The usage line shows METAVAR and the target's value at the
  // time of the call as its default. A value that does not parse completely is a usage error.
  CommandLine& option(const std::string& name, const std::string& metavar, const std::string& help, int& target);
  CommandLine& option(const std::string& name, const std::string& metavar, const std::string& help, unsigned& target);
  CommandLine& option(const std::string& name, const std::string& metavar, const std::string& help, int64_t& target);
  CommandLine& option(const std::string& name, const std::string& metavar, const std::string& help,
                      std::string& target);
  // A value handed to `set`, which may throw std::exception to reject it (usage error, exit 2).
  CommandLine& option(const std::string& name, const std::string& metavar, const std::string& help,
                      std::function<void(const std::string&)> set, const std::string& default_text = "");
  // --NAME alone: sets `target` to true.
  CommandLine& flag(const std::string& name, const std::string& help, bool& target);
  // The options the model benches share: --dtype auto|float32|bfloat16 (auto: float32 on the
  // CPU, bfloat16 on a GPU) and --config real|tiny (the size of the random checkpoint a bench
  // writes when it is given no --model; tiny for a quick check).
  CommandLine& dtype_option(std::string& target);
  CommandLine& config_option(std::string& target);

  // Reads argv. --help or -h: usage on stdout, exit(0). An unknown argument, a missing or bad
  // value: "PROGRAM: what is wrong" and the usage on stderr, exit(2).
  void parse(int argc, char** argv);
  // For checks across options after parse(): the message and the usage on stderr, exit(2).
  [[noreturn]] void fail(const std::string& message) const;
  std::string usage() const;

 private:
  struct Option {
    std::string name, metavar, help, default_text;
    std::function<void(const std::string&)> set;  // empty for a flag
    bool* flag = nullptr;
  };
  const Option* find(const std::string& name) const;
  std::string program_, synopsis_;
  std::vector<Option> options_;
};

// Parses a whole decimal integer ("12", not "12x" or ""); throws std::invalid_argument.
int64_t parse_integer(const std::string& text);
// "300,2600" -> {300, 2600}; throws std::invalid_argument on an empty or bad item.
std::vector<int64_t> parse_integer_list(const std::string& text);
// "a,b" -> {"a", "b"}; empty items are an error (std::invalid_argument).
std::vector<std::string> split_list(const std::string& text);

// ---- timing ----

// Median of `runs` (>= 1) timed calls of fn after `warmup` untimed ones, in seconds.
double median_seconds(const std::function<void()>& fn, int warmup, int runs);
// The median of values (the upper one of the middle two for an even count); 0 for none.
double median(std::vector<double> values);
// Seconds of CPU time of the whole process (all threads).
double process_cpu_seconds();
// Wall and CPU time of a phase; cpu_share(threads) = CPU seconds / (wall seconds x threads): how
// much of the cores the process got (below 1: waiting, or other programs on the cores).
struct Stopwatch {
  Stopwatch();
  double wall() const;
  double cpu() const;
  double cpu_share(int threads) const;
  double wall0 = 0, cpu0 = 0;  // steady-clock and CPU seconds at the start
};
// Seconds on the steady clock (for differences only).
double steady_seconds();
// The first three fields of /proc/loadavg ("1.02 0.98 0.75"), empty where unreadable.
std::string load_average();

// ---- machine-readable results ----

// One figure as one line of `key=value` fields, in the order set, starting with "RESULT
// name=NAME": e.g. "RESULT name=vision_tiles_per_s batch=8 device=cuda:0 dtype=bfloat16
// value=123.4 unit=tiles/s peak_gpu_mib=812". Every figure a bench prints for a table gets one,
// so that a script can collect them without reading the prose (grep '^RESULT '). Keys and
// values never contain blanks or '=' (replaced by '_'); numbers are printed with 6 significant
// digits, whole numbers without a fraction; a number that is not finite prints as "nan".
class ResultLine {
 public:
  explicit ResultLine(const std::string& name);
  ResultLine& set(const std::string& key, const std::string& value);
  ResultLine& set(const std::string& key, const char* value) { return set(key, std::string(value)); }
  ResultLine& set(const std::string& key, double value);
  ResultLine& set(const std::string& key, int value) { return set(key, static_cast<double>(value)); }
  ResultLine& set(const std::string& key, int64_t value) { return set(key, static_cast<double>(value)); }
  std::string str() const;
  // The line on stdout, flushed.
  void print() const;

 private:
  std::string text_;
};
// A number as ResultLine writes it ("8", "123.4", "0.000123", "nan").
std::string result_number(double value);

// ---- memory ----

// A field of /proc/self/status in MiB ("VmRSS:", "VmHWM:"); -1 where missing.
double status_mib(const char* field);
// Resets the peak resident size (VmHWM) to the current size ("5" into /proc/self/clear_refs,
// Linux >= 4.0). Returns false where the kernel refuses: VmHWM is then the process's peak.
bool reset_peak_memory();

// Read bandwidth of `threads` std::thread workers (0: every core this process may use), each
// summing its own contiguous slice of a `bytes` buffer (written before, so resident), in GB/s:
// bytes / median time of `runs` passes after `warmup` passes. A pass is timed from the release
// of the already started (parked) workers to the end of the slowest one.
struct BandwidthProbe {
  int threads = 0;
  double bytes = 0;
  int warmup = 0, runs = 0;
  double median_seconds = 0;
  double gbps = 0;
};
inline constexpr std::size_t kProbeBandwidthBytes = std::size_t{256} << 20;  // 256 MiB: far beyond any cache
BandwidthProbe memory_read_probe(int threads = 0, std::size_t bytes = kProbeBandwidthBytes, int warmup = 2,
                                 int runs = 7);

// ---- libtorch side (bench_common_torch.cpp, library unibiomed_bench_torch) ----

// torch::mm of two n x n matrices of `dtype` ("float32", "bfloat16") with the threads the
// process set up (configure_cpu_threads), 2 n^3 FLOP per product: median of `runs` products
// after `warmup`. n = 2048 (32 MiB of operands in float32, beyond the caches; 17.2 GFLOP).
inline constexpr int kProbeMatmulSize = 2048;
struct MatmulProbe {
  std::string dtype;
  std::string device = "cpu";  // where it ran (bench_device.h's matmul_probe: also "cuda:N")
  int n = 0, warmup = 0, runs = 0;
  double median_seconds = 0;
  double gflops = 0;
  // "float32 matmul 2048^2: 151.2 GFLOP/s (median of 5 after 1 warm-up)"; " on cuda:0" after the
  // size for a GPU.
  std::string describe() const;
};
MatmulProbe matmul_probe(const std::string& dtype = "float32", int n = kProbeMatmulSize, int warmup = 1, int runs = 5);

// The dtypes of --dtypes. "auto": float32, plus bfloat16 where the CPU has bfloat16 dot products
// (inference::cpu_has_native_bfloat16); otherwise `note` says why bfloat16 is left out. A list:
// each of float32, bfloat16 at most once, in the order given; anything else throws
// std::invalid_argument.
struct DtypeChoice {
  std::vector<std::string> dtypes;
  std::string note;  // empty unless "auto" left bfloat16 out
};
DtypeChoice choose_dtypes(const std::string& list);
inline constexpr const char* kDtypesHelp =
    "compute dtypes, run one after another in this run (float32,bfloat16); auto: float32, plus bfloat16 where the "
    "CPU has bfloat16 dot products";

}  // namespace unibiomed::bench
