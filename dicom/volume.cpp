// Stacking slices and building volumes.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/volume.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>

#include "dicom/pixel_data.h"

namespace unibiomed::dicom {
namespace {

constexpr double kPi = 3.14159265358979323846;

double dot(const Vec3& a, const Vec3& b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double norm(const Vec3& a) {
  return std::sqrt(dot(a, a));
}

std::string fmt(double v, int decimals = 2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// The plane a slice is closest to, for labels (PS3.3 C.7.6.2.1.1 patient axes L, P, H).
std::string plane_name(const Vec3& normal) {
  const double x = std::fabs(normal[0]), y = std::fabs(normal[1]), z = std::fabs(normal[2]);
  if (z >= x && z >= y) return "axial";
  if (y >= x) return "coronal";
  return "sagittal";
}

struct Candidate {
  SliceRef ref;
  Vec3 ipp;
  const FrameInfo* frame;
  const Instance* instance;
};

struct Group {
  std::array<double, 6> orientation;
  int rows, columns;
  std::array<double, 2> spacing;
  bool has_spacing;
  std::string frame_of_reference_uid;
  std::string stack_id;
  std::vector<Candidate> members;
};

bool same_orientation(const std::array<double, 6>& a, const std::array<double, 6>& b) {
  for (int i = 0; i < 6; ++i)
    if (std::fabs(a[size_t(i)] - b[size_t(i)]) > 1e-3) return false;
  return true;
}

bool same_spacing(const std::array<double, 2>& a, const std::array<double, 2>& b) {
  for (int i = 0; i < 2; ++i)
    if (std::fabs(a[size_t(i)] - b[size_t(i)]) > 1e-4 * std::max(1.0, std::fabs(a[size_t(i)]))) return false;
  return true;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Turns one run of sorted, distinct positions into a stack (geometry, tilt, regularity).
SliceStack make_stack(const Group& group, std::vector<Candidate> run, const Vec3& normal, const std::string& label) {
  SliceStack stack;
  stack.orientation = group.orientation;
  stack.normal = normal;
  stack.rows = group.rows;
  stack.columns = group.columns;
  stack.row_spacing = group.has_spacing ? group.spacing[0] : 1.0;
  stack.column_spacing = group.has_spacing ? group.spacing[1] : 1.0;
  stack.frame_of_reference_uid = group.frame_of_reference_uid;
  for (const auto& c : run) stack.slices.push_back(c.ref);
  stack.origin = run.front().ipp;
  stack.label = label;
  if (!group.has_spacing) stack.volume_problem = "no PixelSpacing (0028,0030): the in-plane size of a pixel is unknown";

  std::vector<double> gaps;
  for (size_t i = 1; i < run.size(); ++i) gaps.push_back(run[i].ref.position - run[i - 1].ref.position);
  if (gaps.empty()) {
    stack.slice_spacing = run.front().frame->slice_thickness.value_or(0);
    return stack;
  }
  stack.slice_spacing = median(gaps);
  const auto [min_gap, max_gap] = std::minmax_element(gaps.begin(), gaps.end());
  if (*max_gap > *min_gap * 1.1 + 1e-3 && stack.volume_problem.empty()) {
    stack.volume_problem = "irregular slice spacing (" + fmt(*min_gap) + " to " + fmt(*max_gap) +
                           " mm): a regular volume grid would misplace slices";
  }
  // Gantry tilt: the slices advance along a direction that is not their normal (the volume
  // would be sheared). PS3.3 C.7.6.2.1.1 allows it; a regular grid cannot represent it.
  Vec3 advance{run.back().ipp[0] - run.front().ipp[0], run.back().ipp[1] - run.front().ipp[1],
               run.back().ipp[2] - run.front().ipp[2]};
  const double length = norm(advance);
  if (length > 0) {
    const double cosine = std::min(1.0, std::fabs(dot(advance, normal)) / length);
    stack.gantry_tilt_degrees = std::acos(cosine) * 180.0 / kPi;
    if (stack.gantry_tilt_degrees > 0.5) {
      stack.volume_problem = "gantry tilt of " + fmt(stack.gantry_tilt_degrees, 1) +
                             " degrees: the slices are not perpendicular to the direction they advance in, so they "
                             "do not form a regular grid (read them slice by slice, or resample)";
    }
  }
  return stack;
}

std::string series_name(const Series& series) {
  return "series " + series.identity.series_instance_uid +
         (series.identity.series_description.empty() ? "" : " (" + series.identity.series_description + ")");
}

}  // namespace

Vec3 pixel_to_patient(const FrameInfo& frame, double column, double row) {
  // PS3.3 C.7.6.2.1.1, Equation C.7.6.2.1-1: P = S + X * dc * column + Y * dr * row, with X the
  // row direction cosine, Y the column direction cosine, dc = PixelSpacing[1], dr = PixelSpacing[0].
  const Vec3 s = frame.image_position.value_or(Vec3{0, 0, 0});
  const std::array<double, 6> o = frame.image_orientation.value_or(std::array<double, 6>{1, 0, 0, 0, 1, 0});
  const std::array<double, 2> d = frame.pixel_spacing.value_or(std::array<double, 2>{1, 1});
  Vec3 p;
  for (int i = 0; i < 3; ++i)
    p[size_t(i)] = s[size_t(i)] + o[size_t(i)] * d[1] * column + o[size_t(i) + 3] * d[0] * row;
  return p;
}

StackPlan plan_stacks(const Series& series) {
  StackPlan plan;
  std::vector<Group> groups;
  size_t without_geometry = 0, undecodable = 0;
  std::string first_without;  // the first frame without geometry, for the note
  for (size_t i = 0; i < series.instances.size(); ++i) {
    const Instance& instance = series.instances[i];
    if (!instance.image_problem().empty()) {
      ++undecodable;
      continue;
    }
    for (const FrameInfo& frame : instance.frames()) {
      if (!frame.image_position || !frame.image_orientation) {
        if (without_geometry++ == 0)
          first_without =
              instance.source() + (instance.is_multiframe() ? " frame " + std::to_string(frame.frame_number) : "");
        continue;
      }
      Candidate c{SliceRef{i, frame.frame_number, 0}, *frame.image_position, &frame, &instance};
      const bool has_spacing = frame.pixel_spacing.has_value();
      const std::array<double, 2> spacing = frame.pixel_spacing.value_or(std::array<double, 2>{1, 1});
      Group* match = nullptr;
      for (auto& g : groups) {
        if (g.rows == instance.pixels().rows && g.columns == instance.pixels().columns &&
            same_orientation(g.orientation, *frame.image_orientation) && g.has_spacing == has_spacing &&
            same_spacing(g.spacing, spacing) && g.frame_of_reference_uid == instance.frame_of_reference_uid() &&
            g.stack_id == frame.stack_id) {
          match = &g;
          break;
        }
      }
      if (!match) {
        groups.push_back(Group{*frame.image_orientation,
                               instance.pixels().rows,
                               instance.pixels().columns,
                               spacing,
                               has_spacing,
                               instance.frame_of_reference_uid(),
                               frame.stack_id,
                               {}});
        match = &groups.back();
      }
      match->members.push_back(c);
    }
  }
  if (undecodable)
    plan.notes.push_back(std::to_string(undecodable) + " instance(s) left out: their pixels cannot be decoded");
  if (groups.empty()) {
    plan.refused = series_name(series) +
                   ": no slice has ImagePositionPatient (0020,0032) and ImageOrientationPatient "
                   "(0020,0037): 2D images, not a volume";
    return plan;
  }
  if (without_geometry) {
    plan.notes.push_back(
        std::to_string(without_geometry) +
        " frame(s) without ImagePositionPatient (0020,0032) or ImageOrientationPatient (0020,0037) left "
        "out of the stacks (first: " +
        first_without + ")");
  }
  if (groups.size() > 1) {
    // Each kind of slice by what sets it apart from the first, with a file of it.
    const Group& base = groups.front();
    std::string kinds =
        std::to_string(base.members.size()) + " slice(s) like " + base.members.front().instance->source();
    for (size_t g = 1; g < groups.size() && g < 4; ++g) {
      const Group& other = groups[g];
      std::vector<std::string> differ;
      if (other.rows != base.rows || other.columns != base.columns)
        differ.push_back("Rows x Columns " + std::to_string(other.rows) + " x " + std::to_string(other.columns));
      if (!same_orientation(other.orientation, base.orientation)) differ.push_back("ImageOrientationPatient");
      if (other.has_spacing != base.has_spacing || !same_spacing(other.spacing, base.spacing))
        differ.push_back("PixelSpacing");
      if (other.frame_of_reference_uid != base.frame_of_reference_uid) differ.push_back("FrameOfReferenceUID");
      if (other.stack_id != base.stack_id) differ.push_back("StackID '" + other.stack_id + "'");
      std::string named;
      for (const auto& d : differ) named += (named.empty() ? "" : ", ") + d;
      kinds += "; " + std::to_string(other.members.size()) + " with another " + named + " like " +
               other.members.front().instance->source();
    }
    if (groups.size() > 4) kinds += "; and " + std::to_string(groups.size() - 4) + " more kinds";
    plan.notes.push_back("the series mixes " + std::to_string(groups.size()) +
                         " kinds of slices, one stack each: " + kinds);
  }

  for (auto& group : groups) {
    const std::array<double, 6>& o = group.orientation;
    Vec3 row{o[0], o[1], o[2]}, column{o[3], o[4], o[5]};
    if (std::fabs(norm(row) - 1) > 1e-2 || std::fabs(norm(column) - 1) > 1e-2 || std::fabs(dot(row, column)) > 1e-2) {
      plan.notes.push_back("slices with ImageOrientationPatient (0020,0037) " + fmt(o[0], 3) + "\\" + fmt(o[1], 3) +
                           "\\" + fmt(o[2], 3) + "\\" + fmt(o[3], 3) + "\\" + fmt(o[4], 3) + "\\" + fmt(o[5], 3) +
                           " left out: the direction cosines are not orthonormal");
      continue;
    }
    Vec3 normal = cross(row, column);
    const double n = norm(normal);
    for (auto& v : normal) v /= n;
    for (auto& c : group.members) c.ref.position = dot(c.ipp, normal);
    std::stable_sort(group.members.begin(), group.members.end(),
                     [](const Candidate& a, const Candidate& b) { return a.ref.position < b.ref.position; });

    // Cluster equal positions (several acquisitions, phases or echoes at the same place).
    std::vector<double> distinct_gaps;
    for (size_t i = 1; i < group.members.size(); ++i) {
      const double gap = group.members[i].ref.position - group.members[i - 1].ref.position;
      if (gap > 1e-3) distinct_gaps.push_back(gap);
    }
    const double tolerance = std::max(1e-3, 0.01 * median(distinct_gaps));
    std::vector<std::vector<Candidate>> clusters;
    for (const auto& c : group.members) {
      if (clusters.empty() || c.ref.position - clusters.back().front().ref.position > tolerance)
        clusters.emplace_back();
      clusters.back().push_back(c);
    }
    const std::string plane = plane_name(normal);
    std::vector<std::pair<std::string, std::vector<Candidate>>> runs;  // label, distinct positions
    const size_t repeats = clusters.front().size();
    const bool uniform =
        std::all_of(clusters.begin(), clusters.end(), [&](const auto& c) { return c.size() == repeats; });
    if (repeats == 1 && uniform) {
      runs.emplace_back(plane, group.members);
    } else if (uniform) {
      // Every position repeats k times: k interleaved stacks. Within a position the repeats
      // are told apart by AcquisitionNumber, then InstanceNumber, then frame number.
      for (auto& cluster : clusters) {
        std::stable_sort(cluster.begin(), cluster.end(), [](const Candidate& a, const Candidate& b) {
          if (a.instance->acquisition_number() != b.instance->acquisition_number())
            return a.instance->acquisition_number() < b.instance->acquisition_number();
          if (a.instance->instance_number() != b.instance->instance_number())
            return a.instance->instance_number() < b.instance->instance_number();
          return a.ref.frame_number < b.ref.frame_number;
        });
      }
      for (size_t k = 0; k < repeats; ++k) {
        std::vector<Candidate> run;
        for (const auto& cluster : clusters) run.push_back(cluster[k]);
        std::string label = plane + ", repeat " + std::to_string(k + 1) + " of " + std::to_string(repeats);
        const int acquisition = run.front().instance->acquisition_number();
        const bool one_acquisition = std::all_of(run.begin(), run.end(), [&](const Candidate& c) {
          return c.instance->acquisition_number() == acquisition;
        });
        if (one_acquisition && acquisition != 0) label += " (AcquisitionNumber " + std::to_string(acquisition) + ")";
        runs.emplace_back(label, std::move(run));
      }
      plan.notes.push_back("every " + plane + " slice position occurs " + std::to_string(repeats) +
                           " times (several acquisitions or phases): split into " + std::to_string(repeats) +
                           " stacks");
    } else {
      // Unequal repetition: only a split by AcquisitionNumber that leaves each acquisition
      // with distinct positions is safe.
      std::map<int, std::vector<Candidate>> by_acquisition;
      for (const auto& c : group.members) by_acquisition[c.instance->acquisition_number()].push_back(c);
      bool distinct = by_acquisition.size() > 1;
      for (const auto& [acq, members] : by_acquisition) {
        for (size_t i = 1; i < members.size() && distinct; ++i)
          if (members[i].ref.position - members[i - 1].ref.position <= tolerance) distinct = false;
      }
      if (!distinct) {
        size_t worst = 0;
        double where = 0;
        for (const auto& cl : clusters)
          if (cl.size() > worst) worst = cl.size(), where = cl.front().ref.position;
        plan.notes.push_back("the " + plane + " slices repeat positions unevenly (position " + fmt(where) +
                             " mm occurs " + std::to_string(worst) +
                             " times) and AcquisitionNumber does not separate them: these " +
                             std::to_string(group.members.size()) + " slices cannot be ordered into a volume");
        continue;
      }
      for (auto& [acq, members] : by_acquisition)
        runs.emplace_back(plane + ", AcquisitionNumber " + std::to_string(acq), std::move(members));
      plan.notes.push_back("repeated " + plane + " slice positions separated by AcquisitionNumber into " +
                           std::to_string(by_acquisition.size()) + " stacks");
    }

    // Missing slices: a gap much larger than the usual spacing splits the run.
    for (auto& [label, run] : runs) {
      std::vector<double> gaps;
      for (size_t i = 1; i < run.size(); ++i) gaps.push_back(run[i].ref.position - run[i - 1].ref.position);
      const double usual = median(gaps);
      std::vector<std::vector<Candidate>> pieces(1);
      for (size_t i = 0; i < run.size(); ++i) {
        if (i > 0 && usual > 0 && run[i].ref.position - run[i - 1].ref.position > 1.5 * usual) {
          const double gap = run[i].ref.position - run[i - 1].ref.position;
          plan.notes.push_back(label + ": gap of " + fmt(gap) + " mm between positions " +
                               fmt(run[i - 1].ref.position) + " and " + fmt(run[i].ref.position) +
                               " mm where slices are " + fmt(usual) + " mm apart (about " +
                               std::to_string(long(std::lround(gap / usual)) - 1) + " missing slices): split there");
          pieces.emplace_back();
        }
        pieces.back().push_back(run[i]);
      }
      for (size_t p = 0; p < pieces.size(); ++p) {
        std::string piece_label =
            label + " " + std::to_string(pieces[p].size()) + " slice" + (pieces[p].size() == 1 ? "" : "s");
        if (pieces.size() > 1)
          piece_label += " (part " + std::to_string(p + 1) + " of " + std::to_string(pieces.size()) + ")";
        plan.stacks.push_back(make_stack(group, std::move(pieces[p]), normal, piece_label));
      }
    }
  }
  if (plan.stacks.empty()) {
    plan.refused = series_name(series) + ": no consistent stack of slices";
    for (const auto& n : plan.notes) plan.refused += "; " + n;
  }
  return plan;
}

Volume load_volume(const Series& series, const SliceStack& stack) {
  if (!stack.volume_problem.empty()) {
    throw DicomError(series_name(series) + ", stack \"" + stack.label + "\": " + stack.volume_problem);
  }
  if (stack.slices.empty()) throw DicomError(series_name(series) + ": empty stack");
  Volume volume;
  volume.size = {stack.columns, stack.rows, int(stack.slices.size())};
  volume.spacing = {stack.column_spacing, stack.row_spacing, stack.slice_spacing > 0 ? stack.slice_spacing : 1.0};
  volume.origin = stack.origin;
  const auto& o = stack.orientation;
  // Direction columns: x = row cosines, y = column cosines, z = normal (ITK convention).
  volume.direction = {o[0], o[3], stack.normal[0], o[1], o[4], stack.normal[1], o[2], o[5], stack.normal[2]};
  const size_t slice_size = size_t(stack.columns) * size_t(stack.rows);
  volume.voxels.resize(slice_size * stack.slices.size());
  for (size_t z = 0; z < stack.slices.size(); ++z) {
    const SliceRef& ref = stack.slices[z];
    ModalityFrame frame = decode_modality_frame(series.instances[ref.instance_index], ref.frame_number);
    if (size_t(frame.rows) * size_t(frame.columns) != slice_size) {
      throw DicomError(series.instances[ref.instance_index].source() + ": frame " + std::to_string(ref.frame_number) +
                       " is " + std::to_string(frame.columns) + "x" + std::to_string(frame.rows) + ", the stack is " +
                       std::to_string(stack.columns) + "x" + std::to_string(stack.rows));
    }
    std::copy(frame.values.begin(), frame.values.end(), volume.voxels.begin() + long(z * slice_size));
  }
  return volume;
}

}  // namespace unibiomed::dicom
