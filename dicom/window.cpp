// Greyscale windowing.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/window.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "dicom/internal/dcmtk_access.h"

namespace unibiomed::dicom {
namespace {

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// np.clip then (x - min) / (max - min) * 255 then astype(uint8) (truncation), in double as
// numpy does with float64 input. Identical min and max give 0 (the reference would divide by
// zero; black is the sensible image).
GreyImage clip_and_stretch(const std::vector<float>& values, int width, int height, double lower, double upper) {
  GreyImage image{width, height, std::vector<uint8_t>(values.size(), 0)};
  if (values.empty()) return image;
  double mn = upper, mx = lower;
  for (float v : values) {
    const double c = std::clamp(double(v), lower, upper);
    mn = std::min(mn, c);
    mx = std::max(mx, c);
  }
  if (!(mx > mn)) return image;
  // Same order of operations as the reference, so that truncation lands on the same integer.
  const double range = mx - mn;
  for (size_t i = 0; i < values.size(); ++i) {
    const double c = std::clamp(double(values[i]), lower, upper);
    image.grey[i] = uint8_t(std::clamp((c - mn) / range * 255.0, 0.0, 255.0));
  }
  return image;
}

// numpy.percentile, method 'linear': h = (n - 1) p / 100, interpolate between order statistics.
double percentile_of(std::vector<float>& v, double p) {
  const double h = double(v.size() - 1) * p / 100.0;
  const size_t lo = size_t(std::floor(h));
  std::nth_element(v.begin(), v.begin() + long(lo), v.end());
  const double a = v[lo];
  if (lo + 1 >= v.size()) return a;
  const double b = *std::min_element(v.begin() + long(lo) + 1, v.end());
  return a + (h - double(lo)) * (b - a);
}

}  // namespace

GreyImage apply_clip_window(const std::vector<float>& values, int width, int height, double lower, double upper) {
  return clip_and_stretch(values, width, height, lower, upper);
}

const std::vector<WindowPreset>& ct_window_presets() {
  static const std::vector<WindowPreset> presets = {
      {"abdomen", -150, 250}, {"lung", -1000, 1000}, {"pelvis", -55, 200},
      {"liver", -25, 230},    {"colon", -68, 187},   {"pancreas", -100, 200},
  };
  return presets;
}

const WindowPreset& ct_window_preset(const std::string& name) {
  for (const auto& p : ct_window_presets())
    if (p.name == name) return p;
  std::string known;
  for (const auto& p : ct_window_presets()) known += (known.empty() ? "" : ", ") + p.name;
  throw DicomError("unknown CT window preset '" + name + "' (known: " + known + ")");
}

GreyImage apply_ct_window(const std::vector<float>& values, int width, int height, const WindowPreset& preset,
                          GreyMapping* mapping) {
  if (mapping) {
    *mapping = {"CT window " + preset.name + " [" + fmt(preset.lower) + ", " + fmt(preset.upper) + "] HU", preset.lower,
                preset.upper};
  }
  return clip_and_stretch(values, width, height, preset.lower, preset.upper);
}

std::optional<std::pair<double, double>> nonzero_percentiles(const std::vector<float>& values, double low,
                                                             double high) {
  std::vector<float> nonzero;
  nonzero.reserve(values.size());
  for (float v : values)
    if (v > 0) nonzero.push_back(v);  // the reference selects image_data > 0
  if (nonzero.empty()) return std::nullopt;
  const double a = percentile_of(nonzero, low);
  const double b = percentile_of(nonzero, high);
  return std::make_pair(a, b);
}

GreyImage apply_percentile_window(const std::vector<float>& values, int width, int height,
                                  const std::vector<float>& values_for_percentiles, GreyMapping* mapping) {
  auto range = nonzero_percentiles(values_for_percentiles.empty() ? values : values_for_percentiles);
  if (!range) {
    if (mapping) *mapping = {"percentile 0.5-99.5 of non-zero values: none (all zero)", 0, 0};
    return GreyImage{width, height, std::vector<uint8_t>(values.size(), 0)};
  }
  if (mapping) {
    *mapping = {"percentile 0.5-99.5 of non-zero values [" + fmt(range->first) + ", " + fmt(range->second) + "]",
                range->first, range->second};
  }
  return clip_and_stretch(values, width, height, range->first, range->second);
}

uint8_t window_linear(double x, double center, double width) {
  // PS3.3 C.11.2.1.2.1 with ymin 0, ymax 255.
  const double w = std::max(width, 1.0);
  const double c = center;
  if (x <= c - 0.5 - (w - 1) / 2) return 0;
  if (x > c - 0.5 + (w - 1) / 2) return 255;
  const double y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0;
  return uint8_t(std::clamp(std::lround(y), 0L, 255L));
}

GreyImage apply_file_voi(const Instance& instance, int frame_number, const std::vector<float>& values, int width,
                         int height, bool monochrome1, GreyMapping* mapping) {
  GreyImage image{width, height, std::vector<uint8_t>(values.size(), 0)};
  const FrameInfo& frame = instance.frame(frame_number);
  GreyMapping used;
  DcmItem* voi_lut =
      instance.pixels().has_voi_lut_sequence ? internal::first_item(instance.dataset(), DCM_VOILUTSequence) : nullptr;
  if (!frame.windows.empty() && frame.windows.front().width > 0) {
    const WindowSetting& w = frame.windows.front();
    const double c = w.center, wd = w.width;
    if (w.function == "LINEAR_EXACT") {
      // PS3.3 C.11.2.1.3.2.
      for (size_t i = 0; i < values.size(); ++i) {
        const double x = values[i];
        double y = x <= c - wd / 2 ? 0 : x > c + wd / 2 ? 255 : ((x - c) / wd + 0.5) * 255.0;
        image.grey[i] = uint8_t(std::clamp(std::lround(y), 0L, 255L));
      }
    } else if (w.function == "SIGMOID") {
      // PS3.3 C.11.2.1.3.1.
      for (size_t i = 0; i < values.size(); ++i) {
        const double y = 255.0 / (1.0 + std::exp(-4.0 * (values[i] - c) / wd));
        image.grey[i] = uint8_t(std::clamp(std::lround(y), 0L, 255L));
      }
    } else {
      for (size_t i = 0; i < values.size(); ++i) image.grey[i] = window_linear(values[i], c, wd);
    }
    used = {"VOI window " + w.function + " center " + fmt(c) + " width " + fmt(wd) +
                (w.explanation.empty() ? "" : " (" + w.explanation + ")"),
            c - wd / 2, c + wd / 2};
  } else if (voi_lut) {
    // VOI LUT Sequence (PS3.3 C.11.2.1.1): output scaled from the LUT's bit depth to 8 bits.
    auto entries = internal::get_integer(voi_lut, DCM_LUTDescriptor, 0);
    auto first = internal::get_integer(voi_lut, DCM_LUTDescriptor, 1);
    auto bits = internal::get_integer(voi_lut, DCM_LUTDescriptor, 2);
    const Uint16* data = nullptr;
    unsigned long length = 0;
    if (!entries || !first || !bits || voi_lut->findAndGetUint16Array(DCM_LUTData, data, &length).bad() || !data) {
      throw DicomError(instance.source() +
                       ": VOI LUT Sequence (0028,3010) item lacks LUT Descriptor (0028,3002) or LUT "
                       "Data (0028,3006)");
    }
    const size_t count = std::min<size_t>(*entries == 0 ? 65536 : size_t(uint16_t(*entries)), length);
    const long first_mapped =
        instance.pixels().pixel_representation == 1 ? long(int16_t(uint16_t(*first))) : long(uint16_t(*first));
    uint16_t max_entry = 1;
    for (size_t i = 0; i < count; ++i) max_entry = std::max(max_entry, data[i]);
    // Some writers declare 16 bits and use fewer; scale by what the table reaches.
    const double top = std::max<double>(max_entry, bits && *bits < 16 ? double((1L << *bits) - 1) : double(max_entry));
    for (size_t i = 0; i < values.size(); ++i) {
      long k = std::clamp(long(std::lround(values[i])) - first_mapped, 0L, long(count) - 1);
      image.grey[i] = uint8_t(std::clamp(std::lround(data[size_t(k)] * 255.0 / top), 0L, 255L));
    }
    used = {"VOI LUT Sequence (" + std::to_string(count) + " entries)", double(first_mapped),
            double(first_mapped + long(count) - 1)};
  } else {
    float mn = values.empty() ? 0 : *std::min_element(values.begin(), values.end());
    float mx = values.empty() ? 0 : *std::max_element(values.begin(), values.end());
    if (mx > mn) {
      for (size_t i = 0; i < values.size(); ++i)
        image.grey[i] =
            uint8_t(std::clamp(std::lround((double(values[i]) - mn) * 255.0 / (double(mx) - mn)), 0L, 255L));
    }
    used = {"min/max of the frame [" + fmt(mn) + ", " + fmt(mx) + "] (no VOI in the file)", mn, mx};
  }
  if (monochrome1) {
    for (auto& g : image.grey) g = uint8_t(255 - g);
    used.description += ", MONOCHROME1 inverted";
  }
  if (mapping) *mapping = used;
  return image;
}

}  // namespace unibiomed::dicom
