// Maximum Feret diameter: convex hull (Andrew's monotone chain) of the outline corners, then the
// farthest pair of hull vertices.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/measurements.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace unibiomed::pipeline {

size_t count_pixels(const std::vector<uint8_t>& mask) {
  return static_cast<size_t>(std::count_if(mask.begin(), mask.end(), [](uint8_t v) { return v != 0; }));
}

namespace {

struct Point {
  double x, y;
  bool operator<(const Point& o) const { return x < o.x || (x == o.x && y < o.y); }
  bool operator==(const Point& o) const { return x == o.x && y == o.y; }
};

double cross(const Point& o, const Point& a, const Point& b) {
  return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
}

std::vector<Point> convex_hull(std::vector<Point> points) {
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  if (points.size() < 3) return points;
  std::vector<Point> hull(2 * points.size());
  size_t k = 0;
  for (const auto& p : points) {
    while (k >= 2 && cross(hull[k - 2], hull[k - 1], p) <= 0) --k;
    hull[k++] = p;
  }
  for (size_t i = points.size() - 1, lower = k + 1; i-- > 0;) {
    while (k >= lower && cross(hull[k - 2], hull[k - 1], points[i]) <= 0) --k;
    hull[k++] = points[i];
  }
  hull.resize(k - 1);
  return hull;
}

}  // namespace

Diameter longest_diameter(const std::vector<uint8_t>& mask, int columns, int rows, double column_spacing,
                          double row_spacing) {
  if (columns <= 0 || rows <= 0 || mask.size() != static_cast<size_t>(columns) * static_cast<size_t>(rows))
    throw std::invalid_argument("longest_diameter: mask of " + std::to_string(mask.size()) + " pixels for " +
                                std::to_string(columns) + "x" + std::to_string(rows));
  // Only the leftmost and rightmost pixel of each run of a row can contribute hull corners:
  // inner pixels' corners lie on the segment between them.
  std::vector<Point> corners;
  for (int y = 0; y < rows; ++y) {
    const uint8_t* row = mask.data() + static_cast<size_t>(y) * columns;
    for (int x = 0; x < columns;) {
      if (!row[x]) {
        ++x;
        continue;
      }
      int end = x;
      while (end < columns && row[end]) ++end;
      for (double cy : {double(y), double(y + 1)}) {
        corners.push_back({x * column_spacing, cy * row_spacing});
        corners.push_back({end * column_spacing, cy * row_spacing});
      }
      x = end;
    }
  }
  Diameter best;
  if (corners.empty()) return best;
  const std::vector<Point> hull = convex_hull(std::move(corners));
  double best_sq = -1;
  for (size_t i = 0; i < hull.size(); ++i)
    for (size_t j = i + 1; j < hull.size(); ++j) {
      const double dx = hull[i].x - hull[j].x, dy = hull[i].y - hull[j].y;
      const double d = dx * dx + dy * dy;
      if (d > best_sq) {
        best_sq = d;
        best.from = {hull[i].x / column_spacing, hull[i].y / row_spacing};
        best.to = {hull[j].x / column_spacing, hull[j].y / row_spacing};
      }
    }
  best.length = std::sqrt(std::max(best_sq, 0.0));
  return best;
}

}  // namespace unibiomed::pipeline
