// Which analysed frames share one SEG: the slices of a stack, the frames of one multi-frame
// instance, the single images of one size, or the regions of a slide. Each unit is one
// consolidation (3D connected components for a stack, through time for cine) and one SEG.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dicom/series.h"
#include "dicom/view.h"
#include "pipeline/consolidation.h"

namespace unibiomed::pipeline {

struct Unit {
  std::string key;        // "stack 0", "instance 3", "images 640x480", "slide"
  std::string stack_label;  // a stack's unit: its label ("axial 60 slices", dicom::SliceStack)
  bool sequence = false;  // frames are neighbours in order (a stack, a cine)
  bool slide = false;     // whole-slide regions (no SEG)
  // Read in video mode (set by the analyzer): a sequence of two frames or more in a series read
  // as video. The other units of such a series (single images beside a cine) are asked frame by
  // frame.
  bool video = false;
  std::vector<AnalysedFrame> frames;
  std::vector<dicom::ViewRequest> requests;  // per frame: the view it was analysed on
  // Per frame: its position among the series' analysed frames (0-based), the numbering of
  // summary.json's key_frames and frame_areas.
  std::vector<int> positions;
  // A stack's unit: every frame of its stack, analysed or not, as (instance index, 1-based frame
  // number). Its SEG's sources are these frames only: an enhanced multi-frame instance may hold
  // frames of other stacks (a 3-plane localizer), which one SEG cannot reference. Empty for the
  // other units (every frame of their instances).
  std::set<std::pair<size_t, int>> stack_frames;
};

struct UnitPlan {
  std::vector<Unit> units;
  // Per selected view, in selection order: (unit, frame within the unit).
  std::vector<std::pair<size_t, size_t>> place;
  std::vector<std::string> notes;  // how the stacks were split
};

// A frame's in-plane scale as consolidation reads it: its Pixel Spacing (or the like) when it
// has one, and an ultrasound image's calibrated regions.
void set_plane_scale(AnalysedFrame& f, const dicom::FrameInfo& info);

// Where the patient's left lies on frame `frame_number` (1-based) of `instance`
// (AnalysedFrame::left_at): from its plane when it has one, else from PatientOrientation (the
// directions of rows and columns as letters, "L\\F").
void set_left(AnalysedFrame& f, const dicom::Instance& instance, int frame_number);

// `requests` are the series' planned views, `selected` the indices of those analysed.
UnitPlan group_into_units(const dicom::Series& series, const std::vector<dicom::ViewRequest>& requests,
                          const std::vector<size_t>& selected);

}  // namespace unibiomed::pipeline
