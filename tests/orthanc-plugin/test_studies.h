// Small DICOM studies written with DCMTK for the plugin tests: CT series with full geometry,
// a CT instance whose pixel data is truncated (parses, cannot be decoded), and an Encapsulated
// PDF (modality DOC: no image for the model), other systems' non-image objects; and the sample
// generator's CT study.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace unibiomed::test {

struct StudySpec {
  std::string patient_id = "UNIBIOMED-TEST";
  std::string patient_name = "Test^Plugin";
  std::string study_uid;   // generated when empty
  std::string series_uid;  // generated when empty
  std::string frame_of_reference;  // CT series: generated when empty
  std::string body_part = "ABDOMEN";  // CT series: BodyPartExamined
  std::string modality = "CT";
  // Written as given (raw bytes): the text of patient_name and series_description is in this
  // Specific Character Set (0008,0005), absent when empty.
  std::string specific_character_set;
  std::string series_description;  // CT series; empty: "Abdomen test"
  int slices = 3;
  int rows = 64, columns = 64;
};

// Writes one CT series (the sample generator's abdomen phantom, samples/phantom.h, at the spec's
// size: liver, spleen, kidneys, the liver lesion) into `folder`; returns the files. Fills the
// generated UIDs into `spec`.
std::vector<std::filesystem::path> write_ct_series(const std::filesystem::path& folder, StudySpec& spec);

// A CT image whose PixelData holds fewer bytes than Rows x Columns x 2 (Orthanc stores it;
// decoding it must fail).
std::filesystem::path write_truncated_ct(const std::filesystem::path& folder, StudySpec& spec);

// An Encapsulated PDF document in the given study, with Modality `modality` (scanners of paper
// write DOC or OT).
std::filesystem::path write_pdf_document(const std::filesystem::path& folder, StudySpec& spec,
                                         const std::string& modality = "DOC");

// Objects another system adds to a study after the images, none of which the model reads: a
// Basic Text SR (a report dictated elsewhere), a Grayscale Softcopy Presentation State (a viewer's
// annotations) and an Encapsulated PDF with Modality OT (a scanned requisition: only its SOP
// class says it is no image), each in a series of its own, from another manufacturer.
std::vector<std::filesystem::path> write_other_systems_objects(const std::filesystem::path& folder, StudySpec& spec);

// A Secondary Capture (Modality OT, greyscale) whose descriptions do not say what it shows, in
// a series of its own: an image the model does not read.
std::filesystem::path write_undescribed_capture(const std::filesystem::path& folder, StudySpec& spec);

// The sample generator's CT study (`unibiomed samples write --only ct`, 4 slices of 64 x 64: the
// study the demo sends, small); fills its UIDs and patient into `spec`. Throws when the CLI fails.
std::vector<std::filesystem::path> sample_ct_study(const std::filesystem::path& folder, StudySpec& spec);

std::string new_uid();

}  // namespace unibiomed::test
