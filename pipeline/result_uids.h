// Deterministic UIDs for result objects: the same (seed, series, kind) always gives the same
// UID, so a host that re-runs an interrupted analysis stores the same SEG/SR again (Orthanc
// replaces an instance with the same SOP Instance UID) instead of a duplicate.
// The UID is 2.25.<decimal of a 128-bit UUID> (PS3.5 B.2, ITU-T X.667): a version-8 (custom,
// RFC 9562) UUID made of the first 128 bits of SHA-256 over the inputs.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>

namespace unibiomed::pipeline {

// `kind` says which object or attribute the UID is for ("SEG series", "SR instance",
// "tracking 3"...). Throws nothing; any strings are accepted (an empty seed is a valid seed).
std::string derive_uid(const std::string& seed, const std::string& series_instance_uid, const std::string& kind);

// A fresh random seed (128 bits from std::random_device, hex) for hosts that give none.
std::string random_uid_seed();

}  // namespace unibiomed::pipeline
