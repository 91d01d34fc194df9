// The tiled SEG of a slide level: write_segmentation's SEG, then the slide's geometry.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/slide_segmentation.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>

#include <cmath>
#include <memory>
#include <string>

#include "dicom/text_encoding.h"
#include "seg-writer/decimal_string.h"

namespace unibiomed::seg {
namespace {

void check(const OFCondition& status, const std::string& what) {
  if (status.bad()) throw SegmentationError("writing the slide segmentation: " + what + ": " + status.text());
}

std::string text_of(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  item.findAndGetOFStringArray(tag, value);
  return value.c_str();
}

// Copies `tag` (any element, sequences with their items) from `from` into `to` when present.
void copy_element(DcmItem& from, DcmItem& to, const DcmTagKey& tag) {
  DcmElement* element = nullptr;
  if (from.findAndGetElement(tag, element).good() && element)
    check(to.insert(static_cast<DcmElement*>(element->clone()), true), "copying " + DcmTag(tag).toString().substr(0));
}

}  // namespace

std::optional<WrittenSegmentation> write_slide_segmentation(const SourceImages& sources, const SlideTiles& tiles,
                                                            const std::vector<Segment>& segments,
                                                            const SegmentationOptions& options) {
  DcmDataset& source = sources.dataset(0);
  const std::string where = "slide level instance " + sources.frame(0).sop_instance_uid;
  Uint32 total_columns = 0, total_rows = 0;
  if (source.findAndGetUint32(DCM_TotalPixelMatrixColumns, total_columns).bad() ||
      source.findAndGetUint32(DCM_TotalPixelMatrixRows, total_rows).bad() || total_columns == 0 || total_rows == 0)
    throw SegmentationError(where +
                            ": TotalPixelMatrixColumns (0048,0006) / TotalPixelMatrixRows (0048,0007) missing or zero");
  const std::string frame_of_reference = text_of(source, DCM_FrameOfReferenceUID);
  if (frame_of_reference.empty())
    throw SegmentationError(where +
                            ": no FrameOfReferenceUID (0020,0052), so the SEG's tiles cannot be placed on the "
                            "slide (slides from OrthancWSIDicomizer 3.3 or older lack it)");
  // The level's pixel spacing (rows, columns) and thickness: the Pixel Measures shared group.
  double spacing[2] = {0, 0};
  std::string thickness;
  DcmItem* shared_source = nullptr;
  DcmItem* measures_source = nullptr;
  if (source.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared_source, 0).good() &&
      shared_source->findAndGetSequenceItem(DCM_PixelMeasuresSequence, measures_source, 0).good()) {
    measures_source->findAndGetFloat64(DCM_PixelSpacing, spacing[0], 0);
    measures_source->findAndGetFloat64(DCM_PixelSpacing, spacing[1], 1);
    thickness = text_of(*measures_source, DCM_SliceThickness);
  }
  if (!(spacing[0] > 0 && spacing[1] > 0))
    throw SegmentationError(where + ": no PixelSpacing in the shared Pixel Measures functional group (0028,9110)");
  if ((size_t(sources.rows()) * size_t(sources.columns())) % 8)
    throw SegmentationError(where + ": tiles of " + std::to_string(sources.columns()) + "x" +
                            std::to_string(sources.rows()) +
                            " pixels (a binary SEG of tiles needs Rows x Columns a multiple of 8)");
  if (tiles.frame_positions.size() != sources.frame_count())
    throw SegmentationError(where + ": " + std::to_string(tiles.frame_positions.size()) + " tile positions for " +
                            std::to_string(sources.frame_count()) + " source frames");
  // Where the total pixel matrix lies on the slide (mm) and which way its rows and columns run.
  double origin[2] = {0, 0};
  DcmItem* origin_item = nullptr;
  if (source.findAndGetSequenceItem(DCM_TotalPixelMatrixOriginSequence, origin_item, 0).good() && origin_item) {
    origin_item->findAndGetFloat64(DCM_XOffsetInSlideCoordinateSystem, origin[0]);
    origin_item->findAndGetFloat64(DCM_YOffsetInSlideCoordinateSystem, origin[1]);
  } else {
    throw SegmentationError(where + ": no TotalPixelMatrixOriginSequence (0048,0008)");
  }
  double orientation[6] = {0, -1, 0, -1, 0, 0};
  for (unsigned long i = 0; i < 6; ++i)
    if (source.findAndGetFloat64(DCM_ImageOrientationSlide, orientation[i], i).bad())
      throw SegmentationError(where + ": ImageOrientationSlide (0048,0102) missing or not 6 numbers");
  // Two orthogonal unit vectors (the rows' and the columns' direction on the slide); anything else
  // (all zeros, say) places no pixel and is refused like a missing one.
  const auto dot = [&](int a, int b) {
    return orientation[a] * orientation[b] + orientation[a + 1] * orientation[b + 1] +
           orientation[a + 2] * orientation[b + 2];
  };
  if (std::fabs(dot(0, 0) - 1) > 1e-3 || std::fabs(dot(3, 3) - 1) > 1e-3 || std::fabs(dot(0, 3)) > 1e-3)
    throw SegmentationError(where + ": ImageOrientationSlide (0048,0102) " + format_ds_list(orientation, 6) +
                            " is not two orthogonal unit vectors");

  SegmentationOptions binary = options;
  binary.type = SegmentationOptions::Type::Binary;
  std::optional<WrittenSegmentation> written = write_segmentation(sources, segments, binary);
  if (!written) return written;
  DcmDataset& ds = *written->file->getDataset();

  // Frame of reference and the tiled image of the slide.
  // Patient Orientation (type 2C, General Image) stays as write_segmentation took it from the
  // source: a slide has no patient orientation (empty), and dciodvfy wants the attribute.
  check(ds.putAndInsertString(DCM_FrameOfReferenceUID, frame_of_reference.c_str()), "FrameOfReferenceUID");
  // The text taken over from the slide, in UTF-8 like the rest of the SEG (ISO_IR 192).
  const DcmTagKey specimen[] = {DCM_ContainerIdentifier, DCM_IssuerOfTheContainerIdentifierSequence,
                                DCM_ContainerTypeCodeSequence, DCM_SpecimenDescriptionSequence};
  DcmItem taken_over;
  copy_element(source, taken_over, DCM_SpecificCharacterSet);
  copy_element(source, taken_over, DCM_PositionReferenceIndicator);
  for (const DcmTagKey& tag : specimen) copy_element(source, taken_over, tag);
  dicom::convert_to_utf8(taken_over);
  check(ds.putAndInsertString(DCM_PositionReferenceIndicator,
                              text_of(taken_over, DCM_PositionReferenceIndicator).c_str()),
        "PositionReferenceIndicator");
  check(ds.putAndInsertUint32(DCM_TotalPixelMatrixColumns, total_columns), "TotalPixelMatrixColumns");
  check(ds.putAndInsertUint32(DCM_TotalPixelMatrixRows, total_rows), "TotalPixelMatrixRows");
  copy_element(source, ds, DCM_TotalPixelMatrixOriginSequence);
  copy_element(source, ds, DCM_ImageOrientationSlide);
  check(ds.putAndInsertString(DCM_DimensionOrganizationType, "TILED_SPARSE"), "DimensionOrganizationType");
  // Specimen module: the slide the SEG lies on.
  for (const DcmTagKey& tag : specimen) copy_element(taken_over, ds, tag);
  if (!ds.tagExists(DCM_ContainerIdentifier))
    throw SegmentationError(where + ": no ContainerIdentifier (0040,0512) (Specimen module)");

  // Shared functional groups: the level's pixel spacing.
  DcmItem* shared = nullptr;
  check(ds.findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0), "shared functional groups");
  DcmItem* measures = nullptr;
  check(shared->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, measures, 0), "pixel measures");
  check(measures->putAndInsertString(DCM_PixelSpacing, format_ds_list(spacing, 2).c_str()), "PixelSpacing");
  if (!thickness.empty()) check(measures->putAndInsertString(DCM_SliceThickness, thickness.c_str()), "SliceThickness");

  // Dimensions: segment, then the tile's column and row in the total pixel matrix.
  DcmItem* first_index = nullptr;
  check(ds.findAndGetSequenceItem(DCM_DimensionIndexSequence, first_index, 0), "the dimension index");
  const std::string dimension_uid = text_of(*first_index, DCM_DimensionOrganizationUID);
  for (const DcmTagKey& pointer : {DCM_ColumnPositionInTotalImagePixelMatrix, DCM_RowPositionInTotalImagePixelMatrix}) {
    DcmItem* index = nullptr;
    check(ds.findOrCreateSequenceItem(DCM_DimensionIndexSequence, index, -2), "a dimension index");
    check(index->putAndInsertTagKey(DCM_DimensionIndexPointer, pointer), "DimensionIndexPointer");
    check(index->putAndInsertTagKey(DCM_FunctionalGroupPointer, DCM_PlanePositionSlideSequence),
          "FunctionalGroupPointer");
    check(index->putAndInsertString(DCM_DimensionOrganizationUID, dimension_uid.c_str()), "DimensionOrganizationUID");
  }

  // Per frame: the Plane Position (Slide) of its tile. Frames are segment by segment, each
  // segment's in source frame order (frames_per_segment).
  std::vector<size_t> frame_source;
  for (const auto& frames : written->frames_per_segment)
    frame_source.insert(frame_source.end(), frames.begin(), frames.end());
  DcmSequenceOfItems* per_frame = nullptr;
  check(ds.findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per_frame), "per-frame functional groups");
  if (per_frame->card() != frame_source.size())
    throw SegmentationError("writing the slide segmentation: " + std::to_string(per_frame->card()) +
                            " per-frame items for " + std::to_string(frame_source.size()) + " frames");
  const double row_spacing = spacing[0], column_spacing = spacing[1];
  for (unsigned long k = 0; k < per_frame->card(); ++k) {
    DcmItem* item = per_frame->getItem(k);
    const size_t f = frame_source[k];
    const auto [column, row] = tiles.frame_positions.at(f);
    if (column < 1 || row < 1 || Uint32(column) > total_columns || Uint32(row) > total_rows)
      throw SegmentationError(where + ": frame " + std::to_string(f + 1) + " at column " + std::to_string(column) +
                              ", row " + std::to_string(row) + " lies outside the total pixel matrix");
    // The first pixel's top left corner on the slide: along the rows by the columns before it,
    // along the columns by the rows above it.
    const double dc = (column - 1) * column_spacing, dr = (row - 1) * row_spacing;
    const double x = origin[0] + orientation[0] * dc + orientation[3] * dr;
    const double y = origin[1] + orientation[1] * dc + orientation[4] * dr;
    DcmItem* position = nullptr;
    check(item->findOrCreateSequenceItem(DCM_PlanePositionSlideSequence, position, 0), "plane position (slide)");
    check(position->putAndInsertString(DCM_XOffsetInSlideCoordinateSystem, format_ds(x).c_str()), "XOffset");
    check(position->putAndInsertString(DCM_YOffsetInSlideCoordinateSystem, format_ds(y).c_str()), "YOffset");
    check(position->putAndInsertString(DCM_ZOffsetInSlideCoordinateSystem, "0"), "ZOffset");
    check(position->putAndInsertSint32(DCM_ColumnPositionInTotalImagePixelMatrix, column), "ColumnPosition");
    check(position->putAndInsertSint32(DCM_RowPositionInTotalImagePixelMatrix, row), "RowPosition");
    DcmItem* content = nullptr;
    check(item->findAndGetSequenceItem(DCM_FrameContentSequence, content, 0), "frame content");
    Uint32 segment_number = 0;
    check(content->findAndGetUint32(DCM_DimensionIndexValues, segment_number, 0), "DimensionIndexValues");
    const Uint32 values[3] = {segment_number, Uint32((column - 1) / int(sources.columns()) + 1),
                              Uint32((row - 1) / int(sources.rows()) + 1)};
    check(content->putAndInsertUint32Array(DCM_DimensionIndexValues, values, 3), "DimensionIndexValues");
  }
  return written;
}

}  // namespace unibiomed::seg
