// The model's views: intensities against an independent numpy/pydicom implementation of the
// training data's preprocessing (BiomedParse's clip + min-max + astype(uint8), numpy
// percentiles, pydicom's VOI LUT), colour as stored, cine strides, slide regions, padding,
// and masks mapped back to the source exactly.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/view.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "samples/phantom.h"
#include "tests/dicom/dicom_test_support.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

namespace fs = std::filesystem;

Series only_series(const fs::path& folder) {
  SeriesCollection c = read_series({folder});
  if (c.series.size() != 1) throw std::runtime_error("expected one series in " + folder.string());
  return c.series.front();
}

// Runs a Python snippet that writes raw uint8 bytes to argv[2]; returns them.
std::string python_bytes(const std::string& script, const fs::path& input) {
  test::TempDir dir("view-ref");
  auto r = test::run_command({test::kReferencePython, "-c", script, input.string(), (dir / "out.bin").string()});
  if (r.exit_code != 0) throw std::runtime_error(r.output);
  return test::read_file(dir / "out.bin");
}

int max_difference(const View& view, const std::string& expected_grey) {
  int worst = 0;
  const size_t n = size_t(view.image.width) * size_t(view.image.height);
  if (expected_grey.size() != n) return 1000;
  for (size_t i = 0; i < n; ++i)
    worst = std::max(worst, std::abs(int(view.image.rgb[3 * i]) - int(uint8_t(expected_grey[i]))));
  return worst;
}

View view_of_instance(const Series& series, size_t instance_index, int frame, const RenderOptions& options) {
  for (const auto& r : plan_views(series, options))
    if (r.instance_index == instance_index && r.frame_number == frame) return render_view(series, r, options);
  throw std::runtime_error("no such view");
}

TEST(View, CtPresetsMatchTheTrainingPreprocessingInNumpy) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  const Series series = only_series(test::sample_folder("ct"));
  for (const auto& [preset, lo, hi] :
       {std::tuple{"abdomen", -150, 250}, std::tuple{"lung", -1000, 1000}, std::tuple{"liver", -25, 230}}) {
    SCOPED_TRACE(preset);
    RenderOptions options;
    options.ct_preset = preset;
    const size_t index = 40;
    View view = view_of_instance(series, index, 1, options);
    // BiomedParse process_intensity_image: clip, (x - min) / (max - min) * 255, astype(uint8).
    const std::string script =
        "import sys, numpy as np, pydicom\n"
        "ds = pydicom.dcmread(sys.argv[1])\n"
        "x = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)\n"
        "x = np.clip(x, " +
        std::to_string(lo) + ", " + std::to_string(hi) +
        ")\n"
        "x = (x - x.min()) / (x.max() - x.min()) * 255.0\n"
        "open(sys.argv[2], 'wb').write(x.astype(np.uint8).tobytes())\n";
    const int worst = max_difference(view, python_bytes(script, series.instances[index].source()));
    std::cout << preset << ": max abs difference vs numpy " << worst << "\n";
    EXPECT_EQ(worst, 0);
    EXPECT_EQ(view.image.rgb[0], view.image.rgb[1]);  // grey replicated
    EXPECT_NE(view.provenance.intensity.find(preset), std::string::npos);
  }
}

TEST(View, MrPercentileClippingMatchesNumpy) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  const Series series = only_series(test::sample_folder("mr"));
  const size_t index = 12;
  View view = view_of_instance(series, index, 1, RenderOptions{});
  const std::string script =
      "import sys, numpy as np, pydicom\n"
      "x = pydicom.dcmread(sys.argv[1]).pixel_array.astype(np.float64)\n"
      "lo, hi = np.percentile(x[x > 0], 0.5), np.percentile(x[x > 0], 99.5)\n"
      "x = np.clip(x, lo, hi)\n"
      "x = (x - x.min()) / (x.max() - x.min()) * 255.0\n"
      "open(sys.argv[2], 'wb').write(x.astype(np.uint8).tobytes())\n";
  const int worst = max_difference(view, python_bytes(script, series.instances[index].source()));
  std::cout << "MR percentile view: max abs difference vs numpy " << worst << "\n";
  EXPECT_EQ(worst, 0);
  EXPECT_NE(view.provenance.intensity.find("percentile"), std::string::npos);

  RenderOptions volume_scope;
  volume_scope.mr_scope = RenderOptions::PercentileScope::Volume;
  View steady = view_of_instance(series, index, 1, volume_scope);
  EXPECT_NE(steady.provenance.intensity.find("over the whole stack"), std::string::npos);
}

TEST(View, Monochrome1RadiographUsesItsVoiAndIsInverted) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  const Series series = only_series(test::sample_folder("xray"));
  View view = view_of_instance(series, 0, 1, RenderOptions{});
  // pydicom's own VOI implementation (output in the stored range), scaled to 8 bits, inverted.
  const std::string script =
      "import sys, numpy as np, pydicom\n"
      "from pydicom.pixel_data_handlers.util import apply_voi_lut\n"
      "ds = pydicom.dcmread(sys.argv[1])\n"
      "y = apply_voi_lut(ds.pixel_array, ds).astype(np.float64)\n"
      "y = np.round(y * 255.0 / (2 ** ds.BitsStored - 1))\n"
      "open(sys.argv[2], 'wb').write((255 - y).astype(np.uint8).tobytes())\n";
  const int worst = max_difference(view, python_bytes(script, series.instances[0].source()));
  std::cout << "DX MONOCHROME1 view: max abs difference vs pydicom apply_voi_lut " << worst << "\n";
  EXPECT_LE(worst, 1);  // pydicom rounds in the 12-bit range, we in the 8-bit one
  EXPECT_NE(view.provenance.intensity.find("MONOCHROME1 inverted"), std::string::npos);
  // What a reader sees: lungs dark, heart bright.
  const samples::Phantom phantom = samples::make_chest_xray();
  double lung = 0, heart = 0;
  size_t nl = 0, nh = 0;
  for (size_t i = 0; i < phantom.labels.size(); ++i) {
    if (phantom.labels[i] == phantom.label_of("left lung")) lung += view.image.rgb[3 * i], ++nl;
    if (phantom.labels[i] == phantom.label_of("heart")) heart += view.image.rgb[3 * i], ++nh;
  }
  EXPECT_LT(lung / double(nl) + 60, heart / double(nh));
}

TEST(View, ColourImagesAreShownAsStoredAndPaddedToASquare) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  const Series series = only_series(test::sample_folder("dermoscopy"));
  View view = view_of_instance(series, 0, 1, RenderOptions{});
  ASSERT_EQ(view.image.width, 1024);
  ASSERT_EQ(view.image.height, 1024);
  EXPECT_EQ(view.provenance.pad_top, 128);
  EXPECT_EQ(view.provenance.pad_bottom, 128);
  EXPECT_EQ(view.provenance.pad_left, 0);
  const std::string stored = python_bytes(
      "import sys, pydicom\nopen(sys.argv[2], 'wb').write(pydicom.dcmread(sys.argv[1]).pixel_array.tobytes())\n",
      series.instances[0].source());
  ASSERT_EQ(stored.size(), size_t(1024 * 768 * 3));
  size_t differences = 0;
  for (size_t i = 0; i < stored.size(); ++i) differences += view.image.rgb[128 * 1024 * 3 + i] != uint8_t(stored[i]);
  EXPECT_EQ(differences, 0u);
  for (size_t i = 0; i < 128 * 1024 * 3; ++i) ASSERT_EQ(view.image.rgb[i], 0) << "padding is black";
}

TEST(View, CineFramesWithAStride) {
  const Series series = only_series(test::sample_folder("us"));
  RenderOptions options;
  options.frame_stride = 4;
  const auto requests = plan_views(series, options);
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].frame_number, 1);
  EXPECT_EQ(requests[3].frame_number, 13);
  View view = render_view(series, requests[1], options);
  EXPECT_EQ(view.provenance.frame_number, 5);
  EXPECT_EQ(view.provenance.intensity, "8-bit values as stored");
  EXPECT_EQ(view.image.width, 640);
  EXPECT_EQ(view.provenance.pad_top, 80);
  EXPECT_EQ(plan_views(series, RenderOptions{}).size(), 16u);
}

TEST(View, MasksMapBackToTheSourceExactly) {
  const Series series = only_series(test::sample_folder("us"));
  View view = view_of_instance(series, 0, 3, RenderOptions{});
  const samples::Phantom phantom = samples::make_ultrasound_cine();
  const std::vector<uint8_t> truth = phantom.label_mask(2, phantom.label_of("cyst"));  // frame 3
  // The model answers on the padded view, possibly at another resolution (SAM2: 1024).
  GreyImage on_view{view.image.width, view.image.height,
                    std::vector<uint8_t>(size_t(view.image.width) * view.image.height)};
  for (int y = 0; y < 480; ++y)
    for (int x = 0; x < 640; ++x)
      on_view.grey[size_t(y + view.provenance.pad_top) * 640 + size_t(x)] = truth[size_t(y) * 640 + size_t(x)];
  GreyImage back = map_mask_to_source(view.provenance, on_view);
  ASSERT_EQ(back.width, 640);
  ASSERT_EQ(back.height, 480);
  EXPECT_EQ(back.grey, truth);
  for (int size : {1024, 448, 1000}) {
    GreyImage resized{size, size, std::vector<uint8_t>(size_t(size) * size)};
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        // Nearest neighbour by pixel centres (torch's "nearest-exact", PIL's NEAREST).
        resized.grey[size_t(y) * size + size_t(x)] =
            on_view.grey[size_t((2 * y + 1) * 640 / (2 * size)) * 640 + size_t((2 * x + 1) * 640 / (2 * size))];
    GreyImage mapped = map_mask_to_source(view.provenance, resized);
    size_t wrong = 0;
    for (size_t i = 0; i < truth.size(); ++i) wrong += mapped.grey[i] != truth[i];
    std::cout << "mask through " << size << "x" << size << ": " << wrong << " of " << truth.size()
              << " pixels differ\n";
    if (size >= 640) {
      EXPECT_EQ(wrong, 0u);  // upsampling by nearest neighbour is undone exactly
    } else {
      EXPECT_LT(wrong, truth.size() / 100);  // a smaller mask loses detail, not position
    }
  }
  EXPECT_THROW(map_mask_to_source(view.provenance, GreyImage{0, 0, {}}), DicomError);
}

TEST(View, PadToSquareOddDifferencePutsTheExtraPixelAfter) {
  RgbImage image{5, 2, std::vector<uint8_t>(5 * 2 * 3, 200)};
  std::array<int, 4> pad{};
  RgbImage square = pad_to_square(image, &pad);
  EXPECT_EQ(square.width, 5);
  EXPECT_EQ(square.height, 5);
  EXPECT_EQ(pad, (std::array<int, 4>{0, 1, 0, 2}));
  EXPECT_EQ(square.rgb[0], 0);
  EXPECT_EQ(square.rgb[5 * 3], 200);
  View v = view_of_raster(image, "photo.png");
  GreyImage mask{5, 5, std::vector<uint8_t>(25, 0)};
  mask.grey[1 * 5 + 3] = 1;
  GreyImage back = map_mask_to_source(v.provenance, mask);
  EXPECT_EQ(back.width, 5);
  EXPECT_EQ(back.height, 2);
  EXPECT_EQ(back.grey[3], 1);
}

TEST(View, SlideRegionsAtAChosenLevel) {
  const Series series = only_series(test::sample_folder("wsi"));
  RenderOptions options;
  options.slide_level = 0;
  options.slide_region_size = 512;
  options.slide_region_overlap = 0;
  const auto requests = plan_views(series, options);
  // 2048x1536 in 512 px regions, those over tissue (tissue_test.cpp): row 1, column 1 is.
  auto inner = std::find_if(requests.begin(), requests.end(), [](const ViewRequest& r) {
    return r.slide_region && r.slide_region->x == 512 && r.slide_region->y == 512;
  });
  ASSERT_NE(inner, requests.end());
  View view = render_view(series, *inner, options);
  ASSERT_TRUE(view.provenance.slide_region);
  const SlideRegion& region = *view.provenance.slide_region;
  EXPECT_EQ(region.x, 512);
  EXPECT_EQ(region.y, 512);
  EXPECT_EQ(region.tiles.size(), 4u);  // 256 px tiles
  EXPECT_NEAR(region.mm_per_pixel, 0.00025, 1e-9);
  const samples::Phantom phantom = samples::make_slide_tissue();
  int worst = 0;
  for (int y = 0; y < 512; ++y)
    for (int x = 0; x < 512; ++x)
      for (int c = 0; c < 3; ++c) {
        const int expected = int(std::lround(phantom.values[phantom.index(512 + x, 512 + y, 0) * 3 + size_t(c)]));
        worst =
            std::max(worst, std::abs(int(view.image.rgb[(size_t(y) * 512 + size_t(x)) * 3 + size_t(c)]) - expected));
      }
  EXPECT_EQ(worst, 0);
  EXPECT_GT(view.provenance.tissue_fraction, 0.5);
  // The default resolution (0.5 um) picks level 1.
  EXPECT_EQ(plan_views(series, RenderOptions{}).front().slide_region->level, 1);
  auto json = nlohmann::json::parse(provenance_json(view.provenance));
  EXPECT_EQ(json["slide_region"]["tiles"].size(), 4u);
  EXPECT_EQ(json["sop_instance_uid"], view.provenance.sop_instance_uid);
}

TEST(View, UnsupportedSeriesSayWhy) {
  const fs::path rtplan = test::pydicom_test_file("rtplan.dcm");
  ASSERT_FALSE(rtplan.empty()) << test::pydicom_files_missing();
  SeriesCollection c = read_series({rtplan});
  ASSERT_EQ(c.series.size(), 1u);
  try {
    plan_views(c.series.front(), RenderOptions{});
    ADD_FAILURE() << "an RT plan has no views";
  } catch (const DicomError& e) {
    EXPECT_NE(std::string(e.what()).find("radiotherapy"), std::string::npos) << e.what();
  }
  RenderOptions bad;
  bad.ct_preset = "brain";
  const Series ct = only_series(test::sample_folder("ct"));
  try {
    render_view(ct, plan_views(ct, bad).front(), bad);
    ADD_FAILURE() << "unknown preset accepted";
  } catch (const DicomError& e) {
    EXPECT_NE(std::string(e.what()).find("known: abdomen"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::dicom
