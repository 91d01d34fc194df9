// Test helpers that copy and edit DICOM files with DCMTK to build the awkward cases (mixed
// orientations, tilts, gaps, enhanced multi-frame, broken files) from the sample studies.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <dcmtk/config/osconfig.h>  // must come first for DCMTK
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace unibiomed::test {

// Loads `from`, lets `edit` change the dataset, saves to `to` (explicit VR little endian
// unless `xfer` says otherwise).
inline void edit_dicom(const std::filesystem::path& from, const std::filesystem::path& to,
                       const std::function<void(DcmDataset&)>& edit, E_TransferSyntax xfer = EXS_LittleEndianExplicit) {
  DcmFileFormat file;
  if (file.loadFile(from.c_str()).bad()) throw std::runtime_error("cannot load " + from.string());
  file.loadAllDataIntoMemory();
  edit(*file.getDataset());
  std::filesystem::create_directories(to.parent_path());
  // Keep the meta header consistent with an edited SOP Instance UID.
  file.getMetaInfo()->findAndDeleteElement(DCM_MediaStorageSOPInstanceUID);
  file.getMetaInfo()->findAndDeleteElement(DCM_MediaStorageSOPClassUID);
  OFCondition status = file.saveFile(to.c_str(), xfer);
  if (status.bad()) throw std::runtime_error("cannot save " + to.string() + ": " + status.text());
}

inline void put(DcmItem& item, const DcmTagKey& tag, const std::string& value) {
  if (item.putAndInsertString(tag, value.c_str()).bad()) throw std::runtime_error("cannot set a tag");
}

inline std::string get(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  item.findAndGetOFStringArray(tag, value);
  return value.c_str();
}

// The sorted DICOM files of a folder.
inline std::vector<std::filesystem::path> files_in(const std::filesystem::path& folder) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(folder))
    if (e.path().extension() == ".dcm") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace unibiomed::test
