// Whole-slide images (VL Whole Slide Microscopy, PS3.3 A.32.8): the pyramid levels of a series
// and lazy access to their tiles. TILED_FULL (tile positions implicit in the frame order,
// C.8.12.4.1.3) and TILED_SPARSE (PlanePositionSlideSequence per frame); each level is one
// instance or a concatenation of several. Nothing ever decodes more than the frames a request
// overlaps: a slide of any size is read one tile at a time.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dicom/raster_file.h"
#include "dicom/series.h"

namespace unibiomed::dicom {

struct SlideTileRef {
  size_t instance_index = 0;  // into Series::instances
  int frame_number = 1;
  int x = 0;  // 0-based column of the tile's top-left pixel in the total pixel matrix
  int y = 0;  // 0-based row
};

struct SlideLevel {
  int total_columns = 0;                       // TotalPixelMatrixColumns
  int total_rows = 0;                          // TotalPixelMatrixRows
  int tile_columns = 0;                        // Columns of each frame
  int tile_rows = 0;                           // Rows of each frame
  double mm_per_pixel_x = 0;                   // PixelSpacing[1] (or ImagedVolumeWidth / columns); 0 = unknown
  double mm_per_pixel_y = 0;                   // PixelSpacing[0]
  double downsample = 1;                       // total_columns of the finest level / this level's
  std::string dimension_organization;          // TILED_FULL / TILED_SPARSE
  std::vector<SlideTileRef> tiles;             // first focal plane only
  std::vector<std::string> sop_instance_uids;  // the instance(s) holding this level
};

// One decoded tile (full frame size; `valid_*` is the part inside the total pixel matrix).
struct SlideTile {
  int level = 0;
  SlideTileRef ref;
  int valid_columns = 0;
  int valid_rows = 0;
  std::string sop_instance_uid;
  RgbImage image;
};

class SlidePyramid {
 public:
  // Throws DicomError naming the series when it has no tiled VOLUME level. A VOLUME instance
  // that cannot be placed (no total pixel matrix, tiles without positions, undecodable, tiles of
  // another size than its level's) is left out and listed in problems(). The series must outlive
  // the pyramid.
  explicit SlidePyramid(const Series& series);

  const std::vector<SlideLevel>& levels() const { return levels_; }  // finest first
  const std::vector<std::string>& problems() const { return problems_; }
  // The level whose resolution is closest to `mm_per_pixel` (0.0005 = 0.5 um/pixel, about
  // 20x); the finest when the resolutions are unknown.
  int level_for_resolution(double mm_per_pixel) const;

  // Iterates the tiles of a level in row-major order, decoding one frame per next().
  class TileIterator {
   public:
    bool next(SlideTile& tile);
    size_t count() const;

   private:
    friend class SlidePyramid;
    TileIterator(const SlidePyramid& pyramid, int level) : pyramid_(&pyramid), level_(level) {}
    const SlidePyramid* pyramid_;
    int level_;
    size_t position_ = 0;
  };
  TileIterator tiles(int level) const;

  // The region [x, x+width) x [y, y+height) of a level (clipped to the total pixel matrix),
  // decoding only the tiles it overlaps. Places without a tile (TILED_SPARSE) are white, the
  // colour of empty glass. `frames` (optional) receives the tiles used.
  RgbImage read_region(int level, int x, int y, int width, int height,
                       std::vector<SlideTileRef>* frames = nullptr) const;

  SlideTile decode_tile(int level, const SlideTileRef& ref) const;

 private:
  const Series* series_;
  std::vector<SlideLevel> levels_;
  std::vector<std::string> problems_;
};

}  // namespace unibiomed::dicom
