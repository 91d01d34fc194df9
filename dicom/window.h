// From modality values to the 8-bit grey the model was trained on (MODEL.md, "Modalities and
// input conventions"): CT window presets of the BiomedParse preprocessing, MR percentile
// clipping, the file's own VOI for radiographs, and MONOCHROME1 inversion.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dicom/instance.h"
#include "dicom/raster_file.h"

namespace unibiomed::dicom {

// A CT window as the training data used it: clip to [lower, upper] HU, then min-max of the
// clipped slice to 0..255.
struct WindowPreset {
  std::string name;  // "abdomen", "liver", ...
  double lower = 0;
  double upper = 0;
};

// The presets of BiomedParse's preprocessing (CT_WINDOWS in its inference utilities):
// abdomen [-150,250], lung [-1000,1000], pelvis [-55,200], liver [-25,230], colon [-68,187],
// pancreas [-100,200].
const std::vector<WindowPreset>& ct_window_presets();
// Throws DicomError listing the known names when `name` is not one of them.
const WindowPreset& ct_window_preset(const std::string& name);

// How a greyscale frame became 8-bit, for provenance ("CT window abdomen [-150, 250]").
struct GreyMapping {
  std::string description;
  double lower = 0;  // modality value mapped to 0 (before MONOCHROME1 inversion)
  double upper = 0;  // mapped to 255
};

// CT: clip to the preset, min-max of the clipped values to 0..255, truncated to integers
// (numpy astype(uint8) in the reference). A constant slice gives 0.
GreyImage apply_ct_window(const std::vector<float>& values, int width, int height, const WindowPreset& preset,
                          GreyMapping* mapping = nullptr);

// The common core: clip to [lower, upper], min-max of the clipped values to 0..255,
// truncated; a constant result gives 0.
GreyImage apply_clip_window(const std::vector<float>& values, int width, int height, double lower, double upper);

// MR: clip to the 0.5 and 99.5 percentiles of the non-zero values, then min-max to 0..255
// (same truncation). Percentiles use numpy's default linear interpolation. All-zero gives 0.
// `values_for_percentiles`: the values the percentiles come from (the slice itself, or the
// whole volume); empty = the slice.
GreyImage apply_percentile_window(const std::vector<float>& values, int width, int height,
                                  const std::vector<float>& values_for_percentiles = {},
                                  GreyMapping* mapping = nullptr);
// The (0.5, 99.5) percentiles of the non-zero values; nullopt when there are none.
std::optional<std::pair<double, double>> nonzero_percentiles(const std::vector<float>& values, double low = 0.5,
                                                             double high = 99.5);

// Radiographs and other greyscale images: the frame's first VOI window (LINEAR, LINEAR_EXACT
// or SIGMOID, PS3.3 C.11.2.1.2-3) when there is one, else the VOI LUT Sequence, else min/max
// of the frame. MONOCHROME1 is inverted after windowing so that bone is bright.
GreyImage apply_file_voi(const Instance& instance, int frame_number, const std::vector<float>& values, int width,
                         int height, bool monochrome1, GreyMapping* mapping = nullptr);

// A linear VOI window with PS3.3 C.11.2.1.2.1 semantics, output rounded to 0..255.
uint8_t window_linear(double x, double center, double width);

}  // namespace unibiomed::dicom
