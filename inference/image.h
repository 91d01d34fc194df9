// The image type of the inference API: a plain 8-bit RGB buffer, whatever produced it (a
// rendered DICOM view, a PNG, a tile of a slide). No torch here: the preprocessing that turns it
// into model inputs (image_tiling.h, image_resize.h, image_preprocess.h) starts from this.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "inference/error.h"

namespace unibiomed::inference {

// Row-major interleaved 8-bit RGB: pixel (x, y) starts at rgb[3 * (y * width + x)]
// (the layout of a PIL "RGB" image and of dicom::RgbImage).
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;

  RgbImage() = default;
  RgbImage(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * static_cast<size_t>(h) * 3) {}

  int64_t pixel_count() const { return static_cast<int64_t>(width) * height; }
  const uint8_t* row(int y) const { return rgb.data() + static_cast<size_t>(y) * width * 3; }
  uint8_t* row(int y) { return rgb.data() + static_cast<size_t>(y) * width * 3; }
};

// Throws InferenceError naming `what` (e.g. "image 3 of the batch") when the image has no
// pixels or its buffer does not hold width x height x 3 bytes.
inline void check_image(const RgbImage& image, const std::string& what) {
  if (image.width <= 0 || image.height <= 0)
    throw InferenceError(what + ": size " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                         " has no pixels");
  const uint64_t expected = static_cast<uint64_t>(image.width) * static_cast<uint64_t>(image.height) * 3u;
  if (image.rgb.size() != expected)
    throw InferenceError(what + ": buffer holds " + std::to_string(image.rgb.size()) + " bytes, a " +
                         std::to_string(image.width) + "x" + std::to_string(image.height) + " RGB8 image needs " +
                         std::to_string(expected));
}

}  // namespace unibiomed::inference
