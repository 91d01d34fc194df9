// Modality classification. Order of the rules: objects that are not images at all (SR, SEG,
// RT, PR, waveforms...) first, then the SOP Class when it pins the modality down (mammography,
// whole-slide, ophthalmic tomography...), then Modality (0008,0060) with the checks that keep
// images the model was not trained on away (localizers, FOR PROCESSING radiographs, colour
// screenshots of greyscale modalities), then descriptions for OT/SC secondary captures.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/modality.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cctype>
#include <vector>

namespace unibiomed::dicom {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Non-image storage classes (PS3.4 B.5) by UID prefix, with what they are.
struct NonImageClass {
  const char* uid_prefix;
  const char* what;
};
const NonImageClass kNonImageClasses[] = {
    {"1.2.840.10008.5.1.4.1.1.88.59", "a key object selection (KO)"},
    {"1.2.840.10008.5.1.4.1.1.88.", "a structured report (SR)"},
    {"1.2.840.10008.5.1.4.1.1.66.4", "a segmentation (SEG)"},
    {"1.2.840.10008.5.1.4.1.1.66.5", "a surface segmentation"},
    {"1.2.840.10008.5.1.4.1.1.66.1", "a spatial registration"},
    {"1.2.840.10008.5.1.4.1.1.66.3", "a deformable registration"},
    {"1.2.840.10008.5.1.4.1.1.66.2", "spatial fiducials"},
    {"1.2.840.10008.5.1.4.1.1.66", "raw data"},
    {"1.2.840.10008.5.1.4.1.1.481.", "a radiotherapy object (RT)"},
    {"1.2.840.10008.5.1.4.1.1.11.", "a presentation state (PR)"},
    {"1.2.840.10008.5.1.4.1.1.9.", "a waveform (ECG, haemodynamics, audio...)"},
    {"1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document (PDF, CDA, STL...)"},
    {"1.2.840.10008.5.1.4.1.1.30", "a parametric map"},
    {"1.2.840.10008.5.1.4.1.1.68.", "a surface scan"},
    {"1.2.840.10008.5.1.4.1.1.67", "a real-world value mapping"},
    {"1.2.840.10008.5.1.4.1.1.91.", "a microscopy bulk simple annotation"},
    {"1.2.840.10008.5.1.4.1.1.200.", "a CT/XA defined procedure protocol"},
    {"1.2.840.10008.5.1.4.38.", "a hanging protocol"},
    {"1.2.840.10008.5.1.4.39.", "a colour palette"},
    {"1.2.840.10008.1.3.10", "a media storage directory (DICOMDIR)"},
};

// Modality (0008,0060) values of non-image objects or of images outside the model's ten
// (PS3.3 C.7.3.1.1.1), with the reason given to the user.
struct UnsupportedModality {
  const char* modality;
  const char* reason;
};
const UnsupportedModality kUnsupportedModalities[] = {
    {"SR", "a structured report, not an image"},
    {"SEG", "a segmentation, not an image"},
    {"RTSTRUCT", "a radiotherapy structure set, not an image"},
    {"RTPLAN", "a radiotherapy plan, not an image"},
    {"RTDOSE", "a radiotherapy dose grid, not an anatomical image"},
    {"RTRECORD", "a radiotherapy record, not an image"},
    {"RTIMAGE", "a radiotherapy portal image: not one of the model's modalities"},
    {"PR", "a presentation state, not an image"},
    {"KO", "a key object selection, not an image"},
    {"REG", "a registration, not an image"},
    {"FID", "fiducials, not an image"},
    {"DOC", "a document, not an image"},
    {"ECG", "a waveform (ECG), not an image"},
    {"HD", "a haemodynamic waveform, not an image"},
    {"EPS", "a cardiac electrophysiology waveform, not an image"},
    {"AU", "audio, not an image"},
    {"PLAN", "a plan, not an image"},
    {"PT", "PET is not one of the model's modalities"},
    {"NM", "nuclear medicine is not one of the model's modalities"},
    {"XA", "X-ray angiography is not one of the model's modalities (it reads projection radiographs)"},
    {"RF", "fluoroscopy is not one of the model's modalities (it reads projection radiographs)"},
    {"BMD", "bone densitometry is not one of the model's modalities"},
    {"IVOCT", "intravascular OCT is not the retinal OCT the model was trained on"},
    {"IVUS", "intravascular ultrasound is not one of the model's modalities"},
    {"SMR", "stereometric data, not an image"},
    {"OPM", "ophthalmic mapping, not an image"},
    {"OPV", "visual fields, not an image"},
    {"OAM", "ophthalmic axial measurements, not an image"},
    {"LEN", "lensometry, not an image"},
    {"KER", "keratometry, not an image"},
};

ModalityClass supported(ModelModality m, std::string basis) {
  return ModalityClass{m, std::move(basis), {}};
}
ModalityClass unsupported(std::string basis, std::string reason) {
  return ModalityClass{std::nullopt, std::move(basis), std::move(reason)};
}

bool has_image_type(const Instance& instance, const std::string& value) {
  for (const auto& v : instance.image_type())
    if (v == value) return true;
  return false;
}

// OT/SC and other generic images: the descriptions may still say what the picture is.
std::optional<ModelModality> guess_from_text(const std::string& text) {
  struct Rule {
    std::vector<std::string> words;
    ModelModality modality;
  };
  static const std::vector<Rule> rules = {
      {{"dermoscop", "dermatoscop"}, ModelModality::Dermoscopy},
      {{"fundus", "retina photo", "fundoscop"}, ModelModality::Fundus},
      {{"optical coherence", " oct", "oct "}, ModelModality::OCT},
      {{"endoscop", "colonoscop", "gastroscop", "polyp"}, ModelModality::Endoscopy},
      {{"histolog", "patholog", "whole slide", "h&e"}, ModelModality::Pathology},
      {{"mammo"}, ModelModality::Mammography},
      {{"ultrasound", "sonograph", "echograph"}, ModelModality::Ultrasound},
      {{"x-ray", "xray", "radiograph", "chest pa", "chest ap"}, ModelModality::XRay},
  };
  const std::string t = " " + lower(text) + " ";
  for (const auto& r : rules)
    for (const auto& w : r.words)
      if (t.find(w) != std::string::npos) return r.modality;
  return std::nullopt;
}

}  // namespace

std::string modality_name(ModelModality m) {
  switch (m) {
    case ModelModality::CT:
      return "CT";
    case ModelModality::MRI:
      return "MRI";
    case ModelModality::XRay:
      return "X-ray";
    case ModelModality::Ultrasound:
      return "Ultrasound";
    case ModelModality::Pathology:
      return "Pathology";
    case ModelModality::Endoscopy:
      return "Endoscopy";
    case ModelModality::Fundus:
      return "Fundus";
    case ModelModality::Dermoscopy:
      return "Dermoscopy";
    case ModelModality::OCT:
      return "OCT";
    case ModelModality::Mammography:
      return "Mammography";
  }
  return "?";
}

std::optional<ModelModality> modality_from_name(const std::string& name) {
  const std::string n = lower(name);
  if (n == "ct") return ModelModality::CT;
  if (n == "mri" || n == "mr") return ModelModality::MRI;
  if (n == "x-ray" || n == "xray" || n == "cr" || n == "dx") return ModelModality::XRay;
  if (n == "ultrasound" || n == "us") return ModelModality::Ultrasound;
  if (n == "pathology" || n == "histopathology" || n == "sm") return ModelModality::Pathology;
  if (n == "endoscopy" || n == "es") return ModelModality::Endoscopy;
  if (n == "fundus" || n == "op") return ModelModality::Fundus;
  if (n == "dermoscopy" || n == "dms" || n == "xc") return ModelModality::Dermoscopy;
  if (n == "oct" || n == "opt") return ModelModality::OCT;
  if (n == "mammography" || n == "mg") return ModelModality::Mammography;
  return std::nullopt;
}

bool is_greyscale_modality(ModelModality m) {
  switch (m) {
    case ModelModality::CT:
    case ModelModality::MRI:
    case ModelModality::XRay:
    case ModelModality::Ultrasound:
    case ModelModality::OCT:
    case ModelModality::Mammography:
      return true;
    default:
      return false;
  }
}

std::string sop_class_name(const std::string& uid) {
  const char* name = dcmFindNameOfUID(uid.c_str(), nullptr);
  return name ? std::string(name) : uid;
}

std::optional<ModalityClass> classify_without_pixels(const std::string& sop, const std::string& modality) {
  for (const auto& c : kNonImageClasses) {
    if (starts_with(sop, c.uid_prefix))
      return unsupported("SOP Class " + sop_class_name(sop), std::string("the series is ") + c.what + ", not an image");
  }
  for (const auto& u : kUnsupportedModalities) {
    if (modality == u.modality) return unsupported("Modality " + modality, u.reason);
  }
  return std::nullopt;
}

ModalityClass classify_modality(const Instance& instance) {
  const std::string& sop = instance.sop_class_uid();
  const std::string modality = instance.series().modality;
  const std::string sop_basis = "SOP Class " + sop_class_name(sop);

  if (auto known = classify_without_pixels(sop, modality)) return *known;
  if (!instance.pixels().has_pixel_data) {
    return unsupported(sop_basis, "the instances carry no Pixel Data (7FE0,0010): not an image");
  }

  // SOP classes that name the modality regardless of the Modality attribute (PS3.4 B.5).
  if (sop == "1.2.840.10008.5.1.4.1.1.1.2" || sop == "1.2.840.10008.5.1.4.1.1.1.2.1" ||
      sop == "1.2.840.10008.5.1.4.1.1.13.1.3") {
    if (instance.attribute_text("PresentationIntentType") == "FOR PROCESSING")
      return unsupported(sop_basis, "a FOR PROCESSING mammogram (raw detector data, not meant for display)");
    return supported(ModelModality::Mammography, sop_basis);
  }
  if (sop == "1.2.840.10008.5.1.4.1.1.77.1.6" || sop == "1.2.840.10008.5.1.4.1.1.77.1.2" ||
      sop == "1.2.840.10008.5.1.4.1.1.77.1.3") {
    if (instance.slide() && (instance.slide()->image_flavor == "LABEL" || instance.slide()->image_flavor == "OVERVIEW"))
      return unsupported(sop_basis, "a slide " + instance.slide()->image_flavor + " image (not tissue)");
    return supported(ModelModality::Pathology, sop_basis);
  }
  if (sop == "1.2.840.10008.5.1.4.1.1.77.1.5.4") return supported(ModelModality::OCT, sop_basis);
  if (sop == "1.2.840.10008.5.1.4.1.1.77.1.1" || sop == "1.2.840.10008.5.1.4.1.1.77.1.1.1")
    return supported(ModelModality::Endoscopy, sop_basis);

  const bool colour =
      instance.pixels().samples_per_pixel == 3 || instance.pixels().photometric_interpretation == "PALETTE COLOR";
  const std::string basis = "Modality " + (modality.empty() ? std::string("(absent)") : modality);
  auto greyscale_only = [&](ModelModality m) -> ModalityClass {
    if (colour)
      return unsupported(basis, "a colour image (" + instance.pixels().photometric_interpretation + ") in a " +
                                    modality_name(m) + " series: a screenshot or rendering, not an acquired image");
    return supported(m, basis);
  };

  // A projection through the volume (a MIP of an angiography, say, whose ImageType ends with
  // PROJECTION IMAGE) is a rendering, not a cut through the anatomy the model was trained on.
  const std::string projection =
      "a projection image (ImageType PROJECTION IMAGE: a MIP or other rendering "
      "through the volume), not a slice";
  if (modality == "CT") {
    if (has_image_type(instance, "LOCALIZER")) return unsupported(basis, "a CT localizer (scout) image, not a slice");
    if (has_image_type(instance, "PROJECTION IMAGE")) return unsupported(basis, projection);
    return greyscale_only(ModelModality::CT);
  }
  if (modality == "MR") {
    if (has_image_type(instance, "LOCALIZER")) return unsupported(basis, "an MR localizer image");
    if (has_image_type(instance, "PROJECTION IMAGE")) return unsupported(basis, projection);
    return greyscale_only(ModelModality::MRI);
  }
  if (modality == "CR" || modality == "DX" || modality == "RG" || modality == "PX" || modality == "IO" ||
      modality == "DR") {
    if (instance.attribute_text("PresentationIntentType") == "FOR PROCESSING")
      return unsupported(basis, "a FOR PROCESSING radiograph (raw detector data, not meant for display)");
    return greyscale_only(ModelModality::XRay);
  }
  if (modality == "MG") {
    if (instance.attribute_text("PresentationIntentType") == "FOR PROCESSING")
      return unsupported(basis, "a FOR PROCESSING mammogram (raw detector data, not meant for display)");
    return greyscale_only(ModelModality::Mammography);
  }
  if (modality == "US") return supported(ModelModality::Ultrasound, basis);
  if (modality == "ES") return supported(ModelModality::Endoscopy, basis);
  if (modality == "OP") return supported(ModelModality::Fundus, basis);
  if (modality == "OPT") return supported(ModelModality::OCT, basis);
  if (modality == "SM" || modality == "GM") return supported(ModelModality::Pathology, basis);
  if (modality == "DMS") return supported(ModelModality::Dermoscopy, basis);
  if (modality == "XC") {
    // External-camera photography: the model's one photographic skin modality is dermoscopy.
    if (!colour) return unsupported(basis, "a greyscale external photograph; dermoscopy images are colour");
    return supported(ModelModality::Dermoscopy, basis + " (external photograph read as dermoscopy)");
  }
  if (modality == "OT" || modality == "SC" || modality.empty() || sop == "1.2.840.10008.5.1.4.1.1.7" ||
      starts_with(sop, "1.2.840.10008.5.1.4.1.1.7.")) {
    const std::string text = instance.series().series_description + " " + instance.study().study_description + " " +
                             instance.series().body_part_examined + " " + instance.attribute_text("ProtocolName");
    if (auto guessed = guess_from_text(text))
      return supported(*guessed,
                       basis + ", " + sop_basis + ", described as \"" + instance.series().series_description + "\"");
    return unsupported(basis + ", " + sop_basis,
                       "a secondary capture / other image whose descriptions do not say which modality it shows");
  }
  return unsupported(basis, "modality " + modality + " is not one of the model's ten");
}

}  // namespace unibiomed::dicom
