// SPDX-License-Identifier: GPL-3.0-or-later
#include "sr-writer/content_tree.h"

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmsr/dsrdoc.h>

#include "seg-writer/decimal_string.h"
#include "seg-writer/dicom_uid.h"
#include "seg-writer/source_images.h"

namespace unibiomed::sr::detail {

void check(const OFCondition& status, const std::string& what) {
  if (status.bad()) throw ReportError(what + ": " + status.text());
}

DSRCodedEntryValue coded(const CodedConcept& c) {
  return DSRCodedEntryValue(c.value.c_str(), c.scheme.c_str(), c.meaning.c_str());
}

std::size_t ContentTree::root(const CodedConcept& name) {
  const std::size_t id = tree_.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container);
  if (!id) throw ReportError("cannot create the root container of " + document_);
  check(item().setConceptName(coded(name)), "root concept name");
  return id;
}

std::size_t ContentTree::add(std::size_t parent, DSRTypes::E_RelationshipType relationship, DSRTypes::E_ValueType type,
                             const CodedConcept& name, const std::string& what) {
  if (tree_.gotoNode(parent) != parent) throw ReportError("internal: lost content item " + std::to_string(parent));
  const std::size_t id = tree_.addContentItem(relationship, type, DSRTypes::AM_belowCurrent);
  if (!id)
    throw ReportError("cannot add " + what + " (" + DSRTypes::valueTypeToReadableName(type) + ", " +
                      DSRTypes::relationshipTypeToReadableName(relationship) + ") to " + document_);
  if (!name.empty()) check(item().setConceptName(coded(name)), what + " concept name");
  return id;
}

std::size_t ContentTree::text(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                              const std::string& value, const std::string& what) {
  const std::size_t id = add(parent, relationship, DSRTypes::VT_Text, name, what);
  check(item().setStringValue(value.c_str()), what + " '" + value + "'");
  return id;
}

std::size_t ContentTree::uid(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                             const std::string& value, const std::string& what) {
  const std::size_t id = add(parent, relationship, DSRTypes::VT_UIDRef, name, what);
  check(item().setStringValue(value.c_str()), what + " '" + value + "'");
  return id;
}

std::size_t ContentTree::code(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                              const CodedConcept& value, const std::string& what) {
  const std::size_t id = add(parent, relationship, DSRTypes::VT_Code, name, what);
  check(item().setCodeValue(coded(value)),
        what + " (" + value.value + ", " + value.scheme + ", \"" + value.meaning + "\")");
  return id;
}

std::size_t ContentTree::number(std::size_t parent, const Measurement& m, const std::string& what) {
  const std::size_t id = add(parent, DSRTypes::RT_contains, DSRTypes::VT_Num, m.concept, what);
  check(item().setNumericValue(DSRNumericMeasurementValue(seg::format_ds(m.value).c_str(), coded(m.unit))), what);
  return id;
}

std::size_t ContentTree::image(std::size_t parent, DSRTypes::E_RelationshipType relationship, const CodedConcept& name,
                               const DSRImageReferenceValue& value, const std::string& what) {
  const std::size_t id = add(parent, relationship, DSRTypes::VT_Image, name, what);
  check(item().setImageReference(value, OFFalse), what);
  return id;
}

std::size_t ContentTree::composite(std::size_t parent, DSRTypes::E_RelationshipType relationship,
                                   const CodedConcept& name, const DSRCompositeReferenceValue& value,
                                   const std::string& what) {
  const std::size_t id = add(parent, relationship, DSRTypes::VT_Composite, name, what);
  check(item().setCompositeReference(value, OFFalse), what);
  return id;
}

void check_reference_uids(const DocumentReference& reference, const std::string& owner, bool study_as_is) {
  const std::pair<const char*, const std::string*> uids[] = {{"StudyInstanceUID", &reference.study_instance_uid},
                                                             {"SeriesInstanceUID", &reference.series_instance_uid},
                                                             {"SOPClassUID", &reference.sop_class_uid},
                                                             {"SOPInstanceUID", &reference.sop_instance_uid}};
  for (const auto& [name, uid] : uids) {
    const bool as_is = study_as_is && uid == &reference.study_instance_uid;
    if (uid->empty() || (!as_is && !seg::is_valid_uid(*uid)))
      throw ReportError(owner + ": " + name + " \"" + *uid + "\" is " + (uid->empty() ? "missing" : "not a UID"));
  }
}

std::string own_uid(const std::string& given, const std::string& seed, const std::string& what) {
  if (!given.empty()) return given;
  return seg::make_uid(seed.empty() ? "" : seed + "/" + what);
}

std::string algorithm_name(const seg::AlgorithmIdentity& algorithm) {
  return algorithm.name.empty() ? "UniBiomed" : algorithm.name;
}

std::string algorithm_version(const seg::AlgorithmIdentity& algorithm) {
  return algorithm.version.empty() ? "unknown" : algorithm.version;
}

void start_series(DSRDocument& document, const std::string& study_uid, const seg::AlgorithmIdentity& algorithm,
                  const std::string& description, const std::string& fallback, int series_number, int instance_number) {
  const std::string name = algorithm_name(algorithm), version = algorithm_version(algorithm);
  check(document.createNewSeriesInStudy(study_uid.c_str(), OFFalse), "starting a series in study " + study_uid);
  check(document.setSpecificCharacterSetType(DSRTypes::CS_UTF8), "character set");
  const std::string series = description.empty() ? name + " " + fallback : description;
  check(document.setSeriesDescription(series.substr(0, 64).c_str()), "Series Description");
  check(document.setSeriesNumber(std::to_string(series_number).c_str()), "Series Number");
  check(document.setInstanceNumber(std::to_string(instance_number).c_str()), "Instance Number");
  check(document.setManufacturer(name.substr(0, 64).c_str()), "Manufacturer");
  check(document.setManufacturerModelName((name + " " + version).substr(0, 64).c_str()), "Manufacturer's Model Name");
  check(document.setSoftwareVersions(version.substr(0, 64).c_str()), "Software Versions");
}

void copy_patient_and_study(DcmDataset& source, DcmDataset& target) {
  static const DcmTagKey kTakenOver[] = {DCM_PatientName,
                                         DCM_PatientID,
                                         DCM_IssuerOfPatientID,
                                         DCM_PatientBirthDate,
                                         DCM_PatientSex,
                                         DCM_StudyDate,
                                         DCM_StudyTime,
                                         DCM_StudyID,
                                         DCM_AccessionNumber,
                                         DCM_StudyDescription,
                                         DCM_ReferringPhysicianName};
  for (const DcmTagKey& tag : kTakenOver) {
    DcmElement* element = nullptr;
    if (source.findAndGetElement(tag, element).good() && element)
      check(target.insert(OFstatic_cast(DcmElement*, element->clone()), true),
            "copying " + std::string(tag.toString().c_str()));
  }
}

// At most `bytes` bytes of UTF-8 text, cut between characters (LO counts its 64 in bytes for
// validators such as dciodvfy).
std::string utf8_prefix(const std::string& text, std::size_t bytes) {
  if (text.size() <= bytes) return text;
  std::size_t cut = bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // inside a character
  return text.substr(0, cut);
}

void add_device_observer(ContentTree& content, std::size_t parent, const std::string& device_uid,
                         const std::string& device_name, const seg::AlgorithmIdentity& algorithm) {
  const std::string name = algorithm_name(algorithm);
  content.code(parent, DSRTypes::RT_hasObsContext, {"121005", "DCM", "Observer Type"}, {"121007", "DCM", "Device"},
               "observer type");
  content.uid(parent, DSRTypes::RT_hasObsContext, {"121012", "DCM", "Device Observer UID"}, device_uid,
              "device observer UID");
  content.text(parent, DSRTypes::RT_hasObsContext, {"121013", "DCM", "Device Observer Name"},
               utf8_prefix(device_name, 64), "device observer name");
  content.text(parent, DSRTypes::RT_hasObsContext, {"121014", "DCM", "Device Observer Manufacturer"}, name,
               "device observer manufacturer");
  content.text(parent, DSRTypes::RT_hasObsContext, {"121015", "DCM", "Device Observer Model Name"},
               name + " " + algorithm_version(algorithm), "device observer model name");
}

}  // namespace unibiomed::sr::detail
