// Grouping the analysed views of a series into units, with each frame's geometry.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/units.h"

#include <map>

#include "dicom/volume.h"

namespace unibiomed::pipeline {

namespace {

std::string unit_key(const dicom::ViewRequest& r, const dicom::Instance& instance) {
  if (r.slide_region) return "slide";
  if (r.stack_index >= 0) return "stack " + std::to_string(r.stack_index);
  if (instance.is_multiframe()) return "instance " + std::to_string(r.instance_index);
  return "images " + std::to_string(instance.pixels().columns) + "x" + std::to_string(instance.pixels().rows);
}

}  // namespace

void set_left(AnalysedFrame& f, const dicom::Instance& instance, int frame_number) {
  const dicom::FrameInfo& info = instance.frame(frame_number);
  if (info.image_position && info.image_orientation) {
    const auto& o = *info.image_orientation;
    const auto& spacing = info.pixel_spacing;
    // Without a pixel size the plane gives directions only: no millimetres to compare.
    const double row_spacing = spacing ? (*spacing)[0] : 1.0, column_spacing = spacing ? (*spacing)[1] : 1.0;
    f.left_at = std::array<double, 3>{(*info.image_position)[0], o[0] * column_spacing, o[3] * row_spacing};
    f.left_in_mm = spacing.has_value();
    return;
  }
  const std::string& orientation = instance.attribute_text("PatientOrientation");
  const size_t split = orientation.find('\\');
  if (split == std::string::npos) return;
  auto toward_left = [](const std::string& letters) {
    const size_t first = letters.find_first_not_of(' ');
    if (first == std::string::npos) return 0.0;
    return letters[first] == 'L' ? 1.0 : letters[first] == 'R' ? -1.0 : 0.0;
  };
  const double along_row = toward_left(orientation.substr(0, split));
  const double along_column = toward_left(orientation.substr(split + 1));
  if (along_row == 0 && along_column == 0) return;
  f.left_at = std::array<double, 3>{0.0, along_row, along_column};
  f.left_in_mm = false;
}

namespace {

// The frame as consolidation sees it: size, spacing and (in a stack) its position.
AnalysedFrame analysed_frame(const dicom::ViewRequest& r, const dicom::Instance& instance,
                             const dicom::StackPlan& stacks) {
  AnalysedFrame f;
  f.instance_index = r.instance_index;
  f.frame_number = r.frame_number;
  f.sop_instance_uid = instance.sop_instance_uid();
  if (r.slide_region) {
    f.columns = r.slide_region->width;
    f.rows = r.slide_region->height;
    f.column_spacing = f.row_spacing = r.slide_region->mm_per_pixel;
  } else if (r.stack_index >= 0 && static_cast<size_t>(r.stack_index) < stacks.stacks.size()) {
    const dicom::SliceStack& s = stacks.stacks[r.stack_index];
    f.columns = s.columns;
    f.rows = s.rows;
    // A stack without PixelSpacing carries a placeholder spacing of 1: leave it unknown (0),
    // so that areas are reported in pixels, never as made-up square millimetres.
    if (instance.frame(r.frame_number).pixel_spacing) {
      f.column_spacing = s.column_spacing;
      f.row_spacing = s.row_spacing;
    }
    if (s.volume_problem.empty()) {
      f.position = s.slices.at(r.slice_index).position;
      // The whole stack's extent, so that strided slices' end slabs stop at its ends.
      if (s.slice_spacing > 0 && !s.slices.empty())
        f.stack_extent = std::array<double, 2>{s.slices.front().position - 0.5 * s.slice_spacing,
                                               s.slices.back().position + 0.5 * s.slice_spacing};
    }
  } else {
    f.columns = instance.pixels().columns;
    f.rows = instance.pixels().rows;
    set_plane_scale(f, instance.frame(r.frame_number));
  }
  if (!r.slide_region) set_left(f, instance, r.frame_number);
  return f;
}

}  // namespace

void set_plane_scale(AnalysedFrame& f, const dicom::FrameInfo& info) {
  if (info.pixel_spacing) {
    f.row_spacing = (*info.pixel_spacing)[0];
    f.column_spacing = (*info.pixel_spacing)[1];
  }
  f.calibration_regions = info.calibration_regions;
}

UnitPlan group_into_units(const dicom::Series& series, const std::vector<dicom::ViewRequest>& requests,
                          const std::vector<size_t>& selected) {
  UnitPlan plan;
  const dicom::StackPlan stacks = dicom::plan_stacks(series);
  plan.notes = stacks.notes;
  std::map<std::string, size_t> unit_of_key;
  for (size_t index : selected) {
    const dicom::ViewRequest& r = requests.at(index);
    const dicom::Instance& instance = series.instances.at(r.instance_index);
    auto [it, inserted] = unit_of_key.emplace(unit_key(r, instance), plan.units.size());
    if (inserted) {
      Unit u;
      u.key = it->first;
      u.slide = r.slide_region.has_value();
      u.sequence = !u.slide && (r.stack_index >= 0 || instance.is_multiframe());
      if (!u.slide && r.stack_index >= 0 && static_cast<size_t>(r.stack_index) < stacks.stacks.size()) {
        u.stack_label = stacks.stacks[r.stack_index].label;
        for (const dicom::SliceRef& slice : stacks.stacks[r.stack_index].slices)
          u.stack_frames.emplace(slice.instance_index, slice.frame_number);
      }
      plan.units.push_back(std::move(u));
    }
    Unit& unit = plan.units[it->second];
    unit.positions.push_back(static_cast<int>(plan.place.size()));
    plan.place.emplace_back(it->second, unit.frames.size());
    unit.frames.push_back(analysed_frame(r, instance, stacks));
    unit.requests.push_back(r);
  }
  return plan;
}

}  // namespace unibiomed::pipeline
