// What one segment of a Segmentation is: its label, what it shows (coded), how it is drawn and
// which algorithm made it. Shared with sr-writer, whose measurement groups describe the same
// findings (same tracking identifiers, same codes).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace unibiomed::seg {

// A coded concept as in the Code Sequence Macro (PS3.3 Table 8.8-1): Code Value (0008,0100),
// Coding Scheme Designator (0008,0102), Code Meaning (0008,0104).
struct CodedConcept {
  std::string value;
  std::string scheme;
  std::string meaning;

  bool empty() const { return value.empty() && scheme.empty() && meaning.empty(); }
  bool operator==(const CodedConcept& other) const {
    return value == other.value && scheme == other.scheme && meaning == other.meaning;
  }
};

// Codes used by default (SNOMED CT, CID 7150 / 7151, as in docs/DICOM-OUTPUT.md).
namespace codes {
inline CodedConcept morphologically_abnormal_structure() {
  return {"49755003", "SCT", "Morphologically Abnormal Structure"};
}
inline CodedConcept lesion() {
  return {"52988006", "SCT", "Lesion"};
}
inline CodedConcept anatomical_structure() {
  return {"91723000", "SCT", "Anatomical Structure"};
}
// Algorithm Family (CID 7162).
inline CodedConcept artificial_intelligence() {
  return {"123110", "DCM", "Artificial Intelligence"};
}
}  // namespace codes

// sRGB, 8 bits per channel; converted to RecommendedDisplayCIELabValue (PS3.3 C.10.7.1.1).
struct RgbColour {
  std::uint8_t red = 0;
  std::uint8_t green = 0;
  std::uint8_t blue = 0;
};

// The algorithm that produced a result: Algorithm Identification Macro (PS3.3 Table 10-19) in
// the SEG, TID 4019 in the SR.
struct AlgorithmIdentity {
  std::string name = "UniBiomed";
  std::string version;     // e.g. the node's version
  std::string parameters;  // free text; the node writes the model's weights hash here
  CodedConcept family = codes::artificial_intelligence();
};

// One segment (one finding's mask) as the Segment Description Macro (PS3.3 C.8.20.4.1) states it.
struct SegmentDescription {
  std::string label;                                                    // Segment Label, e.g. "Liver"
  std::string description;                                              // Segment Description (optional free text)
  CodedConcept category = codes::morphologically_abnormal_structure();  // CID 7150
  CodedConcept type = codes::lesion();                                  // CID 7151
  std::optional<CodedConcept> anatomic_region;                          // CID 4031, when the type does not imply it
  // Segmented Property Type Modifier (CID 244 Laterality for a side of a paired organ, e.g.
  // (24028007, SCT, "Right")), written within the type's item.
  std::optional<CodedConcept> type_modifier;
  RgbColour colour{255, 0, 0};
  std::string tracking_id;   // human-readable, shared with the SR group
  std::string tracking_uid;  // shared with the SR group; empty = derived
  AlgorithmIdentity algorithm;
};

}  // namespace unibiomed::seg
