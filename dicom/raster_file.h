// PNG and JPEG files as plain 8-bit buffers: what `ask` reads when given a photo instead of
// DICOM, and how previews and rendered views are written. libpng and libjpeg (Debian) do the
// coding; every error names the file.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "dicom/error.h"

namespace unibiomed::dicom {

// Raised for unreadable or unsupported raster files; the message names the file.
class RasterFileError : public DicomError {
 public:
  using DicomError::DicomError;
};

// Row-major interleaved 8-bit RGB: pixel (x, y) starts at rgb[3 * (y * width + x)].
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;
};

// Row-major 8-bit grey: pixel (x, y) is grey[y * width + x].
struct GreyImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> grey;
};

// Reads a PNG or a JPEG (recognised by its signature, not its extension) as RGB8.
// PNG: grey, grey+alpha, palette, RGBA and 16-bit samples are converted (alpha is dropped
// without compositing, 16-bit samples are scaled to 8 bits with rounding). JPEG: grey and YCbCr/RGB
// (CMYK is refused). Images of more than kMaxRasterPixels are refused before any pixel memory is
// taken: a header claiming 60000 x 60000 pixels would otherwise cost 10 GB before the data runs
// out.
RgbImage read_raster_rgb(const std::filesystem::path& path);
inline constexpr uint64_t kMaxRasterPixels = uint64_t{1} << 28;  // 16384 x 16384
// The same from bytes in memory; `name` is used in error messages.
RgbImage decode_raster_rgb(const std::vector<uint8_t>& bytes, const std::string& name);

// Writes 8-bit PNGs. Throws RasterFileError naming the file when the buffer size does not
// match width x height (x 3) or the file cannot be written.
void write_png(const std::filesystem::path& path, const RgbImage& image);
void write_png(const std::filesystem::path& path, const GreyImage& image);

// Grey replicated to three channels (how the model sees grey images).
RgbImage grey_to_rgb(const GreyImage& image);

}  // namespace unibiomed::dicom
