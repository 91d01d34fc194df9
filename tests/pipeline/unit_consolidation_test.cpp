// Consolidation of per-slice masks into findings: components across slices, structures versus
// lesions, noise, label agreement, volume from slice positions, confidence.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>

#include "pipeline/consolidation.h"

namespace unibiomed::pipeline {
namespace {

constexpr int kColumns = 32, kRows = 24;

std::vector<AnalysedFrame> stack(int count, double spacing = 2.5, double first = -40) {
  std::vector<AnalysedFrame> frames;
  for (int i = 0; i < count; ++i) {
    AnalysedFrame f;
    f.instance_index = size_t(i);
    f.sop_instance_uid = "1.2.3." + std::to_string(i + 1);
    f.columns = kColumns;
    f.rows = kRows;
    f.column_spacing = 0.8;
    f.row_spacing = 0.6;
    f.position = first + spacing * i;
    frames.push_back(f);
  }
  return frames;
}

FrameMask box(size_t frame, int x0, int y0, int w, int h, double iou = 0.9, uint8_t probability = 230,
              const std::string& phrase = "") {
  FrameMask m;
  m.frame = frame;
  m.mask.assign(size_t(kColumns) * kRows, 0);
  m.probability.assign(m.mask.size(), 10);
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x) {
      m.mask[size_t(y) * kColumns + x] = 1;
      m.probability[size_t(y) * kColumns + x] = probability;
    }
  m.iou = iou;
  m.phrase = phrase;
  m.text = "It is [SEG]. " + phrase;
  return m;
}

TEST(Consolidation, TwoBlobsAreTwoLesionsOrOneStructure) {
  const auto frames = stack(6);
  std::vector<FrameMask> masks;
  for (size_t f = 1; f <= 3; ++f) masks.push_back(box(f, 2, 2, 5, 4));                 // blob A, slices 1-3
  for (size_t f = 2; f <= 5; ++f) masks.push_back(box(f, 20, 10, 8, 8 + int(f) % 2));  // blob B, slices 2-5
  // Blob B's masks share frames 2-3 with blob A: the union per frame must keep them apart.
  ConsolidationOptions lesions{true, true, 0, "Lesion"};
  const auto found = consolidate(frames, masks, lesions);
  ASSERT_EQ(found.size(), 2u);
  // Ordered by size, numbered because they share a label.
  EXPECT_EQ(found[0].label, "Lesion 1");
  EXPECT_EQ(found[1].label, "Lesion 2");
  EXPECT_EQ(found[0].masks.size(), 4u);  // B
  EXPECT_EQ(found[1].masks.size(), 3u);  // A
  EXPECT_EQ(found[1].pixel_count, 3u * 20u);
  // Volume: pixels x pixel area x slab thickness (2.5 mm between analysed slices).
  ASSERT_TRUE(found[1].volume_mm3);
  EXPECT_NEAR(*found[1].volume_mm3, 60 * 0.8 * 0.6 * 2.5, 1e-9);
  ASSERT_TRUE(found[1].key_area_mm2);
  EXPECT_NEAR(*found[1].key_area_mm2, 20 * 0.8 * 0.6, 1e-9);
  EXPECT_EQ(found[1].key_frame, 1u);  // equal areas: the first
  EXPECT_NEAR(found[1].key_diameter.length, std::hypot(5 * 0.8, 4 * 0.6), 1e-9);
  EXPECT_TRUE(found[1].diameter_in_mm);

  ConsolidationOptions structure{true, false, 0, "Kidney"};
  const auto one = consolidate(frames, masks, structure);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].label, "Kidney");
  EXPECT_EQ(one[0].pixel_count, found[0].pixel_count + found[1].pixel_count);
  EXPECT_EQ(one[0].masks.size(), 5u);  // frames 1..5
  EXPECT_NE(one[0].notes.at(0).find("2 connected components in 3D"), std::string::npos);
}

TEST(Consolidation, TheLongAxisOfAStructureInPiecesIsItsLongestPieceNotTheGapBetweenThem) {
  const auto frames = stack(3);
  // Two kidneys on slices 0-2, far apart: left 5 x 4 pixels, right 6 x 8 pixels.
  std::vector<FrameMask> masks;
  for (size_t f = 0; f < 3; ++f) {
    FrameMask m = box(f, 1, 2, 5, 4);
    const FrameMask right = box(f, 24, 10, 6, 8);
    for (size_t i = 0; i < m.mask.size(); ++i) m.mask[i] |= right.mask[i];
    masks.push_back(m);
  }
  const auto kidneys = consolidate(frames, masks, {true, false, 0, "Kidney"});
  ASSERT_EQ(kidneys.size(), 1u);
  const Diameter& d = kidneys[0].key_diameter;
  EXPECT_NEAR(d.length, std::hypot(6 * 0.8, 8 * 0.6), 1e-9) << "the right kidney's diagonal, not across both";
  // Its end points lie on the right kidney's corners, in the frame's pixel coordinates.
  for (const auto& p : {d.from, d.to}) {
    EXPECT_GE(p[0], 24.0);
    EXPECT_LE(p[0], 30.0);
    EXPECT_GE(p[1], 10.0);
    EXPECT_LE(p[1], 18.0);
  }
  EXPECT_NEAR(std::hypot((d.to[0] - d.from[0]) * 0.8, (d.to[1] - d.from[1]) * 0.6), d.length, 1e-9);
  // The area is still the whole structure's on the key slice.
  EXPECT_NEAR(*kidneys[0].key_area_mm2, (20 + 48) * 0.8 * 0.6, 1e-9);

  // One lesion shaped like a U: its two arms (2 x 4 pixels each) are apart on slice 1 but joined
  // by a bar (12 x 1) on slice 0, so it is one component, slice 1 is its key slice (16 pixels
  // against 12), and its long axis there spans both arms.
  std::vector<FrameMask> u = {box(0, 4, 4, 12, 1), box(1, 4, 4, 2, 4)};
  const FrameMask arm = box(1, 14, 4, 2, 4);
  for (size_t i = 0; i < arm.mask.size(); ++i) u[1].mask[i] |= arm.mask[i];
  const auto lesion = consolidate(frames, u, {true, true, 0, "Lesion"});
  ASSERT_EQ(lesion.size(), 1u);
  ASSERT_EQ(lesion[0].key_frame, 1u);
  EXPECT_NEAR(lesion[0].key_diameter.length, std::hypot(12 * 0.8, 4 * 0.6), 1e-9);
  // In pixels, without spacing, the same rule holds.
  auto plain = stack(3);
  for (auto& f : plain) f.column_spacing = f.row_spacing = 0, f.position.reset();
  const auto in_pixels = consolidate(plain, {masks[0]}, {false, false, 0, "Kidney"});
  ASSERT_EQ(in_pixels.size(), 1u);
  EXPECT_FALSE(in_pixels[0].diameter_in_mm);
  EXPECT_NEAR(in_pixels[0].key_diameter.length, 10.0, 1e-12);  // 6 x 8 pixels
}

TEST(Consolidation, ConnectivityIsEightInPlaneAndFaceAcrossSlices) {
  const auto frames = stack(3);
  // Diagonal touch in plane: one component.
  std::vector<FrameMask> diagonal = {box(0, 2, 2, 2, 2)};
  const FrameMask other = box(0, 4, 4, 2, 2);
  for (size_t i = 0; i < other.mask.size(); ++i) diagonal[0].mask[i] |= other.mask[i];
  EXPECT_EQ(consolidate(frames, diagonal, {true, true, 0, "L"}).size(), 1u);
  // Diagonal between slices (no shared (x, y)): two components.
  const std::vector<FrameMask> shifted = {box(0, 2, 2, 2, 2), box(1, 4, 4, 2, 2)};
  EXPECT_EQ(consolidate(frames, shifted, {true, true, 0, "L"}).size(), 2u);
  // Overlapping in consecutive slices: one.
  const std::vector<FrameMask> overlapping = {box(0, 2, 2, 3, 3), box(1, 4, 4, 2, 2)};
  EXPECT_EQ(consolidate(frames, overlapping, {true, true, 0, "L"}).size(), 1u);
  // A gap of one analysed slice separates.
  const std::vector<FrameMask> gap = {box(0, 2, 2, 3, 3), box(2, 2, 2, 3, 3)};
  EXPECT_EQ(consolidate(frames, gap, {true, true, 0, "L"}).size(), 2u);
  // Independent images never connect across frames.
  EXPECT_EQ(consolidate(frames, overlapping, {false, true, 0, "L"}).size(), 2u);
}

TEST(Consolidation, StridedSlicesStandForTheirSlab) {
  // Every 3rd slice of a 1 mm stack was analysed: each stands for 3 mm.
  const auto frames = stack(4, 3.0);
  std::vector<FrameMask> masks;
  for (size_t f = 0; f < 4; ++f) masks.push_back(box(f, 10, 10, 4, 5));
  const auto found = consolidate(frames, masks, {true, false, 0, "Liver"});
  ASSERT_EQ(found.size(), 1u);
  // Slabs: 3 (end, one-sided), 3, 3, 3.
  EXPECT_NEAR(*found[0].volume_mm3, 4 * 20 * 0.8 * 0.6 * 3.0, 1e-9);
  const auto t = slab_thicknesses(frames);
  EXPECT_EQ(t, (std::vector<double>{3, 3, 3, 3}));
  // Uneven gaps: 2 and 4 -> 2, 3, 4.
  auto uneven = stack(3);
  uneven[1].position = *uneven[0].position + 2;
  uneven[2].position = *uneven[1].position + 4;
  EXPECT_EQ(slab_thicknesses(uneven), (std::vector<double>{2, 3, 4}));
}

TEST(Consolidation, StridedSlicesOfAStackReachItsOwnEndsNotBeyond) {
  // The analysed frames of one stack carry its extent: [first - spacing/2, last + spacing/2].
  auto with_extent = [](std::vector<AnalysedFrame> all, double spacing, const std::vector<size_t>& sampled) {
    const std::array<double, 2> extent{*all.front().position - spacing / 2, *all.back().position + spacing / 2};
    std::vector<AnalysedFrame> frames;
    for (size_t i : sampled) {
      frames.push_back(all[i]);
      frames.back().stack_extent = extent;
    }
    return frames;
  };
  auto total = [](const std::vector<double>& t) {
    double sum = 0;
    for (double v : t) sum += v;
    return sum;
  };
  // 10 slices of 1 mm (extent [-0.5, 9.5] from the first), slices 0, 3, 6 and 9 analysed: the
  // ends stand for 1.5 + 0.5 mm each, the inner ones for 3 mm; 10 mm in all, as the stack.
  const auto frames = with_extent(stack(10, 1.0, 0.0), 1.0, {0, 3, 6, 9});
  const auto t = slab_thicknesses(frames);
  EXPECT_EQ(t, (std::vector<double>{2, 3, 3, 2}));
  EXPECT_DOUBLE_EQ(total(t), 10.0);
  std::vector<FrameMask> masks;
  for (size_t f = 0; f < frames.size(); ++f) masks.push_back(box(f, 10, 10, 4, 5));
  const auto found = consolidate(frames, masks, {true, false, 0, "Liver"});
  ASSERT_EQ(found.size(), 1u);
  ASSERT_TRUE(found[0].volume_mm3);
  EXPECT_NEAR(*found[0].volume_mm3, 20 * 0.8 * 0.6 * 10.0, 1e-9);
  // The same frames in descending order of position.
  const std::vector<AnalysedFrame> descending(frames.rbegin(), frames.rend());
  EXPECT_EQ(slab_thicknesses(descending), (std::vector<double>{2, 3, 3, 2}));
  // 12 slices of 2.5 mm, only the first and the last analysed: 12 x 2.5 = 30 mm, not 2 x 27.5.
  const auto ends = with_extent(stack(12, 2.5), 2.5, {0, 11});
  EXPECT_EQ(slab_thicknesses(ends), (std::vector<double>{15, 15}));
  EXPECT_EQ(slab_thicknesses(std::vector<AnalysedFrame>(ends.rbegin(), ends.rend())), (std::vector<double>{15, 15}));
  // Every slice analysed: each stands for the spacing, the ends too.
  const auto full = with_extent(stack(12, 2.5), 2.5, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  EXPECT_EQ(slab_thicknesses(full), std::vector<double>(12, 2.5));
  EXPECT_EQ(slab_thicknesses(std::vector<AnalysedFrame>(full.rbegin(), full.rend())), std::vector<double>(12, 2.5));
  // Frames that disagree on the extent fall back to one-sided ends.
  auto mixed = frames;
  mixed.back().stack_extent.reset();
  EXPECT_EQ(slab_thicknesses(mixed), (std::vector<double>{3, 3, 3, 3}));
}

TEST(Consolidation, SmallComponentsAreDroppedAsNoiseAndSaidSo) {
  const auto frames = stack(3);
  std::vector<FrameMask> masks = {box(0, 1, 1, 10, 10), box(1, 1, 1, 10, 10), box(1, 25, 20, 2, 2)};
  // The big one: 200 px x 0.48 mm2 x 2.5 mm = 240 mm3; the speck: 4 x 0.48 x 2.5 = 4.8 mm3.
  const auto found = consolidate(frames, masks, {true, true, 10.0, "Lesion"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].label, "Lesion");
  ASSERT_EQ(found[0].notes.size(), 1u);
  EXPECT_EQ(found[0].notes[0], "1 component smaller than 10 mm3 dropped as noise");
  std::string dropped;
  EXPECT_EQ(consolidate(frames, masks, {true, true, 10.0, "Lesion"}, &dropped).size(), 1u);
  EXPECT_EQ(dropped, "1 component smaller than 10 mm3 dropped as noise");
  // Everything dropped: no finding carries the note, the caller still gets it.
  EXPECT_TRUE(consolidate(frames, masks, {true, true, 1000.0, "Lesion"}, &dropped).empty());
  EXPECT_EQ(dropped, "2 components smaller than 1000 mm3 dropped as noise");
  EXPECT_TRUE(consolidate(frames, masks, {true, true, 0.0, "Lesion"}, &dropped).size() == 2u);
  EXPECT_EQ(dropped, "");
}

TEST(Consolidation, LabelIsWhatMostPixelsWereCalled) {
  const auto frames = stack(4);
  std::vector<FrameMask> masks = {
      box(0, 2, 2, 6, 6, 0.9, 230, "liver cyst."), box(1, 2, 2, 6, 6, 0.9, 230, "Liver  cyst"),
      box(2, 2, 2, 6, 6, 0.9, 230, "hemangioma"), box(3, 20, 2, 4, 4, 0.8, 200, "Metastasis.")};
  const auto found = consolidate(frames, masks, {true, true, 0, "Lesion"});
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].label, "Liver cyst");  // normalised: case, spaces, trailing period
  EXPECT_NEAR(found[0].label_agreement, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(found[1].label, "Metastasis");
  EXPECT_EQ(found[1].label_agreement, 1.0);
  EXPECT_EQ(found[1].text, "It is [SEG]. Metastasis.");
}

TEST(Consolidation, ConfidenceIsTheGeometricMeanOfProbabilityAndIou) {
  const auto frames = stack(2);
  const std::vector<FrameMask> masks = {box(0, 2, 2, 4, 4, 0.8, 204), box(1, 2, 2, 4, 8, 0.5, 153)};
  const auto found = consolidate(frames, masks, {true, false, 0, "Liver"});
  ASSERT_EQ(found.size(), 1u);
  const double p = (16 * 204 / 255.0 + 32 * 153 / 255.0) / 48;
  const double iou = (16 * 0.8 + 32 * 0.5) / 48;
  EXPECT_NEAR(found[0].mean_probability, p, 1e-12);
  EXPECT_NEAR(found[0].mean_iou, iou, 1e-12);
  EXPECT_NEAR(found[0].confidence, std::sqrt(p * iou), 1e-12);
  // Without probability maps the IoU head alone speaks.
  auto no_probability = masks;
  for (auto& m : no_probability) m.probability.clear();
  EXPECT_NEAR(consolidate(frames, no_probability, {true, false, 0, "Liver"})[0].confidence, iou, 1e-12);
  // The IoU head regresses: its values outside [0, 1] (and a NaN) are clamped, so that the
  // confidence is always one the SR can state in percent.
  const auto with_iou = [&](double value) {
    auto m = masks;
    for (auto& x : m) x.iou = value;
    return consolidate(frames, m, {true, false, 0, "Liver"}).at(0).confidence;
  };
  EXPECT_NEAR(with_iou(1.3), std::sqrt(p), 1e-12);
  EXPECT_EQ(with_iou(-0.2), 0.0);
  EXPECT_EQ(finding_confidence(0.64, std::nan("")), 0.0);
  EXPECT_EQ(finding_confidence(std::nullopt, 1.7), 1.0);
  EXPECT_NEAR(finding_confidence(1.5, 0.25), 0.5, 1e-12);
}

TEST(Consolidation, FindingsUnderTheMinimumConfidenceAreLeftOutBeforeTheyAreNumbered) {
  const auto frames = stack(3);
  // Three lesions: confident (0.9 x 0.9), unsure (0.3 x 0.3), confident again but smaller.
  const std::vector<FrameMask> masks = {box(0, 1, 1, 8, 8, 0.9, 230), box(0, 14, 1, 6, 6, 0.3, 77),
                                        box(0, 24, 12, 4, 4, 0.9, 230)};
  ConsolidationOptions options{true, true, 0, "Lesion"};
  EXPECT_EQ(consolidate(frames, masks, options).size(), 3u);
  options.min_confidence = 0.5;
  std::string dropped;
  const auto kept = consolidate(frames, masks, options, &dropped);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].label, "Lesion 1");
  EXPECT_EQ(kept[1].label, "Lesion 2") << "numbered without a gap";
  EXPECT_EQ(kept[1].pixel_count, 16u);
  const double unsure = std::sqrt(77 / 255.0 * 0.3);
  char expected[128];
  std::snprintf(expected, sizeof expected, "1 finding with a confidence under 0.5 left out (%.4g)", unsure);
  EXPECT_EQ(dropped, expected);
  // With specks dropped as well, both are said.
  options.min_size = 20;  // mm3: the 4 x 4 box is 16 x 0.48 x 2.5 = 19.2 mm3
  consolidate(frames, masks, options, &dropped);
  EXPECT_EQ(dropped, std::string("1 component smaller than 20 mm3 dropped as noise; ") + expected);
  // A structure is one finding: all of it or nothing.
  options = {true, false, 0, "Liver"};
  options.min_confidence = 0.99;
  EXPECT_TRUE(consolidate(frames, masks, options, &dropped).empty());
  EXPECT_EQ(dropped.rfind("1 finding with a confidence under 0.99 left out (", 0), 0u) << dropped;
  // A slide may leave out hundreds: five confidences are listed.
  EXPECT_EQ(low_confidence_note({0.1, 0.2, 0.3, 0.4, 0.45, 0.25, 0.15}, 0.5),
            "7 findings with a confidence under 0.5 left out (0.1, 0.2, 0.3, 0.4, 0.45, ...)");
}

TEST(Consolidation, ImagesWithoutGeometryAreMeasuredInPixels) {
  auto frames = stack(1);
  frames[0].column_spacing = frames[0].row_spacing = 0;
  frames[0].position.reset();
  const auto found = consolidate(frames, {box(0, 3, 3, 6, 8)}, {false, true, 0, "Skin lesion"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_FALSE(found[0].key_area_mm2);
  EXPECT_FALSE(found[0].volume_mm3);
  EXPECT_FALSE(found[0].diameter_in_mm);
  EXPECT_NEAR(found[0].key_diameter.length, 10.0, 1e-12);  // 6 x 8 pixels: diagonal 10
}

TEST(Consolidation, ACineBridgesFramesWhereTheFindingWasMissedAVolumeDoesNot) {
  // Frames 0-3 and 7-9 show the same blob; frames 4-6 have no mask (the model missed it).
  std::vector<FrameMask> masks;
  for (size_t f : {0, 1, 2, 3, 7, 8, 9}) masks.push_back(box(f, 4, 4, 6, 5));
  ConsolidationOptions lesions{true, true, 0, "Cyst"};
  auto cine = stack(10);
  for (auto& f : cine) f.position.reset();  // frames in time: a sequence, not a volume
  auto found = consolidate(cine, masks, lesions);
  ASSERT_EQ(found.size(), 1u) << "three missed frames do not split a cine's finding";
  EXPECT_EQ(found[0].masks.size(), 7u);
  EXPECT_EQ(found[0].label, "Cyst");
  // A frame in between with a mask elsewhere is no bridge: the blob links to the last frame with
  // a mask, where it does not overlap, so it is split.
  masks.push_back(box(5, 20, 14, 4, 4));
  found = consolidate(cine, masks, lesions);
  EXPECT_EQ(found.size(), 3u);
  masks.pop_back();
  // Four missed frames are too many: two findings.
  lesions.cine_frame_gap = 2;
  EXPECT_EQ(consolidate(cine, masks, lesions).size(), 2u);
  // A volume joins adjacent slices only: the same gap separates two lesions.
  lesions.cine_frame_gap = 3;
  EXPECT_EQ(consolidate(stack(10), masks, lesions).size(), 2u);
}

// A stack whose columns run toward the patient's left (`toward_left` +1) or right (-1), 0.8 mm
// apart, from x = -100 mm.
std::vector<AnalysedFrame> sided_stack(int count, double toward_left) {
  auto frames = stack(count);
  for (auto& f : frames) {
    f.left_at = std::array<double, 3>{-100.0, toward_left * 0.8, 0.0};
    f.left_in_mm = true;
  }
  return frames;
}

TEST(Consolidation, APairedStructureIsOneFindingPerSideOfThePatient) {
  // Two kidneys, the right one (low x) in two pieces; columns 2-6 and 20-27: 11.2 mm apart.
  std::vector<FrameMask> masks;
  for (size_t f = 0; f < 3; ++f) masks.push_back(box(f, 2, 2, 5, 4));
  masks.push_back(box(2, 3, 12, 4, 6));  // the right kidney's lower pole, apart on slice 2
  for (size_t f = 1; f < 4; ++f) masks.push_back(box(f, 20, 10, 8, 8));
  for (auto& m : masks) m.text = "Kidney.";
  ConsolidationOptions paired;
  paired.frames_are_sequence = true;
  paired.label = "Kidney";
  paired.sides = true;
  auto found = consolidate(sided_stack(4, +1), masks, paired);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].label, "Right kidney");
  EXPECT_EQ(found[0].side, "right");
  EXPECT_EQ(found[0].text, "Right kidney.");
  EXPECT_EQ(found[0].pixel_count, 3u * 20u + 24u);  // both pieces of the right one
  EXPECT_EQ(found[1].label, "Left kidney");
  EXPECT_EQ(found[1].side, "left");
  EXPECT_EQ(found[1].pixel_count, 3u * 64u);
  EXPECT_EQ(found[1].masks.count(0), 0u);
  // Columns toward the patient's right (an image flipped left to right): the sides swap.
  found = consolidate(sided_stack(4, -1), masks, paired);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].label, "Right kidney");
  EXPECT_EQ(found[0].pixel_count, 3u * 64u);
  EXPECT_EQ(found[1].label, "Left kidney");
  // One finding for both: not paired, no side known, or the pieces under 10 mm apart.
  paired.sides = false;
  found = consolidate(sided_stack(4, +1), masks, paired);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].label, "Kidney");
  EXPECT_EQ(found[0].side, "");
  EXPECT_EQ(found[0].text, "Kidney.");
  paired.sides = true;
  EXPECT_EQ(consolidate(stack(4), masks, paired).size(), 1u);
  for (auto& m : masks)
    if (m.frame > 0 && m.mask[size_t(10) * kColumns + 20]) {
      auto moved = box(m.frame, 14, 10, 8, 8);  // 6.4 mm from the right kidney
      m.mask = moved.mask;
    }
  EXPECT_EQ(consolidate(sided_stack(4, +1), masks, paired).size(), 1u);
}

TEST(Consolidation, APairedStructureWhoseSidesTouchOnSomeSlicesIsStillOneFindingPerSide) {
  // Two lungs on five slices, columns 2-9 and 24-31: 15 columns (12 mm) between the pixel
  // centres nearest each other.
  std::vector<FrameMask> masks;
  for (size_t f = 0; f < 5; ++f) {
    masks.push_back(box(f, 2, 2, 8, 18));
    masks.push_back(box(f, 24, 2, 8, 18));
  }
  // On slice 1 they touch at the anterior junction (rows 2-4 joined across), on slice 2 by a
  // bridge of one row: in 3D one component.
  masks.push_back(box(1, 10, 2, 14, 3));
  masks.push_back(box(2, 10, 6, 14, 1));
  ConsolidationOptions paired;
  paired.frames_are_sequence = true;
  paired.label = "Lung";
  paired.sides = true;
  const auto frames = sided_stack(5, +1);
  auto found = consolidate(frames, masks, paired);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].label, "Right lung");
  EXPECT_EQ(found[1].label, "Left lung");
  // The gap's middle on the slices that have one: between columns 9 and 24, at 16.5; the
  // bridges split there (columns 10-16 right, 17-23 left).
  EXPECT_EQ(found[0].pixel_count, 5u * 144u + 7u * 3u + 7u);
  EXPECT_EQ(found[1].pixel_count, 5u * 144u + 7u * 3u + 7u);
  EXPECT_EQ(found[0].masks.at(1)[size_t(2) * kColumns + 16], 1);
  EXPECT_EQ(found[0].masks.at(1)[size_t(2) * kColumns + 17], 0);
  EXPECT_EQ(found[1].masks.at(1)[size_t(2) * kColumns + 17], 1);
  // Flipped columns: the same division, the sides swap.
  found = consolidate(sided_stack(5, -1), masks, paired);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].label, "Right lung");
  EXPECT_EQ(found[0].masks.at(1)[size_t(2) * kColumns + 17], 1);
  // Joined on three of the five slices: fewer than half show the two sides, so there is no
  // telling where they divide: one finding, as before.
  masks.push_back(box(3, 10, 2, 14, 3));
  found = consolidate(frames, masks, paired);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].label, "Lung");
  EXPECT_EQ(found[0].side, "");
  // Not a volume (a cine without positions): components only, one finding.
  masks.resize(12);
  auto cine = frames;
  for (auto& f : cine) f.position.reset();
  EXPECT_EQ(consolidate(cine, masks, paired).size(), 1u);
}

TEST(Consolidation, APairedStructureOnOneProjectionImageIsSidedInPixels) {
  // A chest radiograph with PatientOrientation "L\F": the columns run toward the patient's left.
  auto frames = stack(2);
  for (auto& f : frames) {
    f.position.reset();
    f.left_at = std::array<double, 3>{0.0, 1.0, 0.0};
  }
  ConsolidationOptions paired;
  paired.label = "Lung";
  paired.sides = true;
  const auto found = consolidate({frames[0]}, {box(0, 2, 2, 8, 14), box(0, 18, 2, 9, 14)}, paired);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].label, "Right lung");
  EXPECT_EQ(found[0].pixel_count, 8u * 14u);
  EXPECT_EQ(found[1].label, "Left lung");
  // Two images in pixels are not one coordinate system: one finding.
  EXPECT_EQ(consolidate(frames, {box(0, 2, 2, 8, 14), box(1, 18, 2, 9, 14)}, paired).size(), 1u);
}

TEST(Consolidation, BadMasksAreRefusedWithTheFrame) {
  const auto frames = stack(2);
  FrameMask wrong = box(1, 0, 0, 1, 1);
  wrong.mask.resize(10);
  try {
    consolidate(frames, {wrong}, {});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("1.2.3.2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(consolidate(frames, {box(5, 0, 0, 1, 1)}, {}), std::invalid_argument);
  EXPECT_TRUE(consolidate(frames, {}, {}).empty());
}

}  // namespace
}  // namespace unibiomed::pipeline
