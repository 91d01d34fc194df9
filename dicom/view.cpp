// Rendering the model's views and mapping masks back.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/view.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "dicom/pixel_data.h"
#include "dicom/tissue.h"
#include "dicom/volume.h"

namespace unibiomed::dicom {
namespace {

std::string series_name(const Series& series) {
  return "series " + series.identity.series_instance_uid +
         (series.identity.series_description.empty() ? "" : " (" + series.identity.series_description + ")");
}

bool is_volumetric(ModelModality m) {
  return m == ModelModality::CT || m == ModelModality::MRI;
}

bool has_slides(const Series& series) {
  for (const auto& i : series.instances)
    if (i.slide()) return true;
  return false;
}

// Radiographs and other greyscale images without VOI that are already 8-bit are shown as
// stored: stretching an ultrasound or OCT frame to its min/max would change what it looks like.
bool display_ready_8bit(const Instance& instance, const std::vector<float>& values) {
  if (!instance.frame(1).windows.empty() || instance.pixels().has_voi_lut_sequence) return false;
  if (instance.pixels().bits_stored > 8) return false;
  return std::all_of(values.begin(), values.end(), [](float v) { return v >= 0 && v <= 255; });
}

double tissue_fraction(const RgbImage& image) {
  if (image.rgb.empty()) return 0;
  size_t tissue = 0;
  const size_t n = size_t(image.width) * size_t(image.height);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &image.rgb[3 * i];
    // Empty glass is near-white and unsaturated (a common threshold in slide tiling tools).
    if (!(p[0] > 220 && p[1] > 220 && p[2] > 220)) ++tissue;
  }
  return double(tissue) / double(n);
}

}  // namespace

RgbImage pad_to_square(const RgbImage& image, std::array<int, 4>* padding) {
  const int size = std::max(image.width, image.height);
  const int dx = size - image.width, dy = size - image.height;
  // BiomedParse pads (difference // 2) on each side; an odd difference puts the extra pixel
  // after, so that the result is exactly square.
  const int left = dx / 2, top = dy / 2;
  if (padding) *padding = {left, top, dx - left, dy - top};
  if (dx == 0 && dy == 0) return image;
  RgbImage out{size, size, std::vector<uint8_t>(size_t(size) * size_t(size) * 3, 0)};
  for (int y = 0; y < image.height; ++y) {
    std::copy(image.rgb.begin() + long(size_t(y) * size_t(image.width) * 3),
              image.rgb.begin() + long(size_t(y + 1) * size_t(image.width) * 3),
              out.rgb.begin() + long((size_t(y + top) * size_t(size) + size_t(left)) * 3));
  }
  return out;
}

std::vector<ViewRequest> plan_views(const Series& series, const RenderOptions& options, std::string* note) {
  if (!series.modality.modality) {
    throw DicomError(series_name(series) + ": not supported: " + series.modality.reason);
  }
  const ModelModality modality = *series.modality.modality;
  std::vector<ViewRequest> requests;
  if (modality == ModelModality::Pathology && has_slides(series)) {
    SlidePyramid pyramid(series);
    const int level =
        options.slide_level >= 0 ? options.slide_level : pyramid.level_for_resolution(options.slide_mm_per_pixel);
    if (level >= int(pyramid.levels().size())) {
      throw DicomError(series_name(series) + ": slide level " + std::to_string(level) + " does not exist (" +
                       std::to_string(pyramid.levels().size()) + " levels)");
    }
    const SlideLevel& l = pyramid.levels()[size_t(level)];
    const int size = std::max(16, options.slide_region_size);
    const int overlap = options.slide_region_overlap >= 0 ? options.slide_region_overlap : size / 8;
    const TissueMap tissue = detect_tissue(pyramid);
    const RegionGrid grid = tissue_regions(pyramid, tissue, level, size, overlap);
    const std::string summary = std::to_string(grid.regions.size()) + " of " +
                                std::to_string(grid.grid_columns * grid.grid_rows) + " regions of " +
                                std::to_string(size) + " px (overlap " + std::to_string(overlap) + ") on slide level " +
                                std::to_string(level) + " lie over tissue (" + std::to_string(tissue.tissue_cells()) +
                                " of " + std::to_string(tissue.tissue.size()) + " cells of the tissue map on level " +
                                std::to_string(tissue.level) + ")";
    if (note) *note = summary;
    for (const auto& [x, y, width, height] : grid.regions) {
      SlideRegion region;
      region.level = level;
      region.x = x;
      region.y = y;
      region.width = width;
      region.height = height;
      region.mm_per_pixel = l.mm_per_pixel_x;
      ViewRequest r;
      r.slide_region = region;
      // The instance/frame of the region's first tile, for provenance.
      for (const auto& t : l.tiles) {
        if (t.x <= x && t.y <= y && t.x + l.tile_columns > x && t.y + l.tile_rows > y) {
          r.instance_index = t.instance_index;
          r.frame_number = t.frame_number;
          break;
        }
      }
      requests.push_back(r);
    }
    if (requests.empty()) throw DicomError(series_name(series) + ": no tissue on the slide: " + summary);
    return requests;
  }
  if (is_volumetric(modality)) {
    StackPlan plan = plan_stacks(series);
    for (size_t s = 0; s < plan.stacks.size(); ++s) {
      for (size_t k = 0; k < plan.stacks[s].slices.size(); ++k) {
        const SliceRef& ref = plan.stacks[s].slices[k];
        requests.push_back(ViewRequest{ref.instance_index, ref.frame_number, int(s), int(k), std::nullopt});
      }
    }
    if (!requests.empty()) return requests;
    // No geometry (a lone slice, a secondary capture): the frames in instance order.
  }
  const int stride = std::max(1, options.frame_stride);
  std::string first_problem;
  for (size_t i = 0; i < series.instances.size(); ++i) {
    const Instance& instance = series.instances[i];
    if (std::string problem = instance.image_problem(); !problem.empty()) {
      if (first_problem.empty()) first_problem = problem;
      continue;
    }
    for (int f = 1; f <= instance.pixels().number_of_frames; f += stride) {
      requests.push_back(ViewRequest{i, f, -1, -1, std::nullopt});
    }
  }
  if (requests.empty()) {
    throw DicomError(series_name(series) + ": no decodable image" +
                     (first_problem.empty() ? "" : ": " + first_problem));
  }
  return requests;
}

View render_view(const Series& series, const ViewRequest& request, const RenderOptions& options) {
  if (!series.modality.modality) throw DicomError(series_name(series) + ": not supported: " + series.modality.reason);
  const ModelModality modality = *series.modality.modality;
  const Instance& instance = series.instances.at(request.instance_index);
  View view;
  ViewProvenance& p = view.provenance;
  p.series_instance_uid = series.identity.series_instance_uid;
  p.sop_class_uid = instance.sop_class_uid();
  p.sop_instance_uid = instance.sop_instance_uid();
  p.frame_number = request.frame_number;
  p.stack_index = request.stack_index;
  p.slice_index = request.slice_index;
  p.geometry = instance.frame(request.frame_number);

  RgbImage image;
  if (request.slide_region) {
    SlidePyramid pyramid(series);
    SlideRegion region = *request.slide_region;
    region.tiles.clear();
    image = pyramid.read_region(region.level, region.x, region.y, region.width, region.height, &region.tiles);
    p.tissue_fraction = tissue_fraction(image);
    p.intensity = "colour as stored (slide level " + std::to_string(region.level) + ")";
    p.slide_region = region;
  } else if (is_colour(instance)) {
    image = decode_colour_frame(instance, request.frame_number);
    p.intensity = "colour as stored (" + instance.pixels().photometric_interpretation + ")";
  } else {
    ModalityFrame frame = decode_modality_frame(instance, request.frame_number);
    GreyMapping mapping;
    GreyImage grey;
    if (modality == ModelModality::CT) {
      grey = apply_ct_window(frame.values, frame.columns, frame.rows, ct_window_preset(options.ct_preset), &mapping);
    } else if (modality == ModelModality::MRI) {
      if (options.mr_scope == RenderOptions::PercentileScope::Volume && request.stack_index >= 0) {
        std::optional<std::pair<double, double>> range;
        auto cached = options.mr_stack_ranges.find(request.stack_index);
        if (cached != options.mr_stack_ranges.end()) {
          range = cached->second;
        } else {
          range = stack_percentile_range(series, request.stack_index);
        }
        if (range) {
          grey = apply_clip_window(frame.values, frame.columns, frame.rows, range->first, range->second);
          mapping = {"percentile 0.5-99.5 of non-zero values over the whole stack [" + std::to_string(range->first) +
                         ", " + std::to_string(range->second) + "]",
                     range->first, range->second};
        } else {
          grey = GreyImage{frame.columns, frame.rows, std::vector<uint8_t>(frame.values.size(), 0)};
          mapping.description = "percentile 0.5-99.5 over the whole stack: none (all zero)";
        }
      } else {
        grey = apply_percentile_window(frame.values, frame.columns, frame.rows, {}, &mapping);
      }
    } else if (display_ready_8bit(instance, frame.values)) {
      grey = GreyImage{frame.columns, frame.rows, std::vector<uint8_t>(frame.values.size())};
      for (size_t i = 0; i < frame.values.size(); ++i) grey.grey[i] = uint8_t(frame.values[i]);
      mapping.description = "8-bit values as stored";
      if (frame.monochrome1) {
        for (auto& g : grey.grey) g = uint8_t(255 - g);
        mapping.description += ", MONOCHROME1 inverted";
      }
    } else {
      grey = apply_file_voi(instance, request.frame_number, frame.values, frame.columns, frame.rows, frame.monochrome1,
                            &mapping);
    }
    image = grey_to_rgb(grey);
    p.intensity = mapping.description;
  }
  p.source_columns = image.width;
  p.source_rows = image.height;
  if (options.pad_to_square) {
    std::array<int, 4> pad{};
    view.image = pad_to_square(image, &pad);
    p.pad_left = pad[0];
    p.pad_top = pad[1];
    p.pad_right = pad[2];
    p.pad_bottom = pad[3];
  } else {
    view.image = std::move(image);
  }
  return view;
}

std::optional<std::pair<double, double>> stack_percentile_range(const Series& series, int stack_index) {
  StackPlan plan = plan_stacks(series);
  if (stack_index < 0 || size_t(stack_index) >= plan.stacks.size())
    throw DicomError(series_name(series) + ": stack " + std::to_string(stack_index) + " does not exist");
  std::vector<float> values;
  for (const SliceRef& ref : plan.stacks[size_t(stack_index)].slices) {
    ModalityFrame f = decode_modality_frame(series.instances[ref.instance_index], ref.frame_number);
    values.insert(values.end(), f.values.begin(), f.values.end());
  }
  return nonzero_percentiles(values);
}

std::vector<View> render_views(const Series& series, const RenderOptions& options) {
  const auto requests = plan_views(series, options);
  RenderOptions effective = options;
  if (options.mr_scope == RenderOptions::PercentileScope::Volume && series.modality.modality == ModelModality::MRI) {
    for (const auto& r : requests) {
      if (r.stack_index >= 0 && !effective.mr_stack_ranges.count(r.stack_index)) {
        if (auto range = stack_percentile_range(series, r.stack_index))
          effective.mr_stack_ranges[r.stack_index] = *range;
      }
    }
  }
  std::vector<View> views;
  for (const auto& request : requests) views.push_back(render_view(series, request, effective));
  return views;
}

View view_of_raster(const RgbImage& image, const std::string& source) {
  View view;
  std::array<int, 4> pad{};
  view.image = pad_to_square(image, &pad);
  ViewProvenance& p = view.provenance;
  p.sop_instance_uid = "";
  p.source_columns = image.width;
  p.source_rows = image.height;
  p.pad_left = pad[0];
  p.pad_top = pad[1];
  p.pad_right = pad[2];
  p.pad_bottom = pad[3];
  p.intensity = "colour as stored (" + source + ")";
  return view;
}

GreyImage map_mask_to_source(const ViewProvenance& p, const GreyImage& mask) {
  if (mask.width <= 0 || mask.height <= 0 || mask.grey.size() != size_t(mask.width) * size_t(mask.height)) {
    throw DicomError("mask for " + p.sop_instance_uid + " frame " + std::to_string(p.frame_number) +
                     " is empty or its " + "buffer does not match " + std::to_string(mask.width) + "x" +
                     std::to_string(mask.height));
  }
  if (p.source_columns <= 0 || p.source_rows <= 0 || !(p.scale > 0)) {
    throw DicomError("view provenance for " + p.sop_instance_uid + " has no source size");
  }
  const int scaled_w = int(std::lround(p.source_columns * p.scale));
  const int scaled_h = int(std::lround(p.source_rows * p.scale));
  const int view_w = scaled_w + p.pad_left + p.pad_right;
  const int view_h = scaled_h + p.pad_top + p.pad_bottom;
  GreyImage out{p.source_columns, p.source_rows,
                std::vector<uint8_t>(size_t(p.source_columns) * size_t(p.source_rows))};
  for (int sy = 0; sy < p.source_rows; ++sy) {
    // Source pixel centre -> view pixel -> mask pixel (nearest), all by pixel centres.
    const double vy = p.pad_top + (sy + 0.5) * p.scale;
    const int my = std::clamp(int(std::floor(vy * mask.height / view_h)), 0, mask.height - 1);
    for (int sx = 0; sx < p.source_columns; ++sx) {
      const double vx = p.pad_left + (sx + 0.5) * p.scale;
      const int mx = std::clamp(int(std::floor(vx * mask.width / view_w)), 0, mask.width - 1);
      out.grey[size_t(sy) * size_t(p.source_columns) + size_t(sx)] =
          mask.grey[size_t(my) * size_t(mask.width) + size_t(mx)];
    }
  }
  return out;
}

std::string provenance_json(const ViewProvenance& p) {
  nlohmann::json j;
  j["series_instance_uid"] = p.series_instance_uid;
  j["sop_class_uid"] = p.sop_class_uid;
  j["sop_instance_uid"] = p.sop_instance_uid;
  j["frame_number"] = p.frame_number;
  j["source_columns"] = p.source_columns;
  j["source_rows"] = p.source_rows;
  j["pad_left"] = p.pad_left;
  j["pad_top"] = p.pad_top;
  j["pad_right"] = p.pad_right;
  j["pad_bottom"] = p.pad_bottom;
  j["scale"] = p.scale;
  j["intensity"] = p.intensity;
  if (p.stack_index >= 0) {
    j["stack_index"] = p.stack_index;
    j["slice_index"] = p.slice_index;
  }
  nlohmann::json g = nlohmann::json::object();
  if (p.geometry.image_position) g["image_position_patient"] = *p.geometry.image_position;
  if (p.geometry.image_orientation) g["image_orientation_patient"] = *p.geometry.image_orientation;
  if (p.geometry.pixel_spacing) g["pixel_spacing"] = *p.geometry.pixel_spacing;
  if (p.geometry.slice_thickness) g["slice_thickness"] = *p.geometry.slice_thickness;
  j["geometry"] = g;
  if (p.slide_region) {
    const SlideRegion& r = *p.slide_region;
    nlohmann::json tiles = nlohmann::json::array();
    for (const auto& t : r.tiles) tiles.push_back({{"frame_number", t.frame_number}, {"x", t.x}, {"y", t.y}});
    j["slide_region"] = {{"level", r.level}, {"x", r.x},           {"y", r.y},
                         {"width", r.width}, {"height", r.height}, {"mm_per_pixel", r.mm_per_pixel},
                         {"tiles", tiles}};
    j["tissue_fraction"] = p.tissue_fraction;
  }
  return j.dump(2);
}

}  // namespace unibiomed::dicom
