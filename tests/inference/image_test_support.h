// Test inputs for the image preprocessing and vision tests: the procedural images the
// reference goldens were made from (tests/reference/preprocess.json, "procedural_image_formulas"),
// golden uint8 tensors as images, and Pillow run as an independent reference resampler.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "inference/image.h"
#include "inference/safetensors_file.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

// preprocess.json: kind 0: R=(7x+13y)%256, G=(x*x+3y*y+17xy)%256, B=((x//5)*40+(y//3)*25+60)%256;
// kind 1: R=(11x+5y+((x*y)%37))%256, G=(255-(3x+9y)) mod 256, B=(((x^y)*19)+7)%256.
inline inference::RgbImage procedural_image(int kind, int width, int height) {
  inference::RgbImage im(width, height);
  for (int64_t y = 0; y < height; ++y) {
    uint8_t* p = im.row(static_cast<int>(y));
    for (int64_t x = 0; x < width; ++x, p += 3) {
      if (kind == 0) {
        p[0] = static_cast<uint8_t>((7 * x + 13 * y) % 256);
        p[1] = static_cast<uint8_t>((x * x + 3 * y * y + 17 * x * y) % 256);
        p[2] = static_cast<uint8_t>(((x / 5) * 40 + (y / 3) * 25 + 60) % 256);
      } else {
        p[0] = static_cast<uint8_t>((11 * x + 5 * y + ((x * y) % 37)) % 256);
        p[1] = static_cast<uint8_t>((((255 - (3 * x + 9 * y)) % 256) + 256) % 256);
        p[2] = static_cast<uint8_t>((((x ^ y) * 19) + 7) % 256);
      }
    }
  }
  return im;
}

inline inference::RgbImage random_image(int width, int height, uint32_t seed) {
  inference::RgbImage im(width, height);
  std::mt19937 rng(seed);
  for (auto& v : im.rgb) v = static_cast<uint8_t>(rng() & 0xFF);
  return im;
}

// A golden .safetensors file; tensors are looked up with a clear failure when absent.
class GoldenFile {
 public:
  explicit GoldenFile(const std::string& name) : file_(reference_dir() / name) {}
  const inference::TensorView& tensor(const std::string& name) const {
    auto it = file_.tensors().find(name);
    if (it == file_.tensors().end()) throw std::runtime_error("golden tensor '" + name + "' missing in " + file_.path().string());
    return it->second;
  }
  // A uint8 [H, W, 3] tensor as an image.
  inference::RgbImage image(const std::string& name) const {
    const auto& t = tensor(name);
    if (t.dtype != inference::DType::U8 || t.shape.size() != 3 || t.shape[2] != 3)
      throw std::runtime_error("golden tensor '" + name + "' is not uint8 [H, W, 3]");
    inference::RgbImage im(static_cast<int>(t.shape[1]), static_cast<int>(t.shape[0]));
    std::memcpy(im.rgb.data(), t.data, t.nbytes);
    return im;
  }
  std::vector<float> floats(const std::string& name) const {
    const auto& t = tensor(name);
    if (t.dtype != inference::DType::F32) throw std::runtime_error("golden tensor '" + name + "' is not float32");
    std::vector<float> out(static_cast<size_t>(t.numel()));
    std::memcpy(out.data(), t.data, t.nbytes);
    return out;
  }

 private:
  inference::SafetensorsFile file_;
};

// Number of differing bytes (and the first difference, for the failure message).
inline size_t count_differences(const inference::RgbImage& a, const inference::RgbImage& b, std::string* first = nullptr) {
  if (a.width != b.width || a.height != b.height) {
    if (first) *first = "sizes differ";
    return a.rgb.size() + b.rgb.size();
  }
  size_t n = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    if (a.rgb[i] != b.rgb[i]) {
      if (n == 0 && first) {
        const size_t px = i / 3;
        *first = "pixel (" + std::to_string(px % a.width) + ", " + std::to_string(px / a.width) + ") channel " +
                 std::to_string(i % 3) + ": " + std::to_string(a.rgb[i]) + " vs " + std::to_string(b.rgb[i]);
      }
      ++n;
    }
  }
  return n;
}

inline bool have_pillow() {
  static const bool ok = run_command({"/usr/bin/python3", "-c", "import PIL.Image"}).exit_code == 0;
  return ok;
}

// Pillow's Image.resize((width, height)) (BICUBIC, the default for RGB) of `image`, run by
// /usr/bin/python3 on raw bytes in `dir`.
inline inference::RgbImage pillow_resize(const inference::RgbImage& image, int width, int height,
                                         const std::filesystem::path& dir) {
  const auto in = dir / "pillow_in.rgb";
  const auto out = dir / "pillow_out.rgb";
  write_file(in, std::string(image.rgb.begin(), image.rgb.end()));
  const std::string script =
      "import sys\nfrom PIL import Image\n"
      "w, h, W, H = (int(v) for v in sys.argv[3:7])\n"
      "im = Image.frombytes('RGB', (w, h), open(sys.argv[1], 'rb').read())\n"
      "open(sys.argv[2], 'wb').write(im.resize((W, H), Image.BICUBIC).tobytes())\n";
  auto r = run_command({"/usr/bin/python3", "-c", script, in.string(), out.string(), std::to_string(image.width),
                        std::to_string(image.height), std::to_string(width), std::to_string(height)});
  if (r.exit_code != 0) throw std::runtime_error("Pillow resize failed: " + r.output);
  const std::string bytes = read_file(out);
  inference::RgbImage result(width, height);
  if (bytes.size() != result.rgb.size()) throw std::runtime_error("Pillow wrote " + std::to_string(bytes.size()) + " bytes");
  std::memcpy(result.rgb.data(), bytes.data(), bytes.size());
  return result;
}

}  // namespace unibiomed::test
