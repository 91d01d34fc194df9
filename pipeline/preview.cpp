// Preview drawing: tint, outline (mask pixels with a 4-neighbour outside), label box.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "pipeline/preview.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "pipeline/bitmap_font.h"
#include "pipeline/model_pass.h"

namespace unibiomed::pipeline {

dicom::RgbImage view_on_source_grid(const dicom::View& view) {
  const auto& p = view.provenance;
  dicom::RgbImage out;
  out.width = p.source_columns;
  out.height = p.source_rows;
  out.rgb.assign(static_cast<size_t>(out.width) * out.height * 3, 0);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      // Source pixel (x, y) is shown by view pixel (x * scale + pad_left, y * scale + pad_top).
      const int vx =
          std::clamp(static_cast<int>(std::floor((x + 0.5) * p.scale)) + p.pad_left, 0, view.image.width - 1);
      const int vy =
          std::clamp(static_cast<int>(std::floor((y + 0.5) * p.scale)) + p.pad_top, 0, view.image.height - 1);
      const uint8_t* s = view.image.rgb.data() + 3 * (static_cast<size_t>(vy) * view.image.width + vx);
      std::copy(s, s + 3, out.rgb.data() + 3 * (static_cast<size_t>(y) * out.width + x));
    }
  return out;
}

dicom::RgbImage render_preview(const dicom::RgbImage& image, const std::vector<uint8_t>& mask,
                               std::array<uint8_t, 3> colour, const std::string& label) {
  const size_t n = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  if (mask.size() != n || image.rgb.size() != 3 * n)
    throw std::invalid_argument("preview: a mask of " + std::to_string(mask.size()) + " pixels on a " +
                                std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  dicom::RgbImage out = image;
  const int w = image.width, h = image.height;
  // Outline thickness grows with the image so that it stays visible when scaled down.
  const int thickness = std::max(1, std::min(w, h) / 400);
  auto inside = [&](int x, int y) { return x >= 0 && y >= 0 && x < w && y < h && mask[size_t(y) * w + x] != 0; };
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      if (!inside(x, y)) continue;
      uint8_t* p = out.rgb.data() + 3 * (size_t(y) * w + x);
      bool edge = false;
      for (int d = 1; d <= thickness && !edge; ++d)
        edge = !inside(x - d, y) || !inside(x + d, y) || !inside(x, y - d) || !inside(x, y + d);
      for (int c = 0; c < 3; ++c)
        p[c] = edge ? colour[c] : static_cast<uint8_t>((p[c] * 3 + colour[c]) / 4);  // 25% tint inside
    }
  const int scale = std::max(1, std::min(w, h) / 256);
  const std::array<uint8_t, 3> background{0, 0, 0};
  draw_text(out, 2 * scale, 2 * scale, label, colour, scale, &background);
  return out;
}

Preview finding_preview(const PreviewOf& what, const std::string& file_name, const std::string& tracking_uid) {
  dicom::RenderOptions options;
  if (what.modality == "CT" && !what.window.empty()) options.ct_preset = what.window;
  dicom::View view = dicom::render_view(*what.series, what.request, options);
  if (what.box) {
    inference::RgbImage boxed = to_model_image(std::move(view.image));
    draw_box(boxed, *what.box);
    view.image = {boxed.width, boxed.height, std::move(boxed.rgb)};
  }
  const dicom::RgbImage drawn = render_preview(view_on_source_grid(view), *what.mask, what.colour, what.label);
  Preview p;
  p.file_name = file_name;
  p.tracking_uid = tracking_uid;
  p.width = drawn.width;
  p.height = drawn.height;
  p.rgb = drawn.rgb;
  return p;
}

}  // namespace unibiomed::pipeline
