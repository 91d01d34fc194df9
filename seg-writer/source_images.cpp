// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/source_images.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcdicent.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcvrui.h>

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>
#include <sstream>
#include <utility>

#include "dicom/pixel_calibration.h"
#include "dicom/size_rule.h"
#include "dicom/text_encoding.h"

namespace unibiomed::seg {
namespace {

// Direction cosines that differ by less than this are the same orientation (DICOM stores them
// as decimal strings; dcmjs and highdicom use 1e-3..1e-5).
constexpr double kOrientationTolerance = 1e-4;
// Relative tolerance for pixel spacing equality between instances.
constexpr double kSpacingTolerance = 1e-4;

std::string get_string(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  if (item.findAndGetOFStringArray(tag, value).bad()) return {};
  return value.c_str();
}

template <size_t N>
std::optional<std::array<double, N>> get_doubles(DcmItem& item, const DcmTagKey& tag) {
  std::array<double, N> values{};
  for (size_t i = 0; i < N; ++i) {
    Float64 v = 0;
    if (item.findAndGetFloat64(tag, v, static_cast<unsigned long>(i)).bad() || !std::isfinite(v)) return std::nullopt;
    values[i] = v;
  }
  return values;
}

// The first item of a sequence inside `item`, or null.
DcmItem* sequence_item(DcmItem& item, const DcmTagKey& sequence, long index = 0) {
  DcmItem* found = nullptr;
  if (item.findAndGetSequenceItem(sequence, found, index).bad()) return nullptr;
  return found;
}

// What `read` makes of a functional group macro: the per-frame group's when it gives a value,
// else the shared one's (PS3.3 C.7.6.16).
template <typename Read>
auto from_functional_groups(DcmItem* per_frame, DcmItem* shared, const DcmTagKey& group, Read read)
    -> decltype(read(std::declval<DcmItem&>())) {
  for (DcmItem* groups : {per_frame, shared}) {
    if (!groups) continue;
    if (DcmItem* macro = sequence_item(*groups, group)) {
      if (auto v = read(*macro)) return v;
    }
  }
  return std::nullopt;
}

// An attribute of N numbers of a functional group macro.
template <size_t N>
std::optional<std::array<double, N>> functional_group_value(DcmItem* per_frame, DcmItem* shared, const DcmTagKey& group,
                                                            const DcmTagKey& tag) {
  return from_functional_groups(per_frame, shared, group, [&](DcmItem& macro) { return get_doubles<N>(macro, tag); });
}

bool same_orientation(const std::array<double, 6>& a, const std::array<double, 6>& b) {
  for (size_t i = 0; i < 6; ++i)
    if (std::fabs(a[i] - b[i]) > kOrientationTolerance) return false;
  return true;
}

bool same_spacing(const std::array<double, 2>& a, const std::array<double, 2>& b) {
  for (size_t i = 0; i < 2; ++i)
    if (std::fabs(a[i] - b[i]) > kSpacingTolerance * std::max(1.0, std::fabs(a[i]))) return false;
  return true;
}

std::string describe_orientation(const std::array<double, 6>& o) {
  std::ostringstream s;
  for (size_t i = 0; i < 6; ++i) s << (i ? "\\" : "") << o[i];
  return s.str();
}

}  // namespace

SourceImages::SourceImages(std::vector<DcmDataset*> datasets) : SourceImages(std::move(datasets), nullptr) {}

SourceImages::SourceImages(std::vector<DcmDataset*> datasets, const FrameFilter& keep)
    : datasets_(std::move(datasets)) {
  if (datasets_.empty()) throw SegmentationError("no source images were given");
  std::set<std::string> seen;
  for (size_t i = 0; i < datasets_.size(); ++i) {
    if (!datasets_[i]) throw SegmentationError("source instance " + std::to_string(i + 1) + " is null");
    const size_t before = frames_.size();
    read_instance(i, keep);
    if (frames_.size() == before)
      throw SegmentationError("source instance " + std::to_string(i + 1) + " has none of the frames asked for");
    const std::string& sop = frames_.back().sop_instance_uid;
    if (!seen.insert(sop).second)
      throw SegmentationError("source instance " + std::to_string(i + 1) + " (SOP Instance UID " + sop +
                              ") was given twice");
  }
  // An orientation whose row and column directions are parallel (or zero) gives no plane.
  has_geometry_ =
      normal().has_value() && !frame_of_reference_uid_.empty() &&
      std::all_of(frames_.begin(), frames_.end(), [](const SourceFrame& f) { return f.position.has_value(); });
  if (!spacing_conflict_.empty()) {
    // Planes of one segmentation share their Pixel Measures; other images keep theirs per frame.
    if (has_geometry_) throw SegmentationError(spacing_conflict_);
    pixel_spacing_.reset();
  }
}

void SourceImages::read_instance(size_t index, const FrameFilter& keep) {
  DcmDataset& ds = *datasets_[index];
  const std::string sop_class = get_string(ds, DCM_SOPClassUID);
  const std::string sop_instance = get_string(ds, DCM_SOPInstanceUID);
  auto where = [&]() {
    return "source instance " + std::to_string(index + 1) +
           (sop_instance.empty() ? std::string() : " (SOP Instance UID " + sop_instance + ")");
  };
  if (sop_class.empty()) throw SegmentationError(where() + " has no SOP Class UID (0008,0016)");
  if (sop_instance.empty()) throw SegmentationError(where() + " has no SOP Instance UID (0008,0018)");
  const std::string study = get_string(ds, DCM_StudyInstanceUID);
  const std::string series = get_string(ds, DCM_SeriesInstanceUID);
  if (study.empty()) throw SegmentationError(where() + " has no Study Instance UID (0020,000D)");
  if (series.empty()) throw SegmentationError(where() + " has no Series Instance UID (0020,000E)");
  Uint16 rows = 0, columns = 0;
  if (ds.findAndGetUint16(DCM_Rows, rows).bad() || ds.findAndGetUint16(DCM_Columns, columns).bad() || rows == 0 ||
      columns == 0)
    throw SegmentationError(where() + " is not an image: Rows (0028,0010) or Columns (0028,0011) missing or zero");
  long frames = 1;
  if (ds.tagExistsWithValue(DCM_NumberOfFrames)) {
    Sint32 n = 0;
    if (ds.findAndGetSint32(DCM_NumberOfFrames, n).bad())
      throw SegmentationError(where() + " has an invalid Number of Frames (0028,0008): '" +
                              get_string(ds, DCM_NumberOfFrames) + "'");
    frames = std::max<Sint32>(1, n);  // "0" on a single frame, read as one like dicom/ does
  }
  const std::string frame_of_reference = get_string(ds, DCM_FrameOfReferenceUID);

  if (index == 0) {
    study_uid_ = study;
    series_uid_ = series;
    rows_ = rows;
    columns_ = columns;
    frame_of_reference_uid_ = frame_of_reference;
    modality_ = get_string(ds, DCM_Modality);
  } else {
    if (study != study_uid_)
      throw SegmentationError(where() + " belongs to study " + study + ", not to study " + study_uid_ +
                              " of the first source instance");
    if (series != series_uid_)
      throw SegmentationError(where() + " belongs to series " + series + ", not to series " + series_uid_ +
                              " of the first source instance: a segmentation references one series");
    if (rows != rows_ || columns != columns_)
      throw SegmentationError(where() + " has " + std::to_string(columns) + "x" + std::to_string(rows) +
                              " pixels, the first source instance " + std::to_string(columns_) + "x" +
                              std::to_string(rows_));
    if (frame_of_reference != frame_of_reference_uid_)
      throw SegmentationError(where() + " has Frame of Reference UID '" + frame_of_reference + "', the first '" +
                              frame_of_reference_uid_ + "'");
  }

  DcmItem* shared = sequence_item(ds, DCM_SharedFunctionalGroupsSequence);
  const bool enhanced = ds.tagExists(DCM_PerFrameFunctionalGroupsSequence);
  auto check_orientation = [&](const std::optional<std::array<double, 6>>& o, int frame) {
    if (!o) return;
    if (!orientation_) {
      orientation_ = o;
    } else if (!same_orientation(*orientation_, *o)) {
      throw SegmentationError(where() + (frame ? " frame " + std::to_string(frame) : std::string()) +
                              " has Image Orientation (Patient) " + describe_orientation(*o) + ", not " +
                              describe_orientation(*orientation_) +
                              ": the frames of a segmentation must share one orientation");
    }
  };
  // The frame's spacing, checked against the series' (the error waits for the geometry: it is
  // one only for planes in patient space).
  auto check_spacing = [&](const std::optional<std::array<double, 2>>& s, int frame,
                           const std::string& attribute) -> std::optional<std::array<double, 2>> {
    // "0\0", a negative or an absurd spacing states none (dicom/size_rule.h).
    if (!s || !dicom::is_size_mm((*s)[0]) || !dicom::is_size_mm((*s)[1])) return std::nullopt;
    if (!pixel_spacing_ && spacing_conflict_.empty()) {
      pixel_spacing_ = s;
    } else if (pixel_spacing_ && !same_spacing(*pixel_spacing_, *s) && spacing_conflict_.empty()) {
      spacing_conflict_ = where() + (frame ? " frame " + std::to_string(frame) : std::string()) +
                          " has a different pixel size (" + attribute + ") than the first source frame";
    }
    return s;
  };

  // Per-frame items are visited in order (DCMTK's indexed access walks the list from its start).
  DcmSequenceOfItems* per_frame_groups = nullptr;
  if (enhanced) ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per_frame_groups);
  DcmObject* per_frame_object = nullptr;
  bool per_frame_left = per_frame_groups != nullptr;
  for (long f = 1; f <= frames; ++f) {
    // The frame's per-frame item, in step with the frames whether the frame is kept or not. A
    // frame past the end of a sequence that is too short has only the shared groups: no
    // position, like a frame whose item lacks one (dicom/ leaves both out of its stacks).
    if (per_frame_left) {
      per_frame_object = per_frame_groups->nextInContainer(per_frame_object);
      per_frame_left = per_frame_object != nullptr;
    }
    if (keep && !keep(index, static_cast<int>(f))) continue;  // left out, unread
    SourceFrame frame;
    frame.instance = index;
    frame.sop_class_uid = sop_class;
    frame.sop_instance_uid = sop_instance;
    frame.frame_number = frames > 1 ? static_cast<int>(f) : 0;
    if (enhanced) {
      DcmItem* per_frame = per_frame_left ? OFstatic_cast(DcmItem*, per_frame_object) : nullptr;
      frame.position =
          functional_group_value<3>(per_frame, shared, DCM_PlanePositionSequence, DCM_ImagePositionPatient);
      check_orientation(
          functional_group_value<6>(per_frame, shared, DCM_PlaneOrientationSequence, DCM_ImageOrientationPatient),
          frame.frame_number);
      // Read as dicom/ reads it (exactly two sizes), so that the SEG and the measurements agree.
      frame.pixel_spacing = check_spacing(
          from_functional_groups(per_frame, shared, DCM_PixelMeasuresSequence,
                                 [](DcmItem& measures) { return dicom::two_sizes(measures, DCM_PixelSpacing); }),
          frame.frame_number, "PixelSpacing (0028,0030)");
      if (!slice_thickness_)
        if (auto t = functional_group_value<1>(per_frame, shared, DCM_PixelMeasuresSequence, DCM_SliceThickness))
          slice_thickness_ = (*t)[0];
    } else {
      // A classic instance: its one plane applies to its single frame. Classic multi-frame
      // images (ultrasound cine, secondary capture) have no per-frame position.
      if (frames == 1) frame.position = get_doubles<3>(ds, DCM_ImagePositionPatient);
      check_orientation(get_doubles<6>(ds, DCM_ImageOrientationPatient), 0);
      const dicom::PlaneSpacing spacing = dicom::plane_spacing(ds);
      frame.pixel_spacing = check_spacing(spacing.spacing, 0, spacing.source);
      frame.calibration_regions = spacing.regions;
      if (!slice_thickness_)
        if (auto t = get_doubles<1>(ds, DCM_SliceThickness)) slice_thickness_ = (*t)[0];
    }
    // Coordinates beyond 1 km place nothing (dicom/size_rule.h): no position, as dicom/ reads it.
    if (frame.position && !std::all_of(frame.position->begin(), frame.position->end(), dicom::is_coordinate_mm))
      frame.position.reset();
    frames_.push_back(std::move(frame));
  }
}

const SourceFrame& SourceImages::frame(size_t index) const {
  if (index >= frames_.size())
    throw SegmentationError("source frame index " + std::to_string(index) + " is out of range: the series has " +
                            std::to_string(frames_.size()) + " frames");
  return frames_[index];
}

DcmDataset& SourceImages::dataset(size_t instance) const {
  if (instance >= datasets_.size())
    throw SegmentationError("source instance index " + std::to_string(instance) + " is out of range");
  return *datasets_[instance];
}

std::optional<std::array<double, 3>> SourceImages::normal() const {
  if (!orientation_) return std::nullopt;
  const auto& o = *orientation_;
  std::array<double, 3> n{o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
  const double length = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
  if (length < 1e-6) return std::nullopt;
  for (auto& v : n) v /= length;
  return n;
}

ResultsHeader::ResultsHeader() = default;
ResultsHeader::ResultsHeader(ResultsHeader&&) noexcept = default;
ResultsHeader::~ResultsHeader() = default;

namespace {

// The value multiplicity the dictionary gives `tag`, as DcmElement::checkValue reads it ("1",
// "1-3", "1-n"), or "" when the tag is unknown (nothing to check).
std::string dictionary_vm(const DcmTagKey& tag) {
  const DcmDataDictionary& dictionary = dcmDataDict.rdlock();
  const DcmDictEntry* entry = dictionary.findEntry(tag, nullptr);
  std::string vm;
  if (entry) {
    const int low = entry->getVMMin(), high = entry->getVMMax();
    vm = std::to_string(low);
    if (high == DcmVariableVM)
      vm += "-n";
    else if (high != low)
      vm += "-" + std::to_string(high);
  }
  dcmDataDict.rdunlock();
  return vm;
}

// Text without the control characters its VR may not hold once it is UTF-8 (PS3.5 6.2): LT, ST
// and UT keep LF, FF and CR, and a TAB there becomes a space (those VRs do not allow it, and
// dciodvfy refuses it); no text keeps NUL, the other C0 bytes, ESC (which only serves ISO 2022
// code extensions) or DEL.
std::string without_control_characters(const std::string& text, DcmEVR vr) {
  const bool long_text = vr == EVR_LT || vr == EVR_ST || vr == EVR_UT;
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (long_text && u == '\t') {
      out.push_back(' ');
      continue;
    }
    const bool kept_format = long_text && (u == '\n' || u == '\f' || u == '\r');
    if ((u < 0x20 || u == 0x7f) && !kept_format) continue;
    out.push_back(c);
  }
  return out;
}

std::string why_refused(const OFCondition& check, const DcmElement& element, const std::string& vm) {
  const std::string vr = DcmVR(const_cast<DcmElement&>(element).ident()).getVRName();
  if (check == EC_ValueRepresentationViolated) return "is not a valid " + vr + " value";
  if (check == EC_MaximumLengthViolated) return "is longer than " + vr + " allows";
  if (check == EC_InvalidCharacter) return "has characters that " + vr + " does not allow";
  if (check == EC_ValueMultiplicityViolated)
    return "has " + std::to_string(const_cast<DcmElement&>(element).getVM()) + " values, not " + vm;
  return std::string("was refused (") + check.text() + ")";
}

// A date "1997.04.24" or time "14:04:38(.123)" in the form of ACR-NEMA (and of old scanners) in
// the DA or TM form ("19970424", "140438.123"); any other value as it is.
std::string current_form(const std::string& value, DcmEVR vr) {
  static const std::regex old_date(R"(\s*(\d{4})\.(\d{2})\.(\d{2})\s*)");
  static const std::regex old_time(R"(\s*(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?\s*)");
  std::smatch m;
  if (vr == EVR_DA && std::regex_match(value, m, old_date)) return m.str(1) + m.str(2) + m.str(3);
  if (vr == EVR_TM && std::regex_match(value, m, old_time)) return m.str(1) + m.str(2) + m.str(3) + m.str(4);
  return value;
}

}  // namespace

bool is_valid_uid(const std::string& uid) {
  return !uid.empty() && DcmUniqueIdentifier::checkStringValue(uid.c_str(), "1").good();
}

ResultsHeader results_header(DcmDataset& source) {
  ResultsHeader out;
  out.dataset = std::make_unique<DcmDataset>();
  DcmDataset& header = *out.dataset;
  for (unsigned long i = 0; i < source.card(); ++i) {
    DcmElement* element = source.getElement(i);
    const Uint16 group = element->getGTag();
    if (group != 0x0008 && group != 0x0010 && group != 0x0020) continue;
    header.insert(OFstatic_cast(DcmElement*, element->clone()), true);
  }
  // Never fails: DCMTK's converter cannot read Japanese with iconv (ISO 2022 IR 87), and text that
  // its declared set does not explain must not cost the study its results.
  dicom::convert_to_utf8(header, &out.changed);

  std::vector<DcmElement*> elements;
  for (unsigned long i = 0; i < header.card(); ++i) elements.push_back(header.getElement(i));
  for (DcmElement* element : elements) {
    const DcmTagKey tag = element->getTag();
    const DcmEVR vr = element->ident();
    if (tag == DCM_SpecificCharacterSet || !DcmVR(vr).isaString()) continue;
    OFString raw;
    if (element->getOFStringArray(raw).bad()) continue;
    std::string value(raw.c_str(), raw.length());
    if (vr != EVR_UI) {
      const std::string clean = without_control_characters(value, vr);
      if (clean != value) {
        element->putOFStringArray(OFString(clean.c_str(), clean.size()));
        value = clean;
      }
    }
    if (const std::string current = current_form(value, vr); current != value) {
      element->putOFStringArray(OFString(current.c_str(), current.size()));
      out.changed.push_back(std::string(DcmTag(tag).getTagName()) + " " + tag.toString().c_str() + " '" + value +
                            "': the ACR-NEMA form of a " + DcmVR(vr).getVRName() + ", written as " + current);
      value = current;
    }
    const std::string vm = dictionary_vm(tag);
    if (vm.empty()) continue;
    const OFCondition check = element->checkValue(vm.c_str(), OFTrue /* as DCMTK's IOD writer checks */);
    if (check.good()) continue;
    if (vr == EVR_UI) {
      out.restore.emplace_back(tag, value);
      element->putString(kStandInUid);
      continue;
    }
    const std::string shown = value.size() > 64 ? dicom::valid_utf8(value.substr(0, 64)) + "..." : value;
    out.left_out.push_back(std::string(DcmTag(tag).getTagName()) + " " + tag.toString().c_str() + " '" + shown + "' " +
                           why_refused(check, *element, vm));
    delete header.remove(element);
  }
  return out;
}

ResultsHeader SourceImages::header_in_utf8() const {
  return results_header(*datasets_.front());
}

std::vector<size_t> SourceImages::frames_in_slice_order() const {
  std::vector<size_t> order(frames_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto n = normal();
  if (!has_geometry_ || !n) return order;
  auto along = [&](size_t i) {
    const auto& p = *frames_[i].position;
    return p[0] * (*n)[0] + p[1] * (*n)[1] + p[2] * (*n)[2];
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return along(a) < along(b); });
  return order;
}

std::optional<double> SourceImages::slice_spacing() const {
  const auto n = normal();
  if (!has_geometry_ || !n) return std::nullopt;
  std::vector<double> along;
  for (const auto& f : frames_) {
    const auto& p = *f.position;
    along.push_back(p[0] * (*n)[0] + p[1] * (*n)[1] + p[2] * (*n)[2]);
  }
  std::sort(along.begin(), along.end());
  std::vector<double> gaps;
  for (size_t i = 1; i < along.size(); ++i)
    if (along[i] - along[i - 1] > 1e-3) gaps.push_back(along[i] - along[i - 1]);
  if (gaps.empty()) return std::nullopt;
  std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
  return gaps[gaps.size() / 2];
}

}  // namespace unibiomed::seg
