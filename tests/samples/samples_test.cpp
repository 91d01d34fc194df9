// The sample studies: valid for dciodvfy (zero errors), readable by pydicom with the values of
// their phantoms and the geometry they claim, deterministic, one synthetic patient per study,
// and the same through the `unibiomed samples write` command.
// SPDX-License-Identifier: GPL-3.0-or-later
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "dicom/slide.h"
#include "dicom/tissue.h"
#include "samples/phantom.h"
#include "samples/sample_studies.h"
#include "tests/dicom/dicom_test_support.h"
#include "tests/support/validators.h"

namespace unibiomed::samples {
namespace {

namespace fs = std::filesystem;

// All samples, written once for the suite.
const std::vector<SampleSeries>& all_samples() {
  static test::TempDir dir("samples");
  static const std::vector<SampleSeries> written = write_samples(dir / "out");
  return written;
}

const SampleSeries& sample(const std::string& name) {
  for (const auto& s : all_samples())
    if (s.name == name) return s;
  throw std::runtime_error("no sample " + name);
}

TEST(Samples, EveryStudyIsWrittenWithItsManifest) {
  const auto& written = all_samples();
  ASSERT_EQ(written.size(), sample_names().size());
  std::set<std::string> patients, studies;
  for (const auto& s : written) {
    patients.insert(s.patient_id);
    studies.insert(s.study_instance_uid);
    EXPECT_EQ(s.patient_name.rfind("Synthetic^", 0), 0u) << s.patient_name;  // clearly synthetic
    EXPECT_FALSE(s.files.empty());
    EXPECT_LE(s.study_instance_uid.size(), 64u);
  }
  EXPECT_EQ(patients.size(), written.size());  // one patient per study
  EXPECT_EQ(studies.size(), written.size());
  EXPECT_EQ(sample("ct").files.size(), 64u);
  EXPECT_EQ(sample("wsi").files.size(), 3u);
  auto manifest = nlohmann::json::parse(test::read_file(sample("ct").folder.parent_path() / "manifest.json"));
  ASSERT_EQ(manifest.size(), written.size());
  EXPECT_EQ(manifest[0]["name"], "ct");
  EXPECT_EQ(manifest[0]["files"].size(), 64u);
  EXPECT_EQ(manifest[0]["ground_truth_labels"][8], "liver lesion");
}

TEST(Samples, DciodvfyFindsNoErrors) {
  for (const auto& s : all_samples()) {
    std::vector<fs::path> files = {s.files.front(), s.files.back()};
    for (const auto& f : files) {
      SCOPED_TRACE(f.string());
      std::string output;
      const auto errors = test::dciodvfy_errors(f, &output);
      EXPECT_TRUE(errors.empty()) << errors.front() << "\n" << output;
    }
  }
}

TEST(Samples, PydicomReadsThePhantomValuesAndTheGeometry) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  test::TempDir dir("samples-py");
  // Every CT slice: position, spacing, HU of slice 30 as int16; plus identity of each series.
  std::string script =
      "import sys, json, numpy as np, pydicom\n"
      "out = {}\n"
      "files = sys.argv[2:]\n"
      "ct = [pydicom.dcmread(f) for f in files if '/ct/' in f]\n"
      "out['z'] = [float(d.ImagePositionPatient[2]) for d in ct]\n"
      "out['xy'] = [[float(d.ImagePositionPatient[0]), float(d.ImagePositionPatient[1])] for d in ct]\n"
      "out['spacing'] = [float(v) for v in ct[0].PixelSpacing]\n"
      "out['for'] = sorted(set(d.FrameOfReferenceUID for d in ct))\n"
      "hu = ct[30].pixel_array * float(ct[30].RescaleSlope) + float(ct[30].RescaleIntercept)\n"
      "hu.astype('<i2').tofile(sys.argv[1])\n"
      "out['series'] = []\n"
      "for f in files:\n"
      "    if '/ct/' in f and not f.endswith('IM0001.dcm'): continue\n"
      "    d = pydicom.dcmread(f)\n"
      "    a = d.pixel_array\n"
      "    out['series'].append({'file': f, 'modality': d.Modality, 'sop': d.SOPClassUID, 'patient': "
      "str(d.PatientName),\n"
      "                          'shape': list(a.shape)})\n"
      "print(json.dumps(out))\n";
  std::vector<std::string> argv = {test::kReferencePython, "-c", script, (dir / "hu.bin").string()};
  for (const auto& s : all_samples())
    for (const auto& f : s.files) argv.push_back(f.string());
  auto r = test::run_command(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto out = nlohmann::json::parse(r.output);

  CtAbdomenOptions options;
  options.pixel_spacing = 360.0 / 512;
  const Phantom ct = make_ct_abdomen(options);
  ASSERT_EQ(out["z"].size(), 64u);
  for (size_t k = 0; k < 64; ++k) {
    EXPECT_NEAR(out["z"][k].get<double>(), position_mm(ct, 0, 0, int(k))[2], 1e-4);
    if (k) {
      EXPECT_NEAR(out["z"][k].get<double>() - out["z"][k - 1].get<double>(), 2.5, 1e-4);
    }
    EXPECT_NEAR(out["xy"][k][0].get<double>(), -180 + 360.0 / 1024, 1e-3);
  }
  EXPECT_NEAR(out["spacing"][0].get<double>(), 360.0 / 512, 1e-6);
  EXPECT_EQ(out["for"].size(), 1u);
  const std::string hu = test::read_file(dir / "hu.bin");
  ASSERT_EQ(hu.size(), size_t(512 * 512 * 2));
  const auto* values = reinterpret_cast<const int16_t*>(hu.data());
  long worst = 0;
  for (size_t i = 0; i < size_t(512 * 512); ++i)
    worst = std::max(worst, std::labs(long(values[i]) - std::lround(ct.values[size_t(30) * 512 * 512 + i])));
  EXPECT_EQ(worst, 0) << "HU read by pydicom differ from the phantom";

  const std::map<std::string, std::pair<std::string, std::string>> expected = {
      {"ct", {"CT", "1.2.840.10008.5.1.4.1.1.2"}},
      {"mr", {"MR", "1.2.840.10008.5.1.4.1.1.4"}},
      {"xray", {"DX", "1.2.840.10008.5.1.4.1.1.1.1"}},
      {"us", {"US", "1.2.840.10008.5.1.4.1.1.3.1"}},
      {"fundus", {"OP", "1.2.840.10008.5.1.4.1.1.77.1.5.1"}},
      {"dermoscopy", {"XC", "1.2.840.10008.5.1.4.1.1.77.1.4"}},
      {"endoscopy", {"ES", "1.2.840.10008.5.1.4.1.1.77.1.1"}},
      {"wsi", {"SM", "1.2.840.10008.5.1.4.1.1.77.1.6"}},
  };
  std::set<std::string> seen;
  for (const auto& s : out["series"]) {
    const std::string file = s["file"];
    const std::string name = fs::path(file).parent_path().filename().string();
    seen.insert(name);
    ASSERT_TRUE(expected.count(name)) << file;
    EXPECT_EQ(s["modality"], expected.at(name).first) << file;
    EXPECT_EQ(s["sop"], expected.at(name).second) << file;
    EXPECT_EQ(s["patient"], sample(name).patient_name);
  }
  EXPECT_EQ(seen.size(), expected.size());
}

TEST(Samples, DeterministicBytesAndUidsFromTheRoot) {
  test::TempDir a("samples-a"), b("samples-b"), c("samples-c");
  SampleOptions options;
  options.only = {"xray", "endoscopy", "us"};
  auto first = write_samples(a / "out", options);
  auto second = write_samples(b / "out", options);
  options.uid_root = "another-root";
  auto third = write_samples(c / "out", options);
  ASSERT_EQ(first.size(), 3u);
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(test::read_file(first[i].files[0]), test::read_file(second[i].files[0])) << first[i].name;
    EXPECT_NE(first[i].study_instance_uid, third[i].study_instance_uid);
  }
  EXPECT_EQ(derived_uid("x"), derived_uid("x"));
  EXPECT_NE(derived_uid("x"), derived_uid("y"));
  EXPECT_EQ(derived_uid("x").rfind("2.25.", 0), 0u);
  EXPECT_THROW(write_samples(a / "bad", SampleOptions{{"nope"}}), SampleError);
}

TEST(Samples, PhantomGroundTruthIsUsable) {
  const Phantom mr = make_mr_brain();
  const uint8_t lesion = mr.label_of("lesion");
  ASSERT_NE(lesion, 0);
  EXPECT_GT(mr.label_voxels(lesion), 200u);
  EXPECT_EQ(mr.label_of("no such label"), 0);
  // The lesion is hyperintense on T2 compared with the white matter around it.
  double in = 0, brain = 0;
  size_t ni = 0, nb = 0;
  for (size_t i = 0; i < mr.labels.size(); ++i) {
    if (mr.labels[i] == lesion) in += mr.values[i], ++ni;
    if (mr.labels[i] == mr.label_of("brain")) brain += mr.values[i], ++nb;
  }
  EXPECT_GT(in / double(ni), brain / double(nb) + 200);
  // A mask per slice, and the half-size pyramid keeps labels.
  int slices_with_lesion = 0;
  for (int z = 0; z < mr.slices; ++z) {
    auto mask = mr.label_mask(z, lesion);
    slices_with_lesion += std::count(mask.begin(), mask.end(), 1) > 0;
  }
  EXPECT_GE(slices_with_lesion, 2);
  const Phantom photo = make_dermoscopy_photo(256, 192);
  const Phantom half = downsample_2x(photo);
  EXPECT_EQ(half.columns, 128);
  EXPECT_GT(half.label_voxels(1), photo.label_voxels(1) / 5);
  // Shapes: an ellipsoid contains its centre and not a point beyond its radius.
  Ellipsoid e{10, 20, 0, 5, 3, 2, 30, 2};
  EXPECT_TRUE(e.contains(10, 20, 0));
  EXPECT_FALSE(e.contains(10, 20, 2.5));
  Random r1(7), r2(7);
  double sum = 0, sum2 = 0;
  for (int i = 0; i < 20000; ++i) {
    const double n = r1.normal();
    EXPECT_EQ(n, r2.normal());
    sum += n, sum2 += n * n;
  }
  EXPECT_NEAR(sum / 20000, 0, 0.03);
  EXPECT_NEAR(std::sqrt(sum2 / 20000), 1, 0.03);
}

TEST(Samples, PhantomsWithoutTheirFindingDifferOnlyThere) {
  // with_finding = false: no finding label, and every pixel away from the finding (its rim and,
  // for the cyst, the posterior enhancement below it) as with the finding.
  struct Case {
    const char* name;
    Phantom with, without;
    std::vector<std::string> finding;
  };
  std::vector<Case> cases;
  cases.push_back({"chest X-ray", make_chest_xray(256, 5), make_chest_xray(256, 5, false), {"nodule"}});
  cases.push_back({"ultrasound", make_ultrasound_cine(160, 120, 2, 5), make_ultrasound_cine(160, 120, 2, 5, false), {"cyst"}});
  cases.push_back({"fundus", make_fundus_photo(256, 5), make_fundus_photo(256, 5, false), {"exudate", "haemorrhage"}});
  cases.push_back({"endoscopy", make_endoscopy_frame(180, 144, 5), make_endoscopy_frame(180, 144, 5, false), {"polyp"}});
  cases.push_back({"slide (varied layout)", make_slide_tissue(512, 384, 5, true, true),
                   make_slide_tissue(512, 384, 5, false, true), {"tumour"}});
  // The same with the anatomy drawn from the seed: the finding's numbers are drawn all the same.
  cases.push_back(
      {"chest X-ray (varied)", make_chest_xray(256, 5, true, true), make_chest_xray(256, 5, false, true), {"nodule"}});
  cases.push_back({"ultrasound (varied)",
                   make_ultrasound_cine(160, 120, 2, 5, true, true),
                   make_ultrasound_cine(160, 120, 2, 5, false, true),
                   {"cyst"}});
  cases.push_back({"fundus (varied)",
                   make_fundus_photo(256, 5, true, true),
                   make_fundus_photo(256, 5, false, true),
                   {"exudate", "haemorrhage"}});
  cases.push_back({"endoscopy (varied)",
                   make_endoscopy_frame(180, 144, 5, true, true),
                   make_endoscopy_frame(180, 144, 5, false, true),
                   {"polyp"}});
  for (const auto& c : cases) {
    size_t finding = 0, differing = 0;
    for (const auto& name : c.finding) {
      finding += c.with.label_voxels(c.with.label_of(name));
      EXPECT_EQ(c.without.label_voxels(c.without.label_of(name)), 0u) << c.name << " " << name;
    }
    EXPECT_GT(finding, 0u) << c.name;
    for (size_t i = 0; i < c.with.values.size(); ++i) differing += c.with.values[i] != c.without.values[i];
    std::cout << c.name << ": finding " << finding << " px, " << differing << " values differ\n";
    EXPECT_GT(differing, 0u) << c.name;
    // At most three times the finding's area (the rim; the cyst's enhancement), per channel.
    EXPECT_LE(differing, 3 * finding * static_cast<size_t>(c.with.channels)) << c.name;
  }
}

TEST(Samples, VariedSlideLayoutsChangeWithTheSeedAndStayPlausible) {
  // The demo checkpoint's slides: the section and its tumours are drawn from the seed. Each has
  // tissue on 15-75 % of the image, one or two tumours covering 3-60 % of the tissue and lying
  // inside it, and the tumours' centroid moves from seed to seed. The sample's fixed layout is
  // what it always was (the seed changes only its texture).
  double sum_x = 0, sum_y = 0, sum_xx = 0, sum_yy = 0;
  const int seeds = 12;
  for (int seed = 1; seed <= seeds; ++seed) {
    const Phantom p = make_slide_tissue(256, 192, uint64_t(seed) * 7919, true, true);
    const uint8_t tissue = p.label_of("tissue"), tumour = p.label_of("tumour");
    const size_t n_tumour = p.label_voxels(tumour), n_tissue = p.label_voxels(tissue) + n_tumour;
    const double area = double(p.columns) * p.rows;
    EXPECT_GT(n_tissue, 0.15 * area) << "seed " << seed;
    EXPECT_LT(n_tissue, 0.75 * area) << "seed " << seed;
    EXPECT_GT(n_tumour, 0.03 * double(n_tissue)) << "seed " << seed;
    EXPECT_LT(n_tumour, 0.60 * double(n_tissue)) << "seed " << seed;
    double cx = 0, cy = 0;
    size_t outside = 0;
    for (int y = 0; y < p.rows; ++y)
      for (int x = 0; x < p.columns; ++x)
        if (p.labels[p.index(x, y, 0)] == tumour) {
          cx += x, cy += y;
          // A tumour pixel has tissue or tumour within 2 pixels on every side (it is inside the section).
          bool edge = false;
          for (int d = -2; d <= 2; d += 4)
            edge = edge || x + d < 0 || y + d < 0 || x + d >= p.columns || y + d >= p.rows ||
                   p.labels[p.index(x + d, y, 0)] == 0 || p.labels[p.index(x, y + d, 0)] == 0;
          outside += edge;
        }
    EXPECT_LT(double(outside), 0.05 * double(n_tumour)) << "seed " << seed;
    cx /= double(n_tumour), cy /= double(n_tumour);
    sum_x += cx, sum_y += cy, sum_xx += cx * cx, sum_yy += cy * cy;
  }
  const double sd_x = std::sqrt(sum_xx / seeds - (sum_x / seeds) * (sum_x / seeds));
  const double sd_y = std::sqrt(sum_yy / seeds - (sum_y / seeds) * (sum_y / seeds));
  std::cout << "tumour centroid spread over " << seeds << " seeds: " << sd_x << " x " << sd_y << " px of 256 x 192\n";
  EXPECT_GT(sd_x, 10.0);
  EXPECT_GT(sd_y, 8.0);
  // The sample's layout does not depend on the seed: the same tumour pixels for two seeds.
  const Phantom a = make_slide_tissue(256, 192, 1), b = make_slide_tissue(256, 192, 2);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.values, b.values);
}

// ---- Anatomy variation --------------------------------------------------------------------

// One label's voxel count and centroid (pixels), and how many of its voxels have, within
// `distance` pixels in-plane (left, right, up, down or off the image), a voxel of one of `others`.
struct LabelStats {
  size_t voxels = 0;
  double x = 0, y = 0, z = 0;
};

LabelStats label_stats(const Phantom& p, uint8_t label) {
  LabelStats s;
  for (int z = 0; z < p.slices; ++z)
    for (int y = 0; y < p.rows; ++y)
      for (int x = 0; x < p.columns; ++x)
        if (p.labels[p.index(x, y, z)] == label) ++s.voxels, s.x += x, s.y += y, s.z += z;
  if (s.voxels) s.x /= double(s.voxels), s.y /= double(s.voxels), s.z /= double(s.voxels);
  return s;
}

size_t near_labels(const Phantom& p, uint8_t label, const std::set<uint8_t>& others, int distance,
                   bool off_image_counts = true) {
  size_t count = 0;
  for (int z = 0; z < p.slices; ++z)
    for (int y = 0; y < p.rows; ++y)
      for (int x = 0; x < p.columns; ++x) {
        if (p.labels[p.index(x, y, z)] != label) continue;
        bool near = false;
        for (const auto& d : {std::array<int, 2>{distance, 0}, {-distance, 0}, {0, distance}, {0, -distance}}) {
          const int xx = x + d[0], yy = y + d[1];
          if (xx < 0 || yy < 0 || xx >= p.columns || yy >= p.rows) {
            near = near || off_image_counts;
          } else {
            near = near || others.count(p.labels[p.index(xx, yy, z)]) > 0;
          }
        }
        count += near;
      }
  return count;
}

// The number of 6-connected pieces of one label.
size_t components(const Phantom& p, uint8_t label) {
  std::vector<uint8_t> seen(p.labels.size(), 0);
  size_t count = 0;
  for (size_t start = 0; start < p.labels.size(); ++start) {
    if (p.labels[start] != label || seen[start]) continue;
    ++count;
    std::vector<size_t> stack{start};
    seen[start] = 1;
    while (!stack.empty()) {
      const size_t i = stack.back();
      stack.pop_back();
      const int x = int(i % size_t(p.columns)), y = int(i / size_t(p.columns) % size_t(p.rows)),
                z = int(i / (size_t(p.columns) * size_t(p.rows)));
      for (const auto& d : {std::array<int, 3>{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}}) {
        const int xx = x + d[0], yy = y + d[1], zz = z + d[2];
        if (xx < 0 || yy < 0 || zz < 0 || xx >= p.columns || yy >= p.rows || zz >= p.slices) continue;
        const size_t j = p.index(xx, yy, zz);
        if (p.labels[j] == label && !seen[j]) seen[j] = 1, stack.push_back(j);
      }
    }
  }
  return count;
}

// The spread (standard deviation) of a list of numbers.
double spread(const std::vector<double>& v) {
  double sum = 0, sum2 = 0;
  for (double x : v) sum += x, sum2 += x * x;
  const double mean = sum / double(v.size());
  return std::sqrt(std::max(0.0, sum2 / double(v.size()) - mean * mean));
}

CtAbdomenOptions small_ct(uint64_t seed, bool vary) {
  CtAbdomenOptions o;
  o.size = 96;
  o.slices = 24;
  o.pixel_spacing = 0.7 * 512 / 96;
  o.slice_spacing = 6.5;
  o.seed = seed;
  o.vary_anatomy = vary;
  return o;
}

TEST(Samples, CtAnatomyVariesWithTheSeedAndStaysPlausible) {
  // Each seed: every organ present with 0.5-2 times the template's volume (the lesions 0.25-4) and
  // inside the body (no background next to it), the pancreas away from the solid organs, the
  // lesions (one or two) inside the liver; the liver's centroid and volume, and the body's, move
  // with the seed.
  const Phantom templ = make_ct_abdomen(small_ct(1, false));
  const std::vector<std::string> organs{"liver", "spleen",       "left kidney", "right kidney", "vertebra",
                                        "aorta", "liver lesion", "gallbladder", "stomach",      "pancreas"};
  std::vector<double> liver_x, liver_y, liver_volume, body_volume;
  std::set<size_t> lesion_counts;
  for (int seed = 1; seed <= 8; ++seed) {
    const Phantom p = make_ct_abdomen(small_ct(uint64_t(seed) * 7919, true));
    ASSERT_EQ(p.label_names, templ.label_names);
    for (const auto& name : organs) {
      const uint8_t label = p.label_of(name);
      const double ratio = double(p.label_voxels(label)) / double(templ.label_voxels(label));
      EXPECT_GT(ratio, name == "liver lesion" ? 0.25 : 0.5) << name << " seed " << seed;
      EXPECT_LT(ratio, name == "liver lesion" ? 4.0 : 2.0) << name << " seed " << seed;
      EXPECT_EQ(near_labels(p, label, {0}, 1), 0u) << name << " reaches outside the body, seed " << seed;
    }
    const uint8_t liver = p.label_of("liver"), lesion = p.label_of("liver lesion"), pancreas = p.label_of("pancreas");
    std::set<uint8_t> not_liver;
    for (uint8_t l = 0; l < p.label_names.size(); ++l)
      if (l != liver && l != lesion) not_liver.insert(l);
    EXPECT_EQ(near_labels(p, lesion, not_liver, 1), 0u) << "lesion outside the liver, seed " << seed;
    const std::set<uint8_t> solid{liver,
                                  p.label_of("spleen"),
                                  p.label_of("left kidney"),
                                  p.label_of("right kidney"),
                                  p.label_of("stomach"),
                                  p.label_of("gallbladder"),
                                  p.label_of("aorta"),
                                  lesion};
    EXPECT_LT(double(near_labels(p, pancreas, solid, 1)), 0.1 * double(p.label_voxels(pancreas))) << "seed " << seed;
    lesion_counts.insert(components(p, lesion));
    const LabelStats l = label_stats(p, liver);
    liver_x.push_back(l.x), liver_y.push_back(l.y), liver_volume.push_back(double(l.voxels));
    body_volume.push_back(double(p.label_voxels(1)));
  }
  std::cout << "CT liver centroid spread " << spread(liver_x) << " x " << spread(liver_y) << " px, volume "
            << spread(liver_volume) << " voxels, body " << spread(body_volume) << " voxels\n";
  EXPECT_EQ(lesion_counts, (std::set<size_t>{1, 2})) << "one or two lesions";
  EXPECT_GT(spread(liver_x) + spread(liver_y), 0.3);
  EXPECT_GT(spread(liver_volume), 0.03 * double(templ.label_voxels(templ.label_of("liver"))));
  EXPECT_GT(spread(body_volume), 0.03 * double(templ.label_voxels(1)));
  // Without the flag the anatomy is the template's whatever the seed (only the noise differs).
  const Phantom other = make_ct_abdomen(small_ct(2, false));
  EXPECT_EQ(templ.labels, other.labels);
  EXPECT_NE(templ.values, other.values);
}

TEST(Samples, CtPancreasAtTheTrainingSize) {
  // As training/synthetic.cpp draws the CT: 192 pixels of 1.87 mm, 24 slices 6.5 mm apart. The
  // pancreas is the last label, on a contiguous run of slices (not all of them) with at least 60
  // pixels on each, inside the body, away from the solid organs, and brighter than the fat round
  // it and darker than the liver, both on the template and on drawn anatomies.
  for (uint64_t seed : {uint64_t(20240601), uint64_t(11), uint64_t(12), uint64_t(13)}) {
    CtAbdomenOptions o = small_ct(seed, seed != 20240601);
    o.size = 192;
    o.pixel_spacing = 0.7 * 512 / 192;
    const Phantom p = make_ct_abdomen(o);
    const uint8_t pancreas = p.label_of("pancreas");
    ASSERT_EQ(pancreas, p.label_names.size() - 1);
    EXPECT_EQ(p.label_of("stomach"), 10);
    int first = -1, last = -1, slices_with = 0;
    size_t fewest = SIZE_MAX;
    for (int z = 0; z < p.slices; ++z) {
      const auto mask = p.label_mask(z, pancreas);
      const size_t n = size_t(std::count(mask.begin(), mask.end(), 1));
      if (!n) continue;
      if (first < 0) first = z;
      last = z;
      ++slices_with;
      fewest = std::min(fewest, n);
    }
    std::cout << "seed " << seed << ": pancreas on slices " << first << "-" << last << ", at least " << fewest
              << " px a slice, " << p.label_voxels(pancreas) << " voxels\n";
    ASSERT_GE(first, 0) << seed;
    EXPECT_EQ(last - first + 1, slices_with) << "not contiguous, seed " << seed;
    EXPECT_GE(slices_with, 3) << seed;
    EXPECT_LE(slices_with, p.slices / 2) << seed;
    EXPECT_GE(fewest, 60u) << seed;
    EXPECT_EQ(near_labels(p, pancreas, {0}, 2), 0u) << seed;
    const std::set<uint8_t> solid{p.label_of("liver"),        p.label_of("spleen"),      p.label_of("left kidney"),
                                  p.label_of("right kidney"), p.label_of("stomach"),     p.label_of("gallbladder"),
                                  p.label_of("aorta"),        p.label_of("liver lesion")};
    EXPECT_LT(double(near_labels(p, pancreas, solid, 1)), 0.1 * double(p.label_voxels(pancreas))) << seed;
    // Mean HU: the pancreas, the liver, and the fat (body voxels under -50 HU) within 4 pixels of it.
    double sum_p = 0, sum_l = 0, sum_f = 0;
    size_t n_p = 0, n_l = 0, n_f = 0;
    for (int z = 0; z < p.slices; ++z)
      for (int y = 4; y < p.rows - 4; ++y)
        for (int x = 4; x < p.columns - 4; ++x) {
          const size_t i = p.index(x, y, z);
          if (p.labels[i] == pancreas) sum_p += p.values[i], ++n_p;
          if (p.labels[i] == p.label_of("liver")) sum_l += p.values[i], ++n_l;
          if (p.labels[i] != 1 || p.values[i] > -50) continue;
          bool next_to_pancreas = false;
          for (int d = -4; d <= 4; d += 8)
            next_to_pancreas = next_to_pancreas || p.labels[p.index(x + d, y, z)] == pancreas ||
                               p.labels[p.index(x, y + d, z)] == pancreas;
          if (next_to_pancreas) sum_f += p.values[i], ++n_f;
        }
    ASSERT_GT(n_f, 0u);
    const double mean_p = sum_p / double(n_p), mean_l = sum_l / double(n_l), mean_f = sum_f / double(n_f);
    std::cout << "  mean HU: pancreas " << mean_p << ", liver " << mean_l << ", fat round it " << mean_f << "\n";
    EXPECT_NEAR(mean_p, 48, 3) << seed;
    EXPECT_GT(mean_l - mean_p, 6) << seed;
    EXPECT_GT(mean_p - mean_f, 100) << seed;
  }
}

TEST(Samples, MrAnatomyVariesWithTheSeedAndStaysPlausible) {
  auto make = [](uint64_t seed, bool vary) {
    MrBrainOptions o;
    o.size = 64;
    o.pixel_spacing = 0.9375 * 256 / 64;
    o.slices = 24;
    o.slice_spacing = 6;
    o.seed = seed;
    o.vary_anatomy = vary;
    return make_mr_brain(o);
  };
  const Phantom templ = make(1, false);
  std::vector<double> ventricle_y, ventricle_volume, brain_volume;
  for (int seed = 1; seed <= 8; ++seed) {
    const Phantom p = make(uint64_t(seed) * 7919, true);
    const uint8_t brain = p.label_of("brain"), ventricles = p.label_of("ventricles"), lesion = p.label_of("lesion");
    for (uint8_t label : {brain, ventricles, lesion}) {
      const double ratio = double(p.label_voxels(label)) / double(templ.label_voxels(label));
      EXPECT_GT(ratio, label == lesion ? 0.25 : 0.5) << p.label_names[label] << " seed " << seed;
      EXPECT_LT(ratio, label == lesion ? 4.0 : 1.9) << p.label_names[label] << " seed " << seed;
    }
    // Ventricles and lesions within the brain; a lesion touches neither the ventricles nor the edge.
    EXPECT_EQ(near_labels(p, ventricles, {0}, 1), 0u) << seed;
    EXPECT_EQ(near_labels(p, lesion, {0, ventricles}, 1), 0u) << seed;
    const LabelStats v = label_stats(p, ventricles);
    ventricle_y.push_back(v.y), ventricle_volume.push_back(double(v.voxels));
    brain_volume.push_back(double(p.label_voxels(brain)));
  }
  std::cout << "MR ventricles' centroid spread " << spread(ventricle_y) << " px, volume " << spread(ventricle_volume)
            << ", brain " << spread(brain_volume) << " voxels\n";
  EXPECT_GT(spread(ventricle_volume), 0.05 * double(templ.label_voxels(templ.label_of("ventricles"))));
  EXPECT_GT(spread(brain_volume), 0.02 * double(templ.label_voxels(templ.label_of("brain"))));
  EXPECT_EQ(templ.labels, make(2, false).labels);
}

TEST(Samples, PhotoAndProjectionAnatomyVariesWithTheSeedAndStaysPlausible) {
  // Per phantom: the label followed from seed to seed, where its pixels must stay (a predicate on
  // the pixel), and the finding's container where there is one.
  struct Case {
    const char* name;
    std::function<Phantom(uint64_t, bool)> make;
    std::string followed;
    std::function<bool(const Phantom&, int, int)> in_field;  // where every labelled pixel lies
    std::string finding, container;                          // the finding lies in its container
    bool same_labels_without_variation;
  };
  auto centred = [](const Phantom& p, int x, int y) {
    return std::array<double, 2>{x + 0.5 - p.columns / 2.0, y + 0.5 - p.rows / 2.0};
  };
  std::vector<Case> cases;
  cases.push_back({"chest X-ray", [](uint64_t s, bool v) { return make_chest_xray(192, s, true, v); }, "right lung",
                   [](const Phantom& p, int x, int y) { return x > 2 && y > 2 && x < p.columns - 3 && y < p.rows - 3; },
                   "nodule", "right lung", true});
  cases.push_back({"ultrasound", [](uint64_t s, bool v) { return make_ultrasound_cine(160, 120, 1, s, true, v); },
                   "cyst",
                   [](const Phantom& p, int x, int y) {
                     // The sector (apex above the image), 3 pixels in, and below the capsule's band.
                     const double dx = x - p.columns / 2.0, dy = y + 20.0;
                     const double r = std::hypot(dx, dy), a = std::fabs(std::atan2(dx, dy));
                     return r < p.rows * 0.95 - 3 && a < 38 * 3.14159265 / 180 - 3 / r && y > p.rows * 0.2;
                   },
                   "", "", true});
  cases.push_back({"fundus", [](uint64_t s, bool v) { return make_fundus_photo(192, s, true, v); }, "optic disc",
                   [&](const Phantom& p, int x, int y) {
                     const auto c = centred(p, x, y);
                     return std::hypot(c[0], c[1]) < 480 * p.columns / 1024.0;
                   },
                   "", "", false});
  cases.push_back({"dermoscopy", [](uint64_t s, bool v) { return make_dermoscopy_photo(192, 144, s, v); }, "lesion",
                   [&](const Phantom& p, int x, int y) {
                     const auto c = centred(p, x, y);
                     return std::hypot(c[0], c[1]) < 372 * p.rows / 768.0 - 3;
                   },
                   "", "", true});
  cases.push_back({"endoscopy", [](uint64_t s, bool v) { return make_endoscopy_frame(180, 144, s, true, v); }, "polyp",
                   [&](const Phantom& p, int x, int y) {
                     const auto c = centred(p, x, y);
                     return std::fabs(c[0]) + std::fabs(c[1]) < 0.62 * (p.columns + p.rows) * 0.5 - 2 &&
                            std::fabs(c[0]) < p.columns * 0.46 - 2;
                   },
                   "", "", true});
  for (const auto& c : cases) {
    const Phantom templ = c.make(1, false);
    const uint8_t followed = templ.label_of(c.followed);
    ASSERT_NE(followed, 0) << c.name;
    std::vector<double> xs, ys, areas;
    for (int seed = 1; seed <= 8; ++seed) {
      const Phantom p = c.make(uint64_t(seed) * 7919, true);
      size_t outside = 0;
      for (int y = 0; y < p.rows; ++y)
        for (int x = 0; x < p.columns; ++x)
          if (p.labels[p.index(x, y, 0)] && !c.in_field(p, x, y)) ++outside;
      EXPECT_EQ(outside, 0u) << c.name << " seed " << seed;
      const LabelStats s = label_stats(p, followed);
      const double ratio = double(s.voxels) / double(templ.label_voxels(followed));
      EXPECT_GT(ratio, 0.55) << c.name << " seed " << seed;
      EXPECT_LT(ratio, 1.8) << c.name << " seed " << seed;
      xs.push_back(s.x), ys.push_back(s.y), areas.push_back(double(s.voxels));
      if (!c.finding.empty()) {
        const uint8_t finding = p.label_of(c.finding), container = p.label_of(c.container);
        std::set<uint8_t> others;
        for (uint8_t l = 0; l < p.label_names.size(); ++l)
          if (l != finding && l != container) others.insert(l);
        EXPECT_GT(p.label_voxels(finding), 0u) << c.name << " seed " << seed;
        EXPECT_EQ(near_labels(p, finding, others, 2), 0u) << c.name << " seed " << seed;
      }
    }
    std::cout << c.name << ": " << c.followed << " centroid spread " << spread(xs) << " x " << spread(ys)
              << " px, area " << spread(areas) << " px\n";
    EXPECT_GT(spread(xs) + spread(ys), 1.0) << c.name;
    EXPECT_GT(spread(areas), 0.03 * double(templ.label_voxels(followed))) << c.name;
    if (c.same_labels_without_variation) {
      EXPECT_EQ(templ.labels, c.make(2, false).labels) << c.name;
    }
  }
  // The lungs keep apart (the heart lies over both, as on a radiograph).
  for (int seed = 1; seed <= 8; ++seed) {
    const Phantom p = make_chest_xray(192, uint64_t(seed) * 7919, true, true);
    EXPECT_EQ(near_labels(p, p.label_of("left lung"), {p.label_of("right lung")}, 1, false), 0u) << seed;
  }
}

TEST(Samples, CommandLineWritesTheSameStudies) {
  ASSERT_TRUE(fs::exists(test::cli_path())) << test::cli_missing_reason();
  test::TempDir dir("samples-cli");
  auto r = test::run_command(
      {test::cli_path().string(), "samples", "write", (dir / "out").string(), "--only", "endoscopy", "--only", "xray"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("xray: 1 file"), std::string::npos) << r.output;
  EXPECT_EQ(test::read_file(dir / "out" / "xray" / "IM0001.dcm"), test::read_file(sample("xray").files[0]));
  auto bad = test::run_command({test::cli_path().string(), "samples", "write", (dir / "x").string(), "--only", "pet"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("unknown sample 'pet'"), std::string::npos) << bad.output;
  auto usage = test::run_command({test::cli_path().string(), "samples", "write"});
  EXPECT_EQ(usage.exit_code, 2);
}

}  // namespace
}  // namespace unibiomed::samples

namespace unibiomed::samples {
namespace {

// The large slide of `--slide-size`: generated tile by tile, TILED_SPARSE levels down to 2048
// pixels or less, readable as a pyramid, tissue on about 5 % of it. (dciodvfy 2023 counts the
// frames of a TILED_SPARSE level as if it were TILED_FULL and reports the missing ones.)
TEST(Samples, LargeSlideIsSparseTiledAndMostlyGlass) {
  test::TempDir dir("large-slide");
  SampleOptions options;
  options.only = {"wsi"};
  options.wsi_slide_size = 4500;
  const auto written = write_samples(dir.path(), options);
  ASSERT_EQ(written.size(), 1u);
  ASSERT_EQ(written[0].files.size(), 3u);  // 4500, 2250 and 1125 (the first at or under 2048)
  const dicom::SeriesCollection c = dicom::read_series({written[0].folder});
  ASSERT_EQ(c.series.size(), 1u);
  const dicom::SlidePyramid pyramid(c.series.front());
  ASSERT_EQ(pyramid.levels().size(), 3u);
  EXPECT_EQ(pyramid.levels()[2].total_columns, 1125);
  EXPECT_EQ(pyramid.levels()[0].total_columns, 4500);
  EXPECT_EQ(pyramid.levels()[1].total_columns, 2250);
  EXPECT_EQ(pyramid.levels()[0].dimension_organization, "TILED_SPARSE");
  EXPECT_NEAR(pyramid.levels()[1].mm_per_pixel_x, 0.0005, 1e-12);
  const size_t all_tiles = size_t((4500 + 255) / 256) * size_t((4500 + 255) / 256);
  EXPECT_LT(pyramid.levels()[0].tiles.size(), all_tiles / 4) << "only the tiles near the section";
  const dicom::TissueMap map = dicom::detect_tissue(pyramid);
  const double fraction = double(map.tissue_cells()) / double(map.tissue.size());
  EXPECT_GT(fraction, 0.03);
  EXPECT_LT(fraction, 0.08);
}

}  // namespace
}  // namespace unibiomed::samples
