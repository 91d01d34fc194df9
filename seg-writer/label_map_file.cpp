// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/label_map_file.h"

#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkNiftiImageIO.h>
#include <itkNrrdImageIO.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <memory>
#include <set>
#include <string>

namespace unibiomed::seg {
namespace {

// Positions within this distance (mm) are the same slice; NIfTI stores them as 32-bit floats.
constexpr double kPositionTolerance = 0.01;
constexpr double kDirectionTolerance = 1e-3;
constexpr double kSpacingRelativeTolerance = 1e-3;

std::string lower_name(const std::filesystem::path& path) {
  std::string name = path.filename().string();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return name;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::uint16_t to_label(double value, const std::filesystem::path& path, const std::string& where) {
  if (!(value >= 0 && value <= 65535) || value != std::floor(value))
    throw SegmentationError(path.string() + ": " + where + " has the value " + std::to_string(value) +
                            ": labels are whole numbers from 0 to 65535");
  return static_cast<std::uint16_t>(value);
}

void collect_labels(LabelMap& map) {
  std::vector<bool> seen(65536, false);
  for (auto& frame : map.frames) {
    bool any = false;
    for (std::uint16_t v : frame) {
      if (v) {
        seen[v] = true;
        any = true;
      }
    }
    if (!any) frame.clear();
  }
  for (size_t v = 1; v < seen.size(); ++v)
    if (seen[v]) map.labels.push_back(static_cast<std::uint16_t>(v));
}

std::string fmt(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4g", v);
  return buffer;
}

}  // namespace

LabelMap read_label_volume(const std::filesystem::path& path, const SourceImages& sources) {
  const std::string name = lower_name(path);
  itk::ImageIOBase::Pointer io;
  if (ends_with(name, ".nii") || ends_with(name, ".nii.gz"))
    io = itk::NiftiImageIO::New();
  else if (ends_with(name, ".nrrd") || ends_with(name, ".nhdr"))
    io = itk::NrrdImageIO::New();
  else
    throw SegmentationError(path.string() + ": not a label volume: use .nii, .nii.gz, .nrrd or .nhdr (or PNG files)");
  if (!std::filesystem::is_regular_file(path)) throw SegmentationError(path.string() + ": no such file");

  using Volume = itk::Image<float, 3>;
  auto reader = itk::ImageFileReader<Volume>::New();
  reader->SetImageIO(io);
  reader->SetFileName(path.string());
  try {
    reader->UpdateOutputInformation();
    if (io->GetNumberOfComponents() != 1)
      throw SegmentationError(path.string() + ": has " + std::to_string(io->GetNumberOfComponents()) +
                              " components per voxel: a label map has one");
    for (unsigned d = 3; d < io->GetNumberOfDimensions(); ++d)
      if (io->GetDimensions(d) > 1)
        throw SegmentationError(path.string() + ": has " + std::to_string(io->GetNumberOfDimensions()) +
                                " dimensions: a label map has 2 or 3");
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    throw SegmentationError(path.string() + ": cannot be read as a label volume: " + e.GetDescription());
  }
  Volume::Pointer volume = reader->GetOutput();
  const auto size = volume->GetLargestPossibleRegion().GetSize();
  const size_t columns = sources.columns(), rows = sources.rows(), frames = sources.frame_count();
  if (size[0] != columns || size[1] != rows || size[2] != frames)
    throw SegmentationError(path.string() + ": is " + std::to_string(size[0]) + "x" + std::to_string(size[1]) + "x" +
                            std::to_string(size[2]) + " voxels, but the source series has " + std::to_string(columns) +
                            "x" + std::to_string(rows) + " pixels in " + std::to_string(frames) + " frames");

  // Which source frame each slice of the volume is.
  std::vector<size_t> frame_of_slice(frames);
  if (sources.has_geometry()) {
    const auto& o = *sources.orientation();
    const auto direction = volume->GetDirection();
    const auto spacing = volume->GetSpacing();
    for (int axis = 0; axis < 2; ++axis) {
      for (int k = 0; k < 3; ++k) {
        if (std::fabs(direction[k][axis] - o[axis * 3 + k]) > kDirectionTolerance)
          throw SegmentationError(path.string() + ": its " + (axis == 0 ? "row" : "column") + " direction (" +
                                  fmt(direction[0][axis]) + ", " + fmt(direction[1][axis]) + ", " +
                                  fmt(direction[2][axis]) + ") differs from the source's (" + fmt(o[axis * 3]) + ", " +
                                  fmt(o[axis * 3 + 1]) + ", " + fmt(o[axis * 3 + 2]) +
                                  "): the label map must be in the source series' geometry");
      }
    }
    if (const auto& ps = sources.pixel_spacing()) {
      // Pixel Spacing is (between rows, between columns): x steps along a row, by the column spacing.
      const double expected[2] = {(*ps)[1], (*ps)[0]};
      for (int axis = 0; axis < 2; ++axis)
        if (std::fabs(spacing[axis] - expected[axis]) > kSpacingRelativeTolerance * expected[axis])
          throw SegmentationError(path.string() + ": voxel spacing " + fmt(spacing[0]) + " x " + fmt(spacing[1]) +
                                  " mm differs from the source's pixel spacing " + fmt(expected[0]) + " x " +
                                  fmt(expected[1]) + " mm");
    }
    std::vector<bool> taken(frames, false);
    for (size_t z = 0; z < frames; ++z) {
      Volume::IndexType index{{0, 0, static_cast<itk::IndexValueType>(z)}};
      Volume::PointType point;
      volume->TransformIndexToPhysicalPoint(index, point);
      size_t best = frames;
      double best_distance = 0;
      for (size_t f = 0; f < frames; ++f) {
        const auto& p = *sources.frame(f).position;
        const double d = std::sqrt((p[0] - point[0]) * (p[0] - point[0]) + (p[1] - point[1]) * (p[1] - point[1]) +
                                   (p[2] - point[2]) * (p[2] - point[2]));
        if (best == frames || d < best_distance) {
          best = f;
          best_distance = d;
        }
      }
      const double tolerance =
          kPositionTolerance + 1e-5 * std::sqrt(point[0] * point[0] + point[1] * point[1] + point[2] * point[2]);
      if (best_distance > tolerance)
        throw SegmentationError(
            path.string() + ": slice " + std::to_string(z) + " lies at (" + fmt(point[0]) + ", " + fmt(point[1]) +
            ", " + fmt(point[2]) + ") mm, " + fmt(best_distance) +
            " mm from the nearest source frame: the label map must be in the source series' geometry");
      if (taken[best])
        throw SegmentationError(path.string() + ": slices map to the same source frame " + std::to_string(best) +
                                " (source frames share a position): give one PNG per frame instead");
      taken[best] = true;
      frame_of_slice[z] = best;
    }
  } else {
    for (size_t z = 0; z < frames; ++z) frame_of_slice[z] = z;
  }

  LabelMap map;
  map.frames.assign(frames, {});
  const float* voxels = volume->GetBufferPointer();
  const size_t per_slice = columns * rows;
  for (size_t z = 0; z < frames; ++z) {
    auto& labels = map.frames[frame_of_slice[z]];
    labels.resize(per_slice);
    for (size_t i = 0; i < per_slice; ++i) {
      const float v = voxels[z * per_slice + i];
      labels[i] = v == 0.0f ? 0
                            : to_label(v, path,
                                       "voxel (" + std::to_string(i % columns) + ", " + std::to_string(i / columns) +
                                           ", " + std::to_string(z) + ")");
    }
  }
  collect_labels(map);
  return map;
}

namespace {

struct PngReadState {
  std::FILE* file = nullptr;
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngReadState() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    if (file) std::fclose(file);
  }
};

void png_error_handler(png_structp png, png_const_charp message) {
  auto* text = static_cast<std::string*>(png_get_error_ptr(png));
  if (text) *text = message;
  png_longjmp(png, 1);
}

void png_warning_handler(png_structp, png_const_charp) {}

// Reads a grey or palette PNG as labels; `columns` x `rows` must match.
std::vector<std::uint16_t> read_label_png(const std::filesystem::path& path, size_t columns, size_t rows) {
  PngReadState state;
  state.file = std::fopen(path.c_str(), "rb");
  if (!state.file) throw SegmentationError(path.string() + ": cannot be opened");
  unsigned char signature[8] = {};
  if (std::fread(signature, 1, 8, state.file) != 8 || png_sig_cmp(signature, 0, 8) != 0)
    throw SegmentationError(path.string() + ": is not a PNG file");
  std::string error;
  state.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, png_error_handler, png_warning_handler);
  if (!state.png) throw SegmentationError(path.string() + ": libpng could not start");
  state.info = png_create_info_struct(state.png);
  if (!state.info) throw SegmentationError(path.string() + ": libpng could not start");
  std::vector<std::uint16_t> labels;
  std::vector<png_bytep> row_pointers;
  std::vector<unsigned char> buffer;
  std::string problem;
  if (setjmp(png_jmpbuf(state.png))) {
    throw SegmentationError(path.string() + ": broken PNG: " + error);
  }
  png_init_io(state.png, state.file);
  png_set_sig_bytes(state.png, 8);
  png_read_info(state.png, state.info);
  const png_uint_32 width = png_get_image_width(state.png, state.info);
  const png_uint_32 height = png_get_image_height(state.png, state.info);
  const int colour = png_get_color_type(state.png, state.info);
  const int depth = png_get_bit_depth(state.png, state.info);
  if (width != columns || height != rows) {
    problem = "is " + std::to_string(width) + "x" + std::to_string(height) + " pixels, the source frames " +
              std::to_string(columns) + "x" + std::to_string(rows);
  } else {
    // Keep the stored values: unpack 1/2/4-bit samples without scaling, palette indices as they are.
    if (depth < 8) png_set_packing(state.png);
    if (colour & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(state.png);
    if (depth == 16) png_set_swap(state.png);  // to host (little endian) order
    png_read_update_info(state.png, state.info);
    const size_t channels = png_get_channels(state.png, state.info);
    const size_t bytes_per_sample = depth == 16 ? 2 : 1;
    const size_t row_bytes = png_get_rowbytes(state.png, state.info);
    buffer.resize(row_bytes * rows);
    row_pointers.resize(rows);
    for (size_t r = 0; r < rows; ++r) row_pointers[r] = buffer.data() + r * row_bytes;
    png_read_image(state.png, row_pointers.data());
    labels.resize(columns * rows);
    for (size_t r = 0; r < rows && problem.empty(); ++r) {
      for (size_t c = 0; c < columns; ++c) {
        const unsigned char* px = row_pointers[r] + c * channels * bytes_per_sample;
        auto sample = [&](size_t k) -> std::uint16_t {
          return bytes_per_sample == 2 ? static_cast<std::uint16_t>(px[2 * k] | (px[2 * k + 1] << 8)) : px[k];
        };
        const std::uint16_t v = sample(0);
        if (channels >= 3 && (sample(1) != v || sample(2) != v)) {
          problem = "is a colour image (pixel (" + std::to_string(c) + ", " + std::to_string(r) +
                    ") is not grey): a label PNG is grey or palette, its value the label";
          break;
        }
        labels[r * columns + c] = v;
      }
    }
  }
  if (!problem.empty()) throw SegmentationError(path.string() + ": " + problem);
  return labels;
}

}  // namespace

LabelMap read_label_pngs(const std::vector<std::filesystem::path>& paths, const SourceImages& sources) {
  if (paths.size() != sources.frame_count())
    throw SegmentationError(std::to_string(paths.size()) + " PNG label files for a source series of " +
                            std::to_string(sources.frame_count()) + " frames: give one PNG per frame, in slice order");
  const auto order = sources.frames_in_slice_order();
  LabelMap map;
  map.frames.assign(sources.frame_count(), {});
  for (size_t i = 0; i < paths.size(); ++i)
    map.frames[order[i]] = read_label_png(paths[i], sources.columns(), sources.rows());
  collect_labels(map);
  return map;
}

std::vector<FrameMask> masks_for_label(const LabelMap& map, std::uint16_t label) {
  std::vector<FrameMask> masks;
  for (size_t f = 0; f < map.frames.size(); ++f) {
    const auto& labels = map.frames[f];
    if (labels.empty() || std::find(labels.begin(), labels.end(), label) == labels.end()) continue;
    FrameMask mask;
    mask.frame = f;
    mask.binary.resize(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) mask.binary[i] = labels[i] == label ? 1 : 0;
    masks.push_back(std::move(mask));
  }
  return masks;
}

}  // namespace unibiomed::seg
