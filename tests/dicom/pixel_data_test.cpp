// Pixel decoding against pydicom on pydicom's own test files: every transfer syntax, byte
// order, bit depth, colour model and multi-frame layout there. Compressed files that pydicom
// cannot decode here are compared with their uncompressed twin, or with GDCM's gdcmconv.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/pixel_data.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/dicom/dicom_test_support.h"

namespace unibiomed::dicom {
namespace {

enum class Mode { Stored, Rgb };

struct Case {
  const char* file;
  const char* reference;  // file whose pydicom pixel_array is the expectation ("" = same file)
  Mode mode;
  int max_error;      // 0 = bit exact
  double mean_error;  // bound on the mean absolute error (lossy codecs)
  const char* why;
};

// Lossy JPEG: DCMTK's IJG 6b decoder and Pillow's libjpeg-turbo use different IDCTs and chroma
// upsampling, so single samples may differ by a few levels while the image is the same.
const Case kCases[] = {
    {"CT_small.dcm", "", Mode::Stored, 0, 0, "explicit VR little endian, signed 16-bit"},
    {"MR_small.dcm", "", Mode::Stored, 0, 0, "explicit VR little endian"},
    {"MR_small_implicit.dcm", "", Mode::Stored, 0, 0, "implicit VR little endian"},
    {"MR_small_bigendian.dcm", "", Mode::Stored, 0, 0, "explicit VR big endian"},
    {"MR_small_expb.dcm", "", Mode::Stored, 0, 0, "explicit VR big endian"},
    {"MR_small_padded.dcm", "", Mode::Stored, 0, 0, "trailing padding after the pixel data"},
    {"MR_small_RLE.dcm", "MR_small.dcm", Mode::Stored, 0, 0, "RLE lossless vs the uncompressed twin"},
    {"MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", Mode::Stored, 0, 0, "JPEG-LS lossless vs the twin"},
    {"MR_small_jp2klossless.dcm", "MR_small.dcm", Mode::Stored, 0, 0, "JPEG 2000 lossless vs the twin"},
    {"JPEG2000.dcm", "", Mode::Stored, 0, 0, "JPEG 2000 lossy, signed 16-bit"},
    {"693_J2KI.dcm", "", Mode::Stored, 0, 0, "JPEG 2000 lossy, 14 bits stored"},
    {"J2K_pixelrep_mismatch.dcm", "", Mode::Stored, 0, 0, "codestream signedness contradicts Pixel Representation"},
    {"image_dfl.dcm", "", Mode::Stored, 0, 0, "deflated explicit VR little endian"},
    {"ExplVR_BigEnd.dcm", "", Mode::Stored, 0, 0, "big endian RGB, colour-by-plane"},
    {"SC_rgb_small_odd.dcm", "", Mode::Stored, 0, 0, "RGB, odd size"},
    {"SC_ybr_full_422_uncompressed.dcm", "", Mode::Stored, 0, 0, "native YBR_FULL_422 (chroma subsampled)"},
    {"SC_rgb_rle.dcm", "", Mode::Stored, 0, 0, "RLE RGB 8-bit"},
    {"SC_rgb_rle_2frame.dcm", "", Mode::Stored, 0, 0, "RLE RGB, two frames"},
    {"SC_rgb_rle_16bit.dcm", "", Mode::Stored, 0, 0, "RLE RGB 16-bit"},
    {"SC_rgb_rle_16bit_2frame.dcm", "", Mode::Stored, 0, 0, "RLE RGB 16-bit, two frames"},
    {"SC_rgb_rle_32bit_2frame.dcm", "", Mode::Stored, 0, 0, "RLE RGB 32-bit, two frames"},
    {"rtdose.dcm", "", Mode::Stored, 0, 0, "implicit VR, 15 frames, 32-bit"},
    {"rtdose_expb.dcm", "", Mode::Stored, 0, 0, "big endian, 15 frames, 32-bit"},
    {"rtdose_rle.dcm", "", Mode::Stored, 0, 0, "RLE, 15 frames, 32-bit"},
    {"SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", Mode::Stored, 0, 0, "JPEG lossless SV1 vs the RLE twin"},
    {"JPGExtended.dcm", "JPGExtended.dcm@gdcmconv", Mode::Stored, 0, 0, "JPEG extended 12-bit vs gdcmconv --raw"},
    {"SC_rgb_jpeg_dcmtk.dcm", "", Mode::Rgb, 12, 1.0, "JPEG baseline YBR_FULL"},
    {"SC_rgb_dcmtk_+eb+cy+np.dcm", "", Mode::Rgb, 12, 1.0, "JPEG baseline YBR_FULL_422"},
    {"SC_rgb_dcmtk_+eb+cy+s2.dcm", "", Mode::Rgb, 12, 1.0, "JPEG baseline YBR_FULL_422, 2x1 sampling"},
    {"SC_rgb_dcmtk_+eb+cy+n1.dcm", "", Mode::Rgb, 12, 1.0, "JPEG baseline YBR_FULL, non-interleaved"},
    {"SC_rgb_dcmtk_+eb+cr.dcm", "", Mode::Rgb, 12, 1.0, "JPEG baseline RGB (no colour transform)"},
    {"SC_rgb_jpeg_lossy_gdcm.dcm", "", Mode::Rgb, 12, 1.0, "JPEG baseline written by GDCM"},
    {"SC_ybr_full_422_uncompressed.dcm", "", Mode::Rgb, 1, 0.5, "native YBR_FULL_422 converted to RGB"},
};

std::string reference_name(const Case&, size_t index) {
  return "case" + std::to_string(index);
}

TEST(PixelData, DecodesPydicomTestFilesLikePydicom) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  ASSERT_FALSE(test::pydicom_test_file("MR_small.dcm").empty()) << test::pydicom_files_missing();
  test::TempDir dir("pixels");
  std::vector<std::string> argv = {test::kReferencePython, test::dicom_test_script("pydicom_reference.py"),
                                   dir.path().string()};
  for (size_t i = 0; i < std::size(kCases); ++i) {
    const Case& c = kCases[i];
    std::string ref = *c.reference ? c.reference : c.file;
    std::string suffix;
    if (auto at = ref.find('@'); at != std::string::npos) {
      suffix = ref.substr(at);
      ref = ref.substr(0, at);
    }
    if (suffix == "@gdcmconv" && !test::have_program("gdcmconv")) continue;
    argv.push_back(reference_name(c, i) + "=" + (test::pydicom_test_files_dir() / ref).string() + suffix +
                   (c.mode == Mode::Rgb ? ":rgb" : ":stored"));
  }
  auto r = test::run_command(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  for (size_t i = 0; i < std::size(kCases); ++i) {
    const Case& c = kCases[i];
    SCOPED_TRACE(std::string(c.file) + " (" + c.why + ")");
    if (!std::filesystem::exists(dir / (reference_name(c, i) + ".txt"))) continue;
    std::istringstream shape(test::read_file(dir / (reference_name(c, i) + ".txt")));
    int frames = 0, rows = 0, columns = 0, samples = 0;
    shape >> frames >> rows >> columns >> samples;
    const std::string expected_bytes = test::read_file(dir / (reference_name(c, i) + ".bin"));
    const auto* expected = reinterpret_cast<const int32_t*>(expected_bytes.data());

    Instance instance = Instance::read_file(test::pydicom_test_files_dir() / c.file);
    ASSERT_EQ(instance.pixels().number_of_frames, frames);
    const size_t frame_size = size_t(rows) * size_t(columns) * size_t(samples);
    long long max_error = 0;
    double sum = 0;
    for (int f = 1; f <= frames; ++f) {
      std::vector<int32_t> got;
      if (c.mode == Mode::Stored) {
        StoredFrame frame = decode_stored_frame(instance, f);
        ASSERT_EQ(frame.rows, rows);
        ASSERT_EQ(frame.columns, columns);
        ASSERT_EQ(frame.samples_per_pixel, samples);
        got = frame.values;
      } else {
        RgbImage image = decode_colour_frame(instance, f);
        ASSERT_EQ(image.height, rows);
        ASSERT_EQ(image.width, columns);
        got.assign(image.rgb.begin(), image.rgb.end());
      }
      ASSERT_EQ(got.size(), frame_size);
      for (size_t k = 0; k < frame_size; ++k) {
        long long e = std::llabs((long long)got[k] - (long long)expected[size_t(f - 1) * frame_size + k]);
        max_error = std::max(max_error, e);
        sum += double(e);
      }
    }
    const double mean = sum / double(frame_size * size_t(frames));
    std::cout << c.file << ": max abs error " << max_error << ", mean " << mean << " (" << c.why << ")\n";
    EXPECT_LE(max_error, c.max_error);
    if (c.max_error > 0) {
      EXPECT_LE(mean, c.mean_error);
    }
  }
}

}  // namespace
}  // namespace unibiomed::dicom
