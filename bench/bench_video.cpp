// Video mode against slices mode (issue 18) on the CPU or a GPU (--device; issue 23's video
// propagation frames/s): the sample CT (N slices of SIZE x SIZE)
// through pipeline::Analyzer with one model loaded once and two sets of task rules, one with
// "mode": "video" and one with "mode": "slices" (config/TASK-RULES.md, "Video mode and slices
// mode"), same checkpoint, same tasks, same study. Measured in one run and printed:
//   - the time per study in each mode and the ratio video / slices;
//   - the SAM2 image encoder time per frame next to the propagation time per tracked frame
//     (memory attention + mask decoder + memory encoder: summary.json's model_propagation over
//     frames x tracked objects);
//   - the peak resident memory (VmHWM, reset through /proc/self/clear_refs before each run, each
//     phase and each tracked frame) of video mode: the whole study, the rise while the video is
//     encoded (SAM2 activations, batches of up to 4 frames, plus the feature cache), the rise
//     while the language model answers (key frames), and the rise of every tracked frame above
//     the RSS at the first one. The frames' SAM2 feature cache grows linearly with the frames by
//     design (every frame is encoded once and kept for every question; its expected bytes per
//     frame are printed); the memory bank is bounded by its window (the key frames + the last
//     num_maskmem - 1 frames), so once it is full the per-frame rise must stay flat but for the
//     per-frame result kept (the low-resolution logits, 0.25 MiB).
//
//   - on a GPU, the peak GPU memory (tensor bytes, reset before each phase) of encoding the
//     video, of the language model's part of a question and of its propagation, per mode;
//   - one RESULT line per figure (bench_common.h), e.g. video_propagation_frames_per_s.
//
//   bench_video [--device cpu|cuda[:N]] [--dtype auto] [--frames 64] [--size 512] [--config real|tiny]
//               [--tasks abnormality] [--max-new-tokens 8] [--batch 8] [--model DIR] [--keep]
//
// e.g. on a GPU: bench_video --device cuda --frames 64
//
// e.g. bench_video --config tiny --frames 12 (a quick check of the plumbing with the small
// reference-size config) or bench_video --frames 16 (real size, about 20 minutes on 2 cores; the
// default 64 frames take over an hour there).
//
// As in bench_pipeline, a new checkpoint is the `make-random --answer "Sure, [SEG]."` fixture
// of the chosen config (random weights, its language model answers that to any question), so
// every answer reaches SAM2 and each question tracks exactly one object through the frames. It
// has no targets.json, so nothing forces slices mode; a --model folder whose targets.json says
// "video": false reads both runs as slices (the benchmark says so). --tasks as bench_pipeline
// (default: the abnormality question only, one question per series or per slice).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <malloc.h>
#include <unistd.h>

#include "bench/bench_common.h"
#include "bench/bench_device.h"
#include "inference/device.h"
#include "inference/model_config.h"
#include "inference/random_checkpoint.h"
#include "pipeline/analyzer.h"
#include "pipeline/grounding_engine.h"
#include "pipeline/study_analyzer.h"
#include "samples/sample_studies.h"

namespace {

using namespace unibiomed;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// VmRSS and VmHWM of this process in bytes (bench_common.h; negative where unreadable).
struct Rss {
  double current = 0, peak = 0;
};
Rss read_rss() { return {bench::status_mib("VmRSS:") * 1048576.0, bench::status_mib("VmHWM:") * 1048576.0}; }
// Gives freed heap back to the system and resets VmHWM to the current RSS; false when the kernel
// does not allow it (then the peaks are those of the whole process so far).
bool reset_peak_rss() {
  ::malloc_trim(0);
  return bench::reset_peak_memory();
}

// The peak resident memory by phase: mark() folds VmHWM since the last mark into the run's peak
// and starts a new phase (VmHWM reset to the current RSS).
struct PeakTracker {
  bool enabled = false;
  double run_peak = 0;
  double mark() {
    if (!enabled) return 0;
    const double peak = read_rss().peak;
    run_peak = std::max(run_peak, peak);
    reset_peak_rss();
    return peak;
  }
};

// One loaded model behind several analyzers (one per task-rules file); counts the frames that
// SAM2 tracked (frames x [SEG]s of every video answer).
// On a GPU also the peak GPU memory (tensor bytes) of each phase: the counter is reset when a
// phase starts and read when it ends (encode: a batch of slices or a whole video; language: a
// question up to its first tracked frame, or a slices-mode answer; propagation: the rest of a
// video question).
struct GpuPeaks {
  double encode = 0, language = 0, propagation = 0;
};

class SharedEngine : public pipeline::GroundingEngine {
 public:
  SharedEngine(std::shared_ptr<pipeline::GroundingEngine> engine, const c10::Device& device)
      : engine_(std::move(engine)), gpu_(device), gpu_on_(!device.is_cpu()), per_frame_(device.is_cpu()) {}
  std::unique_ptr<Batch> encode(const std::vector<inference::RgbImage>& images, const std::atomic<bool>* cancel) override {
    gpu_reset();
    auto batch = engine_->encode(images, cancel);
    gpu_peaks_.encode = std::max(gpu_peaks_.encode, gpu_read());
    return batch;
  }
  std::vector<inference::GroundedAnswer> answer(Batch& batch, const std::string& question,
                                                const std::atomic<bool>* cancel) override {
    gpu_reset();
    auto answers = engine_->answer(batch, question, cancel);
    gpu_peaks_.language = std::max(gpu_peaks_.language, gpu_read());
    return answers;
  }
  std::unique_ptr<VideoBatch> encode_video(const std::vector<inference::RgbImage>& frames,
                                           const std::atomic<bool>* cancel) override {
    peaks_.mark();
    encode_before_ = read_rss().current;
    gpu_reset();
    auto video = engine_->encode_video(frames, cancel);
    gpu_peaks_.encode = std::max(gpu_peaks_.encode, gpu_read());
    encode_peak_ = std::max(encode_peak_, peaks_.mark() - encode_before_);
    return video;
  }
  inference::VideoAnswer answer_video(VideoBatch& video, const std::string& question,
                                      const inference::VideoOptions& options) override {
    // The language model's phase ends with the first propagated frame (as the engine times it).
    peaks_.mark();
    const double before = read_rss().current;
    double propagation_before = 0;
    bool first = true;
    gpu_reset();
    inference::VideoOptions o = options;
    o.on_frame = [&, outer = options.on_frame](int done, int total) {
      if (first) {
        first = false;
        gpu_peaks_.language = std::max(gpu_peaks_.language, gpu_read());
        gpu_reset();
        language_peak_ = std::max(language_peak_, peaks_.mark() - before);
        propagation_before = read_rss().current;
      } else if (peaks_.enabled && per_frame_) {
        frame_rise_.push_back(peaks_.mark() - propagation_before);  // the frame just computed
      }
      if (outer) outer(done, total);
    };
    auto answer = engine_->answer_video(video, question, o);
    if (first)
      gpu_peaks_.language = std::max(gpu_peaks_.language, gpu_read());
    else
      gpu_peaks_.propagation = std::max(gpu_peaks_.propagation, gpu_read());
    const double end_peak = peaks_.mark();
    if (first) language_peak_ = std::max(language_peak_, end_peak - before);
    else answer_peak_ = std::max(answer_peak_, end_peak - propagation_before);
    for (const auto& s : answer.segments)
      tracked_frames_ += static_cast<long>(std::count(s.tracked.begin(), s.tracked.end(), uint8_t{1}));
    return answer;
  }
  std::string description() const override { return engine_->description(); }
  std::string weights_hash() const override { return engine_->weights_hash(); }
  pipeline::EngineTimings timings() const override { return engine_->timings(); }
  long tracked_frames() const { return tracked_frames_; }
  // A study: reset() before (VmHWM reset), finish() after: the peak RSS of the whole study, and
  // the largest RSS rise above the start of each phase (encoding a video; one question of it).
  void reset(bool enabled) {
    peaks_ = PeakTracker{enabled, 0};
    encode_peak_ = answer_peak_ = language_peak_ = 0;
    frame_rise_.clear();
    gpu_peaks_ = GpuPeaks{};
  }
  // The GPU peaks (MiB of tensors) of the run since reset(); zeros on the CPU.
  GpuPeaks gpu_peaks() const { return gpu_peaks_; }
  double finish() {
    peaks_.mark();
    return peaks_.run_peak;
  }
  double encode_rise() const { return encode_peak_; }
  double answer_rise() const { return answer_peak_; }
  double language_rise() const { return language_peak_; }
  // The RSS peak of each tracked frame after the first, above the RSS at the first one, in the
  // order computed (the key frames first, then propagation).
  const std::vector<double>& frame_rise() const { return frame_rise_; }

 private:
  void gpu_reset() {
    if (gpu_on_) gpu_.reset();
  }
  double gpu_read() const { return gpu_on_ ? gpu_.peak_mib() : 0.0; }

  std::shared_ptr<pipeline::GroundingEngine> engine_;
  bench::StagePeak gpu_;
  bool gpu_on_ = false;
  // The RSS peak of every tracked frame (malloc_trim and a VmHWM reset per frame): on the CPU
  // only, where a frame takes seconds; on a GPU that cost would count in the propagation time.
  bool per_frame_ = true;
  GpuPeaks gpu_peaks_;
  long tracked_frames_ = 0;
  PeakTracker peaks_;
  double encode_before_ = 0, encode_peak_ = 0, answer_peak_ = 0, language_peak_ = 0;
  std::vector<double> frame_rise_;
};

double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

struct RunResult {
  double wall = 0;
  nlohmann::json timings;
  std::string mode;
  int frames = 0;
  long tracked_frames = 0;
  double rss_before = 0, rss_peak = 0;
  // Video mode: RSS rise while encoding, while the language model answers, while propagating.
  double encode_rise = 0, language_rise = 0, answer_rise = 0;
  std::vector<double> frame_rise;
  size_t findings = 0;
  GpuPeaks gpu;  // zeros on the CPU
};

RunResult run_study(pipeline::Analyzer& analyzer, SharedEngine& engine, const samples::SampleSeries& series,
                    const pipeline::AnalysisRequest& request, const std::string& label) {
  std::vector<pipeline::InstanceInput> inputs;
  for (const auto& f : series.files) inputs.push_back({f.string(), {}, f});
  RunResult out;
  const bool peak_reset = reset_peak_rss();
  const Rss before = read_rss();
  out.rss_before = before.current;
  engine.reset(peak_reset);
  const long tracked_before = engine.tracked_frames();
  int last_percent = -1;
  const auto progress = [&](const pipeline::Progress& p) {
    const int percent = static_cast<int>(p.fraction * 100);
    if (percent / 25 != last_percent / 25) std::fprintf(stderr, "  [%s] %3d%% %s\n", label.c_str(), percent, p.message.c_str());
    last_percent = percent;
  };
  const auto t0 = Clock::now();
  const pipeline::StudyResult r = analyzer.analyze(inputs, request, progress, nullptr, "bench-video");
  out.wall = seconds_since(t0);  // the answers' masks are on the host: the device's work is done
  out.rss_peak = peak_reset ? engine.finish() : 0;
  out.encode_rise = engine.encode_rise();
  out.answer_rise = engine.answer_rise();
  out.language_rise = engine.language_rise();
  out.frame_rise = engine.frame_rise();
  out.tracked_frames = engine.tracked_frames() - tracked_before;
  out.gpu = engine.gpu_peaks();
  out.findings = r.findings.size();
  const auto summary = nlohmann::json::parse(r.summary_json);
  out.timings = summary.at("timings_seconds");
  const nlohmann::json series_list = summary.at("series");  // a copy: no reference into a lookup (g++ 13)
  for (const auto& s : series_list) {
    out.mode = s.value("mode", std::string("?"));
    out.frames = s.value("frames_analysed", 0);
    if (s.value("state", std::string()) == "failed" || s.contains("reason"))
      std::fprintf(stderr, "  [%s] series: %s\n", label.c_str(), s.dump().c_str());
  }
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace

int main(int argc, char** argv) {
  int frames = 64, size = 512, max_new_tokens = 8, batch = 8;
  std::string kind = "real", tasks = "abnormality", model_arg, dtype = "auto";
  bool keep = false;
  c10::Device device(c10::kCPU);
  bench::CommandLine cl("bench_video",
                        "The sample CT of --frames slices through pipeline::Analyzer in video mode and in slices\n"
                        "mode, one model, same run: time per study and its ratio, the SAM2 encoder vs the\n"
                        "propagation per frame (video_propagation_frames_per_s), the peak memory of every tracked\n"
                        "frame (CPU) or of each phase (GPU). One RESULT line per figure. Quick check: --config tiny\n"
                        "--frames 6.");
  cl.option(
        "--device", "cpu|cuda[:N]", bench::kDeviceHelp, [&](const std::string& v) { device = bench::parse_device(v); },
        "cpu")
      .dtype_option(dtype)
      .option("--frames", "N", "CT slices (at least 2)", frames)
      .option("--size", "PX", "slice rows and columns (at least 16)", size)
      .config_option(kind)
      .option("--tasks", "abnormality|all|NAME,...", "rule tasks asked per series", tasks)
      .option("--max-new-tokens", "N", "most tokens per answer", max_new_tokens)
      .option("--batch", "N", "views encoded and decoded together in slices mode (the node's BatchSize)", batch)
      .option("--model", "DIR", "checkpoint folder (default: the --answer fixture of --config, in a temporary folder)",
              model_arg)
      .flag("--keep", "keep the temporary folder", keep);
  cl.parse(argc, argv);
  if (frames < 2 || size < 16) cl.fail("--frames must be at least 2 and --size at least 16");
  if (kind != "real" && kind != "tiny") cl.fail("--config must be real or tiny, not '" + kind + "'");
  if (max_new_tokens < 1 || batch < 1) cl.fail("--max-new-tokens and --batch must be at least 1");
  const std::string device_text = bench::device_name(device);
  const std::string dtype_used = bench::resolved_dtype(dtype, device);
  fs::path model = model_arg;

  const fs::path work = fs::temp_directory_path() / ("unibiomed-bench-video-" + std::to_string(::getpid()));
  fs::create_directories(work);
  try {
    if (model.empty()) {
      model = work / "model";
      inference::RandomCheckpointOptions o;
      o.kind = kind;
      o.fixed_answer = "Sure, [SEG].";
      const auto t0 = Clock::now();
      const auto s = inference::write_random_checkpoint(model, o);
      std::printf("checkpoint: %s config, %.3f B parameters, answers \"Sure, [SEG].\" (make-random --answer), "
                  "written in %.1f s\n",
                  kind.c_str(), static_cast<double>(s.parameters) / 1e9, seconds_since(t0));
    } else {
      std::printf("checkpoint: %s\n", model.string().c_str());
    }

    samples::SampleOptions so;
    so.only = {"ct"};
    so.ct_slices = frames;
    so.ct_size = size;
    const samples::SampleSeries study = samples::write_samples(work / "study", so).at(0);
    std::printf("study: sample CT of %d slices of %dx%d\n", frames, size, size);

    pipeline::AnalyzerSettings settings;
    settings.model_dir = model;
    settings.max_new_tokens = max_new_tokens;
    settings.previews = false;
    settings.device = device_text;
    settings.dtype = dtype;
    settings.batch_size = batch;
    pipeline::EngineOptions eo;
    eo.model_dir = model;
    eo.max_new_tokens = max_new_tokens;
    eo.batch_size = settings.batch_size;
    eo.device = settings.device;
    eo.dtype = settings.dtype;
    std::printf("device: %s, dtype %s\n", inference::describe_device(device).c_str(), dtype_used.c_str());
    const auto t_load = Clock::now();
    std::shared_ptr<pipeline::GroundingEngine> loaded = pipeline::load_grounded_model(eo);
    auto video_engine = std::make_unique<SharedEngine>(loaded, device);
    auto slices_engine = std::make_unique<SharedEngine>(loaded, device);
    SharedEngine& video_counter = *video_engine;
    SharedEngine& slices_counter = *slices_engine;
    write_text(work / "rules-video.json", R"({"version": 1, "extends": "defaults", "mode": "video"})" "\n");
    write_text(work / "rules-slices.json", R"({"version": 1, "extends": "defaults", "mode": "slices"})" "\n");
    settings.task_rules = work / "rules-video.json";
    auto video = pipeline::make_analyzer(settings, std::move(video_engine));
    settings.task_rules = work / "rules-slices.json";
    auto slices = pipeline::make_analyzer(settings, std::move(slices_engine));
    std::printf("model loaded in %.1f s: %s\n", seconds_since(t_load), video->model_description().c_str());
    const auto t_hash = Clock::now();
    const std::string hash = video->weights_hash();
    std::printf("weights hash %s... in %.1f s (once per model folder, then cached)\n", hash.substr(0, 12).c_str(),
                seconds_since(t_hash));

    pipeline::AnalysisRequest request;
    if (tasks != "all") {
      size_t at = 0;
      while (at <= tasks.size()) {
        const size_t comma = std::min(tasks.find(',', at), tasks.size());
        request.tasks.push_back(tasks.substr(at, comma - at));
        at = comma + 1;
      }
    }

    const RunResult v = run_study(*video, video_counter, study, request, "video " + std::to_string(frames));
    const RunResult slice_run = run_study(*slices, slices_counter, study, request, "slices " + std::to_string(frames));

    std::printf("\ntime per study, %d frames of %dx%d, tasks %s:\n", frames, size, size, tasks.c_str());
    std::printf("%-8s %-8s %10s %10s %10s %10s %12s %10s %9s\n", "mode", "read as", "total s", "rendering",
                "sam2 enc", "language", "propagation", "mapping", "findings");
    for (const RunResult* r : {&v, &slice_run}) {
      const auto& t = r->timings;
      std::printf("%-8s %-8s %10.2f %10.2f %10.2f %10.2f %12.2f %10.2f %9zu\n", r == &v ? "video" : "slices",
                  r->mode.c_str(), t.value("total", r->wall), t.value("rendering", 0.0), t.value("model_grounding", 0.0),
                  t.value("model_language", 0.0) + t.value("model_vision", 0.0), t.value("model_propagation", 0.0),
                  t.value("mapping", 0.0) + t.value("consolidation", 0.0), r->findings);
    }
    const double tv = v.timings.value("total", v.wall), ts = slice_run.timings.value("total", slice_run.wall);
    std::printf("ratio video / slices: %.3f (%.2f s vs %.2f s per study; %.3f vs %.3f s per frame)\n", tv / ts, tv, ts,
                tv / frames, ts / frames);
    if (v.mode != "video")
      std::printf("NOTE: the \"video\" run was read as %s (targets.json \"video\": false?); the ratio means nothing\n",
                  v.mode.c_str());

    std::printf("\nper frame, video mode (%d frames, %ld tracked frames = frames x [SEG]s):\n", v.frames, v.tracked_frames);
    const double enc = v.timings.value("model_grounding", 0.0) / std::max(1, v.frames);
    const double prop = v.timings.value("model_propagation", 0.0) / std::max(1L, v.tracked_frames);
    std::printf("  SAM2 image encoder    %8.4f s per frame (once per frame, shared by every question)\n", enc);
    std::printf("  propagation           %8.4f s per tracked frame (memory attention + decoder + memory encoder)\n", prop);
    std::printf("  propagation / encoder %8.3f\n", enc > 0 ? prop / enc : 0.0);
    std::printf("  slices mode: SAM2 encoder %.4f s per slice, language+decoder %.4f s per slice\n",
                slice_run.timings.value("model_grounding", 0.0) / std::max(1, slice_run.frames),
                (slice_run.timings.value("model_language", 0.0) + slice_run.timings.value("model_vision", 0.0)) /
                    std::max(1, slice_run.frames));

    const auto result = [&](const std::string& name) {
      bench::ResultLine line(name);
      line.set("device", device_text).set("dtype", dtype_used).set("config", model_arg.empty() ? kind : std::string("model"));
      line.set("frames", frames).set("size", size);
      return line;
    };
    const double propagation_s = v.timings.value("model_propagation", 0.0);
    result("video_study_seconds").set("mode", "video").set("read_as", v.mode).set("value", tv).set("unit", "s").print();
    result("video_study_seconds").set("mode", "slices").set("read_as", slice_run.mode).set("value", ts).set("unit", "s").print();
    result("video_over_slices").set("value", ts > 0 ? tv / ts : 0.0).set("unit", "ratio").print();
    bench::ResultLine propagation_line = result("video_propagation_frames_per_s");
    propagation_line.set("tracked_frames", static_cast<int64_t>(v.tracked_frames))
        .set("value", propagation_s > 0 ? static_cast<double>(v.tracked_frames) / propagation_s : 0.0)
        .set("unit", "frames/s");
    if (!device.is_cpu()) propagation_line.set("peak_gpu_mib", v.gpu.propagation);
    propagation_line.print();
    bench::ResultLine encoder_line = result("video_sam2_encoder_frames_per_s");
    encoder_line.set("value", enc > 0 ? 1.0 / enc : 0.0).set("unit", "frames/s");
    if (!device.is_cpu()) encoder_line.set("peak_gpu_mib", v.gpu.encode);
    encoder_line.print();
    if (!device.is_cpu()) {
      std::printf("\npeak GPU memory (tensors, reset at the start of each phase):\n");
      for (const RunResult* r : {&v, &slice_run}) {
        const char* mode = r == &v ? "video" : "slices";
        std::printf("  %-6s encoding %.0f MiB, language model %.0f MiB, propagation %.0f MiB\n", mode, r->gpu.encode,
                    r->gpu.language, r->gpu.propagation);
        for (const auto& [stage, value] : {std::pair<const char*, double>{"encode", r->gpu.encode},
                                           {"language", r->gpu.language},
                                           {"propagation", r->gpu.propagation}})
          result("video_peak_memory_mib").set("mode", mode).set("stage", stage).set("value", value).set("unit", "MiB").set("kind", "peak_gpu_mib").print();
      }
    }

    // The feature cache of a video: per frame the SAM2 image embedding [D, S/16, S/16] and the
    // two high-resolution levels [D/8, S/4, S/4], [D/4, S/8, S/8] in float32 (CPU), plus the
    // RGB frame kept for the key frames' tiles.
    const auto config = inference::ModelConfig::load(model / "config.json");
    const double side = config.grounding.image_size, d = config.grounding.neck.d_model;
    const double cache_per_frame = 4.0 * (d * (side / 16) * (side / 16) + d / 8 * (side / 4) * (side / 4) +
                                          d / 4 * (side / 8) * (side / 8)) +
                                   3.0 * size * size;
    const auto memory = inference::memory_config_from_json(
        [&] {
          std::ifstream in(model / "config.json");
          std::stringstream s;
          s << in.rdbuf();
          return s.str();
        }(),
        (model / "config.json").string());
    // The memory window: every key frame + the last num_maskmem - 1 tracked frames. Tracked
    // frames are counted from the first (a key frame); the bank is full at the latest once the
    // key frames and num_maskmem - 1 propagated frames are done.
    const int keys = std::min(frames, 5);
    const int window = keys + memory.num_maskmem - 1;
    std::printf("\npeak resident memory, video mode, %d frames (VmHWM reset before the run, each phase and each "
                "tracked frame; memory window: %d key frames + %d recent frames):\n",
                v.frames, keys, memory.num_maskmem - 1);
    if (v.rss_peak <= 0) {
      std::printf("  (VmHWM could not be reset: /proc/self/clear_refs not writable)\n");
    } else {
      std::printf("  before %.0f MiB, peak %.0f MiB (growth %.0f MiB); feature cache %.0f MiB expected (%.2f MiB per "
                  "frame: SAM2 features at %dx%d in float32 + the RGB frame)\n",
                  mib(v.rss_before), mib(v.rss_peak), mib(v.rss_peak - v.rss_before), mib(cache_per_frame * v.frames),
                  mib(cache_per_frame), static_cast<int>(side), static_cast<int>(side));
      std::printf("  rise while encoding %.0f MiB, while the language model answers %.0f MiB, while propagating %.0f MiB\n",
                  mib(v.encode_rise), mib(v.language_rise), mib(v.answer_rise));
      if (!device.is_cpu()) {
        std::printf("  per tracked frame: not measured on a GPU (a VmHWM reset per frame would count in the propagation "
                    "time; the GPU peaks below are per phase)\n");
      } else {
        const auto& rise = v.frame_rise;  // tracked frames 2, 3, ... of each question
        std::printf("  peak rise above the first tracked frame, per tracked frame (MiB, in the order computed):");
        for (size_t i = 0; i < rise.size(); ++i) std::printf("%s%.0f", i % 16 == 0 ? "\n    " : " ", mib(rise[i]));
        std::printf("\n");
        // Tracked frame i + 2 is rise[i]; frames past the window are those after the first `window`.
        const size_t past = rise.size() > static_cast<size_t>(window) ? static_cast<size_t>(window - 1) : rise.size();
        if (past < rise.size()) {
          double before_max = 0, after_max = 0;
          for (size_t i = 0; i < past; ++i) before_max = std::max(before_max, rise[i]);
          for (size_t i = past; i < rise.size(); ++i) after_max = std::max(after_max, rise[i]);
          // Least-squares slope of the rise over the frames past the window.
          double sx = 0, sy = 0, sxx = 0, sxy = 0, n = 0;
          for (size_t i = past; i < rise.size(); ++i) {
            const double x = static_cast<double>(i), y = rise[i];
            sx += x, sy += y, sxx += x * x, sxy += x * y, n += 1;
          }
          const double slope = n >= 2 && (n * sxx - sx * sx) > 0 ? (n * sxy - sx * sy) / (n * sxx - sx * sx) : 0;
          std::printf("  frames 2-%zu (filling the window): max %.0f MiB; frames %zu-%zu (window full): max %.0f MiB, "
                      "slope %+.2f MiB per frame (expected: the kept low-resolution logits, %.2f MiB per frame)\n",
                      past + 1, mib(before_max), past + 2, rise.size() + 1, mib(after_max), mib(slope),
                      mib(4.0 * (side / 4) * (side / 4)));
        } else {
          std::printf("  (no frame past the %d-frame window: use more --frames to see the plateau)\n", window);
        }
      }
    }
    if (slice_run.rss_peak > 0)
      std::printf("slices mode, %d frames: peak %.0f MiB (growth %.0f MiB)\n", slice_run.frames, mib(slice_run.rss_peak),
                  mib(slice_run.rss_peak - slice_run.rss_before));
    for (const RunResult* r : {&v, &slice_run})
      if (r->rss_peak > 0)
        result("video_peak_memory_mib")
            .set("mode", r == &v ? "video" : "slices")
            .set("stage", "study")
            .set("value", mib(r->rss_peak))
            .set("unit", "MiB")
            .set("kind", "peak_rss_mib")
            .print();
  } catch (const std::exception& e) {
    std::cerr << "bench_video: " << e.what() << "\n";
    if (!keep) fs::remove_all(work);
    return 1;
  }
  if (keep) std::printf("kept %s\n", work.string().c_str());
  else fs::remove_all(work);
  return 0;
}
