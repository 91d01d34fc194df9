// Modality classification and bad input: every sample study classified as what it is, the
// non-image objects of pydicom's test set refused with their kind, and every broken file
// (not DICOM, truncated, no pixel data, no Rows, an undecodable transfer syntax, damaged
// compressed data, an impossible bit layout) reported with the file and the attribute, never a
// crash. Also bytes in memory (the Orthanc plugin's case) against files.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "dicom/pixel_data.h"
#include "dicom/series.h"
#include "dicom/view.h"
#include "tests/dicom/dicom_edit.h"
#include "tests/dicom/dicom_test_support.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

namespace fs = std::filesystem;

// The error a callable throws (empty when none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const DicomError& e) {
    return e.what();
  }
  return {};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
#define EXPECT_CONTAINS(text, part) EXPECT_PRED2(contains, text, part)

TEST(Modality, SampleStudiesAreClassifiedAsWhatTheyAre) {
  const std::pair<const char*, ModelModality> expected[] = {
      {"ct", ModelModality::CT},
      {"mr", ModelModality::MRI},
      {"xray", ModelModality::XRay},
      {"us", ModelModality::Ultrasound},
      {"fundus", ModelModality::Fundus},
      {"dermoscopy", ModelModality::Dermoscopy},
      {"endoscopy", ModelModality::Endoscopy},
      {"wsi", ModelModality::Pathology},
  };
  for (const auto& [name, modality] : expected) {
    SCOPED_TRACE(name);
    Instance instance = Instance::read_file(test::sample_file(name));
    ModalityClass c = classify_modality(instance);
    ASSERT_TRUE(c.modality) << c.reason;
    EXPECT_EQ(*c.modality, modality) << c.basis;
    EXPECT_EQ(modality_from_name(modality_name(modality)), modality);
  }
}

TEST(Modality, NonImageObjectsAreRefusedWithTheirKind) {
  const std::pair<const char*, const char*> expected[] = {
      {"rtplan.dcm", "radiotherapy"},   {"test-SR.dcm", "structured report"}, {"reportsi.dcm", "structured report"},
      {"waveform_ecg.dcm", "waveform"}, {"liver_1frame.dcm", "segmentation"}, {"rtdose.dcm", "radiotherapy"},
      {"rtstruct.dcm", "radiotherapy"},
  };
  for (const auto& [file, kind] : expected) {
    SCOPED_TRACE(file);
    const fs::path path = test::pydicom_test_file(file);
    ASSERT_FALSE(path.empty()) << test::pydicom_files_missing();
    const Instance instance = Instance::read_file(path);
    ModalityClass c = classify_modality(instance);
    EXPECT_FALSE(c.modality);
    EXPECT_CONTAINS(c.reason, kind);
    // The SOP class and Modality alone (what the Orthanc plugin knows from its index) say the same.
    const auto early = classify_without_pixels(instance.sop_class_uid(), instance.series().modality);
    ASSERT_TRUE(early.has_value());
    EXPECT_EQ(early->reason, c.reason);
    EXPECT_EQ(early->basis, c.basis);
  }
  // Images are not ruled out early, whatever is known of them; nor is an unknown object.
  for (const char* sample : {"ct", "mr", "xray", "us", "fundus", "dermoscopy", "endoscopy", "wsi"}) {
    const Instance instance = Instance::read_file(test::sample_file(sample));
    EXPECT_FALSE(classify_without_pixels(instance.sop_class_uid(), instance.series().modality)) << sample;
    EXPECT_FALSE(classify_without_pixels("", instance.series().modality)) << sample;
    EXPECT_FALSE(classify_without_pixels(instance.sop_class_uid(), "")) << sample;
  }
  EXPECT_FALSE(classify_without_pixels("", ""));
  // Either one suffices: a PDF whose Modality is missing, a presentation state of unknown class.
  EXPECT_CONTAINS(classify_without_pixels("1.2.840.10008.5.1.4.1.1.104.1", "")->reason, "encapsulated document");
  EXPECT_CONTAINS(classify_without_pixels("", "PR")->reason, "presentation state");
  EXPECT_CONTAINS(classify_without_pixels("", "PT")->reason, "PET");
  // A key object selection is an SR class, and named as what it is.
  EXPECT_CONTAINS(classify_without_pixels("1.2.840.10008.5.1.4.1.1.88.59", "KO")->reason, "key object selection");
  EXPECT_CONTAINS(classify_without_pixels("1.2.840.10008.5.1.4.1.1.88.33", "")->reason, "structured report");
}

class EditedInput : public ::testing::Test {
 protected:
  fs::path edited(const std::string& sample, const std::string& name, const std::function<void(DcmDataset&)>& edit,
                  E_TransferSyntax xfer = EXS_LittleEndianExplicit) {
    const fs::path to = dir_ / name;
    test::edit_dicom(test::sample_file(sample), to, edit, xfer);
    return to;
  }
  test::TempDir dir_{"input"};
};

TEST_F(EditedInput, ImagesTheModelWasNotTrainedOnAreRefusedWithAReason) {
  auto reason = [&](const fs::path& file) {
    ModalityClass c = classify_modality(Instance::read_file(file));
    EXPECT_FALSE(c.modality) << file;
    return c.reason;
  };
  EXPECT_CONTAINS(reason(edited("ct", "scout.dcm",
                                [](DcmDataset& ds) { test::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\LOCALIZER"); })),
                  "localizer");
  EXPECT_CONTAINS(
      reason(edited("mr", "mr-mip.dcm",
                    [](DcmDataset& ds) { test::put(ds, DCM_ImageType, "DERIVED\\SECONDARY\\PROJECTION IMAGE"); })),
      "a projection image (ImageType PROJECTION IMAGE");
  EXPECT_CONTAINS(
      reason(edited("ct", "ct-mip.dcm",
                    [](DcmDataset& ds) { test::put(ds, DCM_ImageType, "DERIVED\\SECONDARY\\PROJECTION IMAGE"); })),
      "not a slice");
  EXPECT_CONTAINS(reason(edited("xray", "raw.dcm",
                                [](DcmDataset& ds) { test::put(ds, DCM_PresentationIntentType, "FOR PROCESSING"); })),
                  "FOR PROCESSING");
  EXPECT_CONTAINS(reason(edited("endoscopy", "screenshot.dcm",
                                [](DcmDataset& ds) {
                                  test::put(ds, DCM_Modality, "CT");
                                  test::put(ds, DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.7");
                                })),
                  "colour image (RGB) in a CT series");
  EXPECT_CONTAINS(reason(edited("ct", "pet.dcm", [](DcmDataset& ds) { test::put(ds, DCM_Modality, "PT"); })), "PET");
  EXPECT_CONTAINS(reason(edited("endoscopy", "ot.dcm",
                                [](DcmDataset& ds) {
                                  test::put(ds, DCM_Modality, "OT");
                                  test::put(ds, DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.7");
                                  test::put(ds, DCM_SeriesDescription, "Scanned document");
                                  test::put(ds, DCM_StudyDescription, "");
                                  ds.findAndDeleteElement(DCM_BodyPartExamined);
                                })),
                  "do not say which modality");
  // A secondary capture whose description says what it is.
  ModalityClass described = classify_modality(Instance::read_file(edited("fundus", "sc.dcm", [](DcmDataset& ds) {
    test::put(ds, DCM_Modality, "OT");
    test::put(ds, DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.7");
    test::put(ds, DCM_SeriesDescription, "Fundus photo OD");
  })));
  ASSERT_TRUE(described.modality) << described.reason;
  EXPECT_EQ(*described.modality, ModelModality::Fundus);
}

TEST_F(EditedInput, BrokenFilesGiveErrorsNamingFileAndAttribute) {
  // Not DICOM, empty, truncated.
  test::write_file(dir_ / "notes.dcm", "This is a text file, not an image.\n");
  EXPECT_CONTAINS(error_of([&] { Instance::read_file(dir_ / "notes.dcm"); }), "notes.dcm: not a DICOM file");
  test::write_file(dir_ / "empty.dcm", "");
  EXPECT_CONTAINS(error_of([&] { Instance::read_file(dir_ / "empty.dcm"); }), "empty.dcm: file is empty");
  EXPECT_CONTAINS(error_of([&] { Instance::read_file(dir_ / "missing.dcm"); }), "missing.dcm: no such file");
  const std::string ct = test::read_file(test::sample_file("ct"));
  test::write_file(dir_ / "cut-header.dcm", ct.substr(0, 700));
  EXPECT_CONTAINS(error_of([&] { Instance::read_file(dir_ / "cut-header.dcm"); }), "cut-header.dcm: truncated");
  test::write_file(dir_ / "cut-pixels.dcm", ct.substr(0, ct.size() * 2 / 3));
  // The header is complete; the pixel data is not: reading may succeed (pixels are read on
  // demand) but the image is refused with the sizes.
  std::string cut;
  try {
    Instance i = Instance::read_file(dir_ / "cut-pixels.dcm");
    cut = i.image_problem();
    EXPECT_CONTAINS(error_of([&] { decode_modality_frame(i, 1); }), "cut-pixels.dcm");
  } catch (const DicomError& e) {
    cut = e.what();
  }
  EXPECT_CONTAINS(cut, "cut-pixels.dcm");
  EXPECT_TRUE(cut.find("truncated") != std::string::npos ||
              cut.find("PixelData (7FE0,0010) holds") != std::string::npos)
      << cut;

  // Missing Pixel Data, missing Rows, impossible bits.
  Instance no_pixels =
      Instance::read_file(edited("ct", "nopixels.dcm", [](DcmDataset& ds) { ds.findAndDeleteElement(DCM_PixelData); }));
  EXPECT_CONTAINS(no_pixels.image_problem(), "nopixels.dcm: no PixelData (7FE0,0010)");
  EXPECT_CONTAINS(error_of([&] { decode_modality_frame(no_pixels, 1); }), "PixelData (7FE0,0010)");
  EXPECT_CONTAINS(classify_modality(no_pixels).reason, "no Pixel Data");
  Instance no_rows =
      Instance::read_file(edited("ct", "norows.dcm", [](DcmDataset& ds) { ds.findAndDeleteElement(DCM_Rows); }));
  EXPECT_CONTAINS(no_rows.image_problem(), "norows.dcm: missing or zero Rows (0028,0010)");
  Instance bad_bits =
      Instance::read_file(edited("ct", "bits.dcm", [](DcmDataset& ds) { test::put(ds, DCM_BitsStored, "20"); }));
  EXPECT_CONTAINS(bad_bits.image_problem(), "BitsStored (0028,0101) 20 does not fit BitsAllocated (0028,0100) 16");
  // A rescale slope of zero would hand the model a blank image, whose "no finding" would read
  // as a normal result: the image is refused instead.
  Instance flat =
      Instance::read_file(edited("ct", "slope.dcm", [](DcmDataset& ds) { test::put(ds, DCM_RescaleSlope, "0"); }));
  EXPECT_CONTAINS(flat.image_problem(),
                  "slope.dcm: RescaleSlope (0028,1053) is 0: every pixel would have the value of the intercept");
  EXPECT_CONTAINS(error_of([&] { decode_modality_frame(flat, 1); }), "RescaleSlope (0028,1053) is 0");
  EXPECT_CONTAINS(error_of([&] { decode_modality_frame(Instance::read_file(test::sample_file("ct")), 2); }),
                  "frame 2 does not exist (the instance has 1 frame)");
  EXPECT_CONTAINS(error_of([&] { decode_colour_frame(Instance::read_file(test::sample_file("ct")), 1); }),
                  "greyscale, not colour");

  // A series with such an instance keeps the good ones and lists the bad one.
  const fs::path mixed = dir_ / "series";
  fs::create_directories(mixed);
  fs::copy(test::sample_file("ct", 1), mixed / "a.dcm");
  fs::copy(test::sample_file("ct", 2), mixed / "b.dcm");
  test::edit_dicom(test::sample_file("ct", 3), mixed / "c.dcm",
                   [](DcmDataset& ds) { ds.findAndDeleteElement(DCM_Rows); });
  SeriesCollection c = read_series({mixed});
  ASSERT_EQ(c.series.size(), 1u);
  ASSERT_EQ(c.series[0].problems.size(), 1u);
  EXPECT_CONTAINS(c.series[0].problems[0], "c.dcm: missing or zero Rows (0028,0010)");
  // Left out, so that one bad slice does not cost the series its results.
  EXPECT_CONTAINS(c.series[0].problems[0], "(left out; the series' other instances are read)");
  EXPECT_EQ(c.series[0].instances.size(), 2u);
  EXPECT_TRUE(c.series[0].has_images());
  EXPECT_EQ(plan_views(c.series[0], RenderOptions{}).size(), 2u);
  // A series of nothing but such instances keeps them and says why it has no image.
  const fs::path bad = dir_ / "bad-series";
  fs::create_directories(bad);
  fs::copy(mixed / "c.dcm", bad / "c.dcm");
  SeriesCollection only_bad = read_series({bad});
  ASSERT_EQ(only_bad.series.size(), 1u);
  EXPECT_EQ(only_bad.series[0].instances.size(), 1u);
  EXPECT_FALSE(only_bad.series[0].has_images());
  EXPECT_CONTAINS(error_of([&] { plan_views(only_bad.series[0], RenderOptions{}); }), "no decodable image");

  // A dataset without SOP Instance UID takes the file meta's, in the dataset too: the result
  // objects reference the instance by what its dataset says.
  const fs::path no_uid = dir_ / "no-uid.dcm";
  std::string meta_uid;
  test::edit_dicom(test::sample_file("ct", 1), no_uid, [&](DcmDataset& ds) {
    OFString uid;
    ds.findAndGetOFString(DCM_SOPInstanceUID, uid);
    meta_uid = uid.c_str();
  });
  {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(no_uid.c_str()).good());
    file.getDataset()->findAndDeleteElement(DCM_SOPInstanceUID);
    ASSERT_TRUE(file.saveFile(no_uid.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_noChange,
                              0, 0, EWM_dontUpdateMeta)
                    .good());
  }
  Instance read = Instance::read_file(no_uid);
  EXPECT_EQ(read.sop_instance_uid(), meta_uid);
  OFString in_dataset;
  read.dataset()->findAndGetOFString(DCM_SOPInstanceUID, in_dataset);
  EXPECT_EQ(in_dataset.c_str(), meta_uid);
}

TEST_F(EditedInput, ALocalizerAmongTheSlicesIsLeftOutAndDoesNotDecideTheSeries) {
  // Some scanners put the scout into the axial series, first by Instance Number: the series is
  // still a CT the model reads, and the scout is left out with its reason.
  const fs::path folder = dir_ / "with-scout";
  fs::create_directories(folder);
  for (int i = 1; i <= 3; ++i) fs::copy(test::sample_file("ct", i), folder / ("slice-" + std::to_string(i) + ".dcm"));
  test::edit_dicom(test::sample_file("ct", 4), folder / "scout.dcm", [](DcmDataset& ds) {
    test::put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\LOCALIZER");
    test::put(ds, DCM_InstanceNumber, "0");
    test::put(ds, DCM_ImageOrientationPatient, "1\\0\\0\\0\\0\\-1");
  });
  SeriesCollection c = read_series({folder});
  ASSERT_EQ(c.series.size(), 1u);
  const Series& series = c.series[0];
  ASSERT_TRUE(series.modality.modality) << series.modality.reason;
  EXPECT_EQ(*series.modality.modality, ModelModality::CT);
  EXPECT_EQ(series.instances.size(), 3u);
  ASSERT_EQ(series.problems.size(), 1u);
  EXPECT_CONTAINS(series.problems[0], "scout.dcm: a CT localizer (scout) image, not a slice (left out;");
  // A series of nothing but the scout is still refused for what it is.
  const fs::path alone = dir_ / "scout-alone";
  fs::create_directories(alone);
  fs::copy(folder / "scout.dcm", alone / "scout.dcm");
  SeriesCollection only_scout = read_series({alone});
  ASSERT_EQ(only_scout.series.size(), 1u);
  EXPECT_FALSE(only_scout.series[0].modality.modality);
  EXPECT_CONTAINS(only_scout.series[0].modality.reason, "localizer");
}

// Pixel data with more frames than NumberOfFrames declares (or 0, or none declared): the
// declared frames are read, and the series says which file holds how many more.
TEST_F(EditedInput, MoreFramesInThePixelDataThanDeclaredAreNamed) {
  const Instance us = Instance::read_file(test::sample_file("us"));
  EXPECT_EQ(us.frame_count_note(), "");
  EXPECT_EQ(Instance::read_file(test::sample_file("ct")).frame_count_note(), "");
  const int frames = us.pixels().number_of_frames;
  ASSERT_GT(frames, 3);
  const std::string size = std::to_string(us.pixels().columns) + "x" + std::to_string(us.pixels().rows);
  const std::string fewer = std::to_string(frames - 3);
  for (const std::string& declared : {fewer, std::string("0"), std::string()}) {
    SCOPED_TRACE(declared.empty() ? "absent" : declared);
    const fs::path folder = dir_ / ("declared-" + (declared.empty() ? "none" : declared));
    fs::create_directories(folder);
    test::edit_dicom(test::sample_file("us"), folder / "cine.dcm", [&](DcmDataset& ds) {
      if (declared.empty())
        ds.findAndDeleteElement(DCM_NumberOfFrames);
      else
        test::put(ds, DCM_NumberOfFrames, declared);
    });
    const Instance cine = Instance::read_file(folder / "cine.dcm");
    const int read = declared == fewer ? frames - 3 : 1;
    EXPECT_EQ(cine.pixels().number_of_frames, read);
    const std::string expected = "cine.dcm: PixelData (7FE0,0010) holds " + std::to_string(frames) + " frames of " +
                                 size + ", but NumberOfFrames (0028,0008) " +
                                 (declared.empty() ? "is absent" : "says " + declared) + ": only the first " +
                                 std::to_string(read) + " read";
    EXPECT_CONTAINS(cine.frame_count_note(), expected);
    SeriesCollection c = read_series({folder});
    ASSERT_EQ(c.series.size(), 1u);
    ASSERT_EQ(c.series[0].problems.size(), 1u);
    EXPECT_CONTAINS(c.series[0].problems[0], expected);
  }
}

TEST_F(EditedInput, UndecodableTransferSyntaxAndDamagedCompressedData) {
  // An MPEG-2 encapsulated instance: recognised, refused by name.
  const fs::path mpeg = edited(
      "us", "video.dcm",
      [](DcmDataset& ds) {
        DcmElement* element = nullptr;
        ds.findAndGetElement(DCM_PixelData, element);
        auto* pixels = dynamic_cast<DcmPixelData*>(element);
        auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
        sequence->insert(new DcmPixelItem(DCM_PixelItemTag));  // empty offset table
        auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
        const Uint8 junk[8] = {0, 0, 1, 0xB3, 1, 2, 3, 4};
        fragment->putUint8Array(junk, 8);
        sequence->insert(fragment);
        pixels->putOriginalRepresentation(EXS_MPEG2MainProfileAtMainLevel, nullptr, sequence);
      },
      EXS_MPEG2MainProfileAtMainLevel);
  Instance video = Instance::read_file(mpeg);
  EXPECT_CONTAINS(video.image_problem(), "video.dcm: transfer syntax MPEG2 Main Profile @ Main Level");
  EXPECT_CONTAINS(video.image_problem(), "cannot be decoded");

  // JPEG data damaged in the middle of the entropy-coded segment.
  const fs::path jpeg = test::pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm");
  ASSERT_FALSE(jpeg.empty()) << test::pydicom_files_missing();
  std::string bytes = test::read_file(jpeg);
  const size_t soi = bytes.find("\xff\xd8\xff");
  ASSERT_NE(soi, std::string::npos);
  const size_t sos = bytes.find("\xff\xda", soi);
  for (size_t i = sos + 20; i < sos + 60 && i < bytes.size(); ++i) bytes[i] = char(0xFF);
  test::write_file(dir_ / "damaged.dcm", bytes.substr(0, bytes.size() - 200));
  std::string error;
  try {
    Instance damaged = Instance::read_file(dir_ / "damaged.dcm");
    error = error_of([&] { decode_colour_frame(damaged, 1); });
  } catch (const DicomError& e) {
    error = e.what();
  }
  // Either refused outright or decoded to something; never a crash. When refused, named.
  if (!error.empty()) {
    EXPECT_CONTAINS(error, "damaged.dcm");
  }
}

TEST(InstanceBytes, BytesInMemoryReadLikeTheFile) {
  const fs::path file = test::sample_file("mr", 5);
  const std::string raw = test::read_file(file);
  std::vector<uint8_t> bytes(raw.begin(), raw.end());
  Instance from_bytes = Instance::read_bytes(bytes, "orthanc:1234");
  bytes.assign(bytes.size(), 0);  // the reader must not depend on the caller's buffer
  Instance from_file = Instance::read_file(file);
  EXPECT_EQ(from_bytes.source(), "orthanc:1234");
  EXPECT_EQ(from_bytes.sop_instance_uid(), from_file.sop_instance_uid());
  EXPECT_EQ(from_bytes.frame(1).image_position, from_file.frame(1).image_position);
  EXPECT_EQ(decode_modality_frame(from_bytes, 1).values, decode_modality_frame(from_file, 1).values);

  std::vector<uint8_t> cut(raw.begin(), raw.begin() + long(raw.size() / 2));
  EXPECT_CONTAINS(error_of([&] { Instance::read_bytes(cut, "orthanc:cut"); }), "orthanc:cut: truncated");
  EXPECT_CONTAINS(error_of([&] { Instance::read_bytes({}, "orthanc:none"); }), "orthanc:none: no bytes");
  std::vector<uint8_t> text{'h', 'e', 'l', 'l', 'o'};
  EXPECT_CONTAINS(error_of([&] { Instance::read_bytes(text, "orthanc:text"); }), "orthanc:text");

  std::vector<InstanceBytes> inputs;
  for (int i = 1; i <= 3; ++i) {
    const std::string r = test::read_file(test::sample_file("mr", i));
    inputs.push_back({"mem" + std::to_string(i), std::vector<uint8_t>(r.begin(), r.end())});
  }
  inputs.push_back({"mem-garbage", text});
  inputs.push_back(inputs[0]);  // the same instance twice
  SeriesCollection c = read_series(inputs);
  ASSERT_EQ(c.series.size(), 1u);
  EXPECT_EQ(c.series[0].instances.size(), 3u);
  ASSERT_EQ(c.problems.size(), 2u);
  EXPECT_CONTAINS(c.problems[0].message, "mem-garbage");
  EXPECT_CONTAINS(c.problems[1].message, "was already read");
}

TEST(InstanceBytes, AttributesPassedOnAsUnknownVrReadLikeTheOriginal) {
  // An archive that did not know these attributes re-encoded them as UN (PS3.5 6.2.2): text,
  // US, DS and UI values as raw bytes. The instance reads them as if they were never touched.
  const fs::path original = test::sample_file("ct", 3);
  test::TempDir dir("unknown-vr");
  const fs::path edited = dir / "un.dcm";
  const DcmTagKey as_un[] = {DCM_Modality,     DCM_SOPClassUID,          DCM_Rows,
                             DCM_Columns,      DCM_BitsAllocated,        DCM_PixelRepresentation,
                             DCM_PixelSpacing, DCM_ImagePositionPatient, DCM_ImageOrientationPatient,
                             DCM_RescaleSlope, DCM_RescaleIntercept,     DCM_SeriesDescription};
  test::edit_dicom(original, edited, [&](DcmDataset& ds) {
    for (const DcmTagKey& key : as_un) {
      DcmElement* e = nullptr;
      ASSERT_TRUE(ds.findAndGetElement(key, e).good()) << DcmTag(key).getTagName();
      std::vector<Uint8> bytes(e->getLength());
      // The value's bytes as written in explicit VR little endian.
      if (e->ident() == EVR_US) {
        Uint16 v = 0;
        e->getUint16(v);
        bytes = {Uint8(v & 0xFF), Uint8(v >> 8)};
      } else {
        OFString text;
        e->getOFStringArray(text);
        if (text.length() % 2) text += e->ident() == EVR_UI ? '\0' : ' ';
        bytes.assign(text.begin(), text.end());
      }
      auto* un = new DcmOtherByteOtherWord(DcmTag(key, EVR_UN));
      un->putUint8Array(bytes.data(), bytes.size());
      ds.insert(un, OFTrue);
    }
  });
  {
    // DCMTK keeps them as UN: the case is real in the file the reader gets.
    DcmFileFormat check;
    ASSERT_TRUE(check.loadFile(edited.c_str()).good());
    DcmElement* e = nullptr;
    ASSERT_TRUE(check.getDataset()->findAndGetElement(DCM_Rows, e).good());
    EXPECT_EQ(e->ident(), EVR_UN);
  }
  const Instance before = Instance::read_file(original);
  const Instance after = Instance::read_file(edited);
  EXPECT_EQ(after.series().modality, before.series().modality);
  EXPECT_EQ(after.sop_class_uid(), before.sop_class_uid());
  EXPECT_EQ(after.series().series_description, before.series().series_description);
  EXPECT_EQ(after.pixels().rows, before.pixels().rows);
  EXPECT_EQ(after.pixels().columns, before.pixels().columns);
  EXPECT_EQ(after.pixels().bits_allocated, before.pixels().bits_allocated);
  EXPECT_EQ(after.frame(1).image_position, before.frame(1).image_position);
  EXPECT_EQ(after.frame(1).image_orientation, before.frame(1).image_orientation);
  EXPECT_EQ(after.frame(1).pixel_spacing, before.frame(1).pixel_spacing);
  EXPECT_EQ(decode_modality_frame(after, 1).values, decode_modality_frame(before, 1).values);
  EXPECT_TRUE(after.image_problem().empty()) << after.image_problem();
}

TEST(InstanceBytes, CommandLineInspectListsEveryProblemPerFile) {
  ASSERT_TRUE(fs::exists(test::cli_path())) << test::cli_missing_reason();
  test::TempDir dir("inspect");
  fs::copy(test::sample_folder("xray"), dir / "xray");
  test::write_file(dir / "junk.dcm", "not dicom at all");
  test::edit_dicom(test::sample_file("ct"), dir / "ct" / "IM0001.dcm",
                   [](DcmDataset& ds) { ds.findAndDeleteElement(DCM_Columns); });
  auto r = test::run_command({test::cli_path().string(), "dicom", "inspect", dir.path().string(), "--json"});
  EXPECT_EQ(r.exit_code, 5) << r.output;  // partial: one file unreadable
  auto json = nlohmann::json::parse(r.output);
  ASSERT_EQ(json["series"].size(), 2u);
  ASSERT_EQ(json["file_problems"].size(), 1u);
  EXPECT_CONTAINS(json["file_problems"][0]["message"].get<std::string>(), "junk.dcm: not a DICOM file");
  bool columns_named = false;
  for (const auto& s : json["series"])
    for (const auto& p : s["problems"])
      columns_named |= p.get<std::string>().find("Columns (0028,0011)") != std::string::npos;
  EXPECT_TRUE(columns_named) << r.output;
  auto missing = test::run_command({test::cli_path().string(), "dicom", "inspect", (dir / "nothing").string()});
  EXPECT_EQ(missing.exit_code, 3);
  EXPECT_CONTAINS(missing.output, "no such file or folder");
}

}  // namespace
}  // namespace unibiomed::dicom
