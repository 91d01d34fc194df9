// A DICOM Segmentation of one pyramid level of a whole slide (VL Whole Slide Microscopy): the SEG
// of write_segmentation with its frames on the level's tiles (one source frame per tile, masks of
// the tile's size), made a tiled image of the slide like its source (PS3.3 C.8.20 with the
// Whole Slide Microscopy geometry): TotalPixelMatrixColumns/Rows, TotalPixelMatrixOriginSequence
// and ImageOrientationSlide of the source, DimensionOrganizationType TILED_SPARSE (tiles without
// any pixel of a segment are left out), a Plane Position (Slide) item per frame with the tile's
// place in the total pixel matrix and on the slide, the level's pixel spacing in the shared
// functional groups, the slide's frame of reference and its specimen module (container
// identifier, specimen description). DCMTK 3.6.7 has no class for the Plane Position (Slide)
// group: it is added to the written dataset here, as are the other slide attributes.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <optional>
#include <vector>

#include "seg-writer/segmentation_writer.h"
#include "seg-writer/source_images.h"

namespace unibiomed::seg {

struct SlideTiles {
  // Per source frame (SourceImages index): 1-based column and row of its first pixel in the
  // level's total pixel matrix (Column/RowPositionInTotalImagePixelMatrix).
  std::vector<std::array<int, 2>> frame_positions;
};

// `sources` are the instance(s) of one level (a concatenation in order); `segments` have masks
// per source frame as for write_segmentation. Throws SegmentationError naming the instance and
// attribute when the source is not a tiled slide image this can describe (no
// TotalPixelMatrixColumns/Rows, no FrameOfReferenceUID, no pixel spacing, tiles whose Rows x
// Columns is not a multiple of 8, a position per frame missing), or the writer's errors.
std::optional<WrittenSegmentation> write_slide_segmentation(const SourceImages& sources, const SlideTiles& tiles,
                                                            const std::vector<Segment>& segments,
                                                            const SegmentationOptions& options);

}  // namespace unibiomed::seg
