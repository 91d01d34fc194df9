// Longest diameter (max Feret, pixel corners) on shapes whose answer is known in closed form,
// and against a brute-force numpy computation on random masks.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <sstream>

#include "pipeline/measurements.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

std::vector<uint8_t> rectangle(int columns, int rows, int x0, int y0, int w, int h) {
  std::vector<uint8_t> m(size_t(columns) * rows, 0);
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x) m[size_t(y) * columns + x] = 1;
  return m;
}

TEST(LongestDiameter, RectangleIsItsDiagonalWithAnisotropicPixels) {
  const auto m = rectangle(40, 30, 5, 7, 12, 9);
  const double dx = 0.7, dy = 2.5;  // mm between columns, between rows
  const Diameter d = longest_diameter(m, 40, 30, dx, dy);
  const double expected = std::hypot(12 * dx, 9 * dy);
  std::cout << "rectangle: " << d.length << " mm, expected " << expected << "\n";
  EXPECT_NEAR(d.length, expected, 1e-9);
  // End points are opposite corners of the rectangle.
  EXPECT_NEAR(std::abs(d.to[0] - d.from[0]), 12, 1e-9);
  EXPECT_NEAR(std::abs(d.to[1] - d.from[1]), 9, 1e-9);
}

TEST(LongestDiameter, OnePixelAndEmpty) {
  auto m = rectangle(5, 5, 2, 3, 1, 1);
  EXPECT_NEAR(longest_diameter(m, 5, 5, 0.5, 2.0).length, std::hypot(0.5, 2.0), 1e-12);
  EXPECT_EQ(longest_diameter(std::vector<uint8_t>(25, 0), 5, 5, 1, 1).length, 0);
  EXPECT_THROW(longest_diameter(m, 4, 5, 1, 1), std::invalid_argument);
}

TEST(LongestDiameter, DiscIsItsDiameterWithinAPixel) {
  const int n = 101;
  const double r = 30;
  std::vector<uint8_t> m(size_t(n) * n, 0);
  for (int y = 0; y < n; ++y)
    for (int x = 0; x < n; ++x) m[size_t(y) * n + x] = std::hypot(x + 0.5 - 50.5, y + 0.5 - 50.5) <= r;
  const Diameter d = longest_diameter(m, n, n, 1, 1);
  std::cout << "disc r=30: " << d.length << "\n";
  EXPECT_GE(d.length, 2 * r);
  EXPECT_LE(d.length, 2 * r + 1.5);
}

TEST(LongestDiameter, AgreesWithBruteForceOverAllCornersInNumpy) {
  ASSERT_TRUE(test::have_program("/usr/bin/python3")) << test::install_hint("/usr/bin/python3", "Debian's python3");
  std::mt19937 rng(7);
  const int columns = 23, rows = 17;
  std::ostringstream input;
  std::vector<std::vector<uint8_t>> masks;
  for (int k = 0; k < 20; ++k) {
    std::vector<uint8_t> m(size_t(columns) * rows);
    const int density = 1 + k % 5;  // sparse to dense scatter
    for (auto& v : m) v = (rng() % 10) < unsigned(density);
    masks.push_back(m);
    for (auto v : m) input << int(v);
    input << "\n";
  }
  const std::string script = R"PY(
import sys, numpy as np
dx, dy = 0.8, 1.3
for line in sys.stdin.read().split():
    m = np.array([int(c) for c in line]).reshape(17, 23)
    ys, xs = np.nonzero(m)
    pts = np.concatenate([np.stack([xs + a, ys + b], 1) for a in (0, 1) for b in (0, 1)]).astype(float)
    pts[:, 0] *= dx; pts[:, 1] *= dy
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max()
    print(repr(float(d)))
)PY";
  const auto result = test::run_command({"/usr/bin/python3", "-c", script}, input.str());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::istringstream lines(result.output);
  double worst = 0;
  for (const auto& m : masks) {
    double expected = 0;
    lines >> expected;
    const double got = longest_diameter(m, columns, rows, 0.8, 1.3).length;
    worst = std::max(worst, std::abs(got - expected));
  }
  std::cout << "max |C++ - numpy brute force| = " << worst << " mm over 20 masks (tolerance 1e-9)\n";
  EXPECT_LT(worst, 1e-9);
}

}  // namespace
}  // namespace unibiomed::pipeline
