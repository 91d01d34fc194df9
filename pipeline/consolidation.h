// From the model's per-slice masks of one target to findings: connected components across the
// analysed frames (3D for a slice stack, through time for cine), noise components dropped,
// one finding per structure or per lesion, the label that the slices agree on, measurements
// from the real geometry and a confidence from the mask probabilities and the IoU head.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dicom/pixel_calibration.h"
#include "pipeline/measurements.h"

namespace unibiomed::pipeline {

// One analysed source frame, in the order the frames were analysed (slice order for a stack).
struct AnalysedFrame {
  size_t instance_index = 0;  // into the series' instances
  int frame_number = 1;       // 1-based within that instance
  std::string sop_instance_uid;
  int columns = 0;
  int rows = 0;
  double column_spacing = 0;       // mm (PixelSpacing[1]); 0 = unknown
  double row_spacing = 0;          // mm (PixelSpacing[0]); 0 = unknown
  std::optional<double> position;  // mm along the stack normal, for slices of a stack
  // The extent of the frame's whole stack along the normal, in the coordinate of `position`:
  // [first slice - spacing/2, last slice + spacing/2] (dicom::SliceStack::slice_spacing), mm.
  // Set with `position` on the slices of a stack with a known spacing, also when only some of
  // its slices were analysed, so that the end slabs reach the stack's own ends; unset otherwise.
  std::optional<std::array<double, 2>> stack_extent;
  // Where the patient's left lies: the patient x coordinate (LPS, growing toward the patient's
  // left) of the centre of pixel (column, row) is left_at[0] + left_at[1] * column +
  // left_at[2] * row: in mm from the image plane (ImagePositionPatient, ImageOrientationPatient)
  // when left_in_mm, else in pixels from PatientOrientation (projection images). Unset when the
  // image says neither.
  std::optional<std::array<double, 3>> left_at;
  bool left_in_mm = false;
  // An ultrasound frame's regions calibrated in cm (dicom::FrameInfo::calibration_regions): a
  // finding on it is measured with the scale of the regions it lies in, not with the spacing
  // above (which is set only where they all agree).
  std::vector<dicom::CalibratedRegion> calibration_regions;
};

// The model's mask of the target on one analysed frame, already on the source pixel grid.
struct FrameMask {
  size_t frame = 0;                  // index into the AnalysedFrame list
  std::vector<uint8_t> mask;         // columns x rows, non-zero = inside
  std::vector<uint8_t> probability;  // sigmoid probability x 255 (rounded), same size; empty = unknown
  double iou = 0;                    // the IoU head's prediction for this mask
  std::string phrase;                // what the model called it (disease recognition, report)
  std::string text;                  // the sentence a reader reads (report_text.h finding_sentence)
  std::string answer;                // the model's answer as it gave it
};

struct ConsolidationOptions {
  // Frames are neighbours in order (slices of one stack, frames of one cine): components
  // connect across consecutive frames. Otherwise each frame is an image of its own.
  bool frames_are_sequence = false;
  // One finding for all components (an organ) or one per component (lesions).
  bool one_finding_per_component = false;
  // Components smaller than this are noise: mm3 when the frames form a volume, mm2 when the
  // spacing is known, pixels otherwise.
  double min_size = 0;
  // The finding's label when the masks carry no phrase (segmentation targets).
  std::string label;
  // A sequence that is not a volume (cine): components also connect to the last earlier frame
  // with a mask when at most this many frames without any lie in between, so that frames where
  // the model missed the finding do not split it into several. Volumes connect adjacent slices
  // only (a gap there may separate two lesions).
  int cine_frame_gap = 3;
  // Findings whose confidence is under this are left out (before they are numbered), and the
  // note on dropped components says how many.
  double min_confidence = 0;
  // A structure of both sides (config::Target::paired): when every frame with a component has
  // left_at (in mm for several frames) and the components fall into groups at least 10 mm (or
  // 2 % of the image width in pixels) apart across the patient, split at the widest such gap:
  // one finding for the patient's right and one for the left, labelled and sided so.
  bool sides = false;
};

struct ConsolidatedFinding {
  std::string label;                             // majority phrase, or options.label
  double label_agreement = 1;                    // share of the mask's pixels whose slice named it `label`
  std::map<size_t, std::vector<uint8_t>> masks;  // frame index -> mask (only non-empty frames)
  size_t key_frame = 0;                          // the frame where it is largest
  std::string text;                              // the sentence on the key frame
  std::string answer;                            // the model's answer on the key frame
  size_t pixel_count = 0;                        // over all frames
  size_t key_pixel_count = 0;
  std::optional<double> key_area_mm2;  // key frame, when the spacing is known
  // The pixel size (mm between rows, then columns) its measurements use where its key frame
  // is calibrated by ultrasound regions: their scale where the key mask lies; unset otherwise
  // (the frames' own spacing applies).
  std::optional<std::array<double, 2>> region_spacing;
  // Why it has no measurements in mm although its key frame has a scale, e.g. "no
  // measurements: it lies outside the calibrated 2D ultrasound regions (...)"; empty otherwise.
  std::string unmeasured;
  std::optional<double> volume_mm3;    // when the frames form a volume
  Diameter key_diameter;               // key frame; mm when the spacing is known, else pixels
  bool diameter_in_mm = false;
  double mean_probability = 0;  // mean sigmoid probability inside the mask (0 when unknown)
  double mean_iou = 0;          // pixel-weighted mean of the IoU predictions it came from
  // sqrt(mean_probability x mean_iou): both are in [0, 1]; the geometric mean is low when
  // either is (a crisp mask the decoder itself rates poorly, or a confident IoU on a
  // mask whose pixels are barely above 0.5). Without probabilities: mean_iou.
  double confidence = 0;
  std::vector<std::string> notes;  // e.g. "3 components under 50 mm3 dropped"
  // "right" or "left" (the patient's) for one side of a paired structure; empty otherwise.
  std::string side;
};

// What one pixel of `finding` on `frame` measures: mm2 when its key area is in mm2 (the
// ultrasound regions' scale where it has one, else the frame's spacing), else 1 (pixels).
double frame_area_scale(const ConsolidatedFinding& finding, const AnalysedFrame& frame);

// Whether the frames form a volume: a sequence whose frames all have a position, the same
// size and the same known pixel spacing.
bool frames_form_volume(const std::vector<AnalysedFrame>& frames);

// The thickness each frame stands for along the normal: the positions nearer to it than to any
// other frame, so that sum(area x thickness) is the volume even when only every n-th slice was
// analysed. An inner frame gets half the distance to each neighbour. An end frame gets half the
// gap to its neighbour plus the distance from its position to the bound of stack_extent on its
// outer side (at least 0) when every frame has the same stack_extent (n samples of an N-slice
// stack of spacing s then sum to N x s, and each slice of a full stack gets s); without one, the
// whole gap to its neighbour (one-sided). The frames may be in ascending or descending position
// order. A single frame gets 0. Requires positions on every frame.
std::vector<double> slab_thicknesses(const std::vector<AnalysedFrame>& frames);

// A finding's confidence, 0 to 1: the geometric mean of its mean mask probability and the IoU
// head's prediction, each clamped to [0, 1] (the IoU head regresses and can leave that range);
// the IoU alone when there are no probabilities (`mean_probability` absent).
double finding_confidence(std::optional<double> mean_probability, double mean_iou);

// "10", "0.01": a minimum size or confidence as the rules give it.
std::string format_minimum(double v);

// "2 findings with a confidence under 0.5 left out (0.31, 0.42)": at most five confidences.
std::string low_confidence_note(const std::vector<double>& confidences, double minimum);

// Throws std::invalid_argument when a mask's frame index or size does not fit the frames.
// `dropped`, when given, receives the note on what was dropped (e.g. "1 component smaller than
// 10 mm3 dropped as noise", "1 finding with a confidence under 0.5 left out (0.31)", both joined
// by "; "; "" when nothing was), also when no finding is left to carry it.
std::vector<ConsolidatedFinding> consolidate(const std::vector<AnalysedFrame>& frames,
                                             const std::vector<FrameMask>& masks, const ConsolidationOptions& options,
                                             std::string* dropped = nullptr);

}  // namespace unibiomed::pipeline
