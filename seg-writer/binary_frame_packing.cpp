// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/binary_frame_packing.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace unibiomed::seg {
namespace {

inline void set_bit(std::uint8_t* out, std::size_t bit) {
  out[bit >> 3] |= static_cast<std::uint8_t>(1u << (bit & 7));
}

// Eight 0/non-zero bytes to one byte, byte k -> bit k (least significant bit first).
inline std::uint8_t pack8(const std::uint8_t* in) {
  std::uint64_t x;
  std::memcpy(&x, in, 8);
  // Fold every byte's bits into its bit 0; shifts of at most 4 never move a neighbour's bits
  // into bits 0..3, so bit 0 ends up as the OR of its own byte.
  x |= x >> 4;
  x |= x >> 2;
  x |= x >> 1;
  x &= 0x0101010101010101ULL;
  // Bit 8k (byte k) times 2^(56-7k) lands on bit 56+k; all other products are distinct powers
  // of two outside bits 56..63, so there are no carries into the result byte.
  return static_cast<std::uint8_t>((x * 0x0102040810204080ULL) >> 56);
}

}  // namespace

std::size_t packed_binary_size(std::size_t pixels_per_frame, std::size_t frames) {
  const std::size_t bits = pixels_per_frame * frames;
  std::size_t bytes = (bits + 7) / 8;
  return bytes + (bytes & 1);
}

void pack_binary(const std::uint8_t* in, std::size_t count, std::uint8_t* out, std::size_t first_bit) {
  std::size_t i = 0;
  // Leading pixels up to the next byte boundary of the output.
  while (i < count && ((first_bit + i) & 7) != 0) {
    if (in[i]) set_bit(out, first_bit + i);
    ++i;
  }
  std::uint8_t* dst = out + ((first_bit + i) >> 3);
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  for (; i + 16 <= count; i += 16, dst += 2) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    // movemask takes byte k's top bit to bit k: least significant bit first, as DICOM packs.
    const unsigned bits = ~static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero))) & 0xFFFFu;
    dst[0] = static_cast<std::uint8_t>(bits);
    dst[1] = static_cast<std::uint8_t>(bits >> 8);
  }
#endif
  for (; i + 8 <= count; i += 8, ++dst) *dst = pack8(in + i);
  for (; i < count; ++i)
    if (in[i]) set_bit(out, first_bit + i);
}

void pack_binary(const float* in, std::size_t count, float threshold, std::uint8_t* out, std::size_t first_bit) {
  std::size_t i = 0;
  while (i < count && ((first_bit + i) & 7) != 0) {
    if (in[i] >= threshold) set_bit(out, first_bit + i);
    ++i;
  }
  std::uint8_t* dst = out + ((first_bit + i) >> 3);
#if defined(__SSE2__)
  const __m128 t = _mm_set1_ps(threshold);
  for (; i + 8 <= count; i += 8, ++dst) {
    const int lo = _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(in + i), t));
    const int hi = _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(in + i + 4), t));
    *dst = static_cast<std::uint8_t>(lo | (hi << 4));
  }
#else
  for (; i + 8 <= count; i += 8, ++dst) {
    std::uint8_t byte = 0;
    for (int k = 0; k < 8; ++k) byte |= static_cast<std::uint8_t>((in[i + k] >= threshold) << k);
    *dst = byte;
  }
#endif
  for (; i < count; ++i)
    if (in[i] >= threshold) set_bit(out, first_bit + i);
}

std::vector<std::uint8_t> unpack_binary(const std::uint8_t* packed, std::size_t packed_size, std::size_t first_bit,
                                        std::size_t count) {
  std::vector<std::uint8_t> out(count, 0);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t bit = first_bit + i;
    if ((bit >> 3) >= packed_size) break;
    out[i] = (packed[bit >> 3] >> (bit & 7)) & 1u;
  }
  return out;
}

}  // namespace unibiomed::seg
