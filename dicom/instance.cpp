// Reading one instance with DCMTK and flattening its geometry per frame.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/instance.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "dicom/internal/dcmtk_access.h"
#include "dicom/pixel_calibration.h"
#include "dicom/size_rule.h"
#include "dicom/text_encoding.h"

namespace unibiomed::dicom {
namespace {

using internal::first_item;
using internal::get_double;
using internal::get_doubles;
using internal::get_integer;
using internal::get_string;
using internal::get_string_at;
using internal::sequence_of;
using internal::tag_name;

// Values stored little endian, on a little-endian host (x86-64, ARM: what the node runs on).
template <typename T>
std::vector<T> little_endian_values(const Uint8* bytes, size_t count) {
  std::vector<T> values(count);
  std::memcpy(values.data(), bytes, count * sizeof(T));
  return values;
}

// A sequence passed on as UN with a defined length: its value is items in implicit VR little
// endian (PS3.5 6.2.2). Read as an implicit VR dataset of that one element; nullptr if it does
// not parse.
DcmElement* sequence_from_unknown(const DcmTagKey& key, const Uint8* bytes, Uint32 length) {
  std::vector<Uint8> encoded(8 + size_t(length));
  const Uint16 group = key.getGroup(), element = key.getElement();
  const Uint8 header[8] = {Uint8(group & 0xFF),          Uint8(group >> 8),    Uint8(element & 0xFF),
                           Uint8(element >> 8),          Uint8(length & 0xFF), Uint8((length >> 8) & 0xFF),
                           Uint8((length >> 16) & 0xFF), Uint8(length >> 24)};
  std::memcpy(encoded.data(), header, 8);
  std::memcpy(encoded.data() + 8, bytes, length);
  DcmInputBufferStream in;
  in.setBuffer(encoded.data(), offile_off_t(encoded.size()));
  in.setEos();
  DcmDataset parsed;
  parsed.transferInit();
  const OFCondition status = parsed.read(in, EXS_LittleEndianImplicit);
  parsed.transferEnd();
  if (status.bad()) return nullptr;
  DcmElement* sequence = parsed.remove(key);
  if (!sequence || sequence->ident() != EVR_SQ) {
    delete sequence;
    return nullptr;
  }
  return sequence;
}

// PS3.5 6.2.2: a system that did not know an attribute may have passed it on as UN (explicit VR).
// DCMTK keeps such values as UN bytes unless a process-wide flag is set, which the plugin must not
// set inside Orthanc (it shares DCMTK). Attributes of the dictionary with a text or numeric VR are
// re-created here with that VR, so that Modality, the geometry and the pixel description read
// the same whatever the sender's dictionary knew; so are sequences (their items are implicit VR
// little endian whatever the transfer syntax). Other VRs (OB, OW, ...) stay as they are.
void reinterpret_unknown_vrs(DcmItem& item, bool little_endian);

void reinterpret_items(DcmElement& sequence, bool little_endian) {
  auto& items = static_cast<DcmSequenceOfItems&>(sequence);
  for (unsigned long k = 0; k < items.card(); ++k)
    if (DcmItem* nested = items.getItem(k)) reinterpret_unknown_vrs(*nested, little_endian);
}

void reinterpret_unknown_vrs(DcmItem& item, bool little_endian) {
  std::vector<DcmElement*> replacements;
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* e = item.getElement(i);
    if (e->ident() == EVR_SQ) {
      reinterpret_items(*e, little_endian);
      continue;
    }
    const Uint32 length = e->getLength();
    if (e->ident() != EVR_UN || length == 0 || length == DCM_UndefinedLength || e->getTag().isPrivate()) continue;
    const DcmTagKey key = e->getTag().getXTag();
    const DcmEVR vr = DcmTag(key).getEVR();
    Uint8* bytes = nullptr;
    if (e->getUint8Array(bytes).bad() || !bytes) continue;
    if (vr == EVR_SQ) {
      if (DcmElement* sequence = sequence_from_unknown(key, bytes, length)) {
        reinterpret_items(*sequence, little_endian);
        replacements.push_back(sequence);
      }
      continue;
    }
    DcmElement* fresh = DcmItem::newDicomElement(key);
    if (!fresh || fresh->ident() != vr) {
      delete fresh;
      continue;
    }
    OFCondition status = EC_IllegalCall;
    const auto numbers = [&](auto zero, auto put) {
      using T = decltype(zero);
      if (little_endian && length % sizeof(T) == 0) {
        const auto values = little_endian_values<T>(bytes, length / sizeof(T));
        status = put(values.data(), values.size());
      }
    };
    if (DcmVR(vr).isaString()) status = fresh->putString(reinterpret_cast<const char*>(bytes), length);
    switch (vr) {
      case EVR_US:
        numbers(Uint16{}, [&](const Uint16* v, size_t n) { return fresh->putUint16Array(v, n); });
        break;
      case EVR_SS:
        numbers(Sint16{}, [&](const Sint16* v, size_t n) { return fresh->putSint16Array(v, n); });
        break;
      case EVR_UL:
        numbers(Uint32{}, [&](const Uint32* v, size_t n) { return fresh->putUint32Array(v, n); });
        break;
      case EVR_SL:
        numbers(Sint32{}, [&](const Sint32* v, size_t n) { return fresh->putSint32Array(v, n); });
        break;
      case EVR_FL:
        numbers(Float32{}, [&](const Float32* v, size_t n) { return fresh->putFloat32Array(v, n); });
        break;
      case EVR_FD:
        numbers(Float64{}, [&](const Float64* v, size_t n) { return fresh->putFloat64Array(v, n); });
        break;
      default:
        break;
    }
    if (status.good())
      replacements.push_back(fresh);
    else
      delete fresh;
  }
  for (DcmElement* fresh : replacements) item.insert(fresh, OFTrue);  // replaces (and deletes) the UN one
}

// Attributes the modality classification and inspect read beyond the typed fields.
const std::pair<const char*, DcmTagKey> kExtraAttributes[] = {
    {"ConversionType", DCM_ConversionType},
    {"PresentationIntentType", DCM_PresentationIntentType},
    {"ViewPosition", DCM_ViewPosition},
    {"ImageLaterality", DCM_ImageLaterality},
    {"Laterality", DCM_Laterality},
    {"PatientOrientation", DCM_PatientOrientation},
    {"ProtocolName", DCM_ProtocolName},
    {"StudyDescription", DCM_StudyDescription},
    {"VolumetricProperties", DCM_VolumetricProperties},
    {"LossyImageCompression", DCM_LossyImageCompression},
    {"BurnedInAnnotation", DCM_BurnedInAnnotation},
};

void read_windows(DcmItem* item, std::vector<WindowSetting>& windows) {
  auto centers = get_doubles(item, DCM_WindowCenter, 0);
  auto widths = get_doubles(item, DCM_WindowWidth, 0);
  if (!centers || !widths) return;
  const std::string function = get_string(item, DCM_VOILUTFunction);
  windows.clear();
  for (size_t i = 0; i < std::min(centers->size(), widths->size()); ++i) {
    WindowSetting w;
    w.center = (*centers)[i];
    w.width = (*widths)[i];
    w.function = function.empty() ? "LINEAR" : function;
    w.explanation = valid_utf8(get_string_at(item, DCM_WindowCenterWidthExplanation, i));  // shown, not matched
    windows.push_back(w);
  }
}

void read_rescale(DcmItem* item, FrameInfo& frame) {
  if (auto slope = get_double(item, DCM_RescaleSlope)) frame.rescale_slope = *slope;
  if (auto intercept = get_double(item, DCM_RescaleIntercept)) frame.rescale_intercept = *intercept;
  if (auto type = get_string(item, DCM_RescaleType); !type.empty()) frame.rescale_type = type;
}

// Pixel Spacing and Slice Thickness only when they are sizes (dicom/size_rule.h).
std::optional<Vec3> as_position(const std::optional<std::vector<double>>& values) {
  if (!values || !is_coordinate_mm((*values)[0]) || !is_coordinate_mm((*values)[1]) || !is_coordinate_mm((*values)[2]))
    return std::nullopt;
  return Vec3{(*values)[0], (*values)[1], (*values)[2]};
}
std::optional<double> as_thickness(const std::optional<double>& value) {
  if (!value || !is_size_mm(*value)) return std::nullopt;
  return value;
}

// Attributes that may appear at the top level of a classic image (PS3.3 C.7.6.2, C.7.6.3,
// C.11.1, C.11.2) and that functional groups override per frame.
void read_top_level_frame_attributes(DcmItem* ds, FrameInfo& frame) {
  if (auto ipp = as_position(get_doubles(ds, DCM_ImagePositionPatient, 3))) frame.image_position = ipp;
  if (auto iop = get_doubles(ds, DCM_ImageOrientationPatient, 6)) {
    std::array<double, 6> o{};
    std::copy(iop->begin(), iop->end(), o.begin());
    frame.image_orientation = o;
  }
  // Pixel Spacing, Imager Pixel Spacing or the ultrasound regions' calibration.
  PlaneSpacing spacing = plane_spacing(*ds);
  if (spacing.spacing) frame.pixel_spacing = spacing.spacing;
  frame.calibration_regions = std::move(spacing.regions);
  if (auto thickness = as_thickness(get_double(ds, DCM_SliceThickness))) frame.slice_thickness = *thickness;
  read_rescale(ds, frame);
  read_windows(ds, frame.windows);
}

// Functional group macros of PS3.3 C.7.6.16.2 applied to one frame (shared, then per-frame).
void apply_functional_groups(DcmItem* groups, FrameInfo& frame) {
  if (!groups) return;
  if (DcmItem* position = first_item(groups, DCM_PlanePositionSequence)) {
    if (auto ipp = as_position(get_doubles(position, DCM_ImagePositionPatient, 3))) frame.image_position = ipp;
  }
  if (DcmItem* orientation = first_item(groups, DCM_PlaneOrientationSequence)) {
    if (auto iop = get_doubles(orientation, DCM_ImageOrientationPatient, 6)) {
      std::array<double, 6> o{};
      std::copy(iop->begin(), iop->end(), o.begin());
      frame.image_orientation = o;
    }
  }
  if (DcmItem* measures = first_item(groups, DCM_PixelMeasuresSequence)) {
    if (auto spacing = two_sizes(*measures, DCM_PixelSpacing)) frame.pixel_spacing = spacing;
    if (auto thickness = as_thickness(get_double(measures, DCM_SliceThickness))) frame.slice_thickness = *thickness;
  }
  if (DcmItem* transformation = first_item(groups, DCM_PixelValueTransformationSequence)) {
    read_rescale(transformation, frame);
  }
  if (DcmItem* voi = first_item(groups, DCM_FrameVOILUTSequence)) read_windows(voi, frame.windows);
  if (DcmItem* content = first_item(groups, DCM_FrameContentSequence)) {
    frame.stack_id = valid_utf8(get_string(content, DCM_StackID));
    DcmElement* element = nullptr;
    if (content->findAndGetElement(DCM_DimensionIndexValues, element).good() && element) {
      frame.dimension_index.clear();
      for (unsigned long i = 0; i < element->getVM(); ++i) {
        Uint32 v = 0;
        if (element->getUint32(v, i).good()) frame.dimension_index.push_back(v);
      }
    }
  }
  if (DcmItem* slide = first_item(groups, DCM_PlanePositionSlideSequence)) {
    auto column = get_integer(slide, DCM_ColumnPositionInTotalImagePixelMatrix);
    auto row = get_integer(slide, DCM_RowPositionInTotalImagePixelMatrix);
    if (column && row) frame.tile_position = std::array<int, 2>{int(*column), int(*row)};
  }
}

std::string transfer_syntax_of(DcmFileFormat& file) {
  E_TransferSyntax xfer = file.getDataset()->getOriginalXfer();
  if (xfer == EXS_Unknown) {
    // A bare dataset without meta header: DCMTK guessed while reading.
    xfer = file.getDataset()->getCurrentXfer();
  }
  DcmXfer x(xfer);
  if (xfer != EXS_Unknown && x.getXferID() && *x.getXferID()) return x.getXferID();
  return get_string(file.getMetaInfo(), DCM_TransferSyntaxUID);
}

}  // namespace

Instance Instance::read_file(const std::filesystem::path& path) {
  Instance instance;
  instance.file_ = std::make_shared<DcmFileFormat>();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw DicomError(path.string() + ": " +
                     (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
  }
  if (std::filesystem::file_size(path, ec) == 0) throw DicomError(path.string() + ": file is empty, not DICOM");
  // Values over DCM_MaxReadLength (4 KiB, i.e. the pixel data) stay in the file until a frame
  // is decoded: a 300-slice series costs its headers, not its pixels.
  OFCondition status =
      instance.file_->loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
  if (status.bad()) {
    // Tell a truncated Part 10 file from something that is not DICOM at all (PS3.10 7.1:
    // a 128-byte preamble, then "DICM").
    char head[132] = {};
    std::ifstream(path, std::ios::binary).read(head, sizeof head);
    const bool part10 = std::string(head + 128, 4) == "DICM";
    if (!part10) {
      throw DicomError(path.string() + ": not a DICOM file (no DICM prefix, and not readable as a bare dataset: " +
                       status.text() + ")");
    }
    throw DicomError(path.string() +
                     ": truncated or damaged DICOM file (the data ends or breaks inside an element; DCMTK: " +
                     std::string(status.text()) + ")");
  }
  instance.extract(path.string());
  return instance;
}

Instance Instance::read_bytes(const std::vector<uint8_t>& bytes, const std::string& source) {
  if (bytes.empty()) throw DicomError(source + ": no bytes, not DICOM");
  Instance instance;
  instance.file_ = std::make_shared<DcmFileFormat>();
  OFCondition status = EC_IllegalCall;
  // The bytes go into an anonymous memory file, read like a file: DCMTK then checks each
  // element's length against what is there (a buffer stream would first allocate whatever a
  // damaged length field announces, up to 4 GiB) and leaves the pixel data unparsed until a
  // frame is decoded. The file lives as long as the Instance and its copies.
  const int fd = ::memfd_create("unibiomed-instance", MFD_CLOEXEC);
  if (fd >= 0) {
    instance.keep_alive_ = std::shared_ptr<void>(nullptr, [fd](void*) { ::close(fd); });
    size_t written = 0;
    while (written < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
      if (n <= 0) throw DicomError(source + ": cannot buffer the instance in memory");
      written += size_t(n);
    }
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    status = instance.file_->loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
  } else {
    // No memfd (not Linux): parse the buffer, everything loaded.
    DcmInputBufferStream stream;
    stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
    stream.setEos();
    instance.file_->transferInit();
    status = instance.file_->read(stream, EXS_Unknown, EGL_noChange, 0xFFFFFFFFu);
    instance.file_->transferEnd();
  }
  if (status.bad()) {
    const bool part10 = bytes.size() >= 132 && std::string(bytes.begin() + 128, bytes.begin() + 132) == "DICM";
    if (part10 || status == EC_StreamNotifyClient) {
      throw DicomError(source +
                       ": truncated or damaged DICOM data (the data ends or breaks inside an element; DCMTK: " +
                       std::string(status.text()) + ")");
    }
    throw DicomError(source + ": not DICOM data (no DICM prefix, and not readable as a bare dataset: " +
                     std::string(status.text()) + ")");
  }
  instance.extract(source);
  return instance;
}

void Instance::extract(const std::string& source) {
  source_ = source;
  DcmDataset* ds = file_->getDataset();
  DcmItem* meta = file_->getMetaInfo();
  reinterpret_unknown_vrs(*ds, DcmXfer(ds->getOriginalXfer()).getByteOrder() != EBO_BigEndian);

  sop_class_uid_ = get_string(ds, DCM_SOPClassUID);
  sop_instance_uid_ = get_string(ds, DCM_SOPInstanceUID);
  // A dataset without its SOP identity takes the file meta's, in the dataset too: the result
  // objects reference the instance by what the dataset says.
  if (sop_class_uid_.empty()) {
    sop_class_uid_ = get_string(meta, DCM_MediaStorageSOPClassUID);
    if (!sop_class_uid_.empty()) ds->putAndInsertString(DCM_SOPClassUID, sop_class_uid_.c_str());
  }
  if (sop_instance_uid_.empty()) {
    sop_instance_uid_ = get_string(meta, DCM_MediaStorageSOPInstanceUID);
    if (!sop_instance_uid_.empty()) ds->putAndInsertString(DCM_SOPInstanceUID, sop_instance_uid_.c_str());
  }
  if (sop_class_uid_.empty() || sop_instance_uid_.empty()) {
    // DCMTK's auto-detection parses almost any bytes as some dataset; a real instance always
    // has its SOP Common identity (PS3.3 C.12.1, Type 1).
    throw DicomError(source + ": not a DICOM instance (no " +
                     tag_name(sop_class_uid_.empty() ? DCM_SOPClassUID : DCM_SOPInstanceUID) +
                     "; is it a DICOM file at all?)");
  }
  transfer_syntax_uid_ = transfer_syntax_of(*file_);
  frame_of_reference_uid_ = get_string(ds, DCM_FrameOfReferenceUID);
  {
    OFString value;
    for (unsigned long i = 0; ds->findAndGetOFString(DCM_ImageType, value, i).good(); ++i) {
      image_type_.emplace_back(value.c_str());
    }
  }
  instance_number_ = int(get_integer(ds, DCM_InstanceNumber).value_or(0));
  acquisition_number_ = int(get_integer(ds, DCM_AcquisitionNumber).value_or(0));

  // Text in UTF-8, whatever the instance's Specific Character Set (text_encoding.h).
  const TextDecoder text(get_string(ds, DCM_SpecificCharacterSet));
  const auto text_of = [&](DcmItem* item, const DcmTagKey& key, TextKind kind = TextKind::Value) {
    return text.to_utf8(get_string(item, key), kind);
  };
  study_.patient_id = text_of(ds, DCM_PatientID);
  study_.patient_name = text_of(ds, DCM_PatientName, TextKind::PersonName);
  study_.patient_birth_date = get_string(ds, DCM_PatientBirthDate);
  study_.patient_sex = get_string(ds, DCM_PatientSex);
  study_.study_instance_uid = get_string(ds, DCM_StudyInstanceUID);
  study_.study_date = get_string(ds, DCM_StudyDate);
  study_.study_time = get_string(ds, DCM_StudyTime);
  study_.study_id = text_of(ds, DCM_StudyID);
  study_.accession_number = text_of(ds, DCM_AccessionNumber);
  study_.study_description = text_of(ds, DCM_StudyDescription);
  study_.referring_physician_name = text_of(ds, DCM_ReferringPhysicianName, TextKind::PersonName);

  series_.series_instance_uid = get_string(ds, DCM_SeriesInstanceUID);
  series_.modality = get_string(ds, DCM_Modality);
  series_.series_description = text_of(ds, DCM_SeriesDescription);
  series_.body_part_examined = text_of(ds, DCM_BodyPartExamined);
  series_.manufacturer = text_of(ds, DCM_Manufacturer);
  series_.series_date = get_string(ds, DCM_SeriesDate);
  series_.series_time = get_string(ds, DCM_SeriesTime);
  series_.series_number = int(get_integer(ds, DCM_SeriesNumber).value_or(0));

  pixels_.has_pixel_data = ds->tagExists(DCM_PixelData);
  pixels_.encapsulated = DcmXfer(ds->getOriginalXfer()).isEncapsulated();
  pixels_.rows = int(get_integer(ds, DCM_Rows).value_or(0));
  pixels_.columns = int(get_integer(ds, DCM_Columns).value_or(0));
  pixels_.samples_per_pixel = int(get_integer(ds, DCM_SamplesPerPixel).value_or(0));
  pixels_.bits_allocated = int(get_integer(ds, DCM_BitsAllocated).value_or(0));
  pixels_.bits_stored = int(get_integer(ds, DCM_BitsStored).value_or(pixels_.bits_allocated));
  pixels_.high_bit = int(get_integer(ds, DCM_HighBit).value_or(pixels_.bits_stored - 1));
  pixels_.pixel_representation = int(get_integer(ds, DCM_PixelRepresentation).value_or(0));
  pixels_.planar_configuration = int(get_integer(ds, DCM_PlanarConfiguration).value_or(0));
  pixels_.photometric_interpretation = get_string(ds, DCM_PhotometricInterpretation);
  pixels_.number_of_frames = int(std::max(1L, get_integer(ds, DCM_NumberOfFrames).value_or(1)));
  pixels_.has_modality_lut_sequence = ds->tagExists(DCM_ModalityLUTSequence);
  pixels_.has_voi_lut_sequence = ds->tagExists(DCM_VOILUTSequence);

  if (auto t = get_double(ds, DCM_FrameTime))
    frame_time_ms_ = *t;
  else if (auto rate = get_double(ds, DCM_CineRate); rate && *rate > 0)
    frame_time_ms_ = 1000.0 / *rate;

  for (const auto& [keyword, key] : kExtraAttributes) {
    std::string value = text_of(ds, key);
    if (!value.empty()) extra_.emplace_back(keyword, value);
  }
  if (DcmItem* region = first_item(ds, DCM_AnatomicRegionSequence)) {
    std::string meaning = text_of(region, DCM_CodeMeaning);
    if (!meaning.empty()) extra_.emplace_back("AnatomicRegion", meaning);
  }

  // Whole-slide levels (VL WSI, PS3.3 A.32.8); a WSI instance without its total pixel matrix is
  // still one, which the pyramid then leaves out with the reason.
  if (ds->tagExists(DCM_TotalPixelMatrixColumns) || sop_class_uid_ == UID_VLWholeSlideMicroscopyImageStorage) {
    SlideLevelInfo slide;
    slide.total_pixel_matrix_columns = int(get_integer(ds, DCM_TotalPixelMatrixColumns).value_or(0));
    slide.total_pixel_matrix_rows = int(get_integer(ds, DCM_TotalPixelMatrixRows).value_or(0));
    slide.total_pixel_matrix_focal_planes =
        int(std::max(1L, get_integer(ds, DCM_TotalPixelMatrixFocalPlanes).value_or(1)));
    slide.dimension_organization_type = get_string(ds, DCM_DimensionOrganizationType);
    slide.imaged_volume_width_mm = get_double(ds, DCM_ImagedVolumeWidth).value_or(0);
    slide.imaged_volume_height_mm = get_double(ds, DCM_ImagedVolumeHeight).value_or(0);
    if (image_type_.size() >= 3) slide.image_flavor = image_type_[2];
    slide_ = slide;
  }

  // Frames: top level, then shared functional groups, then per-frame ones.
  FrameInfo base;
  read_top_level_frame_attributes(ds, base);
  DcmItem* shared = first_item(ds, DCM_SharedFunctionalGroupsSequence);
  apply_functional_groups(shared, base);
  DcmSequenceOfItems* per_frame = sequence_of(ds, DCM_PerFrameFunctionalGroupsSequence);
  const int n = pixels_.number_of_frames;
  frames_.assign(size_t(n), base);
  for (int i = 0; i < n; ++i) {
    frames_[size_t(i)].frame_number = i + 1;
    if (per_frame && static_cast<unsigned long>(i) < per_frame->card()) {
      apply_functional_groups(per_frame->getItem(static_cast<unsigned long>(i)), frames_[size_t(i)]);
    }
  }
  // TILED_FULL: tiles in row-major order within a focal plane, planes one after the other
  // (PS3.3 C.8.12.4.1.3); the positions are implicit.
  if (slide_ && pixels_.rows > 0 && pixels_.columns > 0 &&
      (slide_->dimension_organization_type == "TILED_FULL" ||
       (slide_->dimension_organization_type.empty() && !per_frame))) {
    const int across = (slide_->total_pixel_matrix_columns + pixels_.columns - 1) / pixels_.columns;
    const int down = (slide_->total_pixel_matrix_rows + pixels_.rows - 1) / pixels_.rows;
    // A concatenation part continues the frame order of the parts before it (C.7.6.16.2.2.4).
    const long offset = get_integer(ds, DCM_ConcatenationFrameOffsetNumber).value_or(0);
    if (across > 0 && down > 0) {
      for (int i = 0; i < n; ++i) {
        const long k = i + offset;
        const int column = int(k % across), row = int((k / across) % down);
        frames_[size_t(i)].tile_position = std::array<int, 2>{column * pixels_.columns + 1, row * pixels_.rows + 1};
        frames_[size_t(i)].focal_plane = int(k / (long(across) * down)) + 1;
      }
    }
  }
}

const FrameInfo& Instance::frame(int frame_number) const {
  if (frame_number < 1 || frame_number > int(frames_.size())) {
    throw DicomError(source_ + ": frame " + std::to_string(frame_number) + " does not exist (the instance has " +
                     std::to_string(frames_.size()) + " frame" + (frames_.size() == 1 ? "" : "s") + ")");
  }
  return frames_[size_t(frame_number - 1)];
}

const std::string& Instance::attribute_text(const std::string& keyword) const {
  static const std::string empty;
  for (const auto& [k, v] : extra_)
    if (k == keyword) return v;
  return empty;
}

DcmDataset* Instance::dataset() const {
  return file_->getDataset();
}

namespace {
// The bytes one frame of uncompressed pixel data takes (native YBR_FULL_422 stores 2 samples per
// pixel, PS3.3 C.7.6.3.1.2); 0 when the layout gives no byte-sized frame.
unsigned long long stored_frame_bytes(const PixelLayout& p) {
  if (p.rows <= 0 || p.columns <= 0 || p.samples_per_pixel <= 0 || p.bits_allocated <= 0 || p.bits_allocated % 8 != 0)
    return 0;
  const unsigned long long bytes =
      (unsigned long long)p.rows * p.columns * p.samples_per_pixel * (unsigned long long)(p.bits_allocated / 8);
  return p.photometric_interpretation == "YBR_FULL_422" ? bytes * 2 / 3 : bytes;
}
}  // namespace

std::string Instance::image_problem() const {
  const std::string& s = source_;
  const auto& p = pixels_;
  if (!p.has_pixel_data) {
    DcmDataset* ds = file_->getDataset();
    if (ds->tagExists(DCM_FloatPixelData) || ds->tagExists(DCM_DoubleFloatPixelData))
      return s +
             ": float pixel data (Float Pixel Data (7FE0,0008) / Double Float Pixel Data (7FE0,0009)) is not supported";
    return s + ": no " + tag_name(DCM_PixelData) + ": not an image";
  }
  if (p.rows <= 0) return s + ": missing or zero " + tag_name(DCM_Rows);
  if (p.columns <= 0) return s + ": missing or zero " + tag_name(DCM_Columns);
  if (p.bits_allocated == 0) return s + ": missing " + tag_name(DCM_BitsAllocated);
  if (p.bits_allocated != 8 && p.bits_allocated != 16 && p.bits_allocated != 32)
    return s + ": " + tag_name(DCM_BitsAllocated) + " " + std::to_string(p.bits_allocated) +
           " is not supported for images (8, 16 or 32)";
  if (p.bits_stored < 1 || p.bits_stored > p.bits_allocated)
    return s + ": " + tag_name(DCM_BitsStored) + " " + std::to_string(p.bits_stored) + " does not fit " +
           tag_name(DCM_BitsAllocated) + " " + std::to_string(p.bits_allocated);
  if (p.high_bit != p.bits_stored - 1)
    return s + ": " + tag_name(DCM_HighBit) + " " + std::to_string(p.high_bit) + " is not " + tag_name(DCM_BitsStored) +
           " - 1; such bit layouts are not supported";
  if (p.photometric_interpretation.empty()) return s + ": missing " + tag_name(DCM_PhotometricInterpretation);
  const std::string& pi = p.photometric_interpretation;
  const bool mono = pi == "MONOCHROME1" || pi == "MONOCHROME2" || pi == "PALETTE COLOR";
  const bool colour = pi == "RGB" || pi == "YBR_FULL" || pi == "YBR_FULL_422" || pi == "YBR_ICT" || pi == "YBR_RCT" ||
                      pi == "YBR_PARTIAL_420";
  if (!mono && !colour) return s + ": " + tag_name(DCM_PhotometricInterpretation) + " '" + pi + "' is not supported";
  if ((mono && p.samples_per_pixel != 1) || (colour && p.samples_per_pixel != 3))
    return s + ": " + tag_name(DCM_SamplesPerPixel) + " " + std::to_string(p.samples_per_pixel) + " does not match " +
           tag_name(DCM_PhotometricInterpretation) + " " + pi;
  // A slope of zero maps every pixel to the intercept: the model would see a blank image and find
  // nothing, which must not read as a normal result.
  for (size_t f = 0; mono && f < frames_.size(); ++f)
    if (frames_[f].rescale_slope == 0.0)
      return s + ": " + tag_name(DCM_RescaleSlope) + " is 0" +
             (frames_.size() > 1 ? " (frame " + std::to_string(f + 1) + ")" : std::string()) +
             ": every pixel would have the value of the intercept";
  // A frame is decoded into memory at once: refuse sizes no real image has (a damaged or
  // hostile header would otherwise ask for tens of gigabytes).
  const unsigned long long frame_bytes =
      (unsigned long long)p.rows * p.columns * p.samples_per_pixel * (p.bits_allocated / 8);
  if (frame_bytes > kMaxFrameBytes)
    return s + ": a frame of " + std::to_string(p.columns) + "x" + std::to_string(p.rows) + "x" +
           std::to_string(p.samples_per_pixel) + " at " + std::to_string(p.bits_allocated) + " bits (" +
           std::to_string(frame_bytes >> 20) + " MiB) exceeds the " + std::to_string(kMaxFrameBytes >> 20) +
           " MiB limit of one frame";
  if (!is_decodable_transfer_syntax(transfer_syntax_uid_))
    return s + ": transfer syntax " + transfer_syntax_name(transfer_syntax_uid_) + " (" + transfer_syntax_uid_ +
           ") cannot be decoded here";
  if (!p.encapsulated) {
    DcmElement* element = nullptr;
    if (file_->getDataset()->findAndGetElement(DCM_PixelData, element).good() && element) {
      const unsigned long long expected = stored_frame_bytes(p) * (unsigned long long)p.number_of_frames;
      const unsigned long long have = element->getLengthField();
      if (have < expected)
        return s + ": " + tag_name(DCM_PixelData) + " holds " + std::to_string(have) + " bytes, " +
               std::to_string(p.number_of_frames) + " frame(s) of " + std::to_string(p.columns) + "x" +
               std::to_string(p.rows) + "x" + std::to_string(p.samples_per_pixel) + " at " +
               std::to_string(p.bits_allocated) + " bits need " + std::to_string(expected) + " (truncated file?)";
    }
  }
  return {};
}

std::string Instance::frame_count_note() const {
  const auto& p = pixels_;
  const unsigned long long frame_bytes = stored_frame_bytes(p);
  if (!p.has_pixel_data || p.encapsulated) return {};
  DcmElement* element = nullptr;
  if (frame_bytes == 0 || file_->getDataset()->findAndGetElement(DCM_PixelData, element).bad() || !element) return {};
  const unsigned long long whole_frames = element->getLengthField() / frame_bytes;
  if (whole_frames <= (unsigned long long)p.number_of_frames) return {};
  const std::string declared = get_string(file_->getDataset(), DCM_NumberOfFrames);
  return source_ + ": " + tag_name(DCM_PixelData) + " holds " + std::to_string(whole_frames) + " frames of " +
         std::to_string(p.columns) + "x" + std::to_string(p.rows) + ", but " + tag_name(DCM_NumberOfFrames) +
         (declared.empty() ? " is absent" : " says " + declared) + ": only the first " +
         std::to_string(p.number_of_frames) + " read";
}

namespace {
struct TransferSyntaxEntry {
  const char* uid;
  const char* name;
  bool decodable;
};
// PS3.6 Table A-1 (the ones seen in practice).
const TransferSyntaxEntry kTransferSyntaxes[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", true},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", true},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", true},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", true},
    {"1.2.840.10008.1.2.5", "RLE Lossless", true},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", true},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", true},
    {"1.2.840.10008.1.2.4.53", "JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8)", true},
    {"1.2.840.10008.1.2.4.55", "JPEG Full Progression, Non-Hierarchical (Process 10 & 12)", true},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", true},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless, First-Order Prediction (Process 14, SV1)", true},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", true},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)", true},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless", true},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000", true},
    {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Lossless", false},
    {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component", false},
    {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile @ Main Level", false},
    {"1.2.840.10008.1.2.4.101", "MPEG2 Main Profile @ High Level", false},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", false},
    {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", false},
    {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile For 2D Video", false},
    {"1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile For 3D Video", false},
    {"1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile", false},
    {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile", false},
    {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile", false},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Lossless", false},
    {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 (RPCL) Lossless", false},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000", false},
};
}  // namespace

bool is_decodable_transfer_syntax(const std::string& uid) {
  for (const auto& e : kTransferSyntaxes)
    if (uid == e.uid) return e.decodable;
  return false;
}

std::string transfer_syntax_name(const std::string& uid) {
  for (const auto& e : kTransferSyntaxes)
    if (uid == e.uid) return e.name;
  return uid.empty() ? std::string("(unknown)") : uid;
}

}  // namespace unibiomed::dicom
