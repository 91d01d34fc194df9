// Source series for the writer tests, made with DCMTK: CT-like classic slices with full geometry,
// an enhanced multi-frame MR with per-frame functional groups, and the pydicom test files.
// Also: masks with known content, and the expected masks as JSON for the node checks.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "seg-writer/segmentation_writer.h"
#include "seg-writer/source_images.h"
#include "tests/support/validators.h"  // dciodvfy_errors, pixelmed_sr_errors

namespace unibiomed::test {

struct SeriesSpec {
  unsigned rows = 9;
  unsigned columns = 7;
  unsigned frames = 3;
  std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
  std::array<double, 2> spacing{0.7, 0.6};  // between rows, between columns (mm)
  double slice_gap = 2.5;                   // mm between successive slices along the normal
  std::array<double, 3> origin{-100.0, -120.0, 40.0};
  bool enhanced_multiframe = false;  // one Enhanced MR instance instead of CT slices
  bool reverse_order = false;        // give the slices last-to-first (tests sorting)
  std::string name = "synthetic";    // makes the UIDs distinct between series
};

// A series kept in memory; datasets() feeds SourceImages.
struct SyntheticSeries {
  std::vector<std::unique_ptr<DcmFileFormat>> files;
  std::vector<DcmDataset*> datasets() const;
  // Writes the instances as <dir>/<name>-<k>.dcm and returns the paths.
  std::vector<std::filesystem::path> save(const std::filesystem::path& dir, const std::string& name) const;
};

SyntheticSeries make_series(const SeriesSpec& spec);

// A copy of a pydicom test file (CT_small.dcm, MR_small.dcm...) or an empty pointer when pydicom's
// data folder is not installed.
std::unique_ptr<DcmFileFormat> load_file(const std::filesystem::path& path);
std::filesystem::path pydicom_test_file(const std::string& name);

// A filled ellipse mask of Rows x Columns (centre and radii in pixels).
std::vector<std::uint8_t> ellipse_mask(unsigned rows, unsigned columns, double centre_column, double centre_row,
                                       double radius_columns, double radius_rows);
// Pseudo-random binary mask (about `density` of pixels set), reproducible from `seed`.
std::vector<std::uint8_t> random_mask(unsigned rows, unsigned columns, std::uint32_t seed, double density = 0.3);

// The segments' masks as the node checks expect them:
// {"rows", "columns", "segments": [{"number", "label", "tracking_uid", "frames":
//   [{"sop", "frame", "runs": [[start, length], ...]}]}]} with runs of set pixels (row-major).
std::string expected_masks_json(const seg::SourceImages& sources, const std::vector<seg::Segment>& segments,
                                const std::vector<std::string>& tracking_uids);

// dciodvfy's errors on a result object whose sources have UIDs with leading zeros, other than
// those about the leading zeros (and its summary line of them). `about_sources` counts these.
std::vector<std::string> dciodvfy_errors_besides_leading_zeros(const std::filesystem::path& file, size_t& about_sources,
                                                               std::string* output = nullptr);

// Node (Debian's /usr/bin/node or the one on PATH) and the tests/js folder with dcmjs installed.
std::string node_program();
std::filesystem::path js_dir();
// Empty when dcmjs is installed, else the reason (run scripts/install-js.sh).
std::string dcmjs_missing_reason();

}  // namespace unibiomed::test
