// One DICOM instance as the rest of the node sees it: identity, pixel layout and per-frame
// geometry, read from a Part 10 file or from bytes in memory (what the Orthanc plugin gets).
// Classic one-slice-per-file images and enhanced multi-frame images (shared and per-frame
// functional groups, PS3.3 C.7.6.16) give the same FrameInfo records, so volumes, views and
// the SEG/SR writers never look at where a value came from.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dicom/error.h"
#include "dicom/pixel_calibration.h"

class DcmDataset;  // DCMTK; only the writers need it (Instance::dataset()).
class DcmFileFormat;

namespace unibiomed::dicom {

using Vec3 = std::array<double, 3>;

// Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1): what a result in the same study
// must repeat.
struct StudyIdentity {
  std::string patient_id;
  std::string patient_name;
  std::string patient_birth_date;
  std::string patient_sex;
  std::string study_instance_uid;
  std::string study_date;
  std::string study_time;
  std::string study_id;
  std::string accession_number;
  std::string study_description;
  std::string referring_physician_name;
};

// General Series module (PS3.3 C.7.3.1) plus the attributes the modality classification reads.
struct SeriesIdentity {
  std::string series_instance_uid;
  std::string modality;  // (0008,0060), e.g. "CT"
  std::string series_description;
  std::string body_part_examined;  // (0018,0015)
  std::string manufacturer;
  std::string series_date;
  std::string series_time;
  int series_number = 0;  // 0 when absent
};

// A VOI window (PS3.3 C.11.2.1.2): center/width in modality units and the LUT function
// (LINEAR, LINEAR_EXACT or SIGMOID).
struct WindowSetting {
  double center = 0;
  double width = 0;
  std::string function = "LINEAR";
  std::string explanation;
};

// One frame (slice) of an instance: what volumes, views and the writers need per frame.
struct FrameInfo {
  int frame_number = 1;                                    // 1-based within the instance
  std::optional<Vec3> image_position;                      // ImagePositionPatient (0020,0032), mm
  std::optional<std::array<double, 6>> image_orientation;  // ImageOrientationPatient (0020,0037): row, column cosines
  // PixelSpacing (0028,0030): [0] = between rows (vertical, mm), [1] = between columns (horizontal).
  std::optional<std::array<double, 2>> pixel_spacing;
  // An ultrasound image's 2D regions calibrated in cm, when its scale comes from them (set even
  // where their scales differ and pixel_spacing is unset): a finding is measured with the scale
  // of the regions it lies in (dicom/pixel_calibration.h mask_spacing).
  std::vector<CalibratedRegion> calibration_regions;
  std::optional<double> slice_thickness;  // (0018,0050), mm
  double rescale_slope = 1;               // Modality LUT, PS3.3 C.11.1
  double rescale_intercept = 0;
  std::string rescale_type;            // e.g. "HU" (0028,1054), may be empty
  std::vector<WindowSetting> windows;  // VOI windows, first is the default
  // Whole-slide tiles: 1-based column/row of the tile's top-left pixel in the Total Pixel
  // Matrix (PS3.3 C.8.12.6.1), from PlanePositionSlideSequence (TILED_SPARSE) or derived from
  // the frame order (TILED_FULL, C.8.12.4.1.3).
  std::optional<std::array<int, 2>> tile_position;
  int focal_plane = 1;                    // 1-based; whole slides with several planes
  std::string stack_id;                   // FrameContentSequence StackID, may be empty
  std::vector<uint32_t> dimension_index;  // FrameContentSequence DimensionIndexValues
};

// Image Pixel module (PS3.3 C.7.6.3) as stored.
struct PixelLayout {
  bool has_pixel_data = false;  // (7FE0,0010) present
  bool encapsulated = false;    // compressed transfer syntax
  int rows = 0;
  int columns = 0;
  int samples_per_pixel = 0;
  int bits_allocated = 0;
  int bits_stored = 0;
  int high_bit = 0;
  int pixel_representation = 0;  // 0 unsigned, 1 two's complement
  int planar_configuration = 0;  // 0 colour-by-pixel, 1 colour-by-plane
  std::string photometric_interpretation;
  int number_of_frames = 1;
  bool has_modality_lut_sequence = false;  // (0028,3000)
  bool has_voi_lut_sequence = false;       // (0028,3010)
};

// VL Whole Slide Microscopy attributes (PS3.3 C.8.12.4, C.8.12.6) of one pyramid level.
struct SlideLevelInfo {
  int total_pixel_matrix_columns = 0;  // (0048,0006)
  int total_pixel_matrix_rows = 0;     // (0048,0007)
  int total_pixel_matrix_focal_planes = 1;
  std::string dimension_organization_type;  // (0020,9311): TILED_FULL, TILED_SPARSE, 3D...
  double imaged_volume_width_mm = 0;        // (0048,0001)
  double imaged_volume_height_mm = 0;       // (0048,0002)
  std::string image_flavor;                 // ImageType value 3: VOLUME, LABEL, OVERVIEW, THUMBNAIL
};

// One instance. Copies share the parsed dataset (cheap); the pixel data of a file is loaded
// only when a frame is decoded. Not safe for concurrent use from several threads.
class Instance {
 public:
  // Throws DicomError naming the file when it is not DICOM, is truncated or lacks SOP Class
  // UID / SOP Instance UID. Everything else (a missing Rows, an unsupported transfer syntax)
  // is reported later by image_problem() so that inspect can list non-image objects too.
  static Instance read_file(const std::filesystem::path& path);
  // Bytes of a Part 10 file (or a bare dataset in implicit/explicit VR little endian);
  // `source` names it in messages (an Orthanc instance id, a file name).
  static Instance read_bytes(const std::vector<uint8_t>& bytes, const std::string& source);

  const std::string& source() const { return source_; }
  const std::string& sop_class_uid() const { return sop_class_uid_; }
  const std::string& sop_instance_uid() const { return sop_instance_uid_; }
  const std::string& transfer_syntax_uid() const { return transfer_syntax_uid_; }
  const std::string& frame_of_reference_uid() const { return frame_of_reference_uid_; }
  const std::vector<std::string>& image_type() const { return image_type_; }
  int instance_number() const { return instance_number_; }
  int acquisition_number() const { return acquisition_number_; }
  const StudyIdentity& study() const { return study_; }
  const SeriesIdentity& series() const { return series_; }
  const PixelLayout& pixels() const { return pixels_; }
  const std::vector<FrameInfo>& frames() const { return frames_; }
  const FrameInfo& frame(int frame_number) const;  // 1-based; throws DicomError when out of range
  const std::optional<SlideLevelInfo>& slide() const { return slide_; }
  // Nominal time between cine frames in ms (FrameTime (0018,1063)), 0 when absent.
  double frame_time_ms() const { return frame_time_ms_; }
  // Attributes the modality classification reads beyond the identity.
  const std::string& attribute_text(const std::string& keyword) const;

  // Why the pixels of this instance cannot be used as an image ("" when they can): missing
  // Pixel Data, Rows, Columns, Bits Allocated, an unknown photometric interpretation, a
  // transfer syntax that no codec here decodes... naming the file and the attribute.
  std::string image_problem() const;
  // Uncompressed pixel data that holds more whole frames than NumberOfFrames declares (or than
  // the one frame an instance without it has): what is read and what is not, naming the file;
  // "" otherwise. The declared frames are read; the rest cannot be placed (no per-frame data).
  std::string frame_count_note() const;
  bool is_multiframe() const { return pixels_.number_of_frames > 1; }

  // The parsed dataset, for the SEG/SR writers (DCMTK API). Never null.
  DcmDataset* dataset() const;

 private:
  Instance() = default;
  void extract(const std::string& source);

  std::shared_ptr<DcmFileFormat> file_;
  std::shared_ptr<void> keep_alive_;  // the in-memory file behind read_bytes(), if any
  std::string source_;
  std::string sop_class_uid_, sop_instance_uid_, transfer_syntax_uid_, frame_of_reference_uid_;
  std::vector<std::string> image_type_;
  int instance_number_ = 0;
  int acquisition_number_ = 0;
  StudyIdentity study_;
  SeriesIdentity series_;
  PixelLayout pixels_;
  std::vector<FrameInfo> frames_;
  std::optional<SlideLevelInfo> slide_;
  double frame_time_ms_ = 0;
  std::vector<std::pair<std::string, std::string>> extra_;  // keyword -> text, see attribute_text
};

// The largest frame decoded (1 GiB: a 16k x 16k RGB tile; whole slides come in tiles).
inline constexpr unsigned long long kMaxFrameBytes = 1ull << 30;

// Transfer syntaxes whose pixel data this module decodes (DCMTK: uncompressed, deflate, RLE,
// JPEG baseline/extended/lossless, JPEG-LS; GDCM: JPEG 2000).
bool is_decodable_transfer_syntax(const std::string& uid);
// A readable name for a transfer syntax UID ("JPEG 2000 Lossless"), or the UID itself.
std::string transfer_syntax_name(const std::string& uid);

}  // namespace unibiomed::dicom
