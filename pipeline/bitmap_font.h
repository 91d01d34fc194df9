// A small bitmap font (5x7 pixel glyphs in a 6x9 cell, printable ASCII) for the labels drawn on
// the preview images, so that previews need no font library.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "dicom/raster_file.h"

namespace unibiomed::pipeline {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kCellWidth = 6;   // glyph + 1 pixel spacing
inline constexpr int kCellHeight = 9;  // glyph + 2 pixels spacing

// Whether pixel (x, y) of the glyph of `c` is ink. Characters outside printable ASCII draw as '?'.
bool glyph_pixel(char c, int x, int y);

// Size in pixels of `text` drawn at `scale` (each font pixel a scale x scale block).
int text_width(const std::string& text, int scale);
int text_height(int scale);

// Draws `text` with its top-left corner at (x, y), clipped to the image. A background box
// (one cell-spacing margin) is filled first when `background` is given.
void draw_text(dicom::RgbImage& image, int x, int y, const std::string& text, std::array<uint8_t, 3> colour, int scale,
               const std::array<uint8_t, 3>* background = nullptr);

}  // namespace unibiomed::pipeline
