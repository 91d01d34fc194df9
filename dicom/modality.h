// Which of the model's ten modalities (MODEL.md, "Modalities and input conventions") a series
// is, decided from Modality, SOP Class, ImageType, BodyPartExamined, photometric
// interpretation and descriptions; or why it is not one the model can read.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <optional>
#include <string>

#include "dicom/instance.h"

namespace unibiomed::dicom {

enum class ModelModality { CT, MRI, XRay, Ultrasound, Pathology, Endoscopy, Fundus, Dermoscopy, OCT, Mammography };

// "CT", "MRI", "X-ray", "Ultrasound", "Pathology", "Endoscopy", "Fundus", "Dermoscopy", "OCT",
// "Mammography": the words the prompts and reports use.
std::string modality_name(ModelModality modality);
// The inverse (case-insensitive; also accepts "MR", "XRAY", "US", "histopathology"...).
std::optional<ModelModality> modality_from_name(const std::string& name);
// Whether the modality is greyscale (windowed) rather than a colour photograph.
bool is_greyscale_modality(ModelModality modality);

struct ModalityClass {
  std::optional<ModelModality> modality;  // empty: not supported
  std::string basis;   // how it was decided, e.g. "Modality CR", "SOP Class VL Whole Slide Microscopy"
  std::string reason;  // when not supported: why, in words a user understands
};

// Classifies from one representative instance of a series.
ModalityClass classify_modality(const Instance& instance);

// What the SOP Class UID and the Modality alone say, before an instance is read (the Orthanc
// plugin knows both from its index): the class of an object that is certainly nothing the model
// reads (a report, a presentation state, a document, a modality outside the model's ten), with
// its reason; nullopt when the series may hold such images. classify_modality starts with it.
// Either text may be empty (unknown).
std::optional<ModalityClass> classify_without_pixels(const std::string& sop_class_uid, const std::string& modality);

// Name of a storage SOP Class UID for messages ("CT Image Storage"), or the UID.
std::string sop_class_name(const std::string& uid);

}  // namespace unibiomed::dicom
