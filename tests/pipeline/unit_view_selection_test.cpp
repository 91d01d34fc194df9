// Which views of a long series the model looks at (select_views): the rule's slice selection,
// then, over max_slices_per_series, an even stride within each part of the series (a stack, a
// cine, a single image), so that stills among cines are kept and cines stay cines.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <map>

#include "pipeline/study_plan.h"

namespace unibiomed::pipeline {
namespace {

// `frames` frames of one multi-frame instance (a cine), or one single-frame image.
void add_instance(std::vector<dicom::ViewRequest>& views, size_t instance, int frames) {
  for (int f = 1; f <= frames; ++f) {
    dicom::ViewRequest v;
    v.instance_index = instance;
    v.frame_number = f;
    views.push_back(v);
  }
}

void add_stack(std::vector<dicom::ViewRequest>& views, int stack, int slices, size_t first_instance) {
  for (int s = 0; s < slices; ++s) {
    dicom::ViewRequest v;
    v.instance_index = first_instance + static_cast<size_t>(s);
    v.stack_index = stack;
    v.slice_index = s;
    views.push_back(v);
  }
}

// Selected frames per instance (1-based frame numbers).
std::map<size_t, std::vector<int>> frames_of(const std::vector<dicom::ViewRequest>& views,
                                             const ViewSelection& selection) {
  std::map<size_t, std::vector<int>> out;
  for (size_t i : selection.selected) out[views[i].instance_index].push_back(views[i].frame_number);
  return out;
}

TEST(ViewSelection, AStillAmongCinesIsKeptAndEveryCineStaysASequence) {
  // Two 16-frame cines with a still between them, 6 views allowed: each cine keeps its first and
  // last frame, the still is kept, and the one view left goes to the first cine (equal rooms).
  std::vector<dicom::ViewRequest> views;
  add_instance(views, 0, 16);
  add_instance(views, 1, 1);
  add_instance(views, 2, 16);
  const ViewSelection s = select_views(views, std::nullopt, 6);
  ASSERT_EQ(s.selected.size(), 6u);
  EXPECT_TRUE(std::is_sorted(s.selected.begin(), s.selected.end()));
  const auto frames = frames_of(views, s);
  EXPECT_EQ(frames.at(0), (std::vector<int>{1, 9, 16}));  // round(k * 15 / 2) + 1
  EXPECT_EQ(frames.at(1), (std::vector<int>{1}));
  EXPECT_EQ(frames.at(2), (std::vector<int>{1, 16}));
  EXPECT_EQ(s.note,
            "an even stride keeps 6 of 33 views (one in 5.5) to stay within max_slices_per_series 6; per part of "
            "the series, in its order: 3 of 16, 1 of 1, 2 of 16");
}

TEST(ViewSelection, SharesFollowThePartsSizes) {
  // A 60-slice stack and a 12-frame cine, 24 views: 2 each first, then the 20 left by room
  // (58 and 10): 17.06 and 2.94, the larger remainder to the cine: 19 and 5.
  std::vector<dicom::ViewRequest> views;
  add_stack(views, 0, 60, 0);
  add_instance(views, 60, 12);
  const ViewSelection s = select_views(views, std::nullopt, 24);
  ASSERT_EQ(s.selected.size(), 24u);
  size_t stack = 0;
  for (size_t i : s.selected) stack += views[i].stack_index == 0 ? 1 : 0;
  EXPECT_EQ(stack, 19u);
  EXPECT_EQ(frames_of(views, s).at(60), (std::vector<int>{1, 4, 7, 9, 12}));
}

TEST(ViewSelection, OnePartIsStridedAsBefore) {
  std::vector<dicom::ViewRequest> views;
  add_stack(views, 0, 10, 0);
  const ViewSelection s = select_views(views, std::nullopt, 4);
  EXPECT_EQ(s.selected, (std::vector<size_t>{0, 3, 6, 9}));
  EXPECT_EQ(s.note, "an even stride keeps 4 of 10 views (one in 2.5) to stay within max_slices_per_series 4");
  EXPECT_EQ(select_views(views, std::nullopt, 1).selected, (std::vector<size_t>{5}));  // the middle slice
  const ViewSelection all = select_views(views, std::nullopt, 10);
  EXPECT_EQ(all.selected.size(), 10u);
  EXPECT_EQ(all.note, "");
}

TEST(ViewSelection, CinesThatCannotAllKeepTwoFramesKeepOneEach) {
  std::vector<dicom::ViewRequest> views;
  for (size_t i = 0; i < 3; ++i) add_instance(views, i, 10);
  const ViewSelection s = select_views(views, std::nullopt, 4);
  const auto frames = frames_of(views, s);
  EXPECT_EQ(frames.at(0), (std::vector<int>{1, 10}));
  EXPECT_EQ(frames.at(1), (std::vector<int>{6}));
  EXPECT_EQ(frames.at(2), (std::vector<int>{6}));
}

TEST(ViewSelection, MorePartsThanViewsAllowedIsOneStrideOverAll) {
  std::vector<dicom::ViewRequest> views;
  for (size_t i = 0; i < 5; ++i) add_instance(views, i, 1);
  const ViewSelection s = select_views(views, std::nullopt, 3);
  EXPECT_EQ(s.selected, (std::vector<size_t>{0, 2, 4}));
  EXPECT_EQ(s.note,
            "an even stride over all views keeps 3 of 5 views (one in 1.67) to stay within max_slices_per_series 3; "
            "the series' 5 parts (stacks, cines, images) do not all fit");
}

TEST(ViewSelection, TheRulesSliceSelectionComesFirst) {
  // Slices 0.5 to 1 of a 20-slice stack, every 2nd: 10, 12, ..., 18; then 3 of those 5.
  std::vector<dicom::ViewRequest> views;
  add_stack(views, 0, 20, 0);
  config::SliceSelection slices;
  slices.from = 0.5;
  slices.to = 1.0;
  slices.stride = 2;
  const ViewSelection s = select_views(views, slices, 3);
  EXPECT_EQ(s.selected, (std::vector<size_t>{10, 14, 18}));
  EXPECT_EQ(s.note,
            "the rule's slice selection (from 0.5 to 1 of each stack, every 2nd slice) keeps 5 of 20 views; an even "
            "stride keeps 3 of 5 views (one in 1.67) to stay within max_slices_per_series 3");
  const std::map<int, std::string> ordinals = {
      {1, "every slice"},         {3, "every 3rd slice"},    {11, "every 11th slice"}, {12, "every 12th slice"},
      {13, "every 13th slice"},   {21, "every 21st slice"},  {22, "every 22nd slice"}, {23, "every 23rd slice"},
      {101, "every 101st slice"}, {111, "every 111th slice"}};
  for (const auto& [stride, expected] : ordinals) {
    slices.stride = stride;
    const std::string note = select_views(views, slices, 0).note;
    EXPECT_NE(note.find(expected), std::string::npos) << note;
  }
}

}  // namespace
}  // namespace unibiomed::pipeline
