// Lookup tables against pydicom's own implementations: palette colour (apply_color_lut),
// a Modality LUT Sequence (apply_modality_lut) and a VOI LUT Sequence (apply_voi_lut), on
// sample images turned into such files with DCMTK.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <cmath>

#include "dicom/pixel_data.h"
#include "dicom/view.h"
#include "tests/dicom/dicom_edit.h"
#include "tests/dicom/dicom_test_support.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

namespace fs = std::filesystem;

std::string python_bytes(const std::string& script, const fs::path& input) {
  test::TempDir dir("lut-ref");
  auto r = test::run_command({test::kReferencePython, "-c", script, input.string(), (dir / "out.bin").string()});
  if (r.exit_code != 0) throw std::runtime_error(r.output);
  return test::read_file(dir / "out.bin");
}

void put_lut(DcmItem& item, const DcmTagKey& descriptor, const DcmTagKey& data, const std::vector<Uint16>& table,
             int first, int bits) {
  const Uint16 d[3] = {Uint16(table.size() == 65536 ? 0 : table.size()), Uint16(first), Uint16(bits)};
  item.putAndInsertUint16Array(descriptor, d, 3);
  item.putAndInsertUint16Array(data, table.data(), table.size());
}

TEST(LookupTables, PaletteColourLikePydicom) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  test::TempDir dir("palette");
  const fs::path file = dir / "palette.dcm";
  test::edit_dicom(test::sample_file("us"), file, [](DcmDataset& ds) {
    test::put(ds, DCM_PhotometricInterpretation, "PALETTE COLOR");
    std::vector<Uint16> red(256), green(256), blue(256);
    for (int i = 0; i < 256; ++i) {
      red[size_t(i)] = Uint16(i * 257);
      green[size_t(i)] = Uint16((255 - i) * 257);
      blue[size_t(i)] = Uint16(((i * 7) % 256) * 257);
    }
    put_lut(ds, DCM_RedPaletteColorLookupTableDescriptor, DCM_RedPaletteColorLookupTableData, red, 0, 16);
    put_lut(ds, DCM_GreenPaletteColorLookupTableDescriptor, DCM_GreenPaletteColorLookupTableData, green, 0, 16);
    put_lut(ds, DCM_BluePaletteColorLookupTableDescriptor, DCM_BluePaletteColorLookupTableData, blue, 0, 16);
  });
  Instance instance = Instance::read_file(file);
  ASSERT_TRUE(is_colour(instance));
  RgbImage ours = decode_colour_frame(instance, 4);
  const std::string expected = python_bytes(
      "import sys, numpy as np, pydicom\n"
      "from pydicom.pixel_data_handlers.util import apply_color_lut\n"
      "ds = pydicom.dcmread(sys.argv[1])\n"
      "rgb = apply_color_lut(ds.pixel_array[3], ds)\n"
      "open(sys.argv[2], 'wb').write((rgb >> 8).astype(np.uint8).tobytes())\n",
      file);
  ASSERT_EQ(expected.size(), ours.rgb.size());
  size_t differ = 0;
  for (size_t i = 0; i < expected.size(); ++i) differ += ours.rgb[i] != uint8_t(expected[i]);
  EXPECT_EQ(differ, 0u);
  // A segmented palette is refused by name.
  test::edit_dicom(file, dir / "segmented.dcm", [](DcmDataset& ds) {
    const Uint16 segment[4] = {0, 2, 0, 255};
    ds.putAndInsertUint16Array(DCM_SegmentedRedPaletteColorLookupTableData, segment, 4);
  });
  try {
    decode_colour_frame(Instance::read_file(dir / "segmented.dcm"), 1);
    ADD_FAILURE() << "segmented palette accepted";
  } catch (const DicomError& e) {
    EXPECT_NE(std::string(e.what()).find("SegmentedRedPaletteColorLookupTableData (0028,1221)"), std::string::npos)
        << e.what();
  }
}

TEST(LookupTables, ModalityLutSequenceLikePydicom) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  test::TempDir dir("modality-lut");
  const fs::path file = dir / "mlut.dcm";
  test::edit_dicom(test::sample_file("ct", 30), file, [](DcmDataset& ds) {
    ds.findAndDeleteElement(DCM_RescaleIntercept);
    ds.findAndDeleteElement(DCM_RescaleSlope);
    ds.findAndDeleteElement(DCM_RescaleType);
    DcmItem* item = nullptr;
    ds.findOrCreateSequenceItem(DCM_ModalityLUTSequence, item, -2);
    std::vector<Uint16> table(4096);
    for (size_t i = 0; i < table.size(); ++i) table[i] = Uint16(std::lround(std::sqrt(double(i)) * 900));
    put_lut(*item, DCM_LUTDescriptor, DCM_LUTData, table, 0, 16);
    test::put(*item, DCM_ModalityLUTType, "OD");
  });
  ModalityFrame ours = decode_modality_frame(Instance::read_file(file), 1);
  const std::string expected = python_bytes(
      "import sys, numpy as np, pydicom\n"
      "from pydicom.pixel_data_handlers.util import apply_modality_lut\n"
      "ds = pydicom.dcmread(sys.argv[1])\n"
      "open(sys.argv[2], 'wb').write(apply_modality_lut(ds.pixel_array, ds).astype('<f4').tobytes())\n",
      file);
  ASSERT_EQ(expected.size(), ours.values.size() * 4);
  const auto* e = reinterpret_cast<const float*>(expected.data());
  float worst = 0;
  for (size_t i = 0; i < ours.values.size(); ++i) worst = std::max(worst, std::fabs(ours.values[i] - e[i]));
  EXPECT_EQ(worst, 0.f);
}

TEST(LookupTables, VoiLutSequenceLikePydicom) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  test::TempDir dir("voi-lut");
  const fs::path file = dir / "voi.dcm";
  test::edit_dicom(test::sample_file("xray"), file, [](DcmDataset& ds) {
    ds.findAndDeleteElement(DCM_WindowCenter);
    ds.findAndDeleteElement(DCM_WindowWidth);
    DcmItem* item = nullptr;
    ds.findOrCreateSequenceItem(DCM_VOILUTSequence, item, -2);
    // A gamma-like curve over stored values 500..3999, 12-bit output.
    std::vector<Uint16> table(3500);
    for (size_t i = 0; i < table.size(); ++i) table[i] = Uint16(std::lround(4095 * std::pow(double(i) / 3499, 0.7)));
    put_lut(*item, DCM_LUTDescriptor, DCM_LUTData, table, 500, 12);
  });
  Instance instance = Instance::read_file(file);
  ModalityFrame frame = decode_modality_frame(instance, 1);
  GreyMapping mapping;
  GreyImage ours = apply_file_voi(instance, 1, frame.values, frame.columns, frame.rows, frame.monochrome1, &mapping);
  EXPECT_NE(mapping.description.find("VOI LUT Sequence"), std::string::npos) << mapping.description;
  const std::string expected = python_bytes(
      "import sys, numpy as np, pydicom\n"
      "from pydicom.pixel_data_handlers.util import apply_voi_lut\n"
      "ds = pydicom.dcmread(sys.argv[1])\n"
      "y = np.round(apply_voi_lut(ds.pixel_array, ds).astype(np.float64) * 255.0 / 4095)\n"
      "open(sys.argv[2], 'wb').write((255 - y).astype(np.uint8).tobytes())\n",
      file);
  ASSERT_EQ(expected.size(), ours.grey.size());
  int worst = 0;
  for (size_t i = 0; i < expected.size(); ++i)
    worst = std::max(worst, std::abs(int(ours.grey[i]) - int(uint8_t(expected[i]))));
  std::cout << "VOI LUT Sequence: max abs difference vs pydicom " << worst << "\n";
  EXPECT_LE(worst, 1);  // rounding in the 12-bit vs the 8-bit range
}

}  // namespace
}  // namespace unibiomed::dicom
