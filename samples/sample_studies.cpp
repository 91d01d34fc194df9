// Writing the sample studies with DCMTK. Each writer fills the modules its IOD requires (PS3.3
// Annex A: the module tables of CT, MR, DX, US Multi-frame, Ophthalmic Photography, VL
// Endoscopic, VL Photographic and VL Whole Slide Microscopy images), checked with dciodvfy.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "samples/sample_studies.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "samples/phantom.h"

namespace unibiomed::samples {
namespace {

namespace fs = std::filesystem;
using u128 = unsigned __int128;

// Fixed dates keep the files byte-identical from run to run.
constexpr const char* kStudyDate = "20240610";
constexpr const char* kStudyTime = "093000";
constexpr const char* kManufacturer = "UniBiomed sample generator";

struct PatientStudy {
  std::string key;  // sample name, part of every UID's derivation text
  std::string patient_name, patient_id, birth_date, sex;
  std::string study_description, accession, study_id;
};

class Writer {
 public:
  Writer(const SampleOptions& options, const PatientStudy& study) : options_(options), study_(study) {}

  std::string uid(const std::string& what) const {
    return derived_uid(options_.uid_root + "/" + study_.key + "/" + what);
  }

  static void put(DcmItem& item, const DcmTagKey& tag, const std::string& value) {
    OFCondition status = item.putAndInsertString(tag, value.c_str());
    if (status.bad()) throw SampleError("cannot set " + std::string(DcmTag(tag).getTagName()) + ": " + status.text());
  }

  // A code sequence item (PS3.3 Table 8.8-1, Basic Code Sequence Macro).
  static DcmItem* add_code(DcmItem& item, const DcmTagKey& sequence, const std::string& value,
                           const std::string& scheme, const std::string& meaning) {
    DcmItem* code = nullptr;
    item.findOrCreateSequenceItem(sequence, code, -2);
    put(*code, DCM_CodeValue, value);
    put(*code, DCM_CodingSchemeDesignator, scheme);
    put(*code, DCM_CodeMeaning, meaning);
    return code;
  }

  static void empty_sequence(DcmItem& item, const DcmTagKey& sequence) { item.insertEmptyElement(sequence); }

  // Patient, General Study, General Series, General Equipment, SOP Common.
  void common(DcmDataset& ds, const std::string& sop_class, const std::string& modality, int series_number,
              const std::string& series_description, int instance_number) const {
    put(ds, DCM_SpecificCharacterSet, "ISO_IR 100");
    put(ds, DCM_SOPClassUID, sop_class);
    put(ds, DCM_SOPInstanceUID,
        uid("series" + std::to_string(series_number) + "/instance" + std::to_string(instance_number)));
    put(ds, DCM_InstanceCreationDate, kStudyDate);
    put(ds, DCM_InstanceCreationTime, kStudyTime);
    put(ds, DCM_PatientName, study_.patient_name);
    put(ds, DCM_PatientID, study_.patient_id);
    put(ds, DCM_PatientBirthDate, study_.birth_date);
    put(ds, DCM_PatientSex, study_.sex);
    put(ds, DCM_PatientIdentityRemoved, "YES");  // synthetic: there is no real patient
    put(ds, DCM_DeidentificationMethod, "Synthetic phantom, no patient data");
    put(ds, DCM_StudyInstanceUID, uid("study"));
    put(ds, DCM_StudyDate, kStudyDate);
    put(ds, DCM_StudyTime, kStudyTime);
    put(ds, DCM_ReferringPhysicianName, "Referrer^Synthetic");
    put(ds, DCM_StudyID, study_.study_id);
    put(ds, DCM_AccessionNumber, study_.accession);
    put(ds, DCM_StudyDescription, study_.study_description);
    put(ds, DCM_Modality, modality);
    put(ds, DCM_SeriesInstanceUID, uid("series" + std::to_string(series_number)));
    put(ds, DCM_SeriesNumber, std::to_string(series_number));
    put(ds, DCM_SeriesDescription, series_description);
    put(ds, DCM_SeriesDate, kStudyDate);
    put(ds, DCM_SeriesTime, kStudyTime);
    put(ds, DCM_Manufacturer, kManufacturer);
    put(ds, DCM_InstitutionName, "UniBiomed Synthetic Hospital");
    put(ds, DCM_ManufacturerModelName, "Phantom");
    put(ds, DCM_SoftwareVersions, "1.0");
    put(ds, DCM_InstanceNumber, std::to_string(instance_number));
    put(ds, DCM_ContentDate, kStudyDate);
    put(ds, DCM_ContentTime, kStudyTime);
  }

  static void pixel_module(DcmDataset& ds, int rows, int columns, int samples, int bits_allocated, int bits_stored,
                           const std::string& photometric) {
    put(ds, DCM_Rows, std::to_string(rows));
    put(ds, DCM_Columns, std::to_string(columns));
    put(ds, DCM_SamplesPerPixel, std::to_string(samples));
    put(ds, DCM_PhotometricInterpretation, photometric);
    put(ds, DCM_BitsAllocated, std::to_string(bits_allocated));
    put(ds, DCM_BitsStored, std::to_string(bits_stored));
    put(ds, DCM_HighBit, std::to_string(bits_stored - 1));
    put(ds, DCM_PixelRepresentation, "0");
    if (samples == 3) put(ds, DCM_PlanarConfiguration, "0");
  }

  fs::path save(DcmFileFormat& file, const fs::path& folder, int number) const {
    const fs::path path = folder / ("IM" + std::string(4 - std::min<size_t>(4, std::to_string(number).size()), '0') +
                                    std::to_string(number) + ".dcm");
    OFCondition status = file.saveFile(path.c_str(), EXS_LittleEndianExplicit);
    if (status.bad()) throw SampleError(path.string() + ": cannot write (" + status.text() + ")");
    return path;
  }

  const SampleOptions& options() const { return options_; }

 private:
  const SampleOptions& options_;
  PatientStudy study_;
};

std::string ds_values(std::initializer_list<double> values) {
  std::string out;
  char buffer[40];
  for (double v : values) {
    std::snprintf(buffer, sizeof buffer, "%.6g", v);
    out += (out.empty() ? "" : "\\") + std::string(buffer);
  }
  return out;
}

std::vector<uint8_t> rgb_bytes(const Phantom& p, int slice) {
  const size_t n = size_t(p.columns) * size_t(p.rows) * 3;
  std::vector<uint8_t> out(n);
  const size_t offset = size_t(slice) * n;
  for (size_t i = 0; i < n; ++i) out[i] = uint8_t(std::clamp(std::lround(p.values[offset + i]), 0L, 255L));
  return out;
}

void put_pixels16(DcmDataset& ds, const std::vector<uint16_t>& data) {
  OFCondition status = ds.putAndInsertUint16Array(DCM_PixelData, data.data(), static_cast<unsigned long>(data.size()));
  if (status.bad()) throw SampleError(std::string("cannot set PixelData: ") + status.text());
}

void put_pixels8(DcmDataset& ds, const std::vector<uint8_t>& data) {
  OFCondition status = ds.putAndInsertUint8Array(DCM_PixelData, data.data(), static_cast<unsigned long>(data.size()));
  if (status.bad()) throw SampleError(std::string("cannot set PixelData: ") + status.text());
}

// ---- the studies ----------------------------------------------------------------------

const PatientStudy kStudies[] = {
    {"ct", "Synthetic^Ada", "UBM-SYN-0001", "19610314", "F", "CT ABDOMEN WITH CONTRAST (synthetic)", "SYN0001", "1"},
    {"mr", "Synthetic^Ben", "UBM-SYN-0002", "19750822", "M", "MR BRAIN (synthetic)", "SYN0002", "1"},
    {"xray", "Synthetic^Cleo", "UBM-SYN-0003", "19580105", "F", "XR CHEST PA (synthetic)", "SYN0003", "1"},
    {"us", "Synthetic^Dan", "UBM-SYN-0004", "19820430", "M", "US ABDOMEN (synthetic)", "SYN0004", "1"},
    {"fundus", "Synthetic^Eva", "UBM-SYN-0005", "19690711", "F", "FUNDUS PHOTOGRAPHY (synthetic)", "SYN0005", "1"},
    {"dermoscopy", "Synthetic^Finn", "UBM-SYN-0006", "19900218", "M", "DERMOSCOPY (synthetic)", "SYN0006", "1"},
    {"endoscopy", "Synthetic^Gina", "UBM-SYN-0007", "19550929", "F", "COLONOSCOPY (synthetic)", "SYN0007", "1"},
    {"wsi", "Synthetic^Hugo", "UBM-SYN-0008", "19771103", "M", "PATHOLOGY BIOPSY (synthetic)", "SYN0008", "1"},
};

SampleSeries describe(const Writer& w, const PatientStudy& s, const std::string& modality,
                      const std::string& description, const fs::path& folder, const Phantom& phantom) {
  SampleSeries series;
  series.name = s.key;
  series.model_modality = modality;
  series.description = description;
  series.patient_name = s.patient_name;
  series.patient_id = s.patient_id;
  series.study_instance_uid = w.uid("study");
  series.series_instance_uid = w.uid("series1");
  series.folder = folder;
  series.label_names = phantom.label_names;
  return series;
}

SampleSeries write_ct(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  CtAbdomenOptions o;
  o.slices = std::max(2, w.options().ct_slices);
  o.size = w.options().ct_size;
  o.pixel_spacing = 360.0 / o.size;  // a 36 cm field of view
  const Phantom p = make_ct_abdomen(o);
  const std::string description = "Abdomen portal venous 2.5 mm";
  SampleSeries series = describe(w, s, "CT", description, folder, p);
  for (int z = 0; z < p.slices; ++z) {
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    w.common(ds, UID_CTImageStorage, "CT", 1, description, z + 1);
    Writer::put(ds, DCM_BodyPartExamined, "ABDOMEN");
    Writer::put(ds, DCM_PatientPosition, "HFS");
    Writer::put(ds, DCM_FrameOfReferenceUID, w.uid("frame-of-reference"));
    Writer::put(ds, DCM_PositionReferenceIndicator, "XY");
    Writer::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
    Writer::put(ds, DCM_AcquisitionNumber, "1");
    Writer::put(ds, DCM_AcquisitionDate, kStudyDate);
    Writer::put(ds, DCM_AcquisitionTime, kStudyTime);
    Writer::put(ds, DCM_KVP, "120");
    Writer::put(ds, DCM_ConvolutionKernel, "STANDARD");
    Writer::put(ds, DCM_ContrastBolusAgent, "Iodinated contrast (synthetic)");
    // Image Plane (PS3.3 C.7.6.2): axial, rows towards posterior, slices towards the head.
    const auto first = position_mm(p, 0, 0, z);
    Writer::put(ds, DCM_ImagePositionPatient, ds_values({first[0], first[1], first[2]}));
    Writer::put(ds, DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
    Writer::put(ds, DCM_PixelSpacing, ds_values({p.spacing[1], p.spacing[0]}));
    Writer::put(ds, DCM_SliceThickness, ds_values({p.spacing[2]}));
    Writer::put(ds, DCM_SliceLocation, ds_values({first[2]}));
    Writer::pixel_module(ds, p.rows, p.columns, 1, 16, 12, "MONOCHROME2");
    Writer::put(ds, DCM_RescaleIntercept, "-1024");
    Writer::put(ds, DCM_RescaleSlope, "1");
    Writer::put(ds, DCM_RescaleType, "HU");
    Writer::put(ds, DCM_WindowCenter, "40\\-600");
    Writer::put(ds, DCM_WindowWidth, "400\\1500");
    Writer::put(ds, DCM_WindowCenterWidthExplanation, "ABDOMEN\\LUNG");
    std::vector<uint16_t> pixels(size_t(p.columns) * size_t(p.rows));
    const size_t offset = size_t(z) * pixels.size();
    for (size_t i = 0; i < pixels.size(); ++i)
      pixels[i] = uint16_t(std::clamp(std::lround(p.values[offset + i]) + 1024L, 0L, 4095L));
    put_pixels16(ds, pixels);
    series.files.push_back(w.save(file, folder, z + 1));
  }
  return series;
}

SampleSeries write_mr(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  const Phantom p = make_mr_brain();
  const std::string description = "T2 TSE axial";
  SampleSeries series = describe(w, s, "MRI", description, folder, p);
  for (int z = 0; z < p.slices; ++z) {
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    w.common(ds, UID_MRImageStorage, "MR", 1, description, z + 1);
    Writer::put(ds, DCM_BodyPartExamined, "HEAD");
    Writer::put(ds, DCM_PatientPosition, "HFS");
    Writer::put(ds, DCM_FrameOfReferenceUID, w.uid("frame-of-reference"));
    Writer::put(ds, DCM_PositionReferenceIndicator, "");
    Writer::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\OTHER");
    Writer::put(ds, DCM_AcquisitionNumber, "1");
    Writer::put(ds, DCM_ScanningSequence, "SE");
    Writer::put(ds, DCM_SequenceVariant, "SK");
    Writer::put(ds, DCM_ScanOptions, "");
    Writer::put(ds, DCM_MRAcquisitionType, "2D");
    Writer::put(ds, DCM_RepetitionTime, "4000");
    Writer::put(ds, DCM_EchoTime, "100");
    Writer::put(ds, DCM_EchoTrainLength, "16");
    Writer::put(ds, DCM_MagneticFieldStrength, "1.5");
    Writer::put(ds, DCM_ImagedNucleus, "1H");
    Writer::put(ds, DCM_SpacingBetweenSlices, ds_values({p.spacing[2]}));
    const auto first = position_mm(p, 0, 0, z);
    Writer::put(ds, DCM_ImagePositionPatient, ds_values({first[0], first[1], first[2]}));
    Writer::put(ds, DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
    Writer::put(ds, DCM_PixelSpacing, ds_values({p.spacing[1], p.spacing[0]}));
    Writer::put(ds, DCM_SliceThickness, "5");
    Writer::put(ds, DCM_SliceLocation, ds_values({first[2]}));
    Writer::pixel_module(ds, p.rows, p.columns, 1, 16, 12, "MONOCHROME2");
    Writer::put(ds, DCM_WindowCenter, "600");
    Writer::put(ds, DCM_WindowWidth, "1200");
    std::vector<uint16_t> pixels(size_t(p.columns) * size_t(p.rows));
    const size_t offset = size_t(z) * pixels.size();
    for (size_t i = 0; i < pixels.size(); ++i)
      pixels[i] = uint16_t(std::clamp(std::lround(p.values[offset + i]), 0L, 4095L));
    put_pixels16(ds, pixels);
    series.files.push_back(w.save(file, folder, z + 1));
  }
  return series;
}

SampleSeries write_xray(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  const Phantom p = make_chest_xray();
  const std::string description = "Chest PA";
  SampleSeries series = describe(w, s, "X-ray", description, folder, p);
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  w.common(ds, UID_DigitalXRayImageStorageForPresentation, "DX", 1, description, 1);
  Writer::put(ds, DCM_BodyPartExamined, "CHEST");
  Writer::put(ds, DCM_PresentationIntentType, "FOR PRESENTATION");
  Writer::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY");
  Writer::put(ds, DCM_ImageLaterality, "U");
  Writer::put(ds, DCM_ViewPosition, "PA");
  Writer::add_code(ds, DCM_ViewCodeSequence, "399348003", "SCT", "postero-anterior");
  Writer::put(ds, DCM_PositionerType, "");
  Writer::put(ds, DCM_PatientOrientation, "L\\F");
  Writer::add_code(ds, DCM_AnatomicRegionSequence, "51185008", "SCT", "Chest");
  Writer::put(ds, DCM_AcquisitionNumber, "1");
  Writer::put(ds, DCM_KVP, "125");
  Writer::put(ds, DCM_DetectorType, "SCINTILLATOR");
  Writer::put(ds, DCM_ImagerPixelSpacing, ds_values({p.spacing[1], p.spacing[0]}));
  Writer::empty_sequence(ds, DCM_AcquisitionContextSequence);
  // MONOCHROME1: high stored values are dark (PS3.3 C.7.6.3.1.2); the display brightness of
  // the phantom becomes 4095 - 3500 * brightness.
  Writer::pixel_module(ds, p.rows, p.columns, 1, 16, 12, "MONOCHROME1");
  Writer::put(ds, DCM_PixelIntensityRelationship, "LOG");
  Writer::put(ds, DCM_PixelIntensityRelationshipSign, "1");
  Writer::put(ds, DCM_RescaleIntercept, "0");
  Writer::put(ds, DCM_RescaleSlope, "1");
  Writer::put(ds, DCM_RescaleType, "US");
  Writer::put(ds, DCM_PresentationLUTShape, "INVERSE");
  Writer::put(ds, DCM_LossyImageCompression, "00");
  Writer::put(ds, DCM_BurnedInAnnotation, "NO");
  Writer::put(ds, DCM_WindowCenter, "2400");
  Writer::put(ds, DCM_WindowWidth, "3000");
  std::vector<uint16_t> pixels(size_t(p.columns) * size_t(p.rows));
  for (size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = uint16_t(std::clamp(std::lround(4095 - 3500 * double(p.values[i])), 0L, 4095L));
  put_pixels16(ds, pixels);
  series.files.push_back(w.save(file, folder, 1));
  return series;
}

SampleSeries write_us(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  const Phantom p = make_ultrasound_cine();
  const std::string description = "Liver cine";
  SampleSeries series = describe(w, s, "Ultrasound", description, folder, p);
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  w.common(ds, UID_UltrasoundMultiframeImageStorage, "US", 1, description, 1);
  Writer::put(ds, DCM_BodyPartExamined, "ABDOMEN");
  Writer::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\ABDOMINAL");
  Writer::put(ds, DCM_PatientOrientation, "");
  Writer::pixel_module(ds, p.rows, p.columns, 1, 8, 8, "MONOCHROME2");
  Writer::put(ds, DCM_NumberOfFrames, std::to_string(p.slices));
  Writer::put(ds, DCM_FrameTime, "66.7");
  // Frame Increment Pointer = Frame Time (0018,1063) (PS3.3 C.7.6.6).
  ds.putAndInsertTagKey(DCM_FrameIncrementPointer, DCM_FrameTime);
  Writer::put(ds, DCM_LossyImageCompression, "00");
  Writer::put(ds, DCM_TransducerData, "C5-1");
  // US Region Calibration (PS3.3 C.8.5.5): one 2D tissue region, 0.03 cm per pixel.
  DcmItem* region = nullptr;
  ds.findOrCreateSequenceItem(DCM_SequenceOfUltrasoundRegions, region, -2);
  region->putAndInsertUint32(DCM_RegionLocationMinX0, 0);
  region->putAndInsertUint32(DCM_RegionLocationMinY0, 0);
  region->putAndInsertUint32(DCM_RegionLocationMaxX1, Uint32(p.columns - 1));
  region->putAndInsertUint32(DCM_RegionLocationMaxY1, Uint32(p.rows - 1));
  region->putAndInsertUint16(DCM_RegionSpatialFormat, 1);  // 2D
  region->putAndInsertUint16(DCM_RegionDataType, 1);       // tissue
  region->putAndInsertUint32(DCM_RegionFlags, 0);
  region->putAndInsertUint16(DCM_PhysicalUnitsXDirection, 3);  // cm
  region->putAndInsertUint16(DCM_PhysicalUnitsYDirection, 3);
  region->putAndInsertFloat64(DCM_PhysicalDeltaX, 0.03);
  region->putAndInsertFloat64(DCM_PhysicalDeltaY, 0.03);
  std::vector<uint8_t> pixels(p.values.size());
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t(std::clamp(std::lround(p.values[i]), 0L, 255L));
  put_pixels8(ds, pixels);
  series.files.push_back(w.save(file, folder, 1));
  return series;
}

// VL Image module (PS3.3 C.8.12.1) shared by the colour photographs.
void vl_image(DcmDataset& ds, const Phantom& p) {
  Writer::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY");
  Writer::pixel_module(ds, p.rows, p.columns, 3, 8, 8, "RGB");
  Writer::put(ds, DCM_LossyImageCompression, "00");
  Writer::put(ds, DCM_PatientOrientation, "");
  Writer::empty_sequence(ds, DCM_AcquisitionContextSequence);
  put_pixels8(ds, rgb_bytes(p, 0));
}

SampleSeries write_fundus(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  const Phantom p = make_fundus_photo();
  const std::string description = "Colour fundus OD";
  SampleSeries series = describe(w, s, "Fundus", description, folder, p);
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  w.common(ds, UID_OphthalmicPhotography8BitImageStorage, "OP", 1, description, 1);
  Writer::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY");
  Writer::pixel_module(ds, p.rows, p.columns, 3, 8, 8, "RGB");
  Writer::put(ds, DCM_NumberOfFrames, "1");
  ds.putAndInsertTagKey(DCM_FrameIncrementPointer, DCM_FrameTime);
  Writer::put(ds, DCM_FrameTime, "0");
  Writer::put(ds, DCM_AcquisitionDateTime, std::string(kStudyDate) + kStudyTime);
  Writer::put(ds, DCM_LossyImageCompression, "00");
  Writer::put(ds, DCM_BurnedInAnnotation, "NO");
  Writer::put(ds, DCM_PixelSpacing, "0.0117\\0.0117");  // about 12 mm field over 1024 px
  Writer::put(ds, DCM_PatientOrientation, "");
  Writer::empty_sequence(ds, DCM_AcquisitionContextSequence);
  // Ocular Region Imaged (C.8.17.5) and acquisition parameters (C.8.17.4, C.8.17.3).
  Writer::put(ds, DCM_ImageLaterality, "R");
  Writer::add_code(ds, DCM_AnatomicRegionSequence, "5665001", "SCT", "Retina");
  Writer::put(ds, DCM_PatientEyeMovementCommanded, "NO");
  Writer::put(ds, DCM_HorizontalFieldOfView, "45");
  Writer::empty_sequence(ds, DCM_RefractiveStateSequence);
  Writer::put(ds, DCM_EmmetropicMagnification, "");
  Writer::put(ds, DCM_IntraOcularPressure, "");
  Writer::put(ds, DCM_PupilDilated, "NO");
  // Synchronization module (C.7.4.2), required with the Multi-frame module's frame pointer.
  Writer::put(ds, DCM_SynchronizationFrameOfReferenceUID, w.uid("synchronization"));
  Writer::put(ds, DCM_SynchronizationTrigger, "NO TRIGGER");
  Writer::put(ds, DCM_AcquisitionTimeSynchronized, "N");
  Writer::add_code(ds, DCM_AcquisitionDeviceTypeCodeSequence, "409898007", "SCT", "Fundus Camera");
  Writer::empty_sequence(ds, DCM_IlluminationTypeCodeSequence);
  Writer::empty_sequence(ds, DCM_LightPathFilterTypeStackCodeSequence);
  Writer::empty_sequence(ds, DCM_ImagePathFilterTypeStackCodeSequence);
  Writer::empty_sequence(ds, DCM_LensesCodeSequence);
  Writer::put(ds, DCM_DetectorType, "CCD");
  put_pixels8(ds, rgb_bytes(p, 0));
  series.files.push_back(w.save(file, folder, 1));
  return series;
}

SampleSeries write_dermoscopy(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  const Phantom p = make_dermoscopy_photo();
  const std::string description = "Dermoscopy left forearm";
  SampleSeries series = describe(w, s, "Dermoscopy", description, folder, p);
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  w.common(ds, UID_VLPhotographicImageStorage, "XC", 1, description, 1);
  Writer::put(ds, DCM_BodyPartExamined, "ARM");
  Writer::put(ds, DCM_Laterality, "L");
  Writer::add_code(ds, DCM_AnatomicRegionSequence, "14975008", "SCT", "Forearm");
  vl_image(ds, p);
  series.files.push_back(w.save(file, folder, 1));
  return series;
}

SampleSeries write_endoscopy(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  const Phantom p = make_endoscopy_frame();
  const std::string description = "Colonoscopy sigmoid";
  SampleSeries series = describe(w, s, "Endoscopy", description, folder, p);
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  w.common(ds, UID_VLEndoscopicImageStorage, "ES", 1, description, 1);
  Writer::put(ds, DCM_BodyPartExamined, "COLON");
  Writer::add_code(ds, DCM_AnatomicRegionSequence, "71854001", "SCT", "Colon");
  vl_image(ds, p);
  series.files.push_back(w.save(file, folder, 1));
  return series;
}

// A minimal sRGB-like ICC v2 display profile (header, white point, primaries, gamma 2.2
// curves, description): the WSI IOD requires one for colour images (PS3.3 C.11.15).
std::vector<uint8_t> srgb_icc_profile() {
  std::vector<uint8_t> out(128, 0);
  auto u32 = [](std::vector<uint8_t>& v, size_t at, uint32_t x) {
    v[at] = uint8_t(x >> 24), v[at + 1] = uint8_t(x >> 16), v[at + 2] = uint8_t(x >> 8), v[at + 3] = uint8_t(x);
  };
  auto s15 = [](double x) { return uint32_t(int32_t(std::lround(x * 65536.0))); };
  struct Tag {
    const char* sig;
    std::vector<uint8_t> data;
  };
  auto xyz = [&](double x, double y, double z) {
    std::vector<uint8_t> d(20, 0);
    d[0] = 'X', d[1] = 'Y', d[2] = 'Z', d[3] = ' ';
    u32(d, 8, s15(x)), u32(d, 12, s15(y)), u32(d, 16, s15(z));
    return d;
  };
  std::vector<uint8_t> curve = {'c', 'u', 'r', 'v', 0, 0, 0, 0, 0, 0, 0, 1, 0x02, 0x33, 0, 0};  // gamma 2.2 (u8Fixed8)
  std::vector<uint8_t> desc = {'d', 'e', 's', 'c', 0, 0, 0, 0};
  const std::string name = "sRGB (synthetic)";
  desc.resize(12);
  u32(desc, 8, uint32_t(name.size() + 1));
  desc.insert(desc.end(), name.begin(), name.end());
  desc.push_back(0);
  desc.resize(desc.size() + 4 + 4 + 2 + 1 + 67, 0);  // empty Unicode and ScriptCode parts
  std::vector<uint8_t> copyright = {'t', 'e', 'x', 't', 0, 0, 0, 0};
  const std::string notice = "No copyright, synthetic profile";
  copyright.insert(copyright.end(), notice.begin(), notice.end());
  copyright.push_back(0);
  // D50-adapted sRGB primaries (the values of the published sRGB profile).
  std::vector<Tag> tags = {{"desc", desc},
                           {"cprt", copyright},
                           {"wtpt", xyz(0.9642, 1.0, 0.8249)},
                           {"rXYZ", xyz(0.4361, 0.2225, 0.0139)},
                           {"gXYZ", xyz(0.3851, 0.7169, 0.0971)},
                           {"bXYZ", xyz(0.1431, 0.0606, 0.7141)},
                           {"rTRC", curve},
                           {"gTRC", curve},
                           {"bTRC", curve}};
  std::vector<uint8_t> table(4 + 12 * tags.size(), 0);
  u32(table, 0, uint32_t(tags.size()));
  std::vector<uint8_t> data;
  size_t offset = 128 + table.size();
  for (size_t i = 0; i < tags.size(); ++i) {
    while ((offset + data.size()) % 4) data.push_back(0);
    const size_t at = offset + data.size();
    std::memcpy(&table[4 + 12 * i], tags[i].sig, 4);
    u32(table, 4 + 12 * i + 4, uint32_t(at));
    u32(table, 4 + 12 * i + 8, uint32_t(tags[i].data.size()));
    data.insert(data.end(), tags[i].data.begin(), tags[i].data.end());
  }
  out.insert(out.end(), table.begin(), table.end());
  out.insert(out.end(), data.begin(), data.end());
  while (out.size() % 4) out.push_back(0);
  u32(out, 0, uint32_t(out.size()));
  u32(out, 8, 0x02100000);           // version 2.1
  std::memcpy(&out[12], "mntr", 4);  // display device profile
  std::memcpy(&out[16], "RGB ", 4);
  std::memcpy(&out[20], "XYZ ", 4);
  u32(out, 24, (2024u << 16) | 6u), u32(out, 28, (10u << 16) | 9u), u32(out, 32, (30u << 16) | 0u);
  std::memcpy(&out[36], "acsp", 4);
  u32(out, 68, s15(0.9642)), u32(out, 72, s15(1.0)), u32(out, 76, s15(0.8249));  // illuminant D50
  return out;
}

// The header of one pyramid level (VL Whole Slide Microscopy, PS3.3 A.32.8) with `frames` tiles
// of `tile` pixels: level `l` (0 = the scan) of columns x rows at mm_per_pixel.
void wsi_level_header(const Writer& w, DcmDataset& ds, const std::string& description, int l, int columns, int rows,
                      double mm_per_pixel, int tile, size_t frames, bool sparse, const std::vector<uint8_t>& icc) {
  w.common(ds, UID_VLWholeSlideMicroscopyImageStorage, "SM", 1, description, l + 1);
  // Level 0 is the scan; the others are resampled from it (PS3.3 C.8.12.4.1.1).
  Writer::put(ds, DCM_ImageType, l ? "DERIVED\\PRIMARY\\VOLUME\\RESAMPLED" : "ORIGINAL\\PRIMARY\\VOLUME\\NONE");
  Writer::put(ds, DCM_FrameOfReferenceUID, w.uid("frame-of-reference"));
  Writer::put(ds, DCM_PositionReferenceIndicator, "SLIDE_CORNER");
  Writer::put(ds, DCM_DeviceSerialNumber, "SYN-0001");
  Writer::put(ds, DCM_AcquisitionDateTime, std::string(kStudyDate) + kStudyTime);
  Writer::empty_sequence(ds, DCM_AcquisitionContextSequence);
  // Whole Slide Microscopy Image module (PS3.3 C.8.12.4).
  Writer::pixel_module(ds, tile, tile, 3, 8, 8, "RGB");
  Writer::put(ds, DCM_NumberOfFrames, std::to_string(frames));
  Writer::put(ds, DCM_TotalPixelMatrixColumns, std::to_string(columns));
  Writer::put(ds, DCM_TotalPixelMatrixRows, std::to_string(rows));
  Writer::put(ds, DCM_TotalPixelMatrixFocalPlanes, "1");
  Writer::put(ds, DCM_ImagedVolumeWidth, ds_values({columns * mm_per_pixel}));
  Writer::put(ds, DCM_ImagedVolumeHeight, ds_values({rows * mm_per_pixel}));
  Writer::put(ds, DCM_ImagedVolumeDepth, "0.004");
  DcmItem* origin = nullptr;
  ds.findOrCreateSequenceItem(DCM_TotalPixelMatrixOriginSequence, origin, -2);
  Writer::put(*origin, DCM_XOffsetInSlideCoordinateSystem, "20");
  Writer::put(*origin, DCM_YOffsetInSlideCoordinateSystem, "40");
  Writer::put(ds, DCM_ImageOrientationSlide, "0\\-1\\0\\-1\\0\\0");
  Writer::put(ds, DCM_DimensionOrganizationType, sparse ? "TILED_SPARSE" : "TILED_FULL");
  Writer::put(ds, DCM_VolumetricProperties, "VOLUME");
  Writer::put(ds, DCM_SpecimenLabelInImage, "NO");
  Writer::put(ds, DCM_BurnedInAnnotation, "NO");
  Writer::put(ds, DCM_FocusMethod, "AUTO");
  Writer::put(ds, DCM_ExtendedDepthOfField, "NO");
  Writer::put(ds, DCM_LossyImageCompression, "00");
  // Multi-frame Dimension module: tiles indexed by their position in the total pixel matrix.
  DcmItem* organisation = nullptr;
  ds.findOrCreateSequenceItem(DCM_DimensionOrganizationSequence, organisation, -2);
  Writer::put(*organisation, DCM_DimensionOrganizationUID, w.uid("dimension-organisation"));
  for (const DcmTagKey& pointer : {DCM_ColumnPositionInTotalImagePixelMatrix, DCM_RowPositionInTotalImagePixelMatrix}) {
    DcmItem* index = nullptr;
    ds.findOrCreateSequenceItem(DCM_DimensionIndexSequence, index, -2);
    index->putAndInsertTagKey(DCM_DimensionIndexPointer, pointer);
    index->putAndInsertTagKey(DCM_FunctionalGroupPointer, DCM_PlanePositionSlideSequence);
    Writer::put(*index, DCM_DimensionOrganizationUID, w.uid("dimension-organisation"));
  }
  // Shared functional groups: pixel measures, frame type, optical path.
  DcmItem* shared = nullptr;
  ds.findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, -2);
  DcmItem* measures = nullptr;
  shared->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, measures, -2);
  Writer::put(*measures, DCM_PixelSpacing, ds_values({mm_per_pixel, mm_per_pixel}));
  Writer::put(*measures, DCM_SliceThickness, "0.004");
  DcmItem* frame_type = nullptr;
  shared->findOrCreateSequenceItem(DCM_WholeSlideMicroscopyImageFrameTypeSequence, frame_type, -2);
  Writer::put(*frame_type, DCM_FrameType,
              l ? "DERIVED\\PRIMARY\\VOLUME\\RESAMPLED" : "ORIGINAL\\PRIMARY\\VOLUME\\NONE");
  DcmItem* path_id = nullptr;
  shared->findOrCreateSequenceItem(DCM_OpticalPathIdentificationSequence, path_id, -2);
  Writer::put(*path_id, DCM_OpticalPathIdentifier, "1");
  // Optical Path module (C.8.12.5): brightfield transmission with white light.
  Writer::put(ds, DCM_NumberOfOpticalPaths, "1");
  DcmItem* path = nullptr;
  ds.findOrCreateSequenceItem(DCM_OpticalPathSequence, path, -2);
  Writer::put(*path, DCM_OpticalPathIdentifier, "1");
  Writer::put(*path, DCM_OpticalPathDescription, "Brightfield");
  Writer::add_code(*path, DCM_IlluminationTypeCodeSequence, "111741", "DCM", "Transmission illumination");
  Writer::add_code(*path, DCM_IlluminationColorCodeSequence, "414298005", "SCT", "Full Spectrum");
  path->putAndInsertUint8Array(DCM_ICCProfile, icc.data(), static_cast<unsigned long>(icc.size()));
  Writer::put(*path, DCM_ColorSpace, "SRGB");
  // Specimen module (C.7.6.22).
  Writer::put(ds, DCM_ContainerIdentifier, "SYN-SLIDE-1");
  Writer::empty_sequence(ds, DCM_IssuerOfTheContainerIdentifierSequence);
  Writer::add_code(ds, DCM_ContainerTypeCodeSequence, "433466003", "SCT", "Microscope slide");
  DcmItem* specimen = nullptr;
  ds.findOrCreateSequenceItem(DCM_SpecimenDescriptionSequence, specimen, -2);
  Writer::put(*specimen, DCM_SpecimenIdentifier, "SYN-SPECIMEN-1");
  Writer::put(*specimen, DCM_SpecimenUID, w.uid("specimen"));
  Writer::empty_sequence(*specimen, DCM_IssuerOfTheSpecimenIdentifierSequence);
  Writer::empty_sequence(*specimen, DCM_SpecimenPreparationSequence);
}

// The tile (x, y) of a level as a frame item with its Plane Position (Slide) (TILED_SPARSE).
void sparse_tile_position(DcmDataset& ds, int x, int y, double mm_per_pixel) {
  DcmItem* frame = nullptr;
  ds.findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, -2);
  DcmItem* position = nullptr;
  frame->findOrCreateSequenceItem(DCM_PlanePositionSlideSequence, position, -2);
  // ImageOrientationSlide 0\-1\0\-1\0\0 and origin (20, 40) mm, as in wsi_level_header.
  Writer::put(*position, DCM_XOffsetInSlideCoordinateSystem, ds_values({20 - y * mm_per_pixel}));
  Writer::put(*position, DCM_YOffsetInSlideCoordinateSystem, ds_values({40 - x * mm_per_pixel}));
  Writer::put(*position, DCM_ZOffsetInSlideCoordinateSystem, "0");
  Writer::put(*position, DCM_ColumnPositionInTotalImagePixelMatrix, std::to_string(x + 1));
  Writer::put(*position, DCM_RowPositionInTotalImagePixelMatrix, std::to_string(y + 1));
}

// A large synthetic slide generated tile by tile (nothing holds a whole level): a tissue
// section (an irregular ellipse over about 5 % of the slide) with stroma, nuclei and a denser
// tumour region, on glass; every level is computed from the same function of level-0 coordinates.
struct ProceduralSlide {
  double size;
  static double hash(long a, long b, long c) {
    // splitmix64 steps over the three values: well mixed in every bit.
    uint64_t h = 0x243f6a8885a308d3ull;
    for (long v : {a, b, c}) {
      h += uint64_t(v) + 0x9e3779b97f4a7c15ull;
      h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
      h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
      h ^= h >> 31;
    }
    return double(h >> 11) / double(1ull << 53);
  }
  // Inside an ellipse of radii (rx, ry) at (cx, cy), with a wavy border; all in slide fractions.
  bool inside(double x, double y, double cx, double cy, double rx, double ry) const {
    const double u = x / size - cx, v = y / size - cy;
    const double a = std::atan2(v / ry, u / rx);
    const double wobble = 1 + 0.08 * std::sin(3 * a + 0.4) + 0.05 * std::sin(7 * a + 1.3);
    return (u / rx) * (u / rx) + (v / ry) * (v / ry) <= wobble * wobble;
  }
  bool tissue(double x, double y) const { return inside(x, y, 0.5, 0.5, 0.16, 0.10); }
  bool tumour(double x, double y) const { return inside(x, y, 0.54, 0.48, 0.05, 0.035); }
  // Whether a level-0 box can hold tissue (the section's box with its wobble).
  bool may_hold_tissue(double x0, double y0, double x1, double y1) const {
    return x1 >= size * (0.5 - 0.16 * 1.14) && x0 <= size * (0.5 + 0.16 * 1.14) && y1 >= size * (0.5 - 0.10 * 1.14) &&
           y0 <= size * (0.5 + 0.10 * 1.14);
  }
  void colour(double x, double y, uint8_t* rgb) const {
    double c[3] = {243, 243, 246};
    if (tissue(x, y)) {
      const bool t = tumour(x, y);
      c[0] = t ? 214 : 232, c[1] = t ? 140 : 165, c[2] = t ? 190 : 196;
      // Nuclei: one candidate per 24 px cell (6 um), all present in the tumour, 30 % in stroma.
      const long cx = long(std::floor(x / 24)), cy = long(std::floor(y / 24));
      const double px = (cx + 0.2 + 0.6 * hash(cx, cy, 1)) * 24, py = (cy + 0.2 + 0.6 * hash(cx, cy, 2)) * 24;
      const double r = (t ? 5.5 : 3.5) * (0.8 + 0.4 * hash(cx, cy, 3));
      if ((t || hash(cx, cy, 4) < 0.3) && std::hypot(x - px, y - py) <= r) {
        c[0] = t ? 75 : 98, c[1] = t ? 38 : 55, c[2] = t ? 125 : 148;
      }
    }
    const double n = (hash(long(x), long(y), 5) - 0.5) * 6;
    for (int k = 0; k < 3; ++k) rgb[k] = uint8_t(std::clamp(std::lround(c[k] + n), 0L, 255L));
  }
};

SampleSeries write_wsi_large(const Writer& w, const PatientStudy& s, const fs::path& folder, int size) {
  const std::string description = "H&E biopsy";
  Phantom labels(1, 1, 1, 3, {1, 1, 1});
  labels.label_names = {"background", "tissue", "tumour"};
  SampleSeries series = describe(w, s, "Pathology", description, folder, labels);
  const int tile = 256;
  const double base_mm_per_pixel = 0.00025;
  const std::vector<uint8_t> icc = srgb_icc_profile();
  const ProceduralSlide slide{double(size)};
  // Levels halve until the coarsest fits in 2048 pixels.
  for (int l = 0;; ++l) {
    const int columns = int((int64_t(size) + (int64_t(1) << l) - 1) >> l);
    const double scale = double(int64_t(1) << l), mm_per_pixel = base_mm_per_pixel * scale;
    const int across = (columns + tile - 1) / tile;
    std::vector<std::pair<int, int>> tiles;  // (x, y) of the tiles that may hold tissue
    for (int ty = 0; ty < across; ++ty)
      for (int tx = 0; tx < across; ++tx)
        if (slide.may_hold_tissue(tx * tile * scale, ty * tile * scale, (tx + 1) * tile * scale,
                                  (ty + 1) * tile * scale))
          tiles.emplace_back(tx * tile, ty * tile);
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    wsi_level_header(w, ds, description, l, columns, columns, mm_per_pixel, tile, tiles.size(), true, icc);
    std::vector<uint8_t> pixels(tiles.size() * size_t(tile) * size_t(tile) * 3, 255);
    for (size_t k = 0; k < tiles.size(); ++k) {
      const auto [x0, y0] = tiles[k];
      sparse_tile_position(ds, x0, y0, mm_per_pixel);
      uint8_t* out = pixels.data() + k * size_t(tile) * size_t(tile) * 3;
      for (int y = 0; y < tile; ++y)
        for (int x = 0; x < tile; ++x, out += 3)
          if (x0 + x < columns && y0 + y < columns) slide.colour((x0 + x + 0.5) * scale, (y0 + y + 0.5) * scale, out);
    }
    put_pixels8(ds, pixels);
    pixels = {};
    series.files.push_back(w.save(file, folder, l + 1));
    if (columns <= 2048) break;
  }
  return series;
}

SampleSeries write_wsi(const Writer& w, const PatientStudy& s, const fs::path& folder) {
  if (w.options().wsi_slide_size > 0) return write_wsi_large(w, s, folder, w.options().wsi_slide_size);
  Phantom level = make_slide_tissue(w.options().wsi_columns, w.options().wsi_rows);
  const std::string description = "H&E biopsy";
  SampleSeries series = describe(w, s, "Pathology", description, folder, level);
  const int tile = 256;
  const double base_mm_per_pixel = 0.00025;  // 0.25 um: a 40x scan
  const std::vector<uint8_t> icc = srgb_icc_profile();
  for (int l = 0; l < 3; ++l) {
    if (l > 0) level = downsample_2x(level);
    const double mm_per_pixel = base_mm_per_pixel * double(1 << l);
    const int across = (level.columns + tile - 1) / tile, down = (level.rows + tile - 1) / tile;
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    wsi_level_header(w, ds, description, l, level.columns, level.rows, mm_per_pixel, tile,
                     size_t(across) * size_t(down), false, icc);
    // Tiles in TILED_FULL order: row-major across the total pixel matrix, padded with white.
    std::vector<uint8_t> pixels(size_t(across) * size_t(down) * size_t(tile) * size_t(tile) * 3, 255);
    size_t o = 0;
    for (int ty = 0; ty < down; ++ty)
      for (int tx = 0; tx < across; ++tx)
        for (int y = 0; y < tile; ++y)
          for (int x = 0; x < tile; ++x, o += 3) {
            const int gx = tx * tile + x, gy = ty * tile + y;
            if (gx >= level.columns || gy >= level.rows) continue;
            const size_t i = level.index(gx, gy, 0) * 3;
            for (int c = 0; c < 3; ++c)
              pixels[o + size_t(c)] = uint8_t(std::clamp(std::lround(level.values[i + size_t(c)]), 0L, 255L));
          }
    put_pixels8(ds, pixels);
    series.files.push_back(w.save(file, folder, l + 1));
  }
  return series;
}

using SampleWriter = SampleSeries (*)(const Writer&, const PatientStudy&, const fs::path&);
const std::pair<const char*, SampleWriter> kWriters[] = {
    {"ct", write_ct},
    {"mr", write_mr},
    {"xray", write_xray},
    {"us", write_us},
    {"fundus", write_fundus},
    {"dermoscopy", write_dermoscopy},
    {"endoscopy", write_endoscopy},
    {"wsi", write_wsi},
};

std::string to_decimal(u128 value) {
  if (value == 0) return "0";
  std::string digits;
  while (value > 0) {
    digits.push_back(char('0' + int(value % 10)));
    value /= 10;
  }
  std::reverse(digits.begin(), digits.end());
  return digits;
}

}  // namespace

const std::vector<std::string>& sample_names() {
  static const std::vector<std::string> names = {"ct", "mr", "xray", "us", "fundus", "dermoscopy", "endoscopy", "wsi"};
  return names;
}

std::string derived_uid(const std::string& text) {
  // FNV-1a, 128 bits (offset basis 0x6c62272e07bb014262b821756295c58d, prime 2^88 + 0x13b).
  u128 hash = (u128(0x6c62272e07bb0142ULL) << 64) | 0x62b821756295c58dULL;
  const u128 prime = (u128(1) << 88) + 0x13b;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= prime;
  }
  return "2.25." + to_decimal(hash);
}

std::vector<SampleSeries> write_samples(const fs::path& out, const SampleOptions& options) {
  for (const auto& name : options.only) {
    if (std::find(sample_names().begin(), sample_names().end(), name) == sample_names().end()) {
      std::string known;
      for (const auto& n : sample_names()) known += (known.empty() ? "" : ", ") + n;
      throw SampleError("unknown sample '" + name + "' (known: " + known + ")");
    }
  }
  if (options.ct_slices < 2) throw SampleError("ct_slices must be at least 2");
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw SampleError(out.string() + ": cannot create folder (" + ec.message() + ")");
  std::vector<SampleSeries> written;
  for (const auto& [name, write] : kWriters) {
    if (!options.only.empty() && std::find(options.only.begin(), options.only.end(), name) == options.only.end())
      continue;
    const PatientStudy* study = nullptr;
    for (const auto& s : kStudies)
      if (s.key == name) study = &s;
    const fs::path folder = out / name;
    fs::create_directories(folder, ec);
    if (ec) throw SampleError(folder.string() + ": cannot create folder (" + ec.message() + ")");
    Writer writer(options, *study);
    written.push_back(write(writer, *study, folder));
  }
  nlohmann::json manifest = nlohmann::json::array();
  for (const auto& s : written) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : s.files) files.push_back(fs::relative(f, out).generic_string());
    manifest.push_back({{"name", s.name},
                        {"model_modality", s.model_modality},
                        {"series_description", s.description},
                        {"patient_name", s.patient_name},
                        {"patient_id", s.patient_id},
                        {"study_instance_uid", s.study_instance_uid},
                        {"series_instance_uid", s.series_instance_uid},
                        {"files", files},
                        {"ground_truth_labels", s.label_names}});
  }
  std::ofstream(out / "manifest.json") << manifest.dump(2) << "\n";
  return written;
}

}  // namespace unibiomed::samples
