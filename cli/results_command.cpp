// `unibiomed results write`: a DICOM SEG and a TID 1500 SR from a label map and a findings file,
// for masks from any model (like dcmqi's converters). The source files are grouped into one
// series by dicom/, the label map is checked against its geometry, and the writers make the
// objects: OUT/seg.dcm and OUT/sr.dcm.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "dicom/series.h"
#include "dicom/toolkit_logging.h"
#include "pipeline/result_objects.h"
#include "seg-writer/label_map_file.h"
#include "seg-writer/part10_file.h"
#include "seg-writer/segmentation_writer.h"
#include "seg-writer/source_images.h"
#include "sr-writer/findings_file.h"
#include "sr-writer/measurement_report.h"

namespace unibiomed::cli {
namespace {

namespace fs = std::filesystem;

// Bad input (files, labels, geometry): exit code 3 with the message.
struct BadInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool is_png(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return extension == ".png";
}

// The one series of the source paths, or BadInput naming what is wrong.
dicom::Series read_source_series(const std::vector<fs::path>& paths) {
  dicom::SeriesCollection collection;
  try {
    collection = dicom::read_series(paths);
  } catch (const dicom::DicomError& e) {
    throw BadInput(e.what());
  }
  if (!collection.problems.empty()) {
    std::string text = "cannot read the source files:";
    for (const auto& p : collection.problems) text += "\n  " + p.message;
    throw BadInput(text);
  }
  if (collection.series.empty()) throw BadInput("no DICOM source images in the given paths");
  if (collection.series.size() > 1) {
    std::string text = "the sources hold " + std::to_string(collection.series.size()) +
                       " series; a segmentation covers one, give the files of one series:";
    for (const auto& s : collection.series)
      text += "\n  " + s.identity.series_instance_uid + " (" + s.identity.modality + " #" +
              std::to_string(s.identity.series_number) + " '" + s.identity.series_description + "', " +
              std::to_string(s.instances.size()) + " instances)";
    throw BadInput(text);
  }
  dicom::Series series = std::move(collection.series.front());
  for (const auto& problem : series.problems) std::cerr << "unibiomed results write: note: " << problem << "\n";
  for (const auto& instance : series.instances)
    if (const std::string problem = instance.image_problem(); !problem.empty()) throw BadInput(problem);
  return series;
}

}  // namespace

int run_results_write(const Args& args) {
  ArgParser parser("unibiomed results write --source PATH... --masks FILE [--findings FILE.json] -o OUT",
                   "Writes a DICOM Segmentation (OUT/seg.dcm) and a TID 1500 Comprehensive 3D SR (OUT/sr.dcm) in the\n"
                   "source study, from a label map: label k marks the pixels of finding k, 0 is background.\n"
                   "The masks are either one NIfTI/NRRD volume in the geometry of the source series (as ITK or\n"
                   "3D Slicer write it: same size, spacing, orientation and slice positions), or one grey or\n"
                   "palette PNG per source frame, the pixel value being the label, given in slice order.\n"
                   "The findings file names each label's finding (schema: sr-writer/findings.schema.json);\n"
                   "without it every label is a generic finding \"Finding <k>\" (lesion, SNOMED CT).");
  parser
      .option("--source", "PATH", "a DICOM file or folder of the source series (extra arguments are sources too)",
              std::nullopt, true)
      .option("--masks", "FILE", "label volume (.nii, .nii.gz, .nrrd, .nhdr), or one PNG per source frame",
              std::nullopt, true)
      .option("--findings", "FILE", "findings JSON: per label the name, codes, colour and text")
      .option("-o", "DIR", "output folder (created when missing)")
      .option("--output", "DIR", "the same as -o")
      .option("--algorithm", "NAME",
              "algorithm name written as Manufacturer and in the SEG/SR (default: the findings "
              "file's, else UniBiomed)")
      .option("--algorithm-version", "VERSION", "algorithm version (default: the findings file's, else this program's)")
      .option("--weights-hash", "TEXT", "model weights hash, written as the algorithm's parameters")
      .option("--uid-seed", "TEXT", "derive the SEG/SR UIDs from this text (same seed, same UIDs); default random")
      .option("--device-name", "NAME", "observer device name in the SR", "UniBiomed node")
      .flag("--keep-empty-frames",
            "write every source frame for every segment (default: frames without pixels are "
            "left out)")
      .positional("PATH", "more source files or folders", 0, static_cast<size_t>(-1));
  if (!parser.parse(args)) return kExitOk;
  std::vector<fs::path> sources;
  for (const auto& s : parser.get_all("--source")) sources.emplace_back(s);
  for (const auto& s : parser.positionals()) sources.emplace_back(s);
  if (sources.empty()) throw UsageError("give the source series with --source PATH");
  const auto masks = parser.get_all("--masks");
  if (masks.empty()) throw UsageError("give the label map with --masks FILE");
  auto output_option = parser.get_optional("-o");
  if (!output_option) output_option = parser.get_optional("--output");
  if (!output_option) throw UsageError("give the output folder with -o DIR");
  const fs::path output(*output_option);

  try {
    dicom::silence_toolkit_logs();
    // --- inputs --------------------------------------------------------------------------
    const dicom::Series series = read_source_series(sources);
    std::vector<DcmDataset*> datasets;
    for (const auto& instance : series.instances) datasets.push_back(instance.dataset());
    const seg::SourceImages images(datasets);

    seg::LabelMap labels;
    const bool pngs = std::all_of(masks.begin(), masks.end(), [](const std::string& m) { return is_png(m); });
    if (pngs) {
      labels = seg::read_label_pngs(std::vector<fs::path>(masks.begin(), masks.end()), images);
    } else if (masks.size() == 1) {
      labels = seg::read_label_volume(masks.front(), images);
    } else {
      throw BadInput("give one label volume, or one PNG per source frame (" + std::to_string(masks.size()) +
                     " --masks files given, not all PNG)");
    }
    const std::string mask_name = masks.size() == 1 ? masks.front() : "the PNG label files";
    if (labels.labels.empty()) throw BadInput(mask_name + " has no labelled pixel: nothing to write");

    sr::FindingsFile findings;
    if (const auto file = parser.get_optional("--findings")) {
      findings = sr::read_findings_file(*file);
      std::set<std::uint16_t> listed;
      for (const auto& f : findings.findings) listed.insert(f.label);
      for (std::uint16_t label : labels.labels)
        if (!listed.count(label))
          throw BadInput(mask_name + " has label " + std::to_string(label) + ", which " + *file + " does not list");
      for (const auto& f : findings.findings)
        if (!std::binary_search(labels.labels.begin(), labels.labels.end(), f.label))
          throw BadInput("finding '" + f.segment.label + "' (label " + std::to_string(f.label) + ") of " + *file +
                         " has no pixel in " + mask_name);
    } else {
      for (std::uint16_t label : labels.labels) findings.findings.push_back(sr::generic_finding(label));
    }

    seg::AlgorithmIdentity algorithm = findings.algorithm.value_or(seg::AlgorithmIdentity{});
    if (!findings.algorithm) algorithm.version = UNIBIOMED_VERSION;
    if (auto name = parser.get_optional("--algorithm")) algorithm.name = *name;
    if (auto version = parser.get_optional("--algorithm-version")) algorithm.version = *version;
    if (auto hash = parser.get_optional("--weights-hash")) algorithm.parameters = "weights " + *hash;

    // --- the SEG and one volumetric and one planar SR group per finding --------------------
    std::vector<pipeline::FindingToWrite> to_write;
    for (const auto& f : findings.findings) {
      pipeline::FindingToWrite w;
      w.segment.description = f.segment;
      w.segment.description.algorithm = algorithm;
      w.segment.masks = seg::masks_for_label(labels, f.label);
      w.finding_site = f.finding_site;
      w.text = f.text;
      w.confidence = f.confidence;
      to_write.push_back(std::move(w));
    }
    seg::SegmentationOptions seg_options;
    seg_options.algorithm = algorithm;
    seg_options.omit_empty_frames = !parser.is_set("--keep-empty-frames");
    seg_options.uid_seed = parser.get_optional("--uid-seed").value_or("");
    const size_t segment_count = to_write.size();
    pipeline::WrittenFindings written = pipeline::write_findings(images, std::move(to_write), seg_options);
    if (!written.seg) throw BadInput("nothing to write: no finding has a mask");
    const auto& seg = written.seg;
    sr::SeriesFindings reported{&images, seg->file->getDataset(), written.reported};
    std::vector<sr::ReportText> texts;
    for (const auto& t : findings.report) texts.push_back({{"121106", "DCM", "Comment"}, t});
    sr::ReportOptions sr_options;
    sr_options.algorithm = algorithm;
    sr_options.device_name = parser.get("--device-name");
    sr_options.uid_seed = seg_options.uid_seed;
    auto report = sr::write_measurement_report({reported}, texts, sr_options);

    // --- output --------------------------------------------------------------------------
    std::error_code error;
    fs::create_directories(output, error);
    if (error) throw std::runtime_error("cannot create " + output.string() + ": " + error.message());
    const fs::path seg_path = output / "seg.dcm", sr_path = output / "sr.dcm";
    try {
      seg::save_part10(*seg->file, seg_path);
      std::cout << seg_path.string() << "\n";
      if (report) {
        seg::save_part10(*report->file, sr_path);
        std::cout << sr_path.string() << "\n";
      }
    } catch (const seg::SegmentationError& e) {
      throw std::runtime_error(e.what());  // an output problem, not bad input
    }
    std::cerr << "unibiomed results write: " << segment_count << " segment" << (segment_count == 1 ? "" : "s")
              << " in " << seg->number_of_frames << " frame" << (seg->number_of_frames == 1 ? "" : "s") << " over "
              << images.frame_count() << " source frame" << (images.frame_count() == 1 ? "" : "s") << " ("
              << seg->segmentation_type << (seg->fractional_type.empty() ? "" : " " + seg->fractional_type)
              << (seg->segmentation_type == "FRACTIONAL" && seg->fractional_type == "OCCUPANCY"
                      ? ": " + std::to_string(images.columns()) + "x" + std::to_string(images.rows()) +
                            " frames are not a multiple of 8 pixels"
                      : std::string())
              << (seg->padding_frame ? ", frame " + std::to_string(seg->padding_frame) + " empty to keep the length even"
                                     : std::string())
              << "); " << (report ? std::to_string(report->measurement_groups) : std::string("0"))
              << " measurement groups\n";
    return kExitOk;
  } catch (const BadInput& e) {
    std::cerr << "unibiomed results write: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const seg::SegmentationError& e) {
    std::cerr << "unibiomed results write: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const sr::ReportError& e) {
    std::cerr << "unibiomed results write: " << e.what() << "\n";
    return kExitBadInput;
  }
}

}  // namespace unibiomed::cli
