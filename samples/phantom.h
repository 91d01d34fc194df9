// Synthetic anatomy for the sample studies: labelled phantoms (intensities in the modality's
// units plus a ground-truth label per pixel) drawn from simple shapes. Deterministic: the same
// options give the same bytes on every run (integer noise from a fixed-seed generator).
// The shape functions are public so that tests and the model-training task can draw their own.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace unibiomed::samples {

// A labelled image or volume. 2D images have slices == 1; cine has one slice per frame.
// Values are the modality's units (HU for CT, arbitrary MR/US/X-ray units, 0..255 for colour
// channels), interleaved when channels == 3; x fastest, then y, then slice.
struct Phantom {
  int columns = 0;
  int rows = 0;
  int slices = 1;
  int channels = 1;
  std::array<double, 3> spacing{1, 1, 1};  // mm: column, row, slice
  std::vector<float> values;
  std::vector<uint8_t> labels;           // columns * rows * slices, 0 = background
  std::vector<std::string> label_names;  // index = label value

  Phantom() = default;
  Phantom(int columns, int rows, int slices, int channels, std::array<double, 3> spacing);
  size_t index(int x, int y, int z) const {
    return (size_t(z) * size_t(rows) + size_t(y)) * size_t(columns) + size_t(x);
  }
  // Pixels of one label in one slice (ground truth for a segmentation).
  std::vector<uint8_t> label_mask(int slice, uint8_t label) const;
  size_t label_voxels(uint8_t label) const;
  uint8_t label_of(const std::string& name) const;  // 0 when unknown
};

// A deterministic generator (PCG32, O'Neill 2014) with integer-only "Gaussian" noise
// (Irwin-Hall sum of uniforms), identical on every platform.
class Random {
 public:
  explicit Random(uint64_t seed);
  uint32_t next();
  double uniform();             // [0, 1)
  double normal();              // mean 0, sd 1 (sum of 12 uniforms - 6)
  int integer(int lo, int hi);  // [lo, hi]

 private:
  uint64_t state_;
  uint64_t increment_;
};

// Shapes in millimetres, centred coordinates (see Phantom::position_mm); an optional rotation
// about the slice normal (degrees).
struct Ellipsoid {
  double cx = 0, cy = 0, cz = 0;
  double rx = 1, ry = 1, rz = 1;
  double angle_degrees = 0;
  double exponent = 2;  // 2 = ellipsoid; larger = boxier in-plane (superellipse)
  bool contains(double x, double y, double z) const;
};

// An irregular blob: an ellipsoid whose radius is modulated by a few harmonics of the in-plane
// angle (lesions, polyps, pigmented skin lesions).
struct Blob {
  Ellipsoid base;
  std::array<double, 4> harmonic_amplitude{};  // relative, e.g. 0.15
  std::array<double, 4> harmonic_phase{};
  bool contains(double x, double y, double z) const;
};

// Physical position (mm, origin at the volume centre) of voxel centre (x, y, z).
std::array<double, 3> position_mm(const Phantom& phantom, int x, int y, int z);

// Sets value (all channels for colour) and label inside a shape; label 0 leaves labels alone.
void fill(Phantom& phantom, const Ellipsoid& shape, float value, uint8_t label);
void fill(Phantom& phantom, const Blob& shape, float value, uint8_t label);
void fill_rgb(Phantom& phantom, const Ellipsoid& shape, std::array<float, 3> rgb, uint8_t label, float opacity = 1);
void fill_rgb(Phantom& phantom, const Blob& shape, std::array<float, 3> rgb, uint8_t label, float opacity = 1);
// A thick polyline in one slice (vessels, ribs), value blended by opacity.
void draw_polyline(Phantom& phantom, int slice, const std::vector<std::array<double, 2>>& points_mm,
                   double thickness_mm, std::array<float, 3> rgb, float opacity, uint8_t label = 0);
// Adds noise with standard deviation sigma to every value.
void add_noise(Phantom& phantom, Random& random, double sigma);

// --- The phantoms of the sample studies --------------------------------------------------
//
// Anatomy variation: the samples' anatomy is one template, whatever the seed (the seed changes the
// noise and texture). With `vary_anatomy` the seed also draws the anatomy, from a stream of its
// own (the noise and texture stay those of the seed): organ sizes (about +-7-20 %), shapes
// (aspect, a turn of a few degrees) and places (a few mm, a few % of the field), the body's size
// and fat (CT), and the finding's size, place and, where one or two fit naturally, count (CT and
// MR lesions, X-ray nodules). Every drawn anatomy keeps its organs apart and inside the body or
// field and its findings inside their organ. Without the finding a seed gives the same patient,
// the finding's numbers being drawn all the same. The demo checkpoint's training draws with it.

struct CtAbdomenOptions {
  int size = 512;  // columns = rows
  int slices = 64;
  double pixel_spacing = 0.7;  // mm
  double slice_spacing = 2.5;  // mm
  double noise_hu = 10;
  uint64_t seed = 20240601;
  // Draw the anatomy from the seed (see "Anatomy variation" above) instead of the sample's.
  bool vary_anatomy = false;
};
// Abdomen at the level of liver, spleen and kidneys, in HU: air -1000, fat -100, muscle 50,
// soft tissue 40, liver 60, spleen 45, kidneys 30 with a 55 HU cortex, vertebra 300 with a
// 900 HU cortical shell, aorta 150, pancreas 48, a hypodense liver lesion 15 HU. Slice 0 is the
// most inferior. The pancreas lies across the midline in front of the left kidney, the aorta and
// the vena cava, head right of the midline, tail towards the splenic hilum, about 30 mm high
// around the kidneys' hila. Labels: body, liver, spleen, left/right kidney, vertebra, aorta, liver
// lesion, gallbladder, stomach, pancreas (the last added last, so the others keep their ids).
Phantom make_ct_abdomen(const CtAbdomenOptions& options = {});

struct MrBrainOptions {
  int size = 256;
  int slices = 24;
  double pixel_spacing = 0.9375;
  double slice_spacing = 6;  // 5 mm slices with a 1 mm gap
  uint64_t seed = 20240602;
  bool vary_anatomy = false;  // see "Anatomy variation" above
};
// T2-weighted axial brain: CSF bright, grey matter brighter than white matter, dark skull, a
// hyperintense white-matter lesion. Labels: brain, ventricles, lesion.
Phantom make_mr_brain(const MrBrainOptions& options = {});

// Chest radiograph (PA), display brightness 0..1 (bone and heart bright, lungs dark), 0.2 mm
// pixels. Labels: left lung, right lung, heart, nodule.
// `with_finding` false (here and below) leaves the finding out and changes nothing else: the same
// patient without it, what the demo checkpoint's training shows as "no abnormality".
Phantom make_chest_xray(int size = 2048, uint64_t seed = 20240603, bool with_finding = true, bool vary_anatomy = false);

// Ultrasound cine (B-mode, 8-bit), a sector image with speckle, a liver-like texture and an
// anechoic cyst with posterior enhancement that moves with breathing. Labels: cyst.
Phantom make_ultrasound_cine(int columns = 640, int rows = 480, int frames = 16, uint64_t seed = 20240604,
                             bool with_finding = true, bool vary_anatomy = false);

// Colour photographs (RGB 0..255).
// Fundus: circular field, optic disc, macula, vessels, exudates and haemorrhages.
// Labels: optic disc, exudate, haemorrhage.
Phantom make_fundus_photo(int size = 1024, uint64_t seed = 20240605, bool with_finding = true,
                          bool vary_anatomy = false);
// Dermoscopy: skin under a round dermoscope field with an irregular pigmented lesion.
// Labels: lesion.
Phantom make_dermoscopy_photo(int columns = 1024, int rows = 768, uint64_t seed = 20240606, bool vary_anatomy = false);
// Endoscopy: colon mucosa with folds, a dark lumen and a polyp. Labels: polyp.
Phantom make_endoscopy_frame(int columns = 720, int rows = 576, uint64_t seed = 20240607, bool with_finding = true,
                             bool vary_anatomy = false);
// H&E-like tissue section on white glass, 0.25 um pixels: stroma, nuclei, a dense tumour
// region. Labels: tissue, tumour. The sample's layout is fixed (the seed changes only the
// texture); `vary_layout` draws the section's size, place and outline and one or two tumours'
// sizes and places from the seed instead (the demo checkpoint's training and held-out slides).
// Without the finding the section has no tumour and nothing else changes.
Phantom make_slide_tissue(int columns = 2048, int rows = 1536, uint64_t seed = 20240608, bool with_finding = true,
                          bool vary_layout = false);

// Halves a colour phantom (2x2 box filter; odd edges replicate), labels by majority/any.
Phantom downsample_2x(const Phantom& phantom);

}  // namespace unibiomed::samples
