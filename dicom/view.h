// The model's views of a series: 2D RGB8 images, each with its provenance (series, instance,
// frame, geometry, how intensities were mapped, and the transform back to source pixels) so
// that a mask drawn on a view maps back to the source frame exactly (map_mask_to_source).
// Conventions follow the training data (MODEL.md): CT window presets, MR percentile clipping,
// radiographs through their VOI, colour as stored, grey replicated to three channels, padded
// to a square with black as BiomedParse's preprocessing pads. Resizing to 1024/448 is the
// model's job, not this module's.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dicom/raster_file.h"
#include "dicom/series.h"
#include "dicom/slide.h"
#include "dicom/window.h"

namespace unibiomed::dicom {

// A region of a whole-slide level (0-based pixels of the level's total pixel matrix).
struct SlideRegion {
  int level = 0;
  int x = 0, y = 0, width = 0, height = 0;
  double mm_per_pixel = 0;
  std::vector<SlideTileRef> tiles;  // the frames the region was read from
};

struct ViewProvenance {
  std::string series_instance_uid;
  std::string sop_class_uid;
  std::string sop_instance_uid;
  int frame_number = 1;    // 1-based frame of the source instance
  int source_columns = 0;  // size of the source frame (or slide region)
  int source_rows = 0;
  // view pixel (vx, vy) shows source pixel ((vx - pad_left) / scale, (vy - pad_top) / scale).
  int pad_left = 0, pad_top = 0, pad_right = 0, pad_bottom = 0;
  double scale = 1.0;                       // view pixels per source pixel (this module never resizes: 1)
  std::string intensity;                    // how values became 8-bit ("CT window abdomen [-150, 250] HU")
  FrameInfo geometry;                       // the source frame's position, orientation, spacing
  int stack_index = -1;                     // into plan_stacks(series).stacks when the view is a stack slice
  int slice_index = -1;                     // position within that stack (0 = lowest along the normal)
  std::optional<SlideRegion> slide_region;  // whole slides
  double tissue_fraction = 1.0;             // slides: share of pixels that are not near-white glass
};

struct View {
  RgbImage image;
  ViewProvenance provenance;
};

struct RenderOptions {
  std::string ct_preset = "abdomen";  // a name of ct_window_presets()
  // MR percentiles per slice (what BiomedParse's preprocessing did: its intensity function
  // takes one 2D slice) or over the whole stack (steadier contrast from slice to slice).
  enum class PercentileScope { Slice, Volume } mr_scope = PercentileScope::Slice;
  // Volume scope: percentile ranges per stack index, computed once (stack_percentile_range)
  // and reused for every slice; render_views fills it, render_view computes a missing one.
  std::map<int, std::pair<double, double>> mr_stack_ranges;
  int frame_stride = 1;  // multi-frame instances (cine): every n-th frame
  bool pad_to_square = true;
  // Whole slides: the level nearest this resolution (mm per pixel; 0.0005 = 0.5 um, ~20x)
  // unless slide_level >= 0, cut into square regions of slide_region_size pixels that share
  // slide_region_overlap pixels with their neighbours (-1 = an eighth of the size); only the
  // regions over tissue (dicom/tissue.h) are views.
  double slide_mm_per_pixel = 0.0005;
  int slide_level = -1;
  int slide_region_size = 1024;
  int slide_region_overlap = -1;
};

// One view to render: cheap to list, rendered on demand.
struct ViewRequest {
  size_t instance_index = 0;
  int frame_number = 1;
  int stack_index = -1;
  int slice_index = -1;
  std::optional<SlideRegion> slide_region;
};

// The views of a series in order (stack slices bottom to top, frames in instance order,
// slide regions over tissue, row-major). Throws DicomError with the reason when the series'
// modality is not supported, it holds no decodable image or a slide shows no tissue. `note`
// (optional) receives, for a slide, how many regions lie over tissue.
std::vector<ViewRequest> plan_views(const Series& series, const RenderOptions& options, std::string* note = nullptr);
View render_view(const Series& series, const ViewRequest& request, const RenderOptions& options);
// The 0.5/99.5 percentiles of the non-zero values of a whole stack (MR volume scope);
// nullopt when all are zero.
std::optional<std::pair<double, double>> stack_percentile_range(const Series& series, int stack_index);
// All views at once (small series; for long ones iterate plan_views/render_view).
std::vector<View> render_views(const Series& series, const RenderOptions& options);

// A view of an image that is not DICOM (PNG/JPEG given to `ask`): padded the same way.
View view_of_raster(const RgbImage& image, const std::string& source);

// Pads an image to a square, (d / 2) before and the rest after (d = the size difference),
// with black; returns the offsets (left, top, right, bottom).
RgbImage pad_to_square(const RgbImage& image, std::array<int, 4>* padding = nullptr);

// A mask on the view back on the source frame: resized to the view size by nearest neighbour
// on pixel centres when it has another size (a model output at 1024; a mask upsampled that way
// maps back exactly), the padding cropped, the view scale undone. Returns source_columns x source_rows. Throws
// DicomError for an empty mask.
GreyImage map_mask_to_source(const ViewProvenance& provenance, const GreyImage& mask);

// The provenance as a JSON object (keys as the field names; geometry under "geometry"), what
// `unibiomed dicom render` writes next to each PNG.
std::string provenance_json(const ViewProvenance& provenance);

}  // namespace unibiomed::dicom
