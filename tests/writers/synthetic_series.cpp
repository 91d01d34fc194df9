// SPDX-License-Identifier: GPL-3.0-or-later
#include "tests/writers/synthetic_series.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "seg-writer/dicom_uid.h"
#include "tests/support/test_support.h"

namespace unibiomed::test {
namespace {

std::string ds_list(const double* v, size_t n) {
  std::string out;
  char buffer[32];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buffer, sizeof buffer, "%.6f", v[i]);
    out += (i ? "\\" : "") + std::string(buffer);
  }
  return out;
}

void put(DcmItem& item, const DcmTagKey& tag, const std::string& value) {
  item.putAndInsertString(tag, value.c_str());
}

void patient_and_study(DcmItem& ds, const std::string& name) {
  put(ds, DCM_SpecificCharacterSet, "ISO_IR 100");
  put(ds, DCM_PatientName, "Synthetic^Patient");
  put(ds, DCM_PatientID, "SYN-" + name);
  put(ds, DCM_PatientBirthDate, "19700101");
  put(ds, DCM_PatientSex, "O");
  put(ds, DCM_StudyInstanceUID, seg::make_uid(name + "/study"));
  put(ds, DCM_StudyDate, "20240102");
  put(ds, DCM_StudyTime, "101500");
  put(ds, DCM_AccessionNumber, "ACC" + std::to_string(name.size()));
  put(ds, DCM_ReferringPhysicianName, "Referrer^Test");
  put(ds, DCM_StudyID, "1");
  put(ds, DCM_StudyDescription, "Synthetic study " + name);
  put(ds, DCM_SeriesInstanceUID, seg::make_uid(name + "/series"));
  put(ds, DCM_SeriesNumber, "3");
  put(ds, DCM_FrameOfReferenceUID, seg::make_uid(name + "/for"));
  put(ds, DCM_PositionReferenceIndicator, "");
  put(ds, DCM_Manufacturer, "UniBiomed tests");
}

DcmItem& sequence_item(DcmItem& parent, const DcmTagKey& tag) {
  DcmItem* item = nullptr;
  parent.findOrCreateSequenceItem(tag, item, -2);
  return *item;
}

std::array<double, 3> position(const SeriesSpec& spec, unsigned k) {
  const auto& o = spec.orientation;
  const double n[3] = {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
  return {spec.origin[0] + k * spec.slice_gap * n[0], spec.origin[1] + k * spec.slice_gap * n[1],
          spec.origin[2] + k * spec.slice_gap * n[2]};
}

void pixels(DcmItem& ds, const SeriesSpec& spec, unsigned frames) {
  ds.putAndInsertUint16(DCM_Rows, static_cast<Uint16>(spec.rows));
  ds.putAndInsertUint16(DCM_Columns, static_cast<Uint16>(spec.columns));
  ds.putAndInsertUint16(DCM_SamplesPerPixel, 1);
  put(ds, DCM_PhotometricInterpretation, "MONOCHROME2");
  ds.putAndInsertUint16(DCM_BitsAllocated, 16);
  ds.putAndInsertUint16(DCM_BitsStored, 12);
  ds.putAndInsertUint16(DCM_HighBit, 11);
  ds.putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint16> values(static_cast<size_t>(spec.rows) * spec.columns * frames);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<Uint16>((i * 7) % 4096);
  ds.putAndInsertUint16Array(DCM_PixelData, values.data(), static_cast<unsigned long>(values.size()));
}

}  // namespace

std::vector<DcmDataset*> SyntheticSeries::datasets() const {
  std::vector<DcmDataset*> out;
  for (const auto& f : files) out.push_back(f->getDataset());
  return out;
}

std::vector<std::filesystem::path> SyntheticSeries::save(const std::filesystem::path& dir,
                                                         const std::string& name) const {
  std::vector<std::filesystem::path> paths;
  for (size_t i = 0; i < files.size(); ++i) {
    auto path = dir / (name + "-" + std::to_string(i + 1) + ".dcm");
    const OFCondition status = files[i]->saveFile(path.c_str(), EXS_LittleEndianExplicit);
    if (status.bad()) throw std::runtime_error("cannot save " + path.string() + ": " + status.text());
    paths.push_back(path);
  }
  return paths;
}

SyntheticSeries make_series(const SeriesSpec& spec) {
  SyntheticSeries series;
  if (spec.enhanced_multiframe) {
    auto file = std::make_unique<DcmFileFormat>();
    DcmDataset& ds = *file->getDataset();
    patient_and_study(ds, spec.name);
    put(ds, DCM_SOPClassUID, UID_EnhancedMRImageStorage);
    put(ds, DCM_SOPInstanceUID, seg::make_uid(spec.name + "/instance/1"));
    put(ds, DCM_Modality, "MR");
    put(ds, DCM_InstanceNumber, "1");
    put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\M\\NONE");
    put(ds, DCM_NumberOfFrames, std::to_string(spec.frames));
    DcmItem& shared = sequence_item(ds, DCM_SharedFunctionalGroupsSequence);
    put(sequence_item(shared, DCM_PlaneOrientationSequence), DCM_ImageOrientationPatient,
        ds_list(spec.orientation.data(), 6));
    DcmItem& measures = sequence_item(shared, DCM_PixelMeasuresSequence);
    put(measures, DCM_PixelSpacing, ds_list(spec.spacing.data(), 2));
    put(measures, DCM_SliceThickness, "2.000000");
    for (unsigned k = 0; k < spec.frames; ++k) {
      DcmItem* frame = nullptr;
      ds.findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, -2);
      const auto p = position(spec, spec.reverse_order ? spec.frames - 1 - k : k);
      put(sequence_item(*frame, DCM_PlanePositionSequence), DCM_ImagePositionPatient, ds_list(p.data(), 3));
      const Uint32 index = k + 1;
      sequence_item(*frame, DCM_FrameContentSequence).putAndInsertUint32Array(DCM_DimensionIndexValues, &index, 1);
    }
    pixels(ds, spec, spec.frames);
    series.files.push_back(std::move(file));
    return series;
  }
  for (unsigned i = 0; i < spec.frames; ++i) {
    const unsigned k = spec.reverse_order ? spec.frames - 1 - i : i;
    auto file = std::make_unique<DcmFileFormat>();
    DcmDataset& ds = *file->getDataset();
    patient_and_study(ds, spec.name);
    put(ds, DCM_SOPClassUID, UID_CTImageStorage);
    put(ds, DCM_SOPInstanceUID, seg::make_uid(spec.name + "/instance/" + std::to_string(k)));
    put(ds, DCM_Modality, "CT");
    put(ds, DCM_InstanceNumber, std::to_string(k + 1));
    put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
    const auto p = position(spec, k);
    put(ds, DCM_ImagePositionPatient, ds_list(p.data(), 3));
    put(ds, DCM_ImageOrientationPatient, ds_list(spec.orientation.data(), 6));
    put(ds, DCM_PixelSpacing, ds_list(spec.spacing.data(), 2));
    put(ds, DCM_SliceThickness, "2.500000");
    put(ds, DCM_RescaleIntercept, "-1024");
    put(ds, DCM_RescaleSlope, "1");
    put(ds, DCM_KVP, "120");
    pixels(ds, spec, 1);
    series.files.push_back(std::move(file));
  }
  return series;
}

std::unique_ptr<DcmFileFormat> load_file(const std::filesystem::path& path) {
  auto file = std::make_unique<DcmFileFormat>();
  if (file->loadFile(path.c_str()).bad()) return nullptr;
  file->loadAllDataIntoMemory();
  return file;
}

std::filesystem::path pydicom_test_file(const std::string& name) {
  return std::filesystem::path("/usr/lib/python3/dist-packages/pydicom/data/test_files") / name;
}

std::vector<std::uint8_t> ellipse_mask(unsigned rows, unsigned columns, double cc, double cr, double rc, double rr) {
  std::vector<std::uint8_t> mask(static_cast<size_t>(rows) * columns, 0);
  for (unsigned r = 0; r < rows; ++r)
    for (unsigned c = 0; c < columns; ++c) {
      const double x = (c - cc) / rc, y = (r - cr) / rr;
      if (x * x + y * y <= 1.0) mask[static_cast<size_t>(r) * columns + c] = 1;
    }
  return mask;
}

std::vector<std::uint8_t> random_mask(unsigned rows, unsigned columns, std::uint32_t seed, double density) {
  std::mt19937 generator(seed);
  std::bernoulli_distribution inside(density);
  std::vector<std::uint8_t> mask(static_cast<size_t>(rows) * columns);
  for (auto& v : mask) v = inside(generator) ? static_cast<std::uint8_t>(1 + generator() % 200) : 0;
  return mask;
}

std::string expected_masks_json(const seg::SourceImages& sources, const std::vector<seg::Segment>& segments,
                                const std::vector<std::string>& tracking_uids) {
  nlohmann::json out;
  out["rows"] = sources.rows();
  out["columns"] = sources.columns();
  out["segments"] = nlohmann::json::array();
  for (size_t s = 0; s < segments.size(); ++s) {
    nlohmann::json segment;
    segment["number"] = s + 1;
    segment["label"] = segments[s].description.label;
    segment["tracking_uid"] = s < tracking_uids.size() ? tracking_uids[s] : "";
    segment["frames"] = nlohmann::json::array();
    for (const auto& mask : segments[s].masks) {
      const auto& source = sources.frame(mask.frame);
      nlohmann::json frame;
      frame["sop"] = source.sop_instance_uid;
      frame["frame"] = source.frame_number;
      nlohmann::json runs = nlohmann::json::array();
      const size_t n = mask.binary.size();
      for (size_t i = 0; i < n;) {
        if (!mask.binary[i]) {
          ++i;
          continue;
        }
        size_t j = i;
        while (j < n && mask.binary[j]) ++j;
        runs.push_back({i, j - i});
        i = j;
      }
      if (runs.empty()) continue;
      frame["runs"] = runs;
      segment["frames"].push_back(frame);
    }
    out["segments"].push_back(segment);
  }
  return out.dump();
}

std::string node_program() {
  return have_program("node") ? "node" : "/usr/bin/node";
}

std::filesystem::path js_dir() {
  return source_dir() / "tests" / "js";
}

std::vector<std::string> dciodvfy_errors_besides_leading_zeros(const std::filesystem::path& file, size_t& about_sources,
                                                               std::string* output) {
  std::vector<std::string> others;
  about_sources = 0;
  for (const auto& error : dciodvfy_errors(file, output)) {
    if (error.find("Leading zeroes") != std::string::npos ||
        error.find("invalid data values for Value Representations") != std::string::npos)
      ++about_sources;
    else
      others.push_back(error);
  }
  return others;
}

std::string dcmjs_missing_reason() {
  if (!std::filesystem::exists(js_dir() / "node_modules" / "dcmjs" / "package.json"))
    return "dcmjs is not installed in " + (js_dir() / "node_modules").string() + ": run scripts/install-js.sh";
  return {};
}

}  // namespace unibiomed::test
