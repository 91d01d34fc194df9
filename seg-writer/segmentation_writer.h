// Writes a DICOM Segmentation (PS3.3 A.51) for findings with masks on the frames of one source
// series: a new series in the source study, one segment per finding, frames aligned with the
// source frames (docs/DICOM-OUTPUT.md lists what OHIF, Slicer and the validators need).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seg-writer/segment_description.h"
#include "seg-writer/source_images.h"

class DcmFileFormat;

namespace unibiomed::seg {

// One source frame's mask: Rows x Columns values in row-major order (pixel (column c, row r) at
// r * Columns + c), either binary (non-zero = inside) or probabilities in [0, 1].
struct FrameMask {
  std::size_t frame = 0;             // index into SourceImages
  std::vector<std::uint8_t> binary;  // set this...
  std::vector<float> probability;    // ...or this
};

struct Segment {
  SegmentDescription description;
  std::vector<FrameMask> masks;  // frames not listed are empty; each frame at most once
};

struct SegmentationOptions {
  enum class Type {
    // BINARY when Rows x Columns is a multiple of 8 (every frame starts on a byte boundary),
    // otherwise FRACTIONAL / OCCUPANCY holding only 0 and 255 (the thresholded mask, one byte per
    // pixel). OHIF 3.13.2 misdraws binary frames that begin in the middle of a byte and rejects
    // padded odd-length binary pixel data; it draws this fractional form exactly
    // (docs/DICOM-OUTPUT.md). Also fractional when binary frames of an odd byte count, an odd
    // number of them, would need a padding byte: every segment has a frame on every source frame.
    Automatic,
    Binary,      // one bit per pixel; probabilities are thresholded
    Fractional,  // FRACTIONAL / PROBABILITY, 8 bits per pixel, 255 = certainty (PS3.3 C.8.20.2.3)
  };
  Type type = Type::Automatic;
  float threshold = 0.5f;         // probability >= threshold is inside, for a binary SEG
  bool omit_empty_frames = true;  // false: every source frame is written for every segment

  // Series and equipment. SeriesDescription and Manufacturer name the algorithm, so that a
  // reporting system finds results over QIDO (Orthanc indexes both, not SOP Class UID).
  AlgorithmIdentity algorithm;     // Manufacturer = algorithm name
  std::string series_description;  // default "<algorithm name> segmentation"
  int series_number = 9001;
  int instance_number = 1;
  std::string device_serial_number = "1";      // Enhanced General Equipment Module, type 1
  std::string software_versions;               // default: the algorithm version
  std::string content_label = "SEGMENTATION";  // Content Label (CS, 16 characters)
  std::string content_creator = "UniBiomed^";  // Content Creator's Name (PN: family^given)

  // UIDs: given, or derived from uid_seed (deterministic), or random when both are empty.
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::string uid_seed;
};

struct WrittenSegmentation {
  std::unique_ptr<DcmFileFormat> file;  // the SEG, ready for save_part10 / part10_bytes
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::size_t number_of_frames = 0;
  bool segments_overlap = false;
  // The form written: "BINARY", or "FRACTIONAL" with its type ("OCCUPANCY" for a thresholded
  // mask stored as 0/255, "PROBABILITY" for probabilities).
  std::string segmentation_type;
  std::string fractional_type;
  // 1-based number of the empty frame added so that the pixel data has an even length without a
  // padding byte (OHIF 3.13.2 cannot split padded byte-aligned frames); 0 when none was needed
  // or no segment had a source frame free for it (docs/DICOM-OUTPUT.md).
  std::size_t padding_frame = 0;
  // Per segment (number = index + 1): its tracking UID as written and the source frames that
  // have a frame in the SEG, in frame order.
  std::vector<std::string> tracking_uids;
  std::vector<std::vector<std::size_t>> frames_per_segment;

  WrittenSegmentation();
  WrittenSegmentation(WrittenSegmentation&&) noexcept;
  WrittenSegmentation& operator=(WrittenSegmentation&&) noexcept;
  ~WrittenSegmentation();
};

// The form Type::Automatic chooses for frames of `rows` x `columns`: Binary or Fractional.
SegmentationOptions::Type automatic_type(std::size_t rows, std::size_t columns);

// Builds the SEG. Returns std::nullopt when there is nothing to write (no segments). Throws
// SegmentationError naming the segment and frame for bad input: a mask of the wrong size, both
// or neither of binary/probability set, a frame index out of range or given twice, a segment
// without any pixel inside, missing codes or label, a probability outside [0, 1].
std::optional<WrittenSegmentation> write_segmentation(const SourceImages& sources, const std::vector<Segment>& segments,
                                                      const SegmentationOptions& options = {});

}  // namespace unibiomed::seg
