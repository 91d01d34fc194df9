// Bit packing of BINARY Segmentation pixel data (PS3.5 Section 8.1.1, PS3.3 C.8.20.2): one bit
// per pixel, the first pixel in the least significant bit, and frames concatenated without
// padding, so that a frame whose Rows x Columns is not a multiple of 8 starts inside a byte.
// DCMTK 3.6.7 gets the frames after the first wrong in that case (docs/DICOM-OUTPUT.md: DCMTK issue
// #1132, fixed in 3.6.9), so the writer packs the pixel data itself with this.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace unibiomed::seg {

// Bytes needed for `frames` frames of `pixels_per_frame` pixels, padded to an even length
// (PS3.5 Section 8.1.1: the value of Pixel Data has even length).
std::size_t packed_binary_size(std::size_t pixels_per_frame, std::size_t frames);

// Sets bit i of `out` for every non-zero in[i] for i in [0, count), starting at bit offset
// `first_bit` of `out`. Bits of `out` outside that range are left as they are; the bits in range
// must be zero on entry (callers start from a zeroed buffer).
void pack_binary(const std::uint8_t* in, std::size_t count, std::uint8_t* out, std::size_t first_bit);
// The same for probabilities: bit set where in[i] >= threshold.
void pack_binary(const float* in, std::size_t count, float threshold, std::uint8_t* out, std::size_t first_bit);

// Unpacks `count` bits starting at bit `first_bit` into 0/1 bytes (for readers and tests).
std::vector<std::uint8_t> unpack_binary(const std::uint8_t* packed, std::size_t packed_size, std::size_t first_bit,
                                        std::size_t count);

}  // namespace unibiomed::seg
