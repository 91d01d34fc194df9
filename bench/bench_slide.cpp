// Whole slides at scale: the same synthetic slide (`unibiomed samples write --only wsi
// --slide-size N`: 0.25 um pixels, a tissue section over about 5 % of the slide, TILED_SPARSE
// levels) at several sizes, each analysed by pipeline::Analyzer with a checkpoint (default the
// demo checkpoint) in a process of its own. Per size: the regions over tissue, the time of the
// analysis, the peak resident memory of the process (VmHWM, reset after the slide was written)
// and its rise during the analysis over the memory after the model was loaded, the findings and
// the SEG. The claim it checks: memory bounded (nearly the same for a 50,000-pixel slide as for a
// 5,000-pixel one) and time growing with the tissue, not with the slide.
//
//   bench_slide [--sizes 5000,50000] [--model samples/demo-checkpoint] [--device cpu|cuda[:N]] [--dtype auto]
//               [--threads 0] [--question TEXT] [--batch 8] [--keep]
//
// On a GPU (--device cuda) the peak GPU memory (tensor bytes) of the analysis is printed beside the
// resident memory. Each size's figures are also RESULT lines (bench_common.h).
//
// Every region is asked one explicit question (default "Please segment neoplastic cells in
// pathology."), not the rules' two tasks, so that the figures follow the slide's regions.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "bench/bench_device.h"
#include "inference/device.h"
#include "pipeline/analyzer.h"
#include "samples/sample_studies.h"

namespace {

using namespace unibiomed;
namespace fs = std::filesystem;
namespace bench = unibiomed::bench;

double mib(const char* field) {
  return bench::status_mib(field);
}

// One size, in this (child) process: writes the slide, loads the model, analyses; the figures
// as one JSON object in `out`.
int run_one(int size, const fs::path& folder, const std::string& model, const c10::Device& device,
            const std::string& dtype, int threads, int batch, const std::string& question, const fs::path& out) {
  nlohmann::json j;
  j["size"] = size;
  bench::Stopwatch writing;
  samples::SampleOptions options;
  options.only = {"wsi"};
  options.wsi_slide_size = size;
  const auto written = samples::write_samples(folder, options);
  j["write_seconds"] = writing.wall();
  uintmax_t bytes = 0;
  std::vector<pipeline::InstanceInput> inputs;
  for (const auto& f : written.at(0).files) {
    bytes += fs::file_size(f);
    pipeline::InstanceInput in;
    in.id = f.string();
    in.path = f;
    inputs.push_back(in);
  }
  j["slide_files_mib"] = double(bytes) / 1048576.0;
  ::malloc_trim(0);
  j["peak_reset"] = bench::reset_peak_memory();
  pipeline::AnalyzerSettings settings;
  settings.model_dir = model;
  settings.threads = threads;
  settings.batch_size = batch;
  settings.previews = false;
  settings.device = bench::device_name(device);
  settings.dtype = dtype;
  bench::Stopwatch loading;
  auto analyzer = pipeline::Analyzer::create(settings);
  inference::synchronize(device);
  j["load_seconds"] = loading.wall();
  bench::StagePeak gpu(device);
  if (gpu.gpu()) {
    j["gpu_after_load_mib"] = gpu.current_mib();
    gpu.reset();
  }
  const double loaded = mib("VmRSS:");
  j["rss_after_load_mib"] = loaded;
  bench::Stopwatch analysing;
  // One explicit question per region (the rules would ask two), so that the figures measure the
  // slide's handling; a checkpoint's targets.json does not filter explicit questions.
  pipeline::AnalysisRequest request;
  request.rules = false;
  request.questions.push_back({question, "", std::nullopt, ""});
  const pipeline::StudyResult r = analyzer->analyze(inputs, request, {}, nullptr, "bench");
  inference::synchronize(device);
  j["analysis_seconds"] = analysing.wall();
  if (gpu.gpu()) j["gpu_peak_mib"] = gpu.peak_mib();
  j["analysis_cpu_share"] =
      analysing.cpu_share(threads > 0 ? threads : int(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))));
  j["peak_mib"] = mib("VmHWM:");
  j["analysis_rise_mib"] = mib("VmHWM:") - loaded;
  if (r.series.size() != 1) throw std::runtime_error("expected one series, got " + std::to_string(r.series.size()));
  const auto& s = r.series[0];
  if (s.state != pipeline::SeriesOutcome::State::Analysed) throw std::runtime_error("slide not analysed: " + s.reason);
  j["views"] = s.views;
  j["notes"] = s.notes;
  j["findings"] = r.findings.size();
  double area = 0;  // the findings' area on the slide: what the stitched result holds
  for (const auto& f : r.findings)
    for (const auto& m : f.measurements)
      if (m.name == "Area") area += m.value;
  j["finding_area_mm2"] = area;
  for (const auto& o : r.objects)
    if (o.kind == "SEG") j["seg_kib"] = double(o.bytes.size()) / 1024.0;
  std::ofstream(out) << j.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string sizes_text = "5000,50000", model = "samples/demo-checkpoint", one_out,
              question = "Please segment neoplastic cells in pathology.", device_text = "cpu", dtype = "auto";
  c10::Device device(c10::kCPU);
  int threads = 0, one = 0, batch = 8;
  bool keep = false;
  bench::CommandLine cl(
      "bench_slide",
      "Whole slides at scale: the synthetic slide of `samples write --slide-size N` (0.25 um, tissue\n"
      "on about 5 %) at each size, analysed with a checkpoint in a process of its own; prints the\n"
      "regions over tissue, the analysis time, the peak resident memory and its rise over the\n"
      "loaded model, findings and SEG size, and the ratios between the sizes. One RESULT line per size.\n"
      "Quick check: --sizes 2048 (run from the source root for the default --model).");
  cl.option("--sizes", "N,N,...", "slide sizes in pixels (512..200000)", sizes_text)
      .option("--model", "DIR", "checkpoint folder", model)
      .option(
          "--device", "cpu|cuda[:N]", bench::kDeviceHelp,
          [&](const std::string& v) {
            device = bench::parse_device(v);
            device_text = bench::device_name(device);
          },
          "cpu")
      .dtype_option(dtype)
      .option("--threads", "N", "CPU threads for the model (0 = all cores)", threads)
      .option("--question", "TEXT", "the question asked of every region", question)
      .option("--batch", "N", "views encoded together (the node's batch_size; the memory of a batch is the model's)",
              batch)
      .option("--one", "N", "(internal) analyse one size in this process", one)
      .option("--one-out", "FILE", "(internal) where --one writes its figures", one_out)
      .flag("--keep", "keep the slides (in the temporary folder printed)", keep);
  cl.parse(argc, argv);
  std::vector<int64_t> sizes;
  try {
    sizes = bench::parse_integer_list(sizes_text);
  } catch (const std::exception& e) {
    cl.fail(std::string("--sizes: ") + e.what());
  }
  for (int64_t n : sizes)
    if (n < 512 || n > 200000) cl.fail("--sizes: " + std::to_string(n) + " is not within 512..200000");
  if (threads < 0) cl.fail("--threads must be 0 or more");
  if (batch < 1) cl.fail("--batch must be at least 1");
  if (!fs::is_directory(model))
    cl.fail("--model: " + model + " is not a folder (run from the source root, or give DIR)");

  if (one > 0) {
    try {
      return run_one(one, fs::path(one_out).parent_path() / ("slide-" + std::to_string(one)), model, device, dtype,
                     threads, batch, question, one_out);
    } catch (const std::exception& e) {
      std::cerr << "bench_slide: size " << one << ": " << e.what() << "\n";
      return 1;
    }
  }

  char pattern[] = "/tmp/bench-slide-XXXXXX";
  const char* made = ::mkdtemp(pattern);
  if (!made) {
    std::perror("bench_slide: mkdtemp");
    return 1;
  }
  const fs::path dir = made;
  std::cout << "bench_slide: model " << model << ", device " << device_text << ", dtype " << dtype << ", threads "
            << threads << ", batch " << batch << ", load "
            << bench::load_average() << ", folder " << dir.string() << "\n";
  std::vector<nlohmann::json> results;
  for (int64_t n : sizes) {
    const fs::path out = dir / ("result-" + std::to_string(n) + ".json");
    const pid_t child = ::fork();
    if (child == 0) {
      const std::string self = fs::read_symlink("/proc/self/exe").string();
      const std::string n_text = std::to_string(n), threads_text = std::to_string(threads);
      ::execl(self.c_str(), self.c_str(), "--one", n_text.c_str(), "--one-out", out.c_str(), "--model", model.c_str(),
              "--threads", threads_text.c_str(), "--question", question.c_str(), "--batch",
              std::to_string(batch).c_str(), "--device", device_text.c_str(), "--dtype", dtype.c_str(),
              static_cast<char*>(nullptr));
      std::perror("bench_slide: exec");
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::cerr << "bench_slide: the run of size " << n << " failed\n";
      return 1;
    }
    std::ifstream in(out);
    results.push_back(nlohmann::json::parse(in));
    const auto& j = results.back();
    std::printf(
        "size %6lld px: slide written in %.1f s (%.1f MiB of files); model loaded in %.1f s; analysis %.1f s "
        "(cpu share %.2f), %d views, %zu findings (%.3f mm2)%s\n"
        "               peak RSS %.0f MiB, RSS after loading %.0f MiB, rise during the analysis %.0f MiB%s\n",
        static_cast<long long>(n), j["write_seconds"].get<double>(), j["slide_files_mib"].get<double>(),
        j["load_seconds"].get<double>(), j["analysis_seconds"].get<double>(), j["analysis_cpu_share"].get<double>(),
        j["views"].get<int>(), j["findings"].get<size_t>(), j["finding_area_mm2"].get<double>(),
        j.contains("seg_kib") ? (", SEG " + std::to_string(int(j["seg_kib"].get<double>())) + " KiB").c_str() : "",
        j["peak_mib"].get<double>(), j["rss_after_load_mib"].get<double>(), j["analysis_rise_mib"].get<double>(),
        j["peak_reset"].get<bool>() ? "" : " (peak not reset: includes writing the slide)");
    if (j.contains("gpu_peak_mib"))
      std::printf("               peak GPU memory (tensors) during the analysis %.0f MiB, after loading %.0f MiB\n",
                  j["gpu_peak_mib"].get<double>(), j["gpu_after_load_mib"].get<double>());
    for (const auto& note : j["notes"]) std::printf("               note: %s\n", note.get<std::string>().c_str());
    bench::ResultLine line("slide_analysis_seconds");
    line.set("device", device_text)
        .set("dtype", bench::resolved_dtype(dtype, device))
        .set("size", static_cast<int64_t>(n))
        .set("batch", batch)
        .set("views", j["views"].get<int>())
        .set("value", j["analysis_seconds"].get<double>())
        .set("unit", "s")
        .set("peak_rss_mib", j["peak_mib"].get<double>());
    if (j.contains("gpu_peak_mib")) line.set("peak_gpu_mib", j["gpu_peak_mib"].get<double>());
    line.print();
    std::fflush(stdout);
  }
  if (results.size() >= 2) {
    const auto& a = results.front();
    const auto& b = results.back();
    std::printf(
        "%lld vs %lld px (x%.0f pixels): peak RSS x%.3f, analysis rise %+.0f MiB, views x%.2f, time x%.2f "
        "(time per view x%.2f)\n",
        static_cast<long long>(b["size"].get<int>()), static_cast<long long>(a["size"].get<int>()),
        std::pow(double(b["size"].get<int>()) / a["size"].get<int>(), 2),
        b["peak_mib"].get<double>() / a["peak_mib"].get<double>(),
        b["analysis_rise_mib"].get<double>() - a["analysis_rise_mib"].get<double>(),
        double(b["views"].get<int>()) / a["views"].get<int>(),
        b["analysis_seconds"].get<double>() / a["analysis_seconds"].get<double>(),
        (b["analysis_seconds"].get<double>() / b["views"].get<int>()) /
            (a["analysis_seconds"].get<double>() / a["views"].get<int>()));
  }
  if (!keep) fs::remove_all(dir);
  return 0;
}
