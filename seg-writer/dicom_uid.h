// UIDs for the objects the node writes. With a seed they are deterministic (the same study
// analysed again gets the same SEG/SR UIDs, so a host that re-runs an interrupted job stores the
// same objects instead of duplicates); without one they are random.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>

namespace unibiomed::seg {

// "2.25." followed by the decimal value of a 128-bit number (PS3.5 Annex B.2, UUID-derived
// UIDs): a hash of `seed` (FNV-1a, 128 bits) when the seed is non-empty, a random UUID otherwise.
std::string make_uid(const std::string& seed = "");

}  // namespace unibiomed::seg
