// SPDX-License-Identifier: GPL-3.0-or-later
#include "seg-writer/part10_file.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmb.h>

#include "seg-writer/source_images.h"

namespace unibiomed::seg {

void save_part10(DcmFileFormat& file, const std::filesystem::path& path) {
  const OFCondition status = file.saveFile(path.c_str(), EXS_LittleEndianExplicit);
  if (status.bad()) throw SegmentationError("cannot write " + path.string() + ": " + status.text());
}

std::vector<std::uint8_t> part10_bytes(DcmFileFormat& file) {
  std::vector<std::uint8_t> bytes;
  std::vector<char> chunk(1 << 20);
  DcmOutputBufferStream stream(chunk.data(), chunk.size());
  auto drain = [&]() {
    void* data = nullptr;
    offile_off_t length = 0;
    stream.flushBuffer(data, length);
    const auto* begin = static_cast<const std::uint8_t*>(data);
    bytes.insert(bytes.end(), begin, begin + length);
  };
  file.transferInit();
  OFCondition status = EC_StreamNotifyClient;
  while (status == EC_StreamNotifyClient) {
    status = file.write(stream, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
    drain();
  }
  file.transferEnd();
  if (status.bad()) throw SegmentationError(std::string("cannot encode the object as DICOM: ") + status.text());
  return bytes;
}

}  // namespace unibiomed::seg
