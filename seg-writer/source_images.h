// The source series that a Segmentation and a Measurement Report reference: every frame with
// its SOP reference and its geometry, read once from the source DcmDatasets. A frame is one
// classic single-frame instance, or one frame of a multi-frame instance (enhanced or not).
// The pipeline addresses masks by frame index in this list.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctagkey.h>

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dicom/pixel_calibration.h"

class DcmDataset;

namespace unibiomed::seg {

// The one error type leaving seg-writer/: the message names the instance, frame, segment or
// tag that is wrong.
class SegmentationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the result objects take over from their source: the first instance's patient, study,
// series and frame-of-reference attributes (groups 0008, 0010 and 0020, no pixel data) in UTF-8
// (ISO_IR 192), the character set of their own text (labels, the model's sentences). A source
// without Specific Character Set whose text is not ASCII is read as ISO_IR 100.
//
// Values that break their VR or VM (PS3.5 6.2: an age "45Y", a date "20241399", a time
// "10:20:30", a sex "male") would make DCMTK refuse to write the SEG, so they are left out, each
// listed in `left_out`. UIDs are identities and are kept as they are, even where they break the
// UI rules (a component with a leading zero, "1.2.840.0123", is common in older archives): they
// hold a valid stand-in in `dataset`, and `restore` says what to put back once DCMTK has
// written. Control characters that text may not hold (NUL padding, stray C0 bytes) are removed.
// Dates and times in the ACR-NEMA form are written in the DA and TM form, listed in `changed`
// with every text value whose character set had to be guessed.
struct ResultsHeader {
  std::unique_ptr<DcmDataset> dataset;
  std::vector<std::string> left_out;  // e.g. "PatientAge (0010,1010) '45Y' is not a valid AS value"
  // Values written otherwise than the source has them, and why: text whose character set had to
  // be guessed (dicom::convert_to_utf8), a date or time in the ACR-NEMA form "1997.04.24",
  // "14:04:38" written as a DA or TM ("19970424", "140438").
  std::vector<std::string> changed;
  std::vector<std::pair<DcmTagKey, std::string>> restore;
  ResultsHeader();
  ResultsHeader(ResultsHeader&&) noexcept;
  ~ResultsHeader();
};
ResultsHeader results_header(DcmDataset& source);
// The stand-in value of such a UID.
inline constexpr const char* kStandInUid = "1.2.3";

// True when DCMTK accepts `uid` as a UID value (digits and dots, no leading zero, at most 64).
bool is_valid_uid(const std::string& uid);

struct SourceFrame {
  std::size_t instance = 0;  // index of the dataset it comes from
  std::string sop_class_uid;
  std::string sop_instance_uid;
  int frame_number = 0;  // 1-based frame in a multi-frame instance, 0 for a single-frame one
  // Image Position (Patient) of this frame's first pixel centre, when the series has geometry.
  std::optional<std::array<double, 3>> position;
  // This frame's pixel size (mm between rows, then between columns), as pixel_spacing() says.
  std::optional<std::array<double, 2>> pixel_spacing;
  // An ultrasound image's 2D regions calibrated in cm, when its scale comes from them (also
  // where their scales differ and pixel_spacing is unset): a finding's outline is measured with
  // the scale of the regions it lies in (dicom::mask_spacing), as dicom/ measures it.
  std::vector<dicom::CalibratedRegion> calibration_regions;
};

class SourceImages {
 public:
  // Reads the frames of `datasets` in the given order (instance by instance, frames in order).
  // The datasets are not copied: they must outlive this object. Throws SegmentationError when
  // they do not form one image series (mixed studies or series, mixed frames of reference,
  // different Rows/Columns or orientation, missing SOP or study identifiers), naming the
  // instance at fault.
  explicit SourceImages(std::vector<DcmDataset*> datasets);
  // Only the frames `keep` accepts (dataset index, 1-based frame number; 1 for a single-frame
  // instance): the others are neither frames of the segmentation nor checked against it, e.g. the
  // frames of other orientations in an enhanced multi-frame instance (a 3-plane localizer) whose
  // SEG covers one stack. Each dataset must keep at least one frame.
  using FrameFilter = std::function<bool(std::size_t dataset, int frame_number)>;
  SourceImages(std::vector<DcmDataset*> datasets, const FrameFilter& keep);

  std::size_t frame_count() const { return frames_.size(); }
  const SourceFrame& frame(std::size_t index) const;
  const std::vector<SourceFrame>& frames() const { return frames_; }
  std::size_t instance_count() const { return datasets_.size(); }
  DcmDataset& dataset(std::size_t instance) const;

  unsigned rows() const { return rows_; }
  unsigned columns() const { return columns_; }
  const std::string& study_instance_uid() const { return study_uid_; }
  const std::string& series_instance_uid() const { return series_uid_; }
  const std::string& frame_of_reference_uid() const { return frame_of_reference_uid_; }
  const std::string& modality() const { return modality_; }

  // True when every frame has a position, the series has one usable orientation (row and
  // column directions not parallel) and a frame of reference: frames are then planes in patient
  // space (CT, MR, PET...). False for projection images, photographs, multi-frame images without
  // per-frame positions, and when a position or the orientation is missing or not numeric.
  // Pixel spacing is not part of it: a SEG states its geometry only with one as well.
  bool has_geometry() const { return has_geometry_; }
  // Image Orientation (Patient): row direction cosines then column direction cosines.
  const std::optional<std::array<double, 6>>& orientation() const { return orientation_; }
  // Pixel Spacing: distance between rows, then between columns, in mm (Pixel Spacing, or the
  // Pixel Measures functional group, or Imager Pixel Spacing for projection images, or the
  // ultrasound regions' calibration: dicom/pixel_calibration.h), when the frames that state one
  // agree. Images without plane geometry may differ (two radiographs of one size taken at
  // different detector pixel sizes): then there is none for the series, and each frame keeps
  // its own (SourceFrame::pixel_spacing). Planes in patient space must agree: the constructor
  // refuses them otherwise.
  const std::optional<std::array<double, 2>>& pixel_spacing() const { return pixel_spacing_; }
  const std::optional<double>& slice_thickness() const { return slice_thickness_; }

  // Unit normal of the image planes (row cosines x column cosines), when oriented.
  std::optional<std::array<double, 3>> normal() const;
  // Frame indices sorted by position along the normal (ascending), ties and frames without
  // geometry kept in the given order. This is the order of a volume's slices.
  std::vector<std::size_t> frames_in_slice_order() const;
  // Median distance between successive distinct slice positions along the normal (mm), when
  // there are two or more; used for volumes.
  std::optional<double> slice_spacing() const;

  // results_header() of the first instance.
  ResultsHeader header_in_utf8() const;

 private:
  // Reads the frames of dataset `index` that `keep` accepts (all when it is empty).
  void read_instance(std::size_t index, const FrameFilter& keep);

  std::vector<DcmDataset*> datasets_;
  std::vector<SourceFrame> frames_;
  unsigned rows_ = 0, columns_ = 0;
  std::string study_uid_, series_uid_, frame_of_reference_uid_, modality_;
  bool has_geometry_ = false;
  std::optional<std::array<double, 6>> orientation_;
  std::optional<std::array<double, 2>> pixel_spacing_;
  std::string spacing_conflict_;  // the first frame whose spacing differs, as the error names it
  std::optional<double> slice_thickness_;
};

}  // namespace unibiomed::seg
