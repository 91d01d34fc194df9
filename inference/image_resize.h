// Resizing exactly as Pillow does it, because the reference preprocessing is PIL's
// Image.resize(size, BICUBIC) and torch's interpolate gives different pixels (it filters in
// floating point without widening the kernel when downscaling and without rounding in between).
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include "inference/image.h"

namespace unibiomed::inference {

// Pillow 9.4's bicubic resampling of an 8-bit RGB image (libImaging/Resample.c): separable,
// the horizontal pass first with its result stored as uint8, then the vertical pass; Keys
// cubic with a = -0.5, support 2 x max(scale, 1) so that downscaling averages over the whole
// footprint; 22-bit fixed-point weights. The same size returns a copy. Bit-exact with PIL.
// Throws InferenceError (naming the sizes) for an invalid image or a non-positive target.
RgbImage resize_bicubic(const RgbImage& image, int width, int height);

// A copy of the rectangle [x, x+width) x [y, y+height), which must lie inside the image.
RgbImage crop(const RgbImage& image, int x, int y, int width, int height);

}  // namespace unibiomed::inference
