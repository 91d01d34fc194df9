// The external DICOM validators the writer and pipeline tests run on every SEG and SR they
// write: dicom3tools' dciodvfy and pixelmed's DicomSRValidator. A validator that did not actually
// check the file (not installed, could not start, could not read the file, printed nothing it
// would print on a real check) is reported as an error entry, never as a clean result.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace unibiomed::test {

// dciodvfy's error and abort lines for `file` ("Error - ...", "Abort - ..."); empty when the file
// was checked and no error was found. When dciodvfy did not check the file the list holds one
// entry starting "dciodvfy did not run:" or "dciodvfy did not check". `output` receives
// everything it printed.
std::vector<std::string> dciodvfy_errors(const std::filesystem::path& file, std::string* output = nullptr);

// pixelmed's SR validator (DicomSRValidator, from pixelmed.jar): its error lines; empty when it
// found the SR's IOD, completed the validation and reported no error. Otherwise one entry
// starting "pixelmed did not run:" or "pixelmed did not check" explains why.
std::vector<std::string> pixelmed_sr_errors(const std::filesystem::path& file, std::string* output = nullptr);

// Where pixelmed.jar is looked for (Debian's pixelmed-apps puts it in /usr/share/java).
std::filesystem::path pixelmed_jar();

}  // namespace unibiomed::test
