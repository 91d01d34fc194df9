// Text in UTF-8 whatever the Specific Character Set (dicom/text_encoding.h): every file of
// pydicom's character-set collection decoded as pydicom decodes it, the Japanese ISO 2022 sets
// DCMTK cannot read with iconv, and the text a declared set does not explain.
// SPDX-License-Identifier: GPL-3.0-or-later
#include "dicom/text_encoding.h"

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "dicom/instance.h"
#include "tests/dicom/dicom_edit.h"
#include "tests/dicom/dicom_test_support.h"

namespace unibiomed::dicom {
namespace {

namespace fs = std::filesystem;

const std::string kEsc = "\x1b";
const std::string kReplacement = "\xEF\xBF\xBD";

fs::path charset_files_dir() {
  return test::pydicom_test_files_dir().parent_path() / "charset_files";
}

std::string strip(const std::string& s) {
  const auto begin = s.find_first_not_of(' ');
  if (begin == std::string::npos) return {};
  return s.substr(begin, s.find_last_not_of(' ') - begin + 1);
}

bool is_text_vr(DcmEVR vr) {
  return vr == EVR_PN || vr == EVR_SH || vr == EVR_LO || vr == EVR_ST || vr == EVR_LT || vr == EVR_UT || vr == EVR_UC;
}

// Every text value of item by path, as text_reference.py names them (values stripped of spaces).
void collect(DcmItem& item, const std::string& prefix, std::map<std::string, std::string>& out,
             std::map<std::string, bool>& unknown_vr) {
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* e = item.getElement(i);
    char tag[16];
    std::snprintf(tag, sizeof tag, "(%04X,%04X)", e->getGTag(), e->getETag());
    const std::string path = prefix + tag;
    if (e->ident() == EVR_SQ) {
      auto* sq = static_cast<DcmSequenceOfItems*>(e);
      for (unsigned long k = 0; k < sq->card(); ++k)
        collect(*sq->getItem(k), path + "[" + std::to_string(k) + "]", out, unknown_vr);
      continue;
    }
    if (e->ident() == EVR_UN) unknown_vr[path] = true;
    if (!is_text_vr(e->ident()) || e->getLength() == 0) continue;
    OFString raw;
    e->getOFStringArray(raw, OFFalse);
    const std::string text(raw.c_str(), raw.length());
    std::string joined;
    if (e->ident() == EVR_ST || e->ident() == EVR_LT || e->ident() == EVR_UT) {
      joined = strip(text);
    } else {
      size_t start = 0;
      while (true) {
        const size_t end = text.find('\\', start);
        joined += (start ? "\\" : "") + strip(text.substr(start, end - start));
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    // pydicom prints a person name without its empty trailing component groups ("A^B=" as "A^B").
    if (e->ident() == EVR_PN)
      while (!joined.empty() && joined.back() == '=') joined.pop_back();
    if (!strip(joined).empty()) out[path] = joined;
  }
}

TEST(TextEncoding, EveryPydicomCharacterSetFileReadsAsPydicomReadsIt) {
  ASSERT_TRUE(test::have_reference_python()) << test::reference_python_missing();
  ASSERT_TRUE(fs::exists(charset_files_dir() / "chrH31.dcm")) << test::pydicom_files_missing();
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(charset_files_dir()))
    if (e.path().extension() == ".dcm") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 15u);
  test::TempDir dir("text");
  std::vector<std::string> argv = {test::kReferencePython, test::dicom_test_script("text_reference.py"),
                                   (dir / "reference.json").string()};
  for (const auto& f : files) argv.push_back(f.string());
  const auto r = test::run_command(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto reference = nlohmann::json::parse(test::read_file(dir / "reference.json"));

  size_t compared = 0, non_ascii = 0;
  for (const auto& f : files) {
    SCOPED_TRACE(f.filename().string());
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(f.c_str()).good());
    DcmDataset& ds = *file.getDataset();
    const std::string declared = test::get(ds, DCM_SpecificCharacterSet);
    convert_to_utf8(ds);
    EXPECT_EQ(test::get(ds, DCM_SpecificCharacterSet), "ISO_IR 192");
    std::map<std::string, std::string> ours;
    std::map<std::string, bool> unknown_vr;
    collect(ds, "", ours, unknown_vr);
    const auto& theirs = reference.at(f.string());
    for (const auto& [path, value] : theirs.items()) {
      if (unknown_vr.count(path)) continue;  // implicit VR private element: DCMTK does not know it is text
      ASSERT_TRUE(ours.count(path)) << path << " (pydicom: " << value << ")";
      EXPECT_EQ(ours[path], value.get<std::string>()) << path << " in '" << declared << "'";
      EXPECT_TRUE(is_valid_utf8(ours[path])) << path;
      ++compared;
      for (const char ch : ours[path]) non_ascii += static_cast<unsigned char>(ch) >= 0x80 ? 1 : 0;
    }
    for (const auto& [path, value] : ours)
      EXPECT_TRUE(theirs.contains(path)) << path << " = '" << value << "' which pydicom does not read as text";

    // The instance reader gives the same names (the node's summaries, logs and plans read these).
    if (ds.tagExists(DCM_PixelData) && theirs.contains("(0010,0010)")) {
      const Instance instance = Instance::read_file(f);
      std::string name = instance.study().patient_name;
      while (!name.empty() && name.back() == '=') name.pop_back();
      EXPECT_EQ(name, theirs["(0010,0010)"].get<std::string>());
    }
  }
  EXPECT_GT(compared, 100u);
  EXPECT_GT(non_ascii, 300u);  // the collection is mostly non-ASCII names
}

TEST(TextEncoding, JapaneseIso2022SetsThatDcmtkCannotReadWithIconv) {
  // PS3.5 Annex H's example, value by value: Romaji, then kanji and hiragana in JIS X 0208.
  const TextDecoder jis("\\ISO 2022 IR 87");
  EXPECT_EQ(jis.character_set(), "\\ISO 2022 IR 87");
  const std::string yamada = "Yamada^Tarou=" + kEsc + "$B;3ED" + kEsc + "(B^" + kEsc + "$BB@O:" + kEsc + "(B";
  EXPECT_EQ(jis.to_utf8(yamada, TextKind::PersonName),
            "Yamada^Tarou=\xE5\xB1\xB1\xE7\x94\xB0^\xE5\xA4\xAA\xE9\x83\x8E");
  // Value 1 ISO 2022 IR 13: 8-bit half-width katakana without any escape (G1), ESC ( J Romaji.
  const TextDecoder katakana("ISO 2022 IR 13\\ISO 2022 IR 87");
  EXPECT_EQ(katakana.to_utf8("\xD4\xCF\xC0\xDE^\xC0\xDB\xB3", TextKind::PersonName),
            "\xEF\xBE\x94\xEF\xBE\x8F\xEF\xBE\x80\xEF\xBE\x9E^\xEF\xBE\x80\xEF\xBE\x9B\xEF\xBD\xB3");
  EXPECT_EQ(katakana.to_utf8(kEsc + "(JABC"), "ABC");
  EXPECT_EQ(TextDecoder("ISO_IR 13").to_utf8("\xB1"), "\xEF\xBD\xB1");
  // JIS X 0212 (ISO 2022 IR 159): ESC $ ( D, then 0x3021 is U+4E02.
  const TextDecoder supplementary("\\ISO 2022 IR 87\\ISO 2022 IR 159");
  EXPECT_EQ(supplementary.to_utf8(kEsc + "$(D0!" + kEsc + "(B"), "\xE4\xB8\x82");
  // Half-width katakana designated to G0 (ESC ( I): 0x31 is U+FF71.
  EXPECT_EQ(katakana.to_utf8(kEsc + "(I1" + kEsc + "(B"), "\xEF\xBD\xB1");
  // A '\' inside a two-byte run is a character byte, not a delimiter: 0x5C21 is U+68D4.
  EXPECT_EQ(jis.to_utf8(kEsc + "$B\\!" + kEsc + "(B\\A"), "\xE6\xA3\x94\\A");
  // After a delimiter the text is back in value 1's set, even without an escape.
  EXPECT_EQ(jis.to_utf8(kEsc + "$B;3\rAB"), "\xE5\xB1\xB1\rAB");
  // What the sets cannot explain becomes U+FFFD, and decoding goes on.
  EXPECT_EQ(jis.to_utf8("A" + kEsc), "A" + kReplacement);                               // a lone escape
  EXPECT_EQ(jis.to_utf8(kEsc + "$B;3E" + kEsc + "(B"), "\xE5\xB1\xB1" + kReplacement);  // half a character
  EXPECT_EQ(jis.to_utf8(kEsc + "-F\xE1\xE2"), kReplacement + kReplacement);             // Greek in G1: not read here
  EXPECT_EQ(TextDecoder("ISO 2022 IR 100\\ISO 2022 IR 87").to_utf8(kEsc + "-A\xE9t\xE9"), "\xC3\xA9t\xC3\xA9");
  EXPECT_EQ(jis.to_utf8("\xB1"), kReplacement);                                         // an 8-bit byte with no G1 set
  // Row 15 of JIS X 0208 is unassigned: that character alone is replaced.
  EXPECT_EQ(jis.to_utf8(kEsc + "$B;3/!ED" + kEsc + "(B"), "\xE5\xB1\xB1" + kReplacement + "\xE7\x94\xB0");
}

TEST(TextEncoding, TextTheDeclaredSetDoesNotExplain) {
  const std::string latin1 = "Cr\xE2ne \xE9t\xE9";
  const std::string utf8 = "Cr\xC3\xA2ne \xC3\xA9t\xC3\xA9";
  EXPECT_EQ(TextDecoder("ISO_IR 100").to_utf8(latin1), utf8);
  // No Specific Character Set (the usual mistake): 8-bit text is read as Latin-1, unless it is UTF-8.
  EXPECT_EQ(TextDecoder("").to_utf8(latin1), utf8);
  EXPECT_EQ(TextDecoder("").to_utf8(utf8), utf8);
  EXPECT_EQ(TextDecoder("ISO_IR 6").to_utf8(latin1), utf8);
  // Misspelled defined terms are read as the term they mean.
  EXPECT_EQ(TextDecoder("ISO_IR100").character_set(), "ISO_IR 100");
  EXPECT_EQ(TextDecoder("iso-ir 144").to_utf8("\xBB\xEE"), "\xD0\x9B\xD1\x8E");  // Cyrillic "Лю"
  EXPECT_EQ(TextDecoder("ISO2022IR87").character_set(), "ISO 2022 IR 87");
  EXPECT_EQ(TextDecoder("UTF-8").to_utf8(utf8), utf8);
  // An unknown term: the best guess, never an error.
  EXPECT_EQ(TextDecoder("ISO_IR 999").to_utf8(latin1), utf8);
  EXPECT_EQ(TextDecoder("WINDOWS-1252").to_utf8(utf8), utf8);
  // UTF-8 declared, but not UTF-8.
  EXPECT_EQ(TextDecoder("ISO_IR 192").to_utf8("ok\xFF"), "ok" + kReplacement);
  // ASCII is the same in every set.
  EXPECT_EQ(TextDecoder("GB18030").to_utf8("Chest PA"), "Chest PA");
}

// Every guess is said, so that a name read by a guess can be checked where it is written.
TEST(TextEncoding, AGuessSaysWhy) {
  const std::string latin1 = "M\xFCller";
  const std::string cyrillic = "\xBB\xEE";  // "Лю" in ISO_IR 144
  auto doubt = [](const std::string& set, const std::string& raw) {
    std::string why = "(not set)";
    TextDecoder(set).to_utf8(raw, TextKind::PersonName, &why);
    return why;
  };
  EXPECT_EQ(doubt("ISO_IR 144", cyrillic), "");
  EXPECT_EQ(doubt("ISO_IR 100", latin1), "");
  EXPECT_EQ(doubt("", "Mueller"), "");  // ASCII: nothing to guess
  EXPECT_EQ(doubt("ISO_IR 192", "M\xC3\xBCller"), "");
  EXPECT_EQ(doubt("", latin1),
            "8-bit text where Specific Character Set (0008,0005) declares none: read as Latin-1 (ISO_IR 100)");
  EXPECT_EQ(doubt("ISO_IR 6", "M\xC3\xBCller"),
            "8-bit text where Specific Character Set (0008,0005) declares only ASCII (ISO_IR 6): read as UTF-8");
  EXPECT_EQ(doubt("ISO_IR 14", cyrillic),
            "Specific Character Set (0008,0005) 'ISO_IR 14' is not one this node knows: read as Latin-1 (ISO_IR 100)");
  EXPECT_EQ(doubt("ISO_IR 192", "M\xFCller"), "bytes that 'ISO_IR 192' does not explain, each written as U+FFFD");
  EXPECT_EQ(doubt("ISO 2022 IR 87", "\x1B$B;3/!ED\x1B(B"),
            "bytes that 'ISO 2022 IR 87' does not explain, each written as U+FFFD");

  // convert_to_utf8 lists the values read by a guess, with the text they were read as.
  DcmItem item;
  item.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 14");
  item.putAndInsertString(DCM_PatientName, ("Ivanov^" + cyrillic).c_str());
  item.putAndInsertString(DCM_PatientID, "12345");
  std::vector<std::string> guessed;
  convert_to_utf8(item, &guessed);
  ASSERT_EQ(guessed.size(), 1u) << testing::PrintToString(guessed);
  EXPECT_EQ(guessed[0],
            "PatientName (0010,0010) 'Ivanov^\xC2\xBB\xC3\xAE': Specific Character Set (0008,0005) 'ISO_IR 14' is not "
            "one this node knows: read as Latin-1 (ISO_IR 100)");
}

TEST(TextEncoding, ValidUtf8ReplacesWhatIsNotWellFormed) {
  EXPECT_TRUE(is_valid_utf8("A\xC3\xA9\xE5\xB1\xB1\xF0\x9F\x99\x82"));
  EXPECT_EQ(valid_utf8("A\xC3\xA9\xF0\x9F\x99\x82"), "A\xC3\xA9\xF0\x9F\x99\x82");
  EXPECT_EQ(valid_utf8("\xC0\x80"), kReplacement + kReplacement);                     // overlong NUL
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), kReplacement + kReplacement + kReplacement);  // a surrogate
  EXPECT_EQ(valid_utf8("\xF4\x90\x80\x80").size(), 4 * kReplacement.size());          // past U+10FFFF
  EXPECT_EQ(valid_utf8("x\xE5\xB1"), "x" + kReplacement + kReplacement);              // cut short
  EXPECT_FALSE(is_valid_utf8("\xE9t\xE9"));
}

TEST(TextEncoding, NestedItemsUseTheirOwnSetAndTheInstanceReaderGivesUtf8) {
  ASSERT_FALSE(test::pydicom_test_file("MR_small.dcm").empty()) << test::pydicom_files_missing();
  test::TempDir dir("text-instance");
  const fs::path path = dir / "latin1.dcm";
  test::edit_dicom(test::pydicom_test_file("MR_small.dcm"), path, [](DcmDataset& ds) {
    test::put(ds, DCM_SpecificCharacterSet, "ISO_IR 100");
    test::put(ds, DCM_PatientName, "M\xFCller^J\xFCrgen");
    test::put(ds, DCM_SeriesDescription, "Cr\xE2ne \xE9t\xE9");
    test::put(ds, DCM_StudyDescription, "\xC9tude");
    test::put(ds, DCM_ProtocolName, "T2 ax\xE9");
    // A nested item declaring Japanese.
    DcmItem* item = nullptr;
    ASSERT_TRUE(ds.findOrCreateSequenceItem(DCM_ReferencedStudySequence, item, -2).good());
    test::put(*item, DCM_SpecificCharacterSet, "\\ISO 2022 IR 87");
    test::put(*item, DCM_ReferencedSOPClassUID, "1.2.840.10008.3.1.2.3.1");
    test::put(*item, DCM_ReferencedSOPInstanceUID, "1.2.3");
    test::put(*item, DCM_PatientName, kEsc + "$B;3ED" + kEsc + "(B");
  });
  const Instance instance = Instance::read_file(path);
  EXPECT_EQ(instance.study().patient_name, "M\xC3\xBCller^J\xC3\xBCrgen");
  EXPECT_EQ(instance.series().series_description, "Cr\xC3\xA2ne \xC3\xA9t\xC3\xA9");
  EXPECT_EQ(instance.study().study_description, "\xC3\x89tude");
  EXPECT_EQ(instance.attribute_text("ProtocolName"), "T2 ax\xC3\xA9");

  DcmFileFormat file;
  ASSERT_TRUE(file.loadFile(path.c_str()).good());
  DcmDataset& ds = *file.getDataset();
  convert_to_utf8(ds);
  EXPECT_EQ(test::get(ds, DCM_PatientName), "M\xC3\xBCller^J\xC3\xBCrgen");
  DcmItem* item = nullptr;
  ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ReferencedStudySequence, item, 0).good());
  EXPECT_EQ(test::get(*item, DCM_PatientName), "\xE5\xB1\xB1\xE7\x94\xB0");
  EXPECT_EQ(test::get(*item, DCM_SpecificCharacterSet), "ISO_IR 192");
  EXPECT_EQ(test::get(*item, DCM_ReferencedSOPInstanceUID), "1.2.3");  // not text: untouched
}

}  // namespace
}  // namespace unibiomed::dicom
