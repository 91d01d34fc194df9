// SPDX-License-Identifier: GPL-3.0-or-later
#include "inference/key_frames.h"

#include <algorithm>
#include <cmath>

namespace unibiomed::inference {

std::vector<int> evenly_spaced_key_frames(int frames, int count) {
  std::vector<int> out;
  const int k = std::min(count, frames);
  for (int i = 0; i < k; ++i) {
    const int f = k == 1 ? (frames - 1) / 2 : static_cast<int>(std::lround(double(i) * (frames - 1) / double(k - 1)));
    if (out.empty() || out.back() != f) out.push_back(f);
  }
  return out;
}

}  // namespace unibiomed::inference
