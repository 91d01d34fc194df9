// The IOCM rejection note (Key Object Selection Document, TID 2010) on real readers: dciodvfy and
// pixelmed's DicomSRValidator find no error, dsrdump reads its tree, and the attributes an IOCM
// archive acts on (the title code, the references, the evidence) name exactly the rejected
// instances. Bad input is refused naming the instance at fault.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "sr-writer/rejection_note.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <gtest/gtest.h>

#include <set>

#include "seg-writer/part10_file.h"
#include "sr-writer/measurement_report.h"
#include "tests/support/test_support.h"
#include "tests/support/validators.h"
#include "tests/writers/synthetic_series.h"

namespace unibiomed::sr {
namespace {

std::string get(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  item.findAndGetOFStringArray(tag, v);
  return v.c_str();
}

std::string code_value(DcmItem& item, const DcmTagKey& sequence) {
  DcmItem* code = nullptr;
  if (item.findAndGetSequenceItem(sequence, code, 0).bad() || !code) return "";
  return get(*code, DCM_CodeValue) + "," + get(*code, DCM_CodingSchemeDesignator) + "," + get(*code, DCM_CodeMeaning);
}

class RejectionNote : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = test::load_file(test::pydicom_test_file("CT_small.dcm"));
    ASSERT_TRUE(file_);
    DcmDataset& ct = *file_->getDataset();
    // A name in the study's Latin-1, which the note gives in UTF-8.
    ASSERT_TRUE(ct.putAndInsertString(DCM_PatientName, "M\xfcller^J\xfcrgen").good());
    study_uid_ = get(ct, DCM_StudyInstanceUID);
    // The results of an earlier analysis: an SR (its text only) and two SEGs.
    seg::SourceImages sources({&ct});
    ReportOptions options;
    options.uid_seed = "rejection-note/run-1";
    auto sr =
        write_measurement_report({{&sources, nullptr, {}}}, {{{"121106", "DCM", "Comment"}, "No lesion."}}, options);
    ASSERT_TRUE(sr);
    rejected_ = {{study_uid_, "2.25.1001", UID_SegmentationStorage, "2.25.1002"},
                 {study_uid_, "2.25.1003", UID_SegmentationStorage, "2.25.1004"},
                 {study_uid_, sr->series_instance_uid, sr->sop_class_uid, sr->sop_instance_uid}};
    report_ = std::move(*sr);
  }

  std::unique_ptr<DcmFileFormat> file_;
  std::string study_uid_;
  std::vector<DocumentReference> rejected_;
  WrittenReport report_;
};

TEST_F(RejectionNote, ListsTheRejectedResultsUnderTheIocmTitleAndPassesTheValidators) {
  test::TempDir dir("rejection-note");
  RejectionNoteOptions options;
  options.description = "Replaced by run 2 of the analysis.";
  options.series_description = "UniBiomed rejection note (run 2)";
  options.uid_seed = "rejection-note/run-2";
  // The study's attributes come from the earlier report, as the node writes it.
  WrittenReport note = write_rejection_note(*report_.file->getDataset(), rejected_, options);
  EXPECT_EQ(note.sop_class_uid, UID_KeyObjectSelectionDocumentStorage);
  EXPECT_EQ(write_rejection_note(*report_.file->getDataset(), rejected_, options).sop_instance_uid,
            note.sop_instance_uid)
      << "the same seed gives the same note";

  const auto path = dir / "rejection.dcm";
  seg::save_part10(*note.file, path);
  std::string output;
  EXPECT_TRUE(test::dciodvfy_errors(path, &output).empty()) << "dciodvfy:\n" << output;
  EXPECT_TRUE(test::pixelmed_sr_errors(path, &output).empty()) << "pixelmed DicomSRValidator:\n" << output;
  const auto dump = test::run_command({"dsrdump", path.string()});
  EXPECT_EQ(dump.exit_code, 0) << dump.output;
  EXPECT_NE(dump.output.find("Key Object Selection Document"), std::string::npos) << dump.output;
  EXPECT_NE(dump.output.find("Rejected for Quality Reasons"), std::string::npos) << dump.output;

  // Read back as an archive reads it.
  auto read = test::load_file(path);
  ASSERT_TRUE(read);
  DcmDataset& ds = *read->getDataset();
  EXPECT_EQ(get(ds, DCM_SOPClassUID), UID_KeyObjectSelectionDocumentStorage);
  EXPECT_EQ(get(ds, DCM_SOPInstanceUID), note.sop_instance_uid);
  EXPECT_EQ(get(ds, DCM_SeriesInstanceUID), note.series_instance_uid);
  EXPECT_EQ(get(ds, DCM_Modality), "KO");
  EXPECT_EQ(get(ds, DCM_StudyInstanceUID), study_uid_);
  EXPECT_EQ(get(ds, DCM_SeriesDescription), "UniBiomed rejection note (run 2)");
  EXPECT_EQ(get(ds, DCM_SeriesNumber), "9900");
  EXPECT_EQ(get(ds, DCM_SpecificCharacterSet), "ISO_IR 192");
  EXPECT_EQ(get(ds, DCM_PatientName), "M\xc3\xbcller^J\xc3\xbcrgen");
  EXPECT_EQ(get(ds, DCM_PatientID), get(*file_->getDataset(), DCM_PatientID));
  EXPECT_EQ(get(ds, DCM_StudyDate), get(*file_->getDataset(), DCM_StudyDate));
  EXPECT_EQ(code_value(ds, DCM_ConceptNameCodeSequence), "113001,DCM,Rejected for Quality Reasons");
  DcmItem* templ = nullptr;
  ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ContentTemplateSequence, templ, 0).good());
  EXPECT_EQ(get(*templ, DCM_TemplateIdentifier), "2010");

  // The content: the device observer, the description, then one reference per rejected instance,
  // IMAGE for a SEG and COMPOSITE for the SR.
  std::vector<std::string> references;
  std::string description, observer;
  DcmItem* item = nullptr;
  for (unsigned long i = 0; ds.findAndGetSequenceItem(DCM_ContentSequence, item, i).good(); ++i) {
    const std::string type = get(*item, DCM_ValueType);
    if (type == "IMAGE" || type == "COMPOSITE") {
      EXPECT_EQ(get(*item, DCM_RelationshipType), "CONTAINS");
      DcmItem* sop = nullptr;
      ASSERT_TRUE(item->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, 0).good());
      references.push_back(type + " " + get(*sop, DCM_ReferencedSOPClassUID) + " " +
                           get(*sop, DCM_ReferencedSOPInstanceUID));
    } else if (type == "TEXT") {
      if (code_value(*item, DCM_ConceptNameCodeSequence) == "113012,DCM,Key Object Description")
        description = get(*item, DCM_TextValue);
    } else if (type == "CODE" && get(*item, DCM_RelationshipType) == "HAS OBS CONTEXT") {
      observer = code_value(*item, DCM_ConceptCodeSequence);
    }
  }
  EXPECT_EQ(observer, "121007,DCM,Device");
  EXPECT_EQ(description, options.description);
  const std::vector<std::string> expected = {std::string("IMAGE ") + UID_SegmentationStorage + " 2.25.1002",
                                             std::string("IMAGE ") + UID_SegmentationStorage + " 2.25.1004",
                                             "COMPOSITE " + report_.sop_class_uid + " " + report_.sop_instance_uid};
  EXPECT_EQ(references, expected);

  // The evidence lists the same instances, by series.
  std::set<std::string> evidence;
  DcmItem* study = nullptr;
  for (unsigned long s = 0; ds.findAndGetSequenceItem(DCM_CurrentRequestedProcedureEvidenceSequence, study, s).good();
       ++s) {
    EXPECT_EQ(get(*study, DCM_StudyInstanceUID), study_uid_);
    DcmItem* series = nullptr;
    for (unsigned long r = 0; study->findAndGetSequenceItem(DCM_ReferencedSeriesSequence, series, r).good(); ++r) {
      DcmItem* sop = nullptr;
      for (unsigned long k = 0; series->findAndGetSequenceItem(DCM_ReferencedSOPSequence, sop, k).good(); ++k)
        evidence.insert(get(*series, DCM_SeriesInstanceUID) + "/" + get(*sop, DCM_ReferencedSOPInstanceUID));
    }
  }
  EXPECT_EQ(evidence, (std::set<std::string>{"2.25.1001/2.25.1002", "2.25.1003/2.25.1004",
                                             report_.series_instance_uid + "/" + report_.sop_instance_uid}));
}

TEST_F(RejectionNote, BadInputNamesTheInstanceAtFault) {
  DcmDataset& study = *report_.file->getDataset();
  auto expect_error = [&](const std::vector<DocumentReference>& rejected, const std::string& text,
                          const RejectionNoteOptions& options = {}) {
    try {
      write_rejection_note(study, rejected, options);
      ADD_FAILURE() << "no error, expected one containing: " << text;
    } catch (const ReportError& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expect_error({}, "a rejection note needs at least one instance to reject");
  auto bad = rejected_;
  bad[1].sop_instance_uid.clear();
  expect_error(bad, "rejected instance 2: SOPInstanceUID \"\" is missing");
  bad = rejected_;
  bad[0].series_instance_uid = "2.25.01";
  expect_error(bad, "rejected instance 1: SeriesInstanceUID \"2.25.01\" is not a UID");
  bad = rejected_;
  bad[2].study_instance_uid = "1.2.3.4";
  expect_error(bad, "rejected instance 3 (" + report_.sop_instance_uid +
                        ") is of study 1.2.3.4, not of the note's study " + study_uid_);
  bad = rejected_;
  bad.push_back(rejected_[0]);
  expect_error(bad, "rejected instance 4 (2.25.1002) is listed twice");
  RejectionNoteOptions self;
  self.sop_instance_uid = "2.25.1004";
  expect_error(rejected_, "rejected instance 2 is the rejection note itself (2.25.1004)", self);
  RejectionNoteOptions untitled;
  untitled.title.meaning.clear();
  expect_error(rejected_, "the rejection note's title (113001, DCM, \"\") is not a complete code", untitled);
  DcmDataset no_study;
  try {
    write_rejection_note(no_study, rejected_);
    ADD_FAILURE() << "a study without a StudyInstanceUID was accepted";
  } catch (const ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("the rejection note's study has no StudyInstanceUID"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace unibiomed::sr
