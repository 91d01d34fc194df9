// SPDX-License-Identifier: GPL-3.0-or-later
// The CPU tensor memory cache of inference/runtime.h: freed blocks of 1 MiB and more come back
// to the next tensor of their size class, within the limit; small blocks and raw allocations
// keep working; the contents are those the program writes. And run_parts_with_serial_blas.
#include <c10/core/CPUAllocator.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "inference/runtime.h"

namespace unibiomed::inference {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

class CpuTensorCache : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(install_cpu_tensor_cache(64 * kMiB));
    release_cpu_tensor_cache();
  }
  void TearDown() override { install_cpu_tensor_cache(2048 * kMiB); }
};

TEST_F(CpuTensorCache, FreedBlockServesTheNextTensorOfItsSize) {
  const auto before = cpu_tensor_cache_stats();
  ASSERT_TRUE(before.installed);
  EXPECT_EQ(before.max_cached_bytes, 64 * kMiB);
  EXPECT_EQ(before.cached_bytes, 0u);
  const void* first = nullptr;
  {
    auto t = torch::empty({3 * 1024 * 1024}, torch::kFloat32);  // 12 MiB
    first = t.data_ptr();
  }
  auto s = cpu_tensor_cache_stats();
  EXPECT_EQ(s.misses, before.misses + 1);
  EXPECT_EQ(s.cached_bytes, 12 * kMiB);
  // 11.5 MiB rounds up to the same class (multiples of 1 MiB between 8 and 16 MiB).
  auto u = torch::empty({static_cast<int64_t>(23 * kMiB / 8)}, torch::kFloat32);
  EXPECT_EQ(u.data_ptr(), first);
  s = cpu_tensor_cache_stats();
  EXPECT_EQ(s.hits, before.hits + 1);
  EXPECT_EQ(s.cached_bytes, 0u);
  // A small tensor does not go through the cache.
  { auto small = torch::empty({256}, torch::kFloat32); }
  EXPECT_EQ(cpu_tensor_cache_stats().misses, s.misses);
  EXPECT_EQ(cpu_tensor_cache_stats().hits, s.hits);
}

TEST_F(CpuTensorCache, ResultsAreThoseOfFreshMemory) {
  torch::manual_seed(3);
  const auto a = torch::randn({512, 1024}), b = torch::randn({1024, 768});
  const auto reference = torch::mm(a, b).clone();
  for (int i = 0; i < 3; ++i) {
    // The product (1.5 MiB) lands in blocks that earlier products and fills have written.
    { auto junk = torch::full({512, 768}, 12345.0f); }
    EXPECT_TRUE(torch::equal(torch::mm(a, b), reference)) << "round " << i;
  }
}

TEST_F(CpuTensorCache, HoldsNoMoreThanItsLimit) {
  install_cpu_tensor_cache(16 * kMiB);
  {
    auto x = torch::empty({static_cast<int64_t>(3 * kMiB)}, torch::kFloat32);  // 12 MiB
    auto y = torch::empty({static_cast<int64_t>(3 * kMiB)}, torch::kFloat32);
    auto z = torch::empty({static_cast<int64_t>(kMiB)}, torch::kFloat32);  // 4 MiB
  }
  EXPECT_LE(cpu_tensor_cache_stats().cached_bytes, 16 * kMiB);
  EXPECT_GT(cpu_tensor_cache_stats().cached_bytes, 0u);
  // A block larger than the limit is never kept.
  { auto big = torch::empty({static_cast<int64_t>(5 * kMiB)}, torch::kFloat32); }  // 20 MiB
  EXPECT_LE(cpu_tensor_cache_stats().cached_bytes, 16 * kMiB);
  // Lowering the limit frees what is above it; release frees everything.
  install_cpu_tensor_cache(4 * kMiB);
  EXPECT_LE(cpu_tensor_cache_stats().cached_bytes, 4 * kMiB);
  release_cpu_tensor_cache();
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 0u);
}

TEST_F(CpuTensorCache, PausedWhileAModelLoads) {
  { auto t = torch::empty({static_cast<int64_t>(3 * kMiB)}, torch::kFloat32); }
  ASSERT_EQ(cpu_tensor_cache_stats().cached_bytes, 12 * kMiB);
  {
    const CpuTensorCachePause pause;
    EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 0u);  // what was cached is freed
    EXPECT_EQ(cpu_tensor_cache_stats().max_cached_bytes, 0u);
    { auto t = torch::empty({static_cast<int64_t>(3 * kMiB)}, torch::kFloat32); }
    EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 0u);  // and nothing new is kept
  }
  EXPECT_EQ(cpu_tensor_cache_stats().max_cached_bytes, 64 * kMiB);
  { auto t = torch::empty({static_cast<int64_t>(3 * kMiB)}, torch::kFloat32); }
  EXPECT_EQ(cpu_tensor_cache_stats().cached_bytes, 12 * kMiB);
}

TEST_F(CpuTensorCache, RawAllocationsOfEverySize) {
  c10::Allocator* a = c10::GetCPUAllocator();
  for (size_t bytes : {size_t{64}, size_t{4096}, 2 * kMiB, 9 * kMiB + 3}) {
    void* p = a->raw_allocate(bytes);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5a, bytes);
    a->raw_deallocate(p);
  }
  EXPECT_LE(cpu_tensor_cache_stats().cached_bytes, 64 * kMiB);
}

TEST_F(CpuTensorCache, ThreadsAllocateAndFreeTogether) {
  auto work = [](int seed) {
    for (int i = 0; i < 50; ++i) {
      const int64_t n = static_cast<int64_t>((1 + (seed * 7 + i) % 5) * kMiB / 4);
      auto t = torch::full({n}, static_cast<float>(i));
      if (t[n - 1].item<float>() != static_cast<float>(i)) throw std::runtime_error("wrong contents");
    }
  };
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(3);
  for (int k = 0; k < 3; ++k)
    threads.emplace_back([&, k] {
      try {
        work(k);
      } catch (...) {
        errors[static_cast<size_t>(k)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_FALSE(e);
  EXPECT_LE(cpu_tensor_cache_stats().cached_bytes, 64 * kMiB);
}

TEST(CpuRuntimeDescription, SaysWhetherTheCacheIsOn) {
  install_cpu_tensor_cache(2048 * kMiB);
  EXPECT_NE(describe_cpu_runtime().find("tensor memory cache up to 2048 MiB"), std::string::npos)
      << describe_cpu_runtime();
}

// The bfloat16 flag agrees with the kernel's list of CPU features, and the description says it.
TEST(CpuRuntimeDescription, SaysWhetherTheCpuHasBfloat16DotProducts) {
  std::ifstream in("/proc/cpuinfo");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(text.empty()) << "/proc/cpuinfo is not readable";
  const bool listed = text.find(" avx512_bf16") != std::string::npos || text.find(" amx_bf16") != std::string::npos;
  EXPECT_EQ(cpu_has_native_bfloat16(), listed);
  EXPECT_NE(describe_cpu_runtime().find(listed ? "bfloat16 dot products: yes" : "bfloat16 dot products: no"),
            std::string::npos)
      << describe_cpu_runtime();
}

// bfloat16 products run on libtorch's own pool (oneDNN), float32 ones on the BLAS's: a bfloat16
// model gets libtorch's threads at the configured count, a float32 one the split of
// configure_cpu_threads, on the calling thread and on threads started afterwards.
TEST(CpuRuntimeThreads, Bfloat16ComputeGetsLibtorchsThreads) {
  const int split = [] {
    configure_cpu_threads(2);
    return torch::get_num_threads();
  }();
  use_cpu_threads_for(true);
  EXPECT_EQ(torch::get_num_threads(), 2);
  int in_new_thread = 0;
  std::thread([&] { in_new_thread = torch::get_num_threads(); }).join();
  EXPECT_EQ(in_new_thread, 2);
  use_cpu_threads_for(false);
  EXPECT_EQ(torch::get_num_threads(), split);
  std::thread([&] { in_new_thread = torch::get_num_threads(); }).join();
  EXPECT_EQ(in_new_thread, split);
  configure_cpu_threads(2);
}

// The model's own parallel loops (decoding's matrix-vector products, image preprocessing) use
// libtorch's threads: the library is compiled with OpenMP, without which at::parallel_for's pragma
// is dropped and every such loop runs on one thread.
TEST(CpuRuntimeThreads, TheLibrarysParallelLoopsRunOnLibtorchsThreads) {
  const int cores = std::min(2, available_cores());
  configure_cpu_threads(cores);
  use_cpu_threads_for(true);  // libtorch's pool at the configured count
  ASSERT_EQ(torch::get_num_threads(), cores);
  EXPECT_EQ(library_parallel_for_threads(), cores);
  EXPECT_EQ(configured_cpu_threads(), cores);
  torch::set_num_threads(1);
  EXPECT_EQ(library_parallel_for_threads(), 1);
  configure_cpu_threads(2);
}

}  // namespace
}  // namespace unibiomed::inference

namespace unibiomed::inference {
namespace {

// OpenBLAS's thread count as the library sees it; -1 without OpenBLAS.
int blas_threads() {
  auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get ? get() : -1;
}

TEST(SerialBlasParts, PartsRunTogetherWithASerialBlasInTheCallersMode) {
  configure_cpu_threads(2);
  const int before = blas_threads();
  std::atomic<int> arrived{0};
  std::vector<int> blas_inside(3, 0);
  std::vector<char> inference_inside(3, 0);
  std::vector<float> sums(3, 0);
  std::vector<int> seen(3, 0);
  std::vector<int> nested(3, 0);
  {
    c10::InferenceMode inference;
    run_parts_with_serial_blas(3, [&](int p) {
      // Every part waits for the others: they can only all arrive when they run at once.
      ++arrived;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (arrived.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      seen[p] = arrived.load();
      nested[p] = small_product_parts();  // work inside a part is not split again
      blas_inside[p] = blas_threads();
      inference_inside[p] = c10::InferenceMode::is_enabled();
      auto a = torch::full({64, 64}, float(p + 1));
      sums[p] = torch::mm(a, a).sum().item<float>();
    });
  }
  for (int p = 0; p < 3; ++p) {
    EXPECT_EQ(seen[p], 3) << "part " << p << " ran alone";
    EXPECT_EQ(nested[p], 1) << "part " << p;
    if (before > 0) {
      EXPECT_EQ(blas_inside[p], 1) << "part " << p;
    }
    EXPECT_TRUE(inference_inside[p]) << "part " << p;
    EXPECT_FLOAT_EQ(sums[p], 64.0f * 64 * 64 * float(p + 1) * float(p + 1)) << "part " << p;
  }
  EXPECT_EQ(blas_threads(), before) << "the BLAS threads are restored";
}

TEST(SerialBlasParts, APartsErrorReachesTheCallerAfterEveryPartEnded) {
  std::atomic<int> ended{0};
  EXPECT_THROW(run_parts_with_serial_blas(2,
                                          [&](int p) {
                                            if (p == 1) {
                                              ++ended;
                                              throw std::runtime_error("part 1 failed");
                                            }
                                            std::this_thread::sleep_for(std::chrono::milliseconds(50));
                                            ++ended;
                                          }),
               std::runtime_error);
  EXPECT_EQ(ended.load(), 2);
  // One part: in this thread, nothing else changed.
  std::thread::id where;
  run_parts_with_serial_blas(1, [&](int) { where = std::this_thread::get_id(); });
  EXPECT_EQ(where, std::this_thread::get_id());
}

}  // namespace
}  // namespace unibiomed::inference
