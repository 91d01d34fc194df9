// What the SR writers share (the measurement report, the rejection note): DCMTK condition
// checks that throw ReportError, coded concepts as dcmsr values, a content tree built below
// explicit parents, and the patient and study attributes a result takes over from its source.
// Internal to sr-writer/.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmsr/dsrdoctr.h>
#include <dcmtk/dcmsr/dsrimgvl.h>

#include <cstddef>
#include <string>

#include "sr-writer/measurement_report.h"

class DcmDataset;
class DSRDocument;

namespace unibiomed::sr::detail {

// Throws ReportError "<what>: <DCMTK's text>" when `status` is bad.
void check(const OFCondition& status, const std::string& what);

DSRCodedEntryValue coded(const CodedConcept& c);

// Adds content items below explicit parents, so the tree's shape reads like the template.
// `document` names the document type in errors ("a Comprehensive 3D SR").
class ContentTree {
 public:
  ContentTree(DSRDocumentTree& tree, std::string document) : tree_(tree), document_(std::move(document)) {}

  std::size_t root(const CodedConcept& name);
  // Adds a child as the last below `parent`; the new item becomes current.
  std::size_t add(std::size_t parent, DSRTypes::E_RelationshipType relationship, DSRTypes::E_ValueType type,
                  const CodedConcept& name, const std::string& what);
  std::size_t text(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                   const std::string& value, const std::string& what);
  std::size_t uid(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                  const std::string& value, const std::string& what);
  std::size_t code(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                   const CodedConcept& value, const std::string& what);
  std::size_t number(std::size_t parent, const Measurement& m, const std::string& what);
  // Not checked: source UIDs are referenced as the source has them, even where they break the
  // UI rules (a leading zero, common in older archives); the writers' own UIDs are valid.
  std::size_t image(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                    const DSRImageReferenceValue& value, const std::string& what);
  std::size_t composite(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                        const DSRCompositeReferenceValue& value, const std::string& what);

  DSRContentItem& item() { return tree_.getCurrentContentItem(); }

 private:
  DSRDocumentTree& tree_;
  std::string document_;
};

// Throws ReportError "<owner>: <attribute> "<uid>" is missing" (or "is not a UID") for the first
// of the reference's four UIDs that is empty or malformed. `study_as_is`: its StudyInstanceUID
// need only be present (a study's own UID is kept as the study has it, even a legacy one with a
// leading zero).
void check_reference_uids(const DocumentReference& reference, const std::string& owner, bool study_as_is = false);

// `given`, else a UID derived from `seed` and `what` ("sr/sop"), else a random one (no seed).
std::string own_uid(const std::string& given, const std::string& seed, const std::string& what);

// The algorithm's name and version as the documents give them ("UniBiomed", "unknown" when not
// given).
std::string algorithm_name(const seg::AlgorithmIdentity& algorithm);
std::string algorithm_version(const seg::AlgorithmIdentity& algorithm);

// Starts the document's series in study `study_uid` (its UID as the study has it), in UTF-8: the
// series description (`description`, else "<algorithm name> <fallback>"), series and instance
// numbers, and the algorithm as manufacturer, model name and software version.
void start_series(DSRDocument& document, const std::string& study_uid, const seg::AlgorithmIdentity& algorithm,
                  const std::string& description, const std::string& fallback, int series_number, int instance_number);

// Copies the Patient and General Study module attributes of `source` (name, IDs, birth date,
// sex, study date and time, study ID, accession number, study description, referring physician)
// that it has into `target`, replacing what `target` had.
void copy_patient_and_study(DcmDataset& source, DcmDataset& target);

// The device observer context (TID 1002 -> TID 1004) below `parent`: observer type "Device", its
// UID, name, and the algorithm as its manufacturer and model name.
void add_device_observer(ContentTree& content, std::size_t parent, const std::string& device_uid,
                         const std::string& device_name, const seg::AlgorithmIdentity& algorithm);

}  // namespace unibiomed::sr::detail
