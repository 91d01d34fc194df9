// Private to dicom/: small typed accessors over DCMTK items, shared by the .cpp files of the
// module. Not part of the public API (no other module includes it).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dctag.h>

#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace unibiomed::dicom::internal {

// "ImagePositionPatient (0020,0032)": how every message names an attribute.
inline std::string tag_name(const DcmTagKey& key) {
  DcmTag tag(key);
  char code[16];
  std::snprintf(code, sizeof code, "(%04X,%04X)", key.getGroup(), key.getElement());
  const char* name = tag.getTagName();
  if (!name || std::string(name) == "Unknown Tag & Data") return std::string("tag ") + code;
  return std::string(name) + " " + code;
}

inline std::string get_string(DcmItem* item, const DcmTagKey& key) {
  OFString value;
  if (item && item->findAndGetOFStringArray(key, value).good()) {
    std::string s = value.c_str();
    // Trailing spaces are padding (PS3.5 6.2); leading ones are not significant for the VRs read here.
    const auto end = s.find_last_not_of(' ');
    const auto begin = s.find_first_not_of(' ');
    return end == std::string::npos ? std::string() : s.substr(begin, end - begin + 1);
  }
  return {};
}

inline std::string get_string_at(DcmItem* item, const DcmTagKey& key, unsigned long index) {
  OFString value;
  if (item && item->findAndGetOFString(key, value, index).good()) {
    std::string s = value.c_str();
    const auto end = s.find_last_not_of(' ');
    const auto begin = s.find_first_not_of(' ');
    return end == std::string::npos ? std::string() : s.substr(begin, end - begin + 1);
  }
  return {};
}

// Numbers are finite or absent: DCMTK reads DS "nan" and "inf" as such.
inline std::optional<double> get_double(DcmItem* item, const DcmTagKey& key, unsigned long index = 0) {
  Float64 value = 0;
  if (item && item->findAndGetFloat64(key, value, index).good() && std::isfinite(value)) return value;
  return std::nullopt;
}

inline std::optional<long> get_integer(DcmItem* item, const DcmTagKey& key, unsigned long index = 0) {
  if (!item) return std::nullopt;
  Uint16 u16 = 0;
  if (item->findAndGetUint16(key, u16, index).good()) return long(u16);
  Sint32 s32 = 0;
  if (item->findAndGetSint32(key, s32, index).good()) return long(s32);
  Uint32 u32 = 0;
  if (item->findAndGetUint32(key, u32, index).good()) return long(u32);
  Sint16 s16 = 0;
  if (item->findAndGetSint16(key, s16, index).good()) return long(s16);
  return std::nullopt;
}

// Every value of a multi-valued numeric attribute (DS, FD, IS...), or nullopt when the
// attribute is absent or does not hold exactly `count` values (count 0 = any number).
inline std::optional<std::vector<double>> get_doubles(DcmItem* item, const DcmTagKey& key, unsigned long count) {
  DcmElement* element = nullptr;
  if (!item || item->findAndGetElement(key, element).bad() || !element) return std::nullopt;
  const unsigned long vm = element->getVM();
  if (vm == 0 || (count && vm != count)) return std::nullopt;
  std::vector<double> values(vm);
  for (unsigned long i = 0; i < vm; ++i) {
    Float64 v = 0;
    if (element->getFloat64(v, i).bad() || !std::isfinite(v)) return std::nullopt;
    values[i] = v;
  }
  return values;
}

// Item 0 of a sequence nested in `item`, or null.
inline DcmItem* first_item(DcmItem* item, const DcmTagKey& sequence) {
  DcmItem* found = nullptr;
  if (item && item->findAndGetSequenceItem(sequence, found, 0).good()) return found;
  return nullptr;
}

inline DcmSequenceOfItems* sequence_of(DcmItem* item, const DcmTagKey& sequence) {
  DcmSequenceOfItems* found = nullptr;
  if (item && item->findAndGetSequence(sequence, found).good()) return found;
  return nullptr;
}

}  // namespace unibiomed::dicom::internal
