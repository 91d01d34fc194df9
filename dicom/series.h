// Instances grouped into series, with the modality class of each series and every problem
// found on the way (per file, per series). Reading never stops at a bad file: it becomes a
// FileProblem that names the file and the reason, and the rest is read.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dicom/instance.h"
#include "dicom/modality.h"

namespace unibiomed::dicom {

struct Series {
  SeriesIdentity identity;          // of the first instance
  StudyIdentity study;              // of the first instance
  // By InstanceNumber, then SOP Instance UID. In a series of a model modality, instances that
  // cannot be decoded or that the model does not read (a localizer among the slices) are left out
  // and listed in `problems`, unless no instance can be decoded.
  std::vector<Instance> instances;
  ModalityClass modality;
  // Instances left out of the series or inconsistencies within it, each naming the file and
  // the attribute (e.g. an instance whose pixels cannot be decoded).
  std::vector<std::string> problems;

  // Frames in the series (a classic series: one per instance).
  size_t frame_count() const;
  // Whether every instance can be decoded as an image (image_problem() empty).
  bool has_images() const;
};

struct FileProblem {
  std::string source;   // file path or host id
  std::string message;  // includes the source
};

struct SeriesCollection {
  std::vector<Series> series;         // ordered by StudyInstanceUID, SeriesNumber, SeriesInstanceUID
  std::vector<FileProblem> problems;  // files that could not be read as DICOM at all
};

// Every regular file under the given files and folders (folders recursively, sorted; DICOMDIR,
// hidden files and companion files named *.json, *.txt, *.md, *.png, *.jpg, *.jpeg, *.csv,
// *.xml, *.html, *.pdf skipped inside folders). Throws DicomError for a path that does not exist.
std::vector<std::filesystem::path> list_input_files(const std::vector<std::filesystem::path>& paths);

// Reads files (see list_input_files) and groups them.
SeriesCollection read_series(const std::vector<std::filesystem::path>& paths);

// One instance given as bytes (the plugin's case).
struct InstanceBytes {
  std::string source;
  std::vector<uint8_t> bytes;
};
SeriesCollection read_series(const std::vector<InstanceBytes>& inputs);

// Groups already-read instances by SeriesInstanceUID, sorts them and classifies each series.
// An instance repeated (same SOP Instance UID) is kept once and reported.
SeriesCollection group_into_series(std::vector<Instance> instances);

}  // namespace unibiomed::dicom
