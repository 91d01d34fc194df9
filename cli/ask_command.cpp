// `unibiomed ask`: one question about one image, answered by the model, with the masks of its
// [SEG] tokens written as PNG. The image is a PNG/JPEG taken as it is, or a DICOM file rendered
// the way the pipeline renders it (dicom/view.h: window presets, padded to a square); for DICOM
// the masks are mapped back onto the source frame.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "dicom/error.h"
#include "dicom/raster_file.h"
#include "dicom/series.h"
#include "dicom/view.h"
#include "inference/error.h"
#include "inference/grounded_model.h"
#include "inference/runtime.h"

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

struct Input {
  inference::RgbImage image;
  std::optional<dicom::ViewProvenance> provenance;  // DICOM only
};

Input read_input(const fs::path& path, int view_index, const std::string& ct_preset) {
  Input in;
  if (!fs::is_regular_file(path)) throw dicom::DicomError("image " + path.string() + " does not exist");
  if (is_dicom_file(path)) {
    const dicom::SeriesCollection c = dicom::read_series({path});
    if (c.series.empty()) {
      std::string why = c.problems.empty() ? "no image" : c.problems.front().message;
      throw dicom::DicomError("DICOM file " + path.string() + ": " + why);
    }
    dicom::RenderOptions options;
    options.ct_preset = ct_preset;
    const dicom::Series& series = c.series.front();
    const auto views = dicom::plan_views(series, options);
    if (view_index < 0 || static_cast<size_t>(view_index) >= views.size())
      throw dicom::DicomError("DICOM file " + path.string() + " has " + std::to_string(views.size()) +
                              " views; --view " + std::to_string(view_index) + " is out of range");
    dicom::View v = dicom::render_view(series, views[static_cast<size_t>(view_index)], options);
    in.image.width = v.image.width;
    in.image.height = v.image.height;
    in.image.rgb = std::move(v.image.rgb);
    in.provenance = v.provenance;
  } else {
    dicom::RgbImage im = dicom::read_raster_rgb(path);
    in.image.width = im.width;
    in.image.height = im.height;
    in.image.rgb = std::move(im.rgb);
  }
  return in;
}

}  // namespace

int run_ask(const Args& args) {
  ArgParser p("unibiomed ask --model DIR [options] IMAGE QUESTION",
              "Asks the model one question about one image and prints the answer. IMAGE is a PNG or JPEG file (used "
              "as it is) or a DICOM file (rendered as the pipeline does: CT window preset, MR percentiles, padded to "
              "a square; masks are mapped back to the source frame). QUESTION is the user text as the model takes "
              "it; \"<image>\" is put in front when it has none. One mask per [SEG] in the answer.");
  p.option("--model", "DIR", "model folder (config.json, model.safetensors, tokenizer files)")
      .option("--device", "D", "cpu, cuda or cuda:N", std::string("cpu"))
      .option("--dtype", "T", "auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16", std::string("auto"))
      .option("--tokenizer", "DIR", "tokenizer files from another folder (default: the model folder)")
      .option("--mask-out", "DIR", "write each [SEG]'s mask as 8-bit PNG (0/255) at the image's size: mask-000.png, ...")
      .option("--max-new-tokens", "N", "generation limit", std::string("2048"))
      .option("--threads", "N", "CPU threads (0 = every core this process may use)", std::string("0"))
      .option("--view", "N", "DICOM: which view of the file (0-based: frame or slice order)", std::string("0"))
      .option("--ct-window", "NAME", "DICOM CT: window preset (abdomen, liver, colon, pancreas, lung)", std::string("abdomen"))
      .flag("--json", "print {\"text\", \"ids\", \"segments\": [{\"phrase\", \"iou\", \"mask\"}]} as JSON")
      .positional("IMAGE QUESTION", "the image file and the question", 2, 2);
  if (!p.parse(args)) return kExitOk;
  if (!p.get_optional("--model")) throw UsageError("--model DIR is required");
  const long max_new = p.get_int("--max-new-tokens");
  if (max_new < 1 || max_new > 1'000'000) throw UsageError("--max-new-tokens must be between 1 and 1000000");
  const long threads = p.get_int("--threads");
  if (threads < 0 || threads > 4096) throw UsageError("--threads must be 0 or a positive count");
  const long view = p.get_int("--view");
  const fs::path image_path = p.positionals()[0];
  const std::string question = p.positionals()[1];

  Input input;
  try {
    input = read_input(image_path, static_cast<int>(view), p.get("--ct-window"));
  } catch (const dicom::DicomError& e) {
    std::cerr << "unibiomed ask: " << e.what() << "\n";
    return kExitBadInput;
  }

  inference::configure_cpu_threads(static_cast<int>(threads));
  std::unique_ptr<inference::GroundedModel> model;
  try {
    inference::LoadOptions lo;
    lo.device = p.get("--device");
    lo.dtype = p.get("--dtype");
    if (auto t = p.get_optional("--tokenizer")) lo.tokenizer_dir = fs::path(*t);
    model = inference::GroundedModel::load(p.get("--model"), lo);
  } catch (const inference::InferenceError& e) {
    std::cerr << "unibiomed ask: cannot load the model: " << e.what() << "\n";
    return kExitModelError;
  }

  inference::AnswerOptions ao;
  ao.max_new_tokens = static_cast<int>(max_new);
  ao.probability_maps = false;
  inference::GroundedAnswer answer;
  try {
    answer = model->answer(input.image, question, ao);
  } catch (const inference::InferenceError& e) {
    std::cerr << "unibiomed ask: " << e.what() << "\n";
    return kExitFailure;
  }

  // Masks: at the image's size; for DICOM back on the source frame.
  std::vector<std::string> mask_files(answer.segments.size());
  if (auto out = p.get_optional("--mask-out")) {
    std::error_code ec;
    fs::create_directories(*out, ec);
    if (!fs::is_directory(*out)) {
      std::cerr << "unibiomed ask: cannot create the folder " << *out << "\n";
      return kExitFailure;
    }
    try {
      for (size_t k = 0; k < answer.segments.size(); ++k) {
        const auto& s = answer.segments[k];
        dicom::GreyImage mask{s.width, s.height, std::vector<uint8_t>(s.mask.size())};
        for (size_t i = 0; i < s.mask.size(); ++i) mask.grey[i] = s.mask[i] ? 255 : 0;
        if (input.provenance) mask = dicom::map_mask_to_source(*input.provenance, mask);
        char name[32];
        std::snprintf(name, sizeof name, "mask-%03zu.png", k);  // sorted names = [SEG] order
        dicom::write_png(fs::path(*out) / name, mask);
        mask_files[k] = name;
      }
    } catch (const dicom::DicomError& e) {
      std::cerr << "unibiomed ask: " << e.what() << "\n";
      return kExitFailure;
    }
  }

  if (p.is_set("--json")) {
    nlohmann::ordered_json j;
    j["text"] = answer.text;
    j["ids"] = answer.ids;
    j["stop_reason"] = answer.stop_reason;
    j["segments"] = nlohmann::ordered_json::array();
    for (size_t k = 0; k < answer.segments.size(); ++k) {
      const auto& s = answer.segments[k];
      nlohmann::ordered_json seg;
      seg["phrase"] = s.phrase;
      seg["iou"] = s.iou;
      seg["mask"] = mask_files[k].empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(mask_files[k]);
      seg["area"] = s.area();
      seg["object_score"] = s.object_score;
      j["segments"].push_back(seg);
    }
    // Invalid UTF-8 in the text (a random model's bytes) must not abort the output.
    std::cout << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::cout << answer.text << "\n";
    for (size_t k = 0; k < answer.segments.size(); ++k) {
      const auto& s = answer.segments[k];
      std::cout << "[SEG] " << k << ": " << (s.phrase.empty() ? "(no phrase)" : "\"" + s.phrase + "\"") << ", IoU "
                << s.iou << ", " << s.area() << " of " << s.mask.size() << " pixels"
                << (mask_files[k].empty() ? "" : " -> " + mask_files[k]) << "\n";
    }
  }
  return answer.cancelled() ? kExitFailure : kExitOk;
}

}  // namespace unibiomed::cli
