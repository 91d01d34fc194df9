// `unibiomed samples write OUT`: the synthetic sample studies (samples/).
// SPDX-License-Identifier: GPL-3.0-or-later
#include <iostream>
#include <sstream>

#include "cli/arg_parser.h"
#include "cli/commands.h"
#include "samples/sample_studies.h"

namespace unibiomed::cli {

int run_samples_write(const Args& args) {
  std::string names;
  for (const auto& n : samples::sample_names()) names += (names.empty() ? "" : ", ") + n;
  ArgParser parser("unibiomed samples write OUT [--only NAME]... [--ct-slices N]",
                   "Writes deterministic synthetic studies as real DICOM, one synthetic patient per study: " + names +
                       ". OUT/<name>/IMxxxx.dcm plus OUT/manifest.json (what each series is, its UIDs and the "
                       "ground-truth labels of its phantom).");
  parser.positional("OUT", "output folder (created if needed)", 1, 1)
      .option("--only", "NAME", "write only this sample", std::nullopt, true)
      .option("--ct-slices", "N", "number of CT slices", "64")
      .option("--ct-size", "N", "CT rows = columns", "512")
      .option("--slide-size", "N",
              "wsi: a square slide of N x N pixels at 0.25 um generated tile by tile (tissue on about 5 % of it); "
              "0 = the 2048 x 1536 phantom slide",
              "0")
      .option("--uid-root", "TEXT", "text the UIDs are derived from (change it for a second, distinct copy)",
              "unibiomed-samples");
  if (!parser.parse(args)) return kExitOk;
  samples::SampleOptions options;
  options.only = parser.get_all("--only");
  options.ct_slices = int(parser.get_int("--ct-slices"));
  options.ct_size = int(parser.get_int("--ct-size"));
  options.uid_root = parser.get("--uid-root");
  options.wsi_slide_size = int(parser.get_int("--slide-size"));
  if (options.wsi_slide_size != 0 && (options.wsi_slide_size < 512 || options.wsi_slide_size > 200000))
    throw UsageError("--slide-size must be 0 (the phantom slide) or within 512..200000, not " +
                     std::to_string(options.wsi_slide_size));
  if (options.ct_slices < 2 || options.ct_size < 16 || options.ct_size > 4096)
    throw UsageError("--ct-slices must be >= 2 and --ct-size within 16..4096");
  try {
    const auto written = samples::write_samples(parser.positionals()[0], options);
    for (const auto& s : written) {
      std::cout << s.name << ": " << s.files.size() << " file" << (s.files.size() == 1 ? "" : "s") << " in "
                << s.folder.string() << " (" << s.model_modality << ", " << s.description << ", " << s.patient_name
                << ")\n";
    }
  } catch (const samples::SampleError& e) {
    std::cerr << "unibiomed samples write: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace unibiomed::cli
