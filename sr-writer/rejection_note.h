// Writes a rejection note of IHE Imaging Object Change Management (IOCM): a Key Object Selection
// Document (PS3.3 A.59, PS3.16 TID 2010) whose title says why the instances it lists are
// withdrawn, by default (113001, DCM, "Rejected for Quality Reasons"). The node writes one when a
// new analysis replaces the SEGs and SR of an earlier one. An archive that supports IOCM hides or
// deletes the listed instances once it receives the note; any other keeps it as a document of
// the study that names the withdrawn results.
//
// Layout: the root container (the title, template 2010), the node as device observer, a Key
// Object Description (113012, DCM) when one is given, and one reference per rejected instance
// (IMAGE for an image such as a SEG, COMPOSITE for anything else such as an SR); every rejected
// instance is also in the Current Requested Procedure Evidence Sequence.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <string>
#include <vector>

#include "sr-writer/measurement_report.h"

class DcmDataset;

namespace unibiomed::sr {

struct RejectionNoteOptions {
  // CID 7011 (Rejected for Quality Reasons, Rejected for Patient Safety Reasons, Incorrect
  // Modality Worklist Entry, Data Retention Policy Expired); IOCM archives act on the code.
  CodedConcept title{"113001", "DCM", "Rejected for Quality Reasons"};
  std::string description;                     // Key Object Description; none when empty
  seg::AlgorithmIdentity algorithm;            // manufacturer, model and software version
  std::string device_name = "UniBiomed node";  // the observer device
  std::string device_uid;                      // default derived from device_name
  std::string series_description;              // default "<algorithm name> rejection note"
  int series_number = 9900;
  int instance_number = 1;
  std::string sop_instance_uid;  // default derived from uid_seed
  std::string series_instance_uid;
  std::string uid_seed;
};

// `study` gives the patient and study attributes (one of the rejected instances, or any instance
// of the study); every rejected instance must belong to its study. Throws ReportError naming the
// culprit: no instance to reject, a missing or malformed UID, an instance listed twice, one of
// another study, the note itself among them, a title that is not a complete code.
WrittenReport write_rejection_note(DcmDataset& study, const std::vector<DocumentReference>& rejected,
                                   const RejectionNoteOptions& options = {});

}  // namespace unibiomed::sr
