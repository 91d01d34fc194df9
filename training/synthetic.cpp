// SPDX-License-Identifier: GPL-3.0-or-later
#include "training/synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>

#include "dicom/raster_file.h"
#include "dicom/view.h"
#include "dicom/window.h"
#include "inference/key_frames.h"
#include "samples/phantom.h"

namespace unibiomed::training {

namespace {

using samples::Phantom;
using samples::Random;

constexpr double kPi = 3.14159265358979323846;

const char* const kDiseasePrompt =
    "Can we observe any signs of abnormality? Please respond with interleaved segmentation masks for the corresponding "
    "parts.";
const char* const kReportPrompt =
    "Could you describe the abnormality in this image? Please highlight the region with interleaved segmentation masks.";
const char* const kNegativeAnswer = "No, there is no sign of abnormality.";

enum class Render { kCt, kMr, kXray, kDirect };

// A structure the model is asked to segment or to name inside a box.
struct Structure {
  std::string phrase;                 // as in the question ("kidney")
  std::vector<std::string> labels;    // phantom label names that make it up
  std::string region_answer;          // answer to "What is the <region> ..." around it
};

// What one modality's examples are made of.
struct ModalitySpec {
  std::string modality;  // rules' modality phrase
  Render render = Render::kDirect;
  std::vector<Structure> structures;        // segmentation targets
  std::vector<std::string> finding_labels;  // labels of the abnormality
  std::string disease, anatomy, report, finding_region_answer;
  bool negatives = true;  // images without the finding exist
  std::function<Phantom(uint64_t seed, bool with_finding)> make;
  std::string negative_context;  // volumes: a label that makes a slice worth a "no abnormality" answer

  // CT and MR: volumes, whose "no abnormality" images are slices without the finding; the other
  // modalities' are the same phantom made without it.
  bool volume() const { return render == Render::kCt || render == Render::kMr; }
  bool clean_negatives() const { return negatives && !volume(); }
};

// The ultrasound cine at the sample's 640 x 480, whose speckle the node sees (its grain depends
// on the pixel size), halved with a box filter as the model's resize averages it.
Phantom ultrasound_cine(uint64_t seed, bool with_finding, int frames) {
  return samples::downsample_2x(samples::make_ultrasound_cine(640, 480, frames, seed, with_finding, true));
}

const std::vector<ModalitySpec>& specs() {
  static const std::vector<ModalitySpec> all = [] {
    std::vector<ModalitySpec> v;
    v.push_back({"CT", Render::kCt,
                 {{"liver", {"liver"}, "liver in abdomen CT"},
                  {"kidney", {"left kidney", "right kidney"}, "kidney in abdomen CT"},
                  {"spleen", {"spleen"}, "spleen in abdomen CT"},
                  {"pancreas", {"pancreas"}, "pancreas in abdomen CT"}},
                 {"liver lesion"}, "Liver lesion", "liver", "A hypodense lesion in the right lobe of the liver.",
                 "lesion in liver CT", true,
                 [](uint64_t seed, bool) {
                   samples::CtAbdomenOptions o;
                   o.size = 192;
                   o.slices = 24;
                   o.pixel_spacing = 0.7 * 512 / 192;
                   o.slice_spacing = 6.5;
                   o.seed = seed;
                   o.vary_anatomy = true;
                   return samples::make_ct_abdomen(o);
                 },
                 ""});
    v.push_back({"MRI", Render::kMr, {{"brain tumor", {"lesion"}, "brain tumor in brain MRI"}}, {"lesion"},
                 "Brain tumor", "brain", "A hyperintense lesion in the white matter.", "brain tumor in brain MRI", true,
                 [](uint64_t seed, bool) {
                   samples::MrBrainOptions o;
                   o.size = 160;
                   o.pixel_spacing = 0.9375 * 256 / 160;
                   o.slices = 24;
                   o.slice_spacing = 2.5;
                   o.seed = seed;
                   o.vary_anatomy = true;
                   return samples::make_mr_brain(o);
                 },
                 "brain"});
    v.push_back({"X-Ray", Render::kXray,
                 {{"lung", {"left lung", "right lung"}, "lung in chest X-Ray"}, {"heart", {"heart"}, "heart in chest X-Ray"}},
                 {"nodule"}, "Lung nodule", "lung", "A solitary nodule in the right upper lung.", "nodule in lung X-Ray",
                 true, [](uint64_t seed, bool finding) { return samples::make_chest_xray(192, seed, finding, true); }, ""});
    v.push_back({"ultrasound", Render::kDirect, {}, {"cyst"}, "Cyst", "liver",
                 "An anechoic cyst with posterior acoustic enhancement.", "cyst in liver ultrasound", true,
                 [](uint64_t seed, bool finding) { return ultrasound_cine(seed, finding, 4); },
                 ""});
    v.push_back({"fundus", Render::kDirect, {{"optic disc", {"optic disc"}, "optic disc in retina fundus"}},
                 {"exudate", "haemorrhage"}, "Diabetic retinopathy", "retina", "Exudates and haemorrhages in the retina.",
                 "lesion in retina fundus", true,
                 [](uint64_t seed, bool finding) { return samples::make_fundus_photo(192, seed, finding, true); }, ""});
    v.push_back({"dermoscopy", Render::kDirect, {{"skin lesion", {"lesion"}, "skin lesion in skin dermoscopy"}},
                 {"lesion"}, "Skin lesion", "skin", "An irregular pigmented lesion.", "skin lesion in skin dermoscopy",
                 false, [](uint64_t seed, bool) { return samples::make_dermoscopy_photo(192, 144, seed, true); }, ""});
    v.push_back({"endoscope", Render::kDirect, {{"polyp", {"polyp"}, "polyp in colon endoscope"}}, {"polyp"}, "Polyp",
                 "colon", "A polyp on the colon wall.", "polyp in colon endoscope", true,
                 [](uint64_t seed, bool finding) { return samples::make_endoscopy_frame(180, 144, seed, finding, true); }, ""});
    // Whole slides: the node asks a slide region by region at 0.5 um (the sample slide's level 1,
    // 1024 x 768, is one region), which the model sees resized to its tile; the phantom is drawn
    // at 0.25 um with a layout drawn from the seed, and halved three times (the first halving is
    // the node's own pyramid level, the next two stand in for the model's resize).
    v.push_back({"pathology", Render::kDirect,
                 {{"neoplastic cells", {"tumour"}, "neoplastic cells in tissue pathology"}}, {"tumour"}, "Tumor",
                 "tissue", "A region of densely packed, enlarged, hyperchromatic nuclei.",
                 "tumor in tissue pathology", true,
                 [](uint64_t seed, bool finding) {
                   samples::Phantom p = samples::make_slide_tissue(2048, 1536, seed, finding, true);
                   for (int k = 0; k < 3; ++k) p = samples::downsample_2x(p);
                   return p;
                 },
                 ""});
    return v;
  }();
  return all;
}

// The label values of `wanted` among a phantom's `label_names`.
std::vector<uint8_t> label_ids(const std::vector<std::string>& label_names, const std::vector<std::string>& wanted) {
  std::vector<uint8_t> ids;
  for (const auto& name : wanted) {
    const auto it = std::find(label_names.begin(), label_names.end(), name);
    if (it == label_names.end()) throw std::logic_error("synthetic data: phantom has no label '" + name + "'");
    ids.push_back(static_cast<uint8_t>(it - label_names.begin()));
  }
  return ids;
}

// 1 where `labels` holds one of the `wanted` labels.
std::vector<uint8_t> mask_of(const std::vector<uint8_t>& labels, const std::vector<std::string>& label_names,
                             const std::vector<std::string>& wanted) {
  const auto ids = label_ids(label_names, wanted);
  std::vector<uint8_t> m(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) m[i] = std::count(ids.begin(), ids.end(), labels[i]) ? 1 : 0;
  return m;
}

// One 2D image of a phantom: values in modality units (channels interleaved) and labels.
struct Slice {
  int width = 0, height = 0, channels = 1;
  std::vector<float> values;
  std::vector<uint8_t> labels;
  std::vector<std::string> label_names;
  std::shared_ptr<const std::vector<float>> volume_values;  // MR: the whole volume, for the percentile window
  std::vector<uint8_t> mask_of(const std::vector<std::string>& names) const {
    return training::mask_of(labels, label_names, names);
  }
};

size_t count(const std::vector<uint8_t>& m) { return static_cast<size_t>(std::count(m.begin(), m.end(), uint8_t{1})); }

inference::RgbImage render(const Slice& s, Render how, const std::string& ct_window) {
  dicom::GreyImage g;
  switch (how) {
    case Render::kCt:
      g = dicom::apply_ct_window(s.values, s.width, s.height, dicom::ct_window_preset(ct_window));
      break;
    case Render::kMr:
      g = dicom::apply_percentile_window(s.values, s.width, s.height, s.volume_values ? *s.volume_values : std::vector<float>{});
      break;
    case Render::kXray: {
      // The sample radiograph: stored 4095 - 3500 b, MONOCHROME1, window 2400/3000.
      std::vector<float> stored(s.values.size());
      for (size_t i = 0; i < stored.size(); ++i) stored[i] = 4095.f - 3500.f * s.values[i];
      g.width = s.width;
      g.height = s.height;
      g.grey.resize(stored.size());
      for (size_t i = 0; i < stored.size(); ++i) g.grey[i] = static_cast<uint8_t>(255 - dicom::window_linear(stored[i], 2400, 3000));
      break;
    }
    case Render::kDirect: {
      inference::RgbImage out(s.width, s.height);
      for (size_t i = 0; i < size_t(s.width) * s.height; ++i)
        for (int c = 0; c < 3; ++c) {
          const float v = s.values[i * s.channels + (s.channels == 3 ? c : 0)];
          out.rgb[i * 3 + c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
        }
      return out;
    }
  }
  dicom::RgbImage rgb = dicom::grey_to_rgb(g);
  inference::RgbImage out;
  out.width = rgb.width;
  out.height = rgb.height;
  out.rgb = std::move(rgb.rgb);
  return out;
}

// A random similarity transform about the centre (scale, rotation, shift as fractions of the
// image), drawn once per image, or once per clip so that its frames move together.
struct Warp {
  double scale = 1, angle = 0, tx = 0, ty = 0;
  static Warp draw(Random& random) {
    Warp w;
    w.scale = 0.85 + 0.3 * random.uniform();
    w.angle = (random.uniform() - 0.5) * 20 * kPi / 180;
    w.tx = (random.uniform() - 0.5) * 0.16;
    w.ty = (random.uniform() - 0.5) * 0.16;
    return w;
  }
};

// The transform applied to the image (bilinear) and the labels (nearest); outside the source
// the corner colour continues.
void warp(inference::RgbImage& image, std::vector<uint8_t>& labels, const Warp& t) {
  const int w = image.width, h = image.height;
  const double scale = t.scale, angle = t.angle, tx = t.tx * w, ty = t.ty * h;
  const double ca = std::cos(angle) / scale, sa = std::sin(angle) / scale, cx = w / 2.0, cy = h / 2.0;
  inference::RgbImage out(w, h);
  std::vector<uint8_t> out_labels(labels.size());
  const uint8_t* corner = image.rgb.data();
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double dx = x + 0.5 - cx - tx, dy = y + 0.5 - cy - ty;
      const double sx = ca * dx + sa * dy + cx - 0.5, sy = -sa * dx + ca * dy + cy - 0.5;
      uint8_t* o = out.rgb.data() + (size_t(y) * w + x) * 3;
      const int nx = static_cast<int>(std::lround(sx)), ny = static_cast<int>(std::lround(sy));
      if (nx >= 0 && ny >= 0 && nx < w && ny < h) out_labels[size_t(y) * w + x] = labels[size_t(ny) * w + nx];
      if (sx < 0 || sy < 0 || sx > w - 1 || sy > h - 1) {
        std::copy(corner, corner + 3, o);
        continue;
      }
      const int x0 = std::min(static_cast<int>(sx), w - 2 < 0 ? 0 : w - 2), y0 = std::min(static_cast<int>(sy), h - 2 < 0 ? 0 : h - 2);
      const double fx = sx - x0, fy = sy - y0;
      for (int c = 0; c < 3; ++c) {
        auto at = [&](int xx, int yy) { return double(image.rgb[(size_t(yy) * w + xx) * 3 + c]); };
        const double v = (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) + fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
        o[c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  image = std::move(out);
  labels = std::move(out_labels);
}

// A random brightness/contrast change (and colour balance for colour images), drawn once per
// image or clip.
struct Jitter {
  double gain = 1, offset = 0;
  std::array<double, 3> channel_gain{1, 1, 1};
  static Jitter draw(bool grey, Random& random) {
    Jitter j;
    j.gain = 0.9 + 0.2 * random.uniform();
    j.offset = (random.uniform() - 0.5) * 20;
    if (!grey)
      for (auto& g : j.channel_gain) g = 0.94 + 0.12 * random.uniform();
    return j;
  }
  void apply(inference::RgbImage& image) const {
    for (size_t i = 0; i < image.rgb.size(); ++i) {
      const double v = image.rgb[i] * gain * channel_gain[i % 3] + offset;
      image.rgb[i] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
    }
  }
};

// The box the node draws for a region question (pipeline draw_box: green, 2 pixels).
void draw_region_box(inference::RgbImage& image, const std::vector<uint8_t>& mask) {
  int x0 = image.width, y0 = image.height, x1 = -1, y1 = -1;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      if (mask[size_t(y) * image.width + x]) {
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
  if (x1 < 0) return;
  x0 = std::max(0, x0 - 3), y0 = std::max(0, y0 - 3);
  x1 = std::min(image.width - 1, x1 + 3), y1 = std::min(image.height - 1, y1 + 3);
  auto put = [&](int x, int y) {
    uint8_t* p = image.rgb.data() + 3 * (size_t(y) * image.width + x);
    p[0] = 0, p[1] = 255, p[2] = 0;
  };
  for (int t = 0; t < 2; ++t) {
    for (int x = x0; x <= x1; ++x) put(x, std::min(y0 + t, y1)), put(x, std::max(y1 - t, y0));
    for (int y = y0; y <= y1; ++y) put(std::min(x0 + t, x1), y), put(std::max(x1 - t, x0), y);
  }
}

// The node shows the model every view padded to a square with black (dicom::pad_to_square,
// half of the difference on each side); an image and its masks are padded the same way.
void pad_to_square(inference::RgbImage& image, const std::vector<std::vector<uint8_t>*>& masks) {
  std::array<int, 4> pad{};
  dicom::RgbImage padded = dicom::pad_to_square({image.width, image.height, image.rgb}, &pad);
  if (padded.width == image.width && padded.height == image.height) return;
  const int w = image.width, h = image.height, side = padded.width;
  for (std::vector<uint8_t>* m : masks) {
    if (m->empty()) continue;
    std::vector<uint8_t> out(size_t(side) * size_t(side), 0);
    for (int y = 0; y < h; ++y)
      std::copy(m->begin() + long(size_t(y) * size_t(w)), m->begin() + long(size_t(y + 1) * size_t(w)),
                out.begin() + long(size_t(y + pad[1]) * size_t(side) + size_t(pad[0])));
    *m = std::move(out);
  }
  image.width = padded.width;
  image.height = padded.height;
  image.rgb = std::move(padded.rgb);
}

void pad_to_square(Example& e) {
  std::vector<std::vector<uint8_t>*> masks{&e.mask, &e.finding};
  for (auto& [phrase, mask] : e.other_targets) masks.push_back(&mask);
  pad_to_square(e.image, masks);
}

}  // namespace

std::vector<Example> Example::companions() const {
  std::vector<Example> out;
  for (const auto& [phrase, mask] : other_targets) {
    Example c;
    c.modality = modality;
    c.family = family;
    c.target = phrase;
    c.question = "Please segment " + phrase + " in " + modality + ".";
    c.answer = answer;
    c.image = image;
    c.mask = mask;
    c.finding = finding;
    out.push_back(std::move(c));
  }
  return out;
}

struct SyntheticData::Pool {
  explicit Pool(uint64_t example_seed) : random(example_seed) {}
  std::vector<std::vector<Slice>> slices;  // per modality (index of specs())
  std::vector<std::vector<Slice>> clean;   // per modality: made without the finding (2D modalities)
  Random random;
};

const std::vector<std::string>& SyntheticData::modalities() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& s : specs()) n.push_back(s.modality);
    return n;
  }();
  return names;
}

namespace {

// The 2D images of a phantom worth asking about (CT and MR volumes: the slices that show a
// structure or the finding; other phantoms: all their frames).
// Slice (or frame) z of a phantom; MR slices share the volume's values for the percentile window.
Slice slice_of(const Phantom& p, int z, const std::shared_ptr<const std::vector<float>>& volume) {
  const size_t plane = size_t(p.columns) * p.rows;
  Slice s;
  s.width = p.columns;
  s.height = p.rows;
  s.channels = p.channels;
  s.values.assign(p.values.begin() + static_cast<long>(z * plane * p.channels),
                  p.values.begin() + static_cast<long>((z + 1) * plane * p.channels));
  s.labels.assign(p.labels.begin() + static_cast<long>(z * plane), p.labels.begin() + static_cast<long>((z + 1) * plane));
  s.label_names = p.label_names;
  s.volume_values = volume;
  return s;
}

std::shared_ptr<const std::vector<float>> window_volume(const Phantom& p, const ModalitySpec& spec) {
  return spec.render == Render::kMr ? std::make_shared<const std::vector<float>>(p.values) : nullptr;
}

// The seed of phantom k of modality m (an index of specs()).
uint64_t phantom_seed_of(uint64_t phantom_seed, size_t m, int k) {
  return phantom_seed * 1000003ULL + m * 101 + static_cast<uint64_t>(k);
}

void check_phantom_count(int phantoms_per_modality) {
  if (phantoms_per_modality < 1 || phantoms_per_modality > kMaxPhantomsPerModality)
    throw std::invalid_argument("synthetic data: " + std::to_string(phantoms_per_modality) +
                                " phantoms per modality; 1 to " + std::to_string(kMaxPhantomsPerModality) + " are possible");
}

void add_slices(const Phantom& p, const ModalitySpec& spec, std::vector<Slice>& out) {
  const auto volume = window_volume(p, spec);
  for (int z = 0; z < p.slices; ++z) {
    Slice s = slice_of(p, z, volume);
    bool useful = !spec.volume();
    for (const auto& st : spec.structures) useful = useful || count(s.mask_of(st.labels)) >= 40;
    useful = useful || count(s.mask_of(spec.finding_labels)) >= kVisibleFinding;
    if (!spec.negative_context.empty()) useful = useful || count(s.mask_of({spec.negative_context})) >= 400;
    if (useful) out.push_back(std::move(s));
  }
}

}  // namespace

const std::vector<std::string>& SyntheticData::families() {
  static const std::vector<std::string> names{"segmentation", "disease", "vqa", "report", "region"};
  return names;
}

SyntheticData::SyntheticData(uint64_t phantom_seed, uint64_t example_seed, int phantoms_per_modality)
    : pool_(std::make_unique<Pool>(example_seed)) {
  check_phantom_count(phantoms_per_modality);
  for (size_t m = 0; m < specs().size(); ++m) {
    const ModalitySpec& spec = specs()[m];
    std::vector<Slice> slices, clean;
    for (int k = 0; k < phantoms_per_modality; ++k) {
      const uint64_t seed = phantom_seed_of(phantom_seed, m, k);
      add_slices(spec.make(seed, true), spec, slices);
      // 2D modalities: the same patient without the finding, for the "no abnormality" answers.
      if (spec.clean_negatives()) add_slices(spec.make(seed, false), spec, clean);
    }
    if (slices.empty() || (spec.clean_negatives() && clean.empty()))
      throw std::logic_error("synthetic data: no usable image for " + spec.modality);
    pool_->slices.push_back(std::move(slices));
    pool_->clean.push_back(std::move(clean));
  }
}

SyntheticData::~SyntheticData() = default;

Example SyntheticData::next() {
  Random& r = pool_->random;
  // Modalities with several structures to tell apart (CT, X-ray) come up more often.
  size_t weight_total = 0;
  for (const auto& sp : specs()) weight_total += std::max<size_t>(1, sp.structures.size());
  int pick = r.integer(0, static_cast<int>(weight_total) - 1);
  size_t m = 0;
  while (pick >= static_cast<int>(std::max<size_t>(1, specs()[m].structures.size()))) {
    pick -= static_cast<int>(std::max<size_t>(1, specs()[m].structures.size()));
    ++m;
  }
  const ModalitySpec& spec = specs()[m];

  // Task family: segmentation and disease recognition most (the node's default questions).
  std::string family;
  const double u = r.uniform();
  if (u < 0.42)
    family = spec.structures.empty() ? "disease" : "segmentation";
  else if (u < 0.78)
    family = "disease";
  else if (u < 0.86)
    family = "vqa";
  else if (u < 0.93)
    family = "report";
  else
    family = "region";

  Example e;
  e.modality = spec.modality;
  e.family = family;
  const bool want_positive = family != "disease" || !spec.negatives || r.uniform() < 0.5;
  e.positive = want_positive;

  // Choose an image that fits the question (volumes: a slice with or without the finding).
  const Structure* structure = nullptr;
  bool region_on_finding = false;
  if (family == "segmentation")
    structure = &spec.structures[static_cast<size_t>(r.integer(0, static_cast<int>(spec.structures.size()) - 1))];
  // (No draw at share 0, so that the held-out sequence stays what it was.)
  const bool absent_target =
      family == "segmentation" && spec.volume() && absent_target_share_ > 0 && r.uniform() < absent_target_share_;
  if (family == "region") {
    const int n = static_cast<int>(spec.structures.size());
    const int k = r.integer(0, n);  // n: the finding
    if (k < n) structure = &spec.structures[static_cast<size_t>(k)];
    region_on_finding = k == n;
  }
  const bool needs_finding = (family != "segmentation" && !structure) && want_positive;
  const bool no_finding = family == "disease" && !want_positive;
  const bool needs_no_finding = no_finding && spec.volume();
  const bool clean = no_finding && spec.clean_negatives();
  const auto& slices = clean ? pool_->clean[m] : pool_->slices[m];
  Slice s;
  for (int attempt = 0;; ++attempt) {
    const Slice& c = slices[static_cast<size_t>(r.integer(0, static_cast<int>(slices.size()) - 1))];
    const size_t finding = count(c.mask_of(spec.finding_labels));
    bool ok = true;
    if (structure) {
      const size_t shown = count(c.mask_of(structure->labels));
      ok = absent_target ? shown == 0 : shown >= 40;
    }
    if (needs_finding) ok = ok && finding >= kVisibleFinding;
    if (needs_no_finding) ok = ok && finding == 0;
    if (ok || attempt > 200) {
      s = c;
      break;
    }
  }

  const std::string window = spec.render == Render::kCt ? (family == "disease" ? "liver" : "abdomen") : "";
  e.image = render(s, spec.render, window);
  std::vector<uint8_t> labels = s.labels;
  warp(e.image, labels, Warp::draw(r));
  Jitter::draw(spec.render != Render::kDirect, r).apply(e.image);
  auto warped_mask = [&](const std::vector<std::string>& wanted) { return mask_of(labels, s.label_names, wanted); };
  e.finding = warped_mask(spec.finding_labels);

  if (family == "segmentation") {
    e.target = structure->phrase;
    e.question = "Please segment " + structure->phrase + " in " + spec.modality + ".";
    e.answer = "Sure, [SEG].";
    e.mask = warped_mask(structure->labels);
    for (const auto& other : spec.structures) {
      if (&other == structure) continue;
      auto mask = warped_mask(other.labels);
      if (count(mask) >= 40) e.other_targets.emplace_back(other.phrase, std::move(mask));
    }
  } else if (family == "region") {
    const auto mask = warped_mask(region_on_finding ? spec.finding_labels : structure->labels);
    e.target = region_on_finding ? spec.disease : structure->phrase;
    draw_region_box(e.image, mask);
    e.question = "What is the <region> in the picture?";
    e.answer = region_on_finding ? spec.finding_region_answer : structure->region_answer;
  } else {
    e.target = spec.disease;
    const auto& mask = e.finding;
    if (family == "disease") {
      e.question = kDiseasePrompt;
      e.positive = count(mask) > 0;
      e.answer = e.positive ? "It is [SEG]. " + spec.disease + "." : kNegativeAnswer;
    } else if (family == "vqa") {
      e.question = "Can we observe any signs of abnormality in " + spec.anatomy +
                   "? Please respond with interleaved segmentation masks for the corresponding parts.";
      e.answer = "<p> " + spec.disease + ". </p> [SEG]";
    } else {
      e.question = kReportPrompt;
      e.answer = "<p> " + spec.disease + ". " + spec.report + " </p> [SEG]";
    }
    if (e.answer.find("[SEG]") != std::string::npos) e.mask = mask;
  }
  pad_to_square(e);
  return e;
}

// ---- Clips for the video path ----------------------------------------------------------------

namespace {

// The modalities the node reads in video mode (volumes and cine), as indices of specs().
const std::vector<size_t>& video_specs() {
  static const std::vector<size_t> v = [] {
    std::vector<size_t> out;
    for (size_t m = 0; m < specs().size(); ++m)
      if (specs()[m].volume() || specs()[m].modality == "ultrasound") out.push_back(m);
    return out;
  }();
  return v;
}

// The phantom of seed `seed` for clips: the volumes as SyntheticData draws them; the ultrasound
// cine with `cine_frames` frames (the 2D set takes 4).
Phantom video_phantom(const ModalitySpec& spec, uint64_t seed, bool with_finding, int cine_frames) {
  if (spec.volume()) return spec.make(seed, with_finding);
  return ultrasound_cine(seed, with_finding, cine_frames);
}

// Frames [start, start + count) of `p` rendered with one transform and intensity change, with
// the mask of `wanted` labels on each (empty `wanted`: no masks); padded to a square.
void render_frames(const Phantom& p, const ModalitySpec& spec, const std::string& window, int start, int count,
                   const std::vector<std::string>& wanted, const Warp& w, const Jitter& j, Clip& clip) {
  const auto volume = window_volume(p, spec);
  for (int z = start; z < start + count; ++z) {
    const Slice s = slice_of(p, z, volume);
    inference::RgbImage image = render(s, spec.render, window);
    std::vector<uint8_t> labels = s.labels;
    warp(image, labels, w);
    j.apply(image);
    std::vector<uint8_t> mask = wanted.empty() ? std::vector<uint8_t>() : mask_of(labels, s.label_names, wanted);
    pad_to_square(image, {&mask});
    clip.frames.push_back(std::move(image));
    clip.masks.push_back(std::move(mask));
  }
}

// Pixels of `wanted` on each frame of `p` from `start`, `count` frames.
std::vector<size_t> counts_per_frame(const Phantom& p, int start, int count, const std::vector<std::string>& wanted) {
  const size_t plane = size_t(p.columns) * p.rows;
  const auto ids = label_ids(p.label_names, wanted);
  std::vector<size_t> out;
  for (int z = start; z < start + count; ++z) {
    size_t n = 0;
    for (size_t i = 0; i < plane; ++i) n += std::count(ids.begin(), ids.end(), p.labels[size_t(z) * plane + i]) ? 1 : 0;
    out.push_back(n);
  }
  return out;
}

void set_question(Clip& c, const ModalitySpec& spec, const Structure* structure) {
  c.modality = spec.modality;
  if (structure) {
    c.family = "segmentation";
    c.target = structure->phrase;
    c.question = "Please segment " + structure->phrase + " in " + spec.modality + ".";
    c.answer = "Sure, [SEG].";
    return;
  }
  c.family = "disease";
  c.target = spec.disease;
  c.question = kDiseasePrompt;
  c.answer = c.positive ? "It is [SEG]. " + spec.disease + "." : kNegativeAnswer;
}

}  // namespace

struct SyntheticClips::Pool {
  explicit Pool(uint64_t example_seed) : random(example_seed) {}
  struct Source {
    size_t spec = 0;
    std::vector<Phantom> phantoms, clean;  // clean: made without the finding (ultrasound)
  };
  std::vector<Source> sources;
  Random random;
};

SyntheticClips::SyntheticClips(uint64_t phantom_seed, uint64_t example_seed, int phantoms_per_modality)
    : pool_(std::make_unique<Pool>(example_seed)) {
  check_phantom_count(phantoms_per_modality);
  for (size_t m : video_specs()) {
    const ModalitySpec& spec = specs()[m];
    Pool::Source src;
    src.spec = m;
    for (int k = 0; k < phantoms_per_modality; ++k) {
      const uint64_t seed = phantom_seed_of(phantom_seed, m, k);
      src.phantoms.push_back(video_phantom(spec, seed, true, 16));
      if (spec.clean_negatives()) src.clean.push_back(video_phantom(spec, seed, false, 16));
    }
    pool_->sources.push_back(std::move(src));
  }
}

SyntheticClips::~SyntheticClips() = default;

std::vector<std::string> SyntheticClips::targets() {
  std::vector<std::string> out;
  for (size_t m : video_specs())
    for (const Structure& st : specs()[m].structures) out.push_back(st.phrase);
  return out;
}

void SyntheticClips::set_target_weights(const std::map<std::string, double>& weights) {
  check_target_weights(weights);
  target_weights_ = weights;
}

void SyntheticClips::check_target_weights(const std::map<std::string, double>& weights) {
  const auto known = targets();
  for (const auto& [phrase, weight] : weights) {
    if (std::find(known.begin(), known.end(), phrase) == known.end()) {
      std::string names;
      for (const auto& t : known) names += (names.empty() ? "" : ", ") + t;
      throw std::invalid_argument("'" + phrase + "' is not a target of the clips (" + names + ")");
    }
    if (!(weight >= 0) || !std::isfinite(weight))
      throw std::invalid_argument("synthetic clips: the weight of '" + phrase + "' must be a finite number >= 0");
  }
  for (size_t m : video_specs()) {
    const auto& structures = specs()[m].structures;
    const bool any = structures.empty() || std::any_of(structures.begin(), structures.end(), [&](const Structure& st) {
                       const auto it = weights.find(st.phrase);
                       return it == weights.end() || it->second > 0;
                     });
    if (!any) throw std::invalid_argument("synthetic clips: every " + specs()[m].modality + " target has weight 0");
  }
}

Clip SyntheticClips::next(int frames) {
  if (frames < 1) throw std::invalid_argument("synthetic clips: a clip needs at least one frame");
  Random& r = pool_->random;
  // CT (several organs to tell apart) three times as often as MR and ultrasound.
  const int pick = r.integer(0, 4);
  const Pool::Source& src = pool_->sources[pick < 3 ? 0 : static_cast<size_t>(pick - 2) % pool_->sources.size()];
  const ModalitySpec& spec = specs()[src.spec];
  Clip c;
  const bool disease = spec.structures.empty() || r.uniform() < 0.45;
  const Structure* structure = nullptr;
  if (!disease && target_weights_.empty()) {
    structure = &spec.structures[static_cast<size_t>(r.integer(0, static_cast<int>(spec.structures.size()) - 1))];
  } else if (!disease) {
    std::vector<double> w;
    for (const Structure& st : spec.structures) {
      const auto it = target_weights_.find(st.phrase);
      w.push_back(it == target_weights_.end() ? 1.0 : it->second);
    }
    double total = 0;
    for (double x : w) total += x;  // > 0: set_target_weights refuses all-zero weights
    const double u = r.uniform() * total;
    double upto = 0;
    size_t k = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      if (w[i] <= 0) continue;
      upto += w[i];
      k = i;  // the last target with weight, should rounding leave u at the very end
      if (u < upto) break;
    }
    structure = &spec.structures[k];
  }
  const bool want_positive = !disease || !spec.negatives || r.uniform() < 0.6;
  const auto& wanted = structure ? structure->labels : spec.finding_labels;
  // One key frame to five (the node shows the language model five; a one-image question is one).
  const int key_count = r.integer(1, 5);

  const Phantom* p = nullptr;
  int start = 0, count = 0;
  for (int attempt = 0;; ++attempt) {
    const bool clean = disease && !want_positive && !src.clean.empty();
    const auto& pool = clean ? src.clean : src.phantoms;
    p = &pool[static_cast<size_t>(r.integer(0, static_cast<int>(pool.size()) - 1))];
    count = std::min(frames, p->slices);
    start = r.integer(0, p->slices - count);
    c.key_frames = inference::evenly_spaced_key_frames(count, key_count);
    const auto n = counts_per_frame(*p, start, count, wanted);
    bool ok;
    if (structure) {
      ok = std::any_of(n.begin(), n.end(), [](size_t v) { return v >= 40; });
    } else {
      bool in_keys = false;
      for (int k : c.key_frames) in_keys = in_keys || n[static_cast<size_t>(k)] >= kVisibleFinding;
      const bool none = std::all_of(n.begin(), n.end(), [](size_t v) { return v == 0; });
      c.positive = in_keys;
      ok = want_positive ? in_keys : none;
    }
    if (ok || attempt > 200) break;
  }
  set_question(c, spec, structure);
  const std::string window = spec.render == Render::kCt ? (disease ? "liver" : "abdomen") : "";
  const Warp w = Warp::draw(r);
  const Jitter j = Jitter::draw(spec.render != Render::kDirect, r);
  const bool with_masks = c.answer.find("[SEG]") != std::string::npos;
  render_frames(*p, spec, window, start, count, with_masks ? wanted : std::vector<std::string>{}, w, j, c);
  return c;
}

std::vector<Clip> SyntheticClips::whole() {
  Random& r = pool_->random;
  std::vector<Clip> out;
  for (const auto& src : pool_->sources) {
    const ModalitySpec& spec = specs()[src.spec];
    for (const Phantom& p : src.phantoms) {
      const Warp w = Warp::draw(r);
      const Jitter j = Jitter::draw(spec.render != Render::kDirect, r);
      const std::vector<int> keys = inference::evenly_spaced_key_frames(p.slices, 5);
      for (const Structure& st : spec.structures) {
        const auto n = counts_per_frame(p, 0, p.slices, st.labels);
        if (std::none_of(n.begin(), n.end(), [](size_t v) { return v >= 40; })) continue;
        Clip c;
        c.key_frames = inference::evenly_spaced_key_frames(p.slices, 5);
        set_question(c, spec, &st);
        render_frames(p, spec, spec.render == Render::kCt ? "abdomen" : "", 0, p.slices, st.labels, w, j, c);
        out.push_back(std::move(c));
      }
      // The finding, where the key frames show it (otherwise the expected answer is "no" and
      // there is no object to score).
      const auto n = counts_per_frame(p, 0, p.slices, spec.finding_labels);
      bool in_keys = false;
      for (int k : keys) in_keys = in_keys || n[static_cast<size_t>(k)] >= kVisibleFinding;
      if (!in_keys) continue;
      Clip c;
      c.key_frames = inference::evenly_spaced_key_frames(p.slices, 5);
      c.positive = true;
      set_question(c, spec, nullptr);
      render_frames(p, spec, spec.render == Render::kCt ? "liver" : "", 0, p.slices, spec.finding_labels, w, j, c);
      out.push_back(std::move(c));
    }
  }
  return out;
}

}  // namespace unibiomed::training
