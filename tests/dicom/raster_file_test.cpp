// raster_file: PNG of every colour type against an independent Python PNG coder
// (tests/dicom/png_reference.py), JPEG against the uncompressed twin of a pydicom test file,
// and the errors for files that are not what they claim.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/raster_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "tests/dicom/dicom_test_support.h"
#include "tests/support/test_support.h"

namespace unibiomed::dicom {
namespace {

using test::TempDir;

std::vector<uint8_t> bytes_of(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

TEST(RasterFile, ReadsEveryPngColourTypeLikeAnIndependentCoder) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  TempDir dir("raster");
  auto r = test::run_command(
      {test::kReferencePython, test::dicom_test_script("png_reference.py"), "write", dir.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream cases(test::read_file(dir / "cases.txt"));
  std::string name;
  int width = 0, height = 0, count = 0;
  while (cases >> name >> width >> height) {
    SCOPED_TRACE(name);
    RgbImage image = read_raster_rgb(dir / (name + ".png"));
    ASSERT_EQ(image.width, width);
    ASSERT_EQ(image.height, height);
    const std::string expected = test::read_file(dir / (name + ".rgb"));
    ASSERT_EQ(image.rgb.size(), expected.size());
    int max_error = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      max_error = std::max(max_error, std::abs(int(image.rgb[i]) - int(uint8_t(expected[i]))));
    }
    EXPECT_EQ(max_error, 0) << "max abs error " << max_error;
    ++count;
  }
  EXPECT_EQ(count, 17);
}

TEST(RasterFile, WrittenPngsDecodeIdenticallyWithAnIndependentDecoder) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  TempDir dir("raster");
  RgbImage rgb{29, 17, {}};
  GreyImage grey{31, 13, {}};
  for (int i = 0; i < rgb.width * rgb.height * 3; ++i) rgb.rgb.push_back(uint8_t((i * 37 + (i / 7) * 11) & 255));
  for (int i = 0; i < grey.width * grey.height; ++i) grey.grey.push_back(uint8_t((i * 53) % 251));
  write_png(dir / "rgb.png", rgb);
  write_png(dir / "grey.png", grey);
  for (const auto& [file, channels, data] : {std::tuple{"rgb.png", 3, rgb.rgb}, std::tuple{"grey.png", 1, grey.grey}}) {
    SCOPED_TRACE(file);
    auto r = test::run_command(
        {test::kReferencePython, test::dicom_test_script("png_reference.py"), "read", (dir / file).string()});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::istringstream out(r.output);
    int w = 0, h = 0, c = 0;
    std::string hex;
    out >> w >> h >> c >> hex;
    const int expected_w = channels == 3 ? rgb.width : grey.width;
    EXPECT_EQ(w, expected_w);
    EXPECT_EQ(c, channels);
    ASSERT_EQ(hex.size(), data.size() * 2);
    for (size_t i = 0; i < data.size(); ++i) {
      ASSERT_EQ(std::stoi(hex.substr(2 * i, 2), nullptr, 16), data[i]) << "sample " << i;
    }
  }
  // And our own reader gives the grey image back replicated to RGB.
  RgbImage back = read_raster_rgb(dir / "grey.png");
  EXPECT_EQ(back.rgb, grey_to_rgb(grey).rgb);
}

TEST(RasterFile, DecodesBaselineJpegCloseToTheUncompressedOriginal) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  const auto jpeg_dicom = test::pydicom_test_file("SC_rgb_small_odd_jpeg.dcm");
  const auto twin = test::pydicom_test_file("SC_rgb_small_odd.dcm");
  ASSERT_FALSE(jpeg_dicom.empty() || twin.empty()) << test::pydicom_files_missing();
  TempDir dir("raster");
  // pydicom extracts the JPEG bitstream of frame 1 and the original RGB pixels.
  const std::string script =
      "import sys, pydicom\n"
      "from pydicom.encaps import generate_pixel_data_frame\n"
      "ds = pydicom.dcmread(sys.argv[1])\n"
      "open(sys.argv[3], 'wb').write(next(generate_pixel_data_frame(ds.PixelData)))\n"
      "t = pydicom.dcmread(sys.argv[2])\n"
      "open(sys.argv[4], 'wb').write(t.pixel_array.astype('uint8').tobytes())\n"
      "print(t.Columns, t.Rows)\n";
  auto r = test::run_command({test::kReferencePython, "-c", script, jpeg_dicom.string(), twin.string(),
                              (dir / "frame.jpg").string(), (dir / "twin.rgb").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream out(r.output);
  int w = 0, h = 0;
  out >> w >> h;
  RgbImage image = read_raster_rgb(dir / "frame.jpg");
  ASSERT_EQ(image.width, w);
  ASSERT_EQ(image.height, h);
  const std::string expected = test::read_file(dir / "twin.rgb");
  ASSERT_EQ(image.rgb.size(), expected.size());
  double sum = 0;
  int max_error = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    int e = std::abs(int(image.rgb[i]) - int(uint8_t(expected[i])));
    sum += e;
    max_error = std::max(max_error, e);
  }
  const double mean_error = sum / double(expected.size());
  std::cout << "JPEG vs original: mean abs error " << mean_error << ", max " << max_error << "\n";
  // Lossy baseline with 4:2:2 chroma subsampling at default quality: small mean error, and a
  // colour-swapped or mis-sampled decode would give tens of levels on average.
  EXPECT_LT(mean_error, 3.0);
  EXPECT_LE(max_error, 12);

  // The same stream with a frame header that claims 65000 x 65000 pixels: refused before the
  // 12 GB it would take.
  std::string jpeg = test::read_file(dir / "frame.jpg");
  const size_t sof = jpeg.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  for (size_t i : {sof + 5, sof + 7}) {  // height, then width, big-endian
    jpeg[i] = char(0xFD);
    jpeg[i + 1] = char(0xE8);
  }
  try {
    decode_raster_rgb(bytes_of(jpeg), "huge.jpg");
    ADD_FAILURE() << "a 65000 x 65000 JPEG was decoded";
  } catch (const RasterFileError& e) {
    EXPECT_NE(std::string(e.what()).find("huge.jpg: invalid JPEG: 65000 x 65000 pixels is more than"),
              std::string::npos)
        << e.what();
  }
}

TEST(RasterFile, ErrorsNameTheFileAndTheProblem) {
  TempDir dir("raster");
  auto expect_error = [](auto&& call, const std::string& must_contain) {
    try {
      call();
      ADD_FAILURE() << "no error, expected one mentioning '" << must_contain << "'";
    } catch (const RasterFileError& e) {
      EXPECT_NE(std::string(e.what()).find(must_contain), std::string::npos) << e.what();
    }
  };
  expect_error([&] { read_raster_rgb(dir / "missing.png"); }, "missing.png: cannot open");
  test::write_file(dir / "empty.png", "");
  expect_error([&] { read_raster_rgb(dir / "empty.png"); }, "empty.png: file is empty");
  test::write_file(dir / "text.png", "hello, this is not an image");
  expect_error([&] { read_raster_rgb(dir / "text.png"); }, "text.png: not a PNG or JPEG");

  RgbImage good{8, 4, std::vector<uint8_t>(8 * 4 * 3, 100)};
  write_png(dir / "good.png", good);
  const std::string png = test::read_file(dir / "good.png");
  test::write_file(dir / "cut.png", png.substr(0, png.size() / 2));
  expect_error([&] { read_raster_rgb(dir / "cut.png"); }, "cut.png: invalid PNG");
  std::string corrupt = png;
  corrupt[20] ^= 0x5a;  // inside IHDR: the CRC no longer matches
  expect_error([&] { decode_raster_rgb(bytes_of(corrupt), "corrupt.png"); }, "corrupt.png: invalid PNG");
  // A header that claims 60000 x 60000 pixels (with a valid CRC) over 8 x 4 pixels of data: refused
  // before the 10 GB it would take.
  std::string huge = png;
  for (size_t at : {size_t{16}, size_t{20}}) {  // IHDR width, height
    huge[at] = 0, huge[at + 1] = 0, huge[at + 2] = char(0xEA), huge[at + 3] = char(0x60);
  }
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 12; i < 29; ++i) {  // chunk type and data
    crc ^= uint8_t(huge[i]);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  crc = ~crc;
  for (int k = 0; k < 4; ++k) huge[29 + k] = char(crc >> (24 - 8 * k));
  expect_error([&] { decode_raster_rgb(bytes_of(huge), "huge.png"); },
               "huge.png: invalid PNG: 60000 x 60000 pixels is more than the 268 million pixels");

  expect_error([&] { decode_raster_rgb(bytes_of(std::string("\xff\xd8\xff\xe0 truncated", 14)), "cut.jpg"); },
               "cut.jpg: invalid JPEG");

  expect_error(
      [&] {
        write_png(dir / "wrong.png", RgbImage{8, 4, std::vector<uint8_t>(10)});
      },
      "wrong.png: buffer holds 10 bytes");
  expect_error([&] { write_png(dir / "none.png", GreyImage{0, 4, {}}); }, "none.png: cannot write an empty image");
  expect_error([&] { write_png(dir / "no-such-folder" / "x.png", good); }, "x.png: cannot write PNG");
}

TEST(RasterFile, TwelveBitJpegIsRefusedWithTheReason) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  const auto dicom_file = test::pydicom_test_file("JPEG-lossy.dcm");  // 12-bit extended process
  ASSERT_FALSE(dicom_file.empty()) << test::pydicom_files_missing();
  TempDir dir("raster");
  auto r = test::run_command({test::kReferencePython, "-c",
                              "import sys, pydicom\nfrom pydicom.encaps import generate_pixel_data_frame\n"
                              "ds = pydicom.dcmread(sys.argv[1])\n"
                              "open(sys.argv[2], 'wb').write(next(generate_pixel_data_frame(ds.PixelData)))\n",
                              dicom_file.string(), (dir / "twelve.jpg").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  try {
    read_raster_rgb(dir / "twelve.jpg");
    ADD_FAILURE() << "a 12-bit JPEG cannot become RGB8 with an 8-bit decoder";
  } catch (const RasterFileError& e) {
    EXPECT_NE(std::string(e.what()).find("twelve.jpg: invalid JPEG"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::dicom
