// SPDX-License-Identifier: GPL-3.0-or-later
#include "sr-writer/finding_geometry.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <queue>

namespace unibiomed::sr {
namespace {

// One frame's mask as 0/1 bytes, whichever way it was given.
std::vector<std::uint8_t> binary_of(const seg::FrameMask& mask, float threshold) {
  if (!mask.binary.empty()) {
    std::vector<std::uint8_t> out(mask.binary.size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = mask.binary[i] ? 1 : 0;
    return out;
  }
  std::vector<std::uint8_t> out(mask.probability.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = mask.probability[i] >= threshold ? 1 : 0;
  return out;
}

size_t count_inside(const std::vector<std::uint8_t>& mask) {
  return static_cast<size_t>(std::count_if(mask.begin(), mask.end(), [](std::uint8_t v) { return v != 0; }));
}

// Pixels inside a frame's mask, without making a copy of it.
size_t count_inside(const seg::FrameMask& mask, float threshold) {
  if (!mask.binary.empty()) return count_inside(mask.binary);
  return static_cast<size_t>(
      std::count_if(mask.probability.begin(), mask.probability.end(), [&](float p) { return p >= threshold; }));
}

// The area a closed outline encloses (shoelace formula; the outline need not repeat its first
// point): for an outline along pixel edges, the pixel count of its region, holes included.
double enclosed_area(const std::vector<std::array<float, 2>>& points) {
  double twice = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    const auto& a = points[i];
    const auto& b = points[(i + 1) % points.size()];
    twice += static_cast<double>(a[0]) * b[1] - static_cast<double>(b[0]) * a[1];
  }
  return std::abs(twice) / 2;
}

// Labels the 4-connected regions; returns the labels and the label of the largest region.
std::vector<int> label_regions(const std::vector<std::uint8_t>& mask, unsigned rows, unsigned columns, int& largest) {
  std::vector<int> labels(mask.size(), 0);
  int next = 0;
  size_t best_size = 0;
  largest = 0;
  std::queue<size_t> pending;
  for (size_t start = 0; start < mask.size(); ++start) {
    if (!mask[start] || labels[start]) continue;
    const int label = ++next;
    size_t size = 0;
    labels[start] = label;
    pending.push(start);
    while (!pending.empty()) {
      const size_t i = pending.front();
      pending.pop();
      ++size;
      const size_t r = i / columns, c = i % columns;
      const size_t neighbours[4] = {c > 0 ? i - 1 : i, c + 1 < columns ? i + 1 : i, r > 0 ? i - columns : i,
                                    r + 1 < rows ? i + columns : i};
      for (size_t n : neighbours)
        if (n != i && mask[n] && !labels[n]) {
          labels[n] = label;
          pending.push(n);
        }
    }
    if (size > best_size) {
      best_size = size;
      largest = label;
    }
  }
  return labels;
}

// Index of the first non-zero byte, or -1; eight bytes at a time (masks are mostly empty rows).
int first_nonzero(const std::uint8_t* bytes, unsigned count) {
  unsigned i = 0;
  for (; i + 8 <= count; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    if (word) break;
  }
  for (; i < count; ++i)
    if (bytes[i]) return static_cast<int>(i);
  return -1;
}

struct Point {
  double x, y;
};

double cross(const Point& o, const Point& a, const Point& b) {
  return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
}

// Longest distance between two points of a set (via its convex hull, monotone chain).
double diameter(std::vector<Point> points) {
  if (points.size() < 2) return 0;
  std::sort(points.begin(), points.end(),
            [](const Point& a, const Point& b) { return a.x < b.x || (a.x == b.x && a.y < b.y); });
  std::vector<Point> hull(2 * points.size());
  size_t k = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    while (k >= 2 && cross(hull[k - 2], hull[k - 1], points[i]) <= 0) --k;
    hull[k++] = points[i];
  }
  for (size_t i = points.size() - 1, t = k + 1; i > 0; --i) {
    while (k >= t && cross(hull[k - 2], hull[k - 1], points[i - 1]) <= 0) --k;
    hull[k++] = points[i - 1];
  }
  hull.resize(k > 1 ? k - 1 : k);
  const size_t h = hull.size();
  if (h < 3) return h == 2 ? std::hypot(hull[0].x - hull[1].x, hull[0].y - hull[1].y) : 0;
  // Rotating calipers: for each hull edge, the farthest vertex advances monotonically, and the
  // diameter is attained between an edge's end points and its farthest vertex.
  double best = 0;
  size_t far = 1;
  for (size_t i = 0; i < h; ++i) {
    const Point& a = hull[i];
    const Point& b = hull[(i + 1) % h];
    while (std::fabs(cross(a, b, hull[(far + 1) % h])) > std::fabs(cross(a, b, hull[far]))) far = (far + 1) % h;
    best = std::max(
        {best, std::hypot(a.x - hull[far].x, a.y - hull[far].y), std::hypot(b.x - hull[far].x, b.y - hull[far].y)});
  }
  return best;
}

// Longest in-plane diameter of a frame's mask in mm, between outer pixel edges: the extreme
// pixels of each row span the region's convex hull.
double longest_diameter_mm(const std::vector<std::uint8_t>& mask, unsigned rows, unsigned columns, double row_spacing,
                           double column_spacing) {
  std::vector<Point> corners;
  for (unsigned r = 0; r < rows; ++r) {
    const std::uint8_t* row = mask.data() + static_cast<size_t>(r) * columns;
    const int first = first_nonzero(row, columns);
    if (first < 0) continue;
    int last = static_cast<int>(columns) - 1;
    while (!row[last]) --last;
    for (double y : {static_cast<double>(r), r + 1.0})
      for (double x : {static_cast<double>(first), last + 1.0})
        corners.push_back({x * column_spacing, y * row_spacing});
  }
  return diameter(std::move(corners));
}

}  // namespace

std::vector<std::array<float, 2>> outline_of_largest_region(const std::vector<std::uint8_t>& mask, unsigned rows,
                                                            unsigned columns) {
  std::vector<std::array<float, 2>> outline;
  if (mask.size() != static_cast<size_t>(rows) * columns || rows == 0 || columns == 0) return outline;
  int largest = 0;
  const std::vector<int> labels = label_regions(mask, rows, columns, largest);
  if (!largest) return outline;
  auto inside = [&](long c, long r) {
    return c >= 0 && r >= 0 && c < static_cast<long>(columns) && r < static_cast<long>(rows) &&
           labels[static_cast<size_t>(r) * columns + static_cast<size_t>(c)] == largest;
  };
  // Start at the top left corner of the region's first pixel in raster order, heading right
  // along its top edge, with the region on the right-hand side (image y points down).
  const size_t first = static_cast<size_t>(std::find(labels.begin(), labels.end(), largest) - labels.begin());
  const long start_x = static_cast<long>(first % columns), start_y = static_cast<long>(first / columns);
  static const int dx[4] = {1, 0, -1, 0}, dy[4] = {0, 1, 0, -1};
  long x = start_x, y = start_y;
  int d = 0, last_move = -1;
  bool moved = false;
  // Each corner is left at most twice, each time after at most 3 turns: a safe bound.
  const size_t limit = 16 * (static_cast<size_t>(rows) + 1) * (static_cast<size_t>(columns) + 1);
  for (size_t step = 0; step < limit; ++step) {
    if (moved && x == start_x && y == start_y && d == 0) break;
    // The cells right and left of the edge from (x, y) in direction d: centre of the edge plus
    // or minus half the right-hand normal (-dy, dx).
    const double mx = x + dx[d] / 2.0, my = y + dy[d] / 2.0;
    const bool right =
        inside(static_cast<long>(std::floor(mx - dy[d] / 2.0)), static_cast<long>(std::floor(my + dx[d] / 2.0)));
    const bool left =
        inside(static_cast<long>(std::floor(mx + dy[d] / 2.0)), static_cast<long>(std::floor(my - dx[d] / 2.0)));
    if (!right) {
      d = (d + 1) % 4;  // the region ends: turn right (also at a diagonal touch, for 4-connectivity)
    } else if (left) {
      d = (d + 3) % 4;  // a wall of region ahead: turn left
    } else {
      if (d != last_move) outline.push_back({static_cast<float>(x), static_cast<float>(y)});
      last_move = d;
      x += dx[d];
      y += dy[d];
      moved = true;
    }
  }
  return outline;
}

namespace {

// The pixel size that measures `binary` on source frame `frame`.
std::optional<std::array<double, 2>> frame_spacing(const seg::SourceImages& sources, size_t frame,
                                                   const std::vector<std::uint8_t>& binary) {
  const seg::SourceFrame& source = sources.frame(frame);
  if (!source.calibration_regions.empty())
    return dicom::mask_spacing(source.calibration_regions, binary.data(), sources.rows(), sources.columns()).spacing;
  return source.pixel_spacing ? source.pixel_spacing : sources.pixel_spacing();
}

}  // namespace

ImageRegion key_region(const seg::Segment& segment, const seg::SourceImages& sources, float threshold) {
  const seg::FrameMask* best = nullptr;
  size_t best_count = 0, best_rank = 0;
  const auto order = sources.frames_in_slice_order();
  std::vector<size_t> rank(sources.frame_count());
  for (size_t k = 0; k < order.size(); ++k) rank[order[k]] = k;
  for (const auto& mask : segment.masks) {
    if (mask.frame >= sources.frame_count()) continue;
    const size_t count = count_inside(mask, threshold);
    if (count > best_count || (count == best_count && count > 0 && rank[mask.frame] < best_rank)) {
      best = &mask;
      best_count = count;
      best_rank = rank[mask.frame];
    }
  }
  if (!best)
    throw ReportError("segment '" + segment.description.label + "' has no pixel inside its masks: no region to draw");
  const std::vector<std::uint8_t> best_mask = binary_of(*best, threshold);
  if (best_mask.size() != static_cast<size_t>(sources.rows()) * sources.columns())
    throw ReportError("segment '" + segment.description.label + "': its mask on frame " + std::to_string(best->frame) +
                      " does not have Rows x Columns values");
  ImageRegion region;
  region.frame = best->frame;
  region.shape = ImageRegion::Shape::Outline;
  region.points = outline_of_largest_region(best_mask, sources.rows(), sources.columns());
  // The area the outline encloses (its largest region; other pieces on the frame are not drawn),
  // so that the measurement agrees with its image region and with what a viewer computes from it.
  region.area_pixels = enclosed_area(region.points);
  // The key frame's own pixel size: images without plane geometry may each have their own, and
  // an ultrasound image has the scale of the calibrated regions the mask lies in (none when it
  // lies outside them).
  if (const auto spacing = frame_spacing(sources, best->frame, best_mask))
    region.area_mm2 = *region.area_pixels * (*spacing)[0] * (*spacing)[1];
  return region;
}

std::vector<Measurement> segment_measurements(const seg::Segment& segment, const seg::SourceImages& sources,
                                              float threshold) {
  // A volume is measured with the series' one spacing; single images each with their own (an
  // ultrasound image's: the scale of the calibrated regions its mask lies in). A mask without a
  // scale leaves the segment without measurements, never with a mix of mm2 and pixels.
  const bool volume = sources.has_geometry() && sources.frame_count() > 1;
  if (volume && !sources.pixel_spacing()) return {};
  double area = 0, long_axis = 0;
  for (const auto& mask : segment.masks) {
    const size_t count = count_inside(mask, threshold);
    if (!count) continue;
    const std::vector<std::uint8_t> converted =
        mask.binary.empty() ? binary_of(mask, threshold) : std::vector<std::uint8_t>();
    const auto& binary = mask.binary.empty() ? converted : mask.binary;
    if (binary.size() != static_cast<size_t>(sources.rows()) * sources.columns())
      throw ReportError("segment '" + segment.description.label + "': its mask on frame " + std::to_string(mask.frame) +
                        " does not have Rows x Columns values");
    const auto spacing = volume ? sources.pixel_spacing() : frame_spacing(sources, mask.frame, binary);
    if (!spacing) return {};
    area += double(count) * (*spacing)[0] * (*spacing)[1];
    long_axis = std::max(long_axis,
                         longest_diameter_mm(binary, sources.rows(), sources.columns(), (*spacing)[0], (*spacing)[1]));
  }
  std::vector<Measurement> out;
  if (!volume) {
    out.push_back(area_mm2(area));
    return out;
  }
  const auto slice = sources.slice_spacing() ? sources.slice_spacing() : sources.slice_thickness();
  if (slice) out.push_back(volume_mm3(area * *slice));
  out.push_back(long_axis_mm(long_axis));
  return out;
}

}  // namespace unibiomed::sr
