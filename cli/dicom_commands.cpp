// `unibiomed dicom inspect` and `unibiomed dicom render`: what dicom/ makes of files and
// folders, and the model's views of each series as PNG with their provenance.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "dicom/modality.h"
#include "dicom/pixel_calibration.h"
#include "dicom/series.h"
#include "dicom/slide.h"
#include "dicom/toolkit_logging.h"
#include "dicom/view.h"
#include "dicom/volume.h"

namespace unibiomed::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json describe_series(const dicom::Series& s) {
  json j;
  j["study_instance_uid"] = s.study.study_instance_uid;
  j["patient_id"] = s.study.patient_id;
  j["patient_name"] = s.study.patient_name;
  j["study_description"] = s.study.study_description;
  j["series_instance_uid"] = s.identity.series_instance_uid;
  j["series_number"] = s.identity.series_number;
  j["series_description"] = s.identity.series_description;
  j["modality"] = s.identity.modality;
  j["body_part_examined"] = s.identity.body_part_examined;
  j["supported"] = s.modality.modality.has_value();
  j["model_modality"] = s.modality.modality ? json(dicom::modality_name(*s.modality.modality)) : json(nullptr);
  j["basis"] = s.modality.basis;
  if (!s.modality.reason.empty()) j["reason"] = s.modality.reason;
  std::set<std::string> sop_classes, syntaxes;
  for (const auto& i : s.instances) {
    sop_classes.insert(dicom::sop_class_name(i.sop_class_uid()));
    syntaxes.insert(dicom::transfer_syntax_name(i.transfer_syntax_uid()));
  }
  j["sop_classes"] = sop_classes;
  j["transfer_syntaxes"] = syntaxes;
  j["instances"] = s.instances.size();
  j["frames"] = s.frame_count();
  const auto& first = s.instances.front();
  if (first.pixels().has_pixel_data) {
    j["rows"] = first.pixels().rows;
    j["columns"] = first.pixels().columns;
    j["photometric_interpretation"] = first.pixels().photometric_interpretation;
    j["bits_stored"] = first.pixels().bits_stored;
  }
  if (s.modality.modality && s.has_images()) {
    const auto m = *s.modality.modality;
    if (m == dicom::ModelModality::Pathology && first.slide()) {
      try {
        dicom::SlidePyramid pyramid(s);
        json levels = json::array();
        for (const auto& l : pyramid.levels()) {
          levels.push_back({{"total_columns", l.total_columns},
                            {"total_rows", l.total_rows},
                            {"tile_columns", l.tile_columns},
                            {"tile_rows", l.tile_rows},
                            {"tiles", l.tiles.size()},
                            {"mm_per_pixel", l.mm_per_pixel_x},
                            {"downsample", l.downsample},
                            {"dimension_organization", l.dimension_organization}});
        }
        j["slide_levels"] = levels;
      } catch (const dicom::DicomError& e) {
        j["slide_problem"] = e.what();
      }
    } else if (first.frames().front().image_position) {
      dicom::StackPlan plan = dicom::plan_stacks(s);
      json stacks = json::array();
      for (const auto& st : plan.stacks) {
        json x = {{"label", st.label},
                  {"slices", st.slices.size()},
                  {"rows", st.rows},
                  {"columns", st.columns},
                  {"spacing_mm", {st.column_spacing, st.row_spacing, st.slice_spacing}},
                  {"origin", st.origin},
                  {"orientation", st.orientation},
                  {"frame_of_reference_uid", st.frame_of_reference_uid}};
        if (st.gantry_tilt_degrees > 0.5) x["gantry_tilt_degrees"] = st.gantry_tilt_degrees;
        if (!st.volume_problem.empty()) x["volume_problem"] = st.volume_problem;
        stacks.push_back(x);
      }
      j["stacks"] = stacks;
      if (!plan.notes.empty()) j["stack_notes"] = plan.notes;
      if (!plan.refused.empty()) j["stack_refused"] = plan.refused;
    } else {
      // Single images and cines: the in-plane scale and, for ultrasound, its calibrated regions.
      if (DcmDataset* ds = first.dataset()) {
        const dicom::PlaneSpacing scale = dicom::plane_spacing(*ds);
        if (scale.spacing) {
          j["pixel_spacing_mm"] = *scale.spacing;
          j["pixel_spacing_source"] = scale.source;
        }
        if (!scale.problem.empty()) j["pixel_spacing_problem"] = scale.problem;
        json regions = json::array();
        for (const auto& r : scale.regions) {
          json x = {{"spacing_mm", r.spacing}};
          if (r.bounds) {
            x["columns"] = {(*r.bounds)[0], (*r.bounds)[2]};
            x["rows"] = {(*r.bounds)[1], (*r.bounds)[3]};
          }
          regions.push_back(x);
        }
        if (!regions.empty()) j["ultrasound_regions"] = regions;
      }
    }
  }
  j["problems"] = s.problems;
  return j;
}

void print_text(const json& report, std::ostream& out) {
  for (const auto& s : report["series"]) {
    out << "series " << s["series_number"].get<int>() << "  " << s["series_instance_uid"].get<std::string>() << "\n";
    out << "  patient " << s["patient_name"].get<std::string>() << " (" << s["patient_id"].get<std::string>()
        << "), study " << s["study_instance_uid"].get<std::string>() << "\n";
    out << "  " << s["modality"].get<std::string>() << " \"" << s["series_description"].get<std::string>()
        << "\": " << s["instances"].get<size_t>() << " instance(s), " << s["frames"].get<size_t>() << " frame(s)";
    if (s.contains("rows"))
      out << ", " << s["columns"].get<int>() << "x" << s["rows"].get<int>() << " "
          << s["photometric_interpretation"].get<std::string>();
    out << "\n";
    if (s["supported"].get<bool>())
      out << "  model modality: " << s["model_modality"].get<std::string>() << " (" << s["basis"].get<std::string>()
          << ")\n";
    else
      out << "  not supported: " << s["reason"].get<std::string>() << " (" << s["basis"].get<std::string>() << ")\n";
    out << "  transfer syntax: ";
    bool first = true;
    for (const auto& t : s["transfer_syntaxes"]) out << (first ? "" : ", ") << t.get<std::string>(), first = false;
    out << "\n";
    if (s.contains("stacks")) {
      for (const auto& st : s["stacks"]) {
        out << "  stack: " << st["label"].get<std::string>() << ", spacing " << st["spacing_mm"][0].get<double>()
            << " x " << st["spacing_mm"][1].get<double>() << " x " << st["spacing_mm"][2].get<double>() << " mm";
        if (st.contains("volume_problem")) out << "; not a regular volume: " << st["volume_problem"].get<std::string>();
        out << "\n";
      }
    }
    if (s.contains("pixel_spacing_mm"))
      out << "  pixel size: " << s["pixel_spacing_mm"][0].get<double>() << " x "
          << s["pixel_spacing_mm"][1].get<double>() << " mm (" << s["pixel_spacing_source"].get<std::string>() << ")\n";
    if (s.contains("pixel_spacing_problem"))
      out << "  no pixel size for the whole image: " << s["pixel_spacing_problem"].get<std::string>() << "\n";
    if (s.contains("ultrasound_regions"))
      for (const auto& r : s["ultrasound_regions"]) {
        out << "  ultrasound region: ";
        if (r.contains("columns"))
          out << "columns " << r["columns"][0].get<long>() << "-" << r["columns"][1].get<long>() << ", rows "
              << r["rows"][0].get<long>() << "-" << r["rows"][1].get<long>();
        else
          out << "the whole image";
        out << ", " << r["spacing_mm"][0].get<double>() << " x " << r["spacing_mm"][1].get<double>()
            << " mm per pixel\n";
      }
    if (s.contains("stack_notes"))
      for (const auto& n : s["stack_notes"]) out << "  note: " << n.get<std::string>() << "\n";
    if (s.contains("stack_refused")) out << "  no volume: " << s["stack_refused"].get<std::string>() << "\n";
    if (s.contains("slide_levels")) {
      for (const auto& l : s["slide_levels"]) {
        out << "  slide level: " << l["total_columns"].get<int>() << "x" << l["total_rows"].get<int>() << " in "
            << l["tiles"].get<size_t>() << " tiles of " << l["tile_columns"].get<int>() << "x"
            << l["tile_rows"].get<int>() << ", " << l["mm_per_pixel"].get<double>() * 1000 << " um/pixel, "
            << l["dimension_organization"].get<std::string>() << "\n";
      }
    }
    if (s.contains("slide_problem")) out << "  slide problem: " << s["slide_problem"].get<std::string>() << "\n";
    for (const auto& p : s["problems"]) out << "  problem: " << p.get<std::string>() << "\n";
  }
  for (const auto& p : report["file_problems"]) out << "error: " << p["message"].get<std::string>() << "\n";
}

}  // namespace

int run_dicom_inspect(const Args& args) {
  ArgParser parser("unibiomed dicom inspect PATH... [--json]",
                   "Reads DICOM files and folders (recursively) and lists each series: patient and study, the "
                   "model modality it is classified as or why it is not supported, transfer syntaxes, geometry "
                   "(slice stacks, spacing, gantry tilt, missing slices; whole-slide levels) and the problems of "
                   "each file. Exit code 3 when nothing could be read, 5 when some files could not.");
  parser.positional("PATH", "DICOM files or folders", 1, 100000).flag("--json", "print JSON instead of text");
  if (!parser.parse(args)) return kExitOk;
  dicom::silence_toolkit_logs();
  std::vector<fs::path> paths(parser.positionals().begin(), parser.positionals().end());
  dicom::SeriesCollection collection;
  try {
    collection = dicom::read_series(paths);
  } catch (const dicom::DicomError& e) {
    std::cerr << "unibiomed dicom inspect: " << e.what() << "\n";
    return kExitBadInput;
  }
  json report;
  report["series"] = json::array();
  for (const auto& s : collection.series) report["series"].push_back(describe_series(s));
  report["file_problems"] = json::array();
  for (const auto& p : collection.problems)
    report["file_problems"].push_back({{"file", p.source}, {"message", p.message}});
  if (parser.is_set("--json"))
    std::cout << report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  else
    print_text(report, std::cout);
  if (collection.series.empty()) return kExitBadInput;
  return collection.problems.empty() ? kExitOk : kExitPartial;
}

int run_dicom_render(const Args& args) {
  std::string presets;
  for (const auto& p : dicom::ct_window_presets()) presets += (presets.empty() ? "" : ", ") + p.name;
  ArgParser parser("unibiomed dicom render PATH... -o DIR [options]",
                   "Writes the model's views of every supported series as PNG (RGB8, padded to a square) with a "
                   "JSON file of provenance each (instance, frame, geometry, intensity mapping, padding), under "
                   "DIR/<series number>-<modality>/, plus DIR/index.json.");
  parser.positional("PATH", "DICOM files or folders", 1, 100000)
      .option("-o", "DIR", "output folder")
      .option("--preset", "NAME", "CT window preset (" + presets + ")", "abdomen")
      .option("--series", "UID", "render only this SeriesInstanceUID", std::nullopt, true)
      .option("--stride", "N", "every N-th frame of multi-frame (cine) instances", "1")
      .option("--mr-scope", "slice|volume", "MR percentiles per slice (as the training data) or per stack", "slice")
      .option("--slide-level", "N", "whole slides: pyramid level (0 = finest); default: nearest --slide-um", "-1")
      .option("--slide-um", "UM", "whole slides: wanted resolution in micrometres per pixel", "0.5")
      .option("--region", "PX", "whole slides: view size in pixels", "1024")
      .option("--max-views", "N", "at most N views per series (0 = all)", "0")
      .flag("--no-pad", "do not pad views to a square");
  if (!parser.parse(args)) return kExitOk;
  if (!parser.has("-o")) throw UsageError("missing -o DIR");
  dicom::silence_toolkit_logs();
  dicom::RenderOptions options;
  options.ct_preset = parser.get("--preset");
  try {
    dicom::ct_window_preset(options.ct_preset);
  } catch (const dicom::DicomError& e) {
    throw UsageError(e.what());
  }
  options.frame_stride = int(parser.get_int("--stride"));
  if (options.frame_stride < 1) throw UsageError("--stride must be >= 1");
  const std::string scope = parser.get("--mr-scope");
  if (scope != "slice" && scope != "volume") throw UsageError("--mr-scope must be slice or volume");
  options.mr_scope =
      scope == "volume" ? dicom::RenderOptions::PercentileScope::Volume : dicom::RenderOptions::PercentileScope::Slice;
  options.slide_level = int(parser.get_int("--slide-level"));
  options.slide_mm_per_pixel = std::stod(parser.get("--slide-um")) / 1000.0;
  options.slide_region_size = int(parser.get_int("--region"));
  if (options.slide_region_size < 16) throw UsageError("--region must be >= 16");
  options.pad_to_square = !parser.is_set("--no-pad");
  const long max_views = parser.get_int("--max-views");
  const auto wanted = parser.get_all("--series");

  std::vector<fs::path> paths(parser.positionals().begin(), parser.positionals().end());
  const fs::path out = parser.get("-o");
  dicom::SeriesCollection collection;
  try {
    collection = dicom::read_series(paths);
  } catch (const dicom::DicomError& e) {
    std::cerr << "unibiomed dicom render: " << e.what() << "\n";
    return kExitBadInput;
  }
  for (const auto& p : collection.problems) std::cerr << "error: " << p.message << "\n";
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    std::cerr << "unibiomed dicom render: " << out.string() << ": cannot create folder (" << ec.message() << ")\n";
    return kExitFailure;
  }
  json index = json::array();
  int rendered_series = 0, failed = 0;
  for (const auto& series : collection.series) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), series.identity.series_instance_uid) == wanted.end())
      continue;
    json entry = {{"series_instance_uid", series.identity.series_instance_uid},
                  {"series_description", series.identity.series_description}};
    if (!series.modality.modality) {
      std::cerr << "series " << series.identity.series_instance_uid
                << ": skipped, not supported: " << series.modality.reason << "\n";
      entry["skipped"] = series.modality.reason;
      index.push_back(entry);
      continue;
    }
    const std::string modality = dicom::modality_name(*series.modality.modality);
    const std::string folder_name = std::to_string(series.identity.series_number) + "-" + modality;
    const fs::path folder = out / folder_name;
    fs::create_directories(folder, ec);
    try {
      const auto requests = dicom::plan_views(series, options);
      dicom::RenderOptions series_options = options;
      if (options.mr_scope == dicom::RenderOptions::PercentileScope::Volume) {
        for (const auto& r : requests) {
          if (r.stack_index < 0 || series_options.mr_stack_ranges.count(r.stack_index)) continue;
          if (auto range = dicom::stack_percentile_range(series, r.stack_index))
            series_options.mr_stack_ranges[r.stack_index] = *range;
        }
      }
      json views = json::array();
      size_t n = 0;
      for (const auto& request : requests) {
        if (max_views > 0 && long(n) >= max_views) break;
        dicom::View view = dicom::render_view(series, request, series_options);
        char name[32];
        std::snprintf(name, sizeof name, "view_%04zu", ++n);
        dicom::write_png(folder / (std::string(name) + ".png"), view.image);
        std::ofstream(folder / (std::string(name) + ".json")) << dicom::provenance_json(view.provenance) << "\n";
        views.push_back(folder_name + "/" + name + ".png");
      }
      entry["model_modality"] = modality;
      entry["views"] = views;
      std::cout << "series " << series.identity.series_instance_uid << " (" << modality << "): " << n << " view"
                << (n == 1 ? "" : "s") << " in " << folder.string() << "\n";
      ++rendered_series;
    } catch (const dicom::DicomError& e) {
      std::cerr << "series " << series.identity.series_instance_uid << ": failed: " << e.what() << "\n";
      entry["failed"] = e.what();
      ++failed;
    }
    index.push_back(entry);
  }
  std::ofstream(out / "index.json") << index.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  if (rendered_series == 0) return collection.series.empty() ? kExitBadInput : kExitFailure;
  return (failed || !collection.problems.empty()) ? kExitPartial : kExitOk;
}

}  // namespace unibiomed::cli
