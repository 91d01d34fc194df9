// DCMTK and GDCM print warnings about odd files on stderr by themselves. This module reports
// every problem through DicomError instead, so a host (the command line) may turn that
// chatter off. Process-wide: call it from a host's main path, not from library code.
// SPDX-License-Identifier: GPL-3.0-or-later
#pragma once

namespace unibiomed::dicom {

void silence_toolkit_logs();

}  // namespace unibiomed::dicom
