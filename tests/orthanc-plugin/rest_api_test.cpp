// The REST routes' table and the checks of explicit requests, without Orthanc: the table is the
// one place that names a route (the README's REST table must list the same routes), and the
// messages of rejected requests name the field and what would have been accepted. The same
// behaviour through a real Orthanc is in plugin_test.cpp.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "orthanc-plugin/rest_api.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>

#include "orthanc-plugin/configuration.h"
#include "orthanc-plugin/plugin_error.h"
#include "orthanc-plugin/request_checks.h"
#include "orthanc-plugin/result_json.h"
#include "tests/support/test_support.h"

namespace unibiomed::orthanc {
namespace {

using nlohmann::json;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const PluginError& e) {
    return std::to_string(e.http_status()) + " " + e.what();
  }
  return "no error";
}

TEST(PluginRoutes, EveryRouteHasAUniqueUriMethodsAndAHandler) {
  std::set<std::string> uris;
  for (const auto& route : RestApi::kRoutes) {
    EXPECT_EQ(std::string(route.uri).rfind("/unibiomed/", 0), 0u) << route.uri;
    EXPECT_TRUE(uris.insert(route.uri).second) << route.uri << " twice";
    EXPECT_NE(route.methods, 0u) << route.uri;
    EXPECT_NE(route.handler, nullptr) << route.uri;
    // The documented path is the regex with each group written {id}.
    EXPECT_EQ(std::regex_replace(route.uri, std::regex(R"(\(\[\^/\]\+\))"), "{id}"), route.path) << route.uri;
  }
}

TEST(PluginRoutes, MethodNamesAndBits) {
  EXPECT_EQ(RestApi::method_names(RestApi::kGet), "GET");
  EXPECT_EQ(RestApi::method_names(RestApi::kPost), "POST");
  EXPECT_EQ(RestApi::method_names(RestApi::kGet | RestApi::kPost), "GET,POST");
  EXPECT_EQ(RestApi::method_bit("GET"), RestApi::kGet);
  EXPECT_EQ(RestApi::method_bit("POST"), RestApi::kPost);
  EXPECT_EQ(RestApi::method_bit("DELETE"), 0u);
}

TEST(PluginRoutes, TheReadmeListsExactlyTheseRoutes) {
  const std::string readme = test::read_file(test::source_dir() / "README.md");
  std::vector<std::string> documented;
  const std::regex row(R"(^\| `([A-Z,]+) (/unibiomed/[^`]*)` \|)");
  std::istringstream lines(readme);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, row)) documented.push_back(m[1].str() + " " + m[2].str());
  }
  std::vector<std::string> routes;
  for (const auto& route : RestApi::kRoutes) routes.push_back(RestApi::method_names(route.methods) + " " + route.path);
  EXPECT_EQ(documented, routes);
}

TEST(PluginRoutes, ANodeThatCouldNotStartAnswers503OnEveryRouteAnd405ForOtherMethods) {
  const RestApi api("UniBiomed.Threads must be an integer", "test");
  for (size_t i = 0; i < std::size(RestApi::kRoutes); ++i) {
    const auto& route = RestApi::kRoutes[i];
    const std::string method = RestApi::method_names(route.methods);
    const RestAnswer ok = api.handle(i, method, {"1.2.3"}, "");
    EXPECT_EQ(ok.status, 503) << route.uri;
    EXPECT_NE(ok.body["Error"].get<std::string>().find("UniBiomed.Threads"), std::string::npos);
    const RestAnswer wrong = api.handle(i, method == "GET" ? "POST" : "GET", {"1.2.3"}, "");
    EXPECT_EQ(wrong.status, 405) << route.uri;
    EXPECT_EQ(wrong.allow, method) << route.uri;
    EXPECT_EQ(api.handle(i, "DELETE", {"1.2.3"}, "").status, 405) << route.uri;
  }
}

TEST(RequestChecks, UnknownTasksAreNamedWithTheKnownOnes) {
  const std::vector<std::string> known = {"abnormality", "organs", "report"};
  EXPECT_NO_THROW(check_task_names({"organs", "report"}, known));
  EXPECT_EQ(error_of([&] {
              check_task_names({"organs", "foo"}, known);
            }),
            "400 Tasks[1]: unknown task \"foo\" (known: abnormality, organs, report)");
}

TEST(RequestChecks, TheDefaultRulesTaskNamesComeWithTheConfiguration) {
  const Configuration c = Configuration::parse(json::object());
  EXPECT_NE(std::find(c.task_names.begin(), c.task_names.end(), "organs"), c.task_names.end());
  EXPECT_NE(std::find(c.task_names.begin(), c.task_names.end(), "abnormality"), c.task_names.end());
  EXPECT_TRUE(std::is_sorted(c.task_names.begin(), c.task_names.end()));
}

TEST(RequestChecks, ATaskRulesFileThatDoesNotLoadIsAConfigurationError) {
  test::TempDir dir;
  test::write_file(dir / "rules.json", R"({"version": 1, "rules": [{"name": "x"}]})");
  try {
    Configuration::parse({{"UniBiomed", {{"TaskRules", (dir / "rules.json").string()}}}});
    FAIL() << "a rules file without tasks was accepted";
  } catch (const PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("UniBiomed.TaskRules: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rules.json"), std::string::npos) << e.what();
  }
  // A file that extends the defaults adds its tasks to theirs.
  test::write_file(dir / "site.json", R"({"version": 1, "extends": "defaults", "rules": [{"name": "site-ct",
      "match": {"modality": ["CT"]}, "modality_phrase": "CT",
      "tasks": [{"name": "site-liver", "family": "segmentation", "targets": ["liver"]}]}]})");
  const Configuration site = Configuration::parse({{"UniBiomed", {{"TaskRules", (dir / "site.json").string()}}}});
  EXPECT_NE(std::find(site.task_names.begin(), site.task_names.end(), "site-liver"), site.task_names.end());
  EXPECT_NE(std::find(site.task_names.begin(), site.task_names.end(), "organs"), site.task_names.end());
}

TEST(RequestChecks, ABoxMustLieInsideTheImage) {
  EXPECT_NO_THROW(check_box({0, 0, 255, 255}, {256, 256}, "Box", "instance x"));
  EXPECT_EQ(error_of([] {
              check_box({0, 0, 5000, 5000}, {256, 256}, "Box", "instance x");
            }),
            "400 Box [0, 0, 5000, 5000] does not fit instance x, which is 256 x 256 pixels (Columns x Rows): "
            "corners are pixel indices 0..255");
  EXPECT_NE(error_of([] {
              check_box({0, 0, 10, 256}, {256, 256}, "Box", "instance x");
            }).find("0..255"),
            std::string::npos);
  // A frame that is not square is seen centred in a square of its longer side.
  EXPECT_NO_THROW(check_box({0, 0, 511, 511}, {512, 256}, "Box", "instance x"));
  EXPECT_NE(error_of([] {
              check_box({0, 0, 600, 20}, {512, 256}, "Questions[0].Box", "series 1.2");
            }).find("the image centred in a 512 x 512 square"),
            std::string::npos);
}

TEST(RequestChecks, BoxesAndQuestionsAreReadNamingTheField) {
  EXPECT_EQ(error_of([] {
              box_from_json(json::array({1, 2, 3}), "Box");
            }),
            "400 Box must be [x0, y0, x1, y1] in pixels");
  EXPECT_EQ(error_of([] { box_from_json(json::array({5, 5, 1, 1}), "Box"); }), "400 Box must have x1 > x0 and y1 > y0");
  EXPECT_NE(error_of([] {
              box_from_json(json::array({0, 0, 1, 5000000000}), "Box");
            }).find("more pixels"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              request_from_json({{"Questions", {{{"Text", "x"}, {"Box", {5, 5, 1, 1}}}}}});
            }).find("Questions[0].Box"),
            std::string::npos);
}

TEST(ResultJson, AFindingOfOneSideOfAPairedOrganSaysWhichSide) {
  pipeline::Finding f;
  f.label = "Left kidney";
  f.side = "left";
  f.measurements.push_back({"Volume", 131019.4, "mm3"});
  const auto j = to_json(f);
  EXPECT_EQ(j["Label"], "Left kidney");
  EXPECT_EQ(j["Side"], "left");
  EXPECT_EQ(j["Measurements"][0]["Unit"], "mm3");
  // Any other finding has no side, and no key for it, as in summary.json.
  f.label = "Liver";
  f.side.clear();
  EXPECT_FALSE(to_json(f).contains("Side")) << to_json(f).dump();
}

}  // namespace
}  // namespace unibiomed::orthanc
