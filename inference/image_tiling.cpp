// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/image_tiling.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "inference/image_resize.h"
#include "inference/model_config.h"

namespace unibiomed::inference {

namespace {

// The reference builds its candidates as a Python set of (i, j) tuples and sorts them by area
// with a stable sort, so grids of equal area keep the set's iteration order, which is the order
// of slots in CPython's hash table. That order is reproduced here from CPython 3.11's tuple hash
// (Objects/tupleobject.c, an xxHash-style mix of the items' hashes; hash(int) is the int) and
// its set table (Objects/setobject.c: 8 slots to start, linear probing of 9 slots then
// perturbed probing, growth to 4 x used when 60% full, reinsertion in slot order).
uint64_t python_tuple_hash(int64_t a, int64_t b) {
  constexpr uint64_t kPrime1 = 11400714785074694791ULL;
  constexpr uint64_t kPrime2 = 14029467366897019727ULL;
  constexpr uint64_t kPrime5 = 2870177450012600261ULL;
  uint64_t acc = kPrime5;
  for (int64_t item : {a, b}) {
    acc += static_cast<uint64_t>(item) * kPrime2;
    acc = (acc << 31) | (acc >> 33);
    acc *= kPrime1;
  }
  acc += 2u ^ (kPrime5 ^ 3527539ULL);
  if (acc == static_cast<uint64_t>(-1)) return 1546275796;
  return acc;
}

class PythonSetOrder {
 public:
  void add(TileGrid key) {
    const uint64_t hash = python_tuple_hash(key.cols, key.rows);
    const size_t slot = probe(table_, hash, &key);
    if (table_[slot].used) return;  // already present
    table_[slot] = Slot{true, hash, key};
    ++used_;
    if (used_ * 5 >= (table_.size() - 1) * 3) resize(used_ > 50000 ? used_ * 2 : used_ * 4);
  }
  std::vector<TileGrid> in_iteration_order() const {
    std::vector<TileGrid> out;
    for (const Slot& s : table_)
      if (s.used) out.push_back(s.key);
    return out;
  }

 private:
  struct Slot {
    bool used = false;
    uint64_t hash = 0;
    TileGrid key;
  };
  static constexpr size_t kLinearProbes = 9;
  static constexpr int kPerturbShift = 5;

  // The slot holding `key` (when given and present) or the first free slot on its probe path.
  static size_t probe(const std::vector<Slot>& table, uint64_t hash, const TileGrid* key) {
    const size_t mask = table.size() - 1;
    size_t i = hash & mask;
    uint64_t perturb = hash;
    while (true) {
      const size_t probes = i + kLinearProbes <= mask ? kLinearProbes : 0;
      for (size_t p = 0; p <= probes; ++p) {
        const Slot& s = table[i + p];
        if (!s.used) return i + p;
        if (key && s.hash == hash && s.key == *key) return i + p;
      }
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & mask;
    }
  }
  void resize(size_t min_used) {
    size_t size = 8;
    while (size <= min_used) size <<= 1;
    std::vector<Slot> fresh(size);
    for (const Slot& s : table_)
      if (s.used) fresh[probe(fresh, s.hash, nullptr)] = s;
    table_ = std::move(fresh);
  }

  std::vector<Slot> table_ = std::vector<Slot>(8);
  size_t used_ = 0;
};

}  // namespace

TilingOptions TilingOptions::from_config(const ModelConfig& config) {
  TilingOptions o;
  o.tile_size = config.tile_size;
  o.min_tiles = config.min_tiles;
  o.max_tiles = config.max_tiles;
  o.use_thumbnail = config.use_thumbnail;
  return o;
}

std::vector<TileGrid> candidate_grids(int min_tiles, int max_tiles) {
  if (min_tiles < 1 || max_tiles < min_tiles)
    throw InferenceError("tiling: min_tiles " + std::to_string(min_tiles) + " and max_tiles " +
                         std::to_string(max_tiles) + " must satisfy 1 <= min_tiles <= max_tiles");
  // set((i, j) for n in range(min, max + 1) for i in range(1, n + 1) for j in range(1, n + 1)
  //     if min <= i * j <= max), in that generation order.
  PythonSetOrder set;
  for (int n = min_tiles; n <= max_tiles; ++n)
    for (int i = 1; i <= n; ++i)
      for (int j = 1; j <= n; ++j)
        if (i * j >= min_tiles && i * j <= max_tiles) set.add(TileGrid{i, j});
  std::vector<TileGrid> grids = set.in_iteration_order();
  std::stable_sort(grids.begin(), grids.end(), [](const TileGrid& a, const TileGrid& b) { return a.tiles() < b.tiles(); });
  return grids;
}

TileGrid choose_grid(int width, int height, const TilingOptions& options) {
  if (width <= 0 || height <= 0)
    throw InferenceError("tiling: image size " + std::to_string(width) + "x" + std::to_string(height) +
                         " has no pixels");
  const double aspect_ratio = static_cast<double>(width) / height;
  const double area = static_cast<double>(width) * height;
  const double tile_area = static_cast<double>(options.tile_size) * options.tile_size;
  double best_diff = INFINITY;
  TileGrid best{1, 1};
  for (const TileGrid& g : candidate_grids(options.min_tiles, options.max_tiles)) {
    const double diff = std::abs(aspect_ratio - static_cast<double>(g.cols) / g.rows);
    if (diff < best_diff) {
      best_diff = diff;
      best = g;
    } else if (diff == best_diff && area > 0.5 * tile_area * g.cols * g.rows) {
      best = g;
    }
  }
  return best;
}

void check_image_within_limit(const RgbImage& image, int64_t max_pixels, const std::string& what) {
  check_image(image, what);
  if (max_pixels > 0 && image.pixel_count() > max_pixels)
    throw InferenceError(what + ": " + std::to_string(image.width) + "x" + std::to_string(image.height) + " = " +
                         std::to_string(image.pixel_count()) + " pixels exceeds the limit of " +
                         std::to_string(max_pixels) + " pixels (max_pixels)");
}

TiledImage tile_image(const RgbImage& image, const TilingOptions& options, const std::string& what) {
  check_image_within_limit(image, options.max_pixels, what);
  if (options.tile_size <= 0)
    throw InferenceError("tiling: tile size " + std::to_string(options.tile_size) + " must be positive");
  TiledImage out;
  out.tile_size = options.tile_size;
  out.grid = choose_grid(image.width, image.height, options);
  out.resized = resize_bicubic(image, out.grid.cols * options.tile_size, out.grid.rows * options.tile_size);
  if (options.use_thumbnail && out.grid.tiles() != 1)
    out.thumbnail = resize_bicubic(image, options.tile_size, options.tile_size);
  return out;
}

const uint8_t* TiledImage::tile_pixel(int index, int x, int y) const {
  if (index == grid.tiles() && thumbnail) return thumbnail->row(y) + static_cast<size_t>(x) * 3;
  const int col = index % grid.cols;
  const int row = index / grid.cols;
  return resized.row(row * tile_size + y) + (static_cast<size_t>(col) * tile_size + x) * 3;
}

RgbImage TiledImage::tile(int index) const {
  if (index < 0 || index >= tile_count())
    throw InferenceError("tile " + std::to_string(index) + " does not exist (the image has " +
                         std::to_string(tile_count()) + " tiles)");
  if (index == grid.tiles()) return *thumbnail;
  return crop(resized, (index % grid.cols) * tile_size, (index / grid.cols) * tile_size, tile_size, tile_size);
}

}  // namespace unibiomed::inference
