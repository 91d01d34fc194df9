// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/image_resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace unibiomed::inference {

namespace {

// Pillow: PRECISION_BITS = 32 - 8 - 2, so that a sum of 8-bit samples times weights (whose
// magnitudes add up to a little more than 1) stays inside a signed 32-bit accumulator.
constexpr int kPrecisionBits = 22;

// Keys' cubic convolution kernel with a = -0.5 (Pillow's bicubic_filter). The expressions keep
// Pillow's order of operations: the weights are rounded to integers afterwards, and a different
// rounding of a double could move one of them across a rounding boundary.
double keys_cubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// The filter taps of one axis: for output sample i, `count[i]` input samples starting at
// `first[i]`, with fixed-point weights weight[i * taps ...].
struct AxisFilter {
  int taps = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weight;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for an input of `in_size` samples
// resampled to `out_size` (the box is always the whole image here).
AxisFilter axis_filter(int in_size, int out_size) {
  constexpr double kSupport = 2.0;  // bicubic
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = kSupport * filter_scale;
  AxisFilter f;
  f.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  f.first.resize(out_size);
  f.count.resize(out_size);
  f.weight.assign(static_cast<size_t>(out_size) * f.taps, 0);
  std::vector<double> w(f.taps);
  const double inverse_scale = 1.0 / filter_scale;
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double sum = 0.0;
    for (int t = 0; t < n; ++t) {
      w[t] = keys_cubic((t + lo - center + 0.5) * inverse_scale);
      sum += w[t];
    }
    int32_t* k = &f.weight[static_cast<size_t>(i) * f.taps];
    for (int t = 0; t < n; ++t) {
      const double normalised = sum != 0.0 ? w[t] / sum : w[t];
      // Round half away from zero, as Pillow's (int)(±0.5 + w * 2^22).
      const double scaled = normalised * (1 << kPrecisionBits);
      k[t] = static_cast<int32_t>(normalised < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    f.first[i] = lo;
    f.count[i] = n;
  }
  return f;
}

inline uint8_t clip8(int64_t acc) {
  if (acc >= (int64_t{1} << kPrecisionBits << 8)) return 255;
  if (acc <= 0) return 0;
  return static_cast<uint8_t>(acc >> kPrecisionBits);
}

// Horizontal pass over rows [row_begin, row_end) of `in`, into `out` (out.width wide,
// row_end - row_begin high).
void resample_horizontal(const RgbImage& in, int row_begin, int row_end, const AxisFilter& f, RgbImage& out) {
  constexpr int64_t kHalf = int64_t{1} << (kPrecisionBits - 1);
  for (int y = row_begin; y < row_end; ++y) {
    const uint8_t* src = in.row(y);
    uint8_t* dst = out.row(y - row_begin);
    for (int x = 0; x < out.width; ++x) {
      const int32_t* k = &f.weight[static_cast<size_t>(x) * f.taps];
      const uint8_t* s = src + static_cast<size_t>(f.first[x]) * 3;
      int64_t r = kHalf, g = kHalf, b = kHalf;
      for (int t = 0; t < f.count[x]; ++t, s += 3) {
        r += s[0] * k[t];
        g += s[1] * k[t];
        b += s[2] * k[t];
      }
      dst[3 * x + 0] = clip8(r);
      dst[3 * x + 1] = clip8(g);
      dst[3 * x + 2] = clip8(b);
    }
  }
}

// Vertical pass: output row y reads rows first[y] - row_offset ... of `in`.
void resample_vertical(const RgbImage& in, int row_offset, const AxisFilter& f, RgbImage& out) {
  constexpr int64_t kHalf = int64_t{1} << (kPrecisionBits - 1);
  const size_t row_bytes = static_cast<size_t>(in.width) * 3;
  std::vector<int64_t> acc(row_bytes);
  for (int y = 0; y < out.height; ++y) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = &f.weight[static_cast<size_t>(y) * f.taps];
    for (int t = 0; t < f.count[y]; ++t) {
      const uint8_t* s = in.row(f.first[y] - row_offset + t);
      const int64_t w = k[t];
      for (size_t i = 0; i < row_bytes; ++i) acc[i] += s[i] * w;
    }
    uint8_t* dst = out.row(y);
    for (size_t i = 0; i < row_bytes; ++i) dst[i] = clip8(acc[i]);
  }
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& image, int width, int height) {
  check_image(image, "resize source");
  if (width <= 0 || height <= 0)
    throw InferenceError("resize of a " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                         " image to " + std::to_string(width) + "x" + std::to_string(height) +
                         ": the target size must be positive");
  if (width == image.width && height == image.height) return image;  // PIL returns a copy

  const bool horizontal = width != image.width;
  const bool vertical = height != image.height;
  if (!vertical) {
    RgbImage out(width, height);
    resample_horizontal(image, 0, image.height, axis_filter(image.width, width), out);
    return out;
  }
  const AxisFilter vf = axis_filter(image.height, height);
  if (!horizontal) {
    RgbImage out(width, height);
    resample_vertical(image, 0, vf, out);
    return out;
  }
  // Like Pillow, the horizontal pass only computes the rows the vertical pass reads.
  const int first_row = vf.first.front();
  const int last_row = vf.first.back() + vf.count.back();
  RgbImage between(width, last_row - first_row);
  resample_horizontal(image, first_row, last_row, axis_filter(image.width, width), between);
  RgbImage out(width, height);
  resample_vertical(between, first_row, vf, out);
  return out;
}

RgbImage crop(const RgbImage& image, int x, int y, int width, int height) {
  check_image(image, "crop source");
  if (x < 0 || y < 0 || width <= 0 || height <= 0 || static_cast<int64_t>(x) + width > image.width ||
      static_cast<int64_t>(y) + height > image.height)
    throw InferenceError("crop " + std::to_string(width) + "x" + std::to_string(height) + " at (" +
                         std::to_string(x) + ", " + std::to_string(y) + ") lies outside the " +
                         std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  RgbImage out(width, height);
  for (int r = 0; r < height; ++r)
    std::memcpy(out.row(r), image.row(y + r) + static_cast<size_t>(x) * 3, static_cast<size_t>(width) * 3);
  return out;
}

}  // namespace unibiomed::inference
