// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/runtime.h"

#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <dlfcn.h>
#include <sched.h>
#include <torch/torch.h>
#include <torch/version.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

namespace unibiomed::inference {

namespace {

// OpenBLAS's control functions, looked up at run time: a libtorch built with MKL (PyTorch
// wheels) has no OpenBLAS in the process, and then there is nothing to configure.
template <typename F>
F openblas_function(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_DEFAULT, name));
}

// c10::Allocator changed in libtorch 2.x: allocate() is no longer const (2.3) and copy_data()
// (2.2) must be implemented. The cache is written once for both.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define UNIBIOMED_ALLOCATE_CONST
#else
#define UNIBIOMED_ALLOCATE_CONST const
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
#define UNIBIOMED_ALLOCATOR_HAS_COPY_DATA 1
#endif

// The tensor memory cache (runtime.h). Blocks under kMinCached bytes go to libtorch's default
// allocator; larger ones are rounded up to a size class and kept on free.
class CachingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kMinCached = size_t{1} << 20;
  static constexpr size_t kAlignment = 64;  // libtorch's CPU alignment

  explicit CachingCpuAllocator(c10::Allocator* fallback) : fallback_(fallback) {}

  // The data pointer is also the deleter's context, as Allocator::raw_allocate requires.
  c10::DataPtr allocate(size_t n) UNIBIOMED_ALLOCATE_CONST override {
    if (n < kMinCached) return fallback_->allocate(n);
    const size_t bytes = size_class(n);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        ++hits_;
      } else {
        ++misses_;
      }
    }
    if (!p) {
      if (::posix_memalign(&p, kAlignment, bytes) != 0 || !p) {
        // Give the cached blocks back and try once more before reporting the shortage.
        release();
        p = nullptr;
        if (::posix_memalign(&p, kAlignment, bytes) != 0 || !p) throw std::bad_alloc();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      live_[p] = bytes;
    }
    return {p, p, &CachingCpuAllocator::deleter, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::deleter; }
#ifdef UNIBIOMED_ALLOCATOR_HAS_COPY_DATA
  // Plain host memory on both sides (Allocator::clone).
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    if (count) std::memcpy(dest, src, count);
  }
#endif

  void set_limit(size_t max_cached) {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_ = max_cached;
    evict_to(limit_, 0);
  }
  void release() const {
    std::lock_guard<std::mutex> lock(mutex_);
    evict_to(0, 0);
  }
  CpuTensorCacheStats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    CpuTensorCacheStats s;
    s.installed = true;
    s.max_cached_bytes = limit_;
    s.cached_bytes = cached_;
    s.hits = hits_;
    s.misses = misses_;
    return s;
  }

  static const CachingCpuAllocator* instance;

 private:
  // n rounded up to a multiple of 1/8 of its power of two: at most 12.5% more.
  static size_t size_class(size_t n) {
    size_t p = kMinCached;
    while (p * 2 <= n) p *= 2;
    const size_t step = p / 8;
    return (n + step - 1) / step * step;
  }

  static void deleter(void* p) { instance->give_back(p); }

  void give_back(void* p) const {
    size_t bytes = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = live_.find(p);
      if (it != live_.end()) {
        bytes = it->second;
        live_.erase(it);
        if (bytes <= limit_) {
          evict_to(limit_ - bytes, bytes);
          if (cached_ + bytes <= limit_) {
            free_[bytes].push_back(p);
            cached_ += bytes;
            return;
          }
        }
      }
    }
    if (bytes > 0) std::free(p);
    else if (p) fallback_->raw_deleter()(p);  // a small block of raw_allocate: the fallback's
  }

  // Frees cached blocks, largest classes first (other than `keep`, the class about to be cached),
  // until at most `target` bytes are cached. Called with the mutex held.
  void evict_to(size_t target, size_t keep) const {
    auto drop = [&](size_t bytes, std::vector<void*>& blocks) {
      while (!blocks.empty() && cached_ > target) {
        std::free(blocks.back());
        blocks.pop_back();
        cached_ -= bytes;
      }
    };
    for (auto it = free_.rbegin(); it != free_.rend() && cached_ > target; ++it)
      if (it->first != keep) drop(it->first, it->second);
    if (cached_ > target) {
      auto it = free_.find(keep);
      if (it != free_.end()) drop(keep, it->second);
    }
  }

  c10::Allocator* fallback_;
  mutable std::mutex mutex_;
  mutable std::map<size_t, std::vector<void*>> free_;
  mutable std::unordered_map<void*, size_t> live_;
  mutable size_t cached_ = 0, hits_ = 0, misses_ = 0;
  size_t limit_ = 0;
};

const CachingCpuAllocator* CachingCpuAllocator::instance = nullptr;

// Never destroyed: tensors may be freed during static destruction.
CachingCpuAllocator* g_cache = nullptr;
std::mutex g_cache_mutex;
std::string g_cache_note;  // a problem with UNIBIOMED_CPU_TENSOR_CACHE_MB, for describe_cpu_runtime

constexpr size_t kDefaultCacheMiB = 2048;

size_t cache_limit_from_environment() {
  const char* v = std::getenv("UNIBIOMED_CPU_TENSOR_CACHE_MB");
  if (!v || !*v) return kDefaultCacheMiB << 20;
  char* end = nullptr;
  const unsigned long long mib = std::strtoull(v, &end, 10);
  if (*end != '\0' || v[0] == '-') {
    g_cache_note = "UNIBIOMED_CPU_TENSOR_CACHE_MB='" + std::string(v) + "' is not a whole number of MiB: " +
                   std::to_string(kDefaultCacheMiB) + " used";
    return kDefaultCacheMiB << 20;
  }
  return static_cast<size_t>(mib) << 20;
}

}  // namespace

bool install_cpu_tensor_cache(size_t max_cached_bytes) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  if (!g_cache) {
    if (max_cached_bytes == 0) return true;  // off: libtorch's allocator stays
    auto* cache = new CachingCpuAllocator(c10::GetDefaultCPUAllocator());
    cache->set_limit(max_cached_bytes);
    CachingCpuAllocator::instance = cache;
    c10::SetCPUAllocator(cache, /*priority=*/1);
    if (c10::GetCPUAllocator() != cache) return false;  // leaked on purpose: never used
    g_cache = cache;
    return true;
  }
  g_cache->set_limit(max_cached_bytes);
  return true;
}

void release_cpu_tensor_cache() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  if (g_cache) g_cache->release();
}

CpuTensorCachePause::CpuTensorCachePause() {
  const CpuTensorCacheStats s = cpu_tensor_cache_stats();
  installed_ = s.installed;
  limit_ = s.max_cached_bytes;
  if (installed_) install_cpu_tensor_cache(0);
}

CpuTensorCachePause::~CpuTensorCachePause() {
  if (installed_) install_cpu_tensor_cache(limit_);
}

CpuTensorCacheStats cpu_tensor_cache_stats() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  return g_cache ? g_cache->stats() : CpuTensorCacheStats{};
}

bool cpu_has_native_bfloat16() {
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream words(line.substr(line.find(':') + 1));
      std::string flag;
      while (words >> flag)
        if (flag == "avx512_bf16" || flag == "amx_bf16") return true;
      return false;  // the first processor's flags speak for all
    }
    return false;
  }();
  return has;
}

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

namespace {

// Serial-BLAS sections may overlap (two analyses at once): the first one in saves and lowers the
// BLAS threads, the last one out restores them.
std::mutex serial_blas_mutex;
int serial_blas_users = 0;
int serial_blas_saved_threads = 0;
// Set on the threads of a run_parts_with_serial_blas call while they run their part: work
// inside a part is not split again.
thread_local bool inside_part = false;

struct InsidePart {
  bool before = inside_part;
  InsidePart() { inside_part = true; }
  ~InsidePart() { inside_part = before; }
};

}  // namespace

int small_product_parts() {
  if (inside_part) return 1;
  auto get_threads = openblas_function<int (*)()>("openblas_get_num_threads");
  auto blas_parallel = openblas_function<int (*)()>("openblas_get_parallel");
  if (!get_threads || !blas_parallel || blas_parallel() != 1 || torch::get_num_threads() != 1) return 1;
  std::lock_guard<std::mutex> lock(serial_blas_mutex);
  const int blas_threads = serial_blas_users > 0 ? serial_blas_saved_threads : get_threads();
  return std::max(1, std::min(blas_threads, available_cores()));
}

void run_parts_with_serial_blas(int parts, const std::function<void(int)>& work) {
  if (parts <= 1) {
    work(0);
    return;
  }
  auto set_blas = openblas_function<void (*)(int)>("openblas_set_num_threads");
  auto get_threads = openblas_function<int (*)()>("openblas_get_num_threads");
  {
    std::lock_guard<std::mutex> lock(serial_blas_mutex);
    if (serial_blas_users++ == 0) {
      serial_blas_saved_threads = get_threads ? get_threads() : 1;
      if (set_blas) set_blas(1);
    }
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(parts));
  // Inference and grad modes are per thread: the parts run in the caller's.
  const bool inference_mode = c10::InferenceMode::is_enabled();
  {
    std::vector<std::thread> threads;
    for (int p = 1; p < parts; ++p)
      threads.emplace_back([&, p] {
        try {
          InsidePart part;
          c10::InferenceMode inference(inference_mode);
          torch::NoGradGuard no_grad;
          work(p);
        } catch (...) {
          errors[static_cast<size_t>(p)] = std::current_exception();
        }
      });
    try {
      InsidePart part;
      torch::NoGradGuard no_grad;
      work(0);
    } catch (...) {
      errors[0] = std::current_exception();
    }
    for (auto& t : threads) t.join();
  }
  {
    std::lock_guard<std::mutex> lock(serial_blas_mutex);
    if (--serial_blas_users == 0 && set_blas) set_blas(serial_blas_saved_threads);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

namespace {
// libtorch's intra-op thread count, and the same for this library's own OpenMP loops: a libtorch
// that brings its own OpenMP runtime (a PyTorch wheel's) keeps its count in that runtime, and ours
// would otherwise start every core's worth of threads. With one runtime the second call repeats
// the first.
void set_intra_op_threads(int n) {
  torch::set_num_threads(n);
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
}

// What configure_cpu_threads resolved (0: not called yet), for use_cpu_threads_for.
std::atomic<int> g_configured_threads{0};
std::atomic<int> g_float32_torch_threads{0};
}  // namespace

int configure_cpu_threads(int threads) {
  const int n = threads > 0 ? threads : available_cores();
  auto set_blas = openblas_function<void (*)(int)>("openblas_set_num_threads");
  auto blas_parallel = openblas_function<int (*)()>("openblas_get_parallel");  // 0 serial, 1 pthreads, 2 OpenMP
  if (set_blas) set_blas(n);
  // With OpenBLAS's own pthread pool next to libtorch's OpenMP pool, every switch between a BLAS
  // call and an element-wise op finds the other pool's workers still spinning on the cores: a
  // 300-token prefill ran 5x slower (bench_llm). libtorch then keeps one thread and the BLAS,
  // where the time goes, gets them all.
  const bool separate_blas_pool = set_blas && blas_parallel && blas_parallel() == 1;
  const int torch_threads = separate_blas_pool && n > 1 ? 1 : n;
  set_intra_op_threads(torch_threads);
  g_configured_threads.store(n);
  g_float32_torch_threads.store(torch_threads);
  install_cpu_tensor_cache(cache_limit_from_environment());
  return n;
}

int configured_cpu_threads() { return g_configured_threads.load(); }

int library_parallel_for_threads() {
  std::mutex m;
  std::set<std::thread::id> seen;
  at::parallel_for(0, 1024, 1, [&](int64_t, int64_t) {
    // long enough that a team of threads starts its chunks together
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
    while (std::chrono::steady_clock::now() < until) {
    }
    std::lock_guard<std::mutex> lock(m);
    seen.insert(std::this_thread::get_id());
  });
  return static_cast<int>(seen.size());
}

void use_cpu_threads_for(bool bfloat16_compute) {
  const int want = bfloat16_compute ? g_configured_threads.load() : g_float32_torch_threads.load();
  if (want > 0 && torch::get_num_threads() != want) set_intra_op_threads(want);
}

std::string describe_cpu_runtime() {
  std::string out = "libtorch threads " + std::to_string(torch::get_num_threads());
  auto config = openblas_function<const char* (*)()>("openblas_get_config");
  auto get_threads = openblas_function<int (*)()>("openblas_get_num_threads");
  if (config && get_threads)
    out += ", " + std::string(config()) + ", OpenBLAS threads " + std::to_string(get_threads());
  else
    out += ", BLAS: not OpenBLAS (libtorch's own, e.g. MKL)";
  out += cpu_has_native_bfloat16() ? ", bfloat16 dot products: yes" : ", bfloat16 dot products: no";
  const CpuTensorCacheStats c = cpu_tensor_cache_stats();
  if (c.installed)
    out += ", tensor memory cache up to " + std::to_string(c.max_cached_bytes >> 20) + " MiB";
  else
    out += ", tensor memory cache off";
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    if (!g_cache_note.empty()) out += " (" + g_cache_note + ")";
  }
  return out;
}

}  // namespace unibiomed::inference
