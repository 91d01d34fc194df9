// `unibiomed ask`: one question about one image through the pipeline's ask (the same path as
// the node's /ask route): the answer, the masks of its [SEG] tokens written as PNG, and for
// DICOM a SEG whose segments are coded as the target the question names. The image is a
// PNG/JPEG taken as it is, or a DICOM file rendered the way the analysis renders it (the
// window of the matching task rule, padded to a square; masks mapped back onto the source
// frame). Several images are the frames of one video, asked in video mode (the pipeline's
// ask_video: key frames to the language model, each [SEG] tracked through every frame).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <optional>
#include <utility>
#include <vector>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "dicom/error.h"
#include "dicom/raster_file.h"
#include "dicom/series.h"
#include "dicom/toolkit_logging.h"
#include "pipeline/analyzer.h"

namespace unibiomed::cli {

namespace fs = std::filesystem;

namespace {

// DICOM Part 10 files carry "DICM" after a 128-byte preamble (PS3.10 section 7.1).
bool is_dicom_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char buf[132] = {};
  in.read(buf, sizeof buf);
  return in.gcount() == 132 && std::string(buf + 128, 4) == "DICM";
}

// Checks the image before the model loads (seconds): it exists, and a DICOM file has the view.
void check_input(const fs::path& path, long view) {
  if (!fs::is_regular_file(path)) throw dicom::DicomError("image " + path.string() + " does not exist");
  long views = 1;
  if (is_dicom_file(path)) {
    const dicom::SeriesCollection c = dicom::read_series({path});
    if (c.series.empty())  // a reader's problem names its file already (FileProblem::message)
      throw dicom::DicomError(c.problems.empty() ? "DICOM file " + path.string() + ": no image"
                                                 : c.problems.front().message);
    const auto& instance = c.series.front().instances.front();
    if (const std::string problem = instance.image_problem(); !problem.empty()) throw dicom::DicomError(problem);
    views = instance.pixels().number_of_frames;
  }
  if (view < 0 || view >= views)
    throw dicom::DicomError("image " + path.string() + " has " + std::to_string(views) + " view" +
                            (views == 1 ? "" : "s") + "; --view " + std::to_string(view) + " is out of range");
}

// The size of a video frame, read before the model loads: a single-frame image.
std::pair<int, int> frame_size(const fs::path& path) {
  if (!fs::is_regular_file(path)) throw dicom::DicomError("image " + path.string() + " does not exist");
  if (is_dicom_file(path)) {
    check_input(path, 0);
    const dicom::SeriesCollection c = dicom::read_series({path});
    const auto& pixels = c.series.front().instances.front().pixels();
    if (pixels.number_of_frames != 1)
      throw dicom::DicomError("DICOM file " + path.string() + " has " + std::to_string(pixels.number_of_frames) +
                              " frames; give the frames of a video as files of one frame each");
    return {pixels.columns, pixels.rows};
  }
  const dicom::RgbImage image = dicom::read_raster_rgb(path);
  return {image.width, image.height};
}

// Checks the frames of a video: each readable, all of one size (the first file's).
void check_video_inputs(const std::vector<fs::path>& paths) {
  std::pair<int, int> first{0, 0};
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto size = frame_size(paths[i]);
    if (i == 0) {
      first = size;
    } else if (size != first) {
      throw dicom::DicomError("frame " + std::to_string(i + 1) + " (" + paths[i].string() + ") is " +
                              std::to_string(size.first) + "x" + std::to_string(size.second) + ", but frame 1 (" +
                              paths[0].string() + ") is " + std::to_string(first.first) + "x" +
                              std::to_string(first.second) + ": the frames of a video must have one size");
    }
  }
}

void write_mask_png(const fs::path& path, int width, int height, const std::vector<uint8_t>& mask) {
  dicom::GreyImage grey{width, height, std::vector<uint8_t>(mask.size())};
  for (size_t i = 0; i < mask.size(); ++i) grey.grey[i] = mask[i] ? 255 : 0;
  dicom::write_png(path, grey);
}

// --mask-out: creates the folder and calls write_segment(folder, k) for each of `count` [SEG]s.
// False after saying why on stderr (folder not creatable, a PNG not writable); true when the
// option is absent.
bool write_mask_files(const ArgParser& p, size_t count,
                      const std::function<void(const fs::path&, size_t)>& write_segment) {
  const auto out = p.get_optional("--mask-out");
  if (!out) return true;
  std::error_code ec;
  fs::create_directories(*out, ec);
  if (!fs::is_directory(*out)) {
    std::cerr << "unibiomed ask: cannot create the folder " << *out << "\n";
    return false;
  }
  try {
    for (size_t k = 0; k < count; ++k) write_segment(fs::path(*out), k);
  } catch (const dicom::DicomError& e) {
    std::cerr << "unibiomed ask: " << e.what() << "\n";
    return false;
  }
  return true;
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// Video mode: the answer, per [SEG] its mask on every frame (PNG), per-frame area, IoU and
// object score.
int run_ask_video(const ArgParser& p, pipeline::Analyzer& analyzer, const std::vector<fs::path>& paths,
                  const pipeline::Question& question) {
  pipeline::Analyzer::AskVideoResult answer;
  try {
    std::vector<pipeline::InstanceInput> inputs;
    for (const auto& path : paths) {
      pipeline::InstanceInput input;
      input.id = path.string();
      input.path = path;
      inputs.push_back(std::move(input));
    }
    answer = analyzer.ask_video(inputs, question, {});
  } catch (const std::exception& e) {
    // PipelineError, or the model's own error (video mode not available in this build...).
    std::cerr << "unibiomed ask: video mode (" << paths.size() << " frames): " << e.what() << "\n";
    return kExitFailure;
  }
  // mask-KKK-frame-TTT.png: [SEG] index, then frame, both from 0 (sorted names = answer order).
  std::vector<std::vector<std::string>> mask_files(answer.segments.size());
  const bool masks_written = write_mask_files(p, answer.segments.size(), [&](const fs::path& dir, size_t k) {
    const auto& s = answer.segments[k];
    for (size_t t = 0; t < s.frames.size(); ++t) {
      char name[64];
      std::snprintf(name, sizeof name, "mask-%03zu-frame-%03zu.png", k, t);
      write_mask_png(dir / name, s.width, s.height, s.frames[t].mask);
      mask_files[k].push_back(name);
    }
  });
  if (!masks_written) return kExitFailure;
  if (p.is_set("--json")) {
    nlohmann::ordered_json j;
    j["text"] = answer.model_answer;
    j["answer"] = answer.text;
    j["ids"] = answer.ids;
    j["stop_reason"] = answer.stop_reason;
    j["mode"] = "video";
    j["frames"] = paths.size();
    j["key_frames"] = answer.key_frames;
    j["segments"] = nlohmann::ordered_json::array();
    for (size_t k = 0; k < answer.segments.size(); ++k) {
      const auto& s = answer.segments[k];
      nlohmann::ordered_json masks = nlohmann::ordered_json::array();
      for (size_t t = 0; t < s.frames.size(); ++t)
        masks.push_back({{"frame", t},
                         {"mask", t < mask_files[k].size() ? nlohmann::ordered_json(mask_files[k][t])
                                                           : nlohmann::ordered_json(nullptr)},
                         {"area", s.frames[t].area},
                         {"iou", s.frames[t].iou},
                         {"object_score", s.frames[t].object_score}});
      j["segments"].push_back(
          {{"phrase", s.phrase}, {"finding", s.finding()}, {"findings", s.findings}, {"masks", masks}});
    }
    j["findings"] = nlohmann::ordered_json::array();
    for (const auto& f : answer.findings) {
      nlohmann::ordered_json m = nlohmann::ordered_json::array();
      for (const auto& x : f.measurements) m.push_back({{"name", x.name}, {"value", x.value}, {"unit", x.unit}});
      nlohmann::ordered_json areas = nlohmann::ordered_json::array();
      for (const auto& [frame, area] : f.frame_areas) areas.push_back({frame, area});
      nlohmann::ordered_json finding = {
          {"label", f.label},           {"text", f.text},
          {"confidence", f.confidence}, {"key_frame", f.key_frame - 1},
          {"measurements", m},          {"frame_areas", {{"unit", f.frame_area_unit}, {"frames", areas}}}};
      if (!f.side.empty()) finding["side"] = f.side;
      j["findings"].push_back(finding);
    }
    j["notes"] = answer.notes;
    std::cout << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::cout << (answer.text.empty() ? answer.model_answer : answer.text) << "\n";
    std::cout << "video of " << paths.size() << " frames; key frames";
    for (int k : answer.key_frames) std::cout << " " << k;
    std::cout << "\n";
    for (size_t k = 0; k < answer.segments.size(); ++k) {
      const auto& s = answer.segments[k];
      size_t on = 0;
      for (const auto& f : s.frames) on += f.area > 0 ? 1 : 0;
      std::cout << "[SEG] " << k << ": " << (s.phrase.empty() ? "(no phrase)" : "\"" + s.phrase + "\"") << ", on " << on
                << " of " << s.frames.size() << " frames";
      for (int n : s.findings) {  // a paired organ: one finding per side
        const auto& f = answer.findings[static_cast<size_t>(n)];
        std::cout << "; finding " << f.label << " (largest on frame " << f.key_frame - 1 << ")";
        for (const auto& m : f.measurements) std::cout << ", " << m.name << " " << m.value << " " << m.unit;
      }
      if (!mask_files[k].empty()) std::cout << " -> " << mask_files[k].front() << " ... " << mask_files[k].back();
      std::cout << "\n";
    }
    for (const auto& note : answer.notes) std::cout << "note: " << note << "\n";
  }
  return answer.stop_reason == "cancelled" ? kExitFailure : kExitOk;
}

}  // namespace

int run_ask(const Args& args) {
  ArgParser p("unibiomed ask --model DIR [options] IMAGE... QUESTION",
              "Asks the model one question about one image and prints the answer, as the node's /ask does. IMAGE is "
              "a PNG or JPEG file (used as it is) or a DICOM file (rendered as the analysis does: the CT window of "
              "the task rule the question matches, MR percentiles, padded to a square; masks are mapped back to the "
              "source frame). QUESTION is the user text as the model takes it; \"<image>\" is put in front when it "
              "has none. One mask per [SEG] in the answer; a question naming a target of the task rules (\"Please "
              "segment liver in CT.\") codes its segments as that target. Several IMAGEs are the frames of one video in "
              "the given order (all of one size) and the question is answered in video mode, as the reference does: "
              "the first min(5, N) frames go to the language model and each [SEG] is tracked from frame 0 through "
              "every frame by SAM2's memory; one finding per tracked object.");
  p.option("--model", "DIR", "model folder (config.json, model.safetensors, tokenizer files)")
      .option("--device", "D", "cpu, cuda or cuda:N", std::string("cpu"))
      .option("--dtype", "T", "auto (bfloat16 on CUDA and on a CPU with bfloat16 dot products, else float32), float32, bfloat16, float16", std::string("auto"))
      .option("--tokenizer", "DIR", "tokenizer files from another folder (default: the model folder)")
      .option("--task-rules", "FILE", "task rules file replacing (or, with \"extends\", extending) the defaults")
      .option("--mask-out", "DIR",
              "write each [SEG]'s mask as 8-bit PNG (0/255) at the image's size: mask-000.png, ...; for a video one "
              "per [SEG] and frame: mask-KKK-frame-TTT.png")
      .option("--seg-out", "FILE", "DICOM input, one image: write the SEG of the answer's findings to FILE")
      .option("--max-new-tokens", "N", "generation limit", std::string("2048"))
      .option("--threads", "N", "CPU threads (0 = every core this process may use)", std::string("0"))
      .option("--view", "N", "DICOM, one image: which frame of the file (0-based)", std::string("0"))
      .option("--ct-window", "NAME",
              "DICOM CT: window preset (abdomen, liver, colon, pancreas, lung); default: the matching task rule's")
      .flag("--json",
            "print {\"text\", \"answer\", \"ids\", \"segments\": [{\"phrase\", \"iou\", \"mask\"}], \"findings\"} as JSON; "
            "for a video each segment has \"masks\": [{\"frame\", \"mask\", \"area\", \"iou\", \"object_score\"}] in frame "
            "order")
      .positional("IMAGE... QUESTION", "the image file (or the frames of one video) and the question", 2, 100000);
  if (!p.parse(args)) return kExitOk;
  if (!p.get_optional("--model")) throw UsageError("--model DIR is required");
  const long max_new = p.get_int("--max-new-tokens");
  if (max_new < 1 || max_new > 1'000'000) throw UsageError("--max-new-tokens must be between 1 and 1000000");
  const long threads = p.get_int("--threads");
  if (threads < 0 || threads > 4096) throw UsageError("--threads must be 0 or a positive count");
  const long view = p.get_int("--view");
  const std::vector<std::string>& positionals = p.positionals();
  const std::vector<fs::path> image_paths(positionals.begin(), positionals.end() - 1);
  const fs::path image_path = image_paths.front();
  const bool video = image_paths.size() > 1;
  if (video && view != 0) throw UsageError("--view chooses a frame of one image; a video's frames are its IMAGEs");
  if (video && p.get_optional("--seg-out")) throw UsageError("--seg-out is for one image; a video writes no SEG");
  pipeline::Question question;
  question.text = positionals.back();
  question.window = p.get_optional("--ct-window").value_or("");

  dicom::silence_toolkit_logs();
  try {
    if (video)
      check_video_inputs(image_paths);
    else
      check_input(image_path, view);
  } catch (const dicom::DicomError& e) {
    std::cerr << "unibiomed ask: " << e.what() << "\n";
    return kExitBadInput;
  }

  pipeline::AnalyzerSettings settings;
  settings.model_dir = p.get("--model");
  if (auto t = p.get_optional("--tokenizer")) settings.tokenizer_dir = *t;
  if (auto rules = p.get_optional("--task-rules")) settings.task_rules = *rules;
  settings.device = p.get("--device");
  settings.dtype = p.get("--dtype");
  settings.threads = static_cast<int>(threads);
  settings.max_new_tokens = static_cast<int>(max_new);
  settings.batch_size = 1;
  settings.previews = false;
  std::unique_ptr<pipeline::Analyzer> analyzer;
  try {
    analyzer = pipeline::Analyzer::create(settings);
  } catch (const pipeline::PipelineError& e) {
    const std::string what = e.what();
    std::cerr << "unibiomed ask: cannot load the model: " << what << "\n";
    return what.rfind("task rules", 0) == 0 ? kExitBadInput : kExitModelError;
  }

  if (video) return run_ask_video(p, *analyzer, image_paths, question);

  pipeline::Analyzer::AskResult answer;
  try {
    pipeline::InstanceInput input;
    input.id = image_path.string();
    input.path = image_path;
    answer = analyzer->ask(input, static_cast<int>(view) + 1, question, "");
  } catch (const pipeline::PipelineError& e) {
    std::cerr << "unibiomed ask: " << e.what() << "\n";
    return kExitFailure;
  }

  // Masks at the image's size (for DICOM on the source frame).
  std::vector<std::string> mask_files(answer.segments.size());
  const bool masks_written = write_mask_files(p, answer.segments.size(), [&](const fs::path& dir, size_t k) {
    const auto& s = answer.segments[k];
    char name[32];
    std::snprintf(name, sizeof name, "mask-%03zu.png", k);  // sorted names = [SEG] order
    write_mask_png(dir / name, s.width, s.height, s.mask);
    mask_files[k] = name;
  });
  if (!masks_written) return kExitFailure;
  if (auto seg_out = p.get_optional("--seg-out")) {
    if (!answer.seg) {
      std::string why = answer.findings.empty() ? "no finding" : "not a DICOM image";
      const std::string prefix = pipeline::kNoSegNote;
      for (const auto& note : answer.notes)
        if (note.rfind(prefix, 0) == 0) why = note.substr(prefix.size());
      std::cerr << "unibiomed ask: no SEG to write (" << why << ")\n";
    } else {
      try {
        write_bytes(*seg_out, answer.seg->bytes);
      } catch (const std::exception& e) {
        std::cerr << "unibiomed ask: " << e.what() << "\n";
        return kExitFailure;
      }
    }
  }

  if (p.is_set("--json")) {
    nlohmann::ordered_json j;
    j["text"] = answer.model_answer;  // the model's words ([SEG] kept)
    j["answer"] = answer.text;
    j["ids"] = answer.ids;
    j["stop_reason"] = answer.stop_reason;
    j["segments"] = nlohmann::ordered_json::array();
    for (size_t k = 0; k < answer.segments.size(); ++k) {
      const auto& s = answer.segments[k];
      nlohmann::ordered_json seg;
      seg["phrase"] = s.phrase;
      seg["iou"] = s.iou;
      seg["mask"] = mask_files[k].empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(mask_files[k]);
      seg["area"] = s.area;
      seg["object_score"] = s.object_score;
      seg["findings"] = s.findings;  // indices into "findings" (a paired organ: one per side)
      j["segments"].push_back(seg);
    }
    j["findings"] = nlohmann::ordered_json::array();
    for (const auto& f : answer.findings) {
      nlohmann::ordered_json m = nlohmann::ordered_json::array();
      for (const auto& x : f.measurements) m.push_back({{"name", x.name}, {"value", x.value}, {"unit", x.unit}});
      nlohmann::ordered_json finding = {{"label", f.label},
                                        {"text", f.text},
                                        {"segment_number", f.segment_number},
                                        {"confidence", f.confidence},
                                        {"measurements", m}};
      if (!f.side.empty()) finding["side"] = f.side;  // the patient's side of a paired organ
      j["findings"].push_back(finding);
    }
    j["notes"] = answer.notes;
    // Invalid UTF-8 in the text (a random model's bytes) must not abort the output.
    std::cout << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::cout << (answer.text.empty() ? answer.model_answer : answer.text) << "\n";
    for (size_t k = 0; k < answer.segments.size(); ++k) {
      const auto& s = answer.segments[k];
      std::cout << "[SEG] " << k << ": " << (s.phrase.empty() ? "(no phrase)" : "\"" + s.phrase + "\"") << ", IoU "
                << s.iou << ", " << s.area << " pixels";
      for (int n : s.findings) {  // a paired organ: one finding per side
        const auto& f = answer.findings[static_cast<size_t>(n)];
        std::cout << "; finding " << f.label;
        for (const auto& m : f.measurements) std::cout << ", " << m.name << " " << m.value << " " << m.unit;
      }
      std::cout << (mask_files[k].empty() ? "" : " -> " + mask_files[k]) << "\n";
    }
    for (const auto& note : answer.notes) std::cout << "note: " << note << "\n";
  }
  return answer.stop_reason == "cancelled" ? kExitFailure : kExitOk;
}

}  // namespace unibiomed::cli
