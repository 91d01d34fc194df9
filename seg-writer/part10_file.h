// Writing the result objects as DICOM Part 10 (PS3.10): to a file, or to bytes for a host that
// stores them elsewhere (Orthanc). Explicit VR Little Endian, as viewers expect of SEG and SR;
// sequences and items of undefined length. The bytes are those of DCMTK's own writer (a test
// compares them), but a large Pixel Data element is copied straight from its buffer.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

class DcmFileFormat;

namespace unibiomed::seg {

// Throws SegmentationError naming the file when it cannot be written.
void save_part10(DcmFileFormat& file, const std::filesystem::path& path);
std::vector<std::uint8_t> part10_bytes(DcmFileFormat& file);

}  // namespace unibiomed::seg
