// Decoding the pixels of one frame: every transfer syntax DCMTK decodes (uncompressed little
// and big endian, implicit VR, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS) plus
// JPEG 2000 through GDCM, one frame at a time (a whole slide is never decoded at once).
// Three views of the same frame: the stored sample values (what pydicom's pixel_array gives),
// greyscale values in modality units (Modality LUT applied: HU for CT), and colour as RGB8.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dicom/instance.h"
#include "dicom/raster_file.h"

namespace unibiomed::dicom {

// Sample values as stored (after decompression), colour-by-pixel, bits above High Bit masked
// and signed values sign-extended (PS3.5 8.1.1). YBR_FULL_422 without compression is expanded
// to one Y/Cb/Cr triple per pixel. `colour_model` is the photometric interpretation of these
// values: codecs that convert colour while decoding (JPEG YBR -> RGB, JPEG 2000 ICT/RCT)
// report "RGB" here.
struct StoredFrame {
  int rows = 0;
  int columns = 0;
  int samples_per_pixel = 1;
  std::string colour_model;
  // rows * columns * samples_per_pixel; unsigned 32-bit samples keep their bit pattern (read
  // them back as uint32_t).
  std::vector<int32_t> values;
};
StoredFrame decode_stored_frame(const Instance& instance, int frame_number);

// A greyscale frame in modality units: the Modality LUT (Rescale Slope/Intercept of the frame,
// or a Modality LUT Sequence) applied to the stored values (PS3.3 C.11.1). MONOCHROME1 is not
// inverted here (windowing comes first; see window.h); the flag travels along.
struct ModalityFrame {
  int rows = 0;
  int columns = 0;
  bool monochrome1 = false;
  std::vector<float> values;  // row-major
};
// Throws DicomError naming the instance when it is a colour image.
ModalityFrame decode_modality_frame(const Instance& instance, int frame_number);

// A colour frame (RGB, YBR_FULL, YBR_FULL_422, YBR_ICT/RCT, PALETTE COLOR) as RGB8: YCbCr
// converted with the full-range equations of PS3.3 C.7.6.3.1.2, palette entries looked up
// (PS3.3 C.7.6.3.1.5-6), samples wider than 8 bits scaled down. Throws for greyscale images.
RgbImage decode_colour_frame(const Instance& instance, int frame_number);

// Whether the instance's frames are colour (RGB8 path) rather than greyscale (modality path).
bool is_colour(const Instance& instance);

}  // namespace unibiomed::dicom
