// Connected components over runs (row segments) with a union-find: in-plane 8-connectivity,
// and between consecutive frames of a sequence runs that overlap in the same row (face
// neighbours). Runs keep memory proportional to the outline, not to the stack.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/consolidation.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <unordered_map>

namespace unibiomed::pipeline {

namespace {

struct Run {
  size_t frame;
  int row;
  int x0;  // first pixel
  int x1;  // one past the last
};

class UnionFind {
 public:
  explicit UnionFind(size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), size_t{0}); }
  size_t find(size_t a) {
    while (parent_[a] != a) a = parent_[a] = parent_[parent_[a]];
    return a;
  }
  void unite(size_t a, size_t b) {
    a = find(a);
    b = find(b);
    if (a != b) parent_[std::max(a, b)] = std::min(a, b);
  }

 private:
  std::vector<size_t> parent_;
};

std::string normalise_phrase(const std::string& phrase) {
  std::string out;
  bool space = false;
  for (char c : phrase) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  while (!out.empty() && (out.back() == '.' || out.back() == ',' || out.back() == ';' || out.back() == ' '))
    out.pop_back();
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct ComponentStats {
  size_t pixels = 0;
  std::map<size_t, size_t> pixels_per_frame;
  double size = 0;  // the measure min_size is compared with
  double probability_sum = 0;
  double iou_weighted = 0;
  double iou_weight = 0;
  std::map<std::string, size_t> votes;                             // phrase key -> pixels
  std::map<size_t, std::pair<size_t, const FrameMask*>> text_by_frame;  // frame -> (pixels, its mask)
};

// The long axis of a finding on one frame: the longest maximum Feret diameter among its
// connected components there, each measured on its own. A structure in several pieces (the two
// kidneys, a liver with a stray island) is never measured across the gap between them; one
// component whose cut through this frame falls apart (a lesion curving out of the plane) is
// still measured as one. `offsets` are the frame's run offsets per row (rows + 1).
Diameter longest_piece_diameter(const std::vector<Run>& runs, const std::vector<size_t>& offsets,
                                const std::vector<size_t>& component, const std::vector<bool>& in_group,
                                const AnalysedFrame& frame, bool in_mm) {
  struct Piece {
    int x0 = std::numeric_limits<int>::max(), y0 = std::numeric_limits<int>::max(), x1 = 0, y1 = 0;
    std::vector<size_t> runs;
  };
  std::map<size_t, Piece> pieces;
  for (size_t r = offsets.front(); r < offsets.back(); ++r) {
    if (!in_group[component[r]]) continue;
    Piece& p = pieces[component[r]];
    p.x0 = std::min(p.x0, runs[r].x0);
    p.x1 = std::max(p.x1, runs[r].x1);
    p.y0 = std::min(p.y0, runs[r].row);
    p.y1 = std::max(p.y1, runs[r].row + 1);
    p.runs.push_back(r);
  }
  const double dx = in_mm ? frame.column_spacing : 1.0, dy = in_mm ? frame.row_spacing : 1.0;
  Diameter best;
  for (const auto& [c, p] : pieces) {
    // The piece on its bounding box only: the diameter does not depend on where the box lies.
    const int w = p.x1 - p.x0, h = p.y1 - p.y0;
    std::vector<uint8_t> mask(static_cast<size_t>(w) * static_cast<size_t>(h), 0);
    for (size_t r : p.runs)
      std::fill_n(mask.begin() + static_cast<long>(static_cast<size_t>(runs[r].row - p.y0) * w + (runs[r].x0 - p.x0)),
                  runs[r].x1 - runs[r].x0, uint8_t{1});
    Diameter d = longest_diameter(mask, w, h, dx, dy);
    if (d.length <= best.length) continue;
    d.from = {d.from[0] + p.x0, d.from[1] + p.y0};
    d.to = {d.to[0] + p.x0, d.to[1] + p.y0};
    best = d;
  }
  return best;
}

// The patient x coordinate of pixel (x, row) on a frame that says where left is.
double patient_x(const std::array<double, 3>& a, int x, int row) {
  return a[0] + a[1] * x + a[2] * row;
}

// The smallest gap across the patient (mm) that divides the two sides of a paired structure.
constexpr double kSideGapMm = 10.0;

// A gap across the patient between what lies before it and the interval that starts after it.
struct Gap {
  size_t after = 0;  // the index of the first interval after it
  double from = 0;   // the furthest end of what lies before it
  double to = 0;     // the start of that interval
};

// Over intervals sorted by their start (at least one), the widest gap of at least `min_gap`
// between what lies before it (up to the furthest end reached) and what starts after it.
std::optional<Gap> widest_gap(const std::vector<std::pair<double, double>>& sorted, double min_gap) {
  std::optional<Gap> best;
  double reach = sorted.front().second;
  for (size_t k = 1; k < sorted.size(); ++k) {
    const double gap = sorted[k].first - reach;
    if (gap >= min_gap && (!best || gap > best->to - best->from)) best = Gap{k, reach, sorted[k].first};
    reach = std::max(reach, sorted[k].second);
  }
  return best;
}

// Where a paired structure in a volume divides into the patient's right and left on each frame
// with mask pixels (patient x, mm): the middle of the widest gap of at least kSideGapMm across
// the patient between what the frame's runs cover; a frame where the two sides touch (the lungs
// at the anterior junction) takes the division of the nearest frame with such a gap. None when
// fewer than half of the frames show one, or where a frame's columns do not run across the
// patient (then the sides lie on different slices and the components tell them apart).
std::optional<std::map<size_t, double>> side_divisions(const std::vector<AnalysedFrame>& frames,
                                                       const std::vector<Run>& runs,
                                                       const std::map<size_t, std::vector<size_t>>& row_offsets) {
  std::map<size_t, std::optional<double>> gap_middle;
  size_t with_gap = 0;
  for (const auto& [frame, offsets] : row_offsets) {
    if (offsets.front() == offsets.back()) continue;
    const AnalysedFrame& f = frames[frame];
    if (!f.left_at || !f.left_in_mm) return std::nullopt;
    const auto& a = *f.left_at;
    if (std::abs(a[1]) < 0.5 * f.column_spacing) return std::nullopt;
    std::vector<std::pair<double, double>> covered;
    for (size_t r = offsets.front(); r < offsets.back(); ++r) {
      const double u = patient_x(a, runs[r].x0, runs[r].row), v = patient_x(a, runs[r].x1 - 1, runs[r].row);
      covered.emplace_back(std::min(u, v), std::max(u, v));
    }
    std::sort(covered.begin(), covered.end());
    const std::optional<Gap> gap = widest_gap(covered, kSideGapMm);
    auto& middle = gap_middle[frame];  // none where the two sides touch
    if (gap) {
      middle = (gap->from + gap->to) / 2;
      ++with_gap;
    }
  }
  if (!with_gap || 2 * with_gap < gap_middle.size()) return std::nullopt;
  std::map<size_t, double> division;
  for (const auto& [frame, middle] : gap_middle) {
    if (middle) {
      division[frame] = *middle;
      continue;
    }
    // The nearest frame with a gap (the earlier one on a tie).
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (const auto& [other, m] : gap_middle) {
      const size_t distance = other > frame ? other - frame : frame - other;
      if (m && distance < best_distance) best_distance = distance, division[frame] = *m;
    }
  }
  return division;
}

// `runs` cut where they cross their frame's division, with the side of each run (0 = the
// patient's right, lower x; 1 = left) and the row offsets rebuilt.
void cut_at_divisions(const std::vector<AnalysedFrame>& frames, const std::map<size_t, double>& division,
                      std::vector<Run>& runs, std::map<size_t, std::vector<size_t>>& row_offsets,
                      std::vector<uint8_t>& side) {
  std::vector<Run> cut;
  side.clear();
  for (auto& [frame, offsets] : row_offsets) {
    std::vector<size_t> rebuilt(offsets.size(), cut.size());
    if (offsets.front() == offsets.back()) {  // no pixel: no division either
      offsets = std::move(rebuilt);
      continue;
    }
    const auto& a = *frames[frame].left_at;
    const double d = division.at(frame);
    for (size_t y = 0; y + 1 < offsets.size(); ++y) {
      rebuilt[y] = cut.size();
      for (size_t r = offsets[y]; r < offsets[y + 1]; ++r) {
        const Run& run = runs[r];
        auto on_left = [&](int x) { return patient_x(a, x, run.row) > d ? uint8_t{1} : uint8_t{0}; };
        int start = run.x0;
        uint8_t start_side = on_left(start);
        for (int x = run.x0 + 1; x < run.x1; ++x)
          if (on_left(x) != start_side) {
            cut.push_back({run.frame, run.row, start, x});
            side.push_back(start_side);
            start = x;
            start_side = 1 - start_side;
          }
        cut.push_back({run.frame, run.row, start, run.x1});
        side.push_back(start_side);
      }
    }
    rebuilt.back() = cut.size();
    offsets = std::move(rebuilt);
  }
  runs = std::move(cut);
}

// The kept components of a paired structure as the patient's right and left side (each in the
// order of `kept`). With `run_side` (the runs cut at the frames' divisions, side_divisions), by
// the side of each component's runs. Otherwise split at the widest gap across the patient
// between groups of components whose extents along the patient's x axis lie at least a minimum
// apart; nullopt when a frame does not say where left is, when frames in pixels cannot be
// compared, or when there is no such gap (both sides joined, or one side only).
std::optional<std::pair<std::vector<size_t>, std::vector<size_t>>> split_sides(const std::vector<AnalysedFrame>& frames,
                                                                               const std::vector<Run>& runs,
                                                                               const std::vector<size_t>& component,
                                                                               const std::vector<size_t>& kept,
                                                                               const std::vector<uint8_t>& run_side) {
  if (!run_side.empty()) {
    std::map<size_t, uint8_t> side_of;  // component -> side (all its runs have one)
    for (size_t r = 0; r < runs.size(); ++r) side_of[component[r]] = run_side[r];
    std::pair<std::vector<size_t>, std::vector<size_t>> sides;
    for (size_t c : kept) (side_of.at(c) ? sides.second : sides.first).push_back(c);
    if (sides.first.empty() || sides.second.empty()) return std::nullopt;
    return sides;
  }
  std::map<size_t, size_t> index_of;  // component -> index in kept
  for (size_t i = 0; i < kept.size(); ++i) index_of[kept[i]] = i;
  std::vector<std::pair<double, double>> extent(
      kept.size(), {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()});
  std::set<size_t> used;
  for (size_t r = 0; r < runs.size(); ++r) {
    const Run& run = runs[r];
    const auto it = index_of.find(component[r]);
    if (it == index_of.end()) continue;
    const AnalysedFrame& f = frames[run.frame];
    if (!f.left_at) return std::nullopt;
    used.insert(run.frame);
    const auto& a = *f.left_at;
    for (int x : {run.x0, run.x1 - 1}) {
      const double v = patient_x(a, x, run.row);
      extent[it->second].first = std::min(extent[it->second].first, v);
      extent[it->second].second = std::max(extent[it->second].second, v);
    }
  }
  if (used.empty()) return std::nullopt;
  const bool in_mm = frames[*used.begin()].left_in_mm;
  for (size_t f : used)
    if (frames[f].left_in_mm != in_mm || (!in_mm && used.size() > 1)) return std::nullopt;
  const double min_gap = in_mm ? kSideGapMm : 0.02 * frames[*used.begin()].columns;
  std::vector<size_t> order(kept.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return extent[a].first < extent[b].first; });
  std::vector<std::pair<double, double>> sorted;
  for (size_t i : order) sorted.push_back(extent[i]);
  const std::optional<Gap> gap = widest_gap(sorted, min_gap);
  if (!gap) return std::nullopt;
  std::vector<bool> on_left(kept.size(), false);
  for (size_t k = gap->after; k < order.size(); ++k) on_left[order[k]] = true;
  std::pair<std::vector<size_t>, std::vector<size_t>> sides;
  for (size_t i = 0; i < kept.size(); ++i) (on_left[i] ? sides.second : sides.first).push_back(kept[i]);
  return sides;
}

// "Right kidney" of "Kidney" (an acronym keeps its capitals: "Right LV").
std::string sided_label(const std::string& label, const std::string& side) {
  std::string rest = label;
  if (rest.size() > 1 && std::isupper(static_cast<unsigned char>(rest[0])) &&
      std::islower(static_cast<unsigned char>(rest[1])))
    rest[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(rest[0])));
  return (side == "right" ? "Right " : "Left ") + rest;
}

}  // namespace

double frame_area_scale(const ConsolidatedFinding& finding, const AnalysedFrame& frame) {
  if (!finding.key_area_mm2) return 1.0;
  if (finding.region_spacing) return (*finding.region_spacing)[0] * (*finding.region_spacing)[1];
  return frame.column_spacing * frame.row_spacing;
}

bool frames_form_volume(const std::vector<AnalysedFrame>& frames) {
  if (frames.size() < 2) return false;
  const AnalysedFrame& first = frames.front();
  if (first.column_spacing <= 0 || first.row_spacing <= 0) return false;
  for (const auto& f : frames) {
    if (!f.position || f.columns != first.columns || f.rows != first.rows) return false;
    if (std::abs(f.column_spacing - first.column_spacing) > 1e-6 || std::abs(f.row_spacing - first.row_spacing) > 1e-6)
      return false;
  }
  return true;
}

std::vector<double> slab_thicknesses(const std::vector<AnalysedFrame>& frames) {
  std::vector<double> t(frames.size(), 0.0);
  if (frames.size() < 2) return t;
  for (size_t i = 0; i < frames.size(); ++i)
    if (!frames[i].position)
      throw std::invalid_argument("slab_thicknesses: frame " + std::to_string(i) + " has no position");
  // The stack's extent, when every frame carries the same one.
  std::optional<std::array<double, 2>> extent = frames.front().stack_extent;
  for (const auto& f : frames)
    if (!extent || !f.stack_extent || std::abs((*f.stack_extent)[0] - (*extent)[0]) > 1e-6 ||
        std::abs((*f.stack_extent)[1] - (*extent)[1]) > 1e-6) {
      extent.reset();
      break;
    }
  // An end frame's reach beyond itself, away from its neighbour: to the extent's bound on that
  // side, or the gap to its neighbour without an extent.
  const double list_direction = *frames.back().position - *frames.front().position;
  auto outer = [&](size_t end, size_t neighbour, double gap) {
    if (!extent) return 0.5 * gap;
    double toward_neighbour = *frames[neighbour].position - *frames[end].position;
    if (toward_neighbour == 0) toward_neighbour = end == 0 ? list_direction : -list_direction;
    const double p = *frames[end].position;
    if (toward_neighbour > 0) return std::max(0.0, p - (*extent)[0]);
    if (toward_neighbour < 0) return std::max(0.0, (*extent)[1] - p);
    return 0.0;
  };
  for (size_t i = 0; i < frames.size(); ++i) {
    const double before = i > 0 ? std::abs(*frames[i].position - *frames[i - 1].position) : -1;
    const double after = i + 1 < frames.size() ? std::abs(*frames[i + 1].position - *frames[i].position) : -1;
    if (before < 0)
      t[i] = 0.5 * after + outer(i, i + 1, after);
    else if (after < 0)
      t[i] = 0.5 * before + outer(i, i - 1, before);
    else
      t[i] = 0.5 * (before + after);
  }
  return t;
}

double finding_confidence(std::optional<double> mean_probability, double mean_iou) {
  const double iou = std::isfinite(mean_iou) ? std::clamp(mean_iou, 0.0, 1.0) : 0.0;
  if (!mean_probability) return iou;
  const double p = std::isfinite(*mean_probability) ? std::clamp(*mean_probability, 0.0, 1.0) : 0.0;
  return std::sqrt(p * iou);
}

std::string format_minimum(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

std::string low_confidence_note(const std::vector<double>& confidences, double minimum) {
  std::string list;
  char number[32];
  for (size_t i = 0; i < confidences.size() && i < 5; ++i) {
    std::snprintf(number, sizeof number, "%.4g", confidences[i]);
    list += (i ? ", " : "") + std::string(number);
  }
  if (confidences.size() > 5) list += ", ...";
  return std::to_string(confidences.size()) + " finding" + (confidences.size() > 1 ? "s" : "") +
         " with a confidence under " + format_minimum(minimum) + " left out (" + list + ")";
}

std::vector<ConsolidatedFinding> consolidate(const std::vector<AnalysedFrame>& frames,
                                             const std::vector<FrameMask>& masks, const ConsolidationOptions& options,
                                             std::string* dropped_note) {
  if (dropped_note) dropped_note->clear();
  // --- check and gather the masks of each frame --------------------------------------------
  std::map<size_t, std::vector<const FrameMask*>> by_frame;
  for (const auto& m : masks) {
    if (m.frame >= frames.size())
      throw std::invalid_argument("mask for frame " + std::to_string(m.frame) + " of " + std::to_string(frames.size()));
    const AnalysedFrame& f = frames[m.frame];
    const size_t n = static_cast<size_t>(f.columns) * static_cast<size_t>(f.rows);
    if (m.mask.size() != n || (!m.probability.empty() && m.probability.size() != n))
      throw std::invalid_argument("mask of " + std::to_string(m.mask.size()) + " pixels for frame " +
                                  std::to_string(m.frame) + " (" + f.sop_instance_uid + " frame " +
                                  std::to_string(f.frame_number) + ") of " + std::to_string(f.columns) + "x" +
                                  std::to_string(f.rows));
    by_frame[m.frame].push_back(&m);
  }
  const bool volume = options.frames_are_sequence && frames_form_volume(frames);
  const std::vector<double> thickness = volume ? slab_thicknesses(frames) : std::vector<double>(frames.size(), 0.0);
  auto pixel_area = [&](size_t frame) {
    const AnalysedFrame& f = frames[frame];
    return f.column_spacing > 0 && f.row_spacing > 0 ? f.column_spacing * f.row_spacing : 0.0;
  };

  // --- runs of the union of each frame's masks ---------------------------------------------
  std::vector<Run> runs;
  std::map<size_t, std::vector<size_t>> row_offsets;  // frame -> offsets into runs per row (rows + 1)
  std::map<size_t, std::vector<uint8_t>> union_probability;
  for (const auto& [frame, list] : by_frame) {
    const AnalysedFrame& f = frames[frame];
    const size_t n = static_cast<size_t>(f.columns) * static_cast<size_t>(f.rows);
    std::vector<uint8_t> joined(n, 0);
    std::vector<uint8_t> probability;
    bool have_probability =
        std::all_of(list.begin(), list.end(), [](const FrameMask* m) { return !m->probability.empty(); });
    if (have_probability) probability.assign(n, 0);
    for (const FrameMask* m : list)
      for (size_t i = 0; i < n; ++i)
        if (m->mask[i]) {
          joined[i] = 1;
          if (have_probability) probability[i] = std::max(probability[i], m->probability[i]);
        }
    auto& offsets = row_offsets[frame];
    offsets.assign(static_cast<size_t>(f.rows) + 1, 0);
    for (int y = 0; y < f.rows; ++y) {
      offsets[y] = runs.size();
      const uint8_t* row = joined.data() + static_cast<size_t>(y) * f.columns;
      for (int x = 0; x < f.columns;) {
        if (!row[x]) {
          ++x;
          continue;
        }
        int end = x;
        while (end < f.columns && row[end]) ++end;
        runs.push_back({frame, y, x, end});
        x = end;
      }
    }
    offsets[f.rows] = runs.size();
    if (have_probability) union_probability[frame] = std::move(probability);
  }
  if (runs.empty()) return {};
  // A paired structure in a volume whose sides touch on some slices: the runs cut at each
  // frame's division, and no connection across it.
  std::vector<uint8_t> run_side;
  if (options.sides && volume)
    if (const auto division = side_divisions(frames, runs, row_offsets))
      cut_at_divisions(frames, *division, runs, row_offsets, run_side);

  // --- connect ------------------------------------------------------------------------------
  UnionFind uf(runs.size());
  auto connect_rows = [&](size_t a_begin, size_t a_end, size_t b_begin, size_t b_end, bool diagonal) {
    // Both ranges are sorted by x; a sweep finds every overlapping pair.
    size_t j = b_begin;
    for (size_t i = a_begin; i < a_end; ++i) {
      const int lo = runs[i].x0 - (diagonal ? 1 : 0), hi = runs[i].x1 + (diagonal ? 1 : 0);
      while (j < b_end && runs[j].x1 <= lo) ++j;
      for (size_t k = j; k < b_end && runs[k].x0 < hi; ++k)
        if (run_side.empty() || run_side[i] == run_side[k]) uf.unite(i, k);
    }
  };
  for (const auto& [frame, offsets] : row_offsets) {
    const int rows = frames[frame].rows;
    for (int y = 1; y < rows; ++y) connect_rows(offsets[y], offsets[y + 1], offsets[y - 1], offsets[y], true);
    if (options.frames_are_sequence && frame > 0) {
      // The previous frame with a mask: the adjacent one only in a volume; in a cine up to
      // cine_frame_gap frames without one may lie in between.
      const size_t reach = volume ? 1 : size_t(1 + std::max(0, options.cine_frame_gap));
      for (size_t k = 1; k <= reach && k <= frame; ++k) {
        auto previous = row_offsets.find(frame - k);
        if (previous == row_offsets.end() || previous->second.front() == previous->second.back()) continue;
        if (frames[frame - k].rows == rows && frames[frame - k].columns == frames[frame].columns)
          for (int y = 0; y < rows; ++y)
            connect_rows(offsets[y], offsets[y + 1], previous->second[y], previous->second[y + 1], false);
        break;
      }
    }
  }
  std::unordered_map<size_t, size_t> component_of_root;
  std::vector<size_t> component(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const size_t root = uf.find(i);
    auto [it, inserted] = component_of_root.emplace(root, component_of_root.size());
    component[i] = it->second;
  }
  std::vector<ComponentStats> stats(component_of_root.size());

  // --- statistics per component -------------------------------------------------------------
  for (const auto& [frame, offsets] : row_offsets) {
    const AnalysedFrame& f = frames[frame];
    const auto prob_it = union_probability.find(frame);
    std::vector<int32_t> label(static_cast<size_t>(f.columns) * static_cast<size_t>(f.rows), -1);
    for (size_t r = offsets.front(); r < offsets.back(); ++r) {
      ComponentStats& s = stats[component[r]];
      const size_t width = static_cast<size_t>(runs[r].x1 - runs[r].x0);
      s.pixels += width;
      s.pixels_per_frame[frame] += width;
      const size_t base = static_cast<size_t>(runs[r].row) * f.columns;
      for (int x = runs[r].x0; x < runs[r].x1; ++x) {
        label[base + x] = static_cast<int32_t>(component[r]);
        if (prob_it != union_probability.end()) s.probability_sum += prob_it->second[base + x] / 255.0;
      }
    }
    for (const FrameMask* m : by_frame.at(frame)) {
      std::map<size_t, size_t> inside;  // component -> pixels of this mask
      for (size_t i = 0; i < label.size(); ++i)
        if (m->mask[i]) ++inside[static_cast<size_t>(label[i])];
      const std::string key = lower(normalise_phrase(m->phrase));
      for (const auto& [c, count] : inside) {
        ComponentStats& s = stats[c];
        s.iou_weighted += m->iou * double(count);
        s.iou_weight += double(count);
        if (!key.empty()) s.votes[key] += count;
        auto& best = s.text_by_frame[frame];
        if (count > best.first || !best.second) best = {count, m};
      }
    }
  }
  for (auto& s : stats) {
    if (volume) {
      for (const auto& [frame, count] : s.pixels_per_frame)
        s.size += double(count) * pixel_area(frame) * thickness[frame];
    } else {
      for (const auto& [frame, count] : s.pixels_per_frame) {
        const double area = pixel_area(frame) > 0 ? double(count) * pixel_area(frame) : double(count);
        s.size = std::max(s.size, area);
      }
    }
  }

  // --- drop noise, group into findings ------------------------------------------------------
  std::vector<size_t> kept;
  size_t dropped = 0;
  for (size_t c = 0; c < stats.size(); ++c) {
    if (stats[c].size < options.min_size)
      ++dropped;
    else
      kept.push_back(c);
  }
  std::sort(kept.begin(), kept.end(), [&](size_t a, size_t b) { return stats[a].size > stats[b].size; });
  std::vector<std::vector<size_t>> groups;
  std::vector<std::string> group_side;
  if (options.one_finding_per_component) {
    for (size_t c : kept) groups.push_back({c});
  } else if (!kept.empty()) {
    const auto sided = options.sides ? split_sides(frames, runs, component, kept, run_side) : std::nullopt;
    if (sided) {
      groups = {sided->first, sided->second};
      group_side = {"right", "left"};
    } else {
      groups.push_back(kept);
    }
  }
  const std::string unit = volume ? "mm3" : (frames.empty() || pixel_area(0) <= 0 ? "pixels" : "mm2");
  std::string drop_note;
  if (dropped)
    drop_note = std::to_string(dropped) + " component" + (dropped > 1 ? "s" : "") + " smaller than " +
                format_minimum(options.min_size) + " " + unit + " dropped as noise";

  // The display form of each phrase key: its first normalised spelling.
  std::map<std::string, std::string> display;
  for (const auto& m : masks) {
    const std::string n = normalise_phrase(m.phrase);
    if (!n.empty()) display.emplace(lower(n), n);
  }

  std::vector<ConsolidatedFinding> findings;
  std::vector<double> unsure;  // the confidences of the findings left out
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::vector<size_t>& group = groups[g];
    ConsolidatedFinding out;
    std::map<std::string, size_t> votes;
    double probability_sum = 0, iou_weighted = 0, iou_weight = 0;
    std::map<size_t, size_t> per_frame;
    std::map<size_t, std::pair<size_t, const FrameMask*>> texts;
    bool have_probability = true;
    for (size_t c : group) {
      const ComponentStats& s = stats[c];
      out.pixel_count += s.pixels;
      probability_sum += s.probability_sum;
      iou_weighted += s.iou_weighted;
      iou_weight += s.iou_weight;
      for (const auto& [k, v] : s.votes) votes[k] += v;
      for (const auto& [f, n] : s.pixels_per_frame) {
        per_frame[f] += n;
        have_probability &= union_probability.count(f) > 0;
      }
      for (const auto& [f, t] : s.text_by_frame)
        if (t.first > texts[f].first || !texts[f].second) texts[f] = t;
    }
    // Masks per frame, painted from the group's runs.
    std::vector<bool> in_group(stats.size(), false);
    for (size_t c : group) in_group[c] = true;
    for (size_t r = 0; r < runs.size(); ++r) {
      if (!in_group[component[r]]) continue;
      const AnalysedFrame& f = frames[runs[r].frame];
      auto& m = out.masks[runs[r].frame];
      if (m.empty()) m.assign(static_cast<size_t>(f.columns) * static_cast<size_t>(f.rows), 0);
      std::fill_n(m.begin() + static_cast<long>(static_cast<size_t>(runs[r].row) * f.columns + runs[r].x0),
                  runs[r].x1 - runs[r].x0, uint8_t{1});
    }
    // Key frame: the largest area (the earliest on a tie).
    out.key_frame = per_frame.begin()->first;
    for (const auto& [f, n] : per_frame)
      if (n > per_frame[out.key_frame]) out.key_frame = f;
    out.key_pixel_count = per_frame[out.key_frame];
    // The key frame as measured: with the scale of the ultrasound regions its mask lies in,
    // where the frame is calibrated by regions.
    AnalysedFrame key = frames[out.key_frame];
    if (!key.calibration_regions.empty()) {
      const dicom::MaskSpacing scale =
          dicom::mask_spacing(key.calibration_regions, out.masks.at(out.key_frame).data(), key.rows, key.columns);
      out.region_spacing = scale.spacing;
      key.row_spacing = scale.spacing ? (*scale.spacing)[0] : 0;
      key.column_spacing = scale.spacing ? (*scale.spacing)[1] : 0;
      if (!scale.spacing) out.unmeasured = "no measurements: " + scale.problem;
    }
    out.diameter_in_mm = key.row_spacing > 0 && key.column_spacing > 0;
    if (out.diameter_in_mm) out.key_area_mm2 = double(out.key_pixel_count) * key.row_spacing * key.column_spacing;
    out.key_diameter =
        longest_piece_diameter(runs, row_offsets.at(out.key_frame), component, in_group, key, out.diameter_in_mm);
    if (volume) {
      double v = 0;
      for (const auto& [f, n] : per_frame) v += double(n) * pixel_area(f) * thickness[f];
      out.volume_mm3 = v;
    }
    // Label: the phrase with the most pixels; the agreement is its share of all votes.
    if (!votes.empty()) {
      size_t total = 0;
      auto best = votes.begin();
      for (auto it = votes.begin(); it != votes.end(); ++it) {
        total += it->second;
        if (it->second > best->second) best = it;
      }
      out.label = display.count(best->first) ? display[best->first] : best->first;
      out.label_agreement = double(best->second) / double(total);
    } else {
      out.label = options.label;
    }
    if (texts.count(out.key_frame) && texts[out.key_frame].second) {
      out.text = texts[out.key_frame].second->text;
      out.answer = texts[out.key_frame].second->answer;
    }
    if (!group_side.empty()) {
      // "Kidney." (the name of the structure as the sentence) becomes "Left kidney." too.
      const bool named = out.text == out.label + ".";
      out.side = group_side[g];
      out.label = sided_label(out.label, out.side);
      if (named) out.text = out.label + ".";
    }
    out.mean_iou = iou_weight > 0 ? iou_weighted / iou_weight : 0;
    std::optional<double> probability;
    if (have_probability && out.pixel_count > 0)
      probability = out.mean_probability = probability_sum / double(out.pixel_count);
    out.confidence = finding_confidence(probability, out.mean_iou);
    if (out.confidence < options.min_confidence) {
      unsure.push_back(out.confidence);
      continue;
    }
    if (!drop_note.empty()) out.notes.push_back(drop_note);
    if (group.size() > 1)
      out.notes.push_back(std::to_string(group.size()) + " connected components" + (volume ? " in 3D" : ""));
    findings.push_back(std::move(out));
  }
  if (dropped_note) {
    *dropped_note = drop_note;
    if (!unsure.empty())
      *dropped_note += (drop_note.empty() ? "" : "; ") + low_confidence_note(unsure, options.min_confidence);
  }
  // Several findings with one label: number them in order of size ("Lesion 1", "Lesion 2").
  std::map<std::string, int> count, seen;
  for (const auto& f : findings) ++count[f.label];
  for (auto& f : findings) {
    if (count[f.label] < 2) continue;
    const int number = ++seen[f.label];
    f.label += " " + std::to_string(number);
  }
  return findings;
}

}  // namespace unibiomed::pipeline
