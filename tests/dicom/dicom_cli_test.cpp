// `unibiomed dicom render`: PNG views with provenance JSON per series, an index, and the
// usage errors.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "dicom/raster_file.h"
#include "tests/dicom/sample_fixture.h"

namespace unibiomed::dicom {
namespace {

TEST(DicomCli, RenderWritesViewsWithProvenance) {
  ASSERT_TRUE(std::filesystem::exists(test::cli_path())) << test::cli_missing_reason();
  test::TempDir dir("render");
  auto r = test::run_command({test::cli_path().string(), "dicom", "render", test::sample_folder("us").string(),
                              test::sample_folder("mr").string(), "-o", (dir / "out").string(), "--stride", "8",
                              "--max-views", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto index = nlohmann::json::parse(test::read_file(dir / "out" / "index.json"));
  ASSERT_EQ(index.size(), 2u);
  size_t views = 0;
  for (const auto& series : index) {
    for (const auto& png : series["views"]) {
      ++views;
      const auto path = dir / "out" / png.get<std::string>();
      RgbImage image = read_raster_rgb(path);
      EXPECT_EQ(image.width, image.height) << path;  // padded to a square
      auto provenance = nlohmann::json::parse(test::read_file(std::filesystem::path(path).replace_extension(".json")));
      EXPECT_EQ(provenance["series_instance_uid"], series["series_instance_uid"]);
      EXPECT_EQ(provenance["source_columns"].get<int>() + provenance["pad_left"].get<int>() +
                    provenance["pad_right"].get<int>(),
                image.width);
    }
  }
  EXPECT_EQ(views, 2u + 3u);  // US: frames 1 and 9; MR: at most 3
  auto bad = test::run_command({test::cli_path().string(), "dicom", "render", test::sample_folder("ct").string(), "-o",
                                (dir / "x").string(), "--preset", "brain"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("unknown CT window preset 'brain'"), std::string::npos) << bad.output;
  auto no_out = test::run_command({test::cli_path().string(), "dicom", "render", test::sample_folder("ct").string()});
  EXPECT_EQ(no_out.exit_code, 2);
}

}  // namespace
}  // namespace unibiomed::dicom
