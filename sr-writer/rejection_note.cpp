// SPDX-License-Identifier: GPL-3.0-or-later
#include "sr-writer/rejection_note.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include <set>

#include "seg-writer/dicom_uid.h"
#include "seg-writer/source_images.h"
#include "sr-writer/content_tree.h"

namespace unibiomed::sr {

using namespace detail;

WrittenReport write_rejection_note(DcmDataset& study, const std::vector<DocumentReference>& rejected,
                                   const RejectionNoteOptions& options) {
  OFString study_uid_value;
  study.findAndGetOFString(DCM_StudyInstanceUID, study_uid_value);
  const std::string study_uid = study_uid_value.c_str();
  // The study's UID is taken as the study has it (older archives have UIDs with a leading zero).
  if (study_uid.empty()) throw ReportError("the rejection note's study has no StudyInstanceUID");
  if (rejected.empty()) throw ReportError("a rejection note needs at least one instance to reject");
  const CodedConcept& title = options.title;
  if (title.value.empty() || title.scheme.empty() || title.meaning.empty())
    throw ReportError("the rejection note's title (" + title.value + ", " + title.scheme + ", \"" + title.meaning +
                      "\") is not a complete code");

  WrittenReport note;
  note.sop_class_uid = UID_KeyObjectSelectionDocumentStorage;
  note.sop_instance_uid = own_uid(options.sop_instance_uid, options.uid_seed, "ko/sop");
  note.series_instance_uid = own_uid(options.series_instance_uid, options.uid_seed, "ko/series");

  std::set<std::string> seen;
  for (std::size_t i = 0; i < rejected.size(); ++i) {
    const DocumentReference& r = rejected[i];
    const std::string owner = "rejected instance " + std::to_string(i + 1);
    check_reference_uids(r, owner, true);
    if (r.study_instance_uid != study_uid)
      throw ReportError(owner + " (" + r.sop_instance_uid + ") is of study " + r.study_instance_uid +
                        ", not of the note's study " + study_uid + ": a rejection note covers one study");
    if (r.sop_instance_uid == note.sop_instance_uid)
      throw ReportError(owner + " is the rejection note itself (" + r.sop_instance_uid + ")");
    if (!seen.insert(r.sop_instance_uid).second)
      throw ReportError(owner + " (" + r.sop_instance_uid + ") is listed twice");
  }

  DSRDocument document(DSRTypes::DT_KeyObjectSelectionDocument);
  start_series(document, study_uid, options.algorithm, options.series_description, "rejection note",
               options.series_number, options.instance_number);

  ContentTree content(document.getTree(), "a Key Object Selection Document");
  const std::size_t root = content.root(title);
  check(content.item().setTemplateIdentification("2010", "DCMR"), "template identification");
  const std::string device_uid =
      !options.device_uid.empty() ? options.device_uid : seg::make_uid("device/" + options.device_name);
  add_device_observer(content, root, device_uid, options.device_name, options.algorithm);
  if (!options.description.empty())
    content.text(root, DSRTypes::RT_contains, {"113012", "DCM", "Key Object Description"}, options.description,
                 "key object description");
  DSRSOPInstanceReferenceList& evidence = document.getCurrentRequestedProcedureEvidence();
  for (std::size_t i = 0; i < rejected.size(); ++i) {
    const DocumentReference& r = rejected[i];
    const std::string owner = "rejected instance " + std::to_string(i + 1) + " (" + r.sop_instance_uid + ")";
    // A SEG is an image (TID 1500 references its segments as IMAGE too), though DCMTK 3.6.7 does
    // not list it among the image storage classes.
    if (r.sop_class_uid == UID_SegmentationStorage || dcmIsImageStorageSOPClassUID(r.sop_class_uid.c_str()))
      content.image(root, DSRTypes::RT_contains, {},
                    DSRImageReferenceValue(r.sop_class_uid.c_str(), r.sop_instance_uid.c_str(), OFFalse), owner);
    else
      content.composite(root, DSRTypes::RT_contains, {},
                        DSRCompositeReferenceValue(r.sop_class_uid.c_str(), r.sop_instance_uid.c_str(), OFFalse),
                        owner);
    check(evidence.addItem(r.study_instance_uid.c_str(), r.series_instance_uid.c_str(), r.sop_class_uid.c_str(),
                           r.sop_instance_uid.c_str(), OFFalse),
          "evidence for " + owner);
  }

  note.file = std::make_unique<DcmFileFormat>();
  DcmDataset& dataset = *note.file->getDataset();
  check(document.write(dataset), "writing the rejection note");
  check(dataset.putAndInsertString(DCM_SOPInstanceUID, note.sop_instance_uid.c_str()), "SOP Instance UID");
  check(dataset.putAndInsertString(DCM_SeriesInstanceUID, note.series_instance_uid.c_str()), "Series Instance UID");
  // The patient and study attributes in UTF-8, like the note's own text.
  copy_patient_and_study(*seg::results_header(study).dataset, dataset);
  check(dataset.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192"), "Specific Character Set");
  return note;
}

}  // namespace unibiomed::sr
