// Whole-slide pyramids.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/slide.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "dicom/pixel_data.h"

namespace unibiomed::dicom {

SlidePyramid::SlidePyramid(const Series& series) : series_(&series) {
  const std::string name = "series " + series.identity.series_instance_uid;
  // Levels: VOLUME instances grouped by total pixel matrix size (a concatenation or several
  // optical paths share it). LABEL/OVERVIEW/THUMBNAIL images are not part of the pyramid.
  std::map<std::pair<int, int>, SlideLevel> by_size;
  std::vector<std::string> skipped;
  for (size_t i = 0; i < series.instances.size(); ++i) {
    const Instance& instance = series.instances[i];
    if (!instance.slide()) continue;
    const SlideLevelInfo& info = *instance.slide();
    if (!info.image_flavor.empty() && info.image_flavor != "VOLUME") continue;
    if (std::string problem = instance.image_problem(); !problem.empty()) {
      skipped.push_back(problem);
      continue;
    }
    // An instance that cannot be placed is left out (problems()); the others make the levels.
    if (info.total_pixel_matrix_columns <= 0 || info.total_pixel_matrix_rows <= 0) {
      skipped.push_back(instance.source() +
                        ": TotalPixelMatrixColumns (0048,0006) / TotalPixelMatrixRows (0048,0007) "
                        "missing or zero");
      continue;
    }
    const auto unplaced = std::find_if(instance.frames().begin(), instance.frames().end(),
                                       [](const FrameInfo& f) { return !f.tile_position; });
    if (unplaced != instance.frames().end()) {
      skipped.push_back(instance.source() + ": frame " + std::to_string(unplaced->frame_number) +
                        " has no position in the total pixel matrix (neither TILED_FULL nor a "
                        "PlanePositionSlideSequence (0048,021A))");
      continue;
    }
    SlideLevel& level = by_size[{info.total_pixel_matrix_columns, info.total_pixel_matrix_rows}];
    if (level.tiles.empty() && level.sop_instance_uids.empty()) {
      level.total_columns = info.total_pixel_matrix_columns;
      level.total_rows = info.total_pixel_matrix_rows;
      level.tile_columns = instance.pixels().columns;
      level.tile_rows = instance.pixels().rows;
      level.dimension_organization = info.dimension_organization_type;
      const FrameInfo& first = instance.frames().front();
      if (first.pixel_spacing) {
        level.mm_per_pixel_y = (*first.pixel_spacing)[0];
        level.mm_per_pixel_x = (*first.pixel_spacing)[1];
      } else if (info.imaged_volume_width_mm > 0 && info.imaged_volume_height_mm > 0) {
        level.mm_per_pixel_x = info.imaged_volume_width_mm / info.total_pixel_matrix_columns;
        level.mm_per_pixel_y = info.imaged_volume_height_mm / info.total_pixel_matrix_rows;
      }
    } else if (level.tile_columns != instance.pixels().columns || level.tile_rows != instance.pixels().rows) {
      skipped.push_back(instance.source() + ": tiles of " + std::to_string(instance.pixels().columns) + "x" +
                        std::to_string(instance.pixels().rows) + " where the level's other instance has " +
                        std::to_string(level.tile_columns) + "x" + std::to_string(level.tile_rows));
      continue;
    }
    level.sop_instance_uids.push_back(instance.sop_instance_uid());
    for (const FrameInfo& frame : instance.frames()) {
      if (frame.focal_plane != 1) continue;
      level.tiles.push_back(
          SlideTileRef{i, frame.frame_number, (*frame.tile_position)[0] - 1, (*frame.tile_position)[1] - 1});
    }
  }
  if (by_size.empty()) {
    std::string why = name + ": no tiled VOLUME image of a whole slide";
    for (const auto& s : skipped) why += "; " + s;
    throw DicomError(why);
  }
  for (auto& [size, level] : by_size) levels_.push_back(std::move(level));
  for (const auto& s : skipped) problems_.push_back(s + " (left out of the pyramid)");
  std::sort(levels_.begin(), levels_.end(),
            [](const SlideLevel& a, const SlideLevel& b) { return a.total_columns > b.total_columns; });
  for (auto& level : levels_) {
    level.downsample = double(levels_.front().total_columns) / double(level.total_columns);
    std::sort(level.tiles.begin(), level.tiles.end(),
              [](const SlideTileRef& a, const SlideTileRef& b) { return a.y != b.y ? a.y < b.y : a.x < b.x; });
  }
}

int SlidePyramid::level_for_resolution(double mm_per_pixel) const {
  int best = 0;
  double best_distance = 1e300;
  for (size_t i = 0; i < levels_.size(); ++i) {
    if (levels_[i].mm_per_pixel_x <= 0) continue;
    // Compare on a log scale: 0.25 and 1.0 um are equally far from 0.5 um.
    const double d = std::fabs(std::log(levels_[i].mm_per_pixel_x / mm_per_pixel));
    if (d < best_distance) best_distance = d, best = int(i);
  }
  return best;
}

SlidePyramid::TileIterator SlidePyramid::tiles(int level) const {
  if (level < 0 || level >= int(levels_.size()))
    throw DicomError("slide level " + std::to_string(level) + " does not exist (" + std::to_string(levels_.size()) +
                     " levels)");
  return TileIterator(*this, level);
}

size_t SlidePyramid::TileIterator::count() const {
  return pyramid_->levels_[size_t(level_)].tiles.size();
}

bool SlidePyramid::TileIterator::next(SlideTile& tile) {
  const SlideLevel& level = pyramid_->levels_[size_t(level_)];
  if (position_ >= level.tiles.size()) return false;
  tile = pyramid_->decode_tile(level_, level.tiles[position_++]);
  return true;
}

SlideTile SlidePyramid::decode_tile(int level_index, const SlideTileRef& ref) const {
  const SlideLevel& level = levels_.at(size_t(level_index));
  const Instance& instance = series_->instances.at(ref.instance_index);
  SlideTile tile;
  tile.level = level_index;
  tile.ref = ref;
  tile.sop_instance_uid = instance.sop_instance_uid();
  tile.valid_columns = std::max(0, std::min(level.tile_columns, level.total_columns - ref.x));
  tile.valid_rows = std::max(0, std::min(level.tile_rows, level.total_rows - ref.y));
  if (is_colour(instance)) {
    tile.image = decode_colour_frame(instance, ref.frame_number);
  } else {
    // Greyscale slides (fluorescence channels): stored values scaled to 8 bits.
    StoredFrame stored = decode_stored_frame(instance, ref.frame_number);
    const int shift = std::max(0, instance.pixels().bits_stored - 8);
    GreyImage grey{stored.columns, stored.rows, std::vector<uint8_t>(stored.values.size())};
    for (size_t i = 0; i < stored.values.size(); ++i)
      grey.grey[i] = uint8_t(std::clamp(stored.values[i] >> shift, 0, 255));
    tile.image = grey_to_rgb(grey);
  }
  return tile;
}

RgbImage SlidePyramid::read_region(int level_index, int x, int y, int width, int height,
                                   std::vector<SlideTileRef>* frames) const {
  if (level_index < 0 || level_index >= int(levels_.size()))
    throw DicomError("slide level " + std::to_string(level_index) + " does not exist");
  const SlideLevel& level = levels_[size_t(level_index)];
  const int x0 = std::clamp(x, 0, level.total_columns), y0 = std::clamp(y, 0, level.total_rows);
  const int x1 = std::clamp(x + width, 0, level.total_columns), y1 = std::clamp(y + height, 0, level.total_rows);
  RgbImage region{x1 - x0, y1 - y0, {}};
  region.rgb.assign(size_t(region.width) * size_t(region.height) * 3, 255);
  if (region.width <= 0 || region.height <= 0) return region;
  for (const SlideTileRef& ref : level.tiles) {
    if (ref.x >= x1 || ref.y >= y1 || ref.x + level.tile_columns <= x0 || ref.y + level.tile_rows <= y0) continue;
    SlideTile tile = decode_tile(level_index, ref);
    if (frames) frames->push_back(ref);
    const int cx0 = std::max(x0, ref.x), cx1 = std::min({x1, ref.x + tile.valid_columns});
    const int cy0 = std::max(y0, ref.y), cy1 = std::min({y1, ref.y + tile.valid_rows});
    for (int yy = cy0; yy < cy1; ++yy) {
      const uint8_t* src =
          tile.image.rgb.data() + (size_t(yy - ref.y) * size_t(tile.image.width) + size_t(cx0 - ref.x)) * 3;
      uint8_t* dst = region.rgb.data() + (size_t(yy - y0) * size_t(region.width) + size_t(cx0 - x0)) * 3;
      std::copy(src, src + size_t(cx1 - cx0) * 3, dst);
    }
  }
  return region;
}

}  // namespace unibiomed::dicom
