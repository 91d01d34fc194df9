// The sample studies: the phantoms of phantom.h written as real DICOM (one synthetic patient
// per study, UIDs derived deterministically from a fixed root, files that dciodvfy accepts),
// for the demo, the tests and screenshots.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace unibiomed::samples {

class SampleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What one sample series is and where it was written.
struct SampleSeries {
  std::string name;            // "ct", "mr", "xray", "us", "fundus", "dermoscopy", "endoscopy", "wsi"
  std::string model_modality;  // what dicom/ should classify it as ("CT", "X-ray", ...)
  std::string description;     // SeriesDescription
  std::string patient_name;
  std::string patient_id;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::filesystem::path folder;
  std::vector<std::filesystem::path> files;
  std::vector<std::string> label_names;  // ground truth labels of the phantom (index = value)
};

struct SampleOptions {
  std::vector<std::string> only;  // names to write; empty = all
  int ct_slices = 64;             // >= 2
  int ct_size = 512;
  int wsi_columns = 2048;  // level 0 of the slide (3 levels, 256 px tiles)
  int wsi_rows = 1536;
  // > 0: instead, a square slide of this many pixels at 0.25 um generated tile by tile (tissue on
  // about 5 % of it, TILED_SPARSE levels holding only the tiles near the section, halved down to
  // 2048 pixels or less), for sizes that no phantom could hold in memory.
  int wsi_slide_size = 0;
  std::string uid_root = "unibiomed-samples";  // what the UIDs are derived from
};

// The names write_samples knows, in writing order.
const std::vector<std::string>& sample_names();

// Writes the studies under `out` (OUT/<name>/IMxxxx.dcm) plus OUT/manifest.json describing
// them. Throws SampleError for an unknown name or an unwritable folder.
std::vector<SampleSeries> write_samples(const std::filesystem::path& out, const SampleOptions& options = {});

// A UID under 2.25 (PS3.5 B.2) derived from a text by a 128-bit FNV-1a hash: the same text
// gives the same UID on every run.
std::string derived_uid(const std::string& text);

}  // namespace unibiomed::samples
