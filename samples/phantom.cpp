// Synthetic anatomy. Sizes and intensities are typical textbook values (CT numbers: fat -100,
// water 0, soft tissue 40-60, bone several hundred); shapes are placed in patient coordinates
// (DICOM LPS: +x patient left, +y posterior, +z head) so that the CT looks right in a viewer.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "samples/phantom.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace unibiomed::samples {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Box {
  int x0, x1, y0, y1, z0, z1;  // inclusive-exclusive
};

Box bounding_box(const Phantom& p, double cx, double cy, double cz, double rxy, double rz) {
  auto to_index = [](double mm, double spacing, int count) { return mm / spacing + count / 2.0 - 0.5; };
  Box b;
  b.x0 = std::max(0, int(std::floor(to_index(cx - rxy, p.spacing[0], p.columns))));
  b.x1 = std::min(p.columns, int(std::ceil(to_index(cx + rxy, p.spacing[0], p.columns))) + 1);
  b.y0 = std::max(0, int(std::floor(to_index(cy - rxy, p.spacing[1], p.rows))));
  b.y1 = std::min(p.rows, int(std::ceil(to_index(cy + rxy, p.spacing[1], p.rows))) + 1);
  b.z0 = std::max(0, int(std::floor(to_index(cz - rz, p.spacing[2], p.slices))));
  b.z1 = std::min(p.slices, int(std::ceil(to_index(cz + rz, p.spacing[2], p.slices))) + 1);
  return b;
}

template <typename Shape, typename Paint>
void for_each_inside(Phantom& p, const Shape& shape, double cx, double cy, double cz, double rxy, double rz,
                     Paint paint) {
  const Box b = bounding_box(p, cx, cy, cz, rxy, rz);
  for (int z = b.z0; z < b.z1; ++z)
    for (int y = b.y0; y < b.y1; ++y)
      for (int x = b.x0; x < b.x1; ++x) {
        const auto pos = position_mm(p, x, y, z);
        if (shape.contains(pos[0], pos[1], pos[2])) paint(p.index(x, y, z));
      }
}

double reach(const Ellipsoid& e) {
  // A superellipse reaches at most sqrt(2) times its radius along the diagonal.
  return std::max(e.rx, e.ry) * (e.exponent > 2 ? 1.4143 : 1.0);
}

float clampf(double v, double lo, double hi) {
  return float(std::clamp(v, lo, hi));
}

void set_rgb(Phantom& p, size_t i, std::array<float, 3> rgb, float opacity) {
  for (int c = 0; c < 3; ++c) {
    float& v = p.values[i * 3 + size_t(c)];
    v = v * (1 - opacity) + rgb[size_t(c)] * opacity;
  }
}

void multiply_rgb(Phantom& p, size_t i, double factor) {
  for (int c = 0; c < 3; ++c) p.values[i * 3 + size_t(c)] = float(p.values[i * 3 + size_t(c)] * factor);
}

void clamp_values(Phantom& p, double lo, double hi) {
  for (auto& v : p.values) v = clampf(v, lo, hi);
}

// A smooth random path (vessels, hairs): a walk whose heading turns a little each step.
std::vector<std::array<double, 2>> wander(Random& random, double x, double y, double heading, int steps, double step,
                                          double turn) {
  std::vector<std::array<double, 2>> points{{x, y}};
  for (int i = 0; i < steps; ++i) {
    heading += (random.uniform() - 0.5) * turn;
    x += std::cos(heading) * step;
    y += std::sin(heading) * step;
    points.push_back({x, y});
  }
  return points;
}

}  // namespace

// ---- Phantom ------------------------------------------------------------------------------

Phantom::Phantom(int c, int r, int s, int ch, std::array<double, 3> sp)
    : columns(c), rows(r), slices(s), channels(ch), spacing(sp) {
  if (c <= 0 || r <= 0 || s <= 0 || (ch != 1 && ch != 3)) throw std::invalid_argument("invalid phantom size");
  values.assign(size_t(c) * size_t(r) * size_t(s) * size_t(ch), 0.f);
  labels.assign(size_t(c) * size_t(r) * size_t(s), 0);
  label_names = {"background"};
}

std::vector<uint8_t> Phantom::label_mask(int slice, uint8_t label) const {
  std::vector<uint8_t> mask(size_t(columns) * size_t(rows));
  const size_t offset = size_t(slice) * mask.size();
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = labels[offset + i] == label ? 1 : 0;
  return mask;
}

size_t Phantom::label_voxels(uint8_t label) const {
  return size_t(std::count(labels.begin(), labels.end(), label));
}

uint8_t Phantom::label_of(const std::string& name) const {
  for (size_t i = 0; i < label_names.size(); ++i)
    if (label_names[i] == name) return uint8_t(i);
  return 0;
}

std::array<double, 3> position_mm(const Phantom& p, int x, int y, int z) {
  return {(x + 0.5 - p.columns / 2.0) * p.spacing[0], (y + 0.5 - p.rows / 2.0) * p.spacing[1],
          (z + 0.5 - p.slices / 2.0) * p.spacing[2]};
}

// ---- Random -------------------------------------------------------------------------------

Random::Random(uint64_t seed) : state_(0), increment_((seed << 1u) | 1u) {
  next();
  state_ += seed;
  next();
}

uint32_t Random::next() {
  // PCG-XSH-RR 64/32.
  const uint64_t old = state_;
  state_ = old * 6364136223846793005ULL + increment_;
  const uint32_t xorshifted = uint32_t(((old >> 18u) ^ old) >> 27u);
  const uint32_t rot = uint32_t(old >> 59u);
  return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

double Random::uniform() {
  return next() * (1.0 / 4294967296.0);
}

double Random::normal() {
  double sum = 0;
  for (int i = 0; i < 12; ++i) sum += uniform();
  return sum - 6.0;
}

int Random::integer(int lo, int hi) {
  return lo + int(next() % uint32_t(hi - lo + 1));
}

// ---- Shapes -------------------------------------------------------------------------------

bool Ellipsoid::contains(double x, double y, double z) const {
  double dx = x - cx, dy = y - cy;
  const double dz = (z - cz) / rz;
  if (angle_degrees != 0) {
    const double a = angle_degrees * kPi / 180.0, c = std::cos(a), s = std::sin(a);
    const double rx2 = c * dx + s * dy, ry2 = -s * dx + c * dy;
    dx = rx2;
    dy = ry2;
  }
  double in_plane;
  if (exponent == 2) {
    in_plane = (dx / rx) * (dx / rx) + (dy / ry) * (dy / ry);
  } else {
    in_plane =
        std::pow(std::pow(std::fabs(dx / rx), exponent) + std::pow(std::fabs(dy / ry), exponent), 2.0 / exponent);
  }
  return in_plane + dz * dz <= 1.0;
}

bool Blob::contains(double x, double y, double z) const {
  double dx = x - base.cx, dy = y - base.cy;
  const double dz = (z - base.cz) / base.rz;
  if (base.angle_degrees != 0) {
    const double a = base.angle_degrees * kPi / 180.0, c = std::cos(a), s = std::sin(a);
    const double rx2 = c * dx + s * dy, ry2 = -s * dx + c * dy;
    dx = rx2;
    dy = ry2;
  }
  const double theta = std::atan2(dy, dx);
  double factor = 1;
  for (size_t k = 0; k < harmonic_amplitude.size(); ++k)
    factor += harmonic_amplitude[k] * std::sin(double(k + 2) * theta + harmonic_phase[k]);
  const double u = dx / (base.rx * factor), v = dy / (base.ry * factor);
  return u * u + v * v + dz * dz <= 1.0;
}

void fill(Phantom& p, const Ellipsoid& e, float value, uint8_t label) {
  for_each_inside(p, e, e.cx, e.cy, e.cz, reach(e), e.rz, [&](size_t i) {
    for (int c = 0; c < p.channels; ++c) p.values[i * size_t(p.channels) + size_t(c)] = value;
    if (label) p.labels[i] = label;
  });
}

void fill(Phantom& p, const Blob& b, float value, uint8_t label) {
  double total = 1;
  for (double a : b.harmonic_amplitude) total += std::fabs(a);
  for_each_inside(p, b, b.base.cx, b.base.cy, b.base.cz, reach(b.base) * total, b.base.rz, [&](size_t i) {
    for (int c = 0; c < p.channels; ++c) p.values[i * size_t(p.channels) + size_t(c)] = value;
    if (label) p.labels[i] = label;
  });
}

void fill_rgb(Phantom& p, const Ellipsoid& e, std::array<float, 3> rgb, uint8_t label, float opacity) {
  for_each_inside(p, e, e.cx, e.cy, e.cz, reach(e), e.rz, [&](size_t i) {
    set_rgb(p, i, rgb, opacity);
    if (label) p.labels[i] = label;
  });
}

void fill_rgb(Phantom& p, const Blob& b, std::array<float, 3> rgb, uint8_t label, float opacity) {
  double total = 1;
  for (double a : b.harmonic_amplitude) total += std::fabs(a);
  for_each_inside(p, b, b.base.cx, b.base.cy, b.base.cz, reach(b.base) * total, b.base.rz, [&](size_t i) {
    set_rgb(p, i, rgb, opacity);
    if (label) p.labels[i] = label;
  });
}

void draw_polyline(Phantom& p, int slice, const std::vector<std::array<double, 2>>& points, double thickness,
                   std::array<float, 3> rgb, float opacity, uint8_t label) {
  const double half = thickness / 2;
  for (size_t s = 1; s < points.size(); ++s) {
    const auto a = points[s - 1], b = points[s];
    const double zc = (slice + 0.5 - p.slices / 2.0) * p.spacing[2];
    const double cx = (a[0] + b[0]) / 2, cy = (a[1] + b[1]) / 2;
    const double r = std::hypot(b[0] - a[0], b[1] - a[1]) / 2 + half;
    const Box box = bounding_box(p, cx, cy, zc, r, 0);
    const double vx = b[0] - a[0], vy = b[1] - a[1], len2 = vx * vx + vy * vy;
    for (int y = box.y0; y < box.y1; ++y)
      for (int x = box.x0; x < box.x1; ++x) {
        const auto pos = position_mm(p, x, y, slice);
        double t = len2 > 0 ? ((pos[0] - a[0]) * vx + (pos[1] - a[1]) * vy) / len2 : 0;
        t = std::clamp(t, 0.0, 1.0);
        const double d = std::hypot(pos[0] - (a[0] + t * vx), pos[1] - (a[1] + t * vy));
        if (d > half) continue;
        const size_t i = p.index(x, y, slice);
        if (p.channels == 3) {
          set_rgb(p, i, rgb, opacity);
        } else {
          p.values[i] = p.values[i] * (1 - opacity) + rgb[0] * opacity;
        }
        if (label) p.labels[i] = label;
      }
  }
}

void add_noise(Phantom& p, Random& random, double sigma) {
  for (auto& v : p.values) v = float(v + sigma * random.normal());
}

// ---- Anatomy variation --------------------------------------------------------------------

namespace {

// How one organ (drawn as several shapes) differs from the template: scaled about its centre,
// turned in-plane and shifted (mm, degrees). The identity is never applied: the template's shapes
// are drawn as written, so that the phantoms without variation keep their bytes.
struct Pose {
  double dx = 0, dy = 0, dz = 0, sx = 1, sy = 1, sz = 1, degrees = 0;
};

// Shifts within +-shift in-plane and +-shift_z along z, an overall size factor within +-size with
// a milder change of aspect, a turn within +-degrees. Always seven draws, whatever is kept.
Pose draw_pose(Random& r, double shift, double shift_z, double size, double degrees) {
  Pose p;
  p.dx = (2 * r.uniform() - 1) * shift;
  p.dy = (2 * r.uniform() - 1) * shift;
  p.dz = (2 * r.uniform() - 1) * shift_z;
  const double k = 1 + (2 * r.uniform() - 1) * size, aspect = 1 + (2 * r.uniform() - 1) * size * 0.4;
  p.sx = k * aspect;
  p.sy = k / aspect;
  p.sz = 1 + (2 * r.uniform() - 1) * size;
  p.degrees = (2 * r.uniform() - 1) * degrees;
  return p;
}

Ellipsoid posed(Ellipsoid e, const std::array<double, 3>& centre, const Pose& p) {
  const double a = p.degrees * kPi / 180, c = std::cos(a), s = std::sin(a);
  const double ux = (e.cx - centre[0]) * p.sx, uy = (e.cy - centre[1]) * p.sy;
  e.cx = centre[0] + c * ux - s * uy + p.dx;
  e.cy = centre[1] + s * ux + c * uy + p.dy;
  e.cz = centre[2] + (e.cz - centre[2]) * p.sz + p.dz;
  e.rx *= p.sx;
  e.ry *= p.sy;
  e.rz *= p.sz;
  e.angle_degrees += p.degrees;
  return e;
}

Blob posed(Blob b, const std::array<double, 3>& centre, const Pose& p) {
  b.base = posed(b.base, centre, p);
  return b;
}

// A gland cut flat above and below: an elliptic cylinder `rz` either side of `cz` (the pancreas,
// which thus shows its full section on every slice it is on, enough pixels to learn it from).
struct Slab {
  Ellipsoid e;
  bool contains(double x, double y, double z) const {
    Ellipsoid section = e;
    section.cz = z;
    return std::fabs(z - e.cz) <= e.rz && section.contains(x, y, z);
  }
};

void fill(Phantom& p, const Slab& s, float value, uint8_t label) {
  for_each_inside(p, s, s.e.cx, s.e.cy, s.e.cz, reach(s.e), s.e.rz, [&](size_t i) {
    p.values[i] = value;
    p.labels[i] = label;
  });
}

// One shape of an organ, for the checks that organs keep apart and inside the body.
struct Part {
  Blob blob;
  bool slab = false;
  bool contains(double x, double y, double z) const {
    return slab ? Slab{blob.base}.contains(x, y, z) : blob.contains(x, y, z);
  }
};
using Solid = std::vector<Part>;

Part part(const Ellipsoid& e, bool slab = false) {
  return Part{Blob{e, {}, {}}, slab};
}

struct Extent {
  double x0, x1, y0, y1, z0, z1;
};

Extent extent(const Solid& solid) {
  Extent e{1e9, -1e9, 1e9, -1e9, 1e9, -1e9};
  for (const Part& part : solid) {
    const Blob& b = part.blob;
    double total = 1;
    for (double a : b.harmonic_amplitude) total += std::fabs(a);
    const double r = reach(b.base) * total;
    e.x0 = std::min(e.x0, b.base.cx - r), e.x1 = std::max(e.x1, b.base.cx + r);
    e.y0 = std::min(e.y0, b.base.cy - r), e.y1 = std::max(e.y1, b.base.cy + r);
    e.z0 = std::min(e.z0, b.base.cz - b.base.rz), e.z1 = std::max(e.z1, b.base.cz + b.base.rz);
  }
  return e;
}

bool inside(const Solid& solid, double x, double y, double z) {
  for (const Part& part : solid)
    if (part.contains(x, y, z)) return true;
  return false;
}

// Whether two organs share a point of a grid with `step` mm between points (within the
// intersection of their bounding boxes, so cheap for organs far apart).
bool overlap(const Solid& a, const Solid& b, double step) {
  const Extent ea = extent(a), eb = extent(b);
  const Extent e{std::max(ea.x0, eb.x0), std::min(ea.x1, eb.x1), std::max(ea.y0, eb.y0),
                 std::min(ea.y1, eb.y1), std::max(ea.z0, eb.z0), std::min(ea.z1, eb.z1)};
  for (double z = e.z0; z <= e.z1; z += step)
    for (double y = e.y0; y <= e.y1; y += step)
      for (double x = e.x0; x <= e.x1; x += step)
        if (inside(a, x, y, z) && inside(b, x, y, z)) return true;
  return false;
}

// Whether some point of an organ (grid as above) lies outside `container`.
bool escapes(const Solid& solid, const Ellipsoid& container, double step) {
  const Extent e = extent(solid);
  for (double z = e.z0; z <= e.z1; z += step)
    for (double y = e.y0; y <= e.y1; y += step)
      for (double x = e.x0; x <= e.x1; x += step)
        if (inside(solid, x, y, z) && !container.contains(x, y, z)) return true;
  return false;
}

// Random harmonics for an irregular outline (lesions), amplitudes up to `amplitude`.
void draw_outline(Random& r, Blob& b, double amplitude, int harmonics) {
  for (int k = 0; k < harmonics; ++k) {
    b.harmonic_amplitude[size_t(k)] = amplitude * r.uniform() / (1 + k);
    b.harmonic_phase[size_t(k)] = 2 * kPi * r.uniform();
  }
}

// Points just beyond a shape's outline: eight around it in its mid-plane and one above and one
// below, at `factor` times its radii plus `extra` mm (harmonics aside), for "inside its organ".
std::array<std::array<double, 3>, 10> rim(const Ellipsoid& e, double factor, double extra) {
  std::array<std::array<double, 3>, 10> points{};
  const double a = e.angle_degrees * kPi / 180, c = std::cos(a), s = std::sin(a);
  for (size_t d = 0; d < 8; ++d) {
    const double t = 2 * kPi * double(d) / 8;
    const double ux = std::cos(t) * (e.rx * factor + extra), uy = std::sin(t) * (e.ry * factor + extra);
    points[d] = {e.cx + c * ux - s * uy, e.cy + s * ux + c * uy, e.cz};
  }
  points[8] = {e.cx, e.cy, e.cz + e.rz * factor + extra};
  points[9] = {e.cx, e.cy, e.cz - e.rz * factor - extra};
  return points;
}

// Whether `ok` holds on every point of a `step` mm grid inside a shape grown to `factor` times its
// radii plus `extra` mm (a lesion and a margin round it, "inside its organ, clear of the others").
template <typename Ok>
bool all_around(Ellipsoid e, double factor, double extra, double step, Ok ok) {
  e.rx = e.rx * factor + extra, e.ry = e.ry * factor + extra, e.rz = e.rz * factor + extra;
  const double r = std::max(e.rx, e.ry);
  for (double z = e.cz - e.rz; z <= e.cz + e.rz; z += step)
    for (double y = e.cy - r; y <= e.cy + r; y += step)
      for (double x = e.cx - r; x <= e.cx + r; x += step)
        if (e.contains(x, y, z) && !ok(x, y, z)) return false;
  return true;
}

double between(Random& r, double lo, double hi) {
  return lo + (hi - lo) * r.uniform();
}

// The constant the anatomy's generator mixes into the seed: its own stream, so that the noise and
// texture drawn from the seed are the same with or without variation.
constexpr uint64_t kAnatomyStream = 0xA7A7039E5EEDULL;

// The CT's anatomy: the template (the sample) or one drawn from the seed.
struct CtAnatomy {
  double trunk_x = 1, trunk_y = 1, fat = 13;  // body habitus: scale of the trunk, subcutaneous fat (mm)
  Pose liver, spleen, left_kidney, right_kidney, gallbladder, stomach, pancreas;
  std::vector<Blob> lesions;
};

// Where each organ's pose turns about (its template centre).
constexpr std::array<double, 3> kLiverCentre{-66, -14, 35}, kSpleenCentre{100, 28, 45}, kLeftKidneyCentre{72, 50, -15},
    kRightKidneyCentre{-72, 52, -25}, kGallbladderCentre{-42, -55, 2}, kStomachCentre{48, -40, 55},
    kPancreasCentre{18, 14, -24};

// The template's lesion, and the pancreas's parts (head by the duodenum right of the midline, body
// across the aorta, tail rising towards the splenic hilum).
const Blob kCtLesion{Ellipsoid{-88, -12, 30, 13, 11, 12, 20, 2}, {0.06, 0.04, 0.0, 0.0}, {0.5, 2.0, 0, 0}};
const std::array<Ellipsoid, 3> kPancreas{Ellipsoid{-8, 18, -30, 13, 12, 10, 10, 2},
                                         Ellipsoid{16, 14, -24, 24, 9, 10, -4, 2},
                                         Ellipsoid{50, 8, -18, 22, 8, 9, -12, 2}};

// The organs as solids, in the anatomy `a` (`vary` false: the template).
struct CtSolids {
  Solid liver, spleen, left_kidney, right_kidney, gallbladder, stomach, pancreas, aorta, ivc, vertebra;
  Ellipsoid wall;  // the inside of the body wall's muscle
};

Ellipsoid trunk(Ellipsoid e, const CtAnatomy& a) {
  e.cx *= a.trunk_x, e.cy *= a.trunk_y, e.rx *= a.trunk_x, e.ry *= a.trunk_y;
  return e;
}

Blob trunk(Blob b, const CtAnatomy& a) {
  b.base = trunk(b.base, a);
  return b;
}

Ellipsoid organ(const Ellipsoid& e, const std::array<double, 3>& centre, const Pose& pose, const CtAnatomy& a) {
  return trunk(posed(e, centre, pose), a);
}

Blob organ(const Blob& b, const std::array<double, 3>& centre, const Pose& pose, const CtAnatomy& a) {
  return trunk(posed(b, centre, pose), a);
}

const Blob kLiverRightLobe{
    Ellipsoid{-66, -14, 35, 88, 62, 75, -10, 2}, {0.03, 0.02, 0.015, 0.01}, {0.3, 1.1, 2.0, 0.7}};
const Ellipsoid kLiverLeftLobe{-5, -42, 50, 55, 33, 42, 15, 2};

CtSolids ct_solids(const CtAnatomy& a) {
  CtSolids s;
  s.liver = {Part{organ(kLiverRightLobe, kLiverCentre, a.liver, a)},
             part(organ(kLiverLeftLobe, kLiverCentre, a.liver, a))};
  s.spleen = {part(organ(Ellipsoid{100, 28, 45, 36, 55, 50, 30, 2}, kSpleenCentre, a.spleen, a))};
  s.left_kidney = {part(organ(Ellipsoid{72, 50, -15, 30, 22, 55, 25, 2}, kLeftKidneyCentre, a.left_kidney, a))};
  s.right_kidney = {part(organ(Ellipsoid{-72, 52, -25, 30, 22, 55, -25, 2}, kRightKidneyCentre, a.right_kidney, a))};
  s.gallbladder = {part(organ(Ellipsoid{-42, -55, 2, 16, 13, 28, 20, 2}, kGallbladderCentre, a.gallbladder, a))};
  s.stomach = {part(organ(Ellipsoid{48, -40, 55, 45, 32, 38, -20, 2}, kStomachCentre, a.stomach, a))};
  for (const Ellipsoid& e : kPancreas) s.pancreas.push_back(part(organ(e, kPancreasCentre, a.pancreas, a), true));
  // The vessels and spine keep their template place, scaled with the trunk; finite in z for the grid.
  s.aorta = {part(trunk(Ellipsoid{18, 40, 0, 12, 12, 100, 0, 2}, a))};
  s.ivc = {part(trunk(Ellipsoid{-24, 40, 0, 11, 14, 100, 0, 2}, a))};
  s.vertebra = {part(trunk(Ellipsoid{0, 62, 0, 23, 19, 100, 0, 2}, a))};
  s.wall = trunk(Ellipsoid{0, 5, 0, 156, 111, 1e4, 0, 2.4}, a);  // the muscle's outer edge and a few mm
  return s;
}

// The checks every drawn anatomy passes, the template too: each organ inside the body wall, and
// no two organs (nor an organ and the aorta, vena cava or vertebra) sharing a point of a 3 mm
// grid, except where the template's organs meet and one is drawn over the other (the liver over
// the right kidney's upper pole and the vena cava, the gallbladder and the stomach over the liver,
// the spleen over the left kidney's upper pole).
bool plausible(const CtSolids& s) {
  const std::vector<const Solid*> organs{&s.liver,   &s.spleen,   &s.left_kidney, &s.right_kidney, &s.gallbladder,
                                         &s.stomach, &s.pancreas, &s.aorta,       &s.ivc,          &s.vertebra};
  const std::vector<std::pair<const Solid*, const Solid*>> layered{{&s.liver, &s.right_kidney},
                                                                   {&s.liver, &s.ivc},
                                                                   {&s.liver, &s.gallbladder},
                                                                   {&s.liver, &s.stomach},
                                                                   {&s.spleen, &s.left_kidney}};
  const double step = 3;
  for (size_t i = 0; i < 7; ++i)
    if (escapes(*organs[i], s.wall, step)) return false;
  for (size_t i = 0; i < organs.size(); ++i)
    for (size_t j = i + 1; j < organs.size(); ++j) {
      if (i >= 7) continue;  // the vessels and the spine among themselves
      if (std::find(layered.begin(), layered.end(), std::make_pair(organs[i], organs[j])) != layered.end()) continue;
      if (overlap(*organs[i], *organs[j], step)) return false;
    }
  return true;
}

// One or two liver lesions (radius 9-16 mm, elongated up to 1.4, irregular outline) in the right
// lobe, each inside the liver with a margin, clear of the other organs and of each other. Both
// lesions' numbers are drawn whether the second is kept or not.
std::vector<Blob> draw_ct_lesions(Random& r, const CtSolids& s, const CtAnatomy& anatomy) {
  const bool two = r.uniform() < 0.35;
  std::vector<Blob> lesions;
  const Ellipsoid& lobe = s.liver[0].blob.base;
  for (int k = 0; k < 2; ++k) {
    Blob b;
    const double radius = 9 + 7 * r.uniform(), elongation = 1 + 0.4 * r.uniform();
    b.base.rx = radius * std::sqrt(elongation);
    b.base.ry = radius / std::sqrt(elongation);
    b.base.rz = radius * (0.8 + 0.3 * r.uniform());
    b.base.angle_degrees = 180 * r.uniform();
    draw_outline(r, b, 0.1, 2);
    bool placed = false;
    for (int attempt = 0; attempt < 200 && !placed; ++attempt) {
      b.base.cx = lobe.cx + (1.3 * r.uniform() - 1.0) * lobe.rx * 0.8;  // right of the gallbladder's fossa
      b.base.cy = lobe.cy + (2 * r.uniform() - 1) * lobe.ry * 0.7;
      b.base.cz = between(r, -20, 55);  // on the slices of the samples and of the training volumes
      // The lesion and a margin round it lie in the liver and in no organ drawn over it; the other
      // lesion is further away than both their outlines.
      placed = all_around(b.base, 1.3, 3, 2.5, [&](double x, double y, double z) {
        return inside(s.liver, x, y, z) && !inside(s.gallbladder, x, y, z) && !inside(s.stomach, x, y, z) &&
               !inside(s.pancreas, x, y, z) && !inside(s.spleen, x, y, z) && !inside(s.right_kidney, x, y, z) &&
               !inside(s.ivc, x, y, z);
      });
      for (const Blob& other : lesions)
        placed = placed && std::hypot(b.base.cx - other.base.cx, b.base.cy - other.base.cy, b.base.cz - other.base.cz) >
                               1.3 * (reach(b.base) + reach(other.base)) + 3;
    }
    if (!placed && k == 0) b = organ(kCtLesion, kLiverCentre, anatomy.liver, anatomy);  // the template's place
    if (k == 0 || (two && placed)) lesions.push_back(b);
  }
  return lesions;
}

CtAnatomy draw_ct_anatomy(uint64_t seed) {
  Random r(seed ^ kAnatomyStream);
  CtAnatomy a;
  for (int attempt = 0; attempt < 100; ++attempt) {
    a.trunk_x = 0.9 + 0.13 * r.uniform();
    a.trunk_y = a.trunk_x * (0.95 + 0.1 * r.uniform());
    a.fat = 7 + 14 * r.uniform();
    a.liver = draw_pose(r, 6, 8, 0.12, 6);
    a.spleen = draw_pose(r, 6, 8, 0.15, 8);
    a.left_kidney = draw_pose(r, 5, 8, 0.12, 6);
    a.right_kidney = draw_pose(r, 5, 8, 0.12, 6);
    a.gallbladder = draw_pose(r, 5, 6, 0.18, 10);
    a.stomach = draw_pose(r, 6, 8, 0.15, 8);
    a.pancreas = draw_pose(r, 4, 5, 0.12, 5);
    const CtSolids s = ct_solids(a);
    if (!plausible(s)) continue;
    a.lesions = draw_ct_lesions(r, s, a);
    return a;
  }
  return CtAnatomy{};  // not expected (the tests draw many seeds): the template
}

}  // namespace

// ---- CT abdomen ---------------------------------------------------------------------------

Phantom make_ct_abdomen(const CtAbdomenOptions& o) {
  Phantom p(o.size, o.size, o.slices, 1, {o.pixel_spacing, o.pixel_spacing, o.slice_spacing});
  p.label_names = {"background", "body",  "liver",        "spleen",      "left kidney", "right kidney",
                   "vertebra",   "aorta", "liver lesion", "gallbladder", "stomach",     "pancreas"};
  std::fill(p.values.begin(), p.values.end(), -1000.f);
  Random random(o.seed);
  const bool vary = o.vary_anatomy;
  const CtAnatomy a = vary ? draw_ct_anatomy(o.seed) : CtAnatomy{};
  // Shapes of the template, moved with their organ (and the trunk) when the anatomy varies.
  auto at = [&](const Ellipsoid& e, const std::array<double, 3>& centre, const Pose& pose) {
    return vary ? organ(e, centre, pose, a) : e;
  };
  auto in_trunk = [&](const Ellipsoid& e) { return vary ? trunk(e, a) : e; };
  const double big = 1e4;  // extends along z through the whole volume
  // Body wall: subcutaneous fat, muscle, then intra-abdominal fat.
  if (vary) {
    // The spinous process reaches 17 mm (scaled with the trunk) past the back's muscle wall: at
    // least 5 mm of fat cover it, the outline moving back when the fat is thinner than that.
    const Ellipsoid wall = trunk(Ellipsoid{0, 5, 0, 152, 107, big, 0, 2.4}, a);
    const double back = std::max(a.fat, 17 * a.trunk_y + 5);
    fill(p, Ellipsoid{0, 5 + (back - a.fat) / 2, 0, wall.rx + a.fat, wall.ry + (a.fat + back) / 2, big, 0, 2.4}, -100,
         1);
    fill(p, wall, 50, 1);
  } else {
    fill(p, Ellipsoid{0, 5, 0, 165, 120, big, 0, 2.4}, -100, 1);
    fill(p, Ellipsoid{0, 5, 0, 152, 107, big, 0, 2.4}, 50, 1);
  }
  fill(p, in_trunk(Ellipsoid{0, 3, 0, 142, 97, big, 0, 2.4}), -90, 1);
  // Bowel loops: soft tissue with some gas.
  for (int i = 0; i < 40; ++i) {
    const double x = -110 + 220 * random.uniform(), y = -80 + 100 * random.uniform(), z = -80 + 160 * random.uniform();
    const double r = 10 + 10 * random.uniform();
    fill(p, in_trunk(Ellipsoid{x, y, z, r, r * (0.7 + 0.3 * random.uniform()), 18 + 20 * random.uniform(), 0, 2}), 35,
         1);
    if (random.uniform() < 0.4) fill(p, in_trunk(Ellipsoid{x, y - r * 0.2, z, r * 0.4, r * 0.3, 8, 0, 2}), -950, 1);
  }
  // Retroperitoneum: paraspinal and psoas muscles, vertebra, aorta, inferior vena cava.
  fill(p, in_trunk(Ellipsoid{-45, 97, 0, 30, 20, big, 0, 2}), 50, 1);
  fill(p, in_trunk(Ellipsoid{45, 97, 0, 30, 20, big, 0, 2}), 50, 1);
  fill(p, in_trunk(Ellipsoid{-36, 60, 0, 16, 20, big, 0, 2}), 50, 1);
  fill(p, in_trunk(Ellipsoid{36, 60, 0, 16, 20, big, 0, 2}), 50, 1);
  fill(p, in_trunk(Ellipsoid{0, 62, 0, 23, 19, big, 0, 2}), 900, 6);
  fill(p, in_trunk(Ellipsoid{0, 62, 0, 19, 15.5, big, 0, 2}), 300, 6);
  fill(p, in_trunk(Ellipsoid{0, 92, 0, 7, 13, big, 0, 2}), 750, 6);    // pedicles/lamina (simplified)
  fill(p, in_trunk(Ellipsoid{0, 112, 0, 5, 12, big, 0, 2}), 700, 6);   // spinous process
  fill(p, in_trunk(Ellipsoid{0, 88, 0, 8.5, 7.5, big, 0, 2}), 15, 1);  // spinal canal (CSF)
  // Intervertebral discs every 32 mm.
  for (int z = 0; z < p.slices; ++z) {
    const double zm = position_mm(p, 0, 0, z)[2];
    if (std::fmod(zm + 1000.0, 32.0) < 6.0) {
      // A disc replaces the vertebral body in this slice.
      fill(p, in_trunk(Ellipsoid{0, 62, zm, 22, 18, p.spacing[2] * 0.45, 0, 2}), 80, 6);
    }
  }
  fill(p, in_trunk(Ellipsoid{18, 40, 0, 12, 12, big, 0, 2}), 150, 7);   // aorta
  fill(p, in_trunk(Ellipsoid{-24, 40, 0, 11, 14, big, 0, 2}), 110, 1);  // IVC
  // Kidneys: cortex around medulla, renal sinus fat at the hilum; the right one lower.
  fill(p, at(Ellipsoid{72, 50, -15, 30, 22, 55, 25, 2}, kLeftKidneyCentre, a.left_kidney), 55, 4);
  fill(p, at(Ellipsoid{72, 50, -15, 22, 14, 46, 25, 2}, kLeftKidneyCentre, a.left_kidney), 30, 4);
  fill(p, at(Ellipsoid{58, 46, -15, 8, 6, 20, 25, 2}, kLeftKidneyCentre, a.left_kidney), -60, 4);
  fill(p, at(Ellipsoid{-72, 52, -25, 30, 22, 55, -25, 2}, kRightKidneyCentre, a.right_kidney), 55, 5);
  fill(p, at(Ellipsoid{-72, 52, -25, 22, 14, 46, -25, 2}, kRightKidneyCentre, a.right_kidney), 30, 5);
  fill(p, at(Ellipsoid{-58, 48, -25, 8, 6, 20, -25, 2}, kRightKidneyCentre, a.right_kidney), -60, 5);
  // Liver (right lobe and left lobe) with a few portal vessels.
  fill(p, vary ? organ(kLiverRightLobe, kLiverCentre, a.liver, a) : kLiverRightLobe, 60, 2);
  fill(p, at(kLiverLeftLobe, kLiverCentre, a.liver), 60, 2);
  fill(p, at(Ellipsoid{-40, 10, 35, 5, 5, 30, 0, 2}, kLiverCentre, a.liver), 110, 2);
  fill(p, at(Ellipsoid{-75, -10, 45, 4, 4, 25, 0, 2}, kLiverCentre, a.liver), 110, 2);
  // Gallbladder under the liver, stomach with gas, spleen.
  fill(p, at(Ellipsoid{-42, -55, 2, 16, 13, 28, 20, 2}, kGallbladderCentre, a.gallbladder), 10, 9);
  fill(p, at(Ellipsoid{48, -40, 55, 45, 32, 38, -20, 2}, kStomachCentre, a.stomach), 40, 10);
  fill(p, at(Ellipsoid{48, -40, 55, 40, 27, 33, -20, 2}, kStomachCentre, a.stomach), 15, 10);
  fill(p, at(Ellipsoid{48, -58, 62, 26, 10, 18, -20, 2}, kStomachCentre, a.stomach), -1000, 10);
  fill(p, at(Ellipsoid{100, 28, 45, 36, 55, 50, 30, 2}, kSpleenCentre, a.spleen), 45, 3);
  // Pancreas at the level of the kidneys' hila, in front of the left kidney, the aorta and the
  // vena cava (which it does not touch: the anatomy's checks), a little brighter than bowel.
  for (const Ellipsoid& e : kPancreas) fill(p, Slab{at(e, kPancreasCentre, a.pancreas)}, 48, 11);
  // The finding: a hypodense (cyst-like) liver lesion (one or two when the anatomy varies).
  if (vary) {
    for (const Blob& lesion : a.lesions) fill(p, lesion, 15, 8);
  } else {
    fill(p, kCtLesion, 15, 8);
  }
  add_noise(p, random, o.noise_hu);
  clamp_values(p, -1024, 3071);
  return p;
}

// ---- MR brain -----------------------------------------------------------------------------

namespace {

constexpr std::array<double, 3> kHeadCentre{0, 0, 10}, kWhiteMatterCentre{0, 2, 12}, kVentricleCentre{0, 0, 12};
const Ellipsoid kWhiteMatter{0, 2, 12, 52, 70, 57, 0, 2};
const std::array<Ellipsoid, 3> kVentricles{Ellipsoid{-10, -2, 12, 6, 28, 20, -8, 2},
                                           Ellipsoid{10, -2, 12, 6, 28, 20, 8, 2}, Ellipsoid{0, 8, 0, 2, 10, 10, 0, 2}};
const Blob kMrLesion{Ellipsoid{30, 22, 18, 9, 8, 8, 30, 2}, {0.1, 0.05, 0, 0}, {0.2, 1.0, 0, 0}};

// The head as a whole (size +-7 %, a turn of up to 6 degrees, a few mm), the white matter within
// it (+-8 %), the ventricles (+-20 %), and one or two white-matter lesions (radius 6-11 mm) in the
// head's own frame, each inside the white matter and clear of the ventricles.
struct MrAnatomy {
  Pose head, white_matter, ventricles;
  std::vector<Blob> lesions;
};

MrAnatomy draw_mr_anatomy(uint64_t seed) {
  Random r(seed ^ kAnatomyStream);
  MrAnatomy a;
  a.head = draw_pose(r, 4, 4, 0.07, 6);
  a.white_matter = draw_pose(r, 2, 2, 0.08, 3);
  a.ventricles = draw_pose(r, 3, 3, 0.2, 4);
  const Ellipsoid white = posed(kWhiteMatter, kWhiteMatterCentre, a.white_matter);
  std::vector<Ellipsoid> ventricles;
  for (const Ellipsoid& e : kVentricles) ventricles.push_back(posed(e, kVentricleCentre, a.ventricles));
  const bool two = r.uniform() < 0.35;
  for (int k = 0; k < 2; ++k) {
    Blob b = kMrLesion;
    const double radius = between(r, 6, 11), elongation = between(r, 1, 1.3);
    b.base.rx = radius * std::sqrt(elongation);
    b.base.ry = radius / std::sqrt(elongation);
    b.base.rz = radius * between(r, 0.8, 1.1);
    b.base.angle_degrees = 180 * r.uniform();
    draw_outline(r, b, 0.12, 2);
    bool placed = false;
    for (int attempt = 0; attempt < 200 && !placed; ++attempt) {
      b.base.cx = white.cx + (2 * r.uniform() - 1) * white.rx * 0.8;
      b.base.cy = white.cy + (2 * r.uniform() - 1) * white.ry * 0.8;
      b.base.cz = between(r, -8, 24);  // on the slices of the sample and of the training volumes
      placed = all_around(b.base, 1.25, 4, 2, [&](double x, double y, double z) {
        bool ok = white.contains(x, y, z);
        for (const Ellipsoid& v : ventricles) ok = ok && !v.contains(x, y, z);
        return ok;
      });
      for (const Blob& other : a.lesions)
        placed = placed && std::hypot(b.base.cx - other.base.cx, b.base.cy - other.base.cy, b.base.cz - other.base.cz) >
                               1.3 * (reach(b.base) + reach(other.base)) + 2;
    }
    if (!placed && k == 0) b = kMrLesion;  // the template's place
    if (k == 0 || (two && placed)) a.lesions.push_back(b);
  }
  return a;
}

}  // namespace

Phantom make_mr_brain(const MrBrainOptions& o) {
  Phantom p(o.size, o.size, o.slices, 1, {o.pixel_spacing, o.pixel_spacing, o.slice_spacing});
  p.label_names = {"background", "brain", "ventricles", "lesion"};
  Random random(o.seed);
  const bool vary = o.vary_anatomy;
  const MrAnatomy a = vary ? draw_mr_anatomy(o.seed) : MrAnatomy{};
  // The template's shapes, moved with the head (and within it) when the anatomy varies.
  auto head = [&](const Ellipsoid& e) { return vary ? posed(e, kHeadCentre, a.head) : e; };
  auto within = [&](const Ellipsoid& e, const std::array<double, 3>& centre, const Pose& pose) {
    return vary ? posed(posed(e, centre, pose), kHeadCentre, a.head) : e;
  };
  fill(p, head(Ellipsoid{0, 0, 10, 78, 98, 85, 0, 2}), 350, 0);               // scalp
  fill(p, head(Ellipsoid{0, 0, 10, 74, 94, 81, 0, 2}), 40, 0);                // skull
  fill(p, head(Ellipsoid{0, 0, 10, 69, 89, 76, 0, 2}), 1100, 0);              // CSF
  fill(p, head(Ellipsoid{0, 0, 10, 66, 86, 73, 0, 2}), 620, 1);               // grey matter
  fill(p, within(kWhiteMatter, kWhiteMatterCentre, a.white_matter), 420, 1);  // white matter
  fill(p, head(Ellipsoid{0, -48, -28, 40, 26, 22, 0, 2}), 620, 1);            // frontal base
  for (const Ellipsoid& e : kVentricles) fill(p, within(e, kVentricleCentre, a.ventricles), 1150, 2);
  if (vary) {
    for (const Blob& lesion : a.lesions) fill(p, posed(lesion, kHeadCentre, a.head), 900, 3);
  } else {
    fill(p, kMrLesion, 900, 3);
  }
  for (auto& v : p.values) v = float(std::fabs(v + 12 * random.normal()));  // magnitude images are non-negative
  return p;
}

// ---- Chest X-ray --------------------------------------------------------------------------

namespace {

const Blob kRightLung{Ellipsoid{-82, -5, 0, 70, 150, 10, 4, 2}, {0.04, 0.02, 0.01, 0}, {0.4, 1.2, 0.3, 0}};
const Blob kLeftLung{Ellipsoid{82, 0, 0, 64, 145, 10, -4, 2}, {0.04, 0.02, 0.01, 0}, {2.4, 0.2, 1.3, 0}};
const Blob kHeart{Ellipsoid{28, 72, 0, 82, 66, 10, -18, 2}, {0.02, 0.01, 0, 0}, {0.5, 0.5, 0, 0}};

// The chest: its width and height (habitus, -8..+6 % and +-5 %), each lung and the heart
// (+-10-12 %, a few degrees, up to 6-8 mm), and the nodule (radius 9-15 mm) somewhere in the upper
// two thirds of the right lung, clear of the heart and the hilum. The nodule stays single, as the
// demo checkpoint's report text calls it solitary.
struct XrayAnatomy {
  double chest_x = 1, chest_y = 1;
  Blob right_lung = kRightLung, left_lung = kLeftLung, heart = kHeart;
  Ellipsoid nodule{-95, -62, 0, 13, 12, 10, 0, 2};
};

Blob chest(Blob b, const XrayAnatomy& a) {
  b.base.cx *= a.chest_x, b.base.cy *= a.chest_y, b.base.rx *= a.chest_x, b.base.ry *= a.chest_y;
  return b;
}

XrayAnatomy draw_xray_anatomy(uint64_t seed) {
  Random r(seed ^ kAnatomyStream);
  XrayAnatomy a;
  const Ellipsoid trunk{0, 30, 0, 175, 235, 10, 0, 4};
  for (int attempt = 0; attempt < 100; ++attempt) {
    a.chest_x = between(r, 0.92, 1.06);
    a.chest_y = between(r, 0.95, 1.05);
    a.right_lung = chest(posed(kRightLung, {-82, -5, 0}, draw_pose(r, 6, 0, 0.1, 4)), a);
    a.left_lung = chest(posed(kLeftLung, {82, 0, 0}, draw_pose(r, 6, 0, 0.1, 4)), a);
    a.heart = chest(posed(kHeart, {28, 72, 0}, draw_pose(r, 8, 0, 0.12, 6)), a);
    const Solid right{Part{a.right_lung}}, left{Part{a.left_lung}};
    Ellipsoid body = trunk;
    body.cy *= a.chest_y, body.rx *= a.chest_x, body.ry *= a.chest_y, body.rz = 1e4;  // the lungs' every z
    if (overlap(right, left, 3) || escapes(right, body, 3) || escapes(left, body, 3)) continue;
    const double radius = between(r, 9, 15);
    a.nodule = Ellipsoid{0, 0, 0, radius * between(r, 1, 1.15), radius, 10, 0, 2};
    const Ellipsoid& lung = a.right_lung.base;
    bool placed = false;
    for (int k = 0; k < 200 && !placed; ++k) {
      a.nodule.cx = lung.cx + (2 * r.uniform() - 1) * lung.rx * 0.6;
      a.nodule.cy = lung.cy - lung.ry * between(r, -0.1, 0.7);
      placed = true;
      for (const auto& q : rim(a.nodule, 1.2, 4))
        placed = placed && a.right_lung.contains(q[0], q[1], 0) && !a.heart.contains(q[0], q[1], 0) && q[0] < -25;
    }
    if (placed) return a;
  }
  return XrayAnatomy{};  // not expected: the template
}

}  // namespace

Phantom make_chest_xray(int size, uint64_t seed, bool with_finding, bool vary_anatomy) {
  Phantom p(size, size, 1, 1, {409.6 / size, 409.6 / size, 1});
  p.label_names = {"background", "left lung", "right lung", "heart", "nodule"};
  Random random(seed);
  const XrayAnatomy a = vary_anatomy ? draw_xray_anatomy(seed) : XrayAnatomy{};
  // The template's points and shapes scaled with the chest when the anatomy varies.
  auto sx = [&](double x) { return vary_anatomy ? x * a.chest_x : x; };
  auto sy = [&](double y) { return vary_anatomy ? y * a.chest_y : y; };
  auto in_chest = [&](Ellipsoid e) {
    return vary_anatomy ? Ellipsoid{sx(e.cx), sy(e.cy), e.cz, sx(e.rx), sy(e.ry), e.rz, e.angle_degrees, e.exponent}
                        : e;
  };
  std::fill(p.values.begin(), p.values.end(), 0.05f);
  const double big = 10;
  fill(p, in_chest(Ellipsoid{0, 30, 0, 175, 235, big, 0, 4}), 0.55f, 0);     // trunk
  fill(p, Ellipsoid{0, -205, 0, 55, 50, big, 0, 2}, 0.55f, 0);               // neck
  fill(p, in_chest(Ellipsoid{-175, -150, 0, 60, 55, big, 10, 2}), 0.5f, 0);  // shoulders
  fill(p, in_chest(Ellipsoid{175, -150, 0, 60, 55, big, -10, 2}), 0.5f, 0);
  // Lungs: the patient's right lung on the image left (PA view seen from the front).
  fill(p, a.right_lung, 0.17f, 2);
  fill(p, a.left_lung, 0.17f, 1);
  // Heart over the medial left lung, mediastinum and spine.
  fill(p, in_chest(Ellipsoid{0, -60, 0, 28, 110, big, 0, 2}), 0.62f, 0);
  fill(p, a.heart, 0.64f, 3);
  for (int y = 0; y < p.rows; ++y)
    for (int x = 0; x < p.columns; ++x) {
      const auto pos = position_mm(p, x, y, 0);
      if (std::fabs(pos[0]) < 15 && pos[1] > -230) p.values[p.index(x, y, 0)] += 0.12f;
    }
  // Ribs (posterior arcs) and clavicles.
  for (int side = -1; side <= 1; side += 2) {
    for (int k = 0; k < 10; ++k) {
      std::vector<std::array<double, 2>> rib;
      const double y0 = -150 + k * 24.0;
      for (int s = 0; s <= 20; ++s) {
        const double t = s / 20.0;
        rib.push_back({sx(side * (18 + 150 * t)), sy(y0 + 60 * t * t - 18 * t)});
      }
      draw_polyline(p, 0, rib, 9, {0.9f, 0, 0}, 0.3f);
    }
    draw_polyline(p, 0, {{sx(side * 15.0), sy(-150.0)}, {sx(side * 80.0), sy(-165.0)}, {sx(side * 145.0), sy(-178.0)}},
                  12, {0.9f, 0, 0}, 0.55f);
  }
  // The finding: a solitary nodule in the right upper lung, 26 mm across (18-35 mm when the anatomy
  // varies; large enough for the demo model's 112-pixel input). Its density adds to what lies over it, as on a
  // radiograph: it shows over a rib as well as between two.
  if (with_finding) {
    const Ellipsoid nodule{a.nodule.cx, a.nodule.cy, 0, a.nodule.rx, a.nodule.ry, big, 0, 2};
    for_each_inside(p, nodule, nodule.cx, nodule.cy, nodule.cz, reach(nodule), nodule.rz, [&](size_t i) {
      p.values[i] += 0.45f;
      p.labels[i] = 4;
    });
  }
  add_noise(p, random, 0.01);
  clamp_values(p, 0, 1);
  return p;
}

// ---- Ultrasound ---------------------------------------------------------------------------

Phantom make_ultrasound_cine(int columns, int rows, int frames, uint64_t seed, bool with_finding, bool vary_anatomy) {
  Phantom p(columns, rows, frames, 1, {0.3, 0.3, 1});
  p.label_names = {"background", "cyst"};
  Random random(seed);
  const double apex_x = columns / 2.0, apex_y = -20, max_radius = rows * 0.95, half_angle = 38 * kPi / 180;
  // The anatomy, as fractions of the image: the cyst's place (x 0.42-0.58, depth 0.44-0.6) and
  // radius (0.09-0.13 of the height), the depth of the liver capsule under the subcutaneous layer
  // (0.14-0.19), how far breathing moves the organ (0.7-1.3 times the sample's 10 by 5 pixels).
  // Within these the cyst stays inside the sector, below the capsule, with its enhancement.
  double centre_x = 0.5, centre_y = 0.52, radius = 0.11, subcutaneous = 0.16, capsule = 0.17, breathing = 1;
  if (vary_anatomy) {
    Random r(seed ^ kAnatomyStream);
    centre_x = between(r, 0.42, 0.58);
    centre_y = between(r, 0.44, 0.6);
    radius = between(r, 0.09, 0.13);
    capsule = between(r, 0.14, 0.19);
    subcutaneous = capsule - 0.01;
    breathing = between(r, 0.7, 1.3);
  }
  for (int f = 0; f < frames; ++f) {
    // Breathing moves the organ a few pixels over the clip.
    const double phase = 2 * kPi * f / frames;
    const double cyst_x = columns * centre_x + 10 * breathing * std::sin(phase),
                 cyst_y = rows * centre_y + 5 * breathing * std::sin(phase);
    const double cyst_r = rows * radius;
    for (int y = 0; y < rows; ++y)
      for (int x = 0; x < columns; ++x) {
        const double dx = x - apex_x, dy = y - apex_y, r = std::hypot(dx, dy), a = std::atan2(dx, dy);
        const size_t i = p.index(x, y, f);
        if (r > max_radius || std::fabs(a) > half_angle || r < 40) {
          p.values[i] = 0;
          continue;
        }
        // Speckle: Rayleigh-like amplitude from two roughly normal components.
        const double n1 = random.uniform() + random.uniform() + random.uniform() - 1.5;
        const double n2 = random.uniform() + random.uniform() + random.uniform() - 1.5;
        const double speckle = std::sqrt(n1 * n1 + n2 * n2) * 1.6;
        double echo = 95 - 35 * (r / max_radius);        // depth attenuation after gain
        if (y < rows * subcutaneous) echo = 70;          // subcutaneous layer
        if (std::fabs(y - rows * capsule) < 3) echo = 170;  // capsule
        const double d = with_finding ? std::hypot(x - cyst_x, y - cyst_y) : 1e9;
        if (d < cyst_r) {
          echo = 6;
          p.labels[i] = 1;
        } else if (d < cyst_r + 3) {
          echo = 150;  // bright wall
        } else if (with_finding && y > cyst_y && std::fabs(x - cyst_x) < cyst_r * 0.9) {
          echo *= 1.45;  // posterior acoustic enhancement
        }
        p.values[i] = clampf(echo * speckle, 0, 255);
      }
  }
  return p;
}

// ---- Colour photographs -------------------------------------------------------------------

Phantom make_fundus_photo(int size, uint64_t seed, bool with_finding, bool vary_anatomy) {
  Phantom p(size, size, 1, 3, {1, 1, 1});
  p.label_names = {"background", "optic disc", "exudate", "haemorrhage"};
  Random random(seed);
  const double s = size / 1024.0, field = 480 * s;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const auto pos = position_mm(p, x, y, 0);
      const double r = std::hypot(pos[0], pos[1]) / field;
      const size_t i = p.index(x, y, 0);
      if (r > 1) continue;
      const double shade = 1 - 0.38 * r * r;
      p.values[3 * i] = float(205 * shade);
      p.values[3 * i + 1] = float(85 * shade);
      p.values[3 * i + 2] = float(38 * shade);
    }
  // The anatomy at the 1024-pixel scale: the optic disc's place (+-15 by +-20 pixels), size
  // (+-12 %) and cup (+-20 % of the disc), the macula's place (+-15) and size (+-10 %).
  double disc_at_x = 190, disc_at_y = -10, disc_size = 1, cup_size = 1, macula_x = -80, macula_y = 15, macula_r = 90;
  if (vary_anatomy) {
    Random r(seed ^ kAnatomyStream);
    disc_at_x += between(r, -15, 15);
    disc_at_y += between(r, -20, 20);
    disc_size = between(r, 0.88, 1.12);
    cup_size = between(r, 0.8, 1.2);
    macula_x += between(r, -15, 15);
    macula_y += between(r, -15, 15);
    macula_r *= between(r, 0.9, 1.1);
  }
  const double disc_x = disc_at_x * s, disc_y = disc_at_y * s;
  // Macula (darker) and fovea.
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const auto pos = position_mm(p, x, y, 0);
      const double d = std::hypot(pos[0] - macula_x * s, pos[1] - macula_y * s) / (macula_r * s);
      if (d < 1) multiply_rgb(p, p.index(x, y, 0), 0.72 + 0.28 * d * d);
    }
  // Vessels: four arcades leaving the disc, each with a branch.
  for (int k = 0; k < 4; ++k) {
    const double heading = (k < 2 ? kPi : 0) + (k % 2 ? 0.55 : -0.55) * (k < 2 ? 1 : -1);
    const double w0 = (k < 2 ? 9 : 6) * s;
    auto path = wander(random, disc_x, disc_y, heading, 28, 14 * s, 0.35);
    draw_polyline(p, 0, path, w0, {135, 25, 20}, 0.85f);
    for (int b = 0; b < 2; ++b) {
      const auto& start = path[size_t(8 + b * 9)];
      auto branch = wander(random, start[0], start[1], heading + (b ? 0.7 : -0.7), 16, 12 * s, 0.4);
      draw_polyline(p, 0, branch, w0 * 0.55, {150, 35, 28}, 0.8f);
    }
  }
  // Optic disc with its cup.
  fill_rgb(p, Ellipsoid{disc_x, disc_y, 0, 72 * disc_size * s, 82 * disc_size * s, 10, 0, 2}, {245, 196, 120}, 1,
           0.92f);
  fill_rgb(p,
           Ellipsoid{disc_x + 6 * disc_size * s, disc_y, 0, 28 * disc_size * cup_size * s,
                     32 * disc_size * cup_size * s, 10, 0, 2},
           {240, 228, 175}, 1, 0.9f);
  // Lesions: hard exudates near the macula, blot haemorrhages (larger than most real ones, so
  // that the demo model's 112-pixel input shows them).
  for (int k = 0; k < (with_finding ? 9 : 0); ++k) {
    const double a = random.uniform() * 2 * kPi, d = (60 + 90 * random.uniform()) * s,
                 r = (8 + 8 * random.uniform()) * s;
    fill_rgb(p, Ellipsoid{macula_x * s + d * std::cos(a), macula_y * s + d * std::sin(a), 0, r, r * 0.8, 10, 0, 2},
             {238, 212, 92}, 2, 0.95f);
  }
  for (int k = 0; k < (with_finding ? 5 : 0); ++k) {
    const double x = (-300 + 420 * random.uniform()) * s, y = (-280 + 560 * random.uniform()) * s;
    Blob blot{Ellipsoid{x, y, 0, (20 + 12 * random.uniform()) * s, (18 + 10 * random.uniform()) * s, 10, 0, 2},
              {0.15, 0.1, 0, 0},
              {random.uniform() * 6, random.uniform() * 6, 0, 0}};
    if (std::hypot(x, y) < field * 0.9) fill_rgb(p, blot, {105, 18, 14}, 3, 0.9f);
  }
  Random noise(seed + 1);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const auto pos = position_mm(p, x, y, 0);
      const size_t i = p.index(x, y, 0);
      if (std::hypot(pos[0], pos[1]) > field) {
        // Outside the camera's circular field everything is black (vessels drawn past it too).
        for (int c = 0; c < 3; ++c) p.values[3 * i + size_t(c)] = 0;
        p.labels[i] = 0;
        continue;
      }
      const double n = 3 * noise.normal();
      for (int c = 0; c < 3; ++c) p.values[3 * i + size_t(c)] = clampf(p.values[3 * i + size_t(c)] + n, 0, 255);
    }
  return p;
}

Phantom make_dermoscopy_photo(int columns, int rows, uint64_t seed, bool vary_anatomy) {
  Phantom p(columns, rows, 1, 3, {1, 1, 1});
  p.label_names = {"background", "lesion"};
  Random random(seed);
  const double s = rows / 768.0, field = 372 * s;
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < columns; ++x) {
      const auto pos = position_mm(p, x, y, 0);
      const double r = std::hypot(pos[0], pos[1]) / field;
      if (r > 1) continue;
      const size_t i = p.index(x, y, 0);
      const double texture = 6 * std::sin(pos[0] * 0.07 + std::sin(pos[1] * 0.05) * 2) + 4 * random.normal();
      const double shade = 1 - 0.25 * r * r * r;
      p.values[3 * i] = float((226 + texture) * shade);
      p.values[3 * i + 1] = float((178 + texture) * shade);
      p.values[3 * i + 2] = float((158 + texture) * shade);
    }
  Blob lesion{
      Ellipsoid{10 * s, -5 * s, 0, 155 * s, 120 * s, 10, 12, 2}, {0.08, 0.06, 0.05, 0.03}, {0.4, 2.1, 4.0, 1.1}};
  Blob centre{Ellipsoid{0, 0, 0, 85 * s, 65 * s, 10, 12, 2}, {0.1, 0.08, 0.04, 0}, {1.4, 0.7, 3.2, 0}};
  double size = 1;
  if (vary_anatomy) {
    // The lesion's place (+-45 by +-35 pixels at the 768-row scale), size (+-18 %), aspect, turn
    // (+-40 degrees) and outline, its dark centre's place and size within it; the whole lesion stays
    // well inside the dermoscope's field.
    Random r(seed ^ kAnatomyStream);
    size = between(r, 0.82, 1.18);
    const double aspect = between(r, 0.9, 1.1), turn = between(r, -40, 40);
    lesion.base = Ellipsoid{(10 + between(r, -45, 45)) * s,
                            (-5 + between(r, -35, 35)) * s,
                            0,
                            155 * size * aspect * s,
                            120 * size / aspect * s,
                            10,
                            12 + turn,
                            2};
    for (size_t k = 0; k < 4; ++k) {
      lesion.harmonic_amplitude[k] *= between(r, 0.6, 1.5);
      lesion.harmonic_phase[k] = 2 * kPi * r.uniform();
    }
    centre.base = Ellipsoid{lesion.base.cx + (-10 + between(r, -15, 15)) * s,
                            lesion.base.cy + (5 + between(r, -15, 15)) * s,
                            0,
                            85 * size * between(r, 0.85, 1.15) * s,
                            65 * size * between(r, 0.85, 1.15) * s,
                            10,
                            12 + turn,
                            2};
  }
  fill_rgb(p, lesion, {128, 78, 52}, 1, 0.95f);
  fill_rgb(p, centre, {82, 46, 32}, 0, 0.8f);
  // Pigment network: dark dots inside the lesion.
  for (int k = 0; k < 260; ++k) {
    const double a = random.uniform() * 2 * kPi, d = std::sqrt(random.uniform()) * 130 * size * s;
    const double x = lesion.base.cx + d * std::cos(a), y = lesion.base.cy + d * std::sin(a);
    if (!lesion.contains(x, y, 0)) continue;
    fill_rgb(p, Ellipsoid{x, y, 0, 3.5 * s, 3.5 * s, 10, 0, 2}, {55, 32, 24}, 0, 0.7f);
  }
  // A few hairs across the field.
  for (int k = 0; k < 4; ++k) {
    auto hair = wander(random, (-400 + 800 * random.uniform()) * s, (-300 + 600 * random.uniform()) * s,
                       random.uniform() * 2 * kPi, 30, 12 * s, 0.15);
    for (auto& pt : hair) {
      if (std::hypot(pt[0], pt[1]) > field) pt = hair.front();
    }
    draw_polyline(p, 0, hair, 2.2 * s, {45, 30, 25}, 0.85f);
  }
  clamp_values(p, 0, 255);
  return p;
}

Phantom make_endoscopy_frame(int columns, int rows, uint64_t seed, bool with_finding, bool vary_anatomy) {
  Phantom p(columns, rows, 1, 3, {1, 1, 1});
  p.label_names = {"background", "polyp"};
  Random random(seed);
  const double s = rows / 576.0;
  // The template at the 576-row scale: the lumen's place, the folds' spacing, the polyp's place,
  // size, aspect, turn and outline (the highlight moves and scales with it).
  double lumen_at_x = 40, lumen_at_y = -25, folds_spacing = 22, size = 1;
  Blob polyp{Ellipsoid{-140 * s, 95 * s, 0, 58 * s, 46 * s, 10, -15, 2}, {0.05, 0.04, 0.02, 0}, {0.3, 1.7, 2.2, 0}};
  if (vary_anatomy) {
    // The lumen within +-40 by +-30, folds +-15 %, the polyp +-18 % (aspect +-10 %, turn +-25
    // degrees) anywhere in the field but the lumen: its outline a little inside the octagonal
    // field, and clear of the lumen's dark centre.
    Random r(seed ^ kAnatomyStream);
    lumen_at_x += between(r, -40, 40);
    lumen_at_y += between(r, -30, 30);
    folds_spacing *= between(r, 0.85, 1.15);
    size = between(r, 0.82, 1.18);
    const double aspect = between(r, 0.9, 1.1);
    polyp.base.rx = 58 * size * aspect * s;
    polyp.base.ry = 46 * size / aspect * s;
    polyp.base.angle_degrees = -15 + between(r, -25, 25);
    for (size_t k = 0; k < 3; ++k) {
      polyp.harmonic_amplitude[k] *= between(r, 0.6, 1.5);
      polyp.harmonic_phase[k] = 2 * kPi * r.uniform();
    }
    const double field = 0.62 * (columns + rows) * 0.5, half_width = columns * 0.46;
    const double lumen_x = lumen_at_x * s, lumen_y = lumen_at_y * s;
    for (int attempt = 0; attempt < 200; ++attempt) {
      polyp.base.cx = (-140 + between(r, -35, 35)) * s;
      polyp.base.cy = (95 + between(r, -30, 30)) * s;
      bool inside_field =
          std::hypot(polyp.base.cx - lumen_x, polyp.base.cy - lumen_y) > reach(polyp.base) * 1.2 + 60 * s;
      for (const auto& q : rim(polyp.base, 1.2, 4 * s))
        inside_field = inside_field && std::fabs(q[0]) + std::fabs(q[1]) < field && std::fabs(q[0]) < half_width;
      if (inside_field) break;
      polyp.base.cx = -140 * s, polyp.base.cy = 95 * s;  // not expected: the template's place
    }
  }
  const double lumen_x = lumen_at_x * s, lumen_y = lumen_at_y * s;
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < columns; ++x) {
      const auto pos = position_mm(p, x, y, 0);
      // The octagonal field of an endoscope video frame.
      if (std::fabs(pos[0]) + std::fabs(pos[1]) > 0.62 * (columns + rows) * 0.5 || std::fabs(pos[0]) > columns * 0.46)
        continue;
      const double d = std::hypot(pos[0] - lumen_x, pos[1] - lumen_y);
      const double light = std::clamp(std::pow(d / (260 * s), 0.7), 0.05, 1.15);
      const double folds = 0.86 + 0.14 * std::sin(d / (folds_spacing * s) + std::atan2(pos[1], pos[0]));
      const double n = 3 * random.normal();
      const size_t i = p.index(x, y, 0);
      p.values[3 * i] = float(208 * light * folds + n);
      p.values[3 * i + 1] = float(112 * light * folds + n);
      p.values[3 * i + 2] = float(96 * light * folds + n);
    }
  if (with_finding && !vary_anatomy) {
    fill_rgb(p, polyp, {222, 128, 108}, 1, 0.9f);
    fill_rgb(p, Ellipsoid{-128 * s, 80 * s, 0, 30 * s, 22 * s, 10, -15, 2}, {236, 150, 130}, 0, 0.6f);
    fill_rgb(p, Ellipsoid{-120 * s, 72 * s, 0, 9 * s, 5 * s, 10, -30, 2}, {255, 250, 245}, 0,
             0.9f);  // specular highlight
  } else if (with_finding) {
    const double x = polyp.base.cx, y = polyp.base.cy, k = size * s, turn = polyp.base.angle_degrees + 15;
    fill_rgb(p, polyp, {222, 128, 108}, 1, 0.9f);
    fill_rgb(p, Ellipsoid{x + 12 * k, y - 15 * k, 0, 30 * k, 22 * k, 10, -15 + turn, 2}, {236, 150, 130}, 0, 0.6f);
    fill_rgb(p, Ellipsoid{x + 20 * k, y - 23 * k, 0, 9 * k, 5 * k, 10, -30 + turn, 2}, {255, 250, 245}, 0, 0.9f);
  }
  clamp_values(p, 0, 255);
  return p;
}

namespace {

// Where a slide's tissue section and tumour regions lie, in pixels from the image centre at
// the 1536-row scale.
struct SlideLayout {
  Blob tissue;
  std::vector<Blob> tumours;
};

// The sample slide's layout: one section left of centre, one tumour in its upper right.
SlideLayout sample_slide_layout() {
  SlideLayout l;
  l.tissue = Blob{Ellipsoid{-60, 20, 0, 880, 600, 10, 8, 2}, {0.06, 0.05, 0.03, 0.02}, {0.3, 1.9, 4.1, 2.2}};
  l.tumours.push_back(Blob{Ellipsoid{180, -90, 0, 300, 230, 10, -20, 2}, {0.12, 0.08, 0.05, 0}, {1.0, 2.5, 0.2, 0}});
  return l;
}

// A layout drawn from `seed`: the section's size (radii 560-900 by 380-620), place, rotation and
// outline; one or two tumours (radii 130-330, elongation up to 1.6, irregular outline) whose
// centres lie well inside the section, at least one tumour radius from its edge.
SlideLayout varied_slide_layout(uint64_t seed) {
  Random r(seed * 2654435761ULL + 0x51de);
  SlideLayout l;
  Ellipsoid base{(r.uniform() - 0.5) * 240, (r.uniform() - 0.5) * 160, 0, 560 + 340 * r.uniform(),
                 380 + 240 * r.uniform(), 10, (r.uniform() - 0.5) * 60, 2};
  l.tissue.base = base;
  for (int k = 0; k < 4; ++k) {
    l.tissue.harmonic_amplitude[size_t(k)] = (0.02 + 0.05 * r.uniform()) / (1 + 0.5 * k);
    l.tissue.harmonic_phase[size_t(k)] = 2 * kPi * r.uniform();
  }
  const int count = r.uniform() < 0.7 ? 1 : 2;
  for (int t = 0; t < count; ++t) {
    Blob b;
    const double radius = 130 + 200 * r.uniform(), elongation = 1 + 0.6 * r.uniform();
    b.base.rx = radius * std::sqrt(elongation);
    b.base.ry = radius / std::sqrt(elongation);
    b.base.rz = 10;
    b.base.angle_degrees = 180 * r.uniform();
    for (int k = 0; k < 3; ++k) {
      b.harmonic_amplitude[size_t(k)] = 0.04 + 0.1 * r.uniform() / (1 + k);
      b.harmonic_phase[size_t(k)] = 2 * kPi * r.uniform();
    }
    // A centre inside the section, shrunk by the tumour's largest radius (rejection sampling).
    const double margin = std::max(b.base.rx, b.base.ry) * 0.9;
    Ellipsoid inner = base;
    inner.rx = std::max(40.0, base.rx - margin);
    inner.ry = std::max(40.0, base.ry - margin);
    for (int attempt = 0; attempt < 100; ++attempt) {
      b.base.cx = base.cx + (2 * r.uniform() - 1) * inner.rx;
      b.base.cy = base.cy + (2 * r.uniform() - 1) * inner.ry;
      if (inner.contains(b.base.cx, b.base.cy, 0)) break;
      b.base.cx = base.cx, b.base.cy = base.cy;
    }
    l.tumours.push_back(b);
  }
  return l;
}

Blob scaled(Blob b, double s) {
  b.base.cx *= s, b.base.cy *= s, b.base.rx *= s, b.base.ry *= s;
  return b;
}

}  // namespace

Phantom make_slide_tissue(int columns, int rows, uint64_t seed, bool with_finding, bool vary_layout) {
  // 0.25 um pixels; shapes below are in pixels (spacing 1) for legibility.
  Phantom p(columns, rows, 1, 3, {1, 1, 1});
  p.label_names = {"background", "tissue", "tumour"};
  Random random(seed);
  for (size_t i = 0; i < size_t(columns) * size_t(rows); ++i) {
    p.values[3 * i] = 243;
    p.values[3 * i + 1] = 243;
    p.values[3 * i + 2] = 246;
  }
  const double s = rows / 1536.0;
  const SlideLayout layout = vary_layout ? varied_slide_layout(seed) : sample_slide_layout();
  const Blob tissue = scaled(layout.tissue, s);
  fill_rgb(p, tissue, {232, 165, 196}, 1, 1.0f);
  std::vector<Blob> tumours;
  if (with_finding)
    for (const Blob& t : layout.tumours) {
      tumours.push_back(scaled(t, s));
      fill_rgb(p, tumours.back(), {214, 140, 190}, 2, 1.0f);
    }
  auto in_tumour = [&](double x, double y) {
    for (const Blob& t : tumours)
      if (t.contains(x, y, 0)) return true;
    return false;
  };
  // The section's extent (the sample's: x -960..960, y -700..700 at this scale).
  const double ext_x = (std::fabs(layout.tissue.base.cx) + 1.1 * std::max(layout.tissue.base.rx, layout.tissue.base.ry)) * s;
  const double ext_y = (std::fabs(layout.tissue.base.cy) + 1.1 * std::max(layout.tissue.base.rx, layout.tissue.base.ry)) * s;
  const double fx = vary_layout ? ext_x : 960 * s, fy = vary_layout ? ext_y : 700 * s;
  // Stroma texture: fibres as faint lines.
  for (int k = 0; k < 220; ++k) {
    const double x = (-900 + 1800 * random.uniform()) * s, y = (-620 + 1240 * random.uniform()) * s;
    const double xx = vary_layout ? x * fx / (900 * s) : x, yy = vary_layout ? y * fy / (620 * s) : y;
    if (!tissue.base.contains(xx, yy, 0)) continue;
    auto fibre = wander(random, xx, yy, random.uniform() * kPi, 8, 14 * s, 0.3);
    draw_polyline(p, 0, fibre, 2.0 * s, {205, 120, 170}, 0.5f);
  }
  // Nuclei: sparse in stroma, dense, larger and darker in the tumour.
  const int attempts = int(14000 * s * s * (vary_layout ? (fx * fy) / (960 * 700 * s * s) : 1.0));
  for (int k = 0; k < attempts; ++k) {
    const double x = (-960 + 1920 * random.uniform()) * s, y = (-700 + 1400 * random.uniform()) * s;
    const double xx = vary_layout ? x * fx / (960 * s) : x, yy = vary_layout ? y * fy / (700 * s) : y;
    const bool tumour = in_tumour(xx, yy);
    if (!tissue.contains(xx, yy, 0)) continue;
    // The varied layouts draw every number of a nucleus whether it is kept or not, so that the
    // slide without its tumour differs from the one with it only there (the sample's fixed
    // layout keeps its original sequence).
    std::array<double, 4> u{};
    if (vary_layout)
      for (auto& v : u) v = random.uniform();
    else
      u[0] = tumour ? 0.0 : random.uniform();
    if (!tumour && u[0] > 0.3) continue;
    if (!vary_layout)
      for (size_t i = 1; i < u.size(); ++i) u[i] = random.uniform();
    const double r = (tumour ? 5.5 : 3.5) * s * (0.8 + 0.4 * u[1]);
    const std::array<float, 3> colour = tumour ? std::array<float, 3>{75, 38, 125} : std::array<float, 3>{98, 55, 148};
    fill_rgb(p, Ellipsoid{xx, yy, 0, r, r * (0.6 + 0.3 * u[2]), 10, u[3] * 180, 2}, colour, 0, 0.9f);
  }
  Random noise(seed + 1);
  for (auto& v : p.values) v = clampf(v + 2.5 * noise.normal(), 0, 255);
  return p;
}

Phantom downsample_2x(const Phantom& in) {
  Phantom out((in.columns + 1) / 2, (in.rows + 1) / 2, in.slices, in.channels,
              {in.spacing[0] * 2, in.spacing[1] * 2, in.spacing[2]});
  out.label_names = in.label_names;
  for (int z = 0; z < in.slices; ++z)
    for (int y = 0; y < out.rows; ++y)
      for (int x = 0; x < out.columns; ++x) {
        const int xs[2] = {2 * x, std::min(2 * x + 1, in.columns - 1)};
        const int ys[2] = {2 * y, std::min(2 * y + 1, in.rows - 1)};
        const size_t o = out.index(x, y, z);
        uint8_t label = 0;
        for (int c = 0; c < in.channels; ++c) {
          double sum = 0;
          for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx)
              sum += in.values[in.index(xs[dx], ys[dy], z) * size_t(in.channels) + size_t(c)];
          out.values[o * size_t(in.channels) + size_t(c)] = float(sum / 4);
        }
        for (int dy = 0; dy < 2; ++dy)
          for (int dx = 0; dx < 2; ++dx) label = std::max(label, in.labels[in.index(xs[dx], ys[dy], z)]);
        out.labels[o] = label;
      }
  return out;
}

}  // namespace unibiomed::samples
