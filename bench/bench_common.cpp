// SPDX-License-Identifier: GPL-3.0-or-later
#include "bench/bench_common.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace unibiomed::bench {

// ---- command line ----

CommandLine::CommandLine(std::string program, std::string synopsis)
    : program_(std::move(program)), synopsis_(std::move(synopsis)) {}

CommandLine& CommandLine::option(const std::string& name, const std::string& metavar, const std::string& help,
                                 std::function<void(const std::string&)> set, const std::string& default_text) {
  options_.push_back({name, metavar, help, default_text, std::move(set), nullptr});
  return *this;
}

CommandLine& CommandLine::option(const std::string& name, const std::string& metavar, const std::string& help,
                                 int& target) {
  return option(
      name, metavar, help,
      [&target](const std::string& v) {
        const int64_t n = parse_integer(v);
        if (n < INT32_MIN || n > INT32_MAX) throw std::invalid_argument("out of range");
        target = static_cast<int>(n);
      },
      std::to_string(target));
}

CommandLine& CommandLine::option(const std::string& name, const std::string& metavar, const std::string& help,
                                 unsigned& target) {
  return option(
      name, metavar, help,
      [&target](const std::string& v) {
        const int64_t n = parse_integer(v);
        if (n < 0 || n > UINT32_MAX) throw std::invalid_argument("out of range");
        target = static_cast<unsigned>(n);
      },
      std::to_string(target));
}

CommandLine& CommandLine::option(const std::string& name, const std::string& metavar, const std::string& help,
                                 int64_t& target) {
  return option(
      name, metavar, help, [&target](const std::string& v) { target = parse_integer(v); }, std::to_string(target));
}

CommandLine& CommandLine::option(const std::string& name, const std::string& metavar, const std::string& help,
                                 std::string& target) {
  return option(
      name, metavar, help, [&target](const std::string& v) { target = v; }, target);
}

CommandLine& CommandLine::dtype_option(std::string& target) {
  return option(
      "--dtype", "auto|float32|bfloat16", "compute dtype (auto: float32 on cpu, bfloat16 on cuda)",
      [&target](const std::string& v) {
        if (v != "auto" && v != "float32" && v != "bfloat16") throw std::invalid_argument("auto, float32 or bfloat16");
        target = v;
      },
      target);
}

CommandLine& CommandLine::config_option(std::string& target) {
  return option(
      "--config", "real|tiny", "size of the random checkpoint written without --model (tiny: a quick check)",
      [&target](const std::string& v) {
        if (v != "real" && v != "tiny") throw std::invalid_argument("real or tiny");
        target = v;
      },
      target);
}

CommandLine& CommandLine::flag(const std::string& name, const std::string& help, bool& target) {
  options_.push_back({name, "", help, "", {}, &target});
  return *this;
}

const CommandLine::Option* CommandLine::find(const std::string& name) const {
  for (const auto& o : options_)
    if (o.name == name) return &o;
  return nullptr;
}

std::string CommandLine::usage() const {
  std::ostringstream out;
  out << "usage: " << program_;
  for (const auto& o : options_) out << " [" << o.name << (o.set ? " " + o.metavar : "") << "]";
  out << "\n";
  if (!synopsis_.empty()) out << synopsis_ << (synopsis_.back() == '\n' ? "" : "\n");
  out << "options:\n";
  for (const auto& o : options_) {
    std::string head = "  " + o.name + (o.set ? " " + o.metavar : "");
    if (head.size() < 26)
      head.resize(26, ' ');
    else
      head += "\n" + std::string(26, ' ');
    out << head << o.help;
    if (o.set && !o.default_text.empty()) out << " (default " << o.default_text << ")";
    out << "\n";
  }
  out << std::string("  --help, -h").append(14, ' ') << "this text\n";
  return out.str();
}

void CommandLine::fail(const std::string& message) const {
  std::cerr << program_ << ": " << message << "\n" << usage();
  std::exit(2);
}

void CommandLine::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage();
      std::exit(0);
    }
    std::string value;
    bool inline_value = false;
    if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      inline_value = true;
    }
    const Option* o = find(arg);
    if (!o) fail("unknown argument '" + arg + "'");
    if (o->flag) {
      if (inline_value) fail(arg + " takes no value");
      *o->flag = true;
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) fail(arg + " needs a value (" + o->metavar + ")");
      value = argv[++i];
    }
    try {
      o->set(value);
    } catch (const std::exception& e) {
      fail("bad value '" + value + "' for " + arg + " (" + e.what() + ")");
    }
  }
}

int64_t parse_integer(const std::string& text) {
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &used, 10);
  } catch (const std::exception&) {
    throw std::invalid_argument("not an integer");
  }
  if (used != text.size()) throw std::invalid_argument("not an integer");
  return n;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (true) {
    const size_t comma = text.find(',', at);
    out.push_back(text.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (out.back().empty()) throw std::invalid_argument("empty item in list");
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

std::vector<int64_t> parse_integer_list(const std::string& text) {
  std::vector<int64_t> out;
  for (const auto& item : split_list(text)) out.push_back(parse_integer(item));
  return out;
}

// ---- timing ----

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

Stopwatch::Stopwatch() : wall0(steady_seconds()), cpu0(process_cpu_seconds()) {}
double Stopwatch::wall() const {
  return steady_seconds() - wall0;
}
double Stopwatch::cpu() const {
  return process_cpu_seconds() - cpu0;
}
double Stopwatch::cpu_share(int threads) const {
  const double w = wall();
  return w > 0 && threads > 0 ? cpu() / (w * threads) : 0;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double median_seconds(const std::function<void()>& fn, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < std::max(1, runs); ++i) {
    const double t0 = steady_seconds();
    fn();
    times.push_back(steady_seconds() - t0);
  }
  return median(times);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  if (!(in >> a >> b >> c)) return "";
  return a + " " + b + " " + c;
}

// ---- machine-readable results ----

namespace {

std::string result_token(const std::string& text) {
  std::string out = text.empty() ? std::string("-") : text;
  for (char& c : out)
    if (c == '=' || c == ' ' || c == '\t' || c == '\n' || c == '\r') c = '_';
  return out;
}

}  // namespace

std::string result_number(double value) {
  if (!std::isfinite(value)) return "nan";
  char buf[64];
  if (value == std::floor(value) && std::fabs(value) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", value);
  else
    std::snprintf(buf, sizeof buf, "%.6g", value);
  return buf;
}

ResultLine::ResultLine(const std::string& name) : text_("RESULT name=" + result_token(name)) {}

ResultLine& ResultLine::set(const std::string& key, const std::string& value) {
  text_ += " " + result_token(key) + "=" + result_token(value);
  return *this;
}

ResultLine& ResultLine::set(const std::string& key, double value) {
  return set(key, result_number(value));
}

std::string ResultLine::str() const {
  return text_;
}

void ResultLine::print() const {
  std::fflush(stdout);
  std::printf("%s\n", text_.c_str());
  std::fflush(stdout);
}

// ---- memory ----

double status_mib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::atof(line.c_str() + std::strlen(field)) / 1024.0;
  return -1;
}

bool reset_peak_memory() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

namespace {

int cores_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return std::max(1u, std::thread::hardware_concurrency());
}

// Sum of 64-bit words with eight independent integer accumulators: integer additions may be
// reordered, so the compiler keeps them in vector registers and the loop is bound by memory.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  for (; i < n; ++i) acc[0] += p[i];
  uint64_t s = 0;
  for (uint64_t a : acc) s += a;
  return s;
}

}  // namespace

BandwidthProbe memory_read_probe(int threads, size_t bytes, int warmup, int runs) {
  BandwidthProbe r;
  r.threads = threads > 0 ? threads : cores_available();
  r.warmup = warmup;
  r.runs = std::max(1, runs);
  const size_t words = bytes / sizeof(uint64_t);
  r.bytes = static_cast<double>(words * sizeof(uint64_t));
  std::unique_ptr<uint64_t[]> buffer(new uint64_t[words]);

  // Workers started once and parked on a condition variable between passes (no spinning that
  // would take the cores from the workers of a pass); each pass is released by `generation`.
  std::mutex m;
  std::condition_variable wake, finished;
  int generation = 0, done = 0;
  bool quit = false;
  std::atomic<uint64_t> sink{0};
  std::vector<std::thread> workers;
  const int n = r.threads;
  for (int w = 0; w < n; ++w)
    workers.emplace_back([&, w] {
      const size_t begin = words * w / n, end = words * (w + 1) / n;
      // First touch by the worker that reads the slice.
      for (size_t i = begin; i < end; ++i) buffer[i] = i * 0x9E3779B97F4A7C15ull;
      int seen = 0;
      std::unique_lock<std::mutex> lock(m);
      while (true) {
        if (++done == n) finished.notify_one();
        wake.wait(lock, [&] { return quit || generation != seen; });
        if (quit) return;
        seen = generation;
        lock.unlock();
        sink.fetch_add(sum_words(buffer.get() + begin, end - begin), std::memory_order_relaxed);
        lock.lock();
      }
    });
  std::vector<double> times;
  {
    std::unique_lock<std::mutex> lock(m);
    finished.wait(lock, [&] { return done == n; });
    for (int pass = 0; pass < r.warmup + r.runs; ++pass) {
      done = 0;
      ++generation;
      const double t0 = steady_seconds();
      wake.notify_all();
      finished.wait(lock, [&] { return done == n; });
      if (pass >= r.warmup) times.push_back(steady_seconds() - t0);
    }
    quit = true;
  }
  wake.notify_all();
  for (auto& t : workers) t.join();
  if (sink.load() == 42) std::fputs("", stderr);  // keeps the sums alive
  r.median_seconds = median(times);
  r.gbps = r.bytes / r.median_seconds / 1e9;
  return r;
}

}  // namespace unibiomed::bench
