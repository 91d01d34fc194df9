// PNG (libpng) and JPEG (libjpeg-turbo) coding for plain 8-bit buffers.
// Both libraries report errors by longjmp; each decoder sets its jump point in a scope that
// owns no objects created after it, converts the failure into RasterFileError there, and its
// RAII holder releases the library state.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/raster_file.h"

#include <png.h>

#include <csetjmp>
#include <cstdio>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace unibiomed::dicom {
namespace {

// Whether a width x height image is over kMaxRasterPixels, and then why, in `why` (a C buffer:
// the decoders leave by longjmp, which must not skip a destructor).
bool too_large(uint64_t width, uint64_t height, char* why, size_t size) {
  if (width * height <= kMaxRasterPixels) return false;
  std::snprintf(why, size, "%llu x %llu pixels is more than the %llu million pixels an image may have here",
                static_cast<unsigned long long>(width), static_cast<unsigned long long>(height),
                static_cast<unsigned long long>(kMaxRasterPixels / 1000000));
  return true;
}

bool is_png(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 8 && png_sig_cmp(bytes.data(), 0, 8) == 0;
}

bool is_jpeg(const std::vector<uint8_t>& bytes) {
  // SOI marker followed by the start of another marker (ITU-T T.81 B.1.1.3).
  return bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

// ---- PNG -----------------------------------------------------------------------------------

struct PngMemorySource {
  const uint8_t* data;
  size_t size;
  size_t offset;
};

struct PngReadState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::string message;
  PngMemorySource source{nullptr, 0, 0};

  ~PngReadState() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

void png_error_to_state(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngReadState*>(png_get_error_ptr(png));
  state->message = message ? message : "unknown libpng error";
  png_longjmp(png, 1);
}

void png_warning_ignored(png_structp, png_const_charp) {}

void png_read_from_memory(png_structp png, png_bytep out, png_size_t length) {
  auto* source = static_cast<PngMemorySource*>(png_get_io_ptr(png));
  if (source->size - source->offset < length) png_error(png, "file is truncated");
  std::memcpy(out, source->data + source->offset, length);
  source->offset += length;
}

RgbImage decode_png(const std::vector<uint8_t>& bytes, const std::string& name) {
  PngReadState state;
  state.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_to_state, png_warning_ignored);
  if (!state.png) throw RasterFileError(name + ": cannot initialise libpng");
  state.info = png_create_info_struct(state.png);
  if (!state.info) throw RasterFileError(name + ": cannot initialise libpng");
  state.source = PngMemorySource{bytes.data(), bytes.size(), 0};

  RgbImage image;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(state.png))) {
    throw RasterFileError(name + ": invalid PNG: " + state.message);
  }
  png_set_read_fn(state.png, &state.source, png_read_from_memory);
  // Large but legal images must not be refused by libpng's default 1M-pixel limits.
  png_set_user_limits(state.png, 0x7fffffff, 0x7fffffff);
  png_read_info(state.png, state.info);

  // Normalise every colour type and depth to 8-bit RGB: palette and low-bit grey expanded,
  // tRNS turned into alpha and then dropped, 16-bit scaled with rounding, grey replicated.
  png_set_expand(state.png);
  png_set_scale_16(state.png);
  png_set_strip_alpha(state.png);
  png_set_gray_to_rgb(state.png);
  const int passes = png_set_interlace_handling(state.png);
  (void)passes;
  png_read_update_info(state.png, state.info);

  const png_uint_32 width = png_get_image_width(state.png, state.info);
  const png_uint_32 height = png_get_image_height(state.png, state.info);
  const size_t row_bytes = png_get_rowbytes(state.png, state.info);
  if (png_get_channels(state.png, state.info) != 3 || png_get_bit_depth(state.png, state.info) != 8 ||
      row_bytes != size_t(width) * 3) {
    png_error(state.png, "unexpected layout after conversion to RGB8");
  }
  char why[160];
  if (too_large(width, height, why, sizeof why)) png_error(state.png, why);
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.rgb.resize(row_bytes * height);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = image.rgb.data() + y * row_bytes;
  png_read_image(state.png, rows.data());
  png_read_end(state.png, nullptr);
  return image;
}

// ---- JPEG ----------------------------------------------------------------------------------

struct JpegErrorManager {
  jpeg_error_mgr base;  // must stay first: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit_to_jump(j_common_ptr cinfo) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, manager->message);
  std::longjmp(manager->jump, 1);
}

void jpeg_warning_ignored(j_common_ptr, int) {}

struct JpegDecompressState {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager error{};
  bool created = false;
  ~JpegDecompressState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

RgbImage decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& name) {
  JpegDecompressState state;
  state.cinfo.err = jpeg_std_error(&state.error.base);
  state.error.base.error_exit = jpeg_error_exit_to_jump;
  state.error.base.emit_message = jpeg_warning_ignored;
  RgbImage image;
  if (setjmp(state.error.jump)) {
    throw RasterFileError(name + ": invalid JPEG: " + state.error.message);
  }
  jpeg_create_decompress(&state.cinfo);
  state.created = true;
  jpeg_mem_src(&state.cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&state.cinfo, TRUE);
  if (state.cinfo.jpeg_color_space == JCS_CMYK || state.cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(state.error.message, sizeof state.error.message, "CMYK JPEG is not supported");
    std::longjmp(state.error.jump, 1);
  }
  if (too_large(state.cinfo.image_width, state.cinfo.image_height, state.error.message, sizeof state.error.message))
    std::longjmp(state.error.jump, 1);
  state.cinfo.out_color_space = JCS_RGB;  // grey is replicated by libjpeg-turbo
  jpeg_start_decompress(&state.cinfo);
  if (state.cinfo.output_components != 3) {
    std::snprintf(state.error.message, sizeof state.error.message, "decoder produced %d components, expected 3",
                  state.cinfo.output_components);
    std::longjmp(state.error.jump, 1);
  }
  image.width = static_cast<int>(state.cinfo.output_width);
  image.height = static_cast<int>(state.cinfo.output_height);
  const size_t row_bytes = size_t(image.width) * 3;
  image.rgb.resize(row_bytes * size_t(image.height));
  while (state.cinfo.output_scanline < state.cinfo.output_height) {
    JSAMPROW row = image.rgb.data() + size_t(state.cinfo.output_scanline) * row_bytes;
    jpeg_read_scanlines(&state.cinfo, &row, 1);
  }
  jpeg_finish_decompress(&state.cinfo);
  return image;
}

// ---- PNG writing ---------------------------------------------------------------------------

void write_png_samples(const std::filesystem::path& path, int width, int height, int channels,
                       const std::vector<uint8_t>& samples) {
  if (width <= 0 || height <= 0) {
    throw RasterFileError(path.string() + ": cannot write an empty image (" + std::to_string(width) + "x" +
                          std::to_string(height) + ")");
  }
  const size_t expected = size_t(width) * size_t(height) * size_t(channels);
  if (samples.size() != expected) {
    throw RasterFileError(path.string() + ": buffer holds " + std::to_string(samples.size()) + " bytes, " +
                          std::to_string(width) + "x" + std::to_string(height) + "x" + std::to_string(channels) +
                          " needs " + std::to_string(expected));
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const std::string file = path.string();
  if (!png_image_write_to_file(&image, file.c_str(), 0, samples.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw RasterFileError(file + ": cannot write PNG: " + message);
  }
}

}  // namespace

RgbImage decode_raster_rgb(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (bytes.empty()) throw RasterFileError(name + ": file is empty");
  if (is_png(bytes)) return decode_png(bytes, name);
  if (is_jpeg(bytes)) return decode_jpeg(bytes, name);
  throw RasterFileError(name + ": not a PNG or JPEG file (unrecognised signature)");
}

RgbImage read_raster_rgb(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RasterFileError(path.string() + ": cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw RasterFileError(path.string() + ": read error");
  return decode_raster_rgb(bytes, path.string());
}

void write_png(const std::filesystem::path& path, const RgbImage& image) {
  write_png_samples(path, image.width, image.height, 3, image.rgb);
}

void write_png(const std::filesystem::path& path, const GreyImage& image) {
  write_png_samples(path, image.width, image.height, 1, image.grey);
}

RgbImage grey_to_rgb(const GreyImage& image) {
  RgbImage out{image.width, image.height, {}};
  out.rgb.resize(image.grey.size() * 3);
  for (size_t i = 0; i < image.grey.size(); ++i) {
    out.rgb[3 * i] = out.rgb[3 * i + 1] = out.rgb[3 * i + 2] = image.grey[i];
  }
  return out;
}

}  // namespace unibiomed::dicom
