// Stitching the masks of a slide's regions tile by tile; connected pieces across tiles.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/slide_stitch.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace unibiomed::pipeline {
namespace {

int grid_count(int total, int size, int step) {
  int n = 0;
  for (int p = 0;; p += step) {
    ++n;
    if (p + size >= total) break;
  }
  return n;
}

struct UnionFind {
  std::vector<int32_t> parent;
  int32_t add() {
    parent.push_back(int32_t(parent.size()));
    return parent.back();
  }
  int32_t find(int32_t a) {
    while (parent[size_t(a)] != a) a = parent[size_t(a)] = parent[size_t(parent[size_t(a)])];
    return a;
  }
  void join(int32_t a, int32_t b) {
    a = find(a), b = find(b);
    if (a != b) parent[size_t(std::max(a, b))] = std::min(a, b);
  }
};

using Point = std::array<double, 2>;

double cross(const Point& o, const Point& a, const Point& b) {
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

// Andrew's monotone chain.
std::vector<Point> convex_hull(std::vector<Point> p) {
  std::sort(p.begin(), p.end());
  p.erase(std::unique(p.begin(), p.end()), p.end());
  if (p.size() < 3) return p;
  std::vector<Point> h(2 * p.size());
  size_t k = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    while (k >= 2 && cross(h[k - 2], h[k - 1], p[i]) <= 0) --k;
    h[k++] = p[i];
  }
  for (size_t i = p.size() - 1, t = k + 1; i > 0; --i) {
    while (k >= t && cross(h[k - 2], h[k - 1], p[i - 1]) <= 0) --k;
    h[k++] = p[i - 1];
  }
  h.resize(k - 1);
  return h;
}

// What components() gathers about one provisional piece.
struct Piece {
  size_t pixels = 0;
  std::array<int, 4> box{INT32_MAX, INT32_MAX, INT32_MIN, INT32_MIN};
  double probability = 0;
  std::map<std::pair<int, int>, size_t> per_region;  // (y, x) of the region -> pixels
  std::map<int, std::pair<int, int>> rows;           // row -> (first, last) column
  std::vector<std::pair<int, int>> tiles;            // (row, column)
};

}  // namespace

SlideStitcher::SlideStitcher(const SlideGrid& grid) : grid_(grid) {
  if (grid.total_columns < 1 || grid.total_rows < 1)
    throw std::invalid_argument("slide stitching: a level of " + std::to_string(grid.total_columns) + "x" +
                                std::to_string(grid.total_rows) + " pixels");
  if (grid.size < 16) throw std::invalid_argument("slide stitching: region size " + std::to_string(grid.size));
  if (grid.overlap < 0 || grid.overlap > grid.size / 2)
    throw std::invalid_argument("slide stitching: overlap " + std::to_string(grid.overlap) + " for regions of " +
                                std::to_string(grid.size));
  if (grid.tile_size < 8 || grid.tile_size % 8)
    throw std::invalid_argument("slide stitching: tile size " + std::to_string(grid.tile_size) +
                                " (a multiple of 8 from 8 up)");
  step_ = grid.size - grid.overlap;
}

std::pair<int, int> SlideStitcher::region_of(int x, int y) const {
  const int half = grid_.overlap / 2;
  auto index = [&](int p, int total) {
    const int n = grid_count(total, grid_.size, step_);
    const int i = p < half ? 0 : (p - half) / step_;
    return std::min(i, n - 1) * step_;
  };
  return {index(y, grid_.total_rows), index(x, grid_.total_columns)};
}

std::array<int, 4> SlideStitcher::core(int x, int y, int width, int height) const {
  const int half = grid_.overlap / 2;
  const int x0 = x == 0 ? 0 : x + half, y0 = y == 0 ? 0 : y + half;
  const int x1 = x + width >= grid_.total_columns ? grid_.total_columns : x + step_ + half;
  const int y1 = y + height >= grid_.total_rows ? grid_.total_rows : y + step_ + half;
  return {x0, y0, std::min(x1, x + width), std::min(y1, y + height)};
}

void SlideStitcher::add(int x, int y, int width, int height, const std::vector<uint8_t>& mask,
                        const std::vector<uint8_t>& probability, double iou, const std::string& phrase,
                        const std::string& text, const std::string& answer) {
  if (labelled_) throw std::logic_error("slide stitching: a region added after components()");
  const std::string where = "slide region at (" + std::to_string(x) + ", " + std::to_string(y) + ")";
  if (x < 0 || y < 0 || x % step_ || y % step_ || x >= grid_.total_columns || y >= grid_.total_rows)
    throw std::invalid_argument(where + " is not on the grid of " + std::to_string(grid_.size) + " px regions every " +
                                std::to_string(step_) + " px");
  if (width != std::min(grid_.size, grid_.total_columns - x) || height != std::min(grid_.size, grid_.total_rows - y))
    throw std::invalid_argument(where + ": " + std::to_string(width) + "x" + std::to_string(height) +
                                " is not the grid's region size there");
  if (mask.size() != size_t(width) * size_t(height) || (!probability.empty() && probability.size() != mask.size()))
    throw std::invalid_argument(where + ": mask of " + std::to_string(mask.size()) + " values for " +
                                std::to_string(width) + "x" + std::to_string(height));
  const size_t pixels = size_t(std::count_if(mask.begin(), mask.end(), [](uint8_t v) { return v != 0; }));
  RegionInfo& info = regions_[{y, x}];
  if (pixels > info.largest || (info.largest == 0 && info.phrase.empty() && info.text.empty())) {
    info.largest = pixels;
    info.iou = iou;
    info.phrase = phrase;
    info.text = text;
    info.answer = answer;
  }
  if (pixels == 0) return;
  const int t = grid_.tile_size;
  const auto [cx0, cy0, cx1, cy1] = core(x, y, width, height);
  for (int gy = cy0; gy < cy1; ++gy) {
    const uint8_t* row = mask.data() + size_t(gy - y) * size_t(width);
    for (int gx = cx0; gx < cx1; ++gx) {
      if (!row[gx - x]) continue;
      Tile& tile = tiles_[{gy / t, gx / t}];
      if (tile.mask.empty()) tile.mask.assign(size_t(t) * size_t(t), 0);
      const size_t o = size_t(gy % t) * size_t(t) + size_t(gx % t);
      tile.mask[o] = 1;
      if (!probability.empty()) {
        if (tile.probability.empty()) tile.probability.assign(size_t(t) * size_t(t), 0);
        tile.probability[o] =
            std::max(tile.probability[o], probability[size_t(gy - y) * size_t(width) + size_t(gx - x)]);
      }
    }
  }
}

size_t SlideStitcher::bytes_held() const {
  size_t bytes = 0;
  for (const auto& [key, tile] : tiles_)
    bytes += tile.mask.size() + tile.probability.size() + tile.labels.size() * sizeof(int32_t);
  return bytes;
}

const std::vector<int32_t>& SlideStitcher::tile_labels(int tile_column, int tile_row) const {
  auto it = tiles_.find({tile_row, tile_column});
  return it == tiles_.end() ? empty_ : it->second.labels;
}

std::vector<uint8_t> SlideStitcher::component_mask(int label, int x, int y, int width, int height) const {
  return components_mask({label}, x, y, width, height);
}

std::vector<uint8_t> SlideStitcher::components_mask(const std::vector<int>& labels, int x, int y, int width,
                                                    int height) const {
  std::vector<uint8_t> out(size_t(std::max(0, width)) * size_t(std::max(0, height)), 0);
  const int t = grid_.tile_size;
  for (int gy = y; gy < y + height; ++gy)
    for (int gx = x; gx < x + width; ++gx) {
      if (gx < 0 || gy < 0) continue;
      auto it = tiles_.find({gy / t, gx / t});
      if (it == tiles_.end() || it->second.labels.empty()) continue;
      const int32_t label = it->second.labels[size_t(gy % t) * size_t(t) + size_t(gx % t)];
      if (std::find(labels.begin(), labels.end(), label) != labels.end())
        out[size_t(gy - y) * size_t(width) + size_t(gx - x)] = 1;
    }
  return out;
}

std::vector<SlideComponent> SlideStitcher::components(double mm_per_pixel_x, double mm_per_pixel_y) {
  if (labelled_) throw std::logic_error("slide stitching: components() called twice");
  labelled_ = true;
  const int t = grid_.tile_size;
  UnionFind sets;
  // 1. Pieces within each tile (8-connected), provisional ids across the slide.
  for (auto& [key, tile] : tiles_) {
    tile.labels.assign(size_t(t) * size_t(t), -1);
    std::vector<int> stack;
    for (int start = 0; start < t * t; ++start) {
      if (!tile.mask[size_t(start)] || tile.labels[size_t(start)] >= 0) continue;
      const int32_t id = sets.add();
      tile.labels[size_t(start)] = id;
      stack.push_back(start);
      while (!stack.empty()) {
        const int p = stack.back();
        stack.pop_back();
        const int px = p % t, py = p / t;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const int nx = px + dx, ny = py + dy;
            if (nx < 0 || ny < 0 || nx >= t || ny >= t) continue;
            const size_t n = size_t(ny) * size_t(t) + size_t(nx);
            if (tile.mask[n] && tile.labels[n] < 0) {
              tile.labels[n] = id;
              stack.push_back(int(n));
            }
          }
      }
    }
  }
  // 2. Join pieces that touch across tile edges and corners.
  auto label_at = [&](int tile_row, int tile_column, int px, int py) -> int32_t {
    auto it = tiles_.find({tile_row, tile_column});
    if (it == tiles_.end()) return -1;
    return it->second.labels[size_t(py) * size_t(t) + size_t(px)];
  };
  for (const auto& [key, tile] : tiles_) {
    const auto [row, column] = key;
    for (int i = 0; i < t; ++i) {
      const int32_t right_edge = tile.labels[size_t(i) * size_t(t) + size_t(t - 1)];
      if (right_edge >= 0)
        for (int d = -1; d <= 1; ++d)
          if (i + d >= 0 && i + d < t)
            if (int32_t other = label_at(row, column + 1, 0, i + d); other >= 0) sets.join(right_edge, other);
      const int32_t bottom_edge = tile.labels[size_t(t - 1) * size_t(t) + size_t(i)];
      if (bottom_edge >= 0)
        for (int d = -1; d <= 1; ++d)
          if (i + d >= 0 && i + d < t)
            if (int32_t other = label_at(row + 1, column, i + d, 0); other >= 0) sets.join(bottom_edge, other);
    }
    if (int32_t corner = tile.labels[size_t(t) * size_t(t) - 1]; corner >= 0)
      if (int32_t other = label_at(row + 1, column + 1, 0, 0); other >= 0) sets.join(corner, other);
    if (int32_t corner = tile.labels[size_t(t - 1) * size_t(t)]; corner >= 0)
      if (int32_t other = label_at(row + 1, column - 1, t - 1, 0); other >= 0) sets.join(corner, other);
  }
  // 3. What each piece holds.
  std::map<int32_t, Piece> pieces;
  for (auto& [key, tile] : tiles_) {
    const auto [row, column] = key;
    for (int py = 0; py < t; ++py)
      for (int px = 0; px < t; ++px) {
        int32_t& l = tile.labels[size_t(py) * size_t(t) + size_t(px)];
        if (l < 0) continue;
        l = sets.find(l);
        Piece& piece = pieces[l];
        const int gx = column * t + px, gy = row * t + py;
        ++piece.pixels;
        piece.box = {std::min(piece.box[0], gx), std::min(piece.box[1], gy), std::max(piece.box[2], gx + 1),
                     std::max(piece.box[3], gy + 1)};
        if (!tile.probability.empty()) piece.probability += tile.probability[size_t(py) * size_t(t) + size_t(px)];
        ++piece.per_region[region_of(gx, gy)];
        auto [it, added] = piece.rows.emplace(gy, std::make_pair(gx, gx));
        if (!added) it->second = {std::min(it->second.first, gx), std::max(it->second.second, gx)};
        if (piece.tiles.empty() || piece.tiles.back() != key) piece.tiles.push_back(key);
      }
  }
  // 4. Measured and ordered: largest first, then top-left first.
  const bool mm = mm_per_pixel_x > 0 && mm_per_pixel_y > 0;
  const double sx = mm ? mm_per_pixel_x : 1, sy = mm ? mm_per_pixel_y : 1;
  std::vector<std::pair<int32_t, SlideComponent>> found;
  for (auto& [id, piece] : pieces) {
    SlideComponent c;
    c.pixels = piece.pixels;
    c.box = piece.box;
    c.area = double(piece.pixels) * sx * sy;
    std::vector<Point> corners;
    for (const auto& [gy, span] : piece.rows)
      for (int dy = 0; dy <= 1; ++dy) {
        corners.push_back({span.first * sx, (gy + dy) * sy});
        corners.push_back({(span.second + 1) * sx, (gy + dy) * sy});
      }
    const std::vector<Point> hull = convex_hull(corners);
    for (size_t i = 0; i < hull.size(); ++i)
      for (size_t j = i + 1; j < hull.size(); ++j) {
        const double d = std::hypot(hull[i][0] - hull[j][0], hull[i][1] - hull[j][1]);
        if (d > c.long_axis) {
          c.long_axis = d;
          c.axis_from = {hull[i][0] / sx, hull[i][1] / sy};
          c.axis_to = {hull[j][0] / sx, hull[j][1] / sy};
        }
      }
    // The region with most of its pixels speaks for it; the phrase is the one most of its
    // pixels were given.
    std::map<std::string, size_t> by_phrase;
    size_t most = 0;
    double iou = 0;
    for (const auto& [region, count] : piece.per_region) {
      const RegionInfo& info = regions_.at(region);
      by_phrase[info.phrase] += count;
      iou += info.iou * double(count);
      if (count > most) {
        most = count;
        c.key_region = {region.second, region.first};
        c.text = info.text;
        c.answer = info.answer;
      }
    }
    size_t agreeing = 0;
    for (const auto& [phrase, count] : by_phrase)
      if (count > agreeing) agreeing = count, c.phrase = phrase;
    c.label_agreement = double(agreeing) / double(piece.pixels);
    c.mean_iou = iou / double(piece.pixels);
    c.mean_probability = piece.probability / 255.0 / double(piece.pixels);
    std::sort(piece.tiles.begin(), piece.tiles.end());
    for (const auto& [row, column] : piece.tiles) c.tiles.emplace_back(column, row);
    found.emplace_back(id, std::move(c));
  }
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    if (a.second.pixels != b.second.pixels) return a.second.pixels > b.second.pixels;
    if (a.second.box[1] != b.second.box[1]) return a.second.box[1] < b.second.box[1];
    return a.second.box[0] < b.second.box[0];
  });
  std::map<int32_t, int32_t> final_label;
  std::vector<SlideComponent> out;
  for (auto& [id, c] : found) {
    c.label = int(out.size()) + 1;
    final_label[id] = c.label;
    out.push_back(std::move(c));
  }
  // The labels are all that is read from here on: the masks and probabilities are let go.
  for (auto& [key, tile] : tiles_) {
    for (int32_t& l : tile.labels) l = l < 0 ? 0 : final_label.at(l);
    std::vector<uint8_t>().swap(tile.mask);
    std::vector<uint8_t>().swap(tile.probability);
  }
  return out;
}

}  // namespace unibiomed::pipeline
