// Masks land on the right source pixels: a real non-square DICOM image (pydicom's 60x80
// ultrasound) rendered as a padded square view, a mask drawn on the view where the source
// region is known, mapped back through the provenance (at the view's size and at the model's
// 1024 output size). Also the preview drawing and the bitmap font.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <set>

#include "dicom/series.h"
#include "dicom/view.h"
#include "pipeline/bitmap_font.h"
#include "pipeline/preview.h"
#include "tests/support/test_support.h"

namespace unibiomed::pipeline {
namespace {

namespace fs = std::filesystem;
const fs::path kPydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files";

dicom::View ultrasound_view() {
  const auto collection = dicom::read_series({kPydicomFiles / "ExplVR_BigEnd.dcm"});
  if (collection.series.size() != 1) throw std::runtime_error("expected one series");
  const auto views = dicom::render_views(collection.series[0], dicom::RenderOptions{});
  if (views.size() != 1) throw std::runtime_error("expected one view");
  return views[0];
}

TEST(MaskMapping, AMaskOnThePaddedViewLandsOnTheSourcePixels) {
  ASSERT_TRUE(fs::exists(kPydicomFiles / "ExplVR_BigEnd.dcm")) << test::install_hint("pydicom's test files", "Debian's python3-pydicom");
  const dicom::View view = ultrasound_view();
  const auto& p = view.provenance;
  ASSERT_EQ(p.source_columns, 80);
  ASSERT_EQ(p.source_rows, 60);
  ASSERT_EQ(view.image.width, 80);
  ASSERT_EQ(view.image.height, 80);
  EXPECT_EQ(p.pad_top + p.pad_bottom, 20);
  // Source rectangle: columns 30..44, rows 5..14.
  auto in_source_rect = [](int x, int y) { return x >= 30 && x < 45 && y >= 5 && y < 15; };
  dicom::GreyImage on_view{80, 80, std::vector<uint8_t>(80 * 80, 0)};
  for (int y = 0; y < 80; ++y)
    for (int x = 0; x < 80; ++x)
      on_view.grey[size_t(y) * 80 + x] = in_source_rect(x - p.pad_left, y - p.pad_top) ? 1 : 0;
  // The model answers at the size it was given; SAM2 masks may also come at 1024 x 1024.
  dicom::GreyImage at_1024{1024, 1024, std::vector<uint8_t>(1024 * 1024, 0)};
  for (int y = 0; y < 1024; ++y)
    for (int x = 0; x < 1024; ++x)
      at_1024.grey[size_t(y) * 1024 + x] = on_view.grey[size_t(y * 80 / 1024) * 80 + x * 80 / 1024];
  for (const auto* mask : {&on_view, &at_1024}) {
    const dicom::GreyImage back = dicom::map_mask_to_source(p, *mask);
    ASSERT_EQ(back.width, 80);
    ASSERT_EQ(back.height, 60);
    size_t wrong = 0;
    for (int y = 0; y < 60; ++y)
      for (int x = 0; x < 80; ++x) wrong += (back.grey[size_t(y) * 80 + x] != 0) != in_source_rect(x, y);
    EXPECT_EQ(wrong, 0u) << "mask of " << mask->width << "x" << mask->height;
  }
}

TEST(MaskMapping, ViewOnSourceGridIsTheSourceImageWithoutPadding) {
  ASSERT_TRUE(fs::exists(kPydicomFiles / "ExplVR_BigEnd.dcm")) << test::install_hint("pydicom's test files", "Debian's python3-pydicom");
  const dicom::View view = ultrasound_view();
  const dicom::RgbImage source = view_on_source_grid(view);
  ASSERT_EQ(source.width, 80);
  ASSERT_EQ(source.height, 60);
  const auto& p = view.provenance;
  for (int y = 0; y < 60; ++y)
    for (int x = 0; x < 80; ++x)
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(source.rgb[3 * (size_t(y) * 80 + x) + c],
                  view.image.rgb[3 * (size_t(y + p.pad_top) * 80 + x + p.pad_left) + c])
            << x << "," << y;
}

TEST(Preview, OutlineInColourTintInsideLabelOnTop) {
  dicom::RgbImage image;
  image.width = 64;
  image.height = 48;
  image.rgb.assign(64 * 48 * 3, 100);
  std::vector<uint8_t> mask(64 * 48, 0);
  for (int y = 20; y < 40; ++y)
    for (int x = 30; x < 50; ++x) mask[size_t(y) * 64 + x] = 1;
  const std::array<uint8_t, 3> colour{255, 0, 0};
  const auto out = render_preview(image, mask, colour, "Liver");
  auto px = [&](int x, int y) {
    const uint8_t* p = out.rgb.data() + 3 * (size_t(y) * 64 + x);
    return std::array<uint8_t, 3>{p[0], p[1], p[2]};
  };
  EXPECT_EQ(px(30, 25), colour);                                   // edge
  EXPECT_EQ(px(40, 30), (std::array<uint8_t, 3>{138, 75, 75}));    // inside: 3/4 grey + 1/4 red
  EXPECT_EQ(px(60, 45), (std::array<uint8_t, 3>{100, 100, 100}));  // outside, away from the label
  // The label: red ink on a black box in the top-left corner.
  size_t ink = 0;
  for (int y = 0; y < 12; ++y)
    for (int x = 0; x < 40; ++x) ink += px(x, y) == colour;
  EXPECT_GT(ink, 20u);
  EXPECT_THROW(render_preview(image, std::vector<uint8_t>(10), colour, "x"), std::invalid_argument);
}

TEST(BitmapFont, EveryPrintableCharacterHasItsOwnGlyph) {
  std::set<std::vector<bool>> glyphs;
  for (int c = 33; c < 127; ++c) {
    std::vector<bool> bits;
    size_t ink = 0;
    for (int y = 0; y < kGlyphHeight; ++y)
      for (int x = 0; x < kGlyphWidth; ++x) {
        bits.push_back(glyph_pixel(char(c), x, y));
        ink += bits.back();
      }
    EXPECT_GT(ink, 0u) << "'" << char(c) << "' draws nothing";
    EXPECT_TRUE(glyphs.insert(bits).second) << "'" << char(c) << "' looks like another character";
  }
  // Unprintable characters draw as '?'.
  for (int y = 0; y < kGlyphHeight; ++y)
    for (int x = 0; x < kGlyphWidth; ++x) EXPECT_EQ(glyph_pixel('\t', x, y), glyph_pixel('?', x, y));
  EXPECT_EQ(text_width("ab", 2), (2 * kCellWidth - 1) * 2);
}

TEST(BitmapFont, DrawingIsClippedToTheImage) {
  dicom::RgbImage image;
  image.width = 10;
  image.height = 5;
  image.rgb.assign(150, 0);
  draw_text(image, -3, 2, "WWWWWW", {255, 255, 255}, 3);  // mostly outside: must not write out of bounds
  EXPECT_EQ(image.rgb.size(), 150u);
}

}  // namespace
}  // namespace unibiomed::pipeline
