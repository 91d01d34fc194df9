// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/orthanc-plugin/test_studies.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "samples/phantom.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {

namespace fs = std::filesystem;

std::string new_uid() {
  char uid[100];
  dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
  return uid;
}

namespace {

void fill(StudySpec& spec) {
  if (spec.study_uid.empty()) spec.study_uid = new_uid();
  if (spec.series_uid.empty()) spec.series_uid = new_uid();
  if (spec.frame_of_reference.empty()) spec.frame_of_reference = new_uid();
}

void put_common(DcmDataset& ds, const StudySpec& spec, const char* sop_class, const std::string& sop_uid) {
  ds.putAndInsertString(DCM_SOPClassUID, sop_class);
  ds.putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str());
  if (!spec.specific_character_set.empty())
    ds.putAndInsertString(DCM_SpecificCharacterSet, spec.specific_character_set.c_str());
  ds.putAndInsertString(DCM_StudyInstanceUID, spec.study_uid.c_str());
  ds.putAndInsertString(DCM_SeriesInstanceUID, spec.series_uid.c_str());
  ds.putAndInsertString(DCM_PatientName, spec.patient_name.c_str());
  ds.putAndInsertString(DCM_PatientID, spec.patient_id.c_str());
  ds.putAndInsertString(DCM_PatientBirthDate, "19700101");
  ds.putAndInsertString(DCM_PatientSex, "O");
  ds.putAndInsertString(DCM_StudyDate, "20240101");
  ds.putAndInsertString(DCM_StudyTime, "120000");
  ds.putAndInsertString(DCM_StudyID, "1");
  ds.putAndInsertString(DCM_AccessionNumber, "ACC1");
  ds.putAndInsertString(DCM_ReferringPhysicianName, "");
  ds.putAndInsertString(DCM_Modality, spec.modality.c_str());
  ds.putAndInsertString(DCM_SeriesNumber, "1");
  ds.putAndInsertString(DCM_Manufacturer, "UniBiomed test generator");
}

void save(DcmFileFormat& file, const fs::path& path) {
  const OFCondition status = file.saveFile(path.c_str(), EXS_LittleEndianExplicit);
  if (status.bad()) throw std::runtime_error("cannot write " + path.string() + ": " + status.text());
}

// The start of a one-instance object in a series of its own beside the study's images: `spec`'s
// patient and study, Modality `modality`, a new SeriesInstanceUID (returned), instance 1.
std::string start_object(DcmDataset& ds, const StudySpec& spec, const std::string& modality, const char* sop_class) {
  StudySpec object = spec;
  object.modality = modality;
  object.series_uid = new_uid();
  put_common(ds, object, sop_class, new_uid());
  ds.putAndInsertString(DCM_InstanceNumber, "1");
  return object.series_uid;
}

// The sample generator's abdomen phantom at the spec's size: 36 cm field, 5 mm slices about
// the liver, spleen and kidneys (what the demo checkpoint was trained on).
constexpr double kFieldMm = 360, kSliceMm = 5;

samples::Phantom ct_phantom(const StudySpec& spec) {
  if (spec.rows != spec.columns) throw std::invalid_argument("test CT series: rows and columns must be equal");
  samples::CtAbdomenOptions o;
  o.size = spec.rows;
  o.slices = std::max(1, spec.slices);
  o.pixel_spacing = kFieldMm / spec.rows;
  o.slice_spacing = kSliceMm;
  return samples::make_ct_abdomen(o);
}

void put_ct_image(DcmDataset& ds, const StudySpec& spec, const std::string& frame_of_reference,
                  const samples::Phantom& phantom, int slice, size_t pixel_bytes) {
  put_common(ds, spec, UID_CTImageStorage, new_uid());
  ds.putAndInsertString(DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
  ds.putAndInsertString(DCM_SeriesDescription,
                        spec.series_description.empty() ? "Abdomen test" : spec.series_description.c_str());
  ds.putAndInsertString(DCM_BodyPartExamined, spec.body_part.c_str());
  ds.putAndInsertString(DCM_FrameOfReferenceUID, frame_of_reference.c_str());
  ds.putAndInsertString(DCM_PositionReferenceIndicator, "");
  ds.putAndInsertString(DCM_InstanceNumber, std::to_string(slice + 1).c_str());
  const std::string corner = std::to_string(-kFieldMm / 2) + "\\" + std::to_string(-kFieldMm / 2) + "\\";
  ds.putAndInsertString(DCM_ImagePositionPatient, (corner + std::to_string(slice * kSliceMm)).c_str());
  ds.putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
  const std::string spacing = std::to_string(kFieldMm / spec.rows);
  ds.putAndInsertString(DCM_PixelSpacing, (spacing + "\\" + spacing).c_str());
  ds.putAndInsertString(DCM_SliceThickness, std::to_string(kSliceMm).c_str());
  ds.putAndInsertString(DCM_KVP, "120");
  ds.putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds.putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(spec.rows));
  ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(spec.columns));
  ds.putAndInsertUint16(DCM_BitsAllocated, 16);
  ds.putAndInsertUint16(DCM_BitsStored, 16);
  ds.putAndInsertUint16(DCM_HighBit, 15);
  ds.putAndInsertUint16(DCM_PixelRepresentation, 1);
  ds.putAndInsertString(DCM_RescaleIntercept, "0");
  ds.putAndInsertString(DCM_RescaleSlope, "1");
  ds.putAndInsertString(DCM_RescaleType, "HU");
  ds.putAndInsertString(DCM_WindowCenter, "40");
  ds.putAndInsertString(DCM_WindowWidth, "400");
  const size_t plane = static_cast<size_t>(spec.rows) * static_cast<size_t>(spec.columns);
  std::vector<Sint16> pixels(plane);
  for (size_t i = 0; i < plane; ++i)
    pixels[i] = static_cast<Sint16>(std::lround(phantom.values[static_cast<size_t>(slice) * plane + i]));
  const size_t bytes = std::min(pixel_bytes, pixels.size() * 2);
  ds.putAndInsertUint8Array(DCM_PixelData, reinterpret_cast<const Uint8*>(pixels.data()),
                            static_cast<unsigned long>(bytes));
}

}  // namespace

std::vector<fs::path> write_ct_series(const fs::path& folder, StudySpec& spec) {
  fill(spec);
  fs::create_directories(folder);
  const samples::Phantom phantom = ct_phantom(spec);
  std::vector<fs::path> files;
  for (int i = 0; i < spec.slices; ++i) {
    DcmFileFormat file;
    put_ct_image(*file.getDataset(), spec, spec.frame_of_reference, phantom, i, SIZE_MAX);
    files.push_back(folder / (spec.series_uid + "-" + std::to_string(i) + ".dcm"));
    save(file, files.back());
  }
  return files;
}

fs::path write_truncated_ct(const fs::path& folder, StudySpec& spec) {
  fill(spec);
  fs::create_directories(folder);
  DcmFileFormat file;
  StudySpec one = spec;
  one.slices = 1;
  put_ct_image(*file.getDataset(), spec, new_uid(), ct_phantom(one), 0, 100);
  const fs::path path = folder / (spec.series_uid + "-truncated.dcm");
  save(file, path);
  return path;
}

fs::path write_pdf_document(const fs::path& folder, StudySpec& spec, const std::string& modality) {
  fill(spec);
  fs::create_directories(folder);
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  const std::string series_uid = start_object(ds, spec, modality, UID_EncapsulatedPDFStorage);
  ds.putAndInsertString(DCM_ConversionType, "WSD");
  ds.putAndInsertString(DCM_ContentDate, "20240101");
  ds.putAndInsertString(DCM_ContentTime, "120000");
  ds.putAndInsertString(DCM_AcquisitionDateTime, "20240101120000");
  ds.putAndInsertString(DCM_BurnedInAnnotation, "YES");
  ds.putAndInsertString(DCM_DocumentTitle, "Referral letter");
  ds.putAndInsertString(DCM_MIMETypeOfEncapsulatedDocument, "application/pdf");
  const std::string pdf = "%PDF-1.1\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
  std::string padded = pdf.size() % 2 ? pdf + '\n' : pdf;
  ds.putAndInsertUint8Array(DCM_EncapsulatedDocument, reinterpret_cast<const Uint8*>(padded.data()),
                            static_cast<unsigned long>(padded.size()));
  const fs::path path = folder / (series_uid + "-doc.dcm");
  save(file, path);
  return path;
}

std::vector<fs::path> write_other_systems_objects(const fs::path& folder, StudySpec& spec) {
  fill(spec);
  fs::create_directories(folder);
  std::vector<fs::path> files;
  auto start = [&](DcmFileFormat& file, const char* modality, const char* sop_class) {
    DcmDataset& ds = *file.getDataset();
    const std::string series_uid = start_object(ds, spec, modality, sop_class);
    // Not "UniBiomed...": the node must not take these for its own results.
    ds.putAndInsertString(DCM_Manufacturer, "Other Vendor");
    ds.putAndInsertString(DCM_ContentDate, "20240101");
    ds.putAndInsertString(DCM_ContentTime, "120500");
    files.push_back(folder / (series_uid + "-" + modality + ".dcm"));
    return &ds;
  };
  {
    DcmFileFormat file;
    DcmDataset& ds = *start(file, "SR", UID_BasicTextSRStorage);
    ds.putAndInsertString(DCM_ValueType, "CONTAINER");
    ds.putAndInsertString(DCM_ContinuityOfContent, "SEPARATE");
    ds.putAndInsertString(DCM_CompletionFlag, "COMPLETE");
    ds.putAndInsertString(DCM_VerificationFlag, "UNVERIFIED");
    DcmItem* title = nullptr;
    ds.findOrCreateSequenceItem(DCM_ConceptNameCodeSequence, title);
    title->putAndInsertString(DCM_CodeValue, "18748-4");
    title->putAndInsertString(DCM_CodingSchemeDesignator, "LN");
    title->putAndInsertString(DCM_CodeMeaning, "Diagnostic Imaging Report");
    save(file, files.back());
  }
  {
    DcmFileFormat file;
    DcmDataset& ds = *start(file, "PR", UID_GrayscaleSoftcopyPresentationStateStorage);
    ds.putAndInsertString(DCM_ContentLabel, "ANNOTATIONS");
    ds.putAndInsertString(DCM_PresentationCreationDate, "20240101");
    ds.putAndInsertString(DCM_PresentationCreationTime, "120500");
    save(file, files.back());
  }
  StudySpec document = spec;
  files.push_back(write_pdf_document(folder, document, "OT"));
  return files;
}

fs::path write_undescribed_capture(const fs::path& folder, StudySpec& spec) {
  fill(spec);
  fs::create_directories(folder);
  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  const std::string series_uid = start_object(ds, spec, "OT", UID_SecondaryCaptureImageStorage);
  ds.putAndInsertString(DCM_Manufacturer, "Other Vendor");
  ds.putAndInsertString(DCM_ConversionType, "WSD");
  ds.putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds.putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds.putAndInsertUint16(DCM_Rows, 16);
  ds.putAndInsertUint16(DCM_Columns, 16);
  ds.putAndInsertUint16(DCM_BitsAllocated, 8);
  ds.putAndInsertUint16(DCM_BitsStored, 8);
  ds.putAndInsertUint16(DCM_HighBit, 7);
  ds.putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint8> pixels(16 * 16);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<Uint8>(i);
  ds.putAndInsertUint8Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size()));
  const fs::path path = folder / (series_uid + "-ot.dcm");
  save(file, path);
  return path;
}

std::vector<fs::path> sample_ct_study(const fs::path& folder, StudySpec& spec) {
  const CommandResult r = run_command({cli_path().string(), "samples", "write", folder.string(), "--only", "ct",
                                       "--ct-slices", "4", "--ct-size", "64"});
  if (r.exit_code != 0) throw std::runtime_error("unibiomed samples write failed:\n" + r.output);
  const auto manifest = nlohmann::json::parse(read_file(folder / "manifest.json"));
  const auto& ct = manifest.at(0);
  spec.study_uid = ct.at("study_instance_uid");
  spec.series_uid = ct.at("series_instance_uid");
  spec.patient_id = ct.at("patient_id");
  spec.slices = static_cast<int>(ct.at("files").size());
  std::vector<fs::path> files;
  for (const auto& f : ct.at("files")) files.push_back(folder / f.get<std::string>());
  return files;
}

}  // namespace unibiomed::test
