// Fuzz target for the DICOM reader: arbitrary bytes through everything a received instance
// goes through (parse, classify, check, decode a frame, window it, render a view). The only
// acceptable failure is a DicomError; anything else (a crash, a sanitizer report, another
// exception) is a bug. Built as a libFuzzer target with -DUNIBIOMED_FUZZ=ON (clang), and
// always as `fuzz_dicom_replay FILE...`, which runs the same code on given files.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dicom/pixel_data.h"
#include "dicom/series.h"
#include "dicom/toolkit_logging.h"
#include "dicom/view.h"
#include "dicom/volume.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unibiomed::dicom;
  static const bool quiet = (silence_toolkit_logs(), true);
  (void)quiet;
  try {
    std::vector<uint8_t> bytes(data, data + size);
    Instance instance = Instance::read_bytes(bytes, "fuzz-input");
    (void)classify_modality(instance);
    if (!instance.image_problem().empty()) return 0;
    // Keep each input cheap: the first frame of modest images only.
    const auto& p = instance.pixels();
    if ((unsigned long long)p.rows * p.columns > 4096ull * 4096ull) return 0;
    if (is_colour(instance)) {
      (void)decode_colour_frame(instance, 1);
    } else {
      ModalityFrame frame = decode_modality_frame(instance, 1);
      (void)apply_file_voi(instance, 1, frame.values, frame.columns, frame.rows, frame.monochrome1);
    }
    SeriesCollection series = group_into_series({instance});
    for (const auto& s : series.series) {
      (void)plan_stacks(s);
      if (!s.modality.modality) continue;
      auto requests = plan_views(s, RenderOptions{});
      if (!requests.empty() && !requests.front().slide_region) (void)render_view(s, requests.front(), RenderOptions{});
    }
  } catch (const DicomError&) {
    // Expected for malformed input: a clear error, not a crash.
  }
  return 0;
}
