// Benchmark: reading a 512x512x300 CT series into a volume (HU) with dicom/ against ITK's own
// GDCM series reader (GDCMSeriesFileNames + ImageSeriesReader<float>) on the same files in the
// same run, and rendering the model's 300 views. Each measurement runs in a fresh child
// process (fork) so that its time and its peak memory (ru_maxrss) are its own; the files are
// read once beforehand so that both readers find them in the page cache. Rounds alternate
// between the readers; medians after --warmup untimed rounds are reported with the ratio ours / ITK
// (target <= 1.0).
//   bench_dicom [--slices N] [--rounds R] [--warmup W] [--dir FOLDER] [--help]   (FOLDER: an existing series to use)
// SPDX-License-Identifier: GPL-3.0-or-later
#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageSeriesReader.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "dicom/series.h"
#include "dicom/toolkit_logging.h"
#include "dicom/view.h"
#include "dicom/volume.h"
#include "samples/sample_studies.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Measurement {
  double seconds = 0;
  double peak_mb = 0;
  double checksum = 0;  // proves the work was done (and that both readers agree)
};

// Runs `work` in a child process; the child reports its own wall time and checksum.
Measurement in_child(const std::function<double()>& work) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const auto start = Clock::now();
    const double checksum = work();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    double out[2] = {seconds, checksum};
    if (write(fds[1], out, sizeof out) != sizeof out) _exit(2);
    _exit(0);
  }
  close(fds[1]);
  double in[2] = {0, 0};
  if (read(fds[0], in, sizeof in) != sizeof in) std::cerr << "child failed\n";
  close(fds[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  return {in[0], double(usage.ru_maxrss) / 1024.0, in[1]};
}

using unibiomed::bench::median;

double read_ours(const fs::path& folder) {
  unibiomed::dicom::SeriesCollection c = unibiomed::dicom::read_series({folder});
  const auto& series = c.series.at(0);
  const auto plan = unibiomed::dicom::plan_stacks(series);
  unibiomed::dicom::Volume v = unibiomed::dicom::load_volume(series, plan.stacks.at(0));
  double sum = 0;
  for (size_t i = 0; i < v.voxels.size(); i += 997) sum += v.voxels[i];
  return sum;
}

double read_itk(const fs::path& folder) {
  using Image = itk::Image<float, 3>;
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetDirectory(folder.string());
  auto reader = itk::ImageSeriesReader<Image>::New();
  reader->SetImageIO(itk::GDCMImageIO::New());
  reader->SetFileNames(names->GetInputFileNames());
  reader->Update();
  const Image* image = reader->GetOutput();
  const size_t n = image->GetLargestPossibleRegion().GetNumberOfPixels();
  double sum = 0;
  for (size_t i = 0; i < n; i += 997) sum += image->GetBufferPointer()[i];
  return sum;
}

double render_ours(const fs::path& folder) {
  unibiomed::dicom::SeriesCollection c = unibiomed::dicom::read_series({folder});
  const auto& series = c.series.at(0);
  unibiomed::dicom::RenderOptions options;
  double sum = 0;
  for (const auto& request : unibiomed::dicom::plan_views(series, options)) {
    unibiomed::dicom::View view = unibiomed::dicom::render_view(series, request, options);
    sum += view.image.rgb[view.image.rgb.size() / 2];
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  int slices = 300, rounds = 3, warmup = 1;
  std::string folder_arg;
  unibiomed::bench::CommandLine cl(
      "bench_dicom",
      "Reading a 512x512 CT series into a volume with dicom/ against ITK's GDCM series reader in the same run\n"
      "(each reader in a fresh child process, medians of the rounds, ratio ours / ITK, target <= 1.0), and\n"
      "rendering the model's views.");
  cl.option("--slices", "N", "slices of the generated CT series", slices)
      .option("--rounds", "N", "timed rounds, each reader once per round (median)", rounds)
      .option("--warmup", "N", "untimed rounds before them", warmup)
      .option("--dir", "FOLDER", "an existing series to read instead of a generated one", folder_arg);
  cl.parse(argc, argv);
  if (slices < 1 || rounds < 1 || warmup < 0) cl.fail("--slices and --rounds must be at least 1, --warmup at least 0");
  fs::path folder = folder_arg;
  unibiomed::dicom::silence_toolkit_logs();
  fs::path generated;
  if (folder.empty()) {
    generated = fs::temp_directory_path() / ("bench-dicom-" + std::to_string(getpid()));
    unibiomed::samples::SampleOptions options;
    options.only = {"ct"};
    options.ct_slices = slices;
    const auto start = Clock::now();
    folder = unibiomed::samples::write_samples(generated, options).at(0).folder;
    std::printf("generated %d CT slices of 512x512 in %.1f s: %s\n", slices,
                std::chrono::duration<double>(Clock::now() - start).count(), folder.c_str());
  }
  // Warm the page cache so that both readers see the same storage conditions.
  size_t bytes = 0, files = 0;
  for (const auto& e : fs::directory_iterator(folder)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::vector<char> buffer(1 << 20);
    while (in.read(buffer.data(), std::streamsize(buffer.size())) || in.gcount() > 0) bytes += size_t(in.gcount());
    ++files;
  }
  std::printf("series: %zu files, %.1f MB\n", files, double(bytes) / 1e6);

  std::vector<double> ours_t, itk_t, ours_m, itk_m, render_t, render_m;
  double ours_sum = 0, itk_sum = 0;
  for (int r = 0; r < warmup; ++r) {
    in_child([&] { return read_itk(folder); });
    in_child([&] { return read_ours(folder); });
    in_child([&] { return render_ours(folder); });
  }
  for (int r = 0; r < rounds; ++r) {
    Measurement itk = in_child([&] { return read_itk(folder); });
    Measurement ours = in_child([&] { return read_ours(folder); });
    Measurement render = in_child([&] { return render_ours(folder); });
    std::printf("round %d: ITK %.3f s %.0f MB | ours %.3f s %.0f MB | ours read+render %.3f s %.0f MB\n", r + 1,
                itk.seconds, itk.peak_mb, ours.seconds, ours.peak_mb, render.seconds, render.peak_mb);
    itk_t.push_back(itk.seconds), itk_m.push_back(itk.peak_mb), itk_sum = itk.checksum;
    ours_t.push_back(ours.seconds), ours_m.push_back(ours.peak_mb), ours_sum = ours.checksum;
    render_t.push_back(render.seconds), render_m.push_back(render.peak_mb);
  }
  const double volume_mb = 512.0 * 512.0 * double(files) * 4 / 1048576.0;
  std::printf("\nread %zu slices into a float volume (%.0f MB of voxels), median of %d rounds after %d warm-up:\n",
              files, volume_mb, rounds, warmup);
  std::printf("  ITK GDCM series reader: %.3f s, peak %.0f MB\n", median(itk_t), median(itk_m));
  std::printf("  dicom/ (read_series + plan_stacks + load_volume): %.3f s, peak %.0f MB\n", median(ours_t),
              median(ours_m));
  std::printf("  time ratio ours / ITK: %.2f (target <= 1.0); peak memory ratio %.2f\n", median(ours_t) / median(itk_t),
              median(ours_m) / median(itk_m));
  std::printf("  checksums agree: %s (%.1f vs %.1f)\n", std::fabs(ours_sum - itk_sum) < 1e-3 ? "yes" : "NO", ours_sum,
              itk_sum);
  std::printf(
      "render %zu abdomen-window views (read + render, no volume kept): %.3f s (%.1f ms per view), peak %.0f MB\n",
      files, median(render_t), 1000 * median(render_t) / double(files), median(render_m));
  if (!generated.empty()) fs::remove_all(generated);
  return 0;
}
