// The bit packing of BINARY SEG pixel data against the rule of PS3.5 8.1.1 written out naively:
// pixel i of the concatenated frames is bit (i mod 8) of byte (i div 8).
// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/binary_frame_packing.h"

#include <gtest/gtest.h>

#include <random>

namespace unibiomed::seg {
namespace {

std::vector<std::uint8_t> naive_pack(const std::vector<std::vector<std::uint8_t>>& frames) {
  std::vector<std::uint8_t> out;
  size_t bit = 0;
  for (const auto& frame : frames)
    for (std::uint8_t v : frame) {
      if (bit / 8 >= out.size()) out.push_back(0);
      if (v) out[bit / 8] |= static_cast<std::uint8_t>(1u << (bit % 8));
      ++bit;
    }
  if (out.size() % 2) out.push_back(0);
  return out;
}

TEST(BinaryFramePacking, MatchesTheStandardsBitOrderForEveryFrameSizeAndOffset) {
  std::mt19937 generator(7);
  // Sizes around the SIMD block (16) and byte boundaries, incl. the 5x5 and 7x9 of the DCMTK bug.
  for (size_t pixels : {1, 5, 7, 8, 9, 15, 16, 17, 25, 31, 33, 63, 64, 65, 200}) {
    for (size_t frames : {1, 2, 3, 5, 9}) {
      std::vector<std::vector<std::uint8_t>> input(frames, std::vector<std::uint8_t>(pixels));
      for (auto& f : input)
        for (auto& v : f) v = (generator() % 3 == 0) ? static_cast<std::uint8_t>(1 + generator() % 255) : 0;
      std::vector<std::uint8_t> packed(packed_binary_size(pixels, frames), 0);
      for (size_t k = 0; k < frames; ++k) pack_binary(input[k].data(), pixels, packed.data(), k * pixels);
      EXPECT_EQ(packed, naive_pack(input)) << pixels << " pixels x " << frames << " frames";
      EXPECT_EQ(packed.size() % 2, 0u);
      for (size_t k = 0; k < frames; ++k) {
        auto back = unpack_binary(packed.data(), packed.size(), k * pixels, pixels);
        for (size_t i = 0; i < pixels; ++i)
          ASSERT_EQ(back[i], input[k][i] ? 1 : 0) << "frame " << k << " pixel " << i << " of " << pixels;
      }
    }
  }
}

TEST(BinaryFramePacking, ThresholdsProbabilities) {
  const size_t pixels = 37;
  std::vector<float> p(pixels);
  std::vector<std::uint8_t> expected(pixels);
  for (size_t i = 0; i < pixels; ++i) {
    p[i] = static_cast<float>(i) / (pixels - 1);
    expected[i] = p[i] >= 0.5f;
  }
  for (size_t offset : {0, 3, 8, 13}) {
    std::vector<std::uint8_t> packed((offset + pixels + 7) / 8 + 1, 0);
    pack_binary(p.data(), pixels, 0.5f, packed.data(), offset);
    EXPECT_EQ(unpack_binary(packed.data(), packed.size(), offset, pixels), expected) << "offset " << offset;
    for (size_t b = 0; b < offset; ++b) EXPECT_EQ((packed[b / 8] >> (b % 8)) & 1, 0) << "bit before the frame set";
  }
}

TEST(BinaryFramePacking, SizesArePaddedToEvenLength) {
  EXPECT_EQ(packed_binary_size(25, 3), 10u);  // 75 bits -> 10 bytes
  EXPECT_EQ(packed_binary_size(63, 3), 24u);  // 189 bits -> 24 bytes
  EXPECT_EQ(packed_binary_size(5, 1), 2u);    // 5 bits -> 1 byte -> padded to 2
  EXPECT_EQ(packed_binary_size(512 * 512, 3000), 98304000u);
}

}  // namespace
}  // namespace unibiomed::seg
