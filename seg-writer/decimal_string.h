// Decimal String (DS) values for numbers the writers compute: at most 16 characters (PS3.5
// Table 6.2-1), as precise as fits.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdio>
#include <cstring>
#include <string>

namespace unibiomed::seg {

inline std::string format_ds(double value) {
  char buffer[64];
  for (int precision = 16; precision > 1; --precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, value);
    if (std::strlen(buffer) <= 16) return buffer;
  }
  std::snprintf(buffer, sizeof buffer, "%.1e", value);
  return buffer;
}

inline std::string format_ds_list(const double* values, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i) out += (i ? "\\" : "") + format_ds(values[i]);
  return out;
}

}  // namespace unibiomed::seg
