// bench_device.h: --device parsing, the dtypes it implies, the synchronised median, the probe on
// a device and the stage peak. The GPU checks run where this libtorch sees a GPU; elsewhere the
// GPU is checked to be refused.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "bench/bench_device.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "inference/device.h"

namespace {

using namespace unibiomed::bench;

TEST(BenchDevice, ParsesTheDeviceNames) {
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_EQ(device_name(parse_device("cpu")), "cpu");
  EXPECT_THROW(parse_device("gpu"), std::invalid_argument);
  EXPECT_THROW(parse_device(""), std::invalid_argument);
  EXPECT_THROW(parse_device("cuda:x"), std::invalid_argument);
  EXPECT_THROW(parse_device("mps"), std::invalid_argument);
  EXPECT_THROW(parse_device("cuda:99"), std::invalid_argument);  // no machine has 100 GPUs
  if (unibiomed::inference::cuda_usable()) {
    EXPECT_EQ(device_name(parse_device("cuda")), "cuda:0");
    EXPECT_EQ(device_name(parse_device("cuda:0")), "cuda:0");
  } else {
    EXPECT_THROW(parse_device("cuda"), std::invalid_argument);  // refused before any work starts
  }
  // The name of a GPU device object needs no GPU.
  EXPECT_EQ(device_name(c10::Device(c10::kCUDA, 1)), "cuda:1");
  EXPECT_EQ(device_name(c10::Device(c10::kCUDA)), "cuda:0");
}

TEST(BenchDevice, DtypesFollowTheDevice) {
  const c10::Device gpu(c10::kCUDA, 0), cpu(c10::kCPU);
  EXPECT_EQ(choose_dtypes("auto", gpu).dtypes, std::vector<std::string>{"bfloat16"});
  EXPECT_EQ(choose_dtypes("auto", cpu).dtypes, choose_dtypes("auto").dtypes);
  EXPECT_EQ(choose_dtypes("float32,bfloat16", gpu).dtypes, (std::vector<std::string>{"float32", "bfloat16"}));
  EXPECT_THROW(choose_dtypes("float64", gpu), std::invalid_argument);
  EXPECT_EQ(probe_matmul_size(cpu), kProbeMatmulSize);
  EXPECT_GT(probe_matmul_size(gpu), kProbeMatmulSize);
}

void check_device(const c10::Device& device) {
  int calls = 0;
  const double s = median_device_seconds(
      device, [&] { ++calls; }, 1, 3);
  EXPECT_EQ(calls, 4);
  EXPECT_GE(s, 0);

  const MatmulProbe p = matmul_probe(device, "float32", 0, 1);
  EXPECT_EQ(p.n, probe_matmul_size(device));
  EXPECT_EQ(p.device, device_name(device));
  EXPECT_GT(p.gflops, 0);
  EXPECT_NE(p.describe().find("float32 matmul"), std::string::npos) << p.describe();
  EXPECT_EQ(p.describe().find(" on ") != std::string::npos, !device.is_cpu()) << p.describe();

  StagePeak peak(device);
  EXPECT_EQ(peak.gpu(), !device.is_cpu());
  EXPECT_EQ(std::string(peak.field()), device.is_cpu() ? "peak_rss_mib" : "peak_gpu_mib");
  peak.reset();
  const double before = peak.peak_mib();
  {
    // 64 MiB made and written on the device: the stage's peak rises by about that much.
    torch::Tensor big = torch::ones({16 << 20}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
    EXPECT_NEAR(big.sum().item<double>(), double(16 << 20), 16.0);
  }
  if (peak.resets()) {
    EXPECT_GE(peak.peak_mib(), before + 60) << "peak " << peak.peak_mib() << " before " << before;
  }
  // Resident memory is never 0; a GPU may hold no tensor at all now.
  if (device.is_cpu()) {
    EXPECT_GT(peak.current_mib(), 0);
  } else {
    EXPECT_GE(peak.current_mib(), 0);
  }
}

TEST(BenchDevice, CpuTimingProbeAndPeak) {
  check_device(c10::Device(c10::kCPU));
  const DeviceBandwidth b = read_bandwidth(c10::Device(c10::kCPU), 1);
  EXPECT_EQ(b.threads, 1);
  EXPECT_GT(b.gbps, 0);
}

TEST(BenchDevice, GpuTimingProbeAndPeak) {
  if (!unibiomed::inference::cuda_usable()) {  // a CPU-only libtorch: the GPU is refused up front
    EXPECT_THROW(parse_device("cuda:0"), std::invalid_argument);
    return;
  }
  check_device(parse_device("cuda"));
  const DeviceBandwidth b = read_bandwidth(parse_device("cuda"));
  EXPECT_EQ(b.threads, 0);
  EXPECT_GT(b.gbps, 0);
  EXPECT_NE(b.describe().find("cuda:0"), std::string::npos);
}

}  // namespace
